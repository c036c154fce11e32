package keystore

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// v1Store is what a format 1 store written by writeV1 holds.
type v1Store struct {
	keys    []*Key
	aliases map[string]string // name -> key id
	tags    map[string][]Tag  // key id -> tags
	meta    map[string]string
}

// encodeKeyV1 is the format 1 key record (the version 2 payload with
// "v":1 and the revision), as the previous release wrote it.
func encodeKeyV1(t *testing.T, k *Key) []byte {
	t.Helper()
	b, err := encodeKey(k)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte(`{"v":2,`), []byte(`{"v":1,`), 1)
	return append(b[:len(b)-1], fmt.Sprintf(`,"revision":%d}`, k.Revision)...)
}

// writeV1 writes a format 1 store of n keys (each with an alias and tags
// tags; every third pending deletion), meta records of both kinds and an
// unassociated alias, straight through Pebble, in the previous release's
// encoding.
func writeV1(t *testing.T, fs vfs.FS, dir string, n, tags int) *v1Store {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{FS: fs, FormatMajorVersion: pebble.FormatNewest})
	if err != nil {
		t.Fatal(err)
	}
	want := &v1Store{aliases: map[string]string{"alias/none": ""}, tags: map[string][]Tag{},
		meta: map[string]string{"ca/default": `{"v":1}`, "cert-issuer/x": "y", "custody/region-main-key": `{"v":1,"kcv":"abc"}`, "ceremony/krd-nonce": "\x00\x01"}}
	b := db.NewBatch()
	set := func(k, v []byte) { _ = b.Set(k, v, nil) }
	set(formatKey, []byte(`{"format":"payhsm-keystore","version":1}`))
	for i := range n {
		k := testKey(testID(100 + i))
		k.Revision = uint64(1 + i%3)
		if i%3 == 0 {
			k.State = stateDeletePending
			set(purgeKey(k.DeletePending, k.ID), nil)
		}
		want.keys = append(want.keys, k)
		set(keyKey(k.ID), encodeKeyV1(t, k))
		alias := "alias/" + k.ID
		want.aliases[alias] = k.ID
		set(aliasKey(alias), []byte(fmt.Sprintf(`{"v":1,"key":%q}`, k.ID)))
		set(byKeyKey(k.ID, alias), nil)
		for j := range tags {
			tg := Tag{fmt.Sprintf("tag-%02d", j), fmt.Sprintf("value %d %d", i, j)}
			want.tags[k.ID] = append(want.tags[k.ID], tg)
			set(tagKey(k.ID, tg.Key), []byte(tg.Value))
		}
	}
	set(aliasKey("alias/none"), []byte(`{"v":1}`))
	for name, v := range want.meta {
		set(metaKey(name), []byte(v))
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return want
}

