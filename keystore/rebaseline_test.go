package keystore

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"payhsm/internal/etcdtest"
	"payhsm/keystore/kv"
	"payhsm/keystore/kv/etcdkv"
	"payhsm/keystore/kv/pebblekv"
)

// limitedEngine is a Pebble engine that reports tight transaction limits
// and refuses a commit beyond them with kv.ErrTooLarge (as etcdkv does),
// counts the commits that write, and fails the failAt-th of them (an
// interruption between two transactions: the process dies there).
type limitedEngine struct {
	kv.Engine
	lim     kv.Limits
	commits atomic.Int64
	failAt  int64 // 0: none
}

var errInjected = errors.New("injected: the process died before this commit")

func (e *limitedEngine) Limits() kv.Limits { return e.lim }

func (e *limitedEngine) Begin() (kv.Txn, error) {
	tx, err := e.Engine.Begin()
	if err != nil {
		return nil, err
	}
	return &limitedTxn{Txn: tx, e: e, keys: map[string]int{}}, nil
}

type limitedTxn struct {
	kv.Txn
	e    *limitedEngine
	keys map[string]int // bytes written per key (the last write counts)
}

func (t *limitedTxn) Set(k, v []byte) error {
	t.keys[string(k)] = len(k) + len(v)
	return t.Txn.Set(k, v)
}
func (t *limitedTxn) Delete(k []byte) error { t.keys[string(k)] = len(k); return t.Txn.Delete(k) }

func (t *limitedTxn) Commit() error {
	if len(t.keys) == 0 {
		return t.Txn.Commit()
	}
	bytes := 0
	for _, n := range t.keys {
		bytes += n
	}
	if len(t.keys) > t.e.lim.MaxOps || bytes > t.e.lim.MaxBytes {
		t.Discard()
		return fmt.Errorf("limited engine: %d writes, %d bytes: %w", len(t.keys), bytes, kv.ErrTooLarge)
	}
	if t.e.commits.Add(1) == t.e.failAt {
		t.Discard()
		return errInjected
	}
	return t.Txn.Commit()
}

