package keystore

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// coldStoreKeys is the number of keys BenchmarkGetKeyLarge stores:
// PAYHSM_COLD_KEYS when set, else 200,000.
func coldStoreKeys() int {
	if n, err := strconv.Atoi(os.Getenv("PAYHSM_COLD_KEYS")); err == nil && n > 0 {
		return n
	}
	return 200_000
}

// populateBare writes n bare keys (a key record each, no tags, aliases or
// purge entry: what the data plane's keys are) in batches of 1000.
func populateBare(t testing.TB, s *Store, n int) {
	t.Helper()
	populateWith(t, s, n, func(w *writer, j int) {
		k := coldKey(testID(j))
		val, err := encodeKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.set(keyKey(k.ID), RecordKey, k.Profile, val, 0); err != nil {
			t.Fatal(err)
		}
	})
}

// coldKey is testKey as a data-plane key is stored: usable (no deletion
// dates), bare.
func coldKey(id string) *Key {
	k := testKey(id)
	k.State, k.DeletePending, k.Deleted = "CREATE_COMPLETE", time.Time{}, time.Time{}
	k.PublicKey, k.Certificate = nil, nil
	k.bare = true
	return k
}

// BenchmarkGetKeyLarge measures GetKey on a Pebble store on disk holding
// coldStoreKeys() bare keys: on 512 of them, read again and again (hot:
// their blocks in Pebble's block cache, their marks set), and on keys drawn
// uniformly from all (cold, as the working-key cache's misses are), after
// one read of every key. It
// reports the process's CPU per call (cpu-ns/op) and, for cold, its ratio
// to hot's in the same run (cold/hot). The store is written once per
// process (PAYHSM_COLD_DIR keeps it across runs: it is reused when it
// holds the same number of keys).
func BenchmarkGetKeyLarge(b *testing.B) {
	n := coldStoreKeys()
	dir := os.Getenv("PAYHSM_COLD_DIR")
	if dir == "" {
		dir = b.TempDir()
	} else {
		dir = filepath.Join(dir, strconv.Itoa(n))
	}
	_, statErr := os.Stat(filepath.Join(dir, "populated"))
	s := openTestAuth(b, dir, newTestAuth())
	if statErr != nil {
		populateBare(b, s, n)
		if err := os.WriteFile(filepath.Join(dir, "populated"), nil, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	// As in a daemon whose background verify has run: every record read
	// once (its mark set, its blocks in Pebble's cache as far as it holds).
	for i := range n {
		if _, err := s.GetKey(testID(i)); err != nil {
			b.Fatal(err)
		}
	}
	var hotNs float64
	for _, mode := range []string{"hot", "cold"} {
		b.Run(mode, func(b *testing.B) {
			b.ReportAllocs()
			state := uint64(time.Now().UnixNano()) | 1
			i := 0
			start := processCPU(b)
			for b.Loop() {
				if mode == "hot" {
					i = (i + 97) % 512
				} else {
					state ^= state << 13 // xorshift64
					state ^= state >> 7
					state ^= state << 17
					i = int(state % uint64(n))
				}
				if _, err := s.GetKey(testID(i)); err != nil {
					b.Fatal(err)
				}
			}
			ns := float64(processCPU(b)-start) / float64(b.N)
			b.ReportMetric(ns, "cpu-ns/op")
			if mode == "hot" {
				hotNs = ns
			} else if hotNs > 0 {
				b.ReportMetric(ns/hotNs, "cold/hot")
			}
		})
	}
}
