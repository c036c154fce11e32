package diskguard

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"payhsm/fault"
)

func TestParseReserve(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in    string
		bytes uint64
		pct   float64
		err   string
	}{
		{"", 64 << 20, 0, ""},
		{"64MiB", 64 << 20, 0, ""},
		{"512MB", 512e6, 0, ""},
		{"1G", 1 << 30, 0, ""},
		{"2 GiB", 2 << 30, 0, ""},
		{"4096", 4096, 0, ""},
		{"100B", 100, 0, ""},
		{"0", 0, 0, ""},
		{"5%", 0, 5, ""},
		{"0.5%", 0, 0.5, ""},
		{"51%", 0, 0, "0..50"},
		{"-1%", 0, 0, "0..50"},
		{"x%", 0, 0, "0..50"},
		{"-5MiB", 0, 0, "want a size"},
		{"lots", 0, 0, "want a size"},
		{"99999999999TiB", 0, 0, "too large"},
	} {
		r, err := ParseReserve(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseReserve(%q) = %+v, %v; want an error with %q", tc.in, r, err, tc.err)
			}
		case err != nil || r.Bytes != tc.bytes || r.Percent != tc.pct:
			t.Errorf("ParseReserve(%q) = %+v, %v; want %d bytes, %v%%", tc.in, r, err, tc.bytes, tc.pct)
		}
	}
	if got := (Reserve{Percent: 5}).Of(1000); got != 50 {
		t.Errorf("5%% of 1000 = %d", got)
	}
	if got := (Reserve{Bytes: 7}).Of(1000); got != 7 {
		t.Errorf("7 bytes of 1000 = %d", got)
	}
}

func TestSize(t *testing.T) {
	t.Parallel()
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 64 << 20: "64.0 MiB", 3<<30 + 1<<29: "3.5 GiB"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}

// fakeDisk is a filesystem whose free space the test sets.
type fakeDisk struct {
	u   Usage
	err error
}

func (f *fakeDisk) stat(string) (Usage, error) { return f.u, f.err }

func TestWatchdog(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.DebugLevel)
	disk := &fakeDisk{u: Usage{Avail: 100 << 20, Total: 1 << 30}}
	w := New("/data", Reserve{Bytes: 64 << 20}, zap.New(core))
	w.stat = disk.stat
	w.fresh = 0 // every check asks the filesystem (TestWatchdogFresh: the window)
	if err := w.StartCheck(); err != nil {
		t.Fatalf("start with room: %v", err)
	}
	if err := w.Check(); err != nil {
		t.Fatalf("write with room: %v", err)
	}

	disk.u.Avail = 10 << 20
	for i := 0; i < 3; i++ {
		err := w.Check()
		if !errors.Is(err, ErrLow) || fault.KindOf(err) != fault.Unavailable ||
			!strings.Contains(fault.ClientMessage(err), "10.0 MiB free, below its 64.0 MiB reserve") {
			t.Fatalf("write below the reserve: %v", err)
		}
	}
	if st := w.Stats(); !st.Low || st.Refused != 3 || st.Avail != 10<<20 || st.Reserve != 64<<20 {
		t.Errorf("stats %+v", st)
	}
	if err := w.StartCheck(); err == nil || !strings.Contains(err.Error(), "refusing to start") || !strings.Contains(err.Error(), "10.0 MiB free") {
		t.Errorf("start below the reserve: %v", err)
	}

	disk.u.Avail = 64<<20 + 1<<20 // above the reserve, within the margin: still refused
	if err := w.Check(); !errors.Is(err, ErrLow) {
		t.Errorf("write within the hysteresis margin: %v", err)
	}
	disk.u.Avail = 64<<20 + Hysteresis(64<<20)
	if err := w.Check(); err != nil {
		t.Errorf("write once space is freed: %v", err)
	}
	if w.Low() {
		t.Errorf("still low")
	}

	disk.err = errors.New("EIO")
	if err := w.Check(); err != nil {
		t.Errorf("a statfs failure stops writes: %v", err)
	}
	_ = w.Check()

	var msgs []string
	for _, e := range logs.All() {
		msgs = append(msgs, e.Message)
	}
	if len(msgs) != 3 || !strings.Contains(msgs[0], "below its free-space reserve") ||
		!strings.Contains(msgs[1], "writes resumed") || !strings.Contains(msgs[2], "cannot examine") {
		t.Errorf("log lines %q, want one per change of state and one for the statfs failure", msgs)
	}
}

// countingDisk is a fakeDisk that counts its statfs calls.
type countingDisk struct {
	fakeDisk
	calls int
}

func (c *countingDisk) stat(dir string) (Usage, error) { c.calls++; return c.fakeDisk.stat(dir) }

// TestWatchdogFresh: a check that found room answers the checks of the
// next Fresh without a statfs; past it, or once any sample (the periodic
// one included) found the disk below the reserve, checks ask again, and
// while low every check asks, so that writes resume as soon as space is
// freed.
func TestWatchdogFresh(t *testing.T) {
	t.Parallel()
	disk := &countingDisk{fakeDisk: fakeDisk{u: Usage{Avail: 100 << 20, Total: 1 << 30}}}
	var now time.Duration
	w := New("/data", Reserve{Bytes: 64 << 20}, nil)
	w.stat, w.since = disk.stat, func() time.Duration { return now }

	steps := []struct {
		advance time.Duration
		avail   uint64
		sample  bool // the periodic sample (Run) runs before the check
		low     bool // Check refuses
		calls   int  // statfs calls so far
	}{
		{0, 100 << 20, false, false, 1},        // samples, finds room
		{Fresh / 2, 10 << 20, false, false, 1}, // within Fresh: the last sample answers
		{Fresh / 2, 10 << 20, false, true, 2},  // Fresh over: asks, finds the disk low
		{1, 10 << 20, false, true, 3},          // low: every check asks
		{1, 100 << 20, false, false, 4},        // space freed: the next check writes
		{1, 10 << 20, false, false, 4},         // room found 1 ns ago
		{1, 10 << 20, true, true, 6},           // the periodic sample finds it low: the window ends
	}
	for i, st := range steps {
		now += st.advance
		disk.u.Avail = st.avail
		if st.sample {
			w.sample()
		}
		err := w.Check()
		if low := errors.Is(err, ErrLow); low != st.low {
			t.Errorf("step %d: Check = %v, want refused %v", i, err, st.low)
		}
		if disk.calls != st.calls {
			t.Errorf("step %d: %d statfs calls, want %d", i, disk.calls, st.calls)
		}
	}
}

func TestPercentReserve(t *testing.T) {
	t.Parallel()
	disk := &fakeDisk{u: Usage{Avail: 40, Total: 1000}}
	w := New("/data", Reserve{Percent: 5}, nil)
	w.stat = disk.stat
	if err := w.Check(); !errors.Is(err, ErrLow) {
		t.Errorf("40 of 1000 free, 5%% reserve: %v", err)
	}
}

func TestStat(t *testing.T) {
	t.Parallel()
	u, err := Stat(t.TempDir())
	if err != nil || u.Total == 0 || u.Avail > u.Total {
		t.Errorf("Stat = %+v, %v", u, err)
	}
	if _, err := Stat("/nonexistent/payhsm"); err == nil {
		t.Errorf("Stat of a missing directory succeeded")
	}
}
