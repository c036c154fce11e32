//go:build linux

package awsapi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"payhsm/internal/rawfd"
)

// Event loops for plaintext HTTP (Linux). A plain-TCP connection is served
// by one of a few event loops instead of a goroutine of its own, as on the
// host port (protocol/hostcmd): a loop waits in one level-triggered
// epoll_wait for all its connections, reads what a ready connection holds
// with one read(2), answers every complete request in it and writes the
// answers with one write(2). With a goroutine per connection, Go's poller
// costs every request a read that finds nothing (EAGAIN), a park and a
// wake-up of the goroutine.
//
// A loop serves in place only what is quick and common: data-plane requests
// (no X-Amz-Target field, so no store write or audit sync behind them) that
// the fast path takes (parseHead) and whose head and body fit the 4 KiB
// buffer. On anything else — a control-plane call, a larger body, a head the
// fast path refuses, the peer's end inside a request — the loop gives the
// connection, with the bytes it has read and the answers not yet written, to
// a goroutine of its own (fastConn.serve), which serves it from then on as
// it serves any connection (and hands it to net/http in turn when the fast
// path does not take it). TLS connections never enter a loop.
//
// Timeouts follow the http.Server's: IdleTimeout (else ReadTimeout)
// between requests, ReadHeaderTimeout (else ReadTimeout) for a head begun,
// ReadTimeout for a body begun, WriteTimeout for a blocked write; a late
// connection is closed without an answer, as net/http closes it. They are
// checked every eighth of the shortest, within [10 ms, 1 s].
//
// Two drivers (SetLoopDriver): epoll, described above, and io_uring
// (httploop_uring_linux.go), which replaces the wait, the read and the
// write with one ring per loop; parsing, serving, hand-over, timeouts and
// shutdown below are shared.

// errWouldBlock is what a loop connection's reader returns when the socket
// has nothing more to read now.
var errWouldBlock = errors.New("awsapi: would block")

// httpLoop is one event loop; only its goroutine touches its connections.
type httpLoop struct {
	s            *HTTPServer
	epfd         int
	ep           *os.File        // epfd in Go's poller: the loop waits there, parked, not in epoll_wait
	rc           syscall.RawConn // ep's
	wakeR, wakeW int
	events       []syscall.EpollEvent
	scan         time.Duration
	ring         *httpRing     // the io_uring driver's (httploop_uring_linux.go); nil: epoll
	done         chan struct{} // closed when run returns

	mu      sync.Mutex
	add     []*loopConn // handed over, not yet registered
	stopped bool

	conns map[int]*loopConn
}

// loopConn is a connection in a loop. Its fastConn parses and serves its
// requests; the fastConn's reader reads the socket without blocking (src),
// its writer appends to out, which the loop writes.
type loopConn struct {
	fc       *fastConn
	rwc      *loopRWC
	src      fdReader
	out      appendWriter
	off      int       // out.b[off:] is not written yet
	wantOut  bool      // a write blocked: watching EPOLLOUT, not reading
	closing  bool      // close once out is written (Connection: close, or an abort)
	since    time.Time // when the current wait began: idle, request begun, or write blocked (a send in flight)
	partial  bool      // a request has begun
	headDone bool      // ... and its head is complete

	// io_uring driver only (httploop_uring_linux.go)
	rsrc     ringReader // the fastConn's reader: what the ring delivered
	id       uint64     // names its operations in the ring
	recving  bool       // its multishot recv is armed
	paused   bool       // its recv is cancelled: it holds enough input while a send is in flight
	demoting bool       // leaving the loop once its recv has ended
	dead     bool       // dropped or handed over; kept until its operations complete
}

// startLoops starts n event loops (when n is 0, half of GOMAXPROCS, at
// least one, as on the host port: on a 2-core machine one loop took as
// little CPU per request as two, or less, and no less throughput; none when
// n < 0 or a loop cannot be made: connections then get a goroutine each).
// With the io_uring driver, a loop whose ring cannot be set up makes every
// loop an epoll loop, with a warning.
func (s *HTTPServer) startLoops(n int) {
	if n < 0 {
		return
	}
	if n == 0 {
		n = max(1, runtime.GOMAXPROCS(0)/2)
	}
	useRing := s.driver == DriverIOUring
	var loops []*httpLoop
	for i := 0; i < n; i++ {
		var ring *httpRing
		if useRing {
			var err error
			if ring, err = newHTTPRing(); err != nil {
				s.warnf("http: no io_uring; event loops on epoll", err)
				useRing = false
				for _, l := range loops {
					l.close()
				}
				loops = nil
				i = -1
				continue
			}
		}
		l, err := newHTTPLoop(s, ring)
		if err != nil {
			s.logf("http: no event loop, a goroutine per connection: %v", err)
			for _, l := range loops {
				l.close()
			}
			return
		}
		loops = append(loops, l)
	}
	d := DriverEpoll
	if useRing {
		d = DriverIOUring
	}
	// Published under mu for a Shutdown that runs while the first Serve
	// starts the loops (wakeLoops); Serve's callers see them through the
	// sync.Once that starts them.
	s.mu.Lock()
	s.loops = loops
	s.mu.Unlock()
	s.running.Store(d)
	for _, l := range loops {
		go l.run()
	}
}

