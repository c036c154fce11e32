package awsapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPServer serves the API over HTTP/1.1, in plain TCP or TLS, with
// keep-alive and pipelining, at a fraction of net/http's cost per request.
//
// It reads each request head itself. The requests the AWS SDKs and CLI
// send — POST, HTTP/1.1, a Content-Length body, ordinary header fields —
// it turns into the *http.Request net/http would build (same method, URL,
// header map, host, length and body) and hands to the handler, and writes
// the response as net/http writes it (status line, the handler's header
// fields sorted, Date, Content-Length, sniffed Content-Type). Anything else
// on a connection — another method or version, chunked bodies, Expect,
// Connection or Upgrade fields, a malformed or oversized head — hands the
// whole connection, with the bytes already read, to the net/http.Server it
// was built from, which serves it from then on: unusual requests get
// exactly net/http's behaviour, errors included.
//
// Per request it saves net/http's background read, its per-request
// goroutine wake-ups and most of its allocations (docs/performance.md).
// Two differences remain, neither visible to AWS clients: the request's
// context is not cancelled when the client goes away (no handler of this
// package depends on it), and a body longer than 2 KiB without a
// Content-Length is sent with one rather than chunked.
type HTTPServer struct {
	srv      *http.Server // configuration, and the fallback
	handoff  handoffListener
	fallback sync.Once

	mu         sync.Mutex
	listeners  map[net.Listener]struct{}
	conns      map[*fastConn]struct{}
	inShutdown atomic.Bool

	eventLoops int                         // SetEventLoops
	driver     string                      // SetLoopDriver
	warn       func(msg string, err error) // SetWarnLog
	running    atomic.Value                // string: the driver the loops run on (LoopDriver)
	loops      []*httpLoop                 // plain-TCP connections' event loops (httploop_linux.go); none: a goroutine each
	nextLoop   atomic.Uint64
}

// SetEventLoops sets how many event loops serve plain-TCP connections
// (httploop_linux.go): 0, the default, half of GOMAXPROCS (at least one); a negative
// number none, every connection then has a goroutine of its own, as TLS
// connections always do. Call it before Serve.
func (s *HTTPServer) SetEventLoops(n int) { s.eventLoops = n }

// The event loops' drivers (SetLoopDriver).
const (
	DriverEpoll   = "epoll"    // one level-triggered epoll set per loop, a read(2) and a write(2) per turn of a connection
	DriverIOUring = "io_uring" // one io_uring per loop: multishot recv, sends of every connection in one io_uring_enter
)

// SetLoopDriver sets how the event loops wait and move bytes: DriverEpoll
// (also the empty string, the default) or DriverIOUring (Linux 6.0; where
// no ring can be set up the loops run on epoll, with a warning in the
// error log). docs/performance.md, "Event loops for plaintext HTTP". Call
// it before Serve.
func (s *HTTPServer) SetLoopDriver(d string) { s.driver = d }

// SetWarnLog sets where the server reports what the operator should see
// (the io_uring driver's fallback to epoll); the default is the
// http.Server's error log. Call it before Serve.
func (s *HTTPServer) SetWarnLog(f func(msg string, err error)) { s.warn = f }

// warnf reports msg and err through SetWarnLog's function or the error log.
func (s *HTTPServer) warnf(msg string, err error) {
	if s.warn != nil {
		s.warn(msg, err)
		return
	}
	s.logf("%s: %v", msg, err)
}

// LoopDriver is the driver the event loops run on once Serve has started
// them (DriverIOUring, or DriverEpoll also after a fallback), or "" when
// there are none (every connection has a goroutine).
func (s *HTTPServer) LoopDriver() string {
	d, _ := s.running.Load().(string)
	return d
}

// NewHTTPServer returns a server with srv's handler, timeouts and error
// log; srv itself serves the connections handed over to it.
func NewHTTPServer(srv *http.Server) *HTTPServer {
	return &HTTPServer{srv: srv, handoff: handoffListener{ch: make(chan net.Conn), done: make(chan struct{})},
		listeners: map[net.Listener]struct{}{}, conns: map[*fastConn]struct{}{}}
}

