//go:build linux

package awsapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"payhsm/internal/rawfd"
	"payhsm/internal/uring"
)

// The io_uring driver of the event loops (SetLoopDriver(DriverIOUring)), as
// the host port's (protocol/hostcmd/loop_uring_linux.go): the epoll loop
// with its wait and its read and write system calls replaced by one ring
// per loop, locked to the loop's thread (a single issuer with deferred task
// work). Every connection keeps a multishot recv armed on the loop's
// provided-buffer ring; each completion's bytes are read by the
// connection's bufio.Reader straight from the kernel's buffer (ringReader;
// what does not fit is copied aside) and the buffer is given back at once.
// Each turn of the loop makes one io_uring_enter that submits the sends of
// every connection answered since the last turn and waits for the next
// completions (or the timeout scan). Parsing, serving, hand-over, timeouts
// and shutdown are the epoll loop's (process, demote, expire).
//
// A connection's answers are the kernel's while their send is in flight
// (wantOut): its input is not served meanwhile (the answers would be
// appended to the buffer being sent) but held, up to ringHold bytes; past
// that its recv is cancelled until the send completes (the epoll loop does
// not read while a write is blocked), so a peer that does not read is held
// back by TCP. A connection handed to a goroutine first has its recv
// cancelled, and leaves once the recv has ended, with the bytes it brought.
// A dropped connection is shut down, which completes its operations, and
// kept (byID) until they have.

type httpRing struct {
	r         *uring.Ring
	bufs      *uring.BufRing       // where the recvs land
	byID      map[uint64]*loopConn // connections with operations in the ring, dropped ones included
	last      uint64               // the last connection id given
	wakeArmed bool                 // a poll on the wake-up pipe is in the ring
	stats     ringStats
}

// ringStats counts the driver's rarer paths (for the tests, which check
// that they were taken); only the loop writes them.
type ringStats struct {
	partialSends atomic.Int64 // sends that took part of the answers
	heldInput    atomic.Int64 // completions whose bytes arrived while a send was in flight
	pauses       atomic.Int64 // recvs cancelled while holding ringHold bytes
	sendErrors   atomic.Int64 // sends that failed (the connection is dropped)
	leftArmed    atomic.Int64 // connections that left for a goroutine with their recv armed (cancelled first)
}

// An operation's user data is its connection's id << 2 | its kind; the
// wake-up poll's is 0.
const (
	ringWake   = 0
	ringRecv   = 1
	ringSend   = 2
	ringCancel = 3
)

const (
	// The provided-buffer ring of each loop: enough for what arrives
	// between two turns (each buffer is given back as soon as it is read);
	// a recv that finds none ends with ENOBUFS and is armed again.
	ringBufs    = 512
	ringBufSize = 4096
	// ringHold is how much input a connection holds while its answers are
	// being sent before its recv is paused: a few requests of the largest
	// size a loop serves (its 4 KiB buffer).
	ringHold = 16 << 10
	// ringEntries is the submission queue's size; a full queue is submitted
	// early (sqe), so it bounds no connection count.
	ringEntries = 1024
)

// setupHTTPRing is uring.New; tests replace it to see the fallback to epoll.
var setupHTTPRing = uring.New

// newHTTPRing sets up a loop's ring and its buffers; an error when the
// kernel has no io_uring with multishot recv (Linux 6.0), or refuses it.
func newHTTPRing() (*httpRing, error) {
	if err := uring.MultishotRecv(); err != nil {
		return nil, err
	}
	r, err := setupHTTPRing(ringEntries, 4*ringEntries)
	if err != nil {
		return nil, err
	}
	bufs, err := r.NewBufRing(0, ringBufs, ringBufSize)
	if err != nil {
		r.Close()
		return nil, err
	}
	return &httpRing{r: r, bufs: bufs, byID: map[uint64]*loopConn{}}, nil
}

func newRingLoop(s *HTTPServer, ring *httpRing) (*httpLoop, error) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		ring.r.Close()
		return nil, fmt.Errorf("pipe2: %w", err)
	}
	return &httpLoop{s: s, epfd: -1, ring: ring, wakeR: p[0], wakeW: p[1], conns: map[int]*loopConn{}, scan: scanInterval(s.srv), done: make(chan struct{})}, nil
}

