//go:build linux

package hostcmd

import (
	"bufio"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"payhsm/internal/uring"
	"payhsm/ops/opstest"
)

// uringUsable reports why the io_uring driver cannot run here (nil: it can).
func uringUsable() error { return uring.Available() }

// loopIsUring reports whether srv's first loop is the io_uring driver.
func loopIsUring(srv *Server) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	_, ok := srv.loops[0].(*uringLoop)
	return ok
}

// TestUringFallback: when no ring can be set up (an old kernel, io_uring
// disabled by sysctl or seccomp), the io_uring driver serves with epoll.
func TestUringFallback(t *testing.T) {
	saved := setupRing
	setupRing = func(uint32, uint32) (*uring.Ring, error) { return nil, syscall.EPERM }
	t.Cleanup(func() { setupRing = saved })
	srv := NewServer(opstest.New(t), Config{HeaderLength: 4, Driver: DriverIOUring}, zap.NewNop())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cl := &conn{t: t, c: c, br: bufio.NewReader(c)}
	if got := cl.call("0001B20002OK"); got != "0001B300OK" {
		t.Fatalf("echo: %q", got)
	}
	srv.mu.Lock()
	n, epoll := len(srv.loops), false
	if n > 0 {
		_, epoll = srv.loops[0].(*eventLoop)
	}
	srv.mu.Unlock()
	if n == 0 || !epoll {
		t.Fatalf("loops %d, first is epoll: %v", n, epoll)
	}
	_ = c.Close()
	if err := srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// TestUringHeldInputMoves drives the io_uring loop by hand on a socket
// pair through the sequence no network test produces reliably: input
// arrives while a send is in flight (it is held), a new recv is submitted
// behind it, then the send completes and the held frames are answered and
// moved to the front of the buffer while that recv is still in flight. What
// the recv then receives must be taken from where it was written.
func TestUringHeldInputMoves(t *testing.T) {
	if err := uringUsable(); err != nil {
		t.Skipf("io_uring: %v", err)
	}
	runtime.LockOSThread() // the ring's single issuer
	defer runtime.UnlockOSThread()
	ts := startServer(t, nil, Config{Driver: DriverEpoll})
	l, err := newUringLoop(ts.srv)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	if err := l.r.Enable(); err != nil {
		t.Fatal(err)
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Close(fds[1]) }()
	if err := syscall.SetNonblock(fds[1], true); err != nil {
		t.Fatal(err)
	}
	c := l.newConn(adopted{fd: fds[0], remote: "pair", t: &tracked{fd: fds[0]}}, time.Now())
	defer func() { _ = syscall.Close(fds[0]) }()
	c.id = 1
	l.conns[c.fd], l.byID[c.id] = c, c
	turn := func() {
		t.Helper()
		if err := l.r.Enter(100 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		l.r.Reap(func(ud uint64, res int32, _ uint32) { l.complete(ud, res, time.Now()) })
	}
	write := func(b []byte) {
		t.Helper()
		if _, err := syscall.Write(fds[1], b); err != nil {
			t.Fatal(err)
		}
	}
	f1 := frames(t, "0001B20003ONE")
	f2 := frames(t, "0002B20003TWO")
	c.wantOut = true // as if a send were in flight
	l.recv(c)
	write(append(f1, f2[:5]...))
	for deadline := time.Now().Add(5 * time.Second); c.n < len(f1)+5 && time.Now().Before(deadline); {
		turn()
	}
	if c.n != len(f1)+5 || !c.recving {
		t.Fatalf("held %d bytes, another recv submitted: %v", c.n, c.recving)
	}
	l.complete(c.id<<2|uringSend, 0, time.Now()) // the send completes: f1 is answered, f2's start moves to the front
	if c.n != 5 || c.recvAt == c.n {
		t.Fatalf("after the send: n %d, recv at %d", c.n, c.recvAt)
	}
	write(f2[5:])
	want := append(frames(t, "0001B300ONE"), frames(t, "0002B300TWO")...)
	var got []byte
	buf := make([]byte, 256)
	for deadline := time.Now().Add(5 * time.Second); len(got) < len(want) && time.Now().Before(deadline); {
		turn()
		if k, _ := syscall.Read(fds[1], buf); k > 0 { // non-blocking: 0 or EAGAIN when nothing yet
			got = append(got, buf[:k]...)
		}
	}
	if string(got) != string(want) {
		t.Fatalf("answers %q, want %q", got, want)
	}
}
