package awsapi_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"payhsm/protocol/awsapi"
)

// seen is what a handler saw of a request.
type seen struct {
	Method, URL, EscapedPath, RawQuery, Proto, Host, RequestURI string
	ProtoMajor, ProtoMinor                                      int
	Header                                                      http.Header
	ContentLength                                               int64
	TransferEncoding                                            []string
	Close, TLS                                                  bool
	Body                                                        string
	BodyErr                                                     string
}

// recorder is a handler that records each request and answers in the way
// the request's X-Answer field asks.
type recorder struct {
	mu   sync.Mutex
	reqs []seen
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := seen{Method: r.Method, URL: r.URL.String(), EscapedPath: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery, Proto: r.Proto,
		Host: r.Host, RequestURI: r.RequestURI, ProtoMajor: r.ProtoMajor, ProtoMinor: r.ProtoMinor, Header: r.Header.Clone(),
		ContentLength: r.ContentLength, TransferEncoding: r.TransferEncoding, Close: r.Close, TLS: r.TLS != nil}
	answer := r.Header.Get("X-Answer")
	if answer != "unread" {
		b, err := io.ReadAll(r.Body)
		s.Body = string(b)
		if err != nil {
			s.BodyErr = err.Error()
		}
	}
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, s)
	rec.mu.Unlock()
	h := w.Header()
	h["X-Amzn-Requestid"] = []string{"0000-1111"}
	switch answer {
	case "", "unread":
		body := `{"PinBlock":"E83CE81E1644472B"}`
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, body)
	case "error":
		h.Set("Content-Type", "application/json")
		h.Set("X-Amzn-ErrorType", "ValidationException")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"message":"1 validation error detected"}`)
	case "sniff":
		_, _ = io.WriteString(w, "<html>hello</html>")
	case "empty":
	case "nocontent":
		h.Set("Content-Length", "5")
		w.WriteHeader(http.StatusNoContent)
	case "spaces":
		h.Set("X-Padded", "  a \r\n b  ")
		h["x-lower"] = []string{"v1", "v2"}
		w.WriteHeader(599)
	case "late-header":
		w.WriteHeader(http.StatusCreated)
		h.Set("X-Late", "1") // after WriteHeader: not sent
		_, _ = io.WriteString(w, "{}")
	case "shortlen": // declares more than it writes
		h.Set("Content-Length", "10")
		_, _ = io.WriteString(w, "{}")
	case "big":
		h.Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, strings.Repeat("0123456789", 500))
	case "panic":
		panic(http.ErrAbortHandler)
	}
}

func (rec *recorder) take() []seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	r := rec.reqs
	rec.reqs = nil
	return r
}

func serveNetHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// serveMode is a way HTTPServer serves a plain-TCP connection: in event
// loops (loops >= 0; on Linux) on a driver, or with a goroutine of its own.
type serveMode struct {
	name   string
	loops  int
	driver string
}

// serveModes are every way: event loops on epoll (the library's default on
// Linux) and on io_uring, and a goroutine per connection.
var serveModes = []serveMode{
	{"event loops", 0, awsapi.DriverEpoll},
	{"event loops on io_uring", 0, awsapi.DriverIOUring},
	{"goroutines", -1, ""},
}

// loopDrivers are the event loops' drivers, one loop each.
var loopDrivers = []serveMode{{"epoll", 1, awsapi.DriverEpoll}, {"io_uring", 1, awsapi.DriverIOUring}}

// configure sets srv to serve as m, and skips t, saying why, where m's
// driver cannot run here (no io_uring ring can be set up).
func (m serveMode) configure(t *testing.T, srv *awsapi.HTTPServer) {
	t.Helper()
	if m.driver == awsapi.DriverIOUring && m.loops >= 0 {
		if err := ringAvailable(); err != nil {
			t.Skipf("no io_uring event loop here: %v", err)
		}
	}
	srv.SetEventLoops(m.loops)
	srv.SetLoopDriver(m.driver)
}

// check fails t if srv's loops do not run on m's driver once it serves
// (no silent fallback to epoll).
func (m serveMode) check(t *testing.T, srv *awsapi.HTTPServer) {
	t.Helper()
	if m.loops < 0 || !loopsHere {
		return
	}
	for end := time.Now().Add(5 * time.Second); srv.LoopDriver() == "" && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	if got := srv.LoopDriver(); got != m.driver {
		t.Fatalf("event loops on %q, want %q", got, m.driver)
	}
}

func serveFast(t *testing.T, h http.Handler, wrap func(net.Listener) net.Listener) (string, *awsapi.HTTPServer) {
	t.Helper()
	return serveFastLoops(t, h, wrap, serveModes[0])
}

func serveFastLoops(t *testing.T, h http.Handler, wrap func(net.Listener) net.Listener, mode serveMode) (string, *awsapi.HTTPServer) {
	t.Helper()
	srv := awsapi.NewHTTPServer(&http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)})
	mode.configure(t, srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if wrap != nil {
		ln = wrap(ln)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	mode.check(t, srv)
	return addr, srv
}

// exchange writes raw on a new connection, closes its sending side, and
// returns every byte the server sends until it closes the connection (or
// stays silent for a while).
func exchange(t *testing.T, addr string, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite() // the server sees the end of the requests at once
	var out bytes.Buffer
	buf := make([]byte, 64<<10)
	for {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			return out.String()
		}
	}
}

var dateField = regexp.MustCompile(`(?m)^Date: [^\r]*\r$`)

// rawRequests are requests as SDKs send them (the fast path) and as they
// should not be sent (net/http's path), each once alone.
func rawRequests() map[string]string {
	const body = `{"EncryptedPinBlock":"230B4C43B8BA2C5C"}`
	sdk := func(extra string) string {
		return "POST /pindata/translate HTTP/1.1\r\nHost: 127.0.0.1:18081\r\nUser-Agent: aws-sdk-go-v2/1.0\r\nContent-Length: " +
			strconv.Itoa(len(body)) + "\r\nAccept-Encoding: identity\r\nAmz-Sdk-Invocation-Id: 1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AK/20260314/us-east-1/payment-cryptography/aws4_request, SignedHeaders=content-length;content-type;host;x-amz-date, Signature=00\r\nContent-Type: application/json\r\nX-Amz-Date: 20260314T150926Z\r\n" +
			extra + "\r\n" + body
	}
	call := func(extra string) string {
		return "POST / HTTP/1.1\r\nHost: 127.0.0.1:18081\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: 2\r\n" +
			"X-Amz-Target: PaymentCryptographyControlPlane.ListKeys\r\n" + extra + "\r\n{}"
	}
	return map[string]string{
		"sdk":                 sdk(""),
		"sdk error answer":    sdk("X-Answer: error\r\n"),
		"sdk sniffed answer":  sdk("X-Answer: sniff\r\n"),
		"sdk empty answer":    sdk("X-Answer: empty\r\n"),
		"sdk 204 answer":      sdk("X-Answer: nocontent\r\n"),
		"sdk padded answer":   sdk("X-Answer: spaces\r\n"),
		"sdk late header":     sdk("X-Answer: late-header\r\n"),
		"sdk body unread":     sdk("X-Answer: unread\r\n"),
		"sdk panic":           sdk("X-Answer: panic\r\n"),
		"lowercase names":     strings.ReplaceAll(strings.ReplaceAll(sdk(""), "Content-Type:", "content-type:"), "X-Amz-Date:", "x-amz-date:"),
		"repeated field":      sdk("X-Amz-Meta: a\r\nX-Amz-Meta: b\r\n"),
		"padded value":        sdk("X-Amz-Meta:   a  b \t\r\n"),
		"empty value":         sdk("X-Amz-Meta:\r\n"),
		"control plane":       "POST / HTTP/1.1\r\nHost: h\r\nX-Amz-Target: PaymentCryptographyControlPlane.ListKeys\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: 2\r\n\r\n{}",
		"escaped label":       "POST /keys/arn%3Aaws%3Apayment-cryptography%3Aus-east-1%3A111122223333%3Akey%2Fabc/encrypt HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
		"query":               "POST /mac/verify?x=1&y=%41 HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
		"zero-padded length":  "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 002\r\n\r\n{}",
		"plus length":         "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +2\r\n\r\n{}",
		"two lengths":         "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
		"no length":           "POST / HTTP/1.1\r\nHost: h\r\n\r\n",
		"get":                 "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"http/1.0":            "POST / HTTP/1.0\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}",
		"chunked":             "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
		"expect":              "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
		"connection close":    "POST / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
		"pragma":              "POST / HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\nContent-Length: 2\r\n\r\n{}",
		"no host":             "POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
		"two hosts":           "POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 2\r\n\r\n{}",
		"bad host":            "POST / HTTP/1.1\r\nHost: a b\r\nContent-Length: 2\r\n\r\n{}",
		"bad field name":      "POST / HTTP/1.1\r\nHost: h\r\nBad Name: x\r\nContent-Length: 2\r\n\r\n{}",
		"space before colon":  "POST / HTTP/1.1\r\nHost: h\r\nX-A : x\r\nContent-Length: 2\r\n\r\n{}",
		"control in value":    "POST / HTTP/1.1\r\nHost: h\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\n{}",
		"obs-fold":            "POST / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\n{}",
		"bare LF":             "POST / HTTP/1.1\nHost: h\nContent-Length: 2\n\n{}",
		"absolute target":     "POST http://h/x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}",
		"asterisk target":     "POST * HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
		"huge head":           "POST / HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("x", 6000) + "\r\nContent-Length: 2\r\n\r\n{}",
		"oversized head":      "POST / HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("x", 80000) + "\r\nContent-Length: 2\r\n\r\n{}",
		"short body":          "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n{}",
		"garbage":             "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
		"empty line first":    "\r\nPOST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}",
		"pipelined":           sdk("") + sdk("X-Answer: error\r\n") + sdk("X-Answer: sniff\r\n"),
		"pipelined then odd":  sdk("") + "GET / HTTP/1.1\r\nHost: h\r\n\r\n" + sdk(""),
		"big answer":          sdk("X-Answer: big\r\n"),
		"short answer":        sdk("X-Answer: shortlen\r\n") + sdk(""),
		"two in one, closing": sdk("") + "POST / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}" + sdk(""),
		// Control-plane calls, which leave an event loop for a goroutine.
		"call":                call(""),
		"call error answer":   call("X-Answer: error\r\n"),
		"call sniffed answer": call("X-Answer: sniff\r\n"),
		"call body unread":    call("X-Answer: unread\r\n"),
		"call short answer":   call("X-Answer: shortlen\r\n") + sdk(""),
		"call panic":          call("X-Answer: panic\r\n") + sdk(""),
		"calls pipelined":     call("") + call("X-Answer: error\r\n") + call(""),
		"call then data":      call("") + sdk("") + sdk("X-Answer: sniff\r\n"),
		"data then call":      sdk("") + sdk("X-Answer: error\r\n") + call("") + sdk(""),
		"call then odd":       call("") + "GET / HTTP/1.1\r\nHost: h\r\n\r\n" + call(""),
	}
}

// TestHTTPServerMatchesNetHTTP sends the same bytes to net/http and to the
// fast server, each with the same recording handler: the handler must see
// the same requests, and the client the same bytes (but for Date, and the
// framing of a body net/http chunks).
func TestHTTPServerMatchesNetHTTP(t *testing.T) {
	t.Parallel()
	for _, mode := range serveModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			testMatchesNetHTTP(t, mode)
		})
	}
}

func testMatchesNetHTTP(t *testing.T, mode serveMode) {
	recA, recB := &recorder{}, &recorder{}
	a := serveNetHTTP(t, recA)
	b, _ := serveFastLoops(t, recB, nil, mode)
	for name, raw := range rawRequests() {
		want := dateField.ReplaceAllString(exchange(t, a, raw), "Date: *\r")
		got := dateField.ReplaceAllString(exchange(t, b, raw), "Date: *\r")
		if name == "big answer" { // net/http chunks a long body without Content-Length; the fast path sends the length
			if !strings.Contains(want, "Transfer-Encoding: chunked") || !strings.Contains(got, "Content-Length: 5000\r\n") ||
				!strings.HasSuffix(got, strings.Repeat("0123456789", 500)) {
				t.Errorf("%s: got\n%.300s\nwant\n%.300s", name, got, want)
			}
		} else if got != want {
			t.Errorf("%s: got\n%q\nwant\n%q", name, got, want)
		}
		sa, sb := recA.take(), recB.take()
		if !reflect.DeepEqual(sa, sb) {
			t.Errorf("%s: handler saw\n%+v\nnet/http's saw\n%+v", name, sb, sa)
		}
	}
}

// TestHTTPServerKeepAlive: many requests on one connection, one at a time
// and pipelined, through net/http's client.
func TestHTTPServerKeepAlive(t *testing.T) {
	t.Parallel()
	for _, mode := range serveModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			testKeepAlive(t, mode)
		})
	}
}

func testKeepAlive(t *testing.T, mode serveMode) {
	rec := &recorder{}
	addr, _ := serveFastLoops(t, rec, nil, mode)
	tr := &http.Transport{MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr}
	var conns sync.Map
	for i := range 50 {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/mac/verify", strings.NewReader(`{"i":`+strconv.Itoa(i)+`}`))
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || string(b) != `{"PinBlock":"E83CE81E1644472B"}` {
			t.Fatalf("request %d: %d %q %v", i, resp.StatusCode, b, err)
		}
		_ = resp.Body.Close()
	}
	for _, s := range rec.take() {
		conns.Store(s.Header.Get("X-Conn"), true)
	}
	// Pipelined: 20 requests in one write, 20 answers in order.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	var all bytes.Buffer
	for i := range 20 {
		fmt.Fprintf(&all, "POST /x/%d HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}", i)
	}
	if _, err := c.Write(all.Bytes()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i := range 20 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("pipelined answer %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	for i, s := range rec.take() {
		if s.URL != "/x/"+strconv.Itoa(i) {
			t.Fatalf("pipelined request %d served as %s", i, s.URL)
		}
	}
}

// TestHTTPServerTLS: over TLS, both paths see the TLS state.
func TestHTTPServerTLS(t *testing.T) {
	t.Parallel()
	ts := httptest.NewUnstartedServer(nil) // only for its certificate
	ts.StartTLS()
	cert := ts.TLS.Certificates[0]
	pool := ts.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	ts.Close()
	rec := &recorder{}
	addr, _ := serveFast(t, rec, func(ln net.Listener) net.Listener {
		return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	})
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "example.com", MinVersion: tls.VersionTLS12}}}
	for _, method := range []string{http.MethodPost, http.MethodPut} { // PUT takes net/http's path
		req, _ := http.NewRequest(method, "https://"+addr+"/x", strings.NewReader("{}"))
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", method, resp.StatusCode)
		}
	}
	got := rec.take()
	if len(got) != 2 || !got[0].TLS || !got[1].TLS || got[1].Method != http.MethodPut {
		t.Fatalf("requests %+v", got)
	}
	// Plain HTTP to the TLS port: net/http's answer.
	if out := exchange(t, addr, "POST / HTTP/1.1\r\nHost: h\r\n\r\n"); !strings.HasPrefix(out, "HTTP/1.0 400 Bad Request\r\n") {
		t.Fatalf("plain HTTP to TLS: %q", out)
	}
}

// slowHandler holds each request until released.
type slowHandler struct {
	started chan struct{}
	release chan struct{}
}

func (h *slowHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	h.started <- struct{}{}
	<-h.release
	_, _ = io.WriteString(w, "done")
}

// TestHTTPServerShutdown: a request in progress completes (with
// Connection: close), idle connections close, Serve returns
// http.ErrServerClosed.
func TestHTTPServerShutdown(t *testing.T) {
	t.Parallel()
	for _, mode := range serveModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			testShutdown(t, mode)
		})
	}
}

func testShutdown(t *testing.T, mode serveMode) {
	h := &slowHandler{started: make(chan struct{}, 1), release: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := awsapi.NewHTTPServer(&http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second})
	mode.configure(t, srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	mode.check(t, srv)
	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = idle.Close() }()
	busy, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = busy.Close() }()
	if _, err := io.WriteString(busy, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-h.started
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in progress", err)
	default:
	}
	close(h.release)
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil || resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("answer during shutdown: %+v %v", resp, err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	_ = idle.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := idle.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("idle connection still open: %d %v", n, err)
	}
}
