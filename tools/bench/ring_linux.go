//go:build linux

package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"payhsm/internal/uring"
)

// The io_uring client driver (-driver io_uring): one thread drives every
// connection through one ring instead of a goroutine per connection. Each
// connection keeps a multishot recv armed on a shared provided-buffer ring;
// each turn makes one io_uring_enter that submits the sends of every
// connection whose responses arrived since the last turn and waits for the
// next completions. The workers (their windows, mix, sequence numbers,
// response checks and latency samples) are the goroutine driver's: only
// their reads and writes go through the ring. A worker's write is staged
// and sent by the ring; its reads take what the ring received.

// ringAvailable reports why the io_uring driver cannot run here.
func ringAvailable() error {
	if err := uring.Available(); err != nil {
		return err
	}
	return uring.MultishotRecv()
}

const (
	ringRecv = 1
	ringSend = 2
)

// runRing drives the workers, whose connections conns are, until stopping
// is set and every response in flight has arrived, or until deadline.
func runRing(workers []*worker, conns []net.Conn, measuring, stopping *atomic.Bool, deadline time.Time) (err error) {
	runtime.LockOSThread() // the ring's single issuer
	defer runtime.UnlockOSThread()
	rcs, err := takeConns(workers, conns)
	defer closeConns(rcs)
	if err != nil {
		return fmt.Errorf("bench: io_uring driver: %w", err)
	}
	n := uint32(min(len(workers), 1<<12)) // the ring has at most 1<<15 entries; more connections share them
	r, err := uring.New(max(2*n, 8), max(4*n, 16))
	if err != nil {
		return fmt.Errorf("bench: io_uring driver: %w", err)
	}
	defer r.Close()
	if err := r.Enable(); err != nil {
		return fmt.Errorf("bench: io_uring driver: %w", err)
	}
	bufs, err := r.NewBufRing(0, 1024, 4096)
	if err != nil {
		return fmt.Errorf("bench: io_uring driver: %w", err)
	}
	d := &ringDriver{r: r, bufs: bufs, conns: rcs, measuring: measuring}
	defer d.quiesce()
	for i := range rcs {
		if err := d.arm(i); err != nil {
			return err
		}
	}
	for {
		live, err := fill(rcs, stopping.Load(), d.send)
		if err != nil || live == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("bench: io_uring driver: responses late past the run's deadline")
		}
		if err := r.Enter(100 * time.Millisecond); err != nil && !errors.Is(err, uring.ErrBusy) {
			return fmt.Errorf("bench: %w", err)
		}
		r.Reap(func(ud uint64, res int32, flags uint32) {
			if err == nil {
				err = d.complete(ud, res, flags)
			}
		})
		if err != nil {
			return err
		}
	}
}

type ringDriver struct {
	r         *uring.Ring
	bufs      *uring.BufRing
	conns     []*ringConn
	measuring *atomic.Bool
}

func (d *ringDriver) sqe() (*uring.SQE, error) {
	if e := d.r.SQE(); e != nil {
		return e, nil
	}
	if err := d.r.Enter(0); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if e := d.r.SQE(); e != nil {
		return e, nil
	}
	return nil, errors.New("bench: io_uring: no submission entry")
}

// arm puts connection i's multishot recv into the ring.
func (d *ringDriver) arm(i int) error {
	e, err := d.sqe()
	if err != nil {
		return err
	}
	e.PrepRecvMultishot(d.conns[i].fd, d.bufs, uint64(i)<<2|ringRecv) //nolint:gosec // G115: i >= 0
	d.conns[i].armed = true
	return nil
}

// send puts what connection i has staged into the ring.
func (d *ringDriver) send(i int) error {
	c := d.conns[i]
	if c.off >= len(c.out) {
		return nil
	}
	e, err := d.sqe()
	if err != nil {
		return err
	}
	e.PrepSend(c.fd, c.out[c.off:], syscall.MSG_NOSIGNAL, uint64(i)<<2|ringSend) //nolint:gosec // G115: i >= 0
	c.sending = true
	return nil
}

// complete handles one completion.
func (d *ringDriver) complete(ud uint64, res int32, flags uint32) error {
	i := int(ud >> 2)
	c := d.conns[i]
	switch ud & 3 {
	case ringSend:
		c.sending = false
		if res < 0 {
			return fmt.Errorf("bench: send: %w", syscall.Errno(-res))
		}
		c.off += int(res)
		return d.send(i)
	case ringRecv:
		if flags&uring.CQEFMore == 0 {
			c.armed = false
		}
		if id, data, ok := d.bufs.Selected(res, flags); ok {
			err := c.received(data, d.measuring)
			d.bufs.Recycle(id)
			if err != nil {
				return err
			}
		}
		switch {
		case res == 0:
			return fmt.Errorf("bench: receive: %w", io.ErrUnexpectedEOF)
		case res < 0 && res != -int32(syscall.ENOBUFS) && res != -int32(syscall.EINTR):
			return fmt.Errorf("bench: receive: %w", syscall.Errno(-res))
		}
		if !c.armed && !c.done {
			return d.arm(i)
		}
	}
	return nil
}

// quiesce shuts the connections down and waits (up to a second) for their
// operations to leave the ring, whose buffers are then released.
func (d *ringDriver) quiesce() {
	for _, c := range d.conns {
		_ = syscall.Shutdown(c.fd, syscall.SHUT_RDWR) // ending anyway
	}
	busy := func() bool {
		for _, c := range d.conns {
			if c.armed || c.sending {
				return true
			}
		}
		return false
	}
	for end := time.Now().Add(time.Second); busy() && time.Now().Before(end); {
		if err := d.r.Enter(10 * time.Millisecond); err != nil && !errors.Is(err, uring.ErrBusy) {
			return
		}
		d.r.Reap(func(ud uint64, res int32, flags uint32) {
			c := d.conns[ud>>2]
			if ud&3 == ringSend {
				c.sending = false
			} else if flags&uring.CQEFMore == 0 {
				c.armed = false
			}
			if id, _, ok := d.bufs.Selected(res, flags); ok {
				d.bufs.Recycle(id)
			}
		})
	}
	if busy() {
		d.r.KeepBuffers() // not expected (the sockets are shut down); see KeepBuffers
	}
}
