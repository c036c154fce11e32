//go:build linux

package uring

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Operations (IORING_OP_*).
const (
	OpPollAdd     = 6
	OpAsyncCancel = 14
	OpSend        = 26
	OpRecv        = 27
)

// Submission and completion flags.
const (
	sqeBufferSelect = 1 << 5 // IOSQE_BUFFER_SELECT
	recvMultishot   = 1 << 1 // IORING_RECV_MULTISHOT, in ioprio

	// CQEFBuffer (IORING_CQE_F_BUFFER): the completion used the provided
	// buffer numbered flags >> 16.
	CQEFBuffer = 1 << 0
	// CQEFMore (IORING_CQE_F_MORE): a multishot operation stays armed;
	// its last completion lacks the flag.
	CQEFMore = 1 << 1
	// CQEBufferShift is where a completion's flags hold its buffer's id.
	CQEBufferShift = 16
)

const (
	setupCQSize       = 1 << 3
	setupRDisabled    = 1 << 6
	setupSubmitAll    = 1 << 7
	setupCoopTaskrun  = 1 << 8
	setupSingleIssuer = 1 << 12
	setupDeferTaskrun = 1 << 13

	featSingleMmap = 1 << 0
	featNoDrop     = 1 << 1
	featExtArg     = 1 << 8

	enterGetEvents = 1 << 0
	enterExtArg    = 1 << 3

	registerEnableRings = 12
	registerPbufRing    = 22

	offSQRing = 0
	offSQEs   = 0x10000000
)

type sqOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqOffsets
	cqOff                                                                  cqOffsets
}

// SQE is struct io_uring_sqe (64 bytes).
type SQE struct {
	Opcode      uint8
	Flags       uint8
	Ioprio      uint16
	FD          int32
	Off         uint64
	Addr        uint64
	Len         uint32
	OpFlags     uint32
	UserData    uint64
	BufIndex    uint16 // buf_index, or buf_group with IOSQE_BUFFER_SELECT
	personality uint16
	spliceFDIn  int32
	addr3       uint64
	_           uint64
}

// cqe is struct io_uring_cqe (16 bytes).
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// getEventsArg is struct io_uring_getevents_arg.
type getEventsArg struct {
	sigmask   uint64
	sigmaskSz uint32
	minWait   uint32
	ts        uint64
}

// Ring is one io_uring. Only one goroutine may use it, locked to its
// thread when the ring was set up for a single issuer (then Enable from it).
type Ring struct {
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
	bufRings []*BufRing
	regIndex int // the ring's index among the thread's registered rings (RegisterRing), -1: none

	ts  unix.Timespec // the wait's timeout, pointed to by arg
	arg getEventsArg  // kept here so that the kernel reads live memory
}

