//go:build linux

package hostcmd

import (
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A minimal io_uring (io_uring_setup(2), io_uring_enter(2)) for the host
// port's io_uring driver: one ring, submissions of recv, send and poll, and
// waiting for completions with a timeout. None of the Go io_uring libraries
// could be used (docs/performance.md, "Host port with io_uring"), so this
// is the part of liburing the driver needs. Layouts and constants are those
// of <linux/io_uring.h>.

const (
	uringOpPollAdd = 6
	uringOpSend    = 26
	uringOpRecv    = 27

	uringSetupCQSize       = 1 << 3
	uringSetupRDisabled    = 1 << 6
	uringSetupSubmitAll    = 1 << 7
	uringSetupCoopTaskrun  = 1 << 8
	uringSetupSingleIssuer = 1 << 12
	uringSetupDeferTaskrun = 1 << 13

	uringFeatSingleMmap = 1 << 0
	uringFeatNoDrop     = 1 << 1
	uringFeatExtArg     = 1 << 8

	uringEnterGetEvents = 1 << 0
	uringEnterExtArg    = 1 << 3

	uringRegisterEnableRings = 12

	uringOffSQRing = 0
	uringOffSQEs   = 0x10000000
)

type uringSQOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type uringCQOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  uringSQOffsets
	cqOff                                                                  uringCQOffsets
}

// uringSQE is struct io_uring_sqe (64 bytes).
type uringSQE struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFDIn  int32
	addr3       uint64
	_           uint64
}

// uringCQE is struct io_uring_cqe (16 bytes).
type uringCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

// uringGetEventsArg is struct io_uring_getevents_arg.
type uringGetEventsArg struct {
	sigmask   uint64
	sigmaskSz uint32
	minWait   uint32
	ts        uint64
}

// ring is one io_uring. Only its loop's goroutine uses it.
type ring struct {
	fd       int
	mem      []byte // SQ and CQ rings (one mapping: IORING_FEAT_SINGLE_MMAP)
	sqeMem   []byte
	sqHead   *uint32
	sqTail   *uint32
	sqMask   uint32
	sqArray  unsafe.Pointer
	sqes     unsafe.Pointer
	cqHead   *uint32
	cqTail   *uint32
	cqMask   uint32
	cqes     unsafe.Pointer
	tail     uint32 // the SQ tail as filled, published before each enter
	disabled bool   // created with IORING_SETUP_R_DISABLED: enable from the submitting thread

	ts  unix.Timespec     // the wait's timeout, pointed to by arg
	arg uringGetEventsArg // kept here so that the kernel reads live memory
}