// runRing is the io_uring loop: submit and wait, handle the completions,
// expire the late connections; after shutdown, stop once no connection is
// left.
func (l *httpLoop) runRing() {
	runtime.LockOSThread() // the ring's only submitter (IORING_SETUP_SINGLE_ISSUER)
	defer runtime.UnlockOSThread()
	defer l.close()
	g := l.ring
	if err := g.r.Enable(); err != nil {
		l.s.logf("http: io_uring event loop failed: %v", err)
		l.stop()
		return
	}
	lastScan := time.Now()
	for {
		if !g.wakeArmed {
			if e := l.sqe(); e != nil {
				e.PrepPollAdd(l.wakeR, syscall.EPOLLIN, ringWake)
				g.wakeArmed = true
			}
		}
		if err := g.r.Enter(l.scan); err != nil && !errors.Is(err, uring.ErrBusy) {
			l.s.logf("http: io_uring event loop failed: %v", err)
			l.stop()
			return
		}
		now := time.Now()
		g.r.Reap(func(ud uint64, res int32, flags uint32) { l.complete(ud, res, flags, now) })
		if stopped, _ := l.endTurn(now, &lastScan); stopped {
			return
		}
	}
}

// sqe returns a submission entry, submitting the filled ones when the queue
// is full; nil if that fails.
func (l *httpLoop) sqe() *uring.SQE {
	if e := l.ring.r.SQE(); e != nil {
		return e
	}
	if err := l.ring.r.Enter(0); err != nil {
		return nil
	}
	return l.ring.r.SQE()
}

// ringAdd registers connections handed over (takeNew).
func (l *httpLoop) ringAdd(add []*loopConn, now time.Time) {
	g := l.ring
	for _, c := range add {
		g.last++
		c.id = g.last
		l.conns[c.rwc.fd] = c
		g.byID[c.id] = c
		c.since = now
		if !c.fc.state.CompareAndSwap(stateActive, stateIdle) {
			l.drop(c)
			continue
		}
		l.recv(c)
	}
}

// recv arms c's multishot recv, unless it is armed, paused, leaving, or
// its input has ended.
func (l *httpLoop) recv(c *loopConn) {
	if c.recving || c.paused || c.demoting || c.dead || c.rsrc.err != nil {
		return
	}
	e := l.sqe()
	if e == nil {
		l.drop(c)
		return
	}
	e.PrepRecvMultishot(c.rwc.fd, l.ring.bufs, c.id<<2|ringRecv)
	c.recving = true
}

// cancelRecv cancels c's armed recv; its last completion follows.
func (l *httpLoop) cancelRecv(c *loopConn) {
	if !c.recving {
		return
	}
	e := l.sqe()
	if e == nil {
		l.drop(c)
		return
	}
	e.PrepCancel(c.id<<2|ringRecv, c.id<<2|ringCancel)
}

// ringFlush is flush for the io_uring driver: true when nothing is
// pending, else a send of it is put into the ring (false).
func (l *httpLoop) ringFlush(c *loopConn, now time.Time) bool {
	if c.off >= len(c.out.b) {
		c.out.b, c.off = c.out.b[:0], 0
		return true
	}
	c.wantOut, c.since = true, now // WriteTimeout from here
	l.send(c)
	return false
}

// send puts a send of c's pending answers into the ring.
func (l *httpLoop) send(c *loopConn) {
	e := l.sqe()
	if e == nil {
		c.wantOut = false
		l.drop(c)
		return
	}
	e.PrepSend(c.rwc.fd, c.out.b[c.off:], syscall.MSG_NOSIGNAL, c.id<<2|ringSend)
}

// complete handles one completion.
func (l *httpLoop) complete(ud uint64, res int32, flags uint32, now time.Time) {
	g := l.ring
	if ud == ringWake {
		g.wakeArmed = false
		l.takeNew(now)
		return
	}
	id, data, ok := g.bufs.Selected(res, flags)
	if ok {
		// Given back once this completion is handled: what the
		// connection has not read of it by then is copied aside.
		defer g.bufs.Recycle(id)
	}
	c := g.byID[ud>>2]
	if c == nil {
		return
	}
	defer func() {
		if c.dead && !c.recving && !c.wantOut {
			delete(g.byID, c.id)
		}
	}()
	switch ud & 3 {
	case ringRecv:
		if flags&uring.CQEFMore == 0 {
			c.recving = false
		}
		if !c.dead {
			l.ringReceived(c, data, res, now)
		}
	case ringSend:
		if c.dead {
			c.wantOut = false
			return
		}
		l.ringSent(c, res, now)
	case ringCancel:
		if res == -int32(syscall.EALREADY) && c.recving && (c.paused || c.demoting) && !c.dead {
			l.cancelRecv(c) // the recv was running: cancel it again
		}
	}
}

