package opstest

import (
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"payhsm/keyspec"
	"payhsm/keystore"
	"payhsm/ops"
)

// BenchmarkCreateKeyOutbox is BenchmarkCreateKeyOps (journal on, no
// replication) with and without CreateKey's AuditOutbox hook, as the
// daemon's audit outbox uses it: a key record that carries who created it
// (principal, source, request id; 70 to 90 bytes). Run with -cpu 32.
func BenchmarkCreateKeyOutbox(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "outbox=off"
		if on {
			name = "outbox=on"
		}
		b.Run(name, func(b *testing.B) {
			store, err := keystore.Open(b.TempDir(), keystore.Options{Logger: zap.NewNop()})
			if err != nil {
				b.Fatal(err)
			}
			svc, _, _, cust := newServiceOn(b, store, nil)
			if _, err := cust.Profile("default"); err != nil {
				b.Fatal(err)
			}
			if _, err := store.StartJournal(keystore.JournalOptions{Writer: "bench"}); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				if err := store.Close(); err != nil {
					b.Error(err)
				}
			})
			var n atomic.Uint64
			attrs := keyspec.Attributes{Usage: keyspec.D0, Class: keyspec.Symmetric,
				Algorithm: keyspec.AES128, Modes: keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}
			cpu0 := cpuTime()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					in := ops.CreateKeyInput{Attributes: attrs}
					if on {
						in.AuditOutbox = func(string) (string, error) {
							return "AKIAEXAMPLE000000000 127.0.0.1:40000 0b1c2d3e-4f50-6172-8394-" + time.Now().Format("150405.000000") + string(rune('a'+n.Add(1)%26)), nil
						}
					}
					if _, err := svc.CreateKey(in); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-us/op")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
		})
	}
}
