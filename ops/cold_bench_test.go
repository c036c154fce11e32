package ops_test

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"payhsm/keyspec"
	"payhsm/keystore"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// BenchmarkColdKeys compares a data operation (GenerateMac, ISO 9797-1
// algorithm 3, 64 bytes) on a key drawn uniformly from coldKeys keys, all
// in the working-key cache (cached) and none (cold: the cache is emptied
// before each operation, as a uniform draw from a million keys all but
// always misses it). The cold case reads the key's records from the store,
// checks them, unwraps the key block under the profile main key and
// schedules the key.
func BenchmarkColdKeys(b *testing.B) {
	const coldKeys = 512
	svc := opstest.New(b)
	keys := make([]string, coldKeys)
	for i := range keys {
		keys[i] = createKey(b, svc, sym(keyspec.M3, keyspec.TDES2Key, genVer))
	}
	data := hb("A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5")
	attrs := ops.MacAttributes{Algorithm: ops.MacISO9797Alg3}
	for _, cold := range []bool{false, true} {
		name := "cached"
		if cold {
			name = "cold"
		}
		b.Run(name, func(b *testing.B) {
			for _, k := range keys { // warm
				if _, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: k, MessageData: data, Attributes: attrs}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			i := 0
			start := cpuTime()
			for b.Loop() {
				if cold {
					ops.DropWorkingKeys(svc)
				}
				i = (i + 97) % coldKeys
				if _, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: keys[i], MessageData: data, Attributes: attrs}); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, start)
		})
	}
}

// BenchmarkColdKeysLarge is BenchmarkColdKeys on a Pebble store on disk
// holding PAYHSM_COLD_KEYS TDES MAC keys (default 50,000, made by
// CreateKey from 32 goroutines), with the real working-key cache sized to
// 2,048 keys so that a uniform draw from all hits it at most 4% of the time
// (the daemon's 65,536 from a million: 6.5%): cached draws from 512 keys,
// cold uniformly from all. Every key is used once first, as a daemon's
// background verify reads every record. It reports the process's CPU per
// operation (cpu-ns/op), for cold its ratio to cached's in the same run
// (cold/cached), and the cache's hit rate over the timed calls.
func BenchmarkColdKeysLarge(b *testing.B) {
	n := 50_000
	if v, err := strconv.Atoi(os.Getenv("PAYHSM_COLD_KEYS")); err == nil && v > 0 {
		n = v
	}
	store, err := keystore.Open(b.TempDir(), keystore.Options{Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	svc := opstest.NewOn(b, store)
	ops.SetWorkingKeyCapacity(svc, 2048)
	arns := make([]string, n)
	var wg sync.WaitGroup
	const writers = 32
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				k, err := svc.CreateKey(ops.CreateKeyInput{Attributes: sym(keyspec.M3, keyspec.TDES2Key, genVer)})
				if err != nil {
					b.Error(err)
					return
				}
				arns[i] = k.ARN
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	data := hb(strings.Repeat("A5", 64))
	attrs := ops.MacAttributes{Algorithm: ops.MacISO9797Alg3}
	mac := func(arn string) {
		if _, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: arn, MessageData: data, Attributes: attrs}); err != nil {
			b.Fatal(err)
		}
	}
	for _, arn := range arns {
		mac(arn)
	}
	var cachedNs float64
	for _, cold := range []bool{false, true} {
		name := "cached"
		if cold {
			name = "cold"
		}
		b.Run(name, func(b *testing.B) {
			for _, arn := range arns[:512] { // warm
				mac(arn)
			}
			b.ReportAllocs()
			state, i := uint64(time.Now().UnixNano())|1, 0
			st0 := svc.CacheStats()
			start := cpuTime()
			for b.Loop() {
				if cold {
					state ^= state << 13 // xorshift64
					state ^= state >> 7
					state ^= state << 17
					i = int(state % uint64(n))
				} else {
					i = (i + 97) % 512
				}
				mac(arns[i])
			}
			reportCPU(b, start)
			if ns := float64(cpuTime()-start) / float64(b.N); !cold {
				cachedNs = ns
			} else if cachedNs > 0 && start > 0 {
				b.ReportMetric(ns/cachedNs, "cold/cached")
			}
			st := svc.CacheStats()
			if lookups := st.Hits + st.Misses - st0.Hits - st0.Misses; lookups > 0 {
				b.ReportMetric(float64(st.Hits-st0.Hits)/float64(lookups), "hit-rate")
			}
		})
	}
}