// Serve accepts connections on ln until it fails or the server shuts
// down (http.ErrServerClosed). For TLS, ln is a tls.NewListener.
func (s *HTTPServer) Serve(ln net.Listener) error {
	s.fallback.Do(func() {
		s.handoff.addr = ln.Addr()
		go func() { _ = s.srv.Serve(&s.handoff) }() // ends when the handoff listener closes
		s.startLoops(s.eventLoops)
	})
	s.mu.Lock()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() { // as net/http: back off and retry
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logf("http: Accept error: %v; retrying in %v", err, delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if s.adopt(c) {
			continue
		}
		fc := s.newConn(c, c, c)
		if fc == nil {
			_ = c.Close()
			continue
		}
		go fc.serve()
	}
}

// Shutdown stops accepting, lets every request in progress finish, closes
// idle connections, and returns when all are closed or ctx ends; the
// fallback server shuts down alike.
func (s *HTTPServer) Shutdown(ctx context.Context) error {
	s.inShutdown.Store(true)
	s.wakeLoops()
	s.mu.Lock()
	var lerr error
	for ln := range s.listeners {
		if err := ln.Close(); err != nil && lerr == nil {
			lerr = err
		}
	}
	s.mu.Unlock()
	ferr := make(chan error, 1)
	go func() { ferr <- s.srv.Shutdown(ctx) }()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.closeIdle() {
			return errors.Join(lerr, <-ferr)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close closes the listeners and every connection at once.
func (s *HTTPServer) Close() error {
	s.inShutdown.Store(true)
	s.mu.Lock()
	var err error
	for ln := range s.listeners {
		err = errors.Join(err, ln.Close())
	}
	for c := range s.conns {
		_ = c.rwc.Close()
	}
	s.mu.Unlock()
	s.wakeLoops()
	return errors.Join(err, s.srv.Close())
}

// closeIdle closes the idle connections and reports whether none is left.
func (s *HTTPServer) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) {
			_ = c.rwc.Close()
		}
	}
	return len(s.conns) == 0
}

func (s *HTTPServer) logf(format string, args ...any) {
	if s.srv.ErrorLog != nil {
		s.srv.ErrorLog.Printf(format, args...)
	} else {
		log.Printf(format, args...)
	}
}

// newConn registers a connection read from r and written to w (c itself
// but in an event loop); nil when the server is shutting down.
func (s *HTTPServer) newConn(c net.Conn, r io.Reader, w io.Writer) *fastConn {
	fc := &fastConn{s: s, rwc: c, br: bufio.NewReaderSize(r, 4<<10), bw: bufio.NewWriterSize(w, 4<<10),
		remoteAddr: c.RemoteAddr().String()}
	fc.w.header = http.Header{}
	fc.hdr = http.Header{}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inShutdown.Load() {
		return nil
	}
	s.conns[fc] = struct{}{}
	s.connState(c, http.StateNew)
	return fc
}

// connState reports a fast-path connection's state change to the
// http.Server's ConnState hook (connection metrics), as net/http reports
// its own: New when accepted, Closed when closed here, Hijacked when handed
// over (net/http then reports it anew).
func (s *HTTPServer) connState(c net.Conn, st http.ConnState) {
	if f := s.srv.ConnState; f != nil {
		f(c, st)
	}
}

func (s *HTTPServer) forget(fc *fastConn) {
	s.mu.Lock()
	delete(s.conns, fc)
	s.mu.Unlock()
}

// closed reports an event loop's connection closed and forgets it.
func (s *HTTPServer) closed(fc *fastConn) {
	s.connState(fc.rwc, http.StateClosed)
	s.forget(fc)
}

// Connection states, for Shutdown.
const (
	stateActive int32 = iota
	stateIdle
	stateClosed
)

