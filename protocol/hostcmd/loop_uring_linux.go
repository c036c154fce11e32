//go:build linux

package hostcmd

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"payhsm/internal/rawfd"
	"payhsm/internal/uring"
)

// The io_uring driver (Config.Driver DriverIOUring). Its loop is the epoll
// loop's, with the readiness wait and the read and write system calls
// replaced by one ring: every connection keeps a multishot recv armed, whose
// completions carry what arrived in a buffer of the loop's provided-buffer
// ring (copied to the connection's input and given back at once), and each
// turn of the loop makes one io_uring_enter that submits the sends of every
// connection served since the last turn and waits for the next completions
// (or the timeout scan). Framing, limits, timeouts and close semantics are
// loopBase's, shared with the epoll driver.
//
// A connection's answers are in the kernel's hands while their send is in
// flight: its input is not processed meanwhile (the answers would be
// appended to the buffer being sent) but held, up to the longest frame; past
// that its recv is cancelled until the send completes (the epoll driver
// stops reading then too), so a peer that does not read is held back by
// TCP. A dropped connection is shut down, which completes its operations,
// and kept (byID) until they have.

type uringLoop struct {
	loopBase
	r         *uring.Ring
	bufs      *uring.BufRing       // where the recvs land
	byID      map[uint64]*loopConn // connections with a name in the ring, dropped ones whose operations are in flight included
	last      uint64               // the last connection id given
	wakeArmed bool                 // a poll on the wake-up pipe is in the ring
	files     *uring.Files         // the connections' fixed-file slots (nil: plain descriptors)
}

// An operation's user data is its connection's id << 2 | its kind; the
// wake-up poll's is 0.
const (
	uringWake   = 0
	uringRecv   = 1
	uringSend   = 2
	uringCancel = 3
)

// The provided-buffer ring of each loop: enough buffers for the data that
// arrives between two turns (each is given back as soon as its data is
// copied); a recv that finds none ends with ENOBUFS and is armed again.
const (
	uringBufs    = 512
	uringBufSize = 4096
)

var errRingFull = errors.New("io_uring: no submission entry")

// setupRing is uring.New; tests replace it to see the fallback to epoll.
var setupRing = uring.New

func newUringLoop(s *Server) (*uringLoop, error) {
	if err := uring.MultishotRecv(); err != nil {
		return nil, err
	}
	// Each connection has at most a recv, a send and a cancel in the ring.
	sq := uint32(min(2*s.cfg.MaxConnections+8, 16384)) //nolint:gosec // G115: bounded above
	r, err := setupRing(sq, 2*sq)
	if err != nil {
		return nil, err
	}
	count, size := uringBufs, uringBufSize
	if s.cfg.uringBufs > 0 {
		count, size = s.cfg.uringBufs, s.cfg.uringBufSize
	}
	bufs, err := r.NewBufRing(0, count, size)
	if err != nil {
		r.Close()
		return nil, err
	}
	l := &uringLoop{r: r, bufs: bufs, byID: map[uint64]*loopConn{}}
	if err := l.init(s); err != nil {
		r.Close()
		return nil, err
	}
	return l, nil
}

// register registers the ring's descriptor with the loop's thread and a
// table of fixed files for the connections, which spares the kernel a
// descriptor lookup per enter and per operation; without them (a kernel
// before 5.19, or a refusal) the loop uses plain descriptors.
func (l *uringLoop) register() {
	if err := l.r.RegisterRing(); err != nil {
		l.s.log.Debug("host port io_uring: ring descriptor not registered", zap.Error(err))
	}
	f, err := l.r.RegisterFiles(min(2*l.s.cfg.MaxConnections+8, 16384))
	if err != nil {
		l.s.log.Debug("host port io_uring: no fixed files", zap.Error(err))
		return
	}
	l.files = f
}

func (l *uringLoop) close() {
	l.r.Close()
	l.closePipe()
}

// run is the loop: submit and wait, handle the completions, expire the late
// connections. After shutdown it stops reading, sends what is pending (up
// to FrameTimeout) and closes every connection.
func (l *uringLoop) run() {
	runtime.LockOSThread() // the ring's only submitter (IORING_SETUP_SINGLE_ISSUER)
	defer runtime.UnlockOSThread()
	defer l.close()
	if err := l.r.Enable(); err != nil {
		l.s.log.Error("host port io_uring loop failed", zap.Error(err))
		l.stop(time.Now())
		return
	}
	l.register()
	var turn turnState
	busy := false // the last turn had completions
	for {
		if !l.wakeArmed {
			l.armWake()
		}
		// A busy loop waits without handing its processor to the
		// scheduler (EnterRaw): Go's monitor thread then has no system call
		// to watch (it woke every ~0.6 ms under load, a context switch each
		// time) and the return takes no processor back. An idle loop waits
		// with Enter, so that the monitor, finding nothing to do, sleeps
		// longer, rather than preempting the loop every 10 ms.
		enter := l.r.Enter
		if busy {
			enter = l.r.EnterRaw
		}
		if err := enter(l.scan); err != nil && !errors.Is(err, uring.ErrBusy) {
			l.s.log.Error("host port io_uring loop failed", zap.Error(err))
			l.stop(time.Now())
			return
		}
		now := time.Now()
		busy = false
		l.r.Reap(func(ud uint64, res int32, flags uint32) {
			busy = true
			l.complete(ud, res, flags, now)
		})
		if l.endTurn(now, &turn, l.takeNew, l.drop) {
			l.stop(now)
			return
		}
	}
}