// rebaselineFixture is a store of n keys (each with two tags and an alias)
// written without a journal (a store of an older build, or a restored
// one), in "keystore" on a memory file system.
func rebaselineFixture(t *testing.T, auth *testAuth, n int) vfs.FS {
	t.Helper()
	fs := vfs.NewMem()
	s, err := Open("keystore", Options{FS: fs, Authenticator: auth, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := s.CreateKey(testKey(testID(i)), []Tag{{"a", fmt.Sprint(i)}, {"b", "x"}}, fmt.Sprintf("alias/r%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	closeT(t, s)
	return fs
}

// openLimited opens the store in "keystore" on fs through a limitedEngine
// (8 writes and 16 KiB a transaction) that fails its failAt-th commit.
func openLimited(t *testing.T, fs vfs.FS, auth *testAuth, failAt int64) (*Store, *limitedEngine) {
	t.Helper()
	db, err := pebblekv.Open("keystore", pebblekv.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	e := &limitedEngine{Engine: db, lim: kv.Limits{MaxOps: 8, MaxBytes: 16 << 10}, failAt: failAt}
	s, err := OpenEngine(e, Options{Authenticator: auth, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	return s, e
}

// verifyClean requires Verify to find nothing and every fixture key.
func verifyClean(t *testing.T, s *Store, n int, what string) {
	t.Helper()
	rep, err := s.Verify()
	if err != nil || len(rep.Failures) != 0 || !rep.Journal.Checked || rep.Journal.Damaged {
		t.Fatalf("%s: Verify: %+v %v", what, rep, err)
	}
	for i := range n {
		if _, err := s.GetKey(testID(i)); err != nil {
			t.Fatalf("%s: key %d: %v", what, i, err)
		}
	}
}

// TestRebaselineInSteps: the first checkpoint of a store too large for one
// transaction of its engine (etcd: 128 writes and 1.5 MiB by default) is
// written in steps, each within the limits, and is a valid journal: the
// next start continues it and Verify finds nothing. So is accept-restore's
// rebaseline of such a store.
func TestRebaselineInSteps(t *testing.T) {
	t.Parallel()
	const n = 300
	auth := newTestAuth()
	fs := rebaselineFixture(t, auth, n)

	s, e := openLimited(t, fs, auth, 0)
	seq, err := s.StartJournal(JournalOptions{Writer: testWriter})
	if err != nil {
		t.Fatalf("first checkpoint of %d keys on an engine of 8 writes a transaction: %v", n, err)
	}
	if c := e.commits.Load(); c < 4 { // the head dropped, at least two steps, the new head
		t.Fatalf("the first checkpoint took %d transactions: the test does not exercise the steps", c)
	}
	t.Logf("first checkpoint of %d keys: %d transactions", n, e.commits.Load())
	verifyClean(t, s, n, "after the first checkpoint")
	if err := s.CreateKey(testKey(testID(n)), nil, ""); err != nil {
		t.Fatal(err)
	}
	if s.JournalSeq() != seq+1 {
		t.Fatalf("journal at %d after a write, want %d", s.JournalSeq(), seq+1)
	}
	seq = s.JournalSeq()
	closeT(t, s)

	s, _ = openLimited(t, fs, auth, 0)
	if _, err = s.StartJournal(JournalOptions{Writer: testWriter, Anchor: seq}); err != nil {
		t.Fatalf("the next start: %v", err)
	}
	verifyClean(t, s, n+1, "the next start")
	closeT(t, s)

	s, e = openLimited(t, fs, auth, 0)
	seq2, err := s.StartJournal(JournalOptions{Writer: testWriter, Anchor: seq, Mode: JournalRebaseline})
	if err != nil || seq2 != seq+1 {
		t.Fatalf("accept-restore: %d %v", seq2, err)
	}
	if c := e.commits.Load(); c < 4 {
		t.Fatalf("accept-restore took %d transactions", c)
	}
	verifyClean(t, s, n+1, "after accept-restore")
	closeT(t, s)
	s, _ = openLimited(t, fs, auth, 0)
	if _, err := s.StartJournal(JournalOptions{Writer: testWriter, Anchor: seq2}); err != nil {
		t.Fatalf("the start after accept-restore: %v", err)
	}
	verifyClean(t, s, n+1, "the start after accept-restore")
	closeT(t, s)
}

// TestRebaselineInStepsInterrupted: a first checkpoint, or an
// accept-restore, interrupted before any one of its transactions leaves a
// store the next start handles: the first checkpoint is written again at
// the next start; an interrupted accept-restore is refused (the writer has
// no journal, or the old one if nothing was changed yet) until the
// operator runs it again, which succeeds. Nothing is lost either way.
func TestRebaselineInStepsInterrupted(t *testing.T) {
	t.Parallel()
	const n = 120
	auth := newTestAuth()
	base := rebaselineFixture(t, auth, n)
	clone := func() vfs.FS {
		fs := vfs.NewMem()
		if _, err := vfs.Clone(base, fs, "keystore", "keystore"); err != nil {
			t.Fatal(err)
		}
		return fs
	}
	// A clean run counts the transactions of the first checkpoint.
	fs := clone()
	s, e := openLimited(t, fs, auth, 0)
	if _, err := s.StartJournal(JournalOptions{Writer: testWriter}); err != nil {
		t.Fatal(err)
	}
	steps := e.commits.Load()
	if err := s.CreateKey(testKey(testID(n)), nil, ""); err != nil {
		t.Fatal(err)
	}
	anchor := s.JournalSeq() // > 0: the appliance's token holds it
	closeT(t, s)
	if steps < 4 {
		t.Fatalf("the first checkpoint took %d transactions", steps)
	}
	journaled := fs // a store with a journal up to anchor, for accept-restore

	for failAt := int64(1); failAt <= steps; failAt++ {
		// The first checkpoint, interrupted; the next start writes it.
		fs := clone()
		s, _ := openLimited(t, fs, auth, failAt)
		if _, err := s.StartJournal(JournalOptions{Writer: testWriter}); !errors.Is(err, errInjected) {
			t.Fatalf("first checkpoint interrupted at transaction %d: %v", failAt, err)
		}
		closeT(t, s)
		s, _ = openLimited(t, fs, auth, 0)
		if _, err := s.StartJournal(JournalOptions{Writer: testWriter}); err != nil {
			t.Fatalf("the start after the first checkpoint was interrupted at transaction %d: %v", failAt, err)
		}
		verifyClean(t, s, n, fmt.Sprintf("first checkpoint interrupted at %d, then written", failAt))
		closeT(t, s)

		// Accept-restore, interrupted; the operator runs it again.
		fs = vfs.NewMem()
		if _, err := vfs.Clone(journaled, fs, "keystore", "keystore"); err != nil {
			t.Fatal(err)
		}
		s, _ = openLimited(t, fs, auth, failAt)
		if _, err := s.StartJournal(JournalOptions{Writer: testWriter, Anchor: anchor, Mode: JournalRebaseline}); !errors.Is(err, errInjected) {
			t.Fatalf("accept-restore interrupted at transaction %d: %v", failAt, err)
		}
		closeT(t, s)
		s, _ = openLimited(t, fs, auth, 0)
		_, err := s.StartJournal(JournalOptions{Writer: testWriter, Anchor: anchor})
		var re *RollbackError
		switch {
		case failAt == 1 && err != nil: // nothing was changed: the old journal serves
			t.Fatalf("accept-restore interrupted before its first transaction, then a start: %v", err)
		case failAt > 1 && (!errors.As(err, &re) || !re.NoJournal):
			t.Fatalf("accept-restore interrupted at transaction %d, then a start: %v, want the refusal of a store without a journal", failAt, err)
		}
		closeT(t, s)
		s, _ = openLimited(t, fs, auth, 0)
		seq, err := s.StartJournal(JournalOptions{Writer: testWriter, Anchor: anchor, Mode: JournalRebaseline})
		if err != nil || seq <= anchor {
			t.Fatalf("accept-restore run again after an interruption at %d: %d %v", failAt, seq, err)
		}
		verifyClean(t, s, n, fmt.Sprintf("accept-restore interrupted at %d, then run again", failAt))
		closeT(t, s)
	}
}

// TestFirstCheckpointOfLargeStoreOnEtcd: on a real 3-member etcd cluster
// with etcd's default transaction limits (128 operations, 1.5 MiB), the
// first checkpoint of a store of 50,000 keys (written without a journal,
// as by an older build or restored from a backup) is written in steps;
// the next start continues the journal and Verify checks every record.
func TestFirstCheckpointOfLargeStoreOnEtcd(t *testing.T) {
	t.Parallel()
	if testing.Short() || raceEnabled {
		t.Skip("50,000 keys on etcd: not in -short, nor under the race detector (TestRebaselineInSteps races the steps)")
	}
	const n = 50_000
	c := etcdtest.Start(t, etcdtest.Options{Args: []string{"--unsafe-no-fsync"}})
	auth := newTestAuth()
	open := func() *Store {
		e, err := etcdkv.Open(etcdkv.Config{Endpoints: c.Endpoints(), Prefix: "/keystore-large/", RequestTimeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		s, err := OpenEngine(e, Options{Authenticator: auth, Namespace: "default"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	// Written 100 key records a transaction (the store's own CreateKey would
	// take minutes on this machine).
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			for b := g; b*100 < n; b += 4 {
				err := s.update("bulk", func(w *writer) error {
					for i := b * 100; i < min(n, (b+1)*100); i++ {
						k := testKey(testID(i))
						val, err := encodeKey(k)
						if err != nil {
							return err
						}
						if _, err := w.set(keyKey(k.ID), RecordKey, k.Profile, val, 0); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d keys written in %v", n, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if _, err := s.StartJournal(JournalOptions{Writer: testWriter}); err != nil {
		t.Fatalf("first checkpoint of %d keys on etcd: %v", n, err)
	}
	t.Logf("first checkpoint in %v", time.Since(start).Round(time.Millisecond))
	if err := s.CreateKey(testKey(testID(n)), []Tag{{"a", "b"}}, "alias/after"); err != nil {
		t.Fatal(err)
	}
	anchor := s.JournalSeq()
	closeT(t, s)
	s = open()
	defer closeT(t, s)
	if _, err := s.StartJournal(JournalOptions{Writer: testWriter, Anchor: anchor}); err != nil {
		t.Fatalf("the next start: %v", err)
	}
	start = time.Now()
	rep, err := s.Verify()
	if err != nil || len(rep.Failures) != 0 || !rep.Journal.Checked || rep.Journal.Damaged {
		t.Fatalf("Verify: %+v %v", rep, err)
	}
	if st, err := s.Stats(); err != nil || st.Keys != n+1 {
		t.Fatalf("Stats: %+v %v", st, err)
	}
	t.Logf("Verify of %d keys in %v", n+1, time.Since(start).Round(time.Millisecond))
}
