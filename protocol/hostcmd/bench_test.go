package hostcmd

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"payhsm/audit"
	"payhsm/metrics"
)

// BenchmarkDispatchCC measures one CC (decode, TranslatePin on cached key
// blocks, encode) without the network: with data events off (the default:
// a nil test per command) and on (an event built and queued per command;
// a full queue drops, so the benchmark measures the hot path, not the disk).
func BenchmarkDispatchCC(b *testing.B) {
	b.Run("audit=off", func(b *testing.B) { benchmarkDispatchCC(b, false) })
	b.Run("audit=data", func(b *testing.B) { benchmarkDispatchCC(b, true) })
}

func benchmarkDispatchCC(b *testing.B, data bool) {
	var setup []func(*Server)
	if data {
		trail, err := audit.Open(audit.Config{Dir: b.TempDir(), Key: bytes.Repeat([]byte{9}, audit.RootKeySize)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			if err := trail.Close(); err != nil {
				b.Error(err)
			}
			b.ReportMetric(float64(trail.Lag().Dropped)/float64(b.N), "dropped/op")
		})
		setup = append(setup, func(s *Server) { s.SetAudit(trail, "000000000000", true) })
	}
	ts := startServer(b, nil, Config{}, setup...)
	c := ts.dial(b, nil)
	gen := func(a string) string { r := c.call("0000A00FFFS#" + a); return r[8 : len(r)-6] }
	zpka, zpkb, pvk := gen("P0T2B00N00"), gen("P0T2B00N00"), gen("V1T2C00N00")
	r := c.call("0001EE" + zpka + "01" + pvk + "1234FFFFFFFF04555555123456" + "0123456789012345" + "1234567N8901")
	if !strings.HasPrefix(r, "0001EF00") {
		b.Fatal(r)
	}
	msg := []byte("0002CC" + zpka + zpkb + "12" + r[8:] + "0101555555123456")
	x := ts.srv.newCall()
	if got := string(ts.srv.dispatch(x, nil, msg)); !strings.HasPrefix(got, "0002CD0004") {
		b.Fatal(got)
	}
	// bare: no observer, a no-op logger. metrics: as the daemon runs, with
	// the metrics observer and an info-level JSON logger (a success logs
	// nothing; a failure one line).
	for _, v := range []struct {
		name string
		obs  Observer
		log  *zap.Logger
	}{
		{"bare", nil, zap.NewNop()},
		{"metrics", metrics.New("bench").NewHost(Commands()), zap.New(zapcore.NewCore(
			zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.InfoLevel))},
	} {
		b.Run(v.name, func(b *testing.B) {
			ts.srv.obs, ts.srv.log = v.obs, v.log
			b.ReportAllocs()
			b.ResetTimer()
			defer reportCPU(b)()
			b.RunParallel(func(pb *testing.PB) {
				x, out := ts.srv.newCall(), make([]byte, 0, 64) // one per connection, as the server does
				for pb.Next() {
					out = ts.srv.dispatch(x, out[:0], msg)
				}
			})
		})
	}
}

// BenchmarkEcho measures the connection drivers (epoll and io_uring event
// loops, goroutine per connection) without the operations layer: one connection sends bursts
// of 1 or 32 pipelined B2 echo requests and reads the answers. ns/op is per
// request.
func BenchmarkEcho(b *testing.B) {
	for _, drv := range drivers {
		for _, burst := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/burst=%d", drv, burst), func(b *testing.B) {
				ts := startServer(b, nil, Config{Driver: drv})
				c := ts.dial(b, nil)
				var req []byte
				for range burst {
					req = append(append(req, frame("0001B20002OK")...), "0001B20002OK"...)
				}
				want := append(frame("0001B300OK"), "0001B300OK"...)
				resp := make([]byte, burst*len(want))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i += burst {
					if _, err := c.c.Write(req); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(c.c, resp); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				if !bytes.Equal(resp[len(resp)-len(want):], want) {
					b.Fatalf("answer %q, want %q", resp[len(resp)-len(want):], want)
				}
			})
		}
	}
}

// BenchmarkDispatchData measures M6 (ISO 9797-1 algorithm 3 over 64 bytes)
// and M0 (TDES CBC over 64 bytes, hex output) as BenchmarkDispatchCC does
// CC: their results are appended straight to the response.
func BenchmarkDispatchData(b *testing.B) {
	ts := startServer(b, nil, Config{})
	c := ts.dial(b, nil)
	gen := func(a string) string { r := c.call("0000A00FFFS#" + a); return r[9 : len(r)-6] }
	mk, dk := gen("M3T2C00N00"), gen("D0T2B00N00")
	data := strings.Repeat("A5", 64)
	for _, v := range []struct{ name, msg, want string }{
		{"M6", "0001M601131FFFS" + mk + "0080" + data, "0001M700"},
		{"M0", "0001M0011100BS" + dk + "0011223344556677" + "0080" + data, "0001M1000080"},
	} {
		b.Run(v.name, func(b *testing.B) {
			x, out := ts.srv.newCall(), make([]byte, 0, 256)
			if got := string(ts.srv.dispatch(x, nil, []byte(v.msg))); !strings.HasPrefix(got, v.want) {
				b.Fatal(got)
			}
			b.ReportAllocs()
			for b.Loop() {
				out = ts.srv.dispatch(x, out[:0], []byte(v.msg))
			}
		})
	}
}

// reportCPU starts counting the process's CPU time (processCPU); the
// function it returns reports it per operation as cpu-ns/op, which varies
// less than ns/op on a shared machine.
func reportCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((processCPU()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}
