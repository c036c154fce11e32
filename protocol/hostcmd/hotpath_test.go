package hostcmd

import (
	"bufio"
	"fmt"
	"strings"
	"testing"
	"time"

	"payhsm/hsm/custody"
	"payhsm/ops"
)

// TestIdentMemo: the per-connection memo of key identifiers answers by
// (raw field, form, profile), copies what it keeps out of the message
// buffer, and stays bounded.
func TestIdentMemo(t *testing.T) {
	x := (&Server{}).newCall()
	x.profile = "default"
	raw := []byte("D0112P0TE00N0000ABCDEF")
	blk := keyRef{raw: raw, block: true}
	if got, want := x.ident(blk), ops.BlockIdent("default", string(raw)); got != want {
		t.Fatalf("block ident %q, want %q", got, want)
	}
	if got := x.ident(keyRef{raw: raw}); got != string(raw) {
		t.Errorf("the same text as a reference: %q", got)
	}
	x.profile = "lmk01"
	if got, want := x.ident(blk), ops.BlockIdent("lmk01", string(raw)); got != want {
		t.Errorf("other profile: %q, want %q", got, want)
	}
	kept := x.ident(blk)
	raw[len(raw)-1] = 'X' // the message buffer is reused for the next request
	if kept != ops.BlockIdent("lmk01", "D0112P0TE00N0000ABCDEF") {
		t.Errorf("memo aliases the message buffer: %q", kept)
	}
	if got := x.ident(blk); got != ops.BlockIdent("lmk01", "D0112P0TE00N0000ABCDEX") {
		t.Errorf("changed field answered from the memo: %q", got)
	}
	for i := range 3 * maxIdentMemo {
		x.ident(keyRef{raw: []byte("alias/k" + string(rune('A'+i%26)) + string(rune('A'+i/26)))})
		if len(x.idents) > maxIdentMemo {
			t.Fatalf("memo grew to %d", len(x.idents))
		}
	}
}

// TestLargeAndPipelinedFrames: frames longer than the connection's read
// buffer (served from a copy) and frames served in place alternate on one
// pipelined connection and are answered in order.
func TestLargeAndPipelinedFrames(t *testing.T) { forDrivers(t, testLargeAndPipelinedFrames) }

func testLargeAndPipelinedFrames(t *testing.T, drv string) {
	ts := startServer(t, nil, Config{Driver: drv})
	c := ts.dial(t, nil)
	big := strings.Repeat("Z", ioBuffer+1000) // B2 echo data beyond the read buffer
	var all []byte
	var want []string
	for i := range 6 {
		h := "00" + string(rune('A'+i)) + "0"
		m := h + "B20001" + string(rune('a'+i))
		w := h + "B300" + string(rune('a'+i))
		if i%2 == 1 {
			m = h + "B2" + strings.ToUpper(hexLen(len(big))) + big
			w = h + "B300" + big
		}
		all = append(all, frames(t, m)...)
		want = append(want, w)
	}
	written := c.writeAsync(all)
	for i, w := range want {
		if got := c.recv(); got != w {
			t.Fatalf("response %d: %d bytes %.20q…, want %d bytes", i, len(got), got, len(w))
		}
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
}

func hexLen(n int) string {
	const digits = "0123456789ABCDEF"
	return string([]byte{digits[n>>12&15], digits[n>>8&15], digits[n>>4&15], digits[n&15]})
}

// TestCCHotPathNoToken: once a connection has used its key blocks, CC makes
// no PKCS#11 call, and a pipelined burst is answered in order with the PIN
// length.
func TestCCHotPathNoToken(t *testing.T) { forDrivers(t, testCCHotPathNoToken) }

func testCCHotPathNoToken(t *testing.T, drv string) {
	ts := startServer(t, nil, Config{Driver: drv})
	c := ts.dial(t, nil)
	gen := func(a string) string { r := c.call("0000A00FFFS#" + a); return r[8 : len(r)-6] }
	zpka, zpkb, pvk := gen("P0T2B00N00"), gen("P0T2B00N00"), gen("V1T2C00N00")
	r := c.call("0001EE" + zpka + "01" + pvk + "1234FFFFFFFF04555555123456" + "0123456789012345" + "1234567N8901")
	if !strings.HasPrefix(r, "0001EF00") {
		t.Fatal(r)
	}
	cc := "CC" + zpka + zpkb + "12" + r[8:] + "0101555555123456"
	first := c.call("0002" + cc)
	if !strings.HasPrefix(first, "0002CD0004") || len(first) != 4+2+2+2+16+2 {
		t.Fatalf("CC %q", first)
	}
	before := custody.TokenOperations()
	var burst []byte
	for i := range 100 {
		burst = append(burst, frames(t, string(rune('A'+i%26))+string(rune('A'+i/26))+"00"+cc)...)
	}
	if err := c.c.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	written := c.writeAsync(burst)
	br := bufio.NewReader(c.c)
	for i := range 100 {
		m, err := ReadFrame(br, MaxMessage)
		if err != nil {
			t.Fatal(err)
		}
		if want := string(rune('A'+i%26)) + string(rune('A'+i/26)) + "00CD00" + first[8:]; string(m) != want {
			t.Fatalf("response %d %q, want %q", i, m, want)
		}
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if n := custody.TokenOperations() - before; n != 0 {
		t.Errorf("%d PKCS#11 calls for 100 CC commands", n)
	}
}

// TestPipelinedStream: one connection streams thousands of distinct echo
// requests in writes of irregular sizes (frames split across writes) while
// its answers are read concurrently, so requests arrive while earlier
// answers are still being written. Every answer comes back, in order, with
// its own data. The reader pauses twice so that the answers fill the
// socket buffers and a write waits.
func TestPipelinedStream(t *testing.T) {
	forDrivers(t, func(t *testing.T, drv string) { testPipelinedStream(t, Config{Driver: drv}) })
	// Two provided buffers of 64 bytes: frames arrive split over many
	// completions and the multishot recv often runs out of buffers (ENOBUFS).
	t.Run("io_uring-small-buffers", func(t *testing.T) {
		testPipelinedStream(t, Config{Driver: DriverIOUring, uringBufs: 2, uringBufSize: 64})
	})
}

func testPipelinedStream(t *testing.T, cfg Config) {
	ts := startServer(t, nil, cfg)
	c := ts.dial(t, nil)
	const n = 3000
	var stream []byte
	for i := range n {
		data := fmt.Sprintf("%0*d", 1+i*37%5000, i)
		stream = append(stream, frames(t, "0001B2"+hexLen(len(data))+data)...)
	}
	go func() {
		for off, step := 0, 0; off < len(stream); step++ {
			k := min(len(stream)-off, 1+(step*7919)%9000)
			if _, err := c.c.Write(stream[off : off+k]); err != nil {
				return
			}
			off += k
		}
	}()
	if err := c.c.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if i == 0 || i == n/2 {
			time.Sleep(300 * time.Millisecond)
		}
		want := "0001B300" + fmt.Sprintf("%0*d", 1+i*37%5000, i)
		if got := c.recv(); got != want {
			t.Fatalf("answer %d: %.40q..., want %.40q...", i, got, want)
		}
	}
}
