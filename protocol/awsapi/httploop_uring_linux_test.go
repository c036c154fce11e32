//go:build linux

package awsapi_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"payhsm/protocol/awsapi"
)

// smallBuffers wraps a listener so that every accepted connection has a
// 4 KiB send buffer: a 5 KB answer is sent in parts, and many of them
// fill the socket at once.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		_ = c.(*net.TCPConn).SetWriteBuffer(4096) // best effort: the test checks what happened
	}
	return c, err
}

func wrapSmall(ln net.Listener) net.Listener { return smallBuffers{ln} }

var ioURing = serveMode{"io_uring", 1, awsapi.DriverIOUring}

// TestRingHeldInputPartialSends: a client pipelines many requests for 5 KB
// answers and does not read at first. The io_uring loop sends the answers
// in parts (a small send buffer), holds the requests that arrive while a
// send is in flight, pauses the recv once it holds enough, and in the end
// every answer arrives, in order, once. The counters show that each of
// those paths was taken.
func TestRingHeldInputPartialSends(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	addr, srv := serveFastLoops(t, rec, wrapSmall, ioURing)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	const n = 300
	var all bytes.Buffer
	for i := range n {
		all.WriteString(sdkRequest("/big/"+strconv.Itoa(i), "X-Answer: big\r\n", "{}"))
	}
	errc := make(chan error, 1)
	go func() { _, err := c.Write(all.Bytes()); errc <- err }()
	time.Sleep(200 * time.Millisecond) // the answers fill the socket meanwhile
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
	got := rec.take()
	if len(got) != n {
		t.Fatalf("handler saw %d requests, want %d", len(got), n)
	}
	for i, s := range got {
		if s.URL != "/big/"+strconv.Itoa(i) {
			t.Fatalf("request %d served as %s", i, s.URL)
		}
	}
	partial, held, paused, _, _ := srv.RingStats()
	if partial == 0 || held == 0 || paused == 0 {
		t.Fatalf("partial sends %d, completions held %d, recvs paused %d: each path must have been taken", partial, held, paused)
	}
	if srv.LoopConns() != 1 {
		t.Fatalf("%d connections in the loop, want 1", srv.LoopConns())
	}
}

