// Package diskguard owns the appliance's free-space reserve on the data
// directory's filesystem: parsing the configured reserve, the start-up check
// (a start on a full disk is refused once, with a clear message), and the
// watchdog that refuses writes while free space is below the reserve, so that
// the key store's engine always keeps room for its own flushes and
// compactions and no write can fill the disk. Reads, cryptography and the
// host port do not consult it.
//
// Free space is statfs(2)'s f_bavail (what an unprivileged user may still
// write; a filesystem's root-reserved blocks do not count). A check that
// found room answers the other checks of the next Fresh (1 ms) without
// asking the kernel again: under thousands of writes a second a statfs per
// write cost several microseconds of CPU each (a path lookup and a system
// call, about 2% of a CreateKey's in the daemon), and the appliance's own
// writes of a millisecond are tens of kilobytes, far inside any reserve.
// Space taken by someone else is seen by the first check after that
// millisecond. While writes are refused every check asks the kernel, so a
// write is allowed as soon as space is freed, without a restart. Writes
// resume once free space is back above the reserve plus a small margin
// (Hysteresis), so that a disk hovering at the reserve does not flap.
package diskguard

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"payhsm/fault"
)

// DefaultReserve is the reserve when none is configured: room for Pebble's
// memtable flushes and compactions of a key store of a few hundred thousand
// keys, and small enough for any data disk.
const DefaultReserve = "64MiB"

// ErrLow is what a refused write's error wraps (errors.Is).
var ErrLow = errors.New("diskguard: free space below the reserve")

// Reserve is the free space to keep: a byte count, or a percentage of the
// filesystem's size.
type Reserve struct {
	Bytes   uint64
	Percent float64 // used when Bytes is 0
}

var units = []struct {
	suffix string
	mult   uint64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"B", 1},
}

// ParseReserve parses a reserve: a size ("64MiB", "512MB", "1G", "0",
// a bare number of bytes) or a percentage of the filesystem ("5%", at most
// 50%). "" is DefaultReserve.
func ParseReserve(s string) (Reserve, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		s = DefaultReserve
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(v) || v < 0 || v > 50 {
			return Reserve{}, fmt.Errorf("disk reserve %q: a percentage must be 0..50", s)
		}
		return Reserve{Percent: v}, nil
	}
	mult := uint64(1)
	num := s
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	v, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return Reserve{}, fmt.Errorf("disk reserve %q: want a size such as 64MiB, 512MB or 1GiB, or a percentage such as 5%%", s)
	}
	if v > math.MaxUint64/mult {
		return Reserve{}, fmt.Errorf("disk reserve %q: too large", s)
	}
	return Reserve{Bytes: v * mult}, nil
}

func (r Reserve) String() string {
	if r.Bytes == 0 && r.Percent > 0 {
		return strconv.FormatFloat(r.Percent, 'f', -1, 64) + "%"
	}
	return Size(r.Bytes)
}

// Of is the reserve in bytes on a filesystem of total bytes.
func (r Reserve) Of(total uint64) uint64 {
	if r.Bytes > 0 || r.Percent == 0 {
		return r.Bytes
	}
	return uint64(float64(total) * r.Percent / 100)
}

// Hysteresis is the margin above the reserve that free space must reach
// before refused writes resume: 1/32 of the reserve, at most 4 MiB.
func Hysteresis(reserve uint64) uint64 { return min(reserve/32, 4<<20) }

// Size formats n bytes for people (binary units, one decimal).
func Size(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + string("KMGTP"[exp]) + "iB"
}

// Usage is a filesystem's size and the space still free for the appliance.
type Usage struct {
	Avail, Total uint64
}

