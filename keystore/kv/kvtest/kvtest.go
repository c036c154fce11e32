// Package kvtest is the conformance suite of the kv.Engine contract: every
// engine's tests call Run with a way to open fresh engines, and the same
// checks run unchanged against each. The store-level suite (the keystore
// package's TestConformance) runs on top of it; this one pins what the
// store relies on from an engine: ordering and bounds of scans across
// pages, consistent views, atomic and isolated transactions, conditional
// writes under concurrency, and limits. Only tests import it.
package kvtest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"payhsm/keystore/kv"
)

// Env opens engines for the suite.
type Env struct {
	// New opens an engine on fresh, empty storage; the suite closes it.
	New func(t *testing.T) kv.Engine
	// Shared, when set, opens a second engine on the same storage as e (a
	// second process of a fleet); engines that one process holds
	// exclusively leave it nil.
	Shared func(t *testing.T, e kv.Engine) kv.Engine
}

// Run runs the suite.
func Run(t *testing.T, env Env) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T, Env)
	}{
		{"GetSetDelete", testGetSetDelete},
		{"ScanOrderBoundsPaging", testScan},
		{"ViewIsASnapshot", testView},
		{"TxnIsAtomic", testAtomic},
		{"TxnLastWriteWins", testLastWriteWins},
		{"CreateIfAbsentConcurrently", testCreateIfAbsent},
		{"CounterUnderContention", testCounter},
		{"ScannedRangeConflicts", testScannedRange},
		{"Limits", testLimits},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, env)
		})
	}
}

func open(t *testing.T, env Env) kv.Engine {
	t.Helper()
	e := env.New(t)
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return e
}

// commit runs fn in a transaction and commits it, running it again on a
// conflict (as the store does).
func commit(t *testing.T, e kv.Engine, fn func(tx kv.Txn) error) error {
	t.Helper()
	for attempt := 0; ; attempt++ {
		tx, err := e.Begin()
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			tx.Discard()
			return err
		}
		err = tx.Commit()
		tx.Discard()
		if !errors.Is(err, kv.ErrConflict) || attempt > 200 {
			return err
		}
	}
}