// New sets up a ring of sq submission and cq completion entries. It asks
// for a single issuer with deferred task work (the caller's thread runs the
// completions when it waits, without interrupting it; the ring then starts
// disabled, see Enable), and settles for cooperative task work on a kernel
// without them. It needs IORING_FEAT_EXT_ARG, NODROP and SINGLE_MMAP
// (Linux 5.11).
func New(sq, cq uint32) (*Ring, error) {
	var p params
	var fd uintptr
	var errno syscall.Errno
	for _, flags := range []uint32{
		setupCQSize | setupSubmitAll | setupSingleIssuer | setupDeferTaskrun | setupRDisabled,
		setupCQSize | setupSubmitAll | setupCoopTaskrun,
		setupCQSize,
	} {
		p = params{flags: flags, cqEntries: cq}
		//nolint:gosec // G103: io_uring_setup(2) fills p, which stays live for the call.
		fd, _, errno = syscall.RawSyscall(unix.SYS_IO_URING_SETUP, uintptr(sq), uintptr(unsafe.Pointer(&p)), 0)
		if errno != syscall.EINVAL {
			break
		}
	}
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &Ring{fd: int(fd), disabled: p.flags&setupRDisabled != 0, regIndex: -1}
	const need = featSingleMmap | featNoDrop | featExtArg
	if p.features&need != need {
		r.Close()
		return nil, fmt.Errorf("io_uring: the kernel lacks features %#x", need&^p.features)
	}
	size := max(int(p.sqOff.array)+int(p.sqEntries)*4, int(p.cqOff.cqes)+int(p.cqEntries)*int(unsafe.Sizeof(cqe{})))
	var err error
	r.mem, err = unix.Mmap(r.fd, offSQRing, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("io_uring mmap: %w", err)
	}
	r.sqeMem, err = unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(SQE{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("io_uring mmap: %w", err)
	}
	// The ring's fields are at offsets the kernel gave, inside the mappings,
	// which live until Close.
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

// Enable starts a ring created disabled; the calling thread becomes its
// only submitter, so the caller must have locked its goroutine to it.
func (r *Ring) Enable() error {
	if !r.disabled {
		return nil
	}
	if _, _, e := syscall.RawSyscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerEnableRings, 0, 0, 0, 0); e != 0 {
		return fmt.Errorf("io_uring_register(ENABLE_RINGS): %w", e)
	}
	r.disabled = false
	return nil
}

// Close releases the ring and its provided-buffer rings.
func (r *Ring) Close() {
	r.unregisterRing()
	if r.sqeMem != nil {
		_ = unix.Munmap(r.sqeMem) // a mapping of ours: nothing to do if it fails
	}
	if r.mem != nil {
		_ = unix.Munmap(r.mem)
	}
	_ = syscall.Close(r.fd) // released even on error
	// The kernel drops its references to the buffer rings with the ring.
	for _, b := range r.bufRings {
		if b.keep {
			continue
		}
		_ = unix.Munmap(b.ring)
		_ = unix.Munmap(b.bufs)
	}
	r.bufRings = nil
}

// SQE returns the next free submission entry, zeroed, or nil when the
// submission queue is full (then Enter first).
func (r *Ring) SQE() *SQE {
	if r.tail-atomic.LoadUint32(r.sqHead) > r.sqMask {
		return nil
	}
	i := r.tail & r.sqMask
	*(*uint32)(unsafe.Add(r.sqArray, 4*uintptr(i))) = i
	e := (*SQE)(unsafe.Add(r.sqes, unsafe.Sizeof(SQE{})*uintptr(i)))
	*e = SQE{}
	r.tail++
	return e
}

// Pending is how many entries are filled and not yet taken by the kernel.
func (r *Ring) Pending() uint32 { return r.tail - atomic.LoadUint32(r.sqHead) }

// ErrBusy is io_uring_enter's EBUSY or EAGAIN: completions must be reaped
// before more can be submitted.
var ErrBusy = errors.New("io_uring: completion queue busy")

// Enter submits the filled entries and, when wait > 0, waits up to wait for
// at least one completion (wait 0: submits without waiting). EINTR and a
// timeout are not errors.
func (r *Ring) Enter(wait time.Duration) error {
	r.publishTail()
	n := r.Pending()
	fd, reg := r.enterFD()
	if wait <= 0 {
		if n == 0 {
			return nil
		}
		_, _, e := syscall.RawSyscall6(unix.SYS_IO_URING_ENTER, fd, uintptr(n), 0, enterGetEvents|reg, 0, 0)
		return enterErr(e)
	}
	r.ts = unix.NsecToTimespec(int64(wait))
	//nolint:gosec // G103: the kernel reads the timeout through arg; both are fields of r, live for the call.
	r.arg = getEventsArg{ts: uint64(uintptr(unsafe.Pointer(&r.ts)))}
	//nolint:gosec // G103: as above.
	_, _, e := syscall.Syscall6(unix.SYS_IO_URING_ENTER, fd, uintptr(n), 1, enterGetEvents|enterExtArg|reg,
		uintptr(unsafe.Pointer(&r.arg)), unsafe.Sizeof(r.arg))
	return enterErr(e)
}

// publishTail makes the entries filled so far the kernel's.
func (r *Ring) publishTail() { atomic.StoreUint32(r.sqTail, r.tail) }

func enterErr(e syscall.Errno) error {
	switch e {
	case 0, syscall.EINTR, syscall.ETIME:
		return nil
	case syscall.EBUSY, syscall.EAGAIN:
		return ErrBusy
	default:
		return fmt.Errorf("io_uring_enter: %w", e)
	}
}

// Reap calls f for every completion and frees their entries.
func (r *Ring) Reap(f func(userData uint64, res int32, flags uint32)) {
	head := atomic.LoadUint32(r.cqHead)
	for {
		tail := atomic.LoadUint32(r.cqTail)
		if head == tail {
			return
		}
		for ; head != tail; head++ {
			c := *(*cqe)(unsafe.Add(r.cqes, unsafe.Sizeof(cqe{})*uintptr(head&r.cqMask)))
			atomic.StoreUint32(r.cqHead, head+1)
			f(c.userData, c.res, c.flags)
		}
	}
}

// Addr is b's address for the kernel; b is not empty, and its owner keeps
// it referenced until the operation completes (Go does not move heap
// objects).
func Addr(b []byte) uint64 {
	//nolint:gosec // G103: the kernel takes the buffer's address; see above.
	return uint64(uintptr(unsafe.Pointer(&b[0])))
}

// PrepRecv makes e a recv into b (not empty) on fd.
func (e *SQE) PrepRecv(fd int, b []byte, userData uint64) {
	e.Opcode, e.FD, e.Addr, e.UserData = OpRecv, int32(fd), Addr(b), userData //nolint:gosec // G115: a descriptor, a C int
	e.Len = uint32(len(b))                                                    //nolint:gosec // G115: callers' buffers are far below 4 GiB
}

// PrepRecvMultishot makes e a multishot recv on fd into buffers of the
// provided-buffer ring b: a completion (flag CQEFBuffer, the buffer's id in
// flags >> 16) per arrival, while CQEFMore is set.
func (e *SQE) PrepRecvMultishot(fd int, b *BufRing, userData uint64) {
	e.Opcode, e.FD, e.UserData = OpRecv, int32(fd), userData //nolint:gosec // G115: a descriptor, a C int
	e.Flags, e.Ioprio, e.BufIndex = sqeBufferSelect, recvMultishot, b.group
}

// PrepSend makes e a send of b (not empty) on fd, with send(2)'s flags.
func (e *SQE) PrepSend(fd int, b []byte, flags uint32, userData uint64) {
	e.Opcode, e.FD, e.Addr, e.UserData, e.OpFlags = OpSend, int32(fd), Addr(b), userData, flags //nolint:gosec // G115: a descriptor, a C int
	e.Len = uint32(len(b))                                                                      //nolint:gosec // G115: as in PrepRecv
}

// PrepPollAdd makes e a one-shot poll for events on fd.
func (e *SQE) PrepPollAdd(fd int, events uint32, userData uint64) {
	e.Opcode, e.FD, e.OpFlags, e.UserData = OpPollAdd, int32(fd), events, userData //nolint:gosec // G115: a descriptor, a C int
}

// PrepCancel makes e a cancellation of the operation named target.
func (e *SQE) PrepCancel(target, userData uint64) {
	e.Opcode, e.Addr, e.UserData = OpAsyncCancel, target, userData
	e.FD = -1
}

// BufRing is a ring of provided buffers (IORING_REGISTER_PBUF_RING,
// Linux 5.19): recvs that select a buffer take the next one the kernel
// holds; the owner gives each back (Recycle) once it has used the data.
type BufRing struct {
	ring  []byte // count struct io_uring_buf, page-aligned (a mapping)
	bufs  []byte // count buffers of size bytes (a mapping: the kernel writes into it)
	size  int
	mask  uint16
	tail  uint16
	group uint16
	word  *uint32 // the 32 bits holding the ring's tail (struct io_uring_buf_ring)
	shift uint    // the tail's position in word
	keep  bool    // not unmapped at the ring's Close (KeepBuffers)
}

// bufReg is struct io_uring_buf_reg.
type bufReg struct {
	ringAddr    uint64
	ringEntries uint32
	bgid        uint16
	flags       uint16
	resv        [3]uint64
}

// NewBufRing registers a provided-buffer ring of count (a power of two, at
// most 32768) buffers of size bytes as buffer group group of r, all of
// them given to the kernel.
func (r *Ring) NewBufRing(group uint16, count, size int) (*BufRing, error) {
	if count <= 0 || count > 1<<15 || count&(count-1) != 0 || size <= 0 {
		return nil, fmt.Errorf("io_uring: buffer ring of %d buffers of %d bytes", count, size)
	}
	ring, err := unix.Mmap(-1, 0, count*16, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANONYMOUS|unix.MAP_PRIVATE|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("io_uring buffer ring: %w", err)
	}
	bufs, err := unix.Mmap(-1, 0, count*size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANONYMOUS|unix.MAP_PRIVATE|unix.MAP_POPULATE)
	if err != nil {
		_ = unix.Munmap(ring)
		return nil, fmt.Errorf("io_uring buffers: %w", err)
	}
	b := &BufRing{ring: ring, bufs: bufs, size: size, mask: uint16(count - 1), group: group}
	// The tail is the u16 at byte 14 of the first entry (its resv field):
	// the 32-bit word at byte 12 holds it and the first entry's bid, both
	// written only here, so the tail is published with one atomic store.
	b.word = (*uint32)(unsafe.Pointer(&ring[12])) //nolint:gosec // G103: inside the mapping, which lives until the ring's Close.
	if !littleEndian() {
		b.shift = 0
	} else {
		b.shift = 16
	}
	reg := bufReg{ringAddr: Addr(ring), ringEntries: uint32(count), bgid: group}
	//nolint:gosec // G103: the kernel reads reg during the call.
	if _, _, e := syscall.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerPbufRing, uintptr(unsafe.Pointer(&reg)), 1, 0, 0); e != 0 {
		_ = unix.Munmap(ring)
		_ = unix.Munmap(bufs)
		return nil, fmt.Errorf("io_uring_register(PBUF_RING): %w", e)
	}
	r.bufRings = append(r.bufRings, b)
	for i := range count {
		b.put(uint16(i))
	}
	b.publish()
	return b, nil
}