// check compares a migrated store with what the format 1 store held.
func (want *v1Store) check(t *testing.T, s *Store) {
	t.Helper()
	if s.Format() != FormatVersion {
		t.Fatalf("format %d", s.Format())
	}
	for _, w := range want.keys {
		k, err := s.GetKey(w.ID)
		if err != nil {
			t.Fatalf("key %s: %v", w.ID, err)
		}
		sameKey(t, k, w) // the revision too
		tags, _, err := s.ListTags(w.ID, "", 100)
		if err != nil || !slices.Equal(tags, want.tags[w.ID]) {
			t.Errorf("tags of %s: %v %v", w.ID, tags, err)
		}
	}
	for name, id := range want.aliases {
		if a, err := s.GetAlias(name); err != nil || a.KeyID != id {
			t.Errorf("alias %s: %+v %v", name, a, err)
		}
	}
	for name, v := range want.meta {
		if got, err := s.GetMeta(name); err != nil || string(got) != v {
			t.Errorf("meta %s: %q %v", name, got, err)
		}
	}
	due, err := s.DueForPurge(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil || len(due) != (len(want.keys)+2)/3 {
		t.Errorf("due for purge: %v %v", due, err)
	}
	rep, err := s.Verify()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Failures {
		t.Errorf("after the migration: %s %s: %s", f.Type, f.Name, f.Reason)
	}
}

// TestMigrate upgrades a format 1 store: nothing but owner metadata is
// usable before, everything is the same after, and it is idempotent.
func TestMigrate(t *testing.T) {
	t.Parallel()
	fs := vfs.NewMem()
	want := writeV1(t, fs, "keystore", 20, 3)
	s := openTest(t, fs, "keystore")
	if s.Format() != 1 {
		t.Fatalf("format %d", s.Format())
	}
	if _, err := s.GetKey(want.keys[0].ID); !errors.Is(err, ErrNeedsMigration) {
		t.Fatalf("GetKey before the migration: %v", err)
	}
	if _, err := s.Verify(); !errors.Is(err, ErrNeedsMigration) {
		t.Fatalf("Verify before the migration: %v", err)
	}
	if err := s.CreateKey(testKey(testID(1)), nil, ""); !errors.Is(err, ErrNeedsMigration) {
		t.Fatalf("CreateKey before the migration: %v", err)
	}
	// Custody reads and writes its records before the migration.
	if v, err := s.GetMeta("custody/region-main-key"); err != nil || string(v) != want.meta["custody/region-main-key"] {
		t.Fatalf("owner meta before the migration: %q %v", v, err)
	}
	want.meta["custody/profile/default"] = `{"v":2}`
	if err := s.PutMeta("custody/profile/default", []byte(want.meta["custody/profile/default"])); err != nil {
		t.Fatal(err)
	}
	var calls []int
	rep, err := s.Migrate(func(done, total int) { calls = append(calls, done) })
	if err != nil {
		t.Fatal(err)
	}
	records := 20*(1+1+1+3) + 7 + 5 + 1 // key, alias, index, tags; the deletions; meta (one written here); the unassociated alias
	if rep.Records != records || rep.Rewritten != records || rep.Resumed != 0 || rep.Left != 0 {
		t.Errorf("report %+v, want %d records", rep, records)
	}
	if len(calls) != (records+migrateBatch-1)/migrateBatch || calls[len(calls)-1] != records {
		t.Errorf("progress %v", calls)
	}
	want.check(t, s)
	if rep, err := s.Migrate(nil); rep != nil || err != nil {
		t.Errorf("second Migrate: %+v %v", rep, err)
	}
	closeT(t, s)
	s = openTest(t, fs, "keystore")
	want.check(t, s)
}

// TestMigrateSurvivesCrashes cuts power after every migration batch and
// resumes from each cut: the migration carries on from its cursor, and every
// record ends up migrated once.
func TestMigrateSurvivesCrashes(t *testing.T) {
	t.Parallel()
	mem := vfs.NewCrashableMem()
	want := writeV1(t, mem, "keystore", 30, 4)
	s := openTest(t, mem, "keystore")
	var cuts []*vfs.MemFS
	var dones []int
	if _, err := s.Migrate(func(done, total int) {
		cuts = append(cuts, mem.CrashClone(vfs.CrashCloneCfg{}))
		dones = append(dones, done)
	}); err != nil {
		t.Fatal(err)
	}
	if len(cuts) < 3 {
		t.Fatalf("only %d batches", len(cuts))
	}
	for i, fs := range cuts {
		s := openTest(t, fs, "keystore")
		if s.Format() != 1 {
			t.Fatalf("cut %d: format %d before the final batch", i, s.Format())
		}
		rep, err := s.Migrate(nil)
		if err != nil {
			t.Fatalf("cut %d: %v", i, err)
		}
		if rep.Resumed != dones[i] || rep.Resumed+rep.Rewritten != rep.Records {
			t.Errorf("cut %d: %+v, want %d resumed", i, rep, dones[i])
		}
		want.check(t, s)
	}
}

// TestMigrateWriteFailure: a WAL write fails in the middle of the
// migration; the store fails, and once reopened the migration finishes.
func TestMigrateWriteFailure(t *testing.T) {
	t.Parallel()
	mem := vfs.NewCrashableMem()
	want := writeV1(t, mem, "keystore", 15, 4)
	writes := 0
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if isWAL(op) && op.Kind == errorfs.OpFileWrite {
			if writes++; writes == 3 {
				return errorfs.ErrInjected
			}
		}
		return nil
	})
	s, err := Open("keystore", opts(Options{FS: errorfs.Wrap(mem, inj)}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Migrate(nil); !errors.Is(err, ErrFailed) {
		t.Fatalf("Migrate with a failing WAL: %v", err)
	}
	s2 := openTest(t, mem.CrashClone(vfs.CrashCloneCfg{}), "keystore")
	rep, err := s2.Migrate(nil)
	if err != nil || rep.Resumed == 0 {
		t.Fatalf("resumed migration: %+v %v", rep, err)
	}
	want.check(t, s2)
}

// TestMigrateLeavesUndecodableRecords: a format 1 record that does not
// decode is left as it is and fails its integrity check afterwards; the
// rest migrate. A key of a profile without a main key is left too.
func TestMigrateLeavesUndecodableRecords(t *testing.T) {
	t.Parallel()
	fs := vfs.NewMem()
	writeV1(t, fs, "keystore", 3, 1)
	db, err := pebble.Open("keystore", &pebble.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	orphan := testKey(testID(7))
	orphan.Profile, orphan.Revision = "gone", 1
	for k, v := range map[string][]byte{
		string(keyKey(testID(100))):   []byte(`{"v":1,"id":`),
		string(aliasKey("alias/bad")): []byte(`not json`),
		string(keyKey(testID(7))):     encodeKeyV1(t, orphan),
	} {
		if err := db.Set([]byte(k), v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	closeT(t, db)
	s := openTest(t, fs, "keystore")
	rep, err := s.Migrate(nil)
	if err != nil || rep.Left != 3 {
		t.Fatalf("Migrate: %+v %v", rep, err)
	}
	for _, id := range []string{testID(100), testID(7)} {
		if _, err := s.GetKey(id); !errors.Is(err, ErrIntegrity) {
			t.Errorf("key %s after the migration: %v", id, err)
		}
	}
	if _, err := s.GetKey(testID(101)); err != nil {
		t.Errorf("a good key: %v", err)
	}
	vr, err := s.Verify()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range vr.Failures {
		names = append(names, f.Type.String()+" "+f.Name)
	}
	// The undecodable key's alias and index entry now name a key whose record fails.
	if !slices.Contains(names, "key "+testID(100)) || !slices.Contains(names, "key "+testID(7)) || !slices.Contains(names, "alias alias/bad") {
		t.Errorf("Verify: %v", names)
	}
}

// TestMigrateNeedsNamespaceKey: without a main key for the namespace
// profile nothing can be authenticated, and the migration refuses to start.
func TestMigrateNeedsNamespaceKey(t *testing.T) {
	t.Parallel()
	fs := vfs.NewMem()
	writeV1(t, fs, "keystore", 2, 1)
	s, err := Open("keystore", Options{FS: fs, Authenticator: newTestAuth(), Namespace: "nokey"})
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, s)
	if _, err := s.Migrate(nil); err == nil || !strings.Contains(err.Error(), `"nokey" has no main key`) {
		t.Fatalf("Migrate: %v", err)
	}
	if s.Format() != 1 {
		t.Fatal("format changed")
	}
}