func set(t *testing.T, e kv.Engine, kvs ...string) {
	t.Helper()
	err := commit(t, e, func(tx kv.Txn) error {
		for i := 0; i < len(kvs); i += 2 {
			if err := tx.Set([]byte(kvs[i]), []byte(kvs[i+1])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustGet(t *testing.T, r kv.Reader, k string) (string, bool) {
	t.Helper()
	v, ok, err := r.Get([]byte(k))
	if err != nil {
		t.Fatal(err)
	}
	return string(v), ok
}

func keys(t *testing.T, r kv.Reader, lo, hi []byte, stopAfter int) []string {
	t.Helper()
	var out []string
	err := r.Scan(lo, hi, func(k, v []byte) (bool, error) {
		out = append(out, string(k)+"="+string(v))
		return stopAfter <= 0 || len(out) < stopAfter, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func testGetSetDelete(t *testing.T, env Env) {
	e := open(t, env)
	if _, ok := mustGet(t, e, "a"); ok {
		t.Fatal("a fresh engine has a key")
	}
	set(t, e, "a", "1", "b", "")
	if v, ok := mustGet(t, e, "a"); !ok || v != "1" {
		t.Fatalf("a = %q %v", v, ok)
	}
	if v, ok := mustGet(t, e, "b"); !ok || v != "" {
		t.Fatalf("an empty value reads %q %v", v, ok)
	}
	err := commit(t, e, func(tx kv.Txn) error { return errors.Join(tx.Delete([]byte("a")), tx.Delete([]byte("never"))) })
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mustGet(t, e, "a"); ok {
		t.Fatal("a deleted key reads")
	}
	// A value returned by Get is the caller's.
	v, _, _ := e.Get([]byte("b"))
	v = append(v, 'x')
	_ = v
	if v, _ := mustGet(t, e, "b"); v != "" {
		t.Fatalf("b changed to %q", v)
	}
}

// testScan: keys come in byte order within [lo, hi), across more keys than
// any engine's page, and a scan stops when asked.
func testScan(t *testing.T, env Env) {
	e := open(t, env)
	const n = 600 // more than etcdkv's page of 256
	var want []string
	var kvs []string
	for i := range n {
		k := fmt.Sprintf("r/%04d", i)
		kvs = append(kvs, k, fmt.Sprint(i))
		want = append(want, k+"="+fmt.Sprint(i))
	}
	for i := 0; i < len(kvs); i += 200 { // 100 writes: within any engine's transaction limits
		set(t, e, kvs[i:min(i+200, len(kvs))]...)
	}
	set(t, e, "q", "before", "r0", "after", "r/\xff", "high")
	if got := keys(t, e, []byte("r/"), []byte("r0"), 0); !slices.Equal(got, append(slices.Clone(want), "r/\xff=high")) {
		t.Fatalf("scan of r/: %d keys, first %v", len(got), got[:min(3, len(got))])
	}
	if got := keys(t, e, []byte("r/0100"), []byte("r/0400"), 0); !slices.Equal(got, want[100:400]) {
		t.Fatalf("bounded scan: %d keys", len(got))
	}
	if got := keys(t, e, []byte("r/0290"), []byte("r0"), 20); !slices.Equal(got, want[290:310]) {
		t.Fatalf("stopped scan: %v", got)
	}
	all := keys(t, e, nil, nil, 0)
	if len(all) != n+3 || all[0] != "q=before" || all[len(all)-1] != "r0=after" {
		t.Fatalf("scan of everything: %d keys", len(all))
	}
	if got := keys(t, e, []byte("s"), nil, 0); len(got) != 0 {
		t.Fatalf("scan past the end: %v", got)
	}
	errStop := errors.New("stop")
	if err := e.Scan(nil, nil, func(_, _ []byte) (bool, error) { return true, errStop }); !errors.Is(err, errStop) {
		t.Fatalf("the callback's error: %v", err)
	}
}

// testView: a view sees the engine as of when it was made, also across
// pages.
func testView(t *testing.T, env Env) {
	e := open(t, env)
	var kvs []string
	for i := range 300 {
		kvs = append(kvs, fmt.Sprintf("v/%03d", i), "old")
	}
	for i := 0; i < len(kvs); i += 200 {
		set(t, e, kvs[i:min(i+200, len(kvs))]...)
	}
	v, err := e.View()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := v.Close(); err != nil {
			t.Error(err)
		}
	}()
	set(t, e, "v/000", "new", "v/299", "new", "v/300", "new")
	if err := commit(t, e, func(tx kv.Txn) error { return tx.Delete([]byte("v/150")) }); err != nil {
		t.Fatal(err)
	}
	got := keys(t, v, []byte("v/"), []byte("v0"), 0)
	if len(got) != 300 || got[0] != "v/000=old" || got[299] != "v/299=old" || got[150] != "v/150=old" {
		t.Fatalf("the view changed: %d keys, %v ... %v", len(got), got[0], got[len(got)-1])
	}
	if val, ok := mustGet(t, v, "v/000"); !ok || val != "old" {
		t.Fatalf("view Get = %q", val)
	}
	if val, _ := mustGet(t, e, "v/000"); val != "new" {
		t.Fatalf("engine Get = %q", val)
	}
}

// testAtomic: a transaction's writes land together or not at all; a
// discarded one writes nothing.
func testAtomic(t *testing.T, env Env) {
	e := open(t, env)
	tx, err := e.Begin()
	if err != nil {
		t.Fatal(err)
	}
	_ = tx.Set([]byte("x"), []byte("1"))
	tx.Discard()
	tx.Discard() // twice is harmless
	if _, ok := mustGet(t, e, "x"); ok {
		t.Fatal("a discarded transaction wrote")
	}
	if err := tx.Commit(); err == nil {
		t.Fatal("Commit after Discard succeeded")
	}
	set(t, e, "x", "1", "y", "1")
	// Readers racing a stream of two-key transactions never see one key
	// without the other.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 2; i < 40; i++ {
			v := fmt.Sprint(i)
			if err := commit(t, e, func(tx kv.Txn) error {
				return errors.Join(tx.Set([]byte("x"), []byte(v)), tx.Set([]byte("y"), []byte(v)))
			}); err != nil {
				t.Error(err)
				break
			}
		}
		close(stop)
	})
	for done := false; !done; {
		select {
		case <-stop:
			done = true
		default:
		}
		got := keys(t, e, []byte("x"), []byte("z"), 0)
		if len(got) != 2 || got[0][2:] != got[1][2:] {
			t.Fatalf("torn transaction: %v", got)
		}
	}
	wg.Wait()
}

func testLastWriteWins(t *testing.T, env Env) {
	e := open(t, env)
	err := commit(t, e, func(tx kv.Txn) error {
		return errors.Join(tx.Set([]byte("k"), []byte("1")), tx.Delete([]byte("k")), tx.Set([]byte("k"), []byte("3")),
			tx.Set([]byte("d"), []byte("1")), tx.Delete([]byte("d")))
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := mustGet(t, e, "k"); !ok || v != "3" {
		t.Fatalf("k = %q %v", v, ok)
	}
	if _, ok := mustGet(t, e, "d"); ok {
		t.Fatal("d survived its delete")
	}
}

// testCreateIfAbsent: many writers (on a second engine instance too, where
// the engine is shared) each try to create the same key only if it is
// absent, the way the store creates an alias: exactly one succeeds.
func testCreateIfAbsent(t *testing.T, env Env) {
	e := open(t, env)
	engines := []kv.Engine{e}
	if env.Shared != nil {
		e2 := env.Shared(t, e)
		t.Cleanup(func() { _ = e2.Close() })
		engines = append(engines, e2)
	}
	errExists := errors.New("exists")
	for round := range 5 {
		key := []byte(fmt.Sprintf("alias/%d", round))
		var wins atomic.Int32
		var wg sync.WaitGroup
		for w := range 8 {
			eng := engines[w%len(engines)]
			wg.Go(func() {
				err := commit(t, eng, func(tx kv.Txn) error {
					if _, ok, err := tx.Get(key); err != nil {
						return err
					} else if ok {
						return errExists
					}
					return tx.Set(key, []byte(fmt.Sprint(w)))
				})
				switch {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, errExists):
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d writers created the key, want exactly 1", round, n)
		}
	}
}

// testCounter: read-modify-write increments from concurrent writers (and
// engine instances) lose none.
func testCounter(t *testing.T, env Env) {
	e := open(t, env)
	engines := []kv.Engine{e}
	if env.Shared != nil {
		e2 := env.Shared(t, e)
		t.Cleanup(func() { _ = e2.Close() })
		engines = append(engines, e2)
	}
	const writers, each = 4, 10
	var wg sync.WaitGroup
	for w := range writers {
		eng := engines[w%len(engines)]
		wg.Go(func() {
			for range each {
				err := commit(t, eng, func(tx kv.Txn) error {
					v, _, err := tx.Get([]byte("n"))
					if err != nil {
						return err
					}
					var n int
					if len(v) > 0 {
						if _, err := fmt.Sscan(string(v), &n); err != nil {
							return err
						}
					}
					return tx.Set([]byte("n"), []byte(fmt.Sprint(n+1)))
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if v, _ := mustGet(t, e, "n"); v != fmt.Sprint(writers*each) {
		t.Fatalf("counter = %s, want %d", v, writers*each)
	}
}

// testScannedRange: a transaction that scanned a range does not commit over
// a key created, changed or deleted in it since (on an optimistic engine it
// conflicts; a pessimistic one never lets the change in between). The
// check is the store's tag limit: count the tags, add one if under the
// limit; concurrent adders never exceed it.
func testScannedRange(t *testing.T, env Env) {
	e := open(t, env)
	engines := []kv.Engine{e}
	if env.Shared != nil {
		e2 := env.Shared(t, e)
		t.Cleanup(func() { _ = e2.Close() })
		engines = append(engines, e2)
	}
	const limit = 5
	errFull := errors.New("full")
	var wg sync.WaitGroup
	var added atomic.Int32
	for w := range 10 {
		eng := engines[w%len(engines)]
		wg.Go(func() {
			err := commit(t, eng, func(tx kv.Txn) error {
				n := 0
				if err := tx.Scan([]byte("tag/"), []byte("tag0"), func(_, _ []byte) (bool, error) { n++; return true, nil }); err != nil {
					return err
				}
				if n >= limit {
					return errFull
				}
				return tx.Set([]byte(fmt.Sprintf("tag/%02d", w)), nil)
			})
			if err == nil {
				added.Add(1)
			} else if !errors.Is(err, errFull) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got := keys(t, e, []byte("tag/"), []byte("tag0"), 0)
	if len(got) != limit || added.Load() != limit {
		t.Fatalf("%d tags (%d adds acknowledged), limit %d", len(got), added.Load(), limit)
	}
	// A deletion inside a scanned range also conflicts (or waits).
	tx, err := e.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Discard()
	var first []byte
	if err := tx.Scan([]byte("tag/"), []byte("tag0"), func(k, _ []byte) (bool, error) { first = bytes.Clone(k); return false, nil }); err != nil {
		t.Fatal(err)
	}
	if env.Shared == nil {
		return // pessimistic: nothing else can write while tx is open
	}
	if err := commit(t, engines[1], func(tx kv.Txn) error { return tx.Delete(first) }); err != nil {
		t.Fatal(err)
	}
	_ = tx.Set([]byte("tag/zz"), nil)
	if err := tx.Commit(); !errors.Is(err, kv.ErrConflict) {
		t.Fatalf("commit after a scanned key was deleted: %v, want a conflict", err)
	}
}

// testLimits: a transaction within Limits commits; one beyond them is
// refused with ErrTooLarge and writes nothing.
func testLimits(t *testing.T, env Env) {
	e := open(t, env)
	l := e.Limits()
	if l.MaxOps == 0 && l.MaxBytes == 0 {
		t.Skip("no limits")
	}
	n := l.MaxOps
	fill := func(tx kv.Txn, count int) error {
		for i := range count {
			if err := tx.Set([]byte(fmt.Sprintf("l/%05d", i)), []byte("v")); err != nil {
				return err
			}
		}
		return nil
	}
	if err := commit(t, e, func(tx kv.Txn) error { return fill(tx, n) }); err != nil {
		t.Fatalf("%d writes (the limit): %v", n, err)
	}
	err := commit(t, e, func(tx kv.Txn) error { return errors.Join(tx.Delete([]byte("l/00000")), fill(tx, n+1)) })
	if !errors.Is(err, kv.ErrTooLarge) {
		t.Fatalf("%d writes: %v, want ErrTooLarge", n+1, err)
	}
	if _, ok := mustGet(t, e, "l/00000"); !ok {
		t.Fatal("the refused transaction wrote")
	}
	big := bytes.Repeat([]byte("x"), l.MaxBytes)
	err = commit(t, e, func(tx kv.Txn) error { return tx.Set([]byte("big"), big) })
	if !errors.Is(err, kv.ErrTooLarge) {
		t.Fatalf("a value of %d bytes: %v, want ErrTooLarge", len(big), err)
	}
}