// fastConn is one client connection on the fast path.
type fastConn struct {
	s          *HTTPServer
	rwc        net.Conn
	br         *bufio.Reader
	bw         *bufio.Writer
	remoteAddr string
	tlsState   *tls.ConnectionState
	state      atomic.Int32
	body       fastBody
	w          fastResponse
	handedOff  bool
	req        http.Request // the request being served
	hdr        http.Header  // its header
	url        url.URL      // its URL, when the target is a plain path
	vals       []string     // its header values
}

func (c *fastConn) serve() {
	defer func() {
		if p := recover(); p != nil && p != http.ErrAbortHandler {
			const size = 64 << 10
			buf := make([]byte, size)
			buf = buf[:runtime.Stack(buf, false)]
			c.s.logf("http: panic serving %v: %v\n%s", c.remoteAddr, p, buf)
		}
		if c.handedOff {
			c.s.connState(c.rwc, http.StateHijacked)
		} else {
			_ = c.rwc.Close()
			c.s.connState(c.rwc, http.StateClosed)
		}
		c.s.forget(c)
	}()
	if tc, ok := c.rwc.(*tls.Conn); ok && !c.handshake(tc) {
		return
	}
	srv := c.s.srv
	if c.bw.Buffered() > 0 { // answers an event loop built before giving the connection up
		if srv.WriteTimeout > 0 {
			_ = c.rwc.SetWriteDeadline(time.Now().Add(srv.WriteTimeout))
		}
		if c.bw.Flush() != nil {
			return
		}
	}
	for {
		// Wait for a request, idle.
		if c.br.Buffered() == 0 {
			if !c.state.CompareAndSwap(stateActive, stateIdle) {
				return
			}
			if c.s.inShutdown.Load() {
				return
			}
			if d := idleTimeout(srv); d > 0 {
				_ = c.rwc.SetReadDeadline(time.Now().Add(d))
			}
			if _, err := c.br.Peek(1); err != nil {
				return
			}
			if !c.state.CompareAndSwap(stateIdle, stateActive) {
				return // closed by Shutdown meanwhile
			}
		}
		r, headLen, ok := c.readHead()
		if !ok {
			c.handOff()
			return
		}
		_, _ = c.br.Discard(headLen)
		if !c.serveRequest(r) {
			return
		}
	}
}

// handshake runs the TLS handshake as net/http does, and reports whether
// it succeeded.
func (c *fastConn) handshake(tc *tls.Conn) bool {
	srv := c.s.srv
	to := time.Duration(0)
	for _, v := range []time.Duration{srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout} {
		if v > 0 && (to == 0 || v < to) {
			to = v
		}
	}
	if to > 0 {
		dl := time.Now().Add(to)
		_ = c.rwc.SetReadDeadline(dl)
		_ = c.rwc.SetWriteDeadline(dl)
	}
	if err := tc.HandshakeContext(context.Background()); err != nil {
		reason := err.Error()
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			_ = re.Conn.Close()
			reason = "client sent an HTTP request to an HTTPS server"
		}
		c.s.logf("http: TLS handshake error from %s: %v", c.rwc.RemoteAddr(), reason)
		return false
	}
	if to > 0 {
		_ = c.rwc.SetReadDeadline(time.Time{})
		_ = c.rwc.SetWriteDeadline(time.Time{})
	}
	st := tc.ConnectionState()
	c.tlsState = &st
	return true
}

func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

func idleTimeout(srv *http.Server) time.Duration {
	if srv.IdleTimeout != 0 {
		return srv.IdleTimeout
	}
	return srv.ReadTimeout
}

