package keystore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const testWriter = "node-1"

// openJournaled opens the store in dir on fs and starts its journal; it is
// closed when the test ends.
func openJournaled(t testing.TB, fs vfs.FS, auth *testAuth, o JournalOptions) (*Store, *observer.ObservedLogs) {
	t.Helper()
	return openJournaledIn(t, fs, "keystore", auth, o)
}

// openJournaledIn is openJournaled in dir.
func openJournaledIn(t testing.TB, fs vfs.FS, dir string, auth *testAuth, o JournalOptions) (*Store, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	s, err := Open(dir, Options{FS: fs, Logger: zap.New(core), Authenticator: auth, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if o.Writer == "" {
		o.Writer = testWriter
	}
	if _, err := s.StartJournal(o); err != nil {
		t.Fatalf("StartJournal: %v", err)
	}
	return s, logs
}

// rawEdit opens the closed store's database on fs directly (an attacker, a
// restored backup or a bug, with the daemon stopped) and runs edit.
func rawEdit(t *testing.T, fs vfs.FS, edit func(db *pebble.DB)) {
	t.Helper()
	db, err := pebble.Open("keystore", &pebble.Options{FS: fs, Logger: quietPebble{t}})
	if err != nil {
		t.Fatal(err)
	}
	edit(db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// quietPebble keeps Pebble's informational lines out of the test output.
type quietPebble struct{ t *testing.T }

func (quietPebble) Infof(string, ...any)                {}
func (l quietPebble) Errorf(format string, args ...any) { l.t.Logf("pebble: "+format, args...) }
func (l quietPebble) Fatalf(format string, args ...any) { l.t.Fatalf("pebble: "+format, args...) }

func dbSet(t *testing.T, db *pebble.DB, k, v []byte) {
	t.Helper()
	if err := db.Set(k, v, pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

func dbDel(t *testing.T, db *pebble.DB, k []byte) {
	t.Helper()
	if err := db.Delete(k, pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// newJournalFixture is newIntegrityFixture's store with the journal on.
func newJournalFixture(t *testing.T) (*integrityFixture, vfs.FS) {
	fs := vfs.NewMem()
	fx := &integrityFixture{auth: newTestAuth(), a: testID(1), b: testID(2), c: testID(3), d: testID(4), e: testID(5),
		past: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), soon: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)}
	fx.s, fx.logs = openJournaled(t, fs, fx.auth, JournalOptions{})
	s := fx.s
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
	return fx, fs
}

// restart closes the fixture's store, runs edit on the stopped store, and
// opens it again as the daemon does: the journal, then Verify.
func (fx *integrityFixture) restart(t *testing.T, fs vfs.FS, edit func(db *pebble.DB)) *VerifyReport {
	t.Helper()
	return fx.restartWith(t, fs, edit, false)
}

// restartWith is restart; lazy starts as the daemon does a large store:
// VerifyStart (whatever the store's size), and no full Verify.
func (fx *integrityFixture) restartWith(t *testing.T, fs vfs.FS, edit func(db *pebble.DB), lazy bool) *VerifyReport {
	t.Helper()
	closeT(t, fx.s)
	if edit != nil {
		rawEdit(t, fs, edit)
	}
	fx.s, fx.logs = openJournaled(t, fs, fx.auth, JournalOptions{})
	verify := fx.s.Verify
	if lazy {
		verify = func() (*VerifyReport, error) { return fx.s.VerifyStart(0) }
	}
	rep, err := verify()
	if err != nil {
		t.Fatal(err)
	}
	if lazy != rep.Partial || lazy != fx.s.Comparing() {
		t.Fatalf("lazy start %v: report partial %v, comparing on first read %v", lazy, rep.Partial, fx.s.Comparing())
	}
	return rep
}

// TestRollbackWhileStoppedIsDetected: for each record type, a record put
// back to an older copy, deleted, or brought back after its deletion while
// the store was closed is found by Verify at the next start (exactly that
// record), refused on every read, and the other keys keep serving; writing
// the record again repairs it.
func TestRollbackWhileStoppedIsDetected(t *testing.T) {
	t.Parallel()
	type change struct {
		name string
		// act changes the store through its API and returns the record
		// whose older copy (taken before act) is put back; put is false when
		// the record is instead deleted from the stopped store.
		act    func(t *testing.T, fx *integrityFixture) []byte
		del    bool   // delete the record while stopped instead of putting the old copy back
		reason string // in Verify's reason
	}
	must := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	cases := []change{
		{"key/older copy (Enabled before StopKeyUsage)", func(t *testing.T, fx *integrityFixture) []byte {
			_, err := fx.s.UpdateKey(fx.a, func(k *Key) error { k.Enabled = false; return nil })
			must(t, err)
			return keyKey(fx.a)
		}, false, "older than revision"},
		{"key/deleted", func(*testing.T, *integrityFixture) []byte { return nil }, true, "missing"},
		{"key/a purged key brought back", func(t *testing.T, fx *integrityFixture) []byte {
			must(t, fx.s.PurgeKey(fx.a))
			return keyKey(fx.a)
		}, false, "deleted"},
		{"alias/older copy (re-pointed)", func(t *testing.T, fx *integrityFixture) []byte {
			_, err := fx.s.UpdateAlias("alias/"+fx.a, fx.b)
			must(t, err)
			return aliasKey("alias/" + fx.a)
		}, false, "older than revision"},
		{"alias/deleted alias brought back", func(t *testing.T, fx *integrityFixture) []byte {
			must(t, fx.s.DeleteAlias("alias/"+fx.a))
			return aliasKey("alias/" + fx.a)
		}, false, "deleted"},
		{"alias/deleted", func(*testing.T, *integrityFixture) []byte { return nil }, true, "missing"},
		{"alias-index/deleted entry brought back", func(t *testing.T, fx *integrityFixture) []byte {
			_, err := fx.s.UpdateAlias("alias/"+fx.a, fx.b)
			must(t, err)
			return byKeyKey(fx.a, "alias/"+fx.a)
		}, false, "deleted"},
		{"alias-index/deleted", func(*testing.T, *integrityFixture) []byte { return nil }, true, "missing"},
		{"tag/older copy", func(t *testing.T, fx *integrityFixture) []byte {
			must(t, fx.s.TagKey(fx.a, []Tag{{"env", "changed"}}, 0))
			return tagKey(fx.a, "env")
		}, false, "older than revision"},
		{"tag/deleted tag brought back", func(t *testing.T, fx *integrityFixture) []byte {
			must(t, fx.s.UntagKey(fx.a, []string{"env"}))
			return tagKey(fx.a, "env")
		}, false, "deleted"},
		{"tag/deleted", func(*testing.T, *integrityFixture) []byte { return nil }, true, "missing"},
		{"purge-index/deleted entry brought back (deletion cancelled)", func(t *testing.T, fx *integrityFixture) []byte {
			_, err := fx.s.UpdateKey(fx.d, func(k *Key) error { k.State = "CREATE_COMPLETE"; return nil })
			must(t, err)
			return purgeKey(fx.past, fx.d)
		}, false, "deleted"},
		{"purge-index/deleted", func(*testing.T, *integrityFixture) []byte { return nil }, true, "missing"},
		{"meta/older copy", func(t *testing.T, fx *integrityFixture) []byte {
			must(t, fx.s.PutMeta("meta-a", []byte("newer")))
			return metaKey("meta-a")
		}, false, "older than revision"},
		{"meta/deleted", func(*testing.T, *integrityFixture) []byte { return nil }, true, "missing"},
	}
	victimOf := func(fx *integrityFixture, name string) []byte {
		typ, _, _ := strings.Cut(name, "/")
		for _, rt := range []RecordType{RecordKey, RecordAlias, RecordAliasIndex, RecordTag, RecordPurgeIndex, RecordMeta} {
			if rt.String() == typ {
				k, _ := fx.records(rt)
				return k
			}
		}
		panic(name)
	}
	for _, c := range cases {
		for _, lazy := range []bool{false, true} {
			mode := "/Verify"
			if lazy {
				mode = "/VerifyStart"
			}
			t.Run(c.name+mode, func(t *testing.T) {
				t.Parallel()
				fx, fs := newJournalFixture(t)
				victim := victimOf(fx, c.name)
				old := rawGet(t, fx.s, victim)
				if k := c.act(t, fx); k != nil && !bytes.Equal(k, victim) {
					t.Fatalf("case acts on %q, not %q", k, victim)
				}
				before := fx.s.IntegrityFailures()
				rep := fx.restartWith(t, fs, func(db *pebble.DB) {
					if c.del {
						dbDel(t, db, victim)
					} else {
						dbSet(t, db, victim, old)
					}
				}, lazy)
				if !rep.Journal.Checked || rep.Journal.Damaged {
					t.Fatalf("journal report %+v", rep.Journal)
				}
				typ, name, _ := recordName(victim)
				// VerifyStart lists metadata and the purge index; the rest is
				// compared on first read.
				if startChecked(victim) || !lazy {
					if len(rep.Failures) != 1 || rep.Failures[0].Type != typ || rep.Failures[0].Name != name ||
						!strings.Contains(rep.Failures[0].Reason, c.reason) {
						t.Fatalf("Verify lists %+v, want exactly %s %s (%q)", rep.Failures, typ, name, c.reason)
					}
				} else if len(rep.Failures) != 0 {
					t.Fatalf("VerifyStart lists %+v, want nothing", rep.Failures)
				}
				fx.refused(t, victim)
				if lazy && !fx.s.Comparing() {
					t.Fatal("the reads were not compared on first read")
				}
				if fx.s.IntegrityFailures() <= before {
					t.Error("the failure counter did not move")
				}
				if fx.logs.FilterMessage("record failed its integrity check; it is refused until repaired").
					FilterField(zap.String("record", name)).Len() == 0 {
					t.Error("no error log line names the record")
				}
				fx.verifyLists(t, victim) // a second (or the background) Verify, while serving, finds the same
				if fx.s.Comparing() {
					t.Error("a full Verify left the comparisons on first read on")
				}
				fx.refused(t, victim)
			})
		}
	}
}

// TestRollbackRepairedByRewrite: a record Verify found out of date is served
// again once the store writes it anew, and stays fine across a restart.
func TestRollbackRepairedByRewrite(t *testing.T) {
	t.Parallel()
	fx, fs := newJournalFixture(t)
	k := tagKey(fx.a, "env")
	old := rawGet(t, fx.s, k)
	if err := fx.s.TagKey(fx.a, []Tag{{"env", "changed"}}, 0); err != nil {
		t.Fatal(err)
	}
	fx.restart(t, fs, func(db *pebble.DB) { dbSet(t, db, k, old) })
	if _, err := fx.s.GetKey(fx.a); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("GetKey before the repair: %v", err)
	}
	if err := fx.s.TagKey(fx.a, []Tag{{"env", "repaired"}}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.s.GetKey(fx.a); err != nil {
		t.Fatalf("GetKey after the repair: %v", err)
	}
	if rep := fx.restart(t, fs, nil); len(rep.Failures) != 0 {
		t.Fatalf("after the repair and a restart: %+v", rep.Failures)
	}
}

// TestOwnerMetaRollbackIsDetected: owner metadata, whose revision the store
// does not authenticate, is compared by content: an older copy put back,
// even with a raised revision, is found.
func TestOwnerMetaRollbackIsDetected(t *testing.T) {
	t.Parallel()
	fx, fs := newJournalFixture(t)
	k := metaKey("custody/region")
	old := rawGet(t, fx.s, k)
	if err := fx.s.PutMeta("custody/region", []byte("rotated")); err != nil {
		t.Fatal(err)
	}
	cur := rawGet(t, fx.s, k)
	forged := bytes.Clone(old)
	binary.BigEndian.PutUint64(forged[headerFixed-8:], headerRevision(cur)) // claim the current revision
	rep := fx.restart(t, fs, func(db *pebble.DB) { dbSet(t, db, k, forged) })
	if len(rep.Failures) != 1 || rep.Failures[0].Type != RecordOwnerMeta || rep.Failures[0].Name != "custody/region" {
		t.Fatalf("Verify lists %+v", rep.Failures)
	}
	if _, err := fx.s.GetMeta("custody/region"); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("GetMeta of the older copy: %v", err)
	}
}

// TestRecordFromElsewhereIsDetected: a record the journal never recorded
// (authenticated: copied from another store under the same profile main
// key), a newer revision than recorded, and the records of a purged key
// brought back after the checkpoint dropped them, are each found.
func TestRecordFromElsewhereIsDetected(t *testing.T) {
	t.Parallel()
	for _, lazy := range []bool{false, true} {
		t.Run(fmt.Sprintf("lazy=%v", lazy), func(t *testing.T) {
			t.Parallel()
			testRecordFromElsewhere(t, lazy)
		})
	}
}

func testRecordFromElsewhere(t *testing.T, lazy bool) {
	fx, fs := newJournalFixture(t)
	// Another store under the same keys: key f, and alias/a pointing at it.
	other, _ := openJournaled(t, vfs.NewMem(), fx.auth, JournalOptions{Writer: "node-2"})
	if err := other.CreateKey(testKey(testID(6)), nil, "alias/"+fx.a); err != nil {
		t.Fatal(err)
	}
	foreignKey := rawGet(t, other, keyKey(testID(6)))
	// alias/a at a later revision than ours, authenticated (from a store
	// under the same profile main key, or forged by whoever holds it).
	ak := aliasKey("alias/" + fx.a)
	f, _, _, _ := parseFrame(rawGet(t, fx.s, ak))
	f.revision += 5
	newer := appendFrame(nil, f)
	newer = append(newer, recordMAC(testRecordKey("default", 1), ak, newer)...)
	oldTag := rawGet(t, fx.s, tagKey(fx.c, "env"))
	if err := fx.s.PurgeKey(fx.c); err != nil {
		t.Fatal(err)
	}
	if err := fx.s.Checkpoint(); err != nil { // drops the purged key's records but its key record's tombstone
		t.Fatal(err)
	}
	rep := fx.restartWith(t, fs, func(db *pebble.DB) {
		dbSet(t, db, keyKey(testID(6)), foreignKey)
		dbSet(t, db, tagKey(fx.c, "env"), oldTag)
		dbSet(t, db, ak, newer)
	}, lazy)
	if lazy {
		// Each is refused on its first read, before the full Verify.
		if len(rep.Failures) != 0 {
			t.Fatalf("VerifyStart lists %+v", rep.Failures)
		}
		if _, err := fx.s.GetKey(testID(6)); !errors.Is(err, ErrIntegrity) {
			t.Errorf("GetKey of the foreign key: %v", err)
		}
		if _, err := fx.s.GetAlias("alias/" + fx.a); !errors.Is(err, ErrIntegrity) {
			t.Errorf("GetAlias of the newer alias: %v", err)
		}
		if tags, _, err := fx.s.ListTags(fx.c, "", 0); !errors.Is(err, ErrNotFound) || len(tags) != 0 { // the key is gone: its tag is never used
			t.Errorf("ListTags of the purged key's tag put back: %v %v", tags, err)
		}
		if _, err := fx.s.GetKey(fx.b); err != nil {
			t.Errorf("bystander: %v", err)
		}
		if !fx.s.Comparing() {
			t.Fatal("not compared on first read")
		}
		var err error
		if rep, err = fx.s.Verify(); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, f := range rep.Failures {
		got = append(got, f.Type.String()+" "+f.Name+": "+f.Reason)
	}
	want := []string{
		"alias alias/" + fx.a + ": revision 6 is newer than revision 1 the store's journal recorded",
		"key " + testID(6) + ": the store's journal has no record of it",
		"tag " + fx.c + "/env: it belongs to key " + fx.c + ", which was deleted",
	}
	if len(got) != len(want) {
		t.Fatalf("Verify lists %q", got)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("failure %d: %q, want %q...", i, got[i], want[i])
		}
	}
	if _, err := fx.s.GetKey(testID(6)); !errors.Is(err, ErrIntegrity) {
		t.Errorf("GetKey of the foreign key: %v", err)
	}
}

// crashClone runs fn on a store with its journal on a crashable file system
// and returns the state after a power cut (no close: the journal keeps its
// entries).
func crashClone(t *testing.T, auth *testAuth, fn func(s *Store)) vfs.FS {
	t.Helper()
	mem := vfs.NewCrashableMem()
	s, _ := openJournaled(t, mem, auth, JournalOptions{CheckpointEntries: 1 << 20, CheckpointInterval: time.Hour})
	fn(s)
	return mem.CrashClone(vfs.CrashCloneCfg{})
}

// TestJournalDamageIsDetected: entries of the journal deleted, put back
// after the checkpoint covered them, a head rolled back or damaged, a
// checkpoint bucket replaced: each is found (StartJournal refuses what it
// can see; Verify lists the rest, says the journal is damaged, and compares
// no record).
func TestJournalDamageIsDetected(t *testing.T) {
	t.Parallel()
	auth := newTestAuth()
	// Entries 1..3 uncheckpointed (the first checkpoint is at sequence 0).
	writes := func(s *Store) {
		for i := range 3 {
			if err := s.CreateKey(testKey(testID(i)), nil, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	var oldHead []byte // the head rolled back case's
	cases := []struct {
		name     string
		setup    func(s *Store) // before the crash
		edit     func(t *testing.T, db *pebble.DB)
		startErr error    // StartJournal's refusal, if any
		listed   []string // what Verify lists
	}{
		{"an entry deleted", writes, func(t *testing.T, db *pebble.DB) {
			dbDel(t, db, journalKey(testWriter, 2))
		}, nil, []string{"journal " + testWriter + "/2"}},
		{"the last entries deleted", writes, func(t *testing.T, db *pebble.DB) {
			dbDel(t, db, journalKey(testWriter, 2))
			dbDel(t, db, journalKey(testWriter, 3))
		}, nil, []string{"journal " + testWriter + "/2-3"}},
		{"an entry forged", writes, func(t *testing.T, db *pebble.DB) {
			v, c, err := db.Get(journalKey(testWriter, 1))
			if err != nil {
				t.Fatal(err)
			}
			v = bytes.Clone(v)
			_ = c.Close()
			v[len(v)-1] ^= 1
			dbSet(t, db, journalKey(testWriter, 1), v)
		}, nil, []string{"journal " + testWriter + "/1"}},
		{"the head rolled back (entries beyond it)", func(s *Store) {
			writes(s)
			oldHead = rawGet(t, s, headKey(testWriter))
			if err := s.CreateKey(testKey(testID(8)), nil, ""); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, db *pebble.DB) {
			dbSet(t, db, headKey(testWriter), oldHead)
		}, ErrJournalDamaged, []string{"journal " + testWriter + "/4"}},
		{"the head damaged", writes, func(t *testing.T, db *pebble.DB) {
			v, c, err := db.Get(headKey(testWriter))
			if err != nil {
				t.Fatal(err)
			}
			v = bytes.Clone(v)
			_ = c.Close()
			v[len(v)/2] ^= 1
			dbSet(t, db, headKey(testWriter), v)
		}, ErrJournalDamaged, []string{"journal-head " + testWriter}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			fs := crashClone(t, auth, c.setup)
			rawEdit(t, fs, func(db *pebble.DB) { c.edit(t, db) })
			s, err := Open("keystore", Options{FS: fs, Authenticator: auth, Namespace: "default"})
			if err != nil {
				t.Fatal(err)
			}
			defer closeT(t, s)
			_, err = s.StartJournal(JournalOptions{Writer: testWriter})
			if c.startErr != nil {
				if !errors.Is(err, c.startErr) {
					t.Fatalf("StartJournal: %v, want %v", err, c.startErr)
				}
			} else if err != nil {
				t.Fatalf("StartJournal: %v", err)
			}
			rep, err := s.Verify()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range rep.Failures {
				got = append(got, f.Type.String()+" "+f.Name)
			}
			if !rep.Journal.Damaged || rep.Journal.Checked || !slices.Equal(got, c.listed) {
				t.Errorf("Verify: %+v %q, want %q", rep.Journal, got, c.listed)
			}
			// The daemon's start-up check finds the same (a damaged journal
			// cannot be compared with: it makes the full pass).
			rep, err = s.VerifyStart(0)
			if err != nil {
				t.Fatal(err)
			}
			got = got[:0]
			for _, f := range rep.Failures {
				got = append(got, f.Type.String()+" "+f.Name)
			}
			if !rep.Journal.Damaged || rep.Partial || s.Comparing() || !slices.Equal(got, c.listed) {
				t.Errorf("VerifyStart: %+v partial %v %q, want %q", rep.Journal, rep.Partial, got, c.listed)
			}
		})
	}
}

// TestJournalHeadAndCheckpointRollback: a head put back to an older copy
// (with the entries after it still there) is refused at start; an old
// journal entry put back after a checkpoint covered it, and a checkpoint
// bucket put back to an older copy, are listed by Verify.
func TestJournalHeadAndCheckpointRollback(t *testing.T) {
	t.Parallel()
	auth := newTestAuth()
	fs := vfs.NewMem()
	s, _ := openJournaled(t, fs, auth, JournalOptions{CheckpointEntries: 1 << 20, CheckpointInterval: time.Hour})
	if err := s.CreateKey(testKey(testID(1)), []Tag{{"a", "1"}}, ""); err != nil {
		t.Fatal(err)
	}
	oldHead := rawGet(t, s, headKey(testWriter))
	oldEntry := rawGet(t, s, journalKey(testWriter, 1))
	b := bucketOf(string(keyKey(testID(1))), s.fr.head.bits)
	if err := s.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	oldBucket := rawGet(t, s, ckptKey(testWriter, b))
	if err := s.TagKey(testID(1), []Tag{{"a", "2"}}, 0); err != nil {
		t.Fatal(err)
	}
	closeT(t, s) // checkpoints again: the bucket changes

	for _, c := range []struct {
		name     string
		edit     func(db *pebble.DB)
		startErr error
		listed   []string
	}{
		// The head as entry 1 left it: entry 1 is gone (the checkpoint dropped
		// it), and the checkpoint is not the one that head covers.
		{"head rolled back", func(db *pebble.DB) { dbSet(t, db, headKey(testWriter), oldHead) }, nil,
			[]string{"checkpoint " + testWriter, "journal " + testWriter + "/1"}},
		{"covered entry put back", func(db *pebble.DB) { dbSet(t, db, journalKey(testWriter, 1), oldEntry) }, nil, []string{"journal " + testWriter + "/1"}},
		{"bucket rolled back", func(db *pebble.DB) { dbSet(t, db, ckptKey(testWriter, b), oldBucket) }, nil, []string{"checkpoint " + testWriter}},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Work on a copy of the closed store.
			cp := vfs.NewMem()
			if _, err := vfs.Clone(fs, cp, "keystore", "keystore"); err != nil {
				t.Fatal(err)
			}
			rawEdit(t, cp, c.edit)
			s, err := Open("keystore", Options{FS: cp, Authenticator: auth, Namespace: "default"})
			if err != nil {
				t.Fatal(err)
			}
			defer closeT(t, s)
			if _, err := s.StartJournal(JournalOptions{Writer: testWriter}); c.startErr != nil || err != nil {
				if !errors.Is(err, c.startErr) || c.startErr == nil {
					t.Fatalf("StartJournal: %v, want %v", err, c.startErr)
				}
				return
			}
			rep, err := s.Verify()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range rep.Failures {
				got = append(got, f.Type.String()+" "+f.Name)
			}
			if !rep.Journal.Damaged || !slices.Equal(got, c.listed) {
				t.Errorf("Verify: %+v %q, want %q", rep.Journal, got, c.listed)
			}
		})
	}
}

// TestWholeStoreRollbackAgainstAnchor: the whole store restored from a copy
// taken earlier (a self-consistent, older journal) is refused against the
// anchor; so is a store whose journal was removed; inspection reports it;
// rebaselining accepts the store under a sequence number past the anchor.
func TestWholeStoreRollbackAgainstAnchor(t *testing.T) {
	t.Parallel()
	auth := newTestAuth()
	fs := vfs.NewMem()
	s, _ := openJournaled(t, fs, auth, JournalOptions{})
	if err := s.CreateKey(testKey(testID(1)), nil, ""); err != nil {
		t.Fatal(err)
	}
	closeT(t, s)
	backup := vfs.NewMem()
	if _, err := vfs.Clone(fs, backup, "keystore", "keystore"); err != nil {
		t.Fatal(err)
	}
	s, _ = openJournaled(t, fs, auth, JournalOptions{})
	if _, err := s.UpdateKey(testID(1), func(k *Key) error { k.Enabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateKey(testKey(testID(2)), nil, ""); err != nil {
		t.Fatal(err)
	}
	anchor := s.JournalSeq()
	closeT(t, s)
	if anchor != 3 {
		t.Fatalf("journal at %d after 3 writes", anchor)
	}

	open := func(fs vfs.FS) *Store {
		s, err := Open("keystore", Options{FS: fs, Authenticator: auth, Namespace: "default"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	start := func(fs vfs.FS) error {
		s := open(fs)
		defer closeT(t, s)
		_, err := s.StartJournal(JournalOptions{Writer: testWriter, Anchor: anchor})
		return err
	}
	// The live store passes; the restored copy does not.
	if err := start(fs); err != nil {
		t.Fatalf("the current store: %v", err)
	}
	var re *RollbackError
	if err := start(backup); !errors.As(err, &re) || !errors.Is(err, ErrRolledBack) ||
		re.Head != 1 || re.Anchor != anchor || re.NoJournal {
		t.Fatalf("the restored store: %v", err)
	}
	// A store without its journal (the journal records removed) is no way round.
	nojournal := vfs.NewMem()
	if _, err := vfs.Clone(backup, nojournal, "keystore", "keystore"); err != nil {
		t.Fatal(err)
	}
	rawEdit(t, nojournal, func(db *pebble.DB) {
		for _, p := range []string{pfxCkpt, pfxHead, pfxJournal} {
			if err := db.DeleteRange([]byte(p), upperBound(p), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}
	})
	if err := start(nojournal); !errors.As(err, &re) || !re.NoJournal {
		t.Fatalf("the store without a journal: %v", err)
	}
	// Inspection reports it.
	insp := open(backup)
	if _, err := insp.StartJournal(JournalOptions{Writer: testWriter, Anchor: anchor, Mode: JournalInspect}); err != nil {
		t.Fatal(err)
	}
	rep, err := insp.Verify()
	if err != nil || !rep.Journal.Damaged || len(rep.Failures) != 1 || rep.Failures[0].Type != RecordJournalHead ||
		!strings.Contains(rep.Failures[0].Reason, "older than the token") {
		t.Fatalf("inspection of the restored store: %+v %v", rep, err)
	}
	closeT(t, insp)
	// The operator accepts the restored store.
	acc := open(backup)
	seq, err := acc.StartJournal(JournalOptions{Writer: testWriter, Anchor: anchor, Mode: JournalRebaseline})
	if err != nil || seq != anchor+1 {
		t.Fatalf("rebaseline: %d %v", seq, err)
	}
	if k, err := acc.GetKey(testID(1)); err != nil || !k.Enabled {
		t.Fatalf("the restored key: %v %v", k, err)
	}
	closeT(t, acc)
	s = open(backup)
	if _, err := s.StartJournal(JournalOptions{Writer: testWriter, Anchor: seq}); err != nil {
		t.Fatalf("after the rebaseline: %v", err)
	}
	if rep, err := s.Verify(); err != nil || len(rep.Failures) != 0 || !rep.Journal.Checked {
		t.Fatalf("Verify after the rebaseline: %+v %v", rep, err)
	}
}

// TestJournalUpgrade: a store written without a journal (the previous
// build) gets its first checkpoint at the first start, once; a crash before
// it leaves the store as it was, and the next start writes it.
func TestJournalUpgrade(t *testing.T) {
	t.Parallel()
	auth := newTestAuth()
	mem := vfs.NewCrashableMem()
	s, err := Open("keystore", Options{FS: mem, Authenticator: auth, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := s.CreateKey(testKey(testID(i)), []Tag{{"n", fmt.Sprint(i)}}, fmt.Sprintf("alias/%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutMeta("custody/region", []byte("r")); err != nil {
		t.Fatal(err)
	}
	closeT(t, s)
	crashed := mem.CrashClone(vfs.CrashCloneCfg{}) // a start that died before its first checkpoint: the same store

	for _, fs := range []vfs.FS{mem, crashed} {
		s, logs := openJournaled(t, fs, auth, JournalOptions{})
		if logs.FilterMessage("keystore journal started: first checkpoint written").Len() != 1 {
			t.Fatal("no first checkpoint")
		}
		if rep, err := s.Verify(); err != nil || len(rep.Failures) != 0 || !rep.Journal.Checked || rep.Journal.Writers != 1 {
			t.Fatalf("Verify after the upgrade: %+v %v", rep, err)
		}
		closeT(t, s)
		s, logs = openJournaled(t, fs, auth, JournalOptions{})
		if logs.FilterMessage("keystore journal started: first checkpoint written").Len() != 0 {
			t.Fatal("a second start checkpointed from scratch again")
		}
		if rep, err := s.Verify(); err != nil || len(rep.Failures) != 0 || !rep.Journal.Checked {
			t.Fatalf("Verify at the second start: %+v %v", rep, err)
		}
	}
}

// TestCheckpointsKeepTheState: with frequent checkpoints, re-bucketing as
// the store grows, deletions and a purge, the checkpoint plus journal always
// give every record's state: Verify after a restart finds nothing, the
// journal stays short, and a rollback is still found.
func TestCheckpointsKeepTheState(t *testing.T) {
	t.Parallel()
	auth := newTestAuth()
	fs := vfs.NewMem()
	o := JournalOptions{CheckpointEntries: 7, CheckpointInterval: time.Hour, bucketTarget: 2}
	s, _ := openJournaled(t, fs, auth, o)
	startBits := s.fr.head.bits
	for i := range 300 {
		if err := s.CreateKey(testKey(testID(i)), []Tag{{"t", "x"}}, fmt.Sprintf("alias/%d", i)); err != nil {
			t.Fatal(err)
		}
		switch i % 5 {
		case 1:
			if err := s.UntagKey(testID(i), []string{"t"}); err != nil {
				t.Fatal(err)
			}
		case 2:
			if err := s.PurgeKey(testID(i)); err != nil {
				t.Fatal(err)
			}
		case 3:
			if err := s.DeleteAlias(fmt.Sprintf("alias/%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.fr.mu.Lock()
		bits, pending := s.fr.head.bits, s.fr.pending
		s.fr.mu.Unlock()
		if bits > startBits && pending < 7 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoints: bits %d (from %d), %d entries pending", bits, startBits, pending)
		}
		time.Sleep(10 * time.Millisecond)
	}
	old := rawGet(t, s, keyKey(testID(10)))
	if _, err := s.UpdateKey(testID(10), func(k *Key) error { k.Enabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	closeT(t, s)
	s, _ = openJournaled(t, fs, auth, o)
	if rep, err := s.Verify(); err != nil || len(rep.Failures) != 0 || !rep.Journal.Checked {
		t.Fatalf("Verify after the restart: %+v %v", rep, err)
	}
	closeT(t, s)
	rawEdit(t, fs, func(db *pebble.DB) { dbSet(t, db, keyKey(testID(10)), old) })
	s, _ = openJournaled(t, fs, auth, o)
	if rep, err := s.Verify(); err != nil || len(rep.Failures) != 1 || rep.Failures[0].Name != testID(10) {
		t.Fatalf("Verify after the rollback: %+v %v", rep, err)
	}
}

// TestJournalResealedOnRotation: a rotation of the namespace profile's main
// key re-seals the journal's records too, so the journal still verifies
// once the old version is retired.
func TestJournalResealedOnRotation(t *testing.T) {
	t.Parallel()
	auth := newTestAuth()
	fs := vfs.NewMem()
	s, _ := openJournaled(t, fs, auth, JournalOptions{CheckpointEntries: 1 << 20, CheckpointInterval: time.Hour})
	for i := range 5 {
		if err := s.CreateKey(testKey(testID(i)), nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateKey(testKey(testID(9)), nil, ""); err != nil { // one entry left in the journal
		t.Fatal(err)
	}
	auth.rotate("default")
	for {
		n, err := s.Reseal("default")
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	auth.retire("default")
	if rep, err := s.Verify(); err != nil || len(rep.Failures) != 0 || !rep.Journal.Checked {
		t.Fatalf("Verify after the rotation: %+v %v", rep, err)
	}
	closeT(t, s)
	s, _ = openJournaled(t, fs, auth, JournalOptions{})
	if rep, err := s.Verify(); err != nil || len(rep.Failures) != 0 || !rep.Journal.Checked {
		t.Fatalf("Verify after a restart: %+v %v", rep, err)
	}
}

// TestJournalConcurrent: writers, the checkpoint loop, Verify and readers
// at once (run with -race); the journal ends consistent.
func TestJournalConcurrent(t *testing.T) {
	t.Parallel()
	auth := newTestAuth()
	fs := vfs.NewMem()
	o := JournalOptions{CheckpointEntries: 5, CheckpointInterval: time.Millisecond}
	s, _ := openJournaled(t, fs, auth, o)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				id := testID(w*1000 + i)
				if err := s.CreateKey(testKey(id), []Tag{{"t", "1"}}, ""); err != nil {
					t.Error(err)
					return
				}
				if err := s.TagKey(id, []Tag{{"t", "2"}}, 0); err != nil {
					t.Error(err)
				}
				if _, err := s.GetKey(id); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			if rep, err := s.Verify(); err != nil || len(rep.Failures) != 0 {
				t.Errorf("Verify while writing: %+v %v", rep, err)
			}
		}
	})
	wg.Wait()
	closeT(t, s)
	s, _ = openJournaled(t, fs, auth, o)
	if rep, err := s.Verify(); err != nil || len(rep.Failures) != 0 || !rep.Journal.Checked || rep.Records != 400 {
		t.Fatalf("Verify after the restart: %+v %v", rep, err)
	}
}

// TestJournalOpsCodec round-trips journal entries and refuses malformed ones.
func TestJournalOpsCodec(t *testing.T) {
	t.Parallel()
	d := [32]byte{1, 2, 3}
	ops := []jop{{key: "k/abc", rev: 1}, {key: "a/x", rev: 1 << 60, del: true}, {key: "m/custody/r", rev: 3, digest: &d}}
	got, err := decodeOps(encodeOps(ops))
	if err != nil || len(got) != 3 || got[1] != ops[1] || got[0] != ops[0] || *got[2].digest != d || got[2].key != ops[2].key {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	enc := encodeOps(ops)
	for _, bad := range [][]byte{nil, {2, 0}, enc[:len(enc)-1], append(bytes.Clone(enc), 0), {1, 1, 0x80}, {1, 1, 0, 0, 1}} {
		if _, err := decodeOps(bad); err == nil {
			t.Errorf("decodeOps(%x) accepted", bad)
		}
	}
}

// TestRotationDuringStartComparisons: a main key rotation while VerifyStart's
// comparisons on first read are on (they read the checkpoint as of the
// start, sealed under the version of then) finishes the full pass first, so
// that reads after the old version is retired do not fail.
func TestRotationDuringStartComparisons(t *testing.T) {
	t.Parallel()
	auth := newTestAuth()
	fs := vfs.NewMem()
	s, _ := openJournaled(t, fs, auth, JournalOptions{CheckpointEntries: 1 << 20, CheckpointInterval: time.Hour})
	for i := range 5 {
		if err := s.CreateKey(testKey(testID(i)), nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	closeT(t, s) // checkpoints
	s, _ = openJournaled(t, fs, auth, JournalOptions{CheckpointEntries: 1 << 20, CheckpointInterval: time.Hour})
	if rep, err := s.VerifyStart(0); err != nil || !rep.Partial || !s.Comparing() {
		t.Fatalf("VerifyStart: %+v %v", rep, err)
	}
	auth.rotate("default")
	for {
		n, err := s.Reseal("default")
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	if s.Comparing() {
		t.Fatal("Reseal left the comparisons on first read on")
	}
	auth.retire("default")
	for i := range 5 {
		if _, err := s.GetKey(testID(i)); err != nil {
			t.Fatalf("GetKey after the rotation: %v", err)
		}
	}
}

// TestStartComparisonsConcurrent: reads compared on first use, writes and
// the background Verify run at once without failures (run with -race), and
// Close stops a Verify in progress.
func TestStartComparisonsConcurrent(t *testing.T) {
	t.Parallel()
	auth := newTestAuth()
	fs := vfs.NewMem()
	s, _ := openJournaled(t, fs, auth, JournalOptions{CheckpointEntries: 64, CheckpointInterval: time.Hour})
	const n = 300
	for i := range n {
		if err := s.CreateKey(testKey(testID(i)), []Tag{{"env", "x"}}, fmt.Sprintf("alias/k%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	closeT(t, s)
	s, _ = openJournaled(t, fs, auth, JournalOptions{CheckpointEntries: 64, CheckpointInterval: time.Hour})
	if rep, err := s.VerifyStart(0); err != nil || !rep.Partial || len(rep.Failures) != 0 {
		t.Fatalf("VerifyStart: %+v %v", rep, err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 3 {
				if _, err := s.GetKey(testID(i)); err != nil {
					errs <- fmt.Errorf("GetKey %d: %w", i, err)
					return
				}
				if _, err := s.GetAlias(fmt.Sprintf("alias/k%d", i)); err != nil {
					errs <- fmt.Errorf("GetAlias %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i += 5 {
			if _, err := s.UpdateKey(testID(i), func(k *Key) error { k.Enabled = !k.Enabled; return nil }); err != nil {
				errs <- fmt.Errorf("UpdateKey %d: %w", i, err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		if rep, err := s.Verify(); err != nil || len(rep.Failures) != 0 {
			errs <- fmt.Errorf("background Verify: %+v %w", rep, err)
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s.Comparing() {
		t.Error("still comparing after the full Verify")
	}
	// Close during a Verify: the Verify stops with ErrClosed (or had
	// finished), and Close returns.
	done := make(chan error, 1)
	go func() { _, err := s.Verify(); done <- err }()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil && !errors.Is(err, ErrClosed) {
		t.Errorf("Verify during Close: %v", err)
	}
}

// TestStartComparisonsUseTheJournal: after a power cut the latest states are
// in journal entries the checkpoint has not folded yet; the comparisons on
// first read use them (an older copy of a record written after the
// checkpoint is refused), and a record only the checkpoint covers is
// compared with it.
func TestStartComparisonsUseTheJournal(t *testing.T) {
	t.Parallel()
	auth := newTestAuth()
	var older, olderTag []byte
	fs := crashClone(t, auth, func(s *Store) {
		for i := range 3 {
			if err := s.CreateKey(testKey(testID(i)), []Tag{{"env", "a"}}, ""); err != nil {
				t.Fatal(err)
			}
		}
		olderTag = rawGet(t, s, tagKey(testID(2), "env"))
		if err := s.TagKey(testID(2), []Tag{{"env", "b"}}, 0); err != nil {
			t.Fatal(err)
		}
		if err := s.Checkpoint(); err != nil { // key 2's tag: in the checkpoint
			t.Fatal(err)
		}
		older = rawGet(t, s, keyKey(testID(1)))
		if _, err := s.UpdateKey(testID(1), func(k *Key) error { k.Enabled = false; return nil }); err != nil { // key 1: in the journal
			t.Fatal(err)
		}
	})
	rawEdit(t, fs, func(db *pebble.DB) {
		dbSet(t, db, keyKey(testID(1)), older)
		dbSet(t, db, tagKey(testID(2), "env"), olderTag)
	})
	s, err := Open("keystore", Options{FS: fs, Authenticator: auth, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, s)
	if _, err := s.StartJournal(JournalOptions{Writer: testWriter, CheckpointEntries: 1 << 20, CheckpointInterval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if s.fr.head.lastSeq == s.fr.head.ckptSeq {
		t.Fatal("no journal entry after the checkpoint: the case does not test the journal")
	}
	if rep, err := s.VerifyStart(0); err != nil || !rep.Partial || len(rep.Failures) != 0 {
		t.Fatalf("VerifyStart: %+v %v", rep, err)
	}
	for _, id := range []string{testID(1), testID(2)} {
		if _, err := s.GetKey(id); !errors.Is(err, ErrIntegrity) {
			t.Errorf("GetKey %s (an older copy put back): %v", id, err)
		}
	}
	if _, err := s.GetKey(testID(0)); err != nil {
		t.Errorf("bystander: %v", err)
	}
	rep, err := s.Verify()
	if err != nil || len(rep.Failures) != 2 {
		t.Fatalf("Verify: %+v %v", rep, err)
	}
}
