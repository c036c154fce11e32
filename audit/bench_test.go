package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// BenchmarkRecord measures synchronous records (control-plane events) per
// second with about c concurrent callers (parallelism c/GOMAXPROCS): "group" is the trail (one sync shared
// by every caller waiting at the time), "sync-each" the writer it replaced
// (one write and sync per record, under a lock). Each record is on disk
// when the call returns in both. Run on the disk the trail will live on:
// go test ./audit -run '^$' -bench Record -benchtime 2s
func BenchmarkRecord(b *testing.B) {
	for _, c := range []int{1, 16, 64, 256} {
		p := max(1, c/runtime.GOMAXPROCS(0))
		b.Run(fmt.Sprintf("group/callers=%d", c), func(b *testing.B) {
			tr := openTrail(b, b.TempDir(), nil)
			defer closeTrail(b, tr)
			ev := control(1)
			b.SetParallelism(p)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := tr.Record(KindControl, ev); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/float64(max(tr.syncs.Load(), 1)), "records/sync")
		})
		b.Run(fmt.Sprintf("sync-each/callers=%d", c), func(b *testing.B) {
			f, err := os.OpenFile(filepath.Join(b.TempDir(), "log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = f.Close() }()
			var mu sync.Mutex
			line, _, err := appendEntryLine(nil, &Entry{Kind: KindControl, Seq: 1, Event: func() *Event { e := control(1); return &e }()}, zeroHash)
			if err != nil {
				b.Fatal(err)
			}
			b.SetParallelism(p)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					mu.Lock()
					_, err := f.Write(line)
					if err == nil {
						err = f.Sync()
					}
					mu.Unlock()
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
