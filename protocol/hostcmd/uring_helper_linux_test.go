//go:build linux

package hostcmd

import (
	"bufio"
	"fmt"
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

// TestUringHoldsInput drives the io_uring loop by hand on a socket pair
// through what no network test produces reliably: input that arrives while
// a send is in flight is held (the multishot recv stays armed) and answered
// when the send completes; past the longest frame the recv is cancelled, so
// the held input stops growing, and armed again once it is answered.
func TestUringHoldsInput(t *testing.T) {
	l, _ := handLoop(t, Config{Driver: DriverEpoll, MaxMessage: 100})
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
		if err := l.r.Enter(20 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		l.r.Reap(func(ud uint64, res int32, flags uint32) { l.complete(ud, res, flags, time.Now()) })
	}
	write := func(b []byte) {
		t.Helper()
		if _, err := syscall.Write(fds[1], b); err != nil {
			t.Fatal(err)
		}
	}
	var got []byte
	buf := make([]byte, 4096)
	read := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); len(got) < want && time.Now().Before(deadline); {
			turn()
			if k, _ := syscall.Read(fds[1], buf); k > 0 { // non-blocking: 0 or EAGAIN when nothing yet
				got = append(got, buf[:k]...)
			}
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
	if c.n != len(f1)+5 || !c.recving || c.paused {
		t.Fatalf("held %d bytes, recv armed %v, paused %v", c.n, c.recving, c.paused)
	}
	l.complete(c.id<<2|uringSend, 0, 0, time.Now()) // the send completes: f1 is answered, f2's start is held
	if c.n != 5 {
		t.Fatalf("after the send: holds %d bytes", c.n)
	}
	write(f2[5:])
	want := append(frames(t, "0001B300ONE"), frames(t, "0002B300TWO")...)
	read(len(want))
	if string(got) != string(want) {
		t.Fatalf("answers %q, want %q", got, want)
	}

	// Held past the longest frame (102 bytes here): the recv is cancelled.
	got, want = nil, nil
	for deadline := time.Now().Add(5 * time.Second); c.wantOut && time.Now().Before(deadline); {
		turn() // the answers' send completes
	}
	c.wantOut = true
	var sentFrames int
	for i := 0; i < 40 && !c.paused; i++ {
		write(frames(t, fmt.Sprintf("%04dB20004PING", i)))
		want = append(want, frames(t, fmt.Sprintf("%04dB300PING", i))...)
		sentFrames++
		turn()
	}
	for deadline := time.Now().Add(5 * time.Second); c.recving && time.Now().Before(deadline); {
		turn()
	}
	if !c.paused || c.recving || c.n < 102 {
		t.Fatalf("holding %d bytes: paused %v, recv armed %v", c.n, c.paused, c.recving)
	}
	held := c.n
	more := frames(t, "9999B20004LAST")
	write(more)
	want = append(want, frames(t, "9999B300LAST")...)
	turn()
	turn()
	if c.n != held {
		t.Fatalf("paused, yet the held input grew from %d to %d", held, c.n)
	}
	l.complete(c.id<<2|uringSend, 0, 0, time.Now()) // the send completes: the held frames are answered, the recv armed again
	if c.paused || !c.recving {
		t.Fatalf("after the send: paused %v, recv armed %v", c.paused, c.recving)
	}
	read(len(want))
	if string(got) != string(want) {
		t.Fatalf("%d frames: answers %q, want %q", sentFrames, got, want)
	}
}

// TestUringFixedFiles drives the io_uring loop by hand: a connection it
// takes is named by a fixed-file slot, served through it, and when dropped
// its slot is cleared at once (an operation naming it then fails with
// EBADF, so the close releases the socket) and becomes free only once its
// operations have completed; the peer reads the end of the stream.
func TestUringFixedFiles(t *testing.T) {
	l, ts := handLoop(t, Config{Driver: DriverEpoll, MaxConnections: 2})
	l.register()
	if l.files == nil {
		t.Skip("io_uring: no fixed files here")
	}
	slots := l.files.Free()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Close(fds[1]) }()
	ts.srv.wg.Add(1) // as Serve does for a connection it hands over; release's Done
	l.add = append(l.add, adopted{fd: fds[0], remote: "pair", t: &tracked{fd: fds[0]}})
	l.takeNew(time.Now())
	c := l.conns[fds[0]]
	if c == nil || !c.fixed || l.files.Free() != slots-1 {
		t.Fatalf("connection %v: fixed %v, %d of %d slots free", c != nil, c != nil && c.fixed, l.files.Free(), slots)
	}
	turn := func() {
		t.Helper()
		if err := l.r.Enter(20 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		l.r.Reap(func(ud uint64, res int32, flags uint32) { l.complete(ud, res, flags, time.Now()) })
	}
	if _, err := syscall.Write(fds[1], frames(t, "0001B20002OK")); err != nil {
		t.Fatal(err)
	}
	want := frames(t, "0001B300OK")
	var got []byte
	buf := make([]byte, 256)
	if err := syscall.SetNonblock(fds[1], true); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); len(got) < len(want) && time.Now().Before(deadline); {
		turn()
		if k, _ := syscall.Read(fds[1], buf); k > 0 {
			got = append(got, buf[:k]...)
		}
	}
	if string(got) != string(want) {
		t.Fatalf("answer %q, want %q", got, want)
	}
	l.drop(c, errClosing)
	if !c.recving {
		t.Fatal("the multishot recv should still be in flight right after the drop")
	}
	if l.files.Free() != slots-1 {
		t.Fatal("slot freed while an operation naming it was in flight")
	}
	const probe = 999<<2 | uringSend // no connection has id 999
	e := l.r.SQE()
	e.PrepSend(0, []byte("x"), syscall.MSG_NOSIGNAL, probe)
	e.Fixed(c.slot)
	probed := int32(1)
	for deadline := time.Now().Add(5 * time.Second); (len(l.byID) > 0 || probed == 1) && time.Now().Before(deadline); {
		if err := l.r.Enter(20 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		l.r.Reap(func(ud uint64, res int32, flags uint32) {
			if ud == probe {
				probed = res
				return
			}
			l.complete(ud, res, flags, time.Now())
		})
	}
	if probed != -int32(syscall.EBADF) {
		t.Fatalf("a send on the dropped connection's slot: %d, want EBADF (the slot still holds the socket)", probed)
	}
	if len(l.byID) != 0 || l.files.Free() != slots {
		t.Fatalf("after the completions: %d connections in the ring, %d of %d slots free", len(l.byID), l.files.Free(), slots)
	}
	if err := syscall.SetNonblock(fds[1], false); err != nil {
		t.Fatal(err)
	}
	if k, err := syscall.Read(fds[1], buf); k != 0 || err != nil {
		t.Fatalf("peer read %d, %v after the drop; want the end of the stream", k, err)
	}
}

// handLoop is an io_uring loop, enabled, for a test to drive by hand on
// its own goroutine (locked to its thread, the ring's single issuer, until
// the test ends), over a server started with cfg; it skips the test where
// io_uring is not usable, and closes the loop at the end.
func handLoop(t *testing.T, cfg Config) (*uringLoop, *testServer) {
	t.Helper()
	if err := uringUsable(); err != nil {
		t.Skipf("io_uring: %v", err)
	}
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	ts := startServer(t, nil, cfg)
	l, err := newUringLoop(ts.srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.close)
	if err := l.r.Enable(); err != nil {
		t.Fatal(err)
	}
	return l, ts
}
