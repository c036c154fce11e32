package pebblekv

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"payhsm/keystore/kv"
	"payhsm/keystore/kv/kvtest"
)

// allPrefixes indexes every key: the 256 one-byte prefixes.
func allPrefixes() [][]byte {
	out := make([][]byte, 256)
	for i := range out {
		out[i] = []byte{byte(i)}
	}
	return out
}

// TestConformanceIndexed runs the engine contract with every key indexed:
// no answer of the engine may change.
func TestConformanceIndexed(t *testing.T) {
	t.Parallel()
	kvtest.Run(t, kvtest.Env{New: func(t *testing.T) kv.Engine {
		d, err := Open("db", Options{FS: vfs.NewMem(), IndexedPrefixes: allPrefixes()})
		if err != nil {
			t.Fatal(err)
		}
		waitIndexed(t, d)
		return d
	}})
}

// waitIndexed waits for d's presence index to have loaded.
func waitIndexed(t *testing.T, d *DB) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !d.IndexLoaded(); {
		if time.Now().After(deadline) {
			t.Fatal("the presence index did not load")
		}
		time.Sleep(time.Millisecond)
	}
}

func commitTxn(t *testing.T, d *DB, fn func(tx kv.Txn) error) {
	t.Helper()
	tx, err := d.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := fn(tx); err != nil {
		tx.Discard()
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// reopenIndexed closes d and opens the database in fs again with the keys
// under "k/" indexed.
func reopenIndexed(t *testing.T, d *DB, fs vfs.FS) *DB {
	t.Helper()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := Open("db", Options{FS: fs, IndexedPrefixes: [][]byte{[]byte("k/")}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// txnGet reads key in a transaction of its own.
func txnGet(t *testing.T, d *DB, key []byte) ([]byte, bool) {
	t.Helper()
	tx, err := d.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Discard()
	v, ok, err := tx.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	return v, ok
}

// TestPresenceIndex: with key records indexed, every key the database
// holds is found, whether it was written before Open (the scan) or after
// (a transaction's Set), and a key under the indexed prefix that is absent
// is answered without a read; keys under other prefixes, and keys the
// index holds that are absent (deleted, or set by a discarded transaction)
// are read. Before the scan has finished every read goes to the database.
func TestPresenceIndex(t *testing.T) {
	t.Parallel()
	fs := vfs.NewMem()
	d, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	const n = 3*presencePage + 17 // several pages, the last one short
	for i := 0; i < n; i += 1000 {
		commitTxn(t, d, func(tx kv.Txn) error {
			for j := i; j < min(i+1000, n); j++ {
				if err := tx.Set(fmt.Appendf(nil, "k/%06d", j), fmt.Appendf(nil, "v%d", j)); err != nil {
					return err
				}
			}
			return tx.Set([]byte("x/other"), []byte("o"))
		})
	}
	d = reopenIndexed(t, d, fs)
	defer func() { _ = d.Close() }()
	waitIndexed(t, d)
	if got := d.idx.size(); got != n {
		t.Fatalf("index holds %d keys, want %d", got, n)
	}
	for i := range n {
		v, ok := txnGet(t, d, fmt.Appendf(nil, "k/%06d", i))
		if !ok || string(v) != fmt.Sprintf("v%d", i) {
			t.Fatalf("k/%06d: %q %v", i, v, ok)
		}
	}
	reads := d.dbReads.Load()
	for i := n; i < n+500; i++ {
		if _, ok := txnGet(t, d, fmt.Appendf(nil, "k/%06d", i)); ok {
			t.Fatalf("k/%06d found", i)
		}
	}
	if got := d.dbReads.Load() - reads; got > 2 { // two hash collisions at most, in practice none
		t.Fatalf("%d of 500 absent indexed keys read the database", got)
	}

	// Other prefixes are read.
	reads = d.dbReads.Load()
	if v, ok := txnGet(t, d, []byte("x/other")); !ok || string(v) != "o" {
		t.Fatalf("x/other: %q %v", v, ok)
	}
	if _, ok := txnGet(t, d, []byte("x/none")); ok {
		t.Fatal("x/none found")
	}
	if got := d.dbReads.Load() - reads; got != 2 {
		t.Fatalf("%d reads for two keys outside the index", got)
	}

	// A key written after Open is found, also by the next transaction of
	// its own group; a deleted one, and one a discarded transaction set, are
	// read and absent.
	commitTxn(t, d, func(tx kv.Txn) error { return tx.Set([]byte("k/new"), []byte("n")) })
	if v, ok := txnGet(t, d, []byte("k/new")); !ok || string(v) != "n" {
		t.Fatalf("k/new: %q %v", v, ok)
	}
	commitTxn(t, d, func(tx kv.Txn) error { return tx.Delete([]byte("k/000001")) })
	tx, err := d.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Set([]byte("k/discarded"), []byte("d")); err != nil {
		t.Fatal(err)
	}
	tx.Discard()
	reads = d.dbReads.Load()
	for _, k := range []string{"k/000001", "k/discarded"} {
		if _, ok := txnGet(t, d, []byte(k)); ok {
			t.Fatalf("%s found", k)
		}
	}
	if got := d.dbReads.Load() - reads; got != 2 {
		t.Fatalf("%d reads for two keys the index holds", got)
	}
}

// TestPresenceIndexWhileLoading: transactions that write and read while the
// index loads (a store of many keys, writers from the first instant) see
// every key: those written before Open and those written meanwhile, during
// the scan and after it.
func TestPresenceIndexWhileLoading(t *testing.T) {
	t.Parallel()
	fs := vfs.NewMem()
	d, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	const old = 60_000
	for i := 0; i < old; i += 5000 {
		commitTxn(t, d, func(tx kv.Txn) error {
			for j := i; j < i+5000; j++ {
				if err := tx.Set(fmt.Appendf(nil, "k/old%06d", j), []byte("o")); err != nil {
					return err
				}
			}
			return nil
		})
	}
	d = reopenIndexed(t, d, fs)
	defer func() { _ = d.Close() }()
	sawLoading := !d.idx.complete.Load()

	var wg sync.WaitGroup
	written := make([][]string, 4)
	for w := range written {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				loaded := d.idx.complete.Load()
				k := fmt.Sprintf("k/new%d-%06d", w, i)
				tx, err := d.Begin()
				if err != nil {
					t.Error(err)
					return
				}
				// The check a creation makes: absent, then written.
				if _, ok, err := tx.Get([]byte(k)); err != nil || ok {
					t.Errorf("%s before its write: %v %v", k, ok, err)
				}
				if err := tx.Set([]byte(k), []byte("n")); err != nil {
					t.Error(err)
				}
				if err := tx.Commit(); err != nil {
					t.Error(err)
					return
				}
				written[w] = append(written[w], k)
				if loaded && i > 200 {
					return
				}
			}
		}()
	}
	wg.Wait()
	waitIndexed(t, d)
	if !sawLoading {
		t.Log("the index had loaded before the first write: the concurrent part was not exercised")
	}
	for i := 0; i < old; i += 7 {
		if _, ok := txnGet(t, d, fmt.Appendf(nil, "k/old%06d", i)); !ok {
			t.Fatalf("k/old%06d not found", i)
		}
	}
	for _, ks := range written {
		for _, k := range ks {
			if _, ok := txnGet(t, d, []byte(k)); !ok {
				t.Fatalf("%s not found", k)
			}
		}
	}
}

// TestPresenceIndexDifferential: random writes, deletes and reads on two
// databases, one with every key indexed, answer alike, before, during and
// after the index loads.
func TestPresenceIndexDifferential(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	fsA, fsB := vfs.NewMem(), vfs.NewMem()
	open := func(fs vfs.FS, idx bool) *DB {
		o := Options{FS: fs}
		if idx {
			o.IndexedPrefixes = [][]byte{[]byte("k/"), []byte("a/")}
		}
		d, err := Open("db", o)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	key := func() []byte {
		return fmt.Appendf(nil, "%s/%d", []string{"k", "a", "z"}[rng.IntN(3)], rng.IntN(3000))
	}
	a, b := open(fsA, false), open(fsB, true)
	for round := range 6 {
		for range 300 {
			ta, err := a.Begin()
			if err != nil {
				t.Fatal(err)
			}
			tb, err := b.Begin()
			if err != nil {
				t.Fatal(err)
			}
			for range 1 + rng.IntN(8) {
				k := key()
				switch rng.IntN(3) {
				case 0:
					v := fmt.Appendf(nil, "%d", rng.Uint64())
					if err := errors.Join(ta.Set(k, v), tb.Set(k, v)); err != nil {
						t.Fatal(err)
					}
				case 1:
					if err := errors.Join(ta.Delete(k), tb.Delete(k)); err != nil {
						t.Fatal(err)
					}
				default:
					va, oka, erra := ta.Get(k)
					vb, okb, errb := tb.Get(k)
					if erra != nil || errb != nil || oka != okb || !bytes.Equal(va, vb) {
						t.Fatalf("round %d, %s: %q %v %v against %q %v %v", round, k, va, oka, erra, vb, okb, errb)
					}
				}
			}
			if rng.IntN(5) == 0 {
				ta.Discard()
				tb.Discard()
				continue
			}
			if err := errors.Join(ta.Commit(), tb.Commit()); err != nil {
				t.Fatal(err)
			}
		}
		if err := errors.Join(a.Close(), b.Close()); err != nil {
			t.Fatal(err)
		}
		a, b = open(fsA, false), open(fsB, true)
	}
	waitIndexed(t, b)
	if err := errors.Join(a.Close(), b.Close()); err != nil {
		t.Fatal(err)
	}
}

// TestPresenceIndexClose: closing the database while its index loads stops
// the scan and closes cleanly.
func TestPresenceIndexClose(t *testing.T) {
	t.Parallel()
	fs := vfs.NewMem()
	d, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	commitTxn(t, d, func(tx kv.Txn) error {
		for i := range 20_000 {
			if err := tx.Set(fmt.Appendf(nil, "k/%06d", i), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		d, err := Open("db", Options{FS: fs, IndexedPrefixes: [][]byte{[]byte("k/")}})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		d.idx.close() // again: no panic, no wait
	}
}

func TestPrefixEnd(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want []byte }{
		{[]byte("k/"), []byte("k0")},
		{[]byte{'a', 0xff}, []byte("b")},
		{[]byte{0xff, 0xff}, nil},
	} {
		if got := prefixEnd(c.in); !bytes.Equal(got, c.want) {
			t.Errorf("prefixEnd(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// BenchmarkPresenceLoad: the index's load at Open of a database of 200,000
// key records, per key: the scan's time and the heap the index holds.
//
//	go test -run '^$' -bench PresenceLoad -benchtime 3x ./keystore/kv/pebblekv/
func BenchmarkPresenceLoad(b *testing.B) {
	const n = 200_000
	fs := vfs.NewMem()
	d, err := Open("db", Options{FS: fs})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i += 10_000 {
		tx, err := d.Begin()
		if err != nil {
			b.Fatal(err)
		}
		for j := i; j < i+10_000; j++ {
			if err := tx.Set(fmt.Appendf(nil, "k/%016x", rand.Uint64()), make([]byte, 300)); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		b.Fatal(err)
	}
	var heap float64
	b.ResetTimer()
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		d, err := Open("db", Options{FS: fs, IndexedPrefixes: [][]byte{[]byte("k/")}})
		if err != nil {
			b.Fatal(err)
		}
		<-d.idx.done
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap = float64(after.HeapAlloc) - float64(before.HeapAlloc)
		if got := d.idx.size(); got != n {
			b.Fatalf("%d keys indexed, want %d", got, n)
		}
		runtime.KeepAlive(d.idx)
		b.StopTimer()
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/key")
	b.ReportMetric(heap/n, "heap-B/key")
}