func newHTTPLoop(s *HTTPServer, ring *httpRing) (*httpLoop, error) {
	if ring != nil {
		return newRingLoop(s, ring)
	}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	// Non-blocking, the epoll descriptor enters Go's poller through
	// os.NewFile: it is readable while one of its connections is ready.
	if err := syscall.SetNonblock(epfd, true); err != nil {
		_ = syscall.Close(epfd) // unused: released even on error
		return nil, fmt.Errorf("epoll: %w", err)
	}
	ep := os.NewFile(uintptr(epfd), "epoll")
	rc, err := ep.SyscallConn()
	if err == nil {
		err = ep.SetReadDeadline(time.Time{}) // os.ErrNoDeadline: not in Go's poller, the loop could not wait
	}
	if err != nil {
		_ = ep.Close()
		return nil, fmt.Errorf("epoll: %w", err)
	}
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		_ = ep.Close() // unused: released even on error
		return nil, fmt.Errorf("pipe2: %w", err)
	}
	l := &httpLoop{s: s, epfd: epfd, ep: ep, rc: rc, wakeR: p[0], wakeW: p[1], events: make([]syscall.EpollEvent, 64), conns: map[int]*loopConn{}, done: make(chan struct{})}
	l.scan = scanInterval(s.srv)
	if err := l.ctl(syscall.EPOLL_CTL_ADD, l.wakeR, syscall.EPOLLIN); err != nil {
		l.close()
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	return l, nil
}

// scanInterval is how often a loop checks the timeouts: an eighth of the
// shortest, within [10 ms, 1 s].
func scanInterval(srv *http.Server) time.Duration {
	shortest := time.Second
	for _, d := range []time.Duration{srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout} {
		if d > 0 {
			shortest = min(shortest, d/8)
		}
	}
	return max(shortest, 10*time.Millisecond)
}

// close releases the loop's descriptors; close(2) releases a descriptor
// even when it reports an error, and these hold no data.
func (l *httpLoop) close() {
	if l.ring != nil {
		l.ring.r.Close()
	} else {
		_ = l.ep.Close()
	}
	_ = syscall.Close(l.wakeR)
	_ = syscall.Close(l.wakeW)
}

// wake makes the loop look at the server's state and its new connections.
func (l *httpLoop) wake() {
	l.mu.Lock()
	l.wakeLocked()
	l.mu.Unlock()
}

// wakeLocked: l.mu is held. A stopped loop's pipe is closed (or about to
// be) and is not written. EAGAIN means a wake-up is pending already.
func (l *httpLoop) wakeLocked() {
	if !l.stopped {
		_, _ = syscall.Write(l.wakeW, []byte{1})
	}
}

func (l *httpLoop) ctl(op, fd int, events uint32) error {
	//nolint:gosec // G115: fd is a descriptor the kernel returned, a C int.
	ev := syscall.EpollEvent{Events: events, Fd: int32(fd)}
	return syscall.EpollCtl(l.epfd, op, fd, &ev)
}

// adopt hands c to an event loop; false when it must be served by a
// goroutine (no loops, or not a TCP connection).
func (s *HTTPServer) adopt(c net.Conn) bool {
	if len(s.loops) == 0 {
		return false
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	l := s.loops[s.nextLoop.Add(1)%uint64(len(s.loops))]
	l.mu.Lock()
	stopped := l.stopped // the loop failed, or the server is shutting down: the goroutine path decides
	l.mu.Unlock()
	if stopped {
		return false
	}
	// A duplicate of the descriptor, and the original closed, which takes it
	// out of Go's poller.
	fd, err := rawfd.Dup(tc)
	if err != nil {
		return false
	}
	lc := &loopConn{rwc: &loopRWC{Conn: c, fd: fd}, src: fdReader{fd: fd}}
	var src io.Reader = &lc.src
	if l.ring != nil {
		src = &lc.rsrc
	}
	fc := s.newConn(lc.rwc, src, &lc.out)
	_ = c.Close() // the duplicate keeps the socket open; nothing to handle
	if fc == nil {
		lc.rwc.closeFD()
		return true
	}
	lc.fc = fc
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		lc.rwc.closeFD()
		s.closed(fc)
		return true
	}
	l.add = append(l.add, lc)
	l.wakeLocked()
	l.mu.Unlock()
	return true
}