// handOff gives the connection, with what is buffered, to the fallback
// net/http server.
func (c *fastConn) handOff() {
	if c.bw.Buffered() > 0 && c.bw.Flush() != nil {
		return
	}
	_ = c.rwc.SetReadDeadline(time.Time{})
	_ = c.rwc.SetWriteDeadline(time.Time{})
	var pc net.Conn = &prefixedConn{Conn: c.rwc, r: c.br}
	if c.tlsState != nil {
		pc = &prefixedTLSConn{prefixedConn{Conn: c.rwc, r: c.br}, *c.tlsState}
	}
	select {
	case c.s.handoff.ch <- pc:
		c.handedOff = true
	case <-c.s.handoff.done:
	}
}

// readHead parses the request head at the front of the buffer, without
// consuming it, into the request net/http would build. ok is false when
// the request is not one for the fast path.
func (c *fastConn) readHead() (r *http.Request, headLen int, ok bool) {
	srv := c.s.srv
	deadlineSet := false
	var buf []byte
	for {
		buf, _ = c.br.Peek(c.br.Buffered())
		i := bytes.Index(buf, crlf2)
		if bareLF(buf, i) {
			return nil, 0, false // lines that end in LF alone: net/http's path
		}
		if i >= 0 {
			headLen = i + 4
			break
		}
		if c.br.Buffered() == c.br.Size() {
			return nil, 0, false // longer than the fast path takes
		}
		if c.bw.Buffered() > 0 && c.bw.Flush() != nil { // answers to pipelined requests go out before waiting
			return nil, 0, false
		}
		if !deadlineSet {
			deadlineSet = true
			d := srv.ReadHeaderTimeout
			if d <= 0 {
				d = srv.ReadTimeout
			}
			if d > 0 {
				_ = c.rwc.SetReadDeadline(time.Now().Add(d))
			}
		}
		if _, err := c.br.Peek(c.br.Buffered() + 1); err != nil {
			if c.br.Buffered() == 0 {
				return nil, 0, false
			}
			return nil, 0, false // net/http answers the incomplete head
		}
	}
	r, ok = c.parseHead(buf[:headLen])
	return r, headLen, ok
}

// parseHead parses raw, a whole request head (its final empty line
// included), into the request net/http would build; ok is false when the
// request is not one for the fast path.
func (c *fastConn) parseHead(raw []byte) (r *http.Request, ok bool) {
	srv := c.s.srv
	headLen := len(raw)
	if srv.MaxHeaderBytes > 0 && headLen > srv.MaxHeaderBytes {
		return nil, false
	}
	// One string for the whole head: target and header fields are substrings.
	head := string(raw[:headLen-2])
	line, rest, _ := strings.Cut(head, "\r\n")
	target, found := strings.CutPrefix(line, "POST ")
	if !found {
		return nil, false
	}
	target, found = strings.CutSuffix(target, " HTTP/1.1")
	if !found || len(target) == 0 || target[0] != '/' || !isPrint(target) {
		return nil, false
	}
	// The header map, its values and the request are the connection's,
	// reused from one request to the next: a handler must not keep the
	// request once it has returned (awsapi.Server does not).
	h := c.hdr
	clear(h)
	vals := c.vals[:0]
	host, length, hosts, lengths := "", int64(-1), 0, 0
	for rest != "" {
		var ln string
		ln, rest, _ = strings.Cut(rest, "\r\n")
		k, v, found := strings.Cut(ln, ":")
		if !found || !validFieldName(k) || !validFieldValue(v) {
			return nil, false
		}
		v = trimOWS(v)
		k = textproto.CanonicalMIMEHeaderKey(k)
		switch k {
		case "Host":
			host, hosts = v, hosts+1
			continue // net/http moves it to Request.Host
		case "Content-Length":
			lengths++
			l, err := strconv.ParseInt(v, 10, 64)
			if err != nil || v == "" || v[0] < '0' || v[0] > '9' || l > MaxBodyBytes {
				return nil, false
			}
			length = l
		case "Transfer-Encoding", "Expect", "Connection", "Upgrade", "Pragma", "Trailer", "Te":
			return nil, false
		}
		if len(vals) == cap(vals) {
			vals = make([]string, 0, 2*cap(vals)+16) // the slices already in h keep the old array
		}
		vals = append(vals, v)
		one := vals[len(vals)-1 : len(vals) : len(vals)]
		if prev, ok := h[k]; ok {
			h[k] = append(prev, v) // a repeated field: copies, as the capacity is full
		} else {
			h[k] = one
		}
	}
	if hosts != 1 || lengths != 1 || !validHost(host) {
		return nil, false
	}
	var u *url.URL
	var err error
	if plainPath(target) {
		// What url.ParseRequestURI returns for it, in the connection's URL.
		c.url = url.URL{Path: target}
		u = &c.url
	} else {
		u, err = url.ParseRequestURI(target)
	}
	var escErr url.EscapeError
	badEscape := err != nil && errors.As(err, &escErr)
	if badEscape {
		// A request net/http would refuse with a plain-text 400: the
		// handler answers it in AWS's shape instead (badTarget).
		path, query, _ := strings.Cut(target, "?")
		u, err = &url.URL{Path: path, RawPath: path, RawQuery: query}, nil
	}
	if err != nil || u.Host != "" {
		return nil, false
	}
	c.vals = vals
	r = &c.req
	*r = http.Request{Method: http.MethodPost, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h,
		ContentLength: length, Host: host, RemoteAddr: c.remoteAddr, RequestURI: target, TLS: c.tlsState}
	if badEscape {
		r = r.WithContext(context.WithValue(context.Background(), badTargetKey{}, escErr))
	}
	return r, true
}

