package keystore

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"payhsm/internal/etcdtest"
	"payhsm/keystore/kv/etcdkv"
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
