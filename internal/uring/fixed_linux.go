//go:build linux

package uring

import (
	"fmt"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Registered resources: the ring's own descriptor (IORING_REGISTER_RING_FDS,
// Linux 5.18) and a table of fixed files (IORING_REGISTER_FILES2 sparse,
// Linux 5.19), which spare the kernel a descriptor lookup (and, in a
// multi-threaded process, a reference count) per io_uring_enter and per
// operation; and a wait that does not hand the caller's processor over to
// Go's scheduler (EnterRaw).

const (
	sqeFixedFile = 1 << 0 // IOSQE_FIXED_FILE

	enterRegisteredRing = 1 << 4 // IORING_ENTER_REGISTERED_RING

	registerFilesUpdate     = 6  // IORING_REGISTER_FILES_UPDATE
	registerFiles2          = 13 // IORING_REGISTER_FILES2
	registerRingFDs         = 20 // IORING_REGISTER_RING_FDS
	unregisterRingFDs       = 21 // IORING_UNREGISTER_RING_FDS
	rsrcRegisterSparse      = 1 << 0
	registeredRingAutoIndex = ^uint32(0)
)

// rsrcUpdate is struct io_uring_rsrc_update.
type rsrcUpdate struct {
	offset uint32
	resv   uint32
	data   uint64
}

// rsrcRegister is struct io_uring_rsrc_register.
type rsrcRegister struct {
	nr    uint32
	flags uint32
	resv2 uint64
	data  uint64
	tags  uint64
}

// filesUpdate is struct io_uring_files_update.
type filesUpdate struct {
	offset uint32
	resv   uint32
	fds    uint64
}

// RegisterRing registers the ring's descriptor with the calling thread
// (IORING_REGISTER_RING_FDS): later enters from that thread name it by its
// index (IORING_ENTER_REGISTERED_RING), without a descriptor lookup. The
// registration is the thread's: only the thread that registered may enter
// afterwards (the single issuer, locked to its thread), and Close, from
// that thread, unregisters it (the registration holds the ring open).
func (r *Ring) RegisterRing() error {
	if r.regIndex >= 0 {
		return nil
	}
	u := rsrcUpdate{offset: registeredRingAutoIndex, data: uint64(r.fd)} //nolint:gosec // G115: a descriptor, not negative
	//nolint:gosec // G103: the kernel reads and fills u during the call.
	n, _, e := syscall.RawSyscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerRingFDs, uintptr(unsafe.Pointer(&u)), 1, 0, 0)
	if e != 0 {
		return fmt.Errorf("io_uring_register(RING_FDS): %w", e)
	}
	if n != 1 {
		return fmt.Errorf("io_uring_register(RING_FDS): %d registered", n)
	}
	r.regIndex = int(u.offset)
	return nil
}

// unregisterRing drops the thread's registration of the ring, if any.
func (r *Ring) unregisterRing() {
	if r.regIndex < 0 {
		return
	}
	u := rsrcUpdate{offset: uint32(r.regIndex)} //nolint:gosec // G115: an index the kernel gave
	//nolint:gosec // G103: the kernel reads u during the call.
	_, _, _ = syscall.RawSyscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), unregisterRingFDs, uintptr(unsafe.Pointer(&u)), 1, 0, 0)
	r.regIndex = -1
}

// enterFD is the descriptor to pass to io_uring_enter and the flag that
// goes with it.
func (r *Ring) enterFD() (uintptr, uintptr) {
	if r.regIndex >= 0 {
		return uintptr(r.regIndex), enterRegisteredRing
	}
	return uintptr(r.fd), 0
}

// EnterRaw is Enter without telling Go's scheduler that the thread may
// block (a raw system call): the caller keeps its processor while it
// waits, so the runtime's monitor has no system call to watch and no
// processor to hand over, and the return needs no hand-back. For a
// goroutine locked to its thread that spends its life in this wait (an
// event loop). The wait still ends on a signal (EINTR, not an error), so
// the runtime can preempt the caller for a garbage collection.
func (r *Ring) EnterRaw(wait time.Duration) error {
	if wait <= 0 {
		return r.Enter(0)
	}
	r.publishTail()
	n := r.Pending()
	r.ts = unix.NsecToTimespec(int64(wait))
	//nolint:gosec // G103: the kernel reads the timeout through arg; both are fields of r, live for the call.
	r.arg = getEventsArg{ts: uint64(uintptr(unsafe.Pointer(&r.ts)))}
	fd, reg := r.enterFD()
	//nolint:gosec // G103: as above.
	_, _, e := syscall.RawSyscall6(unix.SYS_IO_URING_ENTER, fd, uintptr(n), 1, enterGetEvents|enterExtArg|reg,
		uintptr(unsafe.Pointer(&r.arg)), unsafe.Sizeof(r.arg))
	return enterErr(e)
}

// Files is a ring's table of fixed files (IORING_REGISTER_FILES2, sparse):
// an operation on a descriptor placed in slot i names it by i
// (IOSQE_FIXED_FILE) and the kernel takes the file from the table instead
// of looking the descriptor up. The table holds its own reference to each
// file: Clear a slot before closing its descriptor, or the file stays open.
type Files struct {
	r    *Ring
	free []uint32 // slots not in use
}

// RegisterFiles registers a table of n empty slots.
func (r *Ring) RegisterFiles(n int) (*Files, error) {
	if n <= 0 || n > 1<<20 {
		return nil, fmt.Errorf("io_uring: %d fixed files", n)
	}
	reg := rsrcRegister{nr: uint32(n), flags: rsrcRegisterSparse}
	//nolint:gosec // G103: the kernel reads reg during the call.
	if _, _, e := syscall.RawSyscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerFiles2, uintptr(unsafe.Pointer(&reg)), unsafe.Sizeof(reg), 0, 0); e != 0 {
		return nil, fmt.Errorf("io_uring_register(FILES2): %w", e)
	}
	f := &Files{r: r, free: make([]uint32, n)}
	for i := range f.free {
		f.free[i] = uint32(n - 1 - i) //nolint:gosec // G115: below n
	}
	return f, nil
}

// Set places fd in a free slot and returns it; false when every slot is in
// use or the kernel refuses (then use fd itself).
func (f *Files) Set(fd int) (uint32, bool) {
	if len(f.free) == 0 {
		return 0, false
	}
	slot := f.free[len(f.free)-1]
	if f.update(slot, int32(fd)) != nil { //nolint:gosec // G115: a descriptor, a C int
		return 0, false
	}
	f.free = f.free[:len(f.free)-1]
	return slot, true
}

// Clear empties slot (operations in flight keep their file) without making
// it free: Release it once no operation naming it can still be submitted or
// in flight.
func (f *Files) Clear(slot uint32) error { return f.update(slot, -1) }

// Release makes a cleared slot free for Set.
func (f *Files) Release(slot uint32) { f.free = append(f.free, slot) }

func (f *Files) update(slot uint32, fd int32) error {
	v := fd
	//nolint:gosec // G103: the kernel reads u and v during the call.
	u := filesUpdate{offset: slot, fds: uint64(uintptr(unsafe.Pointer(&v)))}
	//nolint:gosec // G103: as above.
	n, _, e := syscall.RawSyscall6(unix.SYS_IO_URING_REGISTER, uintptr(f.r.fd), registerFilesUpdate, uintptr(unsafe.Pointer(&u)), 1, 0, 0)
	if e != 0 {
		return fmt.Errorf("io_uring_register(FILES_UPDATE): %w", e)
	}
	if n != 1 {
		return fmt.Errorf("io_uring_register(FILES_UPDATE): %d updated", n)
	}
	return nil
}

// Fixed marks e's descriptor as slot of the fixed files (IOSQE_FIXED_FILE):
// call it after a Prep, with the slot in place of the descriptor.
func (e *SQE) Fixed(slot uint32) {
	e.FD = int32(slot) //nolint:gosec // G115: slots are below 1<<20
	e.Flags |= sqeFixedFile
}

// Free is how many slots are free.
func (f *Files) Free() int { return len(f.free) }
