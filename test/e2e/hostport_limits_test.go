package e2e

import (
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestHostPortIdleFlood: 300 idle connections from one address do not keep a
// switch out of the host port. Before, 256 idle sockets filled the port and
// every newcomer was refused until the 300 s idle timeout; now the port
// holds at most 64 connections per address and evicts the longest-idle one
// for a newcomer, so a new switch connection is served at once, a switch
// connection from another address is left alone, and the evictions are
// summarised in the log instead of one line each.
func TestHostPortIdleFlood(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())

	// A switch already connected from another address, active before the flood.
	other := dialHost(t, d.hostAddr, "127.0.0.2")
	if got := hostCall(t, other, "0001NC"); !strings.HasPrefix(got, "0001ND00") {
		t.Fatalf("NC before the flood: %q", got)
	}

	idle := make([]net.Conn, 0, 300)
	t.Cleanup(func() {
		for _, c := range idle {
			_ = c.Close() // the server may have closed it already
		}
	})
	for i := 0; i < 300; i++ {
		idle = append(idle, dialHost(t, d.hostAddr, "127.0.0.1"))
	}
	// The daemon has accepted the whole flood (none of it waits in the
	// listen backlog, which would delay any newcomer whatever the policy)
	// once the last connection the per-address limit (64) evicts is closed.
	lastEvicted := idle[len(idle)-64-1]
	for deadline := time.Now().Add(20 * time.Second); !closedByServer(t, lastEvicted); {
		if time.Now().After(deadline) {
			t.Fatal("the flood was not accepted within 20 s")
		}
	}

	for i := 0; i < 3; i++ {
		start := time.Now()
		sw := dialHost(t, d.hostAddr, "127.0.0.1")
		got := hostCall(t, sw, "0002NC")
		took := time.Since(start)
		if !strings.HasPrefix(got, "0002ND00") {
			t.Fatalf("switch connection %d after 300 idle ones: %q", i, got)
		}
		if took > 100*time.Millisecond {
			t.Errorf("switch connection %d served after %v, want within 100 ms", i, took)
		}
		t.Logf("switch connection %d served in %v", i, took)
	}
	if got := hostCall(t, other, "0003NC"); !strings.HasPrefix(got, "0003ND00") {
		t.Errorf("the other address's connection after the flood: %q", got)
	}
	// The oldest idle connections were closed by the server (EOF), the newest kept.
	if !closedByServer(t, idle[0]) {
		t.Errorf("the oldest idle connection is still open")
	}
	if closedByServer(t, idle[len(idle)-1]) {
		t.Errorf("the newest idle connection was closed")
	}
	if !closedByServer(t, idle[len(idle)-64]) {
		t.Errorf("the longest-idle connection kept, though three switch connections came")
	}
	if n := strings.Count(d.logs.String(), "connection limits reached"); n < 1 || n > 2 {
		t.Errorf("%d log lines about the connection limits for 239 evictions, want a summary (1 or 2)\n%s", n, d.logs)
	}
}

// dialHost connects to the host port from the loopback address src.
func dialHost(t *testing.T, addr, src string) net.Conn {
	t.Helper()
	dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := dl.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() }) // the server may have closed it already
	return c
}

// hostCall sends one framed command on c and returns the answer.
func hostCall(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	check(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	writeAll(t, c, append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...))
	var lb [2]byte
	if _, err := io.ReadFull(c, lb[:]); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, binary.BigEndian.Uint16(lb[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// closedByServer reports whether the server has closed c (a read ends in EOF
// or a reset rather than timing out).
func closedByServer(t *testing.T, c net.Conn) bool {
	t.Helper()
	check(t, c.SetReadDeadline(time.Now().Add(500*time.Millisecond)))
	_, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}