// sqe returns a submission entry, submitting the filled ones when the queue
// is full; nil if that fails.
func (l *uringLoop) sqe() *uring.SQE {
	if e := l.r.SQE(); e != nil {
		return e
	}
	if err := l.r.Enter(0); err != nil {
		return nil
	}
	return l.r.SQE()
}

func (l *uringLoop) armWake() {
	if e := l.sqe(); e != nil {
		e.PrepPollAdd(l.wakeR, syscall.EPOLLIN, uringWake)
		l.wakeArmed = true
	}
}

// takeNew registers the connections handed over since the last call.
func (l *uringLoop) takeNew(now time.Time) {
	add, evict := l.taken()
	for _, a := range add {
		c := l.newConn(a, now)
		l.last++
		c.id = l.last
		l.conns[a.fd] = c
		l.byID[c.id] = c
		if l.files != nil {
			c.slot, c.fixed = l.files.Set(c.fd)
		}
		l.recv(c)
	}
	l.evicted(evict, l.drop)
}

// recv arms c's multishot recv, unless it is armed, paused or c is closing.
func (l *uringLoop) recv(c *loopConn) {
	if c.recving || c.paused || c.dead || c.eof {
		return
	}
	e := l.sqe()
	if e == nil {
		l.drop(c, errRingFull)
		return
	}
	e.PrepRecvMultishot(c.fd, l.bufs, c.id<<2|uringRecv)
	if c.fixed {
		e.Fixed(c.slot)
	}
	c.recving = true
}

// pause cancels c's recv: it holds the longest frame while a send is in flight.
func (l *uringLoop) pause(c *loopConn) {
	if c.paused {
		return
	}
	c.paused = true
	if !c.recving {
		return
	}
	e := l.sqe()
	if e == nil {
		l.drop(c, errRingFull)
		return
	}
	e.PrepCancel(c.id<<2|uringRecv, c.id<<2|uringCancel)
}

// send puts a send of c's pending answers into the ring.
func (l *uringLoop) send(c *loopConn, now time.Time) {
	if c.wantOut || c.dead || c.off >= len(c.out) {
		return
	}
	e := l.sqe()
	if e == nil {
		l.drop(c, errRingFull)
		return
	}
	e.PrepSend(c.fd, c.out[c.off:], syscall.MSG_NOSIGNAL, c.id<<2|uringSend)
	if c.fixed {
		e.Fixed(c.slot)
	}
	c.wantOut, c.blocked = true, now
}

// complete handles one completion.
func (l *uringLoop) complete(ud uint64, res int32, flags uint32, now time.Time) {
	if ud == uringWake {
		l.wakeArmed = false
		l.takeNew(now)
		return
	}
	id, data, ok := l.bufs.Selected(res, flags)
	if ok {
		// Given back when this completion is handled: its data is copied
		// to the connection's input first.
		defer l.bufs.Recycle(id)
	}
	c := l.byID[ud>>2]
	if c == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			l.s.log.Error("host connection handler panicked", zap.Any("panic", fmt.Sprint(r)))
			l.drop(c, nil)
		}
		if c.dead && !c.recving && !c.wantOut {
			l.forget(c)
		}
	}()
	switch ud & 3 {
	case uringRecv:
		if flags&uring.CQEFMore == 0 {
			c.recving = false
		}
		if !c.dead {
			l.received(c, data, res, now)
		}
	case uringSend:
		c.wantOut, c.blocked = false, time.Time{}
		if !c.dead {
			l.sent(c, res, now)
		}
	case uringCancel:
		if res == -int32(syscall.EALREADY) && c.paused && c.recving && !c.dead {
			c.paused = false // the recv was running: cancel it again
			l.pause(c)
		}
	}
}

// received handles a recv's completion: res bytes (data), 0 at the end of
// the stream, or -errno. A multishot recv's last completion (c.recving
// false) is followed by another recv unless c is paused or closing.
func (l *uringLoop) received(c *loopConn, data []byte, res int32, now time.Time) {
	switch {
	case uring.Retryable(res) || res == -int32(syscall.ENOBUFS) || res == -int32(syscall.ECANCELED):
		l.recv(c)
		return
	case res < 0:
		if c.wantOut {
			l.drop(c, syscall.Errno(-res))
		} else {
			l.finish(c, syscall.Errno(-res), now)
		}
		return
	case res == 0:
		c.eof = true
		if !c.wantOut {
			l.finish(c, nil, now)
		}
		return
	}
	if c.n+len(data) > len(c.in) {
		c.in = append(c.in[:c.n], data...)
		c.in = c.in[:cap(c.in)]
	} else {
		copy(c.in[c.n:], data)
	}
	c.n += len(data)
	c.t.touch(now)
	if !c.wantOut {
		l.answer(c, now)
	} else if c.n >= 2+l.s.cfg.MaxMessage {
		l.pause(c)
	}
	l.recv(c)
}

