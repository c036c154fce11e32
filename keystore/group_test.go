package keystore

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"payhsm/keystore/kv"
	"payhsm/keystore/kv/pebblekv"
)

// openGrouped opens a store with its journal on a downEngine (queue_test.go)
// over fs: an optimistic engine, so the store groups its creations.
func openGrouped(t *testing.T, fs vfs.FS, auth *testAuth, e *downEngine) *Store {
	t.Helper()
	db, err := pebblekv.Open("keystore", pebblekv.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	e.Engine = db
	s, err := OpenEngine(e, opts(Options{Authenticator: auth}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartJournal(JournalOptions{Writer: testWriter, CheckpointEntries: 1 << 20, CheckpointInterval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	return s
}

// openBehindCommit opens a grouped store whose commits take 20 ms and
// starts a creation: writes made in the next few milliseconds queue behind
// its commit, and so share a group.
func openBehindCommit(t *testing.T) (*Store, *downEngine) {
	t.Helper()
	e := &downEngine{commitDelay: 20 * time.Millisecond}
	s := openGrouped(t, vfs.NewMem(), newTestAuth(), e)
	go func() { _ = s.CreateKey(testKey(testID(1)), nil, "") }()
	time.Sleep(5 * time.Millisecond)
	return s, e
}

// createConcurrently creates the keys ids from one goroutine each, all at
// once, and returns their errors.
func createConcurrently(s *Store, ids []string) []error {
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, id := range ids {
		wg.Go(func() {
			<-start
			errs[i] = s.CreateKey(testKey(id), nil, "")
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// TestGroupedCreatesShareTransactions: on an optimistic engine with the
// journal on, creations queued behind a commit share the next transaction
// and its journal entry; a member that fails (its id exists) gets its own
// error and leaves nothing, the others commit; the journal verifies after a
// reopen, every record expected.
func TestGroupedCreatesShareTransactions(t *testing.T) {
	t.Parallel()
	fs, auth := vfs.NewMem(), newTestAuth()
	e := &downEngine{commitDelay: 20 * time.Millisecond}
	s := openGrouped(t, fs, auth, e)
	for i := range 4 {
		if err := s.CreateKey(testKey(testID(1000+i)), nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	seq0, commits0 := s.JournalSeq(), e.commits.Load()

	var ids []string
	for i := range 40 {
		if i%10 == 0 {
			ids = append(ids, testID(1000+i/10)) // exists
		} else {
			ids = append(ids, testID(i))
		}
	}
	errs := createConcurrently(s, ids)
	created := 0
	for i, err := range errs {
		switch {
		case i%10 == 0 && !errors.Is(err, ErrExists):
			t.Errorf("creating the existing %s: %v, want ErrExists", ids[i], err)
		case i%10 != 0 && err != nil:
			t.Errorf("creating %s: %v", ids[i], err)
		case i%10 != 0:
			created++
		}
	}
	entries, commits := s.JournalSeq()-seq0, e.commits.Load()-commits0
	if entries >= uint64(created) || commits >= int64(created) {
		t.Errorf("%d creations made %d journal entries in %d commits: not grouped", created, entries, commits)
	}
	for i, id := range ids {
		k, err := s.GetKey(id)
		if err != nil {
			t.Fatalf("GetKey %s: %v", id, err)
		}
		if want := testKey(id).KeyBlock; i%10 == 0 && k.Revision != 1 || k.KeyBlock != want {
			t.Errorf("%s: revision %d, block %q", id, k.Revision, k.KeyBlock)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	r := openGrouped(t, fs, auth, &downEngine{})
	defer closeT(t, r)
	rep, err := r.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Failures) != 0 || !rep.Journal.Checked {
		t.Errorf("Verify after the reopen: failures %v, journal %+v", rep.Failures, rep.Journal)
	}
	if rep.ByType[RecordKey] != 40 {
		t.Errorf("%d key records, want 40", rep.ByType[RecordKey])
	}
}

// TestGroupedCreatesRetryAndSplit: a group whose commit conflicts runs
// again (every member succeeds, the conflict counted), and a group too
// large for the engine runs its members one at a time.
func TestGroupedCreatesRetryAndSplit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		refuse func(n, writes int) error
		check  func(t *testing.T, s *Store)
	}{
		{"conflict", func(n, _ int) error {
			if n == 2 { // the first commit after the warm-up
				return fmt.Errorf("test: %w", kv.ErrConflict)
			}
			return nil
		}, func(t *testing.T, s *Store) {
			if s.Conflicts() == 0 {
				t.Error("no conflict counted")
			}
		}},
		{"too large", func(_, writes int) error {
			if writes > 3 { // a creation is its key record, the entry and the head
				return fmt.Errorf("test: %w", kv.ErrTooLarge)
			}
			return nil
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := &downEngine{commitDelay: 20 * time.Millisecond, refuse: tc.refuse}
			s := openGrouped(t, vfs.NewMem(), newTestAuth(), e)
			defer closeT(t, s)
			if err := s.CreateKey(testKey(testID(999)), nil, ""); err != nil { // commit 1: the others queue behind the next
				t.Fatal(err)
			}
			ids := make([]string, 12)
			for i := range ids {
				ids[i] = testID(i)
			}
			for i, err := range createConcurrently(s, ids) {
				if err != nil {
					t.Errorf("creating %s: %v", ids[i], err)
				}
			}
			for _, id := range ids {
				if _, err := s.GetKey(id); err != nil {
					t.Errorf("GetKey %s: %v", id, err)
				}
			}
			if tc.check != nil {
				tc.check(t, s)
			}
			rep, err := s.Verify()
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Failures) != 0 {
				t.Errorf("Verify: %v", rep.Failures)
			}
		})
	}
}

// TestGroupedWriteThatScans: a grouped write that scans leaves its group
// and runs alone.
func TestGroupedWriteThatScans(t *testing.T) {
	t.Parallel()
	s := openGrouped(t, vfs.NewMem(), newTestAuth(), &downEngine{})
	defer closeT(t, s)
	if err := s.CreateKey(testKey(testID(1)), nil, ""); err != nil {
		t.Fatal(err)
	}
	scanned := 0
	err := s.updateGrouped("scan and write", func(w *writer) error {
		scanned = 0
		if err := w.b.Scan(keyKey(""), nil, func(_, _ []byte) (bool, error) { scanned++; return true, nil }); err != nil {
			return err
		}
		_, err := w.set(metaKey("grouped-scan"), RecordMeta, "", []byte("x"), 0)
		return err
	})
	if err != nil || scanned == 0 {
		t.Fatalf("grouped write that scans: %v, %d records scanned", err, scanned)
	}
}

// TestGroupedMemberFailureLeavesNothing: members of one group that write
// and then fail leave none of their writes; the others' commit.
func TestGroupedMemberFailureLeavesNothing(t *testing.T) {
	t.Parallel()
	s, e := openBehindCommit(t)
	defer closeT(t, s)
	commits0 := e.commits.Load()
	refused := errors.New("refused after writing")
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Go(func() {
			errs[i] = s.updateGrouped("meta", func(w *writer) error {
				if _, err := w.set(metaKey(fmt.Sprintf("grouped-%d", i)), RecordMeta, "", []byte("x"), 0); err != nil {
					return err
				}
				if i%2 == 1 {
					return refused
				}
				return nil
			})
		})
	}
	wg.Wait()
	if n := e.commits.Load() - commits0; n >= 5 {
		t.Errorf("5 writes in %d commits: not grouped", n)
	}
	for i, err := range errs {
		_, gerr := s.GetMeta(fmt.Sprintf("grouped-%d", i))
		if i%2 == 1 && (!errors.Is(err, refused) || !errors.Is(gerr, ErrNotFound)) {
			t.Errorf("member %d: %v; its write: %v, want absent", i, err, gerr)
		}
		if i%2 == 0 && (err != nil || gerr != nil) {
			t.Errorf("member %d: %v; its write: %v", i, err, gerr)
		}
	}
}

// TestGroupedMemberPanics: a member whose function panics panics in its own
// goroutine, as it would alone; the others commit, and later writes still
// find a leader.
func TestGroupedMemberPanics(t *testing.T) {
	t.Parallel()
	s, _ := openBehindCommit(t)
	defer closeT(t, s)
	var wg sync.WaitGroup
	errs, panics := make([]error, 6), make([]any, 6)
	for i := range errs {
		wg.Go(func() {
			defer func() { panics[i] = recover() }()
			errs[i] = s.updateGrouped("meta", func(w *writer) error {
				if i == 3 {
					panic("member 3")
				}
				_, err := w.set(metaKey(fmt.Sprintf("panics-%d", i)), RecordMeta, "", []byte("x"), 0)
				return err
			})
		})
	}
	wg.Wait()
	for i := range errs {
		_, gerr := s.GetMeta(fmt.Sprintf("panics-%d", i))
		switch {
		case i == 3 && panics[i] != "member 3":
			t.Errorf("member 3: recovered %v, error %v", panics[i], errs[i])
		case i != 3 && (panics[i] != nil || errs[i] != nil || gerr != nil):
			t.Errorf("member %d: panic %v, error %v, its write %v", i, panics[i], errs[i], gerr)
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.CreateKey(testKey(testID(2)), nil, "") }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("a creation after the panic: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a creation after the panic found no leader")
	}
}