// TestRingHandOverHeldInput: a control-plane call that arrives while the
// answers before it are being sent (held input, then a paused recv) leaves
// the loop with every byte received after it: the goroutine it is handed
// to answers it and the requests after it, in order.
func TestRingHandOverHeldInput(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	addr, srv := serveFastLoops(t, rec, wrapSmall, ioURing)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	var all bytes.Buffer
	var want []string
	for i := range 200 {
		all.WriteString(sdkRequest("/big/"+strconv.Itoa(i), "X-Answer: big\r\n", "{}"))
		want = append(want, "/big/"+strconv.Itoa(i))
	}
	all.WriteString(sdkRequest("/", "X-Amz-Target: PaymentCryptographyControlPlane.ListKeys\r\n", "{}"))
	want = append(want, "/")
	for i := range 20 {
		all.WriteString(sdkRequest("/after/"+strconv.Itoa(i), "", "{}"))
		want = append(want, "/after/"+strconv.Itoa(i))
	}
	errc := make(chan error, 1)
	go func() { _, err := c.Write(all.Bytes()); errc <- err }()
	time.Sleep(200 * time.Millisecond)
	br := bufio.NewReader(c)
	for i := range want {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("answer %d: %d", i, resp.StatusCode)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range rec.take() {
		got = append(got, s.URL)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("handler saw %d requests:\n%v\nwant\n%v", len(got), got, want)
	}
	if _, held, _, _, _ := srv.RingStats(); held == 0 {
		t.Fatal("no input was held during a send")
	}
	if n := srv.LoopConns(); n != 0 {
		t.Fatalf("%d connections in the loop, want 0 (handed over)", n)
	}
}

// TestRingCloseDuringSend: a client that asked for more than the sockets
// hold resets the connection while the answers are being sent. The loop's
// send fails, the connection is dropped (once its operations have
// completed), and the loop goes on serving.
func TestRingCloseDuringSend(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	addr, srv := serveFastLoops(t, rec, wrapSmall, ioURing)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	var all bytes.Buffer
	for i := range 100 {
		all.WriteString(sdkRequest("/big/"+strconv.Itoa(i), "X-Answer: big\r\n", "{}"))
	}
	if _, err := c.Write(all.Bytes()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // a send is in flight, blocked
	_ = c.(*net.TCPConn).SetLinger(0)  // a reset, not an orderly end
	_ = c.Close()
	for end := time.Now().Add(5 * time.Second); srv.LoopConns() > 0 && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := srv.LoopConns(); n != 0 {
		t.Fatalf("%d connections still in the loop", n)
	}
	if _, _, _, sendErrors, _ := srv.RingStats(); sendErrors == 0 {
		t.Fatalf("no send failed: the connection was not closed during a send")
	}
	rec.take()
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c2.Close() }()
	if _, err := io.WriteString(c2, sdkRequest("/after", "", "{}")); err != nil {
		t.Fatal(err)
	}
	if got := readAnswers(t, bufio.NewReader(c2), 1); !strings.HasPrefix(got[0], "200 ") {
		t.Fatalf("after the reset: %q", got)
	}
}

// TestRingCloseServerDuringSend: Close while a send is blocked ends the
// loop (its operations complete once the sockets are shut down) and Serve.
func TestRingCloseServerDuringSend(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	var mu sync.Mutex
	srv := awsapi.NewHTTPServer(&http.Server{Handler: &recorder{}, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: log.New(lockedWriter{&mu, &logged}, "", 0)})
	ioURing.configure(t, srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(wrapSmall(ln)) }()
	ioURing.check(t, srv)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	var all bytes.Buffer
	for i := range 100 {
		all.WriteString(sdkRequest("/big/"+strconv.Itoa(i), "X-Answer: big\r\n", "{}"))
	}
	if _, err := c.Write(all.Bytes()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	_ = srv.Close()
	select {
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	for end := time.Now().Add(5 * time.Second); srv.LoopConns() > 0 && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := srv.LoopConns(); n != 0 {
		t.Fatalf("%d connections still in the loop", n)
	}
	if !srv.LoopsEnded(5 * time.Second) {
		t.Fatal("the event loop did not end")
	}
	// The client sees the end after what was sent.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(logged.String(), "still in flight") {
		t.Fatalf("log: %s", logged.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// TestEventLoopRingFallback: where no ring can be set up, the io_uring
// driver's loops run on epoll, say so in the error log, and serve. Not
// parallel: it replaces the ring's setup for the whole package.
func TestEventLoopRingFallback(t *testing.T) {
	restore := awsapi.FailHTTPRingSetup(errors.New("no ring for this test"))
	defer restore()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	var mu sync.Mutex
	srv := awsapi.NewHTTPServer(&http.Server{Handler: &recorder{}, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: log.New(lockedWriter{&mu, &logged}, "", 0)})
	srv.SetEventLoops(2)
	srv.SetLoopDriver(awsapi.DriverIOUring)
	go func() { _ = srv.Serve(ln) }()
	defer func() { _ = srv.Close() }()
	serveModes[0].check(t, srv) // epoll
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if _, err := io.WriteString(c, sdkRequest("/x", "", "{}")); err != nil {
		t.Fatal(err)
	}
	if got := readAnswers(t, bufio.NewReader(c), 1); !strings.HasPrefix(got[0], "200 ") {
		t.Fatalf("answer: %q", got)
	}
	if srv.LoopConns() != 1 {
		t.Fatalf("%d connections in the loops, want 1", srv.LoopConns())
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logged.String(), "no io_uring") || !strings.Contains(logged.String(), "no ring for this test") {
		t.Fatalf("log: %q", logged.String())
	}
}