func littleEndian() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1 //nolint:gosec // G103: reads x's first byte.
}

// Buf is the first n bytes of buffer id, as a completion named it.
func (b *BufRing) Buf(id uint16, n int) []byte {
	off := int(id) * b.size
	return b.bufs[off : off+n]
}

// Selected is the provided buffer a completion (res, flags) carries: its
// id and the res bytes the kernel wrote into it; ok is false when the
// completion carries none. Recycle the id once the data is used.
func (b *BufRing) Selected(res int32, flags uint32) (id uint16, data []byte, ok bool) {
	if flags&CQEFBuffer == 0 {
		return 0, nil, false
	}
	id = uint16(flags >> CQEBufferShift)
	return id, b.Buf(id, max(int(res), 0)), true
}

// Retryable reports whether an operation's result res (-errno) asks for
// the operation to be made again: EAGAIN or EINTR.
func Retryable(res int32) bool {
	return res == -int32(syscall.EAGAIN) || res == -int32(syscall.EINTR)
}

// Size is the size of each buffer.
func (b *BufRing) Size() int { return b.size }

// put writes buffer id into the next free entry, unpublished.
func (b *BufRing) put(id uint16) {
	e := unsafe.Add(unsafe.Pointer(&b.ring[0]), 16*uintptr(b.tail&b.mask)) //nolint:gosec // G103: entry tail&mask of the mapping.
	*(*uint64)(e) = Addr(b.bufs[int(id)*b.size:])
	*(*uint32)(unsafe.Add(e, 8)) = uint32(b.size) //nolint:gosec // G115: size fits, the mapping is count*size
	*(*uint16)(unsafe.Add(e, 12)) = id
	b.tail++
}