// wakeLoops makes every loop look at the server's state (shutdown).
func (s *HTTPServer) wakeLoops() {
	s.mu.Lock()
	loops := s.loops
	s.mu.Unlock()
	for _, l := range loops {
		l.wake()
	}
}

// run is the loop: wait, serve the ready connections, expire the late
// ones. Once the server shuts down and the loop has no connection left, it
// stops.
//
// It takes the ready connections with epoll_wait without a timeout, and
// when there are none waits for the epoll descriptor in Go's poller, its
// goroutine parked, with a deadline for the next scan of the timeouts. A
// thread blocked in epoll_wait instead would hold its P in a system call,
// which the runtime's monitor then takes back, every time, at a cost of
// several microseconds per request.
func (l *httpLoop) run() {
	defer close(l.done)
	if l.ring != nil {
		l.runRing()
		return
	}
	defer l.close()
	lastScan := time.Now()
	_ = l.ep.SetReadDeadline(lastScan.Add(l.scan))
	for {
		var n int
		var werr error
		err := l.rc.Read(func(fd uintptr) bool {
			for {
				n, werr = epollWaitNow(int(fd), l.events)
				if werr != syscall.EINTR {
					return n > 0 || werr != nil
				}
			}
		})
		if err == nil {
			err = werr
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			l.s.logf("http: event loop failed: %v", err)
			l.stop()
			return
		}
		now := time.Now()
		for i := range n {
			ev := &l.events[i]
			fd := int(ev.Fd)
			if fd == l.wakeR {
				l.takeNew(now)
				continue
			}
			if c := l.conns[fd]; c != nil {
				l.serve(c, ev.Events, now)
			}
		}
		stopped, scanned := l.endTurn(now, &lastScan)
		if stopped {
			return
		}
		if scanned {
			_ = l.ep.SetReadDeadline(now.Add(l.scan))
		}
	}
}

// takeNew registers the connections handed over since the last call.
func (l *httpLoop) takeNew(now time.Time) {
	var b [64]byte
	for {
		if n, _ := syscall.Read(l.wakeR, b[:]); n <= 0 {
			break
		}
	}
	l.mu.Lock()
	add := l.add
	l.add = nil
	l.mu.Unlock()
	if l.ring != nil {
		l.ringAdd(add, now)
		return
	}
	for _, c := range add {
		if err := l.ctl(syscall.EPOLL_CTL_ADD, c.rwc.fd, syscall.EPOLLIN|syscall.EPOLLRDHUP); err != nil {
			l.s.logf("http: cannot watch connection from %s: %v", c.fc.remoteAddr, err)
			c.rwc.closeFD()
			l.s.closed(c.fc)
			continue
		}
		l.conns[c.rwc.fd] = c
		c.since = now
		if !c.fc.state.CompareAndSwap(stateActive, stateIdle) {
			l.drop(c)
		}
	}
}

// stop ends the loop: it closes its connections and those handed over
// since, and refuses any handed over later.
func (l *httpLoop) stop() {
	l.mu.Lock()
	l.stopped = true
	add := l.add
	l.add = nil
	l.mu.Unlock()
	for _, c := range add {
		c.rwc.closeFD()
		l.s.closed(c.fc)
	}
	for _, c := range l.conns {
		l.drop(c)
	}
	if l.ring != nil {
		l.ringSettle()
	}
}

// drop closes c.
func (l *httpLoop) drop(c *loopConn) {
	if l.conns[c.rwc.fd] != c {
		return
	}
	l.forget(c)
	if l.ring != nil {
		l.ringDrop(c)
	}
	c.rwc.closeFD()
	l.s.closed(c.fc)
}

// forget takes c out of the loop, its descriptor still open.
func (l *httpLoop) forget(c *loopConn) {
	delete(l.conns, c.rwc.fd)
	if l.ring != nil {
		return
	}
	// On error fd is not watched anyway (or is closed next).
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, c.rwc.fd, nil)
}