// badTargetKey marks, in a request's context, a request target with an
// invalid percent-escape (its url.EscapeError): such a request reaches the
// handler with the target as it came, and is refused there (Server.serve).
type badTargetKey struct{}

// badTarget returns the invalid percent-escape of r's target, or "".
func badTarget(r *http.Request) (string, bool) {
	e, ok := r.Context().Value(badTargetKey{}).(url.EscapeError)
	return string(e), ok
}

var crlf2 = []byte("\r\n\r\n")

// plainPath reports whether target is a path of letters, digits and
// "/-._~" alone (the data plane's request paths): url.ParseRequestURI
// makes of it a URL with only Path set, target itself.
func plainPath(target string) bool {
	return target != "" && target[0] == '/' && allIn(target, &plainPathBytes)
}

// plainPathBytes are the bytes of a plain request path: unreserved
// characters and '/'.
var plainPathBytes = alnumPlus("/-._~")

// bareLF reports whether a line feed without a carriage return comes in
// buf before end (the end of the head; -1 when it is not buffered yet).
func bareLF(buf []byte, end int) bool {
	if end >= 0 {
		buf = buf[:end]
	}
	for i := bytes.IndexByte(buf, '\n'); i >= 0; {
		if i == 0 || buf[i-1] != '\r' {
			return true
		}
		j := bytes.IndexByte(buf[i+1:], '\n')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

func isPrint(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// validFieldName: an RFC 9110 token, as net/textproto requires.
func validFieldName(k string) bool {
	return k != "" && allIn(k, &tokenBytes)
}

// tokenBytes are RFC 9110's tchar.
var tokenBytes = alnumPlus("!#$%&'*+-.^_`|~")

// alnumPlus is the set of ASCII letters and digits and the bytes of extra.
func alnumPlus(extra string) (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range extra {
		t[c] = true
	}
	return t
}

// allIn reports whether every byte of s is ASCII and in set.
func allIn(s string, set *[128]bool) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x80 || !set[c] {
			return false
		}
	}
	return true
}

// validFieldValue: no control character but HTAB, as net/http requires.
// Eight bytes at a time: a word with no byte below 0x20 and none equal to
// 0x7f needs no closer look.
func validFieldValue(v string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(v); i += 8 {
		x := binary.LittleEndian.Uint64([]byte(v[i : i+8]))
		low := (x - 0x20*ones) &^ x & highs // some byte < 0x20
		y := x ^ 0x7f*ones
		del := (y - ones) &^ y & highs // some byte == 0x7f
		if low|del != 0 && !validFieldBytes(v[i:i+8]) {
			return false
		}
	}
	return validFieldBytes(v[i:])
}

func validFieldBytes(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// validHost accepts the host[:port] forms SDKs send; anything else takes
// net/http's own check.
func validHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !hostByte(c) {
			return false
		}
	}
	return true
}

func hostByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_'
}

func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// serveRequest runs the handler on r and writes its response; it reports
// whether the connection stays open.
func (c *fastConn) serveRequest(r *http.Request) bool {
	srv := c.s.srv
	if c.br.Buffered() < int(r.ContentLength) {
		if c.bw.Buffered() > 0 && c.bw.Flush() != nil {
			return false
		}
		if srv.ReadTimeout > 0 {
			_ = c.rwc.SetReadDeadline(time.Now().Add(srv.ReadTimeout))
		}
	}
	c.body = fastBody{r: c.br, n: r.ContentLength}
	if r.ContentLength == 0 {
		r.Body = http.NoBody
	} else {
		r.Body = &c.body
	}
	w := &c.w
	w.reset()
	srv.Handler.ServeHTTP(w, r)
	// As net/http: while shutting down, answer with Connection: close; after
	// a body that could not be read, or a response body shorter than its
	// Content-Length, close without saying so.
	shutdown := c.s.inShutdown.Load()
	keep := !shutdown
	if c.body.n > 0 { // what the handler left of the body (at most MaxBodyBytes) is read and dropped
		if c.body.err != nil {
			keep = false
		} else if _, err := c.body.r.Discard(int(c.body.n)); err != nil {
			keep = false
		}
	}
	if srv.WriteTimeout > 0 {
		_ = c.rwc.SetWriteDeadline(time.Now().Add(srv.WriteTimeout))
	}
	keep = w.finish(c.bw, !shutdown) && keep
	if !keep || c.br.Buffered() == 0 { // pipelined requests are answered in one write
		if err := c.bw.Flush(); err != nil {
			return false
		}
	}
	return keep
}

// fastBody reads a request body of n bytes from the connection.
type fastBody struct {
	r   *bufio.Reader
	n   int64
	err error
}

func (b *fastBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	k, err := b.r.Read(p)
	b.n -= int64(k)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		b.err = err
	}
	if b.n == 0 && err == nil {
		err = io.EOF
	}
	return k, err
}

func (b *fastBody) Close() error { return nil }

// fastResponse is the http.ResponseWriter of the fast path: it keeps the
// response and writes it as net/http does when the handler returns.
type fastResponse struct {
	header      http.Header
	wroteHeader bool
	status      int
	head        []byte // status line and the handler's fields, fixed at WriteHeader
	hasLength   bool
	length      int64
	hasType     bool
	hasDate     bool
	hasEncoding bool
	body        []byte
}

func (w *fastResponse) reset() {
	clear(w.header)
	w.wroteHeader, w.status, w.head, w.body = false, 0, w.head[:0], w.body[:0]
	w.hasLength, w.hasType, w.hasDate, w.hasEncoding = false, false, false, false
}

func (w *fastResponse) Header() http.Header { return w.header }

func (w *fastResponse) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	w.wroteHeader, w.status = true, code
	b := append(w.head[:0], "HTTP/1.1 "...)
	if text := http.StatusText(code); text != "" {
		b = strconv.AppendInt(b, int64(code), 10)
		b = append(b, ' ')
		b = append(b, text...)
		b = append(b, "\r\n"...)
	} else {
		b = fmt.Appendf(b, "%03d status code %d\r\n", code, code)
	}
	var exclude map[string]bool
	if !bodyAllowed(code) {
		exclude = map[string]bool{"Content-Length": true, "Transfer-Encoding": true}
		if code == http.StatusNotModified {
			exclude["Content-Type"] = true
		}
	}
	w.head = appendHeaderFields(b, w.header, exclude)
	_, w.hasType = w.header["Content-Type"]
	_, w.hasDate = w.header["Date"]
	w.hasEncoding = w.header.Get("Content-Encoding") != ""
	if cl := w.header.Get("Content-Length"); cl != "" && exclude == nil {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.hasLength, w.length = true, n
		}
	}
}

