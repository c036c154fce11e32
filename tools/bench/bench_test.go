package bench

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"payhsm/ops/opstest"
	"payhsm/protocol/hostcmd"
	"payhsm/tools/hostclient"
)

func TestPutSeq(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n    int
		seq  uint64
		want string
	}{
		{4, 1, "0001"}, {4, 9999, "9999"}, {4, 10000, "0000"}, {4, 123456, "3456"}, {6, 42, "000042"}, {0, 7, ""},
	} {
		h := make([]byte, tc.n)
		putSeq(h, tc.seq)
		if string(h) != tc.want {
			t.Errorf("putSeq(%d, %d) = %q, want %q", tc.n, tc.seq, h, tc.want)
		}
	}
}

func TestStats(t *testing.T) {
	t.Parallel()
	ds := make([]time.Duration, 1000)
	for i := range ds {
		ds[len(ds)-1-i] = time.Duration(i+1) * time.Microsecond // 1..1000 µs, reversed
	}
	s := stats("CC", ds, 3)
	if s.Count != 1000 || s.Errors != 3 || s.P50 != 501*time.Microsecond || s.P99 != 991*time.Microsecond ||
		s.P999 != 1000*time.Microsecond || s.Max != 1000*time.Microsecond {
		t.Errorf("stats = %+v", s)
	}
	if s := stats("CC", nil, 0); s.Count != 0 || s.P99 != 0 {
		t.Errorf("empty stats = %+v", s)
	}
}

func TestParseMix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want map[string]int
		ok   bool
	}{
		{"CC=2,cy=1", map[string]int{"CC": 2, "CY": 1}, true},
		{"M8", map[string]int{"M8": 1}, true},
		{"CC=x", nil, false},
		{"CCC=1", nil, false},
		{"CC=1001", nil, false},
	} {
		got, err := ParseMix(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseMix(%q) error %v", tc.in, err)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("ParseMix(%q) = %v, want %v", tc.in, got, tc.want)
			}
		}
	}
}

// TestRun drives a real host-command server (SoftHSM2 + Pebble behind
// opstest) with and without pipelining: every response is checked for its
// header, response code and error code, so a run without errors means every
// request was answered, in order and successfully.
func TestRun(t *testing.T) {
	t.Parallel()
	svc := opstest.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := hostcmd.NewServer(svc, hostcmd.Config{HeaderLength: 4}, zap.NewNop())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	ringErr := ringAvailable()
	for _, tc := range []struct {
		driver   string
		pipeline int
		rate     float64
	}{{DriverGoroutine, 1, 0}, {DriverGoroutine, 8, 0}, {DriverGoroutine, 4, 2000}, {DriverIOUring, 1, 0}, {DriverIOUring, 8, 0}, {DriverEpoll, 1, 0}, {DriverEpoll, 8, 0}, {"", 1, 0}, {"", 4, 2000}} {
		pipeline := tc.pipeline
		if tc.driver == DriverIOUring && ringErr != nil {
			t.Logf("driver io_uring skipped: %v", ringErr)
			continue
		}
		o := Options{Addr: ln.Addr().String(), Conns: 3, Duration: 500 * time.Millisecond, Warmup: 50 * time.Millisecond,
			Mix: map[string]int{"CC": 2, "CY": 1, "M8": 1}, Header: 4, Pipeline: pipeline, Rate: tc.rate, Driver: tc.driver}
		r, err := Run(o)
		if err != nil {
			t.Fatalf("driver %q pipeline %d: %v", tc.driver, pipeline, err)
		}
		if r.Total.Count == 0 || r.Total.Errors != 0 || len(r.PerCommand) != 3 || r.Throughput <= 0 {
			t.Fatalf("driver %q pipeline %d: %+v", tc.driver, pipeline, r)
		}
		if want := wantDriver(tc.driver, tc.rate, ringErr); r.Driver != want {
			t.Errorf("driver %q rate %.0f: ran %q, want %q", tc.driver, tc.rate, r.Driver, want)
		}
		for _, s := range r.PerCommand {
			if s.Count == 0 || s.P50 <= 0 || s.P50 > s.P99 || s.P99 > s.P999 || s.P999 > s.Max {
				t.Errorf("pipeline %d: %+v", pipeline, s)
			}
		}
		// An offered rate is met, not exceeded (within scheduling noise).
		if tc.rate > 0 && (r.Throughput < 0.7*tc.rate || r.Throughput > 1.1*tc.rate) {
			t.Errorf("rate %.0f: throughput %.0f", tc.rate, r.Throughput)
		}
		var out bytes.Buffer
		if err := Print(&out, o, r); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "pipeline "+string(rune('0'+pipeline))) || !strings.Contains(out.String(), "\nCC ") {
			t.Errorf("output:\n%s", out.String())
		}
	}
}

// TestRingDriverRefuses: the io_uring and epoll drivers drive plain TCP
// (host port or HTTP) without an offered rate; asked for anything else the
// run fails before connecting.
func TestRingDriverRefuses(t *testing.T) {
	t.Parallel()
	for _, o := range []Options{
		{Driver: DriverIOUring, Rate: 100},
		{Driver: DriverIOUring, TLS: hostclient.TLSFlags{Enabled: true}},
		{Driver: DriverEpoll, Rate: 100},
		{Driver: "epoll2"},
		{Driver: DriverIOUring, HTTP: HTTPTarget{URL: "https://127.0.0.1:1"}},
		{Driver: DriverEpoll, HTTP: HTTPTarget{URL: "http://127.0.0.1:1"}, Rate: 100},
	} {
		o.Addr, o.Conns, o.Duration, o.Mix = "127.0.0.1:1", 1, time.Second, map[string]int{"CC": 1}
		if _, err := Run(o); err == nil || !strings.Contains(err.Error(), "driver") {
			t.Errorf("%+v: error %v", o, err)
		}
	}
}

// wantDriver is the client driver a run asking for driver at rate should
// report: the one asked for, else the default where a ring can be set up
// (ringErr nil) and the run is unpaced, else a goroutine per connection.
func wantDriver(driver string, rate float64, ringErr error) string {
	switch {
	case driver != "":
		return driver
	case rate == 0 && ringErr == nil:
		return DefaultDriver
	}
	return DriverGoroutine
}
