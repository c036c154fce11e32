package hostcmd

import (
	"strings"
	"testing"
)

// BenchmarkDispatchCC measures one CC (decode, TranslatePin on cached key
// blocks, encode) without the network.
func BenchmarkDispatchCC(b *testing.B) {
	ts := startServer(b, nil, Config{})
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
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		x, out := ts.srv.newCall(), make([]byte, 0, 64) // one per connection, as the server does
		for pb.Next() {
			out = ts.srv.dispatch(x, out[:0], msg)
		}
	})
}
