package ops_test

import (
	"testing"

	"payhsm/keyspec"
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