// publish makes the entries put so far the kernel's.
func (b *BufRing) publish() {
	w := atomic.LoadUint32(b.word)
	keep := uint32(0xffff) << (16 - b.shift) // the other half: the first entry's bid
	atomic.StoreUint32(b.word, w&keep|uint32(b.tail)<<b.shift)
}

// Recycle gives buffer id back to the kernel.
func (b *BufRing) Recycle(id uint16) {
	b.put(id)
	b.publish()
}

// KeepBuffers leaves r's provided buffers mapped when r is closed: for an
// owner that closes the ring while a recv may still be in flight (the
// kernel cancels it with the ring, but not necessarily before Close
// returns), at the cost of the mappings.
func (r *Ring) KeepBuffers() {
	for _, b := range r.bufRings {
		b.keep = true
	}
}

// Available reports whether a ring can be set up here.
func Available() error {
	r, err := New(2, 4)
	if err != nil {
		return err
	}
	r.Close()
	return nil
}

// MultishotRecv reports whether the kernel has multishot recv with
// provided-buffer rings (Linux 6.0).
func MultishotRecv() error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	major, rest, _ := strings.Cut(rel, ".")
	minor, _, _ := strings.Cut(rest, ".")
	ma, err1 := strconv.Atoi(major)
	if i := strings.IndexFunc(minor, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minor = minor[:i] // "0-rc1"
	}
	mi, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("io_uring: kernel release %q", rel)
	}
	if ma < 6 {
		return fmt.Errorf("io_uring: multishot recv needs Linux 6.0, this is %d.%d", ma, mi)
	}
	return nil
}
