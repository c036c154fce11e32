package keystore

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// BenchmarkCreateKeyJournal compares synced creates without and with the
// journal, on disk (the fsync dominates) and in memory (the CPU cost of the
// journal entry and head: two more HMACs and Pebble sets per batch).
func BenchmarkCreateKeyJournal(b *testing.B) {
	for _, fsName := range []string{"disk", "mem"} {
		for _, journal := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/journal=%v", fsName, journal), func(b *testing.B) {
				fs, dir := vfs.Default, b.TempDir()
				if fsName == "mem" {
					fs, dir = vfs.NewMem(), "keystore"
				}
				var s *Store
				if journal {
					s, _ = openJournaledIn(b, fs, dir, newTestAuth(), JournalOptions{})
				} else {
					s = openTest(b, fs, dir)
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if err := s.CreateKey(testKey(testID(i)), nil, ""); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}

// populate writes n keys, each with a tag and an alias (4 records), in
// batches of 1000, without the journal.
func populate(t testing.TB, s *Store, n int) {
	t.Helper()
	populateWith(t, s, n, func(w *writer, j int) {
		k := testKey(testID(j))
		val, err := encodeKey(k)
		if err != nil {
			t.Fatal(err)
		}
		alias := fmt.Sprintf("alias/key-%d", j)
		for _, r := range []struct {
			k   []byte
			typ RecordType
			p   string
			v   []byte
		}{{keyKey(k.ID), RecordKey, k.Profile, val}, {tagKey(k.ID, "env"), RecordTag, "", []byte("prod")},
			{aliasKey(alias), RecordAlias, "", encodeAlias(k.ID)}, {byKeyKey(k.ID, alias), RecordAliasIndex, "", nil}} {
			if _, err := w.set(r.k, r.typ, r.p, r.v, 0); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// populateWith has add write the records of keys 0 to n-1 into s, in
// transactions of 1000 keys.
func populateWith(t testing.TB, s *Store, n int, add func(w *writer, j int)) {
	t.Helper()
	for i := 0; i < n; i += 1000 {
		tx, err := s.eng.Begin()
		if err != nil {
			t.Fatal(err)
		}
		w := s.newWriter(tx)
		for j := i; j < min(n, i+1000); j++ {
			add(w, j)
		}
		err = w.commit("populate")
		w.close()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestStartupCostLargeStore measures, on disk, Verify of a large store
// without and with the journal, the first checkpoint (the upgrade), the
// checkpoint's size, a checkpoint after a full journal, and Verify with a
// full journal. It runs only with PAYHSM_STARTUP_KEYS set (the number of
// keys, 4 records each).
func TestStartupCostLargeStore(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PAYHSM_STARTUP_KEYS"))
	if n <= 0 {
		t.Skip("set PAYHSM_STARTUP_KEYS to run")
	}
	dir := t.TempDir()
	auth := newTestAuth()
	s := openTestAuth(t, dir, auth)
	t0 := time.Now()
	populate(t, s, n)
	t.Logf("populate %d keys (%d records): %v", n, 4*n, time.Since(t0))
	closeT(t, s)

	timed := func(what string, fn func()) time.Duration {
		t0 := time.Now()
		fn()
		d := time.Since(t0)
		t.Logf("%s: %v", what, d)
		return d
	}
	verify := func(s *Store) {
		rep, err := s.Verify()
		if err != nil || len(rep.Failures) != 0 {
			t.Fatalf("Verify: %v %v", rep, err)
		}
	}
	s = openTestAuth(t, dir, auth)
	base := timed("Verify without a journal", func() { verify(s) })
	closeT(t, s)
	s = openTestAuth(t, dir, auth)
	timed("StartJournal: first checkpoint (upgrade)", func() {
		if _, err := s.StartJournal(JournalOptions{Writer: testWriter, CheckpointEntries: 1 << 20, CheckpointInterval: time.Hour}); err != nil {
			t.Fatal(err)
		}
	})
	var size, buckets int
	if err := s.eachRecord(s.eng, pfxCkpt, func(_, v []byte) error { size += len(v); buckets++; return nil }); err != nil {
		t.Fatal(err)
	}
	t.Logf("checkpoint: %d buckets (bits %d), %d bytes (%.1f bytes a record)", buckets, s.fr.head.bits, size, float64(size)/float64(4*n))
	closeT(t, s)
	s = openTestAuth(t, dir, auth)
	if _, err := s.StartJournal(JournalOptions{Writer: testWriter, CheckpointEntries: 1 << 20, CheckpointInterval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	timed("rebuilding the expected state alone (checkpoint only)", func() {
		snap, err := s.eng.View()
		if err != nil {
			t.Fatal(err)
		}
		defer closeT(t, snap)
		e, err := s.expectations(snap)
		if err != nil || !e.compare || len(e.state) != 4*n {
			t.Fatalf("expectations: %v", err)
		}
	})
	with := timed("Verify with the journal (checkpoint only)", func() { verify(s) })
	t.Logf("the rollback check adds %.0f%% to Verify", 100*(float64(with)/float64(base)-1))
	// The daemon's start (VerifyStart) on a fresh open, reads on first use
	// while it compares, and the background pass.
	closeT(t, s)
	s = openTestAuth(t, dir, auth)
	if _, err := s.StartJournal(JournalOptions{Writer: testWriter, CheckpointEntries: 1 << 20, CheckpointInterval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	start := timed("VerifyStart (the daemon's start-up check)", func() {
		rep, err := s.VerifyStart(0)
		if err != nil || !rep.Partial || len(rep.Failures) != 0 {
			t.Fatalf("VerifyStart: %+v %v", rep, err)
		}
	})
	t.Logf("VerifyStart takes %.1f%% of Verify", 100*float64(start)/float64(with))
	const reads = 2000
	getKeys := func() {
		for i := range reads {
			if _, err := s.GetKey(testID(i * 7919 % n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	first := timed(fmt.Sprintf("%d GetKey on first use, compared with the journal", reads), getKeys)
	timed("Verify (the background pass)", func() { verify(s) })
	again := timed(fmt.Sprintf("the same %d GetKey after it", reads), getKeys)
	t.Logf("GetKey: %.1f µs compared on first use, %.1f µs after the full pass", float64(first.Microseconds())/reads, float64(again.Microseconds())/reads)
	for i := range defaultCheckpointEntries {
		if _, err := s.UpdateKey(testID(i*7%n), func(k *Key) error { k.Enabled = !k.Enabled; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	timed(fmt.Sprintf("Verify with %d journal entries", defaultCheckpointEntries), func() { verify(s) })
	// Writers during the checkpoint wait only for its commit.
	stop := make(chan struct{})
	worst := make(chan time.Duration)
	go func() {
		var w time.Duration
		for i := 0; ; i++ {
			select {
			case <-stop:
				worst <- w
				return
			default:
			}
			t0 := time.Now()
			if err := s.PutMeta(fmt.Sprintf("during-%d", i), []byte("x")); err != nil {
				t.Error(err)
			}
			w = max(w, time.Since(t0))
		}
	}()
	timed(fmt.Sprintf("checkpoint of %d entries", defaultCheckpointEntries), func() {
		if err := s.Checkpoint(); err != nil {
			t.Fatal(err)
		}
	})
	close(stop)
	t.Logf("slowest write during the checkpoint: %v", <-worst)
	closeT(t, s)
}

// openTestAuth opens the store in dir on disk with auth.
func openTestAuth(t testing.TB, dir string, auth *testAuth) *Store {
	t.Helper()
	s, err := Open(dir, Options{Authenticator: auth, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// BenchmarkGetKeyFirstRead measures GetKey while VerifyStart's comparisons
// are on, each call comparing the key's records with the journal as on a
// first read (compared), against GetKey after the full Verify (verified),
// on 8192 keys of 4 records in memory.
func BenchmarkGetKeyFirstRead(b *testing.B) {
	const n = 8192
	fs := vfs.NewMem()
	s, _ := openJournaled(b, fs, newTestAuth(), JournalOptions{CheckpointEntries: 1 << 20, CheckpointInterval: time.Hour})
	populate(b, s, n)
	if err := s.Checkpoint(); err != nil {
		b.Fatal(err)
	}
	if rep, err := s.VerifyStart(0); err != nil || !rep.Partial {
		b.Fatalf("VerifyStart: %+v %v", rep, err)
	}
	lz := s.fr.lazy.Load()
	for _, mode := range []string{"compared", "verified"} {
		if mode == "verified" {
			if _, err := s.Verify(); err != nil || s.Comparing() {
				b.Fatal(err)
			}
		}
		b.Run(mode, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if mode == "compared" {
					lz.checked.Clear() // a first read every time
					lz.keys.Clear()
				}
				i = (i + 7919) % n
				if _, err := s.GetKey(testID(i)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