// Stat returns the usage of the filesystem holding dir.
func Stat(dir string) (Usage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Usage{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	bs := uint64(st.Bsize) //nolint:gosec // G115: the block size statfs reports is positive.
	return Usage{Avail: st.Bavail * bs, Total: st.Blocks * bs}, nil
}

// Watchdog refuses writes while the data directory's free space is below
// the reserve.
type Watchdog struct {
	dir     string
	reserve Reserve
	log     *zap.Logger
	stat    func(string) (Usage, error) // Stat; tests replace it
	since   func() time.Duration        // monotonic time since New; tests replace it
	fresh   time.Duration               // Fresh; tests set 0 to sample on every check

	roomUntil atomic.Int64 // since() before which Check trusts the last sample that found room (ns)
	low       atomic.Bool
	refused   atomic.Uint64
	avail     atomic.Uint64
	total     atomic.Uint64

	mu      sync.Mutex // transitions, and the statfs failure logged once
	statErr bool
}

// New returns a watchdog of dir's filesystem.
func New(dir string, reserve Reserve, log *zap.Logger) *Watchdog {
	if log == nil {
		log = zap.NewNop()
	}
	start := time.Now()
	return &Watchdog{dir: dir, reserve: reserve, log: log, stat: Stat,
		since: func() time.Duration { return time.Since(start) }, fresh: Fresh}
}

// Fresh is how long a sample that found room above the reserve answers
// Check without another statfs.
const Fresh = time.Millisecond

// StartCheck is the start-up check: an error, to be reported once and end
// the command, when free space is below the reserve.
func (w *Watchdog) StartCheck() error {
	u, err := w.stat(w.dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	w.record(u)
	if r := w.reserve.Of(u.Total); u.Avail < r {
		return fmt.Errorf("data directory %s: its filesystem has %s free, below the %s reserve (diskReserve %s): "+
			"refusing to start, the key store could not write; free space on it (or lower diskReserve) and start again",
			w.dir, Size(u.Avail), Size(r), w.reserve)
	}
	return nil
}

// Check is the write gate: nil when free space allows a write, else an
// Unavailable fault (AWS: ServiceUnavailableException) wrapping ErrLow that
// says why. A filesystem that cannot be examined does not stop writes (the
// write itself then reports what is wrong); the failure is logged once.
func (w *Watchdog) Check() error {
	if w.fresh > 0 && int64(w.since()) < w.roomUntil.Load() {
		return nil // a sample of the last Fresh found room
	}
	low, u, ok := w.sample()
	if ok && !low && w.fresh > 0 {
		w.roomUntil.Store(int64(w.since() + w.fresh))
	}
	if !ok || !low {
		return nil
	}
	w.refused.Add(1)
	return fault.Wrap(fault.Unavailable, fmt.Sprintf(
		"the appliance is refusing writes: its data disk has %s free, below its %s reserve; "+
			"reads and cryptographic operations continue, and writes resume once space is freed",
		Size(u.Avail), Size(w.reserve.Of(u.Total))), ErrLow)
}

// sample reads the filesystem's usage and updates the state, logging a
// change of state once. ok is false when statfs failed.
func (w *Watchdog) sample() (low bool, u Usage, ok bool) {
	u, err := w.stat(w.dir)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		if !w.statErr {
			w.statErr = true
			w.log.Error("cannot examine the data directory's free space; writes are not held back by the reserve", zap.Error(err))
		}
		return w.low.Load(), Usage{}, false
	}
	w.statErr = false
	w.record(u)
	r := w.reserve.Of(u.Total)
	was := w.low.Load()
	switch {
	case !was && u.Avail < r:
		w.low.Store(true)
		w.log.Error("data disk below its free-space reserve: writes (control-plane changes, ceremonies) are refused; "+
			"reads, cryptography and the host port continue; free space to resume",
			zap.String("dir", w.dir), zap.String("free", Size(u.Avail)), zap.String("reserve", Size(r)))
	case was && u.Avail >= r+Hysteresis(r):
		w.low.Store(false)
		w.log.Info("data disk back above its free-space reserve: writes resumed",
			zap.String("dir", w.dir), zap.String("free", Size(u.Avail)), zap.String("reserve", Size(r)),
			zap.Uint64("writesRefused", w.refused.Load()))
	}
	low = w.low.Load()
	if low {
		w.roomUntil.Store(0) // a sample below the reserve ends the last one's Fresh at once
	}
	return low, u, true
}

func (w *Watchdog) record(u Usage) {
	w.avail.Store(u.Avail)
	w.total.Store(u.Total)
}

// Run samples the filesystem every interval until ctx ends, so that the
// state (Stats, the log) follows the disk when nothing writes.
func (w *Watchdog) Run(ctx context.Context, every time.Duration) {
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			w.sample()
		}
	}
}

// Stats are the watchdog's gauges and counter (for health and metrics).
type Stats struct {
	Avail, Total uint64 // bytes, at the last sample
	Reserve      uint64 // bytes, at the last sample's size
	Low          bool   // writes are being refused
	Refused      uint64 // writes refused since start
}

// Stats returns the watchdog's state.
func (w *Watchdog) Stats() Stats {
	total := w.total.Load()
	return Stats{Avail: w.avail.Load(), Total: total, Reserve: w.reserve.Of(total), Low: w.low.Load(), Refused: w.refused.Load()}
}

// Low reports whether writes are being refused (readiness: the key store is
// not writable).
func (w *Watchdog) Low() bool { return w.low.Load() }
