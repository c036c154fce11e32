//go:build linux

package hostcmd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"payhsm/internal/rawfd"
)

// Event loops (Linux). A plain-TCP connection is served by one of
// GOMAXPROCS event loops instead of a goroutine of its own. A loop waits in
// one level-triggered epoll_wait for all its connections, reads what a ready
// connection holds with one read, answers every complete request in order
// and writes the answers with one write. With a goroutine per connection,
// Go's poller costs every request a read that finds nothing (EAGAIN), a park
// and a wake-up; on a busy port, where system calls are most of the cost of
// a request, that is a third more calls. TLS connections keep the goroutine
// per connection (crypto/tls owns their reads).
//
// Behaviour is the goroutine path's: frames served in place, answers in
// order, the idle timeout between frames, the frame timeout for a started
// frame and for a blocked write, and on shutdown the answers to requests
// already received are written before the connection closes.

// loopDriver is an event loop serving plain-TCP connections: the epoll
// loop here, or the io_uring loop (loop_uring_linux.go). Both take their
// connections from loopBase and share its per-connection logic.
type loopDriver interface {
	base() *loopBase
	run()
	close()
}

// loopBase is what the drivers share: the hand-over of connections from
// Serve, the wake-up pipe, the connections and their framing and timeouts.
type loopBase struct {
	s            *Server
	wakeR, wakeW int // a pipe that wakes the loop for new connections and shutdown
	scan         time.Duration

	mu      sync.Mutex
	add     []adopted  // connections handed over, not yet registered
	evict   []*tracked // connections evicted by the limits, not yet closed
	stopped bool       // the loop has ended: it takes no connection

	conns map[int]*loopConn
}

func (b *loopBase) base() *loopBase { return b }

// eventLoop is the epoll driver; only its goroutine touches its connections.
type eventLoop struct {
	loopBase
	epfd   int
	events []syscall.EpollEvent
}

type adopted struct {
	fd     int
	remote string
	t      *tracked
}

// loopConn is one connection's state in its loop.
type loopConn struct {
	fd      int
	remote  string
	in      []byte // received bytes: in[:n]
	n       int
	out     []byte // answers not yet written: out[off:]
	off     int
	x       *call
	t       *tracked  // its place in the connection limits (nil in tests that build one)
	wantOut bool      // a write is pending: registered for EPOLLOUT (epoll), a send in flight (io_uring)
	active  time.Time // last complete request, or the hand-over
	partial time.Time // when the incomplete frame at in[0] began (zero: none)
	blocked time.Time // when the pending write blocked

	// io_uring driver only (loop_uring_linux.go)
	id      uint64 // names its operations in the ring
	recving bool   // its multishot recv is armed
	paused  bool   // its recv is cancelled: it holds the longest frame while a send is in flight
	eof     bool   // the peer closed its side
	dead    bool   // dropped; kept until its operations complete
	slot    uint32 // its fixed-file slot, when fixed
	fixed   bool   // its operations name it by slot (IOSQE_FIXED_FILE)
}

// startLoops creates the event loops; on failure the server keeps one
// goroutine per connection.
// The io_uring driver falls back to epoll when a ring cannot be set up.
func (s *Server) startLoops() {
	n := s.cfg.EventLoops
	if n < 0 || s.cfg.TLS != nil || s.cfg.Driver == DriverGoroutine {
		return
	}
	if n == 0 {
		n = max(1, runtime.GOMAXPROCS(0)/2)
	}
	uring := s.cfg.Driver == DriverIOUring
	for i := 0; i < n; i++ {
		var l loopDriver
		var err error
		if uring {
			if l, err = newUringLoop(s); err != nil {
				s.log.Warn("host port: no io_uring; serving with epoll", zap.Error(err))
				uring = false
				for _, l := range s.loops {
					l.close()
				}
				s.loops = nil
				i = -1
				continue
			}
		} else if l, err = newEventLoop(s); err != nil {
			s.log.Warn("host port: no event loop; serving a goroutine per connection", zap.Error(err))
			for _, l := range s.loops {
				l.close()
			}
			s.loops = nil
			return
		}
		s.loops = append(s.loops, l)
	}
	for _, l := range s.loops {
		go l.run()
	}
}

