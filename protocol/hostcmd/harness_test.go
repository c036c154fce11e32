package hostcmd

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"go.uber.org/zap"

	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// testServer is a host-command server on a real ops.Service and a loopback listener.
type testServer struct {
	svc  *ops.Service
	srv  *Server
	addr string
}

func startServer(t testing.TB, svc *ops.Service, cfg Config, setup ...func(*Server)) *testServer {
	t.Helper()
	if svc == nil {
		svc = opstest.New(t)
	}
	if cfg.HeaderLength == 0 {
		cfg.HeaderLength = 4
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(svc, cfg, zap.NewNop())
	for _, f := range setup {
		f(srv)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if cfg.Driver == DriverIOUring {
		if err := uringUsable(); err != nil {
			t.Skipf("io_uring driver: %v", err)
		}
	}
	if runtime.GOOS == "linux" && cfg.TLS == nil && cfg.EventLoops >= 0 && cfg.Driver != DriverGoroutine {
		// Serve starts the loops before it accepts.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			srv.mu.Lock()
			n := len(srv.loops)
			srv.mu.Unlock()
			if n > 0 {
				if want := cfg.Driver == DriverIOUring; want != loopIsUring(srv) {
					t.Fatalf("driver %q: the loop is io_uring: %v", cfg.Driver, !want)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no event loop serves plain TCP")
			}
		}
	}
	t.Cleanup(func() {
		ctx, cancel := contextTimeout(5 * time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &testServer{svc: svc, srv: srv, addr: ln.Addr().String()}
}

// drivers are the ways of serving plain TCP: epoll and io_uring event
// loops (Linux) and a goroutine per connection. Elsewhere the first two
// fall back to the third.
var drivers = []string{DriverEpoll, DriverIOUring, DriverGoroutine}

// forDrivers runs f once with each driver. The io_uring one is skipped
// where no ring can be set up (uringUsable).
func forDrivers(t *testing.T, f func(t *testing.T, drv string)) {
	for _, d := range drivers {
		t.Run(d, func(t *testing.T) { f(t, d) })
	}
}

// conn is a test client connection.
type conn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func (ts *testServer) dial(t testing.TB, tlsCfg *tls.Config) *conn {
	t.Helper()
	var c net.Conn
	var err error
	if tlsCfg != nil {
		c, err = tls.Dial("tcp", ts.addr, tlsCfg)
	} else {
		c, err = net.Dial("tcp", ts.addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() }) // the test is over; the server may have closed it
	if err := c.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return &conn{t: t, c: c, br: bufio.NewReader(c)}
}

// frames returns msgs framed, one after another.
func frames(t testing.TB, msgs ...string) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = AppendFrame(b, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func (c *conn) send(msg string) {
	c.t.Helper()
	if _, err := c.c.Write(frames(c.t, msg)); err != nil {
		c.t.Fatal(err)
	}
}

// writeAsync writes b while the test reads the answers (a burst larger than
// the socket buffers would block a write before the reads). The channel
// reports the write's error.
func (c *conn) writeAsync(b []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.c.Write(b)
		done <- err
	}()
	return done
}

func (c *conn) recv() string {
	c.t.Helper()
	m, err := ReadFrame(c.br, 1<<16-1)
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	return string(m)
}

func (c *conn) call(msg string) string { c.send(msg); return c.recv() }

// closed reports whether the server closed the connection (EOF or reset).
func (c *conn) closed() bool {
	c.t.Helper()
	if err := c.c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		c.t.Fatal(err)
	}
	_, err := c.br.ReadByte()
	return err == io.EOF || err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func frame(msg string) []byte { return binary.BigEndian.AppendUint16(nil, uint16(len(msg))) }

// importKey imports a known clear key with the given X9.143 usage code,
// algorithm and mode of use and names it alias/<name>.
func importKey(t testing.TB, svc *ops.Service, name, usage string, alg keyspec.Algorithm, mode byte, keyHex string) string {
	t.Helper()
	u, ok := keyspec.UsageFromTR31(usage)
	if !ok {
		t.Fatalf("usage %s", usage)
	}
	m, err := keyspec.ModesFromTR31(mode)
	if err != nil {
		t.Fatal(err)
	}
	arn := opstest.Import(t, svc, keyspec.Attributes{Usage: u, Class: keyspec.Symmetric, Algorithm: alg, Modes: m}, keyHex)
	if _, err := svc.CreateAlias("alias/"+name, arn); err != nil {
		t.Fatal(err)
	}
	return arn
}