// serve handles one readiness event of c.
func (l *httpLoop) serve(c *loopConn, events uint32, now time.Time) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				const size = 64 << 10
				buf := make([]byte, size)
				buf = buf[:runtime.Stack(buf, false)]
				l.s.logf("http: panic serving %v: %v\n%s", c.fc.remoteAddr, p, buf)
			}
			// As on the goroutine path: the answers that left the
			// response buffer go out, the connection closes.
			_ = l.flush(c, now)
			l.drop(c)
		}
	}()
	br := c.fc.br
	if c.wantOut {
		if events&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
			return
		}
		if !l.flush(c, now) {
			return
		}
	} else {
		// One read(2): what the socket holds, up to the buffer's free space.
		if _, err := br.Peek(br.Buffered() + 1); err != nil && err != errWouldBlock {
			if br.Buffered() > 0 { // the end inside a request: the goroutine path answers it
				l.demote(c)
				return
			}
			_ = l.flush(c, now) // the answers already built still go out
			l.drop(c)
			return
		}
	}
	l.process(c, now)
}

// process answers every complete request c holds, then writes the answers.
func (l *httpLoop) process(c *loopConn, now time.Time) {
	fc := c.fc
	br := fc.br
	for !c.closing && !c.wantOut && br.Buffered() > 0 {
		if !fc.state.CompareAndSwap(stateIdle, stateActive) && fc.state.Load() != stateActive {
			l.drop(c) // closed by Shutdown
			return
		}
		if !c.partial {
			c.partial, c.headDone, c.since = true, false, now
		}
		buf, _ := br.Peek(br.Buffered())
		i := bytes.Index(buf, crlf2)
		if bareLF(buf, i) {
			l.demote(c)
			return
		}
		if i < 0 {
			if len(buf) == br.Size() {
				l.demote(c) // a longer head: the goroutine path hands it on
				return
			}
			break // wait for the rest of the head
		}
		if !c.headDone {
			c.headDone, c.since = true, now // ReadTimeout from here
		}
		headLen := i + 4
		r, ok := fc.parseHead(buf[:headLen])
		if !ok || r.Header["X-Amz-Target"] != nil || headLen+int(r.ContentLength) > br.Size() {
			l.demote(c)
			return
		}
		if headLen+int(r.ContentLength) > len(buf) {
			break // wait for the rest of the body
		}
		_, _ = br.Discard(headLen)
		c.partial = false
		if !fc.serveRequest(r) {
			c.closing = true
		}
	}
	_ = fc.bw.Flush() // to out: cannot fail
	if !l.flush(c, now) {
		return
	}
	if c.closing {
		l.drop(c)
		return
	}
	if br.Buffered() == 0 && !c.wantOut {
		c.partial, c.since = false, now
		if !fc.state.CompareAndSwap(stateActive, stateIdle) && fc.state.Load() != stateIdle {
			l.drop(c)
		}
	}
}

// flush writes what is pending in c.out, and reports whether all of it is
// written. A write that cannot complete leaves the rest pending and waits
// for EPOLLOUT, not reading meanwhile; c is dropped on error. With the
// io_uring driver it puts a send of what is pending into the ring (and
// reports false): the send's completion goes on (ringSent).
func (l *httpLoop) flush(c *loopConn, now time.Time) bool {
	if l.ring != nil {
		return l.ringFlush(c, now)
	}
	for c.off < len(c.out.b) {
		w, err := rawfd.Write(c.rwc.fd, c.out.b[c.off:])
		if w > 0 {
			c.off += w
		}
		switch err {
		case nil, syscall.EINTR:
		case syscall.EAGAIN:
			if !c.wantOut {
				c.wantOut, c.since = true, now
				if l.ctl(syscall.EPOLL_CTL_MOD, c.rwc.fd, syscall.EPOLLOUT) != nil {
					l.drop(c)
				}
			}
			return false
		default:
			l.drop(c)
			return false
		}
	}
	c.out.b, c.off = c.out.b[:0], 0
	if c.wantOut {
		c.wantOut, c.since = false, now
		if l.ctl(syscall.EPOLL_CTL_MOD, c.rwc.fd, syscall.EPOLLIN|syscall.EPOLLRDHUP) != nil {
			l.drop(c)
			return false
		}
	}
	return true
}