// adopt hands c to an event loop and counts it against the limits (t). It
// reports false when c must be served by a goroutine (no loops, or not a TCP
// connection); then t is not yet counted.
func (s *Server) adopt(c net.Conn, t *tracked) bool {
	if len(s.loops) == 0 {
		return false
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	// Take a duplicate of the descriptor and close the original, which
	// leaves Go's poller.
	fd, err := rawfd.Dup(tc)
	if err != nil {
		return false
	}
	remote := c.RemoteAddr().String()
	// Closing the original only takes it out of Go's poller: the duplicate
	// keeps the socket open, and close(2) releases the descriptor even when
	// it reports an error, so there is nothing to handle.
	_ = c.Close()
	l := s.loops[s.next%len(s.loops)].base()
	s.next++
	t.fd = fd
	t.evict = func() {
		l.mu.Lock()
		l.evict = append(l.evict, t)
		l.wakeLocked()
		l.mu.Unlock()
	}
	l.mu.Lock()
	if l.stopped { // shutting down: the connection is refused
		l.mu.Unlock()
		_ = syscall.Close(fd) // refused: the descriptor is released even on error
		s.refuse()
		s.wg.Done()
		return true
	}
	l.mu.Unlock()
	// Admitted outside l.mu: an eviction it makes may be this loop's.
	s.admit(t)
	l.mu.Lock()
	if l.stopped { // stopped meanwhile: the loop will not take it
		l.mu.Unlock()
		_ = syscall.Close(fd) // refused: the descriptor is released even on error
		s.limits.release(t)
		s.refuse()
		s.wg.Done()
		return true
	}
	l.add = append(l.add, adopted{fd: fd, remote: remote, t: t})
	l.wakeLocked()
	l.mu.Unlock()
	return true
}

// wakeLoops makes every loop look at the server's state (shutdown).
func (s *Server) wakeLoops() {
	for _, d := range s.loops {
		l := d.base()
		l.mu.Lock()
		l.wakeLocked()
		l.mu.Unlock()
	}
}

// init makes the wake-up pipe.
func (b *loopBase) init(s *Server) error {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		return fmt.Errorf("pipe2: %w", err)
	}
	b.s, b.wakeR, b.wakeW, b.conns = s, p[0], p[1], map[int]*loopConn{}
	// Timeouts are checked every eighth of the shorter one, within [10 ms, 1 s].
	b.scan = min(max(min(s.cfg.IdleTimeout, s.cfg.FrameTimeout)/8, 10*time.Millisecond), time.Second)
	return nil
}

// closePipe releases the wake-up pipe: close(2) releases a descriptor even
// when it reports an error, and the pipe holds no data.
func (b *loopBase) closePipe() {
	_ = syscall.Close(b.wakeR)
	_ = syscall.Close(b.wakeW)
}

