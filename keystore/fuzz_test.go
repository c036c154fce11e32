package keystore

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"payhsm/internal/etcdtest"
	"payhsm/keystore/kv/etcdkv"
	"payhsm/keystore/kv/pebblekv"
)

// FuzzDecodeToken: the decoder never panics, refuses with ErrBadToken only,
// and whatever it accepts is canonical: re-encoding the decoded position
// gives back the same token, so a token names exactly one position of one
// listing.
func FuzzDecodeToken(f *testing.F) {
	id := testID(7)
	for _, seed := range []string{
		"", "!!!", "AB", "AQ", encodeToken(listKeys, "", id), encodeToken(listAliases, "", "alias/a"),
		encodeToken(listKeyAliases, id, "alias/b"), encodeToken(listTags, id, "env"),
		encodeToken(listTags, id, "a\x00b"), encodeToken(listKeys, "", ""),
	} {
		f.Add(seed)
	}
	listings := []struct {
		list  byte
		scope string
	}{{listKeys, ""}, {listAliases, ""}, {listKeyAliases, id}, {listTags, id}}
	f.Fuzz(func(t *testing.T, tok string) {
		for _, l := range listings {
			cursor, err := decodeToken(tok, l.list, l.scope)
			if err != nil {
				if !errors.Is(err, ErrBadToken) {
					t.Fatalf("error %v is not ErrBadToken", err)
				}
				continue
			}
			if tok == "" {
				if cursor != "" {
					t.Fatal("empty token gave a position")
				}
				continue
			}
			if got := encodeToken(l.list, l.scope, cursor); got != tok {
				t.Fatalf("accepted non-canonical token %q (re-encodes to %q)", tok, got)
			}
			if l.list == listKeys && !ValidID(cursor) {
				t.Fatalf("key listing accepted position %q", cursor)
			}
		}
	})
}

// FuzzDecodeKey: on-disk records never panic the decoder, and an accepted
// record re-encodes to a record that decodes to the same key.
func FuzzDecodeKey(f *testing.F) {
	id := testID(1)
	good, _ := encodeKey(testKey(id))
	f.Add(good)
	f.Add([]byte(`{"v":2,"id":"` + id + `"}`))
	f.Add([]byte(`{"v":2,"id":"` + id + `","created":"2026-01-01T00:00:00+01:00"}`))
	f.Add([]byte(`{"v":1,"id":"` + id + `","revision":3}`))
	f.Add([]byte(id))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, rec []byte) {
		if a, err := decodeAlias("alias/x", rec); err == nil {
			if b, err := decodeAlias("alias/x", encodeAlias(a.KeyID)); err != nil || b != a {
				t.Fatalf("alias round trip: %+v, %v", b, err)
			}
		}
		_, _ = decodeKeyV1(id, rec)
		_, _ = decodeAliasV1("alias/x", rec)
		k, err := decodeKey(id, rec)
		if err != nil {
			return
		}
		enc, err := encodeKey(k)
		if err != nil {
			t.Fatal(err)
		}
		k2, err := decodeKey(id, enc)
		if err != nil {
			t.Fatalf("re-encoded record refused: %v", err)
		}
		enc2, _ := encodeKey(k2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable:\n%s\n%s", enc, enc2)
		}
	})
}

// FuzzCheckRecord: whatever a stored value holds, checking it never panics,
// and only a value the store sealed for that Pebble key passes.
func FuzzCheckRecord(f *testing.F) {
	s := openTest(f, vfs.NewMem(), "keystore")
	pebbleKeys := [][]byte{keyKey(testID(1)), aliasKey("alias/x"), byKeyKey(testID(1), "alias/x"), tagKey(testID(1), "t"),
		purgeKey(time.Unix(1, 0), testID(1)), metaKey("m"), metaKey("custody/x")}
	var sealed [][]byte
	for _, k := range pebbleKeys {
		v, _, err := s.seal(k, typeAt(k), "", []byte("payload"), 0)
		if err != nil {
			f.Fatal(err)
		}
		sealed = append(sealed, v)
		f.Add(uint8(len(sealed)-1), v)
	}
	f.Add(uint8(0), []byte{})
	f.Add(uint8(1), []byte{2, 'A', 200})
	f.Fuzz(func(t *testing.T, which uint8, v []byte) {
		i := int(which) % len(pebbleKeys)
		k := pebbleKeys[i]
		fr, err := s.check(k, v)
		if err != nil {
			return
		}
		if fr.typ != typeAt(k) {
			t.Fatalf("type %s passed at a %s key", fr.typ, typeAt(k))
		}
		if fr.typ != RecordOwnerMeta && !bytes.Equal(v, sealed[i]) {
			t.Fatalf("a value the store did not seal passed: %q", v)
		}
	})
}

// TestConcurrentReadersAndWriters runs reads (point, listings, snapshots)
// against writers; run with -race.
func testConcurrentReadersAndWriters(t *testing.T, env *storeEnv) {
	s := env.store(t)
	const writers, perWriter = 4, 40
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				id := fmt.Sprintf("w%d%014d", w, i)
				if err := s.CreateKey(testKey(id), []Tag{{"a", "b"}}, "alias/"+id); err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					if err := s.PurgeKey(id); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				keys, _, err := s.ListKeys(nil, "", 1000)
				if err != nil {
					t.Error(err)
					return
				}
				for _, k := range keys {
					// A listed key may be purged by now; anything else is an error.
					if _, _, err := s.ListTags(k.ID, "", 0); err != nil && !errors.Is(err, ErrNotFound) {
						t.Error(err)
						return
					}
				}
				if _, _, err := s.ListAliases("", "", 1000); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	keys, _, err := s.ListKeys(nil, "", 1000)
	if err != nil || len(keys) != writers*perWriter/2 {
		t.Fatalf("%d keys, %v", len(keys), err)
	}
	aliases, _, err := s.ListAliases("", "", 1000)
	if err != nil || len(aliases) != writers*perWriter/2 {
		t.Fatalf("%d aliases, %v", len(aliases), err)
	}
}

func BenchmarkGetKey(b *testing.B) {
	s := openTest(b, vfs.Default, b.TempDir()) // on disk: the numbers include the fsync
	const n = 1000
	for i := range n {
		if err := s.CreateKey(testKey(testID(i)), nil, ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.GetKey(testID(i % n)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkCreateKey measures durable creates on disk (the numbers include
// the fsync), from as many concurrent writers as -cpu says (RunParallel runs
// GOMAXPROCS goroutines): "go test -bench CreateKey -cpu 1,32 -benchmem". The
// sub-benchmarks compare, in one run, the commit paths of the Pebble engine:
// group (the default: transactions that arrive during a WAL fsync share the
// next one) and serial (every commit waits for its own fsync under the
// transaction lock, as the store did before group commit). engine=etcd is
// the same on a real 3-member etcd cluster.
func BenchmarkCreateKey(b *testing.B) {
	for _, bc := range []struct {
		name   string
		serial bool
	}{{"commit=serial", true}, {"commit=group", false}} {
		b.Run(bc.name, func(b *testing.B) {
			db, err := pebblekv.Open(b.TempDir(), pebblekv.Options{SerialCommit: bc.serial})
			if err != nil {
				b.Fatal(err)
			}
			s, err := OpenEngine(db, opts(Options{}))
			if err != nil {
				b.Fatal(err)
			}
			defer closeT(b, s)
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := s.CreateKey(testKey(testID(int(next.Add(1)))), nil, ""); err != nil {
						b.Error(err)
						return
					}
				}
			})
			if commits, txns := db.Stats(); commits > 0 {
				b.ReportMetric(float64(txns)/float64(commits), "txns/fsync")
			}
		})
	}
	// etcd: a real 3-member cluster on loopback, with fsync, each create one
	// etcd transaction (the cluster batches concurrent ones into its fsyncs).
	b.Run("engine=etcd", func(b *testing.B) {
		c := etcdtest.Start(b, etcdtest.Options{})
		e, err := etcdkv.Open(etcdkv.Config{Endpoints: c.Endpoints(), Prefix: "/bench/"})
		if err != nil {
			b.Fatal(err)
		}
		s, err := OpenEngine(e, opts(Options{}))
		if err != nil {
			b.Fatal(err)
		}
		defer closeT(b, s)
		var next atomic.Int64
		b.ReportAllocs()
		b.ResetTimer() // not the cluster's start
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := s.CreateKey(testKey(testID(int(next.Add(1)))), nil, ""); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(s.Conflicts())/float64(b.N), "conflicts/op")
	})
}
