//go:build linux

package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"payhsm/internal/rawfd"
)

// What the io_uring and epoll client drivers share, and the epoll driver
// (-driver epoll): one thread waits for all connections in one
// level-triggered epoll_wait, reads a readable connection with one read,
// matches the responses, and writes the next window of each connection
// whose window has room with one write (a write that cannot complete waits
// for EPOLLOUT). The workers are the goroutine driver's.

// errNoData ends a worker's read when what the ring received is used up.
var errNoData = errors.New("bench: no data")

// ringConn is a worker's connection as the io_uring and epoll drivers
// see it: what the worker writes is staged for the driver to send, and
// what the driver received is what the worker reads.
type ringConn struct {
	fd      int
	w       *worker
	out     []byte // the staged write: out[off:] is still to send
	off     int
	sending bool   // a send is in the ring (io_uring), or waits for EPOLLOUT (epoll)
	in      []byte // received, not yet taken by the worker's reader
	armed   bool   // its multishot recv is in the ring (io_uring)
	done    bool   // nothing more to send or receive
}

// Write stages b (the worker's window, which it does not touch until its
// responses arrive) for the ring to send.
func (c *ringConn) Write(b []byte) (int, error) {
	c.out, c.off = b, 0
	return len(b), nil
}

// Read gives what the ring received.
func (c *ringConn) Read(b []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, errNoData
	}
	n := copy(b, c.in)
	c.in = c.in[n:]
	return n, nil
}

// takeFD takes c's descriptor out of Go's poller: a duplicate sharing the
// socket (non-blocking, TCP_NODELAY), the original closed.
func takeFD(c net.Conn) (int, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return -1, errors.New("bench: io_uring driver: not a TCP connection")
	}
	fd, err := rawfd.Dup(tc)
	if err != nil {
		return -1, err
	}
	_ = c.Close() // only leaves Go's poller: the duplicate keeps the socket open
	return fd, nil
}

// takeConns takes the workers' connections out of Go's poller and makes
// their reads and writes the driver's.
func takeConns(workers []*worker, conns []net.Conn) ([]*ringConn, error) {
	rcs := make([]*ringConn, 0, len(workers))
	for i, w := range workers {
		fd, err := takeFD(conns[i])
		if err != nil {
			return rcs, err
		}
		c := &ringConn{fd: fd, w: w}
		rcs = append(rcs, c)
		w.c = c
		// The window is parsed from the reader; 64 KiB holds any response.
		w.br = bufio.NewReaderSize(c, 64<<10)
	}
	return rcs, nil
}

func closeConns(rcs []*ringConn) {
	for _, c := range rcs {
		_ = syscall.Close(c.fd) // the run is over: a close error changes nothing measured
	}
}

// received hands b to c's worker and matches every response now complete.
func (c *ringConn) received(b []byte, measuring *atomic.Bool) error {
	c.in = b
	w := c.w
	for len(c.in) > 0 {
		if w.br.Buffered() == w.br.Size() {
			return errors.New("bench: receive: response larger than the buffer")
		}
		_, _ = w.br.Peek(w.br.Buffered() + 1) // takes c.in; errNoData when used up
		for w.n > 0 && w.p.complete(w.br) {
			if err := w.one(measuring); err != nil {
				return err
			}
		}
	}
	return nil
}

// fill stages the next window of every connection with room and no send
// pending (unless stopping) and has send send it; a connection with nothing
// in flight is done once stopping. It returns how many are not done.
func fill(rcs []*ringConn, stopping bool, send func(int) error) (int, error) {
	live := 0
	for i, c := range rcs {
		if c.done {
			continue
		}
		if !stopping && !c.sending && c.w.n < c.w.window {
			if err := c.w.send(); err != nil {
				return 0, err
			}
			if err := send(i); err != nil {
				return 0, err
			}
		}
		if stopping && c.w.n == 0 && !c.sending {
			c.done = true
			continue
		}
		live++
	}
	return live, nil
}

// runEpoll drives the workers, whose connections conns are, until stopping
// is set and every response in flight has arrived, or until deadline.
func runEpoll(workers []*worker, conns []net.Conn, measuring, stopping *atomic.Bool, deadline time.Time) error {
	rcs, err := takeConns(workers, conns)
	defer closeConns(rcs)
	if err != nil {
		return fmt.Errorf("bench: epoll driver: %w", err)
	}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("bench: epoll driver: %w", err)
	}
	defer func() { _ = syscall.Close(epfd) }() // released even on error
	ctl := func(op, i int, events uint32) error {
		ev := syscall.EpollEvent{Events: events, Fd: int32(i)} //nolint:gosec // G115: i indexes the connections
		if err := syscall.EpollCtl(epfd, op, rcs[i].fd, &ev); err != nil {
			return fmt.Errorf("bench: epoll_ctl: %w", err)
		}
		return nil
	}
	for i := range rcs {
		if err := ctl(syscall.EPOLL_CTL_ADD, i, syscall.EPOLLIN); err != nil {
			return err
		}
	}
	// write sends what connection i has staged; what the socket does not
	// take waits for EPOLLOUT.
	write := func(i int) error {
		c := rcs[i]
		for c.off < len(c.out) {
			n, err := rawfd.Write(c.fd, c.out[c.off:])
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				if !c.sending {
					c.sending = true
					return ctl(syscall.EPOLL_CTL_MOD, i, syscall.EPOLLIN|syscall.EPOLLOUT)
				}
				return nil
			case err != nil:
				return fmt.Errorf("bench: send: %w", err)
			}
			c.off += n
		}
		if c.sending {
			c.sending = false
			return ctl(syscall.EPOLL_CTL_MOD, i, syscall.EPOLLIN)
		}
		return nil
	}
	events := make([]syscall.EpollEvent, len(rcs))
	buf := make([]byte, 64<<10)
	for {
		live, err := fill(rcs, stopping.Load(), write)
		if err != nil || live == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("bench: epoll driver: responses late past the run's deadline")
		}
		n, err := syscall.EpollWait(epfd, events, 100)
		if err != nil && err != syscall.EINTR {
			return fmt.Errorf("bench: epoll_wait: %w", err)
		}
		for _, ev := range events[:max(n, 0)] {
			i := int(ev.Fd)
			c := rcs[i]
			if ev.Events&syscall.EPOLLOUT != 0 && c.sending {
				if err := write(i); err != nil {
					return err
				}
			}
			if ev.Events&(syscall.EPOLLIN|syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
				continue
			}
			r, err := rawfd.Read(c.fd, buf)
			switch {
			case err == syscall.EAGAIN || err == syscall.EINTR:
				continue
			case err != nil:
				return fmt.Errorf("bench: receive: %w", err)
			case r == 0:
				return fmt.Errorf("bench: receive: %w", io.ErrUnexpectedEOF)
			}
			if err := c.received(buf[:r], measuring); err != nil {
				return err
			}
		}
	}
}