func newEventLoop(s *Server) (*eventLoop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	l := &eventLoop{epfd: epfd, events: make([]syscall.EpollEvent, 128)}
	if err := l.init(s); err != nil {
		_ = syscall.Close(epfd) // unused: released even on error
		return nil, err
	}
	if err := l.ctl(syscall.EPOLL_CTL_ADD, l.wakeR, syscall.EPOLLIN); err != nil {
		l.close()
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	return l, nil
}

// wakeLocked wakes the loop; l.mu is held. A loop that has stopped is not
// woken: its pipe is closed, or about to be, and its descriptor number may
// already name another file. The write's error is not handled: EAGAIN means
// the pipe is full, so the loop has a wake-up pending anyway, and the pipe
// is open while the loop has not stopped, so no other error is expected.
func (l *loopBase) wakeLocked() {
	if !l.stopped {
		_, _ = syscall.Write(l.wakeW, []byte{1})
	}
}

// close releases the loop's descriptors. close(2) releases a descriptor
// even when it reports an error, and these hold no data: nothing to handle.
func (l *eventLoop) close() {
	_ = syscall.Close(l.epfd)
	l.closePipe()
}

// ctl adds (EPOLL_CTL_ADD) or changes (EPOLL_CTL_MOD) the events watched on fd.
func (l *eventLoop) ctl(op, fd int, events uint32) error {
	//nolint:gosec // G115: fd is a descriptor the kernel returned, a C int, so it fits int32.
	ev := syscall.EpollEvent{Events: events, Fd: int32(fd)}
	return syscall.EpollCtl(l.epfd, op, fd, &ev)
}

func (l *loopBase) closing() bool {
	select {
	case <-l.s.done:
		return true
	default:
		return false
	}
}

// run is the loop: wait, serve the ready connections, expire the late ones.
// After shutdown it stops reading, writes what is pending (up to
// FrameTimeout) and closes every connection.
func (l *eventLoop) run() {
	defer l.close()
	var turn turnState
	for {
		n, err := syscall.EpollWait(l.epfd, l.events, int(l.scan/time.Millisecond))
		if err != nil && !errors.Is(err, syscall.EINTR) {
			l.s.log.Error("host port event loop failed", zap.Error(err))
			l.stop(time.Now())
			return
		}
		now := time.Now()
		for i := 0; i < n; i++ {
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
		if l.endTurn(now, &turn, l.takeNew, l.drop) {
			l.stop(now)
			return
		}
	}
}

// taken empties the wake-up pipe and returns the connections handed over
// and evicted since the last call.
func (l *loopBase) taken() (add []adopted, evict []*tracked) {
	var b [64]byte
	for {
		if n, _ := syscall.Read(l.wakeR, b[:]); n <= 0 {
			break
		}
	}
	l.mu.Lock()
	add, evict = l.add, l.evict
	l.add, l.evict = nil, nil
	l.mu.Unlock()
	return add, evict
}

// newConn is the state of a connection handed over.
func (l *loopBase) newConn(a adopted, now time.Time) *loopConn {
	c := &loopConn{fd: a.fd, remote: a.remote, in: make([]byte, ioBuffer), x: l.s.newCall(), t: a.t, active: now}
	c.x.identify(a.remote, "")
	l.s.bind(c.x, nil, a.remote, false)
	return c
}

// evicted closes the evicted connections; one closed meanwhile (its
// descriptor perhaps reused by a newer connection) is told apart by its tracked.
func (l *loopBase) evicted(evict []*tracked, drop func(*loopConn, error)) {
	for _, t := range evict {
		if c := l.conns[t.fd]; c != nil && c.t == t {
			drop(c, errClosing)
		}
	}
}

// takeNew registers the connections handed over since the last call.
func (l *eventLoop) takeNew(now time.Time) {
	add, evict := l.taken()
	for _, a := range add {
		c := l.newConn(a, now)
		if err := l.ctl(syscall.EPOLL_CTL_ADD, a.fd, syscall.EPOLLIN); err != nil {
			l.s.log.Warn("host port: cannot watch connection", zap.String("remote", a.remote), zap.Error(err))
			l.release(c)
			continue
		}
		l.conns[a.fd] = c
	}
	l.evicted(evict, l.drop)
}

// serve handles one readiness event of c.
func (l *eventLoop) serve(c *loopConn, events uint32, now time.Time) {
	defer func() {
		if r := recover(); r != nil {
			l.s.log.Error("host connection handler panicked", zap.Any("panic", fmt.Sprint(r)))
			l.drop(c, nil)
		}
	}()
	if c.wantOut {
		if events&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
			return
		}
		if err := l.flush(c, now); err != nil {
			l.drop(c, err)
		}
		return
	}
	if c.n == len(c.in) { // a frame longer than the buffer: make room for the longest
		c.in = append(c.in, make([]byte, 2+l.s.cfg.MaxMessage-len(c.in))...)
	}
	r, err := rawfd.Read(c.fd, c.in[c.n:])
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	if err != nil || r == 0 {
		if err == nil && c.n > 0 {
			err = fmt.Errorf("connection closed inside a frame")
		}
		_ = l.flush(c, now) // answers already built still go out, as on the goroutine path
		l.drop(c, err)
		return
	}
	c.n += r
	c.t.touch(now)
	perr := l.process(c, now)
	if err := l.flush(c, now); err != nil {
		l.drop(c, err)
		return
	}
	if perr != nil {
		l.drop(c, perr)
	}
}

// process answers every complete frame in c.in, appending the answers to c.out.
func (l *loopBase) process(c *loopConn, now time.Time) error {
	s := l.s
	p := 0
	defer func() {
		if p > 0 {
			c.n = copy(c.in, c.in[p:c.n])
			c.partial = time.Time{}
		}
		if c.n > 0 && c.partial.IsZero() {
			c.partial = now
		}
	}()
	for c.n-p >= 2 {
		n := int(binary.BigEndian.Uint16(c.in[p:]))
		if n == 0 {
			return fmt.Errorf("%w: zero length", ErrFrame)
		}
		if n > s.cfg.MaxMessage {
			return fmt.Errorf("%w: length %d exceeds %d", ErrFrame, n, s.cfg.MaxMessage)
		}
		if c.n-p < 2+n {
			break
		}
		start := len(c.out)
		c.out = append(c.out, 0, 0)
		c.out = s.dispatch(c.x, c.out, c.in[p+2:p+2+n])
		if err := putAnswerLength(c.out, start); err != nil {
			c.out = c.out[:start] // the answers before it still go out
			return err
		}
		p += 2 + n
		c.active = now
	}
	return nil
}

// flush writes c's pending answers. A write that cannot complete leaves the
// rest pending and waits for EPOLLOUT; c is not read meanwhile.
func (l *eventLoop) flush(c *loopConn, now time.Time) error {
	for c.off < len(c.out) {
		w, err := rawfd.Write(c.fd, c.out[c.off:])
		if w > 0 {
			c.off += w
		}
		switch {
		case err == syscall.EINTR:
		case err == syscall.EAGAIN:
			if !c.wantOut {
				c.wantOut, c.blocked = true, now
				return l.watch(c, syscall.EPOLLOUT)
			}
			return nil
		case err != nil:
			return err
		}
	}
	c.out, c.off = c.out[:0], 0
	if c.wantOut {
		c.wantOut, c.blocked = false, time.Time{}
		return l.watch(c, syscall.EPOLLIN)
	}
	return nil
}

func (l *eventLoop) watch(c *loopConn, events uint32) error {
	return l.ctl(syscall.EPOLL_CTL_MOD, c.fd, events)
}

// expire closes connections past their idle, frame or write timeout.
func (l *loopBase) expire(now time.Time, drop func(*loopConn, error)) {
	cfg := &l.s.cfg
	for _, c := range l.conns {
		switch {
		case c.wantOut && now.Sub(c.blocked) > cfg.FrameTimeout:
			drop(c, errors.New("write timed out"))
		case !c.wantOut && c.n > 0 && now.Sub(c.partial) > cfg.FrameTimeout:
			drop(c, errors.New("frame timed out"))
		case !c.wantOut && c.n == 0 && now.Sub(c.active) > cfg.IdleTimeout:
			drop(c, errors.New("idle timeout"))
		}
	}
}

// turnState is what a driver's loop keeps between turns for endTurn.
type turnState struct {
	lastScan   time.Time // the last expire
	drainSince time.Time // when shutdown was first seen (zero: serving)
}

// endTurn ends every turn of a driver's loop. While serving, it expires
// the late connections every scan interval. Once shutting down, it takes
// the connections handed over meanwhile (takeNew, the first time), closes
// those with nothing left to write (all of them after FrameTimeout) and
// reports true when none is left: the loop then stops.
func (l *loopBase) endTurn(now time.Time, st *turnState, takeNew func(time.Time), drop func(*loopConn, error)) bool {
	if l.closing() {
		if st.drainSince.IsZero() {
			st.drainSince = now
			takeNew(now)
		}
		return l.drain(now.Sub(st.drainSince) > l.s.cfg.FrameTimeout, drop)
	}
	if now.Sub(st.lastScan) >= l.scan {
		st.lastScan = now
		l.expire(now, drop)
	}
	return false
}

// drain closes the connections with nothing left to write (all of them when
// late) and reports whether none is left.
func (l *loopBase) drain(late bool, drop func(*loopConn, error)) bool {
	for _, c := range l.conns {
		if !c.wantOut || late {
			drop(c, errClosing)
		}
	}
	return len(l.conns) == 0
}

// stop ends the loop: it closes its connections and those handed over
// since, and refuses any handed over later.
func (l *eventLoop) stop(now time.Time) {
	l.takeNew(now)
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	l.takeNew(now) // handed over between the two
	for _, c := range l.conns {
		l.drop(c, errClosing)
	}
}

// drop closes c and releases its place.
func (l *eventLoop) drop(c *loopConn, err error) {
	if _, ok := l.conns[c.fd]; !ok {
		return
	}
	delete(l.conns, c.fd)
	// The close in release removes fd from the epoll set in any case (no
	// other descriptor shares its socket); an error here changes nothing.
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	if err != nil && !errors.Is(err, errClosing) {
		l.s.log.Debug("closing host connection", zap.String("remote", c.remote), zap.Error(err))
	}
	l.release(c)
}

func (l *loopBase) release(c *loopConn) {
	// The connection is being torn down and close(2) releases the descriptor
	// even when it reports an error: nothing can be done with one.
	_ = syscall.Close(c.fd)
	l.s.limits.release(c.t)
	l.s.wg.Done()
}