// sent handles a send's completion: res bytes written or -errno.
func (l *uringLoop) sent(c *loopConn, res int32, now time.Time) {
	switch {
	case uring.Retryable(res):
		l.send(c, now)
		return
	case res < 0:
		l.drop(c, syscall.Errno(-res))
		return
	}
	c.off += int(res)
	if c.off < len(c.out) {
		l.send(c, now)
		return
	}
	c.out, c.off = c.out[:0], 0
	if c.eof {
		l.finish(c, nil, now)
		return
	}
	if c.n > 0 { // received while the answers were being sent
		l.answer(c, now)
	}
	if c.paused && c.n < 2+l.s.cfg.MaxMessage {
		c.paused = false
	}
	l.recv(c)
}

// answer answers the complete frames received and sends the answers. On a
// bad frame the answers before it are written, as far as the socket takes
// them at once (the epoll driver's flush), and the connection is closed.
func (l *uringLoop) answer(c *loopConn, now time.Time) {
	if err := l.process(c, now); err != nil {
		l.flushNow(c)
		l.drop(c, err)
		return
	}
	l.send(c, now)
}

// finish closes a connection whose peer has closed (err nil) or whose recv
// failed, after answering the complete frames it sent.
func (l *uringLoop) finish(c *loopConn, err error, now time.Time) {
	if perr := l.process(c, now); perr != nil {
		err = perr
	} else if err == nil && c.n > 0 {
		err = fmt.Errorf("connection closed inside a frame")
	}
	l.flushNow(c)
	l.drop(c, err)
}

// flushNow writes what it can of c's pending answers without waiting; no
// send is in flight.
func (l *uringLoop) flushNow(c *loopConn) {
	for c.off < len(c.out) {
		w, err := rawfd.Write(c.fd, c.out[c.off:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil || w <= 0 {
			return
		}
		c.off += w
	}
}

// drop closes c and releases its place. Shutting the socket down completes
// its operations in the ring (the ring holds the socket until then).
func (l *uringLoop) drop(c *loopConn, err error) {
	if l.conns[c.fd] != c {
		return
	}
	delete(l.conns, c.fd)
	c.dead = true
	_ = syscall.Shutdown(c.fd, syscall.SHUT_RDWR) // closing anyway: an error changes nothing
	if c.fixed {
		// The table's reference would keep the socket open past the close
		// below. Operations in flight keep theirs; entries not yet submitted
		// find the slot empty (EBADF). The slot is reused once none is left
		// (forget).
		_ = l.files.Clear(c.slot) // on failure the socket closes with the ring
	}
	if err != nil && !errors.Is(err, errClosing) {
		l.s.log.Debug("closing host connection", zap.String("remote", c.remote), zap.Error(err))
	}
	l.release(c)
	if !c.recving && !c.wantOut {
		l.forget(c)
	}
}

// forget removes a dropped connection whose operations have all completed.
func (l *uringLoop) forget(c *loopConn) {
	delete(l.byID, c.id)
	if c.fixed {
		l.files.Release(c.slot)
		c.fixed = false
	}
}

// stop ends the loop: it closes its connections and those handed over
// since, refuses any handed over later, and waits (up to a second) for
// their operations in the ring to complete.
func (l *uringLoop) stop(now time.Time) {
	l.takeNew(now)
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	l.takeNew(now) // handed over between the two
	for _, c := range l.conns {
		l.drop(c, errClosing)
	}
	for end := now.Add(time.Second); len(l.byID) > 0 && time.Now().Before(end); {
		if err := l.r.Enter(10 * time.Millisecond); err != nil && !errors.Is(err, uring.ErrBusy) {
			break
		}
		l.r.Reap(func(ud uint64, res int32, flags uint32) {
			if ud != uringWake {
				l.complete(ud, res, flags, now)
			}
		})
	}
	if len(l.byID) > 0 {
		// Not expected (their sockets are shut down): keep their buffers
		// from being reused while the kernel may still write into them.
		l.s.log.Warn("host port io_uring loop: operations still in flight at close", zap.Int("connections", len(l.byID)))
		l.r.KeepBuffers()
		stranded.Lock()
		for _, c := range l.byID {
			stranded.conns = append(stranded.conns, c)
		}
		stranded.Unlock()
	}
}

// stranded keeps the connections whose operations outlived their loop.
var stranded struct {
	sync.Mutex
	conns []*loopConn
}