// ringReceived handles a recv's completion: res bytes (data), 0 at the end
// of the stream, or -errno. The input is served at once unless a send is
// in flight; a recv that has ended is armed again, unless c is paused or
// leaving (then it leaves now).
func (l *httpLoop) ringReceived(c *loopConn, data []byte, res int32, now time.Time) {
	switch {
	case uring.Retryable(res) || res == -int32(syscall.ENOBUFS) || res == -int32(syscall.ECANCELED):
	case res < 0:
		c.rsrc.err = syscall.Errno(-res)
	case res == 0:
		c.rsrc.err = io.EOF
	default:
		c.rsrc.cur = data
	}
	if !c.demoting && !c.wantOut {
		l.feed(c, now)
	} else if c.wantOut && res > 0 {
		l.ring.stats.heldInput.Add(1)
	}
	if c.dead {
		return
	}
	c.rsrc.keep() // the kernel's buffer goes back
	switch {
	case c.demoting:
		if !c.recving {
			l.demote(c)
		}
		return
	case c.wantOut && c.rsrc.held() >= ringHold:
		l.ring.stats.pauses.Add(1)
		c.paused = true
		l.cancelRecv(c)
	}
	l.recv(c)
}

// ringSent handles a send's completion: res bytes sent or -errno. Once
// every answer is sent, the input held meanwhile is served.
func (l *httpLoop) ringSent(c *loopConn, res int32, now time.Time) {
	switch {
	case uring.Retryable(res):
		l.send(c)
		return
	case res < 0:
		l.ring.stats.sendErrors.Add(1)
		c.wantOut = false
		l.drop(c)
		return
	}
	c.off += int(res)
	if c.off < len(c.out.b) { // a partial send: the rest
		l.ring.stats.partialSends.Add(1)
		l.send(c)
		return
	}
	c.out.b, c.off = c.out.b[:0], 0
	c.wantOut, c.since = false, now
	if c.closing {
		l.drop(c)
		return
	}
	fc := c.fc
	if fc.br.Buffered() == 0 && !c.rsrc.more() {
		c.partial = false
		if !fc.state.CompareAndSwap(stateActive, stateIdle) && fc.state.Load() != stateIdle {
			l.drop(c)
			return
		}
	}
	l.feed(c, now)
	if c.dead || c.wantOut || c.demoting {
		return
	}
	if c.paused {
		c.paused = false
		l.recv(c)
	}
}

// feed serves what c's reader holds (held input, a completion's bytes, the
// end of the stream), as the epoll loop's serve does after its read, until
// it is all read, a send is in flight, or c closes or leaves.
func (l *httpLoop) feed(c *loopConn, now time.Time) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				const size = 64 << 10
				buf := make([]byte, size)
				buf = buf[:runtime.Stack(buf, false)]
				l.s.logf("http: panic serving %v: %v\n%s", c.fc.remoteAddr, p, buf)
			}
			// As on the goroutine path: the answers that left the
			// response buffer go out (as far as the socket takes them
			// now), the connection closes.
			if !c.wantOut {
				l.writeNow(c)
			}
			l.drop(c)
		}
	}()
	br := c.fc.br
	for !c.dead && !c.wantOut && !c.closing && !c.demoting && c.rsrc.more() {
		if _, err := br.Peek(br.Buffered() + 1); err != nil && err != errWouldBlock {
			if br.Buffered() > 0 { // the end inside a request: the goroutine path answers it
				l.demote(c)
				return
			}
			l.drop(c) // nothing is pending: every answer built was sent
			return
		}
		l.process(c, now)
	}
}

