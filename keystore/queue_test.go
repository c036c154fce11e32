package keystore

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"payhsm/fault"
	"payhsm/internal/etcdtest"
	"payhsm/keystore/kv"
	"payhsm/keystore/kv/etcdkv"
	"payhsm/keystore/kv/pebblekv"
)

// BenchmarkCreateKeyEtcd: CreateKey with the journal on a real 3-member
// etcd cluster (fsync on), from 1 and from 32 goroutines of one process.
func BenchmarkCreateKeyEtcd(b *testing.B) {
	c := etcdtest.Start(b, etcdtest.Options{})
	var n atomic.Int64
	for _, par := range []int{1, 32} {
		b.Run(fmt.Sprintf("writers=%d", par), func(b *testing.B) {
			e, err := etcdkv.Open(etcdkv.Config{Endpoints: c.Endpoints(), Prefix: fmt.Sprintf("/bench/%d/", n.Add(1)), RequestTimeout: 30 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			s, err := OpenEngine(e, opts(Options{}))
			if err != nil {
				b.Fatal(err)
			}
			defer closeT(b, s)
			if _, err := s.StartJournal(JournalOptions{Writer: testWriter}); err != nil {
				b.Fatal(err)
			}
			b.SetParallelism(par)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := s.CreateKey(testKey(testID(int(n.Add(1)))), nil, ""); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestEtcdWritersOfOneProcessQueue: on etcd with the journal on, every
// write of one process rewrites its journal head, so concurrent writers of
// one Store run one at a time instead of conflicting, pausing and running
// again: 16 writers creating keys at once cost no conflict.
func TestEtcdWritersOfOneProcessQueue(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{Args: []string{"--unsafe-no-fsync"}})
	e, err := etcdkv.Open(etcdkv.Config{Endpoints: c.Endpoints(), Prefix: "/queue/", RequestTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenEngine(e, opts(Options{}))
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, s)
	if _, err := s.StartJournal(JournalOptions{Writer: testWriter}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 10 {
				if err := s.CreateKey(testKey(testID(w*100+i)), nil, ""); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := s.Conflicts(); n != 0 {
		t.Errorf("%d conflicts among the writers of one process", n)
	}
}

// downEngine is a Pebble engine that says its transactions are optimistic
// (as etcdkv) and, while down, answers every transaction's read and commit
// after delay with kv.ErrUnavailable (an etcd cluster without quorum, at
// its request timeout). Its commits take commitDelay (so that writers queue
// behind a commit in flight: grouped writes, group_test.go) and may be
// refused by refuse, given the commit's number from 1 and its writes.
type downEngine struct {
	kv.Engine
	down  atomic.Bool
	delay time.Duration

	commitDelay time.Duration
	refuse      func(n int, writes int) error
	commits     atomic.Int64
}

func (e *downEngine) Optimistic() bool { return true }

func (e *downEngine) Begin() (kv.Txn, error) {
	tx, err := e.Engine.Begin()
	if err != nil {
		return nil, err
	}
	return &downTxn{Txn: tx, e: e}, nil
}

type downTxn struct {
	kv.Txn
	e      *downEngine
	writes int
}

func (t *downTxn) Set(k, v []byte) error { t.writes++; return t.Txn.Set(k, v) }
func (t *downTxn) Delete(k []byte) error { t.writes++; return t.Txn.Delete(k) }

func (t *downTxn) fail() error {
	if !t.e.down.Load() {
		return nil
	}
	time.Sleep(t.e.delay)
	return fmt.Errorf("down engine: %w", kv.ErrUnavailable)
}

func (t *downTxn) Get(k []byte) ([]byte, bool, error) {
	if err := t.fail(); err != nil {
		return nil, false, err
	}
	return t.Txn.Get(k)
}

func (t *downTxn) Scan(lo, hi []byte, fn func(k, v []byte) (bool, error)) error {
	if err := t.fail(); err != nil {
		return err
	}
	return t.Txn.Scan(lo, hi, fn)
}

func (t *downTxn) Commit() error {
	if err := t.fail(); err != nil {
		t.Discard()
		return err
	}
	n := int(t.e.commits.Add(1))
	time.Sleep(t.e.commitDelay)
	if t.e.refuse != nil {
		if err := t.e.refuse(n, t.writes); err != nil {
			t.Discard()
			return err
		}
	}
	return t.Txn.Commit()
}

// TestQueuedWritersFailTogether: writers queued behind one another (an
// optimistic engine, the journal on) while the engine does not answer fail
// within about two request timeouts, all of them, with the engine's
// Unavailable error — not one timeout after another down the queue; and
// write again once it answers.
func TestQueuedWritersFailTogether(t *testing.T) {
	t.Parallel()
	const delay = 200 * time.Millisecond
	db, err := pebblekv.Open("keystore", pebblekv.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	e := &downEngine{Engine: db, delay: delay}
	s, err := OpenEngine(e, opts(Options{}))
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, s)
	if _, err := s.StartJournal(JournalOptions{Writer: testWriter}); err != nil {
		t.Fatal(err)
	}
	e.down.Store(true)
	var wg sync.WaitGroup
	var slowest atomic.Int64
	for i := range 8 {
		wg.Go(func() {
			start := time.Now()
			err := s.CreateKey(testKey(testID(i)), nil, "")
			took := time.Since(start)
			for cur := slowest.Load(); int64(took) > cur && !slowest.CompareAndSwap(cur, int64(took)); cur = slowest.Load() {
			}
			if !errors.Is(err, kv.ErrUnavailable) || fault.KindOf(err) != fault.Unavailable {
				t.Errorf("writer %d with the engine down: %v", i, err)
			}
		})
	}
	wg.Wait()
	if took := time.Duration(slowest.Load()); took > 3*delay {
		t.Errorf("the slowest of 8 queued writers failed after %v, want about two timeouts (%v) at most", took, 2*delay)
	}
	e.down.Store(false)
	if err := s.CreateKey(testKey(testID(100)), nil, ""); err != nil {
		t.Errorf("a write once the engine answers: %v", err)
	}
}