// newRing sets up a ring of sq submission and cq completion entries. It
// asks for a single issuer with deferred task work (the loop's thread runs
// the completions when it waits, without interrupting it), and settles for
// cooperative task work on a kernel without them.
func newRing(sq, cq uint32) (*ring, error) {
	var p uringParams
	var fd uintptr
	var errno syscall.Errno
	for _, flags := range []uint32{
		uringSetupCQSize | uringSetupSubmitAll | uringSetupSingleIssuer | uringSetupDeferTaskrun | uringSetupRDisabled,
		uringSetupCQSize | uringSetupSubmitAll | uringSetupCoopTaskrun,
		uringSetupCQSize,
	} {
		p = uringParams{flags: flags, cqEntries: cq}
		//nolint:gosec // G103: io_uring_setup(2) fills p, which stays live for the call.
		fd, _, errno = syscall.RawSyscall(unix.SYS_IO_URING_SETUP, uintptr(sq), uintptr(unsafe.Pointer(&p)), 0)
		if errno != syscall.EINVAL {
			break
		}
	}
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &ring{fd: int(fd), disabled: p.flags&uringSetupRDisabled != 0}
	const need = uringFeatSingleMmap | uringFeatNoDrop | uringFeatExtArg
	if p.features&need != need {
		r.close()
		return nil, fmt.Errorf("io_uring: the kernel lacks features %#x", need&^p.features)
	}
	size := max(int(p.sqOff.array)+int(p.sqEntries)*4, int(p.cqOff.cqes)+int(p.cqEntries)*int(unsafe.Sizeof(uringCQE{})))
	var err error
	r.mem, err = unix.Mmap(r.fd, uringOffSQRing, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.close()
		return nil, fmt.Errorf("io_uring mmap: %w", err)
	}
	r.sqeMem, err = unix.Mmap(r.fd, uringOffSQEs, int(p.sqEntries)*int(unsafe.Sizeof(uringSQE{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.close()
		return nil, fmt.Errorf("io_uring mmap: %w", err)
	}
	// The ring's fields are at offsets the kernel gave, inside the mappings,
	// which live until close.
	at := func(off uint32) unsafe.Pointer { return unsafe.Pointer(&r.mem[off]) } //nolint:gosec // G103: see above.
	r.sqHead, r.sqTail = (*uint32)(at(p.sqOff.head)), (*uint32)(at(p.sqOff.tail))
	r.sqMask = *(*uint32)(at(p.sqOff.ringMask))
	r.sqArray = at(p.sqOff.array)
	r.sqes = unsafe.Pointer(&r.sqeMem[0]) //nolint:gosec // G103: as above.
	r.cqHead, r.cqTail = (*uint32)(at(p.cqOff.head)), (*uint32)(at(p.cqOff.tail))
	r.cqMask = *(*uint32)(at(p.cqOff.ringMask))
	r.cqes = at(p.cqOff.cqes)
	r.tail = atomic.LoadUint32(r.sqTail)
	return r, nil
}

// enable starts a ring created disabled; the calling thread becomes its
// only submitter, so the caller must have locked its goroutine to it.
func (r *ring) enable() error {
	if !r.disabled {
		return nil
	}
	if _, _, e := syscall.RawSyscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), uringRegisterEnableRings, 0, 0, 0, 0); e != 0 {
		return fmt.Errorf("io_uring_register(ENABLE_RINGS): %w", e)
	}
	r.disabled = false
	return nil
}

func (r *ring) close() {
	if r.sqeMem != nil {
		_ = unix.Munmap(r.sqeMem) // a mapping of ours: nothing to do if it fails
	}
	if r.mem != nil {
		_ = unix.Munmap(r.mem)
	}
	_ = syscall.Close(r.fd) // released even on error
}

// sqe returns the next free submission entry, zeroed, or nil when the
// submission queue is full (then submit first).
func (r *ring) sqe() *uringSQE {
	if r.tail-atomic.LoadUint32(r.sqHead) > r.sqMask {
		return nil
	}
	i := r.tail & r.sqMask
	*(*uint32)(unsafe.Add(r.sqArray, 4*uintptr(i))) = i
	e := (*uringSQE)(unsafe.Add(r.sqes, unsafe.Sizeof(uringSQE{})*uintptr(i)))
	*e = uringSQE{}
	r.tail++
	return e
}

// pending is how many entries are filled and not yet taken by the kernel.
func (r *ring) pending() uint32 { return r.tail - atomic.LoadUint32(r.sqHead) }

var errRingBusy = errors.New("io_uring: completion queue busy")

// enter submits the filled entries and, when wait > 0, waits up to wait for
// at least one completion (wait 0: submits without waiting). EINTR and a
// timeout are not errors.
func (r *ring) enter(wait time.Duration) error {
	atomic.StoreUint32(r.sqTail, r.tail)
	n := r.pending()
	if wait <= 0 {
		if n == 0 {
			return nil
		}
		_, _, e := syscall.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(n), 0, uringEnterGetEvents, 0, 0)
		return enterErr(e)
	}
	r.ts = unix.NsecToTimespec(int64(wait))
	//nolint:gosec // G103: the kernel reads the timeout through arg; both are fields of r, live for the call.
	r.arg = uringGetEventsArg{ts: uint64(uintptr(unsafe.Pointer(&r.ts)))}
	//nolint:gosec // G103: as above.
	_, _, e := syscall.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(n), 1, uringEnterGetEvents|uringEnterExtArg,
		uintptr(unsafe.Pointer(&r.arg)), unsafe.Sizeof(r.arg))
	return enterErr(e)
}

func enterErr(e syscall.Errno) error {
	switch e {
	case 0, syscall.EINTR, syscall.ETIME:
		return nil
	case syscall.EBUSY, syscall.EAGAIN:
		return errRingBusy
	default:
		return fmt.Errorf("io_uring_enter: %w", e)
	}
}

// reap calls f for every completion and frees their entries.
func (r *ring) reap(f func(userData uint64, res int32)) {
	head := atomic.LoadUint32(r.cqHead)
	for {
		tail := atomic.LoadUint32(r.cqTail)
		if head == tail {
			return
		}
		for ; head != tail; head++ {
			c := *(*uringCQE)(unsafe.Add(r.cqes, unsafe.Sizeof(uringCQE{})*uintptr(head&r.cqMask)))
			atomic.StoreUint32(r.cqHead, head+1)
			f(c.userData, c.res)
		}
	}
}

// uringAvailable reports whether a ring can be set up here.
func uringAvailable() error {
	r, err := newRing(2, 4)
	if err != nil {
		return err
	}
	r.close()
	return nil
}
