//go:build linux

package awsapi_test

import (
	"bufio"
	"bytes"
	"io"
	"log"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"payhsm/protocol/awsapi"
)

// readAnswers reads n answers from br and returns their status codes and bodies.
func readAnswers(t *testing.T, br *bufio.Reader, n int) []string {
	t.Helper()
	var out []string
	for i := range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("answer %d body: %v", i, err)
		}
		out = append(out, strconv.Itoa(resp.StatusCode)+" "+string(b))
	}
	return out
}

func sdkRequest(path, extra, body string) string {
	return "POST " + path + " HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n" + extra + "\r\n" + body
}

// TestEventLoopServes: a plain-TCP connection is served in an event loop,
// also when its requests arrive a byte at a time, and leaves the loop for a
// goroutine of its own (keeping its order of answers) at a control-plane
// call, a body larger than the loop's buffer, or the end inside a request.
func TestEventLoopServes(t *testing.T) {
	t.Parallel()
	for _, d := range loopDrivers {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			testEventLoopServes(t, d)
		})
	}
}

func testEventLoopServes(t *testing.T, d serveMode) {
	rec := &recorder{}
	addr, srv := serveFastLoops(t, rec, nil, d)
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c, bufio.NewReader(c)
	}
	const ok = `200 {"PinBlock":"E83CE81E1644472B"}`

	// A byte at a time: the loop waits for the rest of the head and body.
	c, br := dial()
	raw := sdkRequest("/mac/verify", "", `{"a":1}`)
	for i := range len(raw) {
		if _, err := c.Write([]byte{raw[i]}); err != nil {
			t.Fatal(err)
		}
		if i%7 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if got := readAnswers(t, br, 1); got[0] != ok {
		t.Fatalf("byte at a time: %q", got)
	}
	if n := srv.LoopConns(); n != 1 {
		t.Fatalf("%d connections in the loop, want 1", n)
	}
	if s := rec.take(); len(s) != 1 || s[0].Body != `{"a":1}` {
		t.Fatalf("handler saw %+v", s)
	}

	// Pipelined: data plane, control plane (leaves the loop), data plane.
	c2, br2 := dial()
	big := strings.Repeat("x", 5000)
	all := sdkRequest("/a", "", "{}") + sdkRequest("/", "X-Amz-Target: PaymentCryptographyControlPlane.ListKeys\r\n", "{}") +
		sdkRequest("/b", "", "{}") + sdkRequest("/c", "", big) + sdkRequest("/d", "X-Answer: error\r\n", "{}")
	if _, err := io.WriteString(c2, all); err != nil {
		t.Fatal(err)
	}
	got := readAnswers(t, br2, 5)
	want := []string{ok, ok, ok, ok, `400 {"message":"1 validation error detected"}`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("answers %q, want %q", got, want)
	}
	var paths []string
	for _, s := range rec.take() {
		paths = append(paths, s.URL+":"+strconv.Itoa(len(s.Body)))
	}
	if strings.Join(paths, " ") != "/a:2 /:2 /b:2 /c:5000 /d:2" {
		t.Fatalf("handler saw %v", paths)
	}
	if n := srv.LoopConns(); n != 1 {
		t.Fatalf("%d connections in the loop, want 1 (the first)", n)
	}
	if _, _, _, _, leftArmed := srv.RingStats(); d.driver == awsapi.DriverIOUring && leftArmed == 0 {
		t.Fatal("io_uring: no connection left the loop with its recv armed (cancelled first)")
	}
	// The first connection is still served in the loop.
	if _, err := io.WriteString(c, sdkRequest("/e", "", "{}")); err != nil {
		t.Fatal(err)
	}
	if got := readAnswers(t, br, 1); got[0] != ok {
		t.Fatalf("again: %q", got)
	}
	rec.take()

	// The end inside a body: the goroutine path answers as net/http does
	// (the handler sees the body cut short).
	c3, br3 := dial()
	if _, err := io.WriteString(c3, sdkRequest("/f", "", "{}")[:len(sdkRequest("/f", "", "{}"))-1]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the loop reads the part first
	_ = c3.(*net.TCPConn).CloseWrite()
	if got := readAnswers(t, br3, 1); got[0] != ok {
		t.Fatalf("cut body: %q", got)
	}
	if s := rec.take(); len(s) != 1 || s[0].Body != "{" || s[0].BodyErr != io.ErrUnexpectedEOF.Error() {
		t.Fatalf("cut body: handler saw %+v", s)
	}
}

// TestEventLoopBlockedWrite: answers the client does not read fill the
// socket; the loop waits for it to drain, stops reading meanwhile, and
// every answer arrives in order.
func TestEventLoopBlockedWrite(t *testing.T) {
	t.Parallel()
	for _, d := range loopDrivers {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			testEventLoopBlockedWrite(t, d)
		})
	}
}

