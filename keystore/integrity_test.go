package keystore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func rawGet(t *testing.T, s *Store, k []byte) []byte {
	t.Helper()
	v, ok, err := get(s.eng, k)
	if err != nil || !ok {
		t.Fatalf("raw %q: %v %v", k, ok, err)
	}
	return v
}

func rawSet(t *testing.T, s *Store, k, v []byte) {
	t.Helper()
	tx, err := s.eng.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Discard()
	if err := errors.Join(tx.Set(k, v), tx.Commit()); err != nil {
		t.Fatal(err)
	}
}

// integrityFixture is a store with one record of every type for two keys
// (a and b, so that records can be swapped), a bystander key c that nothing
// touches, and two keys pending deletion (d and e, for the purge index).
type integrityFixture struct {
	s          *Store
	auth       *testAuth
	a, b, c    string
	d, e       string
	logs       *observer.ObservedLogs
	past, soon time.Time
}

func newIntegrityFixture(t *testing.T, env *storeEnv) *integrityFixture {
	core, logs := observer.New(zapcore.DebugLevel)
	auth := newTestAuth()
	s := env.fresh(t).storeWith(t, Options{Logger: zap.New(core), Authenticator: auth, Namespace: "default"})
	fx := &integrityFixture{s: s, auth: auth, a: testID(1), b: testID(2), c: testID(3), d: testID(4), e: testID(5), logs: logs,
		past: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), soon: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)}
	for _, id := range []string{fx.a, fx.b, fx.c} {
		k := testKey(id)
		k.Exportable = false
		if err := s.CreateKey(k, []Tag{{"env", "prod-" + id}}, "alias/"+id); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range []string{fx.d, fx.e} {
		k := testKey(id)
		k.State, k.DeletePending = stateDeletePending, fx.past.Add(time.Duration(i)*time.Hour)
		if err := s.CreateKey(k, nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []string{"meta-a", "meta-b", "custody/region"} {
		if err := s.PutMeta(m, []byte("value of "+m)); err != nil {
			t.Fatal(err)
		}
	}
	return fx
}

// records returns the Pebble keys of the records of type typ of keys a and
// b (the victim and its swap partner; for the purge index d and e).
func (fx *integrityFixture) records(typ RecordType) (victim, partner []byte) {
	switch typ {
	case RecordKey:
		return keyKey(fx.a), keyKey(fx.b)
	case RecordAlias:
		return aliasKey("alias/" + fx.a), aliasKey("alias/" + fx.b)
	case RecordAliasIndex:
		return byKeyKey(fx.a, "alias/"+fx.a), byKeyKey(fx.b, "alias/"+fx.b)
	case RecordTag:
		return tagKey(fx.a, "env"), tagKey(fx.b, "env")
	case RecordPurgeIndex:
		return purgeKey(fx.past, fx.d), purgeKey(fx.past.Add(time.Hour), fx.e)
	}
	return metaKey("meta-a"), metaKey("meta-b")
}

// refused checks that every way of reading the record at k fails with
// ErrIntegrity, and that the bystander key c still serves.
func (fx *integrityFixture) refused(t *testing.T, k []byte) {
	t.Helper()
	s := fx.s
	typ, name, keyID := recordName(k)
	var err error
	switch typ {
	case RecordKey, RecordTag, RecordAliasIndex, RecordPurgeIndex:
		_, err = s.GetKey(keyID)
		if typ == RecordPurgeIndex {
			due, derr := s.DueForPurge(fx.soon)
			if derr != nil || slices.Contains(due, keyID) {
				t.Errorf("DueForPurge with a damaged entry for %s: %v %v", keyID, due, derr)
			}
		}
		if typ == RecordTag {
			if _, _, lerr := s.ListTags(keyID, "", 0); !errors.Is(lerr, ErrIntegrity) {
				t.Errorf("ListTags with a damaged tag: %v", lerr)
			}
		}
	case RecordAlias:
		_, err = s.GetAlias(name)
		if as, _, lerr := s.ListAliases("", "", 0); lerr != nil || slices.ContainsFunc(as, func(a Alias) bool { return a.Name == name }) {
			t.Errorf("ListAliases lists a damaged alias: %v %v", as, lerr)
		}
	case RecordMeta:
		_, err = s.GetMeta(name)
	}
	var ie *IntegrityError
	if !errors.As(err, &ie) || !errors.Is(err, ErrIntegrity) {
		t.Fatalf("%s %s: read gave %v, want an integrity failure", typ, name, err)
	}
	if ie.KeyID != keyID {
		t.Errorf("failure names key %q, want %q", ie.KeyID, keyID)
	}
	if typ == RecordKey {
		ks, _, lerr := s.ListKeys(nil, "", 0)
		if lerr != nil || slices.ContainsFunc(ks, func(k *Key) bool { return k.ID == keyID }) {
			t.Errorf("ListKeys lists a damaged key record: %v", lerr)
		}
	}
	if k, err := s.GetKey(fx.c); err != nil || k.Exportable {
		t.Errorf("bystander key: %v", err)
	}
	if _, err := s.GetAlias("alias/" + fx.c); err != nil {
		t.Errorf("bystander alias: %v", err)
	}
}

// verifyLists checks that Verify reports exactly the records at want.
func (fx *integrityFixture) verifyLists(t *testing.T, want ...[]byte) {
	t.Helper()
	rep, err := fx.s.Verify()
	if err != nil {
		t.Fatal(err)
	}
	var got, exp []string
	for _, f := range rep.Failures {
		got = append(got, f.Type.String()+" "+f.Name)
	}
	for _, k := range want {
		typ, name, _ := recordName(k)
		exp = append(exp, typ.String()+" "+name)
	}
	slices.Sort(got)
	slices.Sort(exp)
	if !slices.Equal(got, exp) {
		t.Errorf("Verify lists %q, want %q (%+v)", got, exp, rep.Failures)
	}
}

// TestTamperingIsDetected damages one record of each type in each way an
// attacker with write access to the storage could (or a bug, or a restored
// backup): every read of it is refused with ErrIntegrity, the other keys
// keep working, and Verify lists exactly the damaged records.
func testTamperingIsDetected(t *testing.T, env *storeEnv) {
	types := []RecordType{RecordKey, RecordAlias, RecordAliasIndex, RecordTag, RecordPurgeIndex, RecordMeta}
	attacks := []struct {
		name string
		// damage tampers with the store and returns the records that are then damaged.
		damage func(t *testing.T, fx *integrityFixture, typ RecordType) [][]byte
	}{
		{"flip a byte", func(t *testing.T, fx *integrityFixture, typ RecordType) [][]byte {
			k, _ := fx.records(typ)
			v := rawGet(t, fx.s, k)
			v[len(v)/2] ^= 0x01
			rawSet(t, fx.s, k, v)
			return [][]byte{k}
		}},
		{"edit the content", func(t *testing.T, fx *integrityFixture, typ RecordType) [][]byte {
			k, _ := fx.records(typ)
			v := rawGet(t, fx.s, k)
			f, _, _, _ := parseFrame(v)
			var edited []byte
			switch typ {
			case RecordKey: // the exportability attack, in valid JSON of the same length
				edited = bytes.Replace(v, []byte(`"exportable":false`), []byte(`"exportable":true `), 1)
			case RecordAlias: // re-point the alias
				edited = bytes.Replace(v, []byte(fx.a), []byte(fx.b), 1)
			case RecordTag, RecordMeta:
				edited = bytes.Replace(v, f.payload, bytes.ToUpper(f.payload), 1)
			default: // index entries have no payload: give one a later revision
				edited = bytes.Clone(v)
				edited[headerFixed+len(f.profile)-1]++
			}
			if bytes.Equal(edited, v) {
				t.Fatal("nothing edited")
			}
			rawSet(t, fx.s, k, edited)
			return [][]byte{k}
		}},
		{"truncate", func(t *testing.T, fx *integrityFixture, typ RecordType) [][]byte {
			k, _ := fx.records(typ)
			v := rawGet(t, fx.s, k)
			rawSet(t, fx.s, k, v[:len(v)-1])
			return [][]byte{k}
		}},
		{"swap two records", func(t *testing.T, fx *integrityFixture, typ RecordType) [][]byte {
			k1, k2 := fx.records(typ)
			v1, v2 := rawGet(t, fx.s, k1), rawGet(t, fx.s, k2)
			rawSet(t, fx.s, k1, v2)
			rawSet(t, fx.s, k2, v1)
			return [][]byte{k1, k2}
		}},
		{"attribute it to another profile", func(t *testing.T, fx *integrityFixture, typ RecordType) [][]byte {
			k, _ := fx.records(typ)
			f, _, _, _ := parseFrame(rawGet(t, fx.s, k))
			f.profile = "other" // a profile this appliance holds, with its own key
			v := appendFrame(nil, f)
			rawSet(t, fx.s, k, append(v, make([]byte, tagLen)...))
			return [][]byte{k}
		}},
		{"replay an older revision", func(t *testing.T, fx *integrityFixture, typ RecordType) [][]byte {
			k, _ := fx.records(typ)
			old := rawGet(t, fx.s, k)
			s := fx.s
			var err error
			switch typ {
			case RecordKey: // Enabled=true before a StopKeyUsage
				_, err = s.UpdateKey(fx.a, func(k *Key) error { k.Enabled = false; return nil })
			case RecordAlias:
				_, err = s.UpdateAlias("alias/"+fx.a, fx.b)
			case RecordAliasIndex: // the entry is deleted and made again
				if _, err = s.UpdateAlias("alias/"+fx.a, fx.b); err == nil {
					_, err = s.UpdateAlias("alias/"+fx.a, fx.a)
				}
			case RecordTag:
				err = s.TagKey(fx.a, []Tag{{"env", "changed"}}, 0)
			case RecordPurgeIndex: // restored, then deleted again with the same deadline
				if _, err = s.UpdateKey(fx.d, func(k *Key) error { k.State = "CREATE_COMPLETE"; return nil }); err == nil {
					_, err = s.UpdateKey(fx.d, func(k *Key) error { k.State = stateDeletePending; return nil })
				}
			case RecordMeta:
				err = s.PutMeta("meta-a", []byte("newer"))
			}
			if err != nil {
				t.Fatal(err)
			}
			rawSet(t, s, k, old)
			return [][]byte{k}
		}},
	}
	for _, typ := range types {
		for _, at := range attacks {
			t.Run(typ.String()+"/"+at.name, func(t *testing.T) {
				t.Parallel()
				fx := newIntegrityFixture(t, env)
				before := fx.s.IntegrityFailures()
				damaged := at.damage(t, fx, typ)
				for _, k := range damaged {
					fx.refused(t, k)
				}
				fx.verifyLists(t, damaged...)
				if fx.s.IntegrityFailures() <= before {
					t.Error("the failure counter did not move")
				}
			})
		}
	}
}

// TestIntegrityFailureIsLogged: one error-level line per damaged record
// (repeats within reportEvery are counted, not logged), naming the record
// type, the record and the key, never the content.
func testIntegrityFailureIsLogged(t *testing.T, env *storeEnv) {
	fx := newIntegrityFixture(t, env)
	k := keyKey(fx.a)
	v := rawGet(t, fx.s, k)
	rawSet(t, fx.s, k, bytes.Replace(v, []byte(`"exportable":false`), []byte(`"exportable":true `), 1))
	n := fx.s.IntegrityFailures()
	for range 3 {
		if _, err := fx.s.GetKey(fx.a); !errors.Is(err, ErrIntegrity) {
			t.Fatal(err)
		}
	}
	if got := fx.s.IntegrityFailures() - n; got != 3 {
		t.Errorf("counter moved by %d, want 3", got)
	}
	lines := fx.logs.FilterMessage("record failed its integrity check; it is refused until repaired").All()
	if len(lines) != 1 || lines[0].Level != zapcore.ErrorLevel {
		t.Fatalf("%d log lines: %+v", len(lines), lines)
	}
	f := lines[0].ContextMap()
	if f["type"] != "key" || f["key"] != fx.a || f["record"] != fx.a || f["reason"] == "" {
		t.Errorf("log fields %v", f)
	}
	for _, e := range fx.logs.All() {
		for _, v := range e.ContextMap() {
			if s, ok := v.(string); ok && (strings.Contains(s, "exportable") || strings.Contains(s, "D0144") || strings.Contains(s, "prod-")) {
				t.Errorf("a log line carries record content: %v", e.ContextMap())
			}
		}
	}
}

// TestReplayAcrossRestartIsNotDetected pins what the in-memory revision
// check cannot do on its own, without the journal (see the package comment;
// freshness_test.go covers the journal): a process that has never seen the
// newer revision accepts the older copy.
func testReplayAcrossRestartIsNotDetected(t *testing.T, env *storeEnv) {
	loc := env.fresh(t)
	auth := newTestAuth()
	s, err := loc.open(Options{Authenticator: auth, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateKey(testKey(testID(1)), nil, ""); err != nil {
		t.Fatal(err)
	}
	old := rawGet(t, s, keyKey(testID(1)))
	if _, err := s.UpdateKey(testID(1), func(k *Key) error { k.Enabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	closeT(t, s)
	s = loc.storeWith(t, Options{Authenticator: auth, Namespace: "default"})
	rawSet(t, s, keyKey(testID(1)), old)
	if k, err := s.GetKey(testID(1)); err != nil || !k.Enabled || k.Revision != 1 {
		t.Fatalf("older copy after a restart: %+v %v", k, err)
	}
	// Once a process has seen a revision, it holds later reads to it.
	if _, err := s.UpdateKey(testID(1), func(k *Key) error { k.Enabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	rawSet(t, s, keyKey(testID(1)), old)
	if _, err := s.GetKey(testID(1)); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("replay after an update in this process: %v", err)
	}
}

// TestRacingReaderIsNoReplay: a reader that read a record just before a
// writer committed a newer revision (and raised the mark) is not taken for
// a replay: it re-reads the record.
func testRacingReaderIsNoReplay(t *testing.T, env *storeEnv) {
	fx := newIntegrityFixture(t, env)
	s := fx.s
	k := keyKey(fx.a)
	stale := rawGet(t, s, k) // what a reader got before the update landed
	if _, err := s.UpdateKey(fx.a, func(k *Key) error { k.Enabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	done, _ := s.read()
	f, ok, err := s.verified(k, stale)
	done()
	if err != nil || !ok || f.revision != 2 {
		t.Fatalf("racing reader: revision %d ok=%v %v", f.revision, ok, err)
	}
	if n := s.IntegrityFailures(); n != 0 {
		t.Errorf("%d integrity failures", n)
	}
}

// TestOwnerMetaIsNotAuthenticated: custody's and the ceremonies' records are
// framed but left to their owners (see ownerMetaPrefixes), and a service
// record cannot pass as one, nor one as a service record.
func testOwnerMetaIsNotAuthenticated(t *testing.T, env *storeEnv) {
	fx := newIntegrityFixture(t, env)
	s := fx.s
	k := metaKey("custody/region")
	v := rawGet(t, s, k)
	f, _, tag, err := parseFrame(v)
	if err != nil || f.typ != RecordOwnerMeta || tag != nil || string(f.payload) != "value of custody/region" {
		t.Fatalf("owner record %+v %x %v", f, tag, err)
	}
	rawSet(t, s, k, bytes.Replace(v, []byte("value"), []byte("VALUE"), 1))
	if got, err := s.GetMeta("custody/region"); err != nil || string(got) != "VALUE of custody/region" {
		t.Fatalf("owner record: %q %v", got, err)
	}
	// A service record moved to an owner name, and back.
	rawSet(t, s, metaKey("custody/forged"), rawGet(t, s, metaKey("meta-a")))
	if _, err := s.GetMeta("custody/forged"); !errors.Is(err, ErrIntegrity) {
		t.Errorf("a service record under an owner name: %v", err)
	}
	rawSet(t, s, metaKey("meta-a"), rawGet(t, s, k))
	if _, err := s.GetMeta("meta-a"); !errors.Is(err, ErrIntegrity) {
		t.Errorf("an owner record under a service name: %v", err)
	}
}

// TestRetiredVersionIsRefused: records under a main key version the
// appliance no longer holds fail, unless Reseal moved them first; Reseal
// moves every record of the profile and only those.
func testRetiredVersionIsRefused(t *testing.T, env *storeEnv) {
	fx := newIntegrityFixture(t, env)
	s := fx.s
	other := testKey(testID(9))
	other.Profile = "other"
	if err := s.CreateKey(other, nil, ""); err != nil {
		t.Fatal(err)
	}
	fx.auth.rotate("default")
	// A record written now is under version 2 already.
	if err := s.PutMeta("meta-new", []byte("x")); err != nil {
		t.Fatal(err)
	}
	n, err := s.Reseal("default")
	if err != nil {
		t.Fatal(err)
	}
	rep, _ := s.Verify()
	// Every record but meta-new, the owner record and the other profile's key.
	if want := rep.Records - 3; n != want {
		t.Errorf("resealed %d records, want %d", n, want)
	}
	if n, err := s.Reseal("default"); err != nil || n != 0 {
		t.Errorf("second pass resealed %d: %v", n, err)
	}
	fx.auth.retire("default")
	fx.verifyLists(t)
	if _, err := s.GetKey(fx.a); err != nil {
		t.Fatal(err)
	}

	// Without a reseal, retiring the version makes its records fail.
	fx.auth.rotate("default")
	fx.auth.retire("default")
	if _, err := s.GetKey(fx.a); !errors.Is(err, ErrIntegrity) || !strings.Contains(err.Error(), "does not hold") {
		t.Fatalf("record under a retired version: %v", err)
	}
	if _, err := s.GetKey(other.ID); err != nil {
		t.Fatalf("the other profile's key: %v", err)
	}
}

// TestRecordNamePurge: a purge index key names its key id and deadline; a
// deadline beyond what deadlineNanos writes (math.MaxInt64) is shown in hex
// rather than wrapped into a negative time, and a malformed key is quoted.
func TestRecordNamePurge(t *testing.T) {
	t.Parallel()
	id := testID(1)
	raw := func(ns uint64, id string) []byte {
		return append(binary.BigEndian.AppendUint64([]byte(pfxPurge), ns), id...)
	}
	tests := []struct {
		name      string
		k         []byte
		wantName  string
		wantKeyID string
	}{
		{"deadline", purgeKey(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), id), id + "@2030-01-02T03:04:05Z", id},
		{"largest written", raw(math.MaxInt64, id), id + "@" + time.Unix(0, math.MaxInt64).UTC().Format(time.RFC3339), id},
		{"beyond int64", raw(math.MaxInt64+1, id), id + "@0x8000000000000000", id},
		{"malformed", []byte(pfxPurge + "short"), `"short"`, ""},
	}
	for _, tc := range tests {
		typ, name, keyID := recordName(tc.k)
		if typ != RecordPurgeIndex || name != tc.wantName || keyID != tc.wantKeyID {
			t.Errorf("%s: recordName = %v, %q, %q; want %v, %q, %q", tc.name, typ, name, keyID, RecordPurgeIndex, tc.wantName, tc.wantKeyID)
		}
	}
}

// testConcurrentUpdatesAreNoReplay: writers update one key over and over
// (each read-modify-write reading what the write before it left, possibly
// not yet durable) while readers read it: no reader ever takes a record for
// a replayed copy, and the key ends at the revision the updates add up to.
func testConcurrentUpdatesAreNoReplay(t *testing.T, env *storeEnv) {
	s := env.store(t)
	id := testID(1)
	if err := s.CreateKey(testKey(id), []Tag{{"n", "0"}}, "alias/one"); err != nil {
		t.Fatal(err)
	}
	const writers, each = 4, 25
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.GetKey(id); err != nil {
					t.Error(err)
					return
				}
				if _, _, err := s.ListTags(id, "", 0); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := s.UpdateKey(id, func(k *Key) error { k.Enabled = !k.Enabled; return nil }); err != nil {
					t.Error(err)
					return
				}
				if err := s.TagKey(id, []Tag{{"n", fmt.Sprint(w*each + i)}}, 0); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	k, err := s.GetKey(id)
	if err != nil || k.Revision != 1+writers*each {
		t.Fatalf("key after %d updates: %v %v", writers*each, k, err)
	}
	if n := s.IntegrityFailures(); n != 0 {
		t.Fatalf("%d integrity failures under concurrent updates", n)
	}
}