// demote gives c to a goroutine of its own, with the bytes read and the
// answers not yet written. With the io_uring driver, a connection whose
// recv is armed first has it cancelled, and leaves when it has ended
// (ringReceived), with what it brought.
func (l *httpLoop) demote(c *loopConn) {
	if l.ring != nil && c.recving {
		if !c.demoting {
			c.demoting = true
			l.ring.stats.leftArmed.Add(1)
			l.cancelRecv(c)
		}
		return
	}
	l.forget(c)
	if l.ring != nil {
		l.ringForget(c)
	}
	fc := c.fc
	if !fc.state.CompareAndSwap(stateIdle, stateActive) && fc.state.Load() != stateActive {
		c.rwc.closeFD() // closed by Shutdown meanwhile
		l.s.closed(fc)
		return
	}
	_ = fc.bw.Flush() // to out: cannot fail
	pending := bytes.Clone(c.out.b[c.off:])
	in, _ := fc.br.Peek(fc.br.Buffered())
	in = append(bytes.Clone(in), c.rsrc.rest()...) // what the ring delivered beyond the buffer
	nc, err := c.rwc.toConn()
	if err != nil {
		l.s.logf("http: cannot serve connection from %s: %v", fc.remoteAddr, err)
		l.s.closed(fc)
		return
	}
	var r io.Reader = nc
	if len(in) > 0 {
		r = io.MultiReader(bytes.NewReader(in), nc)
	}
	l.s.mu.Lock() // Close and closeIdle read fc.rwc under it
	fc.rwc, fc.br, fc.bw = nc, bufio.NewReaderSize(r, 4<<10), bufio.NewWriterSize(nc, max(4<<10, len(pending)))
	l.s.mu.Unlock()
	_, _ = fc.bw.Write(pending) // fits the buffer: fc.serve writes it first
	go fc.serve()
}

// expire closes the connections past their timeouts.
func (l *httpLoop) expire(now time.Time) {
	srv := l.s.srv
	for _, c := range l.conns {
		var d time.Duration
		switch {
		case c.wantOut:
			d = srv.WriteTimeout
		case c.partial && !c.headDone:
			if d = srv.ReadHeaderTimeout; d <= 0 {
				d = srv.ReadTimeout
			}
		case c.partial:
			d = srv.ReadTimeout
		default:
			d = idleTimeout(srv)
		}
		if d > 0 && now.Sub(c.since) > d {
			l.drop(c)
		}
	}
}

// loopRWC stands for a loop connection where fastConn and HTTPServer use
// its net.Conn: addresses, deadlines (the loop keeps the timeouts), and
// Close from another goroutine, which shuts the socket down so that the
// loop sees its end.
type loopRWC struct {
	net.Conn // the original, closed: its addresses
	mu       sync.Mutex
	fd       int
	done     bool // fd is closed or given away
}

func (c *loopRWC) Read([]byte) (int, error)         { return 0, net.ErrClosed }
func (c *loopRWC) Write([]byte) (int, error)        { return 0, net.ErrClosed }
func (c *loopRWC) SetDeadline(time.Time) error      { return nil }
func (c *loopRWC) SetReadDeadline(time.Time) error  { return nil }
func (c *loopRWC) SetWriteDeadline(time.Time) error { return nil }

func (c *loopRWC) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return nil
	}
	return syscall.Shutdown(c.fd, syscall.SHUT_RDWR)
}

// closeFD closes the descriptor (once); close(2) releases it even when it
// reports an error.
func (c *loopRWC) closeFD() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.done {
		c.done = true
		_ = syscall.Close(c.fd)
	}
}

// toConn gives the socket back to Go's poller as a net.Conn.
func (c *loopRWC) toConn() (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return nil, net.ErrClosed
	}
	c.done = true
	f := os.NewFile(uintptr(c.fd), "http")
	nc, err := net.FileConn(f) // a duplicate of its own
	_ = f.Close()              // released even on error; the socket stays open in nc
	return nc, err
}

// fdReader reads a non-blocking socket: errWouldBlock when it holds nothing.
type fdReader struct{ fd int }

func (r *fdReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		n, err := rawfd.Read(r.fd, b)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return 0, errWouldBlock
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// appendWriter collects a loop connection's answers.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// epollWaitNow is epoll_pwait(2) with a zero timeout and no signal mask
// (epoll_wait(2), which arm64 lacks): it returns at once.
func epollWaitNow(epfd int, events []syscall.EpollEvent) (int, error) {
	//nolint:gosec // G103: epoll_wait(2) takes the array's address, as syscall.EpollWait does.
	r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// endTurn ends a turn of either driver's loop: during shutdown it takes
// what is left to hand over and stops once no connection remains
// (stopped), and every scan interval it expires connections past their
// timeouts (scanned).
func (l *httpLoop) endTurn(now time.Time, lastScan *time.Time) (stopped, scanned bool) {
	if l.s.inShutdown.Load() {
		l.takeNew(now)
		if len(l.conns) == 0 {
			l.stop()
			return true, false
		}
	}
	if now.Sub(*lastScan) < l.scan {
		return false, false
	}
	*lastScan = now
	l.expire(now)
	return false, true
}