func (w *fastResponse) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.hasLength && int64(len(w.body)+len(p)) > w.length {
		k := int(w.length) - len(w.body)
		w.body = append(w.body, p[:k]...)
		return k, http.ErrContentLength
	}
	w.body = append(w.body, p...)
	return len(p), nil
}

// finish writes the response to bw; keep false adds Connection: close. It
// reports false when the body fell short of the handler's Content-Length,
// after which, as with net/http, the connection must close.
func (w *fastResponse) finish(bw *bufio.Writer, keep bool) bool {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	_, _ = bw.Write(w.head)
	if !w.hasDate {
		_, _ = bw.WriteString("Date: ")
		_, _ = bw.Write(httpDate())
		_, _ = bw.WriteString("\r\n")
	}
	ok := true
	if bodyAllowed(w.status) {
		if !w.hasLength {
			_, _ = bw.WriteString("Content-Length: ")
			_, _ = bw.Write(strconv.AppendInt(nil, int64(len(w.body)), 10))
			_, _ = bw.WriteString("\r\n")
		} else if int64(len(w.body)) < w.length {
			ok = false // as net/http: the client cannot find the next response
		}
		if !w.hasType && !w.hasEncoding && len(w.body) > 0 {
			_, _ = bw.WriteString("Content-Type: ")
			_, _ = bw.WriteString(http.DetectContentType(w.body))
			_, _ = bw.WriteString("\r\n")
		}
	}
	if !keep {
		_, _ = bw.WriteString("Connection: close\r\n")
	}
	_, _ = bw.WriteString("\r\n")
	if bodyAllowed(w.status) {
		_, _ = bw.Write(w.body)
	}
	return ok
}

func bodyAllowed(status int) bool {
	informational := status >= 100 && status <= 199
	return !informational && status != http.StatusNoContent && status != http.StatusNotModified
}

// appendHeaderFields appends the fields of h but those in exclude as
// http.Header.WriteSubset writes them: keys in byte order, keys that are
// not tokens left out, CR and LF in values turned into spaces, values
// trimmed of white space.
func appendHeaderFields(b []byte, h http.Header, exclude map[string]bool) []byte {
	var arr [16]string
	keys := arr[:0]
	for k := range h {
		if !exclude[k] {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !validFieldName(k) {
			continue
		}
		for _, v := range h[k] {
			if strings.ContainsAny(v, "\r\n") {
				v = strings.NewReplacer("\n", " ", "\r", " ").Replace(v)
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, textproto.TrimString(v)...)
			b = append(b, "\r\n"...)
		}
	}
	return b
}

// httpDate is the Date field value, formatted once per second.
func httpDate() []byte {
	now := time.Now()
	sec := now.Unix()
	if d := cachedDate.Load(); d != nil && d.sec == sec {
		return d.text
	}
	d := &dateText{sec: sec, text: now.UTC().AppendFormat(nil, http.TimeFormat)}
	cachedDate.Store(d)
	return d.text
}

type dateText struct {
	sec  int64
	text []byte
}

var cachedDate atomic.Pointer[dateText]

// prefixedConn is a connection handed to net/http with the bytes already
// read in front.
type prefixedConn struct {
	net.Conn
	r *bufio.Reader
}

func (p *prefixedConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// prefixedTLSConn is a TLS connection handed over; net/http fills
// Request.TLS from its ConnectionState (it asks connections that are not a
// *tls.Conn for it).
type prefixedTLSConn struct {
	prefixedConn
	state tls.ConnectionState
}

func (p *prefixedTLSConn) ConnectionState() tls.ConnectionState { return p.state }

// handoffListener feeds handed-over connections to the fallback server.
type handoffListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }
