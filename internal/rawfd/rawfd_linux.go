// Package rawfd owns the few system calls the project's event loops make
// on sockets taken out of Go's poller (Linux): taking a TCP connection's
// descriptor over (Dup), and read(2)/write(2) on the non-blocking socket
// without the scheduler's system-call hand-off. Its users are the host
// port's loops (protocol/hostcmd), the HTTP API's loops (protocol/awsapi)
// and the load tool's client loops (tools/bench).
package rawfd

import (
	"net"
	"syscall"
	"unsafe"
)

// Dup returns a duplicate of c's descriptor, close-on-exec, sharing the
// socket and its flags (non-blocking, TCP_NODELAY, keep-alive). The caller
// then closes c, which takes the original out of Go's poller while the
// duplicate keeps the socket open, and owns the duplicate from then on.
func Dup(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(sfd uintptr) {
		syscall.ForkLock.RLock()
		fd, derr = syscall.Dup(int(sfd))
		if derr == nil {
			syscall.CloseOnExec(fd)
		}
		syscall.ForkLock.RUnlock()
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	return fd, nil
}

// Read is read(2) on a non-blocking socket: it returns at once, so it is a
// raw system call, without the scheduler's hand-off. b must not be empty.
func Read(fd int, b []byte) (int, error) {
	//nolint:gosec // G103: read(2) takes the buffer's address; converted in the call's arguments, as syscall.Read does, b stays live.
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// Write is write(2) on a non-blocking socket, as Read. b must not be empty.
func Write(fd int, b []byte) (int, error) {
	//nolint:gosec // G103: write(2) takes the buffer's address; converted in the call's arguments, as syscall.Write does, b stays live.
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