// writeNow writes what it can of c's pending answers without waiting; no
// send is in flight.
func (l *httpLoop) writeNow(c *loopConn) {
	_ = c.fc.bw.Flush() // to out: cannot fail
	for c.off < len(c.out.b) {
		w, err := rawfd.Write(c.rwc.fd, c.out.b[c.off:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil || w <= 0 {
			return
		}
		c.off += w
	}
}

// ringDrop is drop's part for the io_uring driver: shutting the socket
// down completes its operations in the ring (which holds the socket until
// then); c stays in byID until they have completed.
func (l *httpLoop) ringDrop(c *loopConn) {
	c.dead = true
	c.rwc.mu.Lock()
	if !c.rwc.done {
		_ = syscall.Shutdown(c.rwc.fd, syscall.SHUT_RDWR) // closing anyway: an error changes nothing
	}
	c.rwc.mu.Unlock()
	c.rsrc = ringReader{}
	if !c.recving && !c.wantOut {
		delete(l.ring.byID, c.id)
	}
}

// ringForget is demote's part for the io_uring driver: c has no operation
// in the ring (its recv has ended, no send is in flight) and leaves it.
func (l *httpLoop) ringForget(c *loopConn) {
	c.dead = true
	delete(l.ring.byID, c.id)
}

// ringSettle waits (up to a second) for the operations of the dropped
// connections to complete, before the ring and its buffers are released.
func (l *httpLoop) ringSettle() {
	g := l.ring
	now := time.Now()
	for end := now.Add(time.Second); len(g.byID) > 0 && time.Now().Before(end); {
		if err := g.r.Enter(10 * time.Millisecond); err != nil && !errors.Is(err, uring.ErrBusy) {
			break
		}
		g.r.Reap(func(ud uint64, res int32, flags uint32) {
			if ud != ringWake {
				l.complete(ud, res, flags, now)
			}
		})
	}
	if len(g.byID) > 0 {
		// Not expected (their sockets are shut down): keep their buffers
		// from being reused while the kernel may still write into them.
		l.s.logf("http: io_uring event loop: operations of %d connections still in flight at close", len(g.byID))
		g.r.KeepBuffers()
		ringStranded.Lock()
		for _, c := range g.byID {
			ringStranded.conns = append(ringStranded.conns, c)
		}
		ringStranded.Unlock()
	}
}

// ringStranded keeps the connections whose operations outlived their loop
// (and so the answers a send may still read).
var ringStranded struct {
	sync.Mutex
	conns []*loopConn
}

// ringReader is a loop connection's reader with the io_uring driver: the
// bytes of the completion being handled (cur, in the kernel's buffer),
// after those held from earlier ones (hold[hoff:]), then the end of the
// stream or the recv's error; errWouldBlock when it has nothing.
type ringReader struct {
	hold []byte
	hoff int
	cur  []byte
	err  error
}

func (r *ringReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if r.hoff < len(r.hold) {
		n := copy(b, r.hold[r.hoff:])
		r.hoff += n
		if r.hoff == len(r.hold) {
			r.hold, r.hoff = r.hold[:0], 0
		}
		return n, nil
	}
	if len(r.cur) > 0 {
		n := copy(b, r.cur)
		r.cur = r.cur[n:]
		return n, nil
	}
	if r.err != nil {
		return 0, r.err
	}
	return 0, errWouldBlock
}

// more reports whether a Read would return bytes or the stream's end.
func (r *ringReader) more() bool { return r.hoff < len(r.hold) || len(r.cur) > 0 || r.err != nil }

// held is how many bytes are held, not yet read.
func (r *ringReader) held() int { return len(r.hold) - r.hoff + len(r.cur) }

// keep copies what is left of the current completion's bytes aside, before
// their buffer goes back to the kernel.
func (r *ringReader) keep() {
	if len(r.cur) > 0 {
		if r.hoff > 0 && r.hoff == len(r.hold) {
			r.hold, r.hoff = r.hold[:0], 0
		}
		r.hold = append(r.hold, r.cur...)
	}
	r.cur = nil
}

// rest is every byte not yet read (for the goroutine c is handed to).
func (r *ringReader) rest() []byte {
	out := append([]byte(nil), r.hold[r.hoff:]...)
	out = append(out, r.cur...)
	r.hold, r.hoff, r.cur = nil, 0, nil
	return out
}
