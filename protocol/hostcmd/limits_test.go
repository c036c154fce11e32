package hostcmd

import (
	"bufio"
	"net"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"time"
)

// dialFrom connects to ts from the loopback address src (Linux routes all of
// 127.0.0.0/8 to lo), so that tests can play several source addresses.
func (ts *testServer) dialFrom(t *testing.T, src string) *conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return &conn{t: t, c: c, br: bufio.NewReader(c)}
}

// waitOpen waits until the server counts n connections (accepting is
// asynchronous to the client's dial).
func waitOpen(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.ConnStats().Open != n {
		if time.Now().After(deadline) {
			t.Fatalf("server counts %d connections, want %d", s.ConnStats().Open, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// stillOpen reports whether the server still serves c.
func stillOpen(c *conn) bool {
	c.send("0009B20001Q")
	if err := c.c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		c.t.Fatal(err)
	}
	m, err := ReadFrame(c.br, 1<<16-1)
	return err == nil && string(m) == "0009B300Q"
}

func TestLimits(t *testing.T) { forDrivers(t, testLimits) }

func testLimits(t *testing.T, drv string) {
	svc := startServer(t, nil, Config{Driver: drv}).svc
	t.Run("per address: the longest idle of the same address goes", func(t *testing.T) {
		ts := startServer(t, svc, Config{MaxConnections: 10, MaxConnectionsPerAddress: 3, Driver: drv})
		a := ts.dialFrom(t, "127.0.0.1")
		b := ts.dialFrom(t, "127.0.0.1")
		c := ts.dialFrom(t, "127.0.0.1")
		other := ts.dialFrom(t, "127.0.0.2")
		waitOpen(t, ts.srv, 4)
		a.call("0001NO00") // a is now busier than b and c
		time.Sleep(5 * time.Millisecond)
		d := ts.dialFrom(t, "127.0.0.1")
		if got := d.call("0002B20001Z"); got != "0002B300Z" {
			t.Fatalf("newcomer %q", got)
		}
		if !b.closed() {
			t.Errorf("b, the longest idle of 127.0.0.1, was not evicted")
		}
		for name, k := range map[string]*conn{"a (active)": a, "c": c, "other address": other} {
			if !stillOpen(k) {
				t.Errorf("%s was closed", name)
			}
		}
		st := ts.srv.ConnStats()
		if st.EvictedPerAddress != 1 || st.EvictedOverall != 0 || st.Accepted != 5 || st.Open != 4 {
			t.Errorf("stats %+v, want 1 evicted at the address limit, 5 accepted, 4 open", st)
		}
	})
	t.Run("overall: the longest idle of the port goes", func(t *testing.T) {
		ts := startServer(t, svc, Config{MaxConnections: 3, MaxConnectionsPerAddress: 3, Driver: drv})
		x := ts.dialFrom(t, "127.0.0.1")
		y := ts.dialFrom(t, "127.0.0.2")
		z := ts.dialFrom(t, "127.0.0.3")
		waitOpen(t, ts.srv, 3)
		x.call("0001NO00")
		z.call("0001NO00")
		time.Sleep(5 * time.Millisecond)
		n := ts.dialFrom(t, "127.0.0.4")
		if got := n.call("0002B20001Z"); got != "0002B300Z" {
			t.Fatalf("newcomer %q", got)
		}
		if !y.closed() {
			t.Errorf("y, the longest idle, was not evicted")
		}
		if !stillOpen(x) || !stillOpen(z) {
			t.Errorf("an active connection was evicted")
		}
		if st := ts.srv.ConnStats(); st.EvictedOverall != 1 || st.EvictedPerAddress != 0 || st.Open != 3 {
			t.Errorf("stats %+v, want 1 evicted at the overall limit, 3 open", st)
		}
	})
	t.Run("an idle flood from one address does not keep a newcomer out", func(t *testing.T) {
		ts := startServer(t, svc, Config{Driver: drv}) // defaults: 256 overall, 64 per address
		busy := ts.dialFrom(t, "127.0.0.2")
		busy.call("0001NO00")
		var idle []net.Conn
		for i := 0; i < 300; i++ {
			c, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			idle = append(idle, c)
		}
		t.Cleanup(func() {
			for _, c := range idle {
				_ = c.Close()
			}
		})
		// Every connection of the flood accepted (not waiting in the
		// listen backlog, which would delay any newcomer, whatever the policy).
		for deadline := time.Now().Add(10 * time.Second); ts.srv.ConnStats().Accepted != 301; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%+v: the flood was not accepted", ts.srv.ConnStats())
			}
		}
		waitOpen(t, ts.srv, 65)
		start := time.Now()
		sw := ts.dialFrom(t, "127.0.0.1")
		if got := sw.call("0002NC"); !strings.HasPrefix(got, "0002ND00") {
			t.Fatalf("switch connection after 300 idle ones: %q", got)
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("switch served after %v, want within 100 ms", d)
		}
		if !stillOpen(busy) {
			t.Errorf("a connection of another address was evicted")
		}
		if st := ts.srv.ConnStats(); st.EvictedPerAddress != 300+1-64 || st.Open != 65 {
			t.Errorf("stats %+v, want %d evicted at the address limit, 65 open", st, 300+1-64)
		}
	})
}

func TestSourceKey(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 1}, "2001:db8:1:2::"},
		{&net.UnixAddr{Name: "x", Net: "unix"}, "invalid IP"},
	} {
		if got := sourceKey(tc.addr); got.String() != tc.want {
			t.Errorf("sourceKey(%v) = %v, want %s", tc.addr, got, tc.want)
		}
	}
}

// TestLimitSummary: evictions are summarised in the log at most once a
// minute, with the counts since the last summary, never a line each.
func TestLimitSummary(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	log := zap.New(core)
	l := newLimits(1, 1)
	now := time.Unix(1000, 0)
	for i := 0; i < 500; i++ {
		l.admit(&tracked{evict: func() {}}, now)
		l.summarise(log, now.Add(time.Duration(i)*time.Millisecond))
	}
	if n := logs.Len(); n != 1 {
		t.Fatalf("%d log lines for 500 evictions within a minute, want 1", n)
	}
	l.summarise(log, now.Add(61*time.Second))
	all := logs.All()
	if len(all) != 2 {
		t.Fatalf("%d log lines after a minute, want 2", len(all))
	}
	if got, want := all[0].ContextMap()["evictedPerAddressLimit"].(uint64)+all[1].ContextMap()["evictedPerAddressLimit"].(uint64), uint64(499); got != want {
		t.Errorf("summaries count %d evictions, want %d", got, want)
	}
	if st := l.open(); st != 1 {
		t.Errorf("%d open, want 1", st)
	}
}