func testEventLoopBlockedWrite(t *testing.T, d serveMode) {
	rec := &recorder{}
	addr, _ := serveFastLoops(t, rec, nil, d)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	const n = 400 // 400 answers of 5 KB: more than the socket buffers hold
	var all bytes.Buffer
	for i := range n {
		all.WriteString(sdkRequest("/big/"+strconv.Itoa(i), "X-Answer: big\r\n", "{}"))
	}
	errc := make(chan error, 1)
	go func() { _, err := c.Write(all.Bytes()); errc <- err }()
	time.Sleep(100 * time.Millisecond)
	br := bufio.NewReader(c)
	for i := range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || len(b) != 5000 {
			t.Fatalf("answer %d: %d, %d bytes", i, resp.StatusCode, len(b))
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for i, s := range rec.take() {
		if s.URL != "/big/"+strconv.Itoa(i) {
			t.Fatalf("request %d served as %s", i, s.URL)
		}
	}
}

// TestEventLoopTimeouts: an idle connection and one with a head begun are
// closed after the http.Server's timeouts, without an answer.
func TestEventLoopTimeouts(t *testing.T) {
	t.Parallel()
	for _, d := range loopDrivers {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			testEventLoopTimeouts(t, d)
		})
	}
}

func testEventLoopTimeouts(t *testing.T, d serveMode) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := awsapi.NewHTTPServer(&http.Server{Handler: &recorder{}, ReadHeaderTimeout: 100 * time.Millisecond,
		IdleTimeout: 200 * time.Millisecond, ErrorLog: log.New(io.Discard, "", 0)})
	d.configure(t, srv)
	go func() { _ = srv.Serve(ln) }()
	defer func() { _ = srv.Close() }()
	d.check(t, srv)
	for _, tc := range []struct {
		name, send string
		min        time.Duration
	}{{"idle", "", 200 * time.Millisecond}, {"head begun", "POST / HTTP/1.1\r\nHo", 100 * time.Millisecond}} {
		start := time.Now() // before the server can start counting
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, tc.send); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(make([]byte, 1))
		took := time.Since(start)
		_ = c.Close()
		if n != 0 || err == nil || took < tc.min || took > 3*time.Second {
			t.Fatalf("%s: read %d %v after %v", tc.name, n, err, took)
		}
	}
}

// TestEventLoopSplitWrites: every exchange of TestHTTPServerMatchesNetHTTP,
// its bytes sent in pieces (of 64 bytes; or cut inside the head's end, and
// before the last byte, with a pause at each cut, so that the loop finds a
// part of a head and a part of a body), gets from the event loop the
// answers it gets in one piece (Date aside), and the handler sees the same.
func TestEventLoopSplitWrites(t *testing.T) {
	t.Parallel()
	for _, d := range loopDrivers {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			testEventLoopSplitWrites(t, d)
		})
	}
}

func testEventLoopSplitWrites(t *testing.T, d serveMode) {
	rec := &recorder{}
	addr, _ := serveFastLoops(t, rec, nil, d)
	for name, raw := range rawRequests() {
		want := dateField.ReplaceAllString(exchange(t, addr, raw), "Date: *\r")
		wantSeen := rec.take()
		var every64 []int
		for i := 64; i < len(raw); i += 64 {
			every64 = append(every64, i)
		}
		var cuts []int
		if i := strings.Index(raw, "\r\n\r\n"); i > 0 {
			cuts = append(cuts, i+2)
		}
		cuts = append(cuts, len(raw)-1)
		for _, tc := range []struct {
			how   string
			cuts  []int
			pause time.Duration
		}{{"in pieces of 64 bytes", every64, 0}, {"cut in the head's end and before the last byte", cuts, 20 * time.Millisecond}} {
			got := dateField.ReplaceAllString(exchangeSplit(t, addr, raw, tc.cuts, tc.pause), "Date: *\r")
			if got != want {
				t.Errorf("%s, %s: got\n%q\nwant\n%q", name, tc.how, got, want)
			}
			if seen := rec.take(); !reflect.DeepEqual(seen, wantSeen) {
				t.Errorf("%s, %s: handler saw\n%+v\nwant\n%+v", name, tc.how, seen, wantSeen)
			}
		}
	}
}

// exchangeSplit is exchange with raw written in pieces, cut at cuts
// (ascending), with a pause after each piece.
func exchangeSplit(t *testing.T, addr, raw string, cuts []int, pause time.Duration) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { // read meanwhile: a connection closed early must not block the writes
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			n, err := c.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	from := 0
	for _, to := range append(cuts, len(raw)) {
		if _, err := io.WriteString(c, raw[from:to]); err != nil {
			break // closed by the server: what it answered is compared
		}
		from = to
		time.Sleep(pause)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	<-done
	return out.String()
}
