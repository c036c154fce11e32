//go:build linux

package hostcmd

import (
	"bufio"
	"net"
	"syscall"
	"testing"

	"go.uber.org/zap"

	"payhsm/ops/opstest"
)

// uringUsable reports why the io_uring driver cannot run here (nil: it can).
func uringUsable() error { return uringAvailable() }

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
	setupRing = func(uint32, uint32) (*ring, error) { return nil, syscall.EPERM }
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
