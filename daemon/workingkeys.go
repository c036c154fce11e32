package daemon

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"payhsm/appliance"
	"payhsm/keystore"
	"payhsm/ops"
)

// The daemon's garbage collector, unless the environment sets GOGC or
// GOMEMLIMIT. Without many cached keys its live heap is small (tens of MB)
// and steady, so letting the heap grow to five times it between
// collections (gcPercent) instead of twice takes 3–4 µs of CPU off each HTTP
// data-plane request (docs/performance.md) for about 12 MB more RSS. The
// memory limit is a soft ceiling near which the collector runs as often as
// it must, so that a burst cannot grow the heap unbounded at that ratio:
// gcBaseLimit, plus gcRoomPerKey for each key the working-key cache holds
// now (counted in steps of gcLimitStep keys), so that the limit follows the
// cache as it fills (followWorkingKeys). A limit below the live heap would
// make the collector run without pause; one far above it lets a small heap
// grow into memory it has not touched, every page of which costs a fault
// on first use; and a cache of a million keys is two gigabytes of heap to
// mark in every collection, so each key brings room for about as much
// again to be allocated between collections (what GOGC=100 would give the
// cache alone): docs/performance.md, "Cold keys".
const (
	gcPercent    = 400
	gcBaseLimit  = 1 << 30
	gcLimitStep  = 16384
	gcRoomPerKey = 2 * ops.WorkingKeyHeap
)

// gcLimitFollows is set when the daemon sets the memory limit itself (the
// environment does not set GOMEMLIMIT): followWorkingKeys then moves it.
var gcLimitFollows atomic.Bool

// workingKeyMemoryShare is the share of the machine's memory (1/n) that
// the working-key cache, with the collector's room for it, may take when
// keystore.workingKeyCache is 0.
const workingKeyMemoryShare = 4

// workingKeyCapacity is the working-key cache's capacity: configured, or
// else 1/workingKeyMemoryShare of memory (the machine's, or its cgroup's
// limit; 0 when unknown) at gcRoomPerKey a key, and at least
// ops.DefaultWorkingKeys.
func workingKeyCapacity(configured int, memory uint64) int {
	if configured > 0 {
		return configured
	}
	n := memory / workingKeyMemoryShare / gcRoomPerKey
	if n < ops.DefaultWorkingKeys {
		return ops.DefaultWorkingKeys
	}
	return int(min(n, appliance.MaxWorkingKeyCache))
}

// workingKeys is cfg's working-key cache capacity on this machine.
func workingKeys(cfg *appliance.Config) int {
	return workingKeyCapacity(cfg.Keystore.WorkingKeyCache, machineMemory())
}

// gcMemoryLimit is the collector's soft memory limit while the
// working-key cache holds cached keys: the keys counted up to a whole
// number of gcLimitStep.
func gcMemoryLimit(cached int) int64 {
	steps := (int64(max(cached, 0)) + gcLimitStep - 1) / gcLimitStep
	return gcBaseLimit + steps*gcLimitStep*gcRoomPerKey
}

// tuneGC applies gcPercent and the memory limit of an empty cache where
// the environment does not set its own.
func tuneGC(log *zap.Logger, capacity int) {
	pct, limit := "GOGC from the environment", "GOMEMLIMIT from the environment"
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
		pct = strconv.Itoa(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(gcMemoryLimit(0))
		gcLimitFollows.Store(true)
		limit = strconv.Itoa(gcBaseLimit>>20) + " MiB and " + strconv.Itoa(gcRoomPerKey) + " bytes a cached key"
	}
	log.Info("memory", zap.Int("workingKeyCache", capacity), zap.String("gcPercent", pct), zap.String("gcMemoryLimit", limit))
}

// followWorkingKeys sets the memory limit (set: debug.SetMemoryLimit) to
// gcMemoryLimit of the working-key cache's count (cached) every interval
// until ctx ends, when the count has crossed a step.
func followWorkingKeys(ctx context.Context, cached func() int, set func(int64), every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	last := gcMemoryLimit(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if l := gcMemoryLimit(cached()); l != last {
			set(l)
			last = l
		}
	}
}

// machineMemory is the memory this process may use: the machine's
// (sysinfo(2): the unit's ProcSubset=pid hides /proc/meminfo), or its
// cgroup v2 memory.max where lower (a systemd MemoryMax=); 0 when neither
// can be read.
func machineMemory() uint64 {
	var total uint64
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		total = si.Totalram * uint64(si.Unit)
	}
	if l := cgroupLimit("/proc/self/cgroup", "/sys/fs/cgroup"); l > 0 && (total == 0 || l < total) {
		return l
	}
	return total
}

// cgroupLimit is the memory.max of this process's cgroup v2 ("0::/path"
// in cgroupFile, under root), in bytes; 0 for none ("max"), cgroup v1 or
// anything unreadable.
func cgroupLimit(cgroupFile, root string) uint64 {
	b, err := os.ReadFile(cgroupFile) //nolint:gosec // G304: a fixed /proc path
	if err != nil {
		return 0
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		path, ok := bytes.CutPrefix(line, []byte("0::"))
		if !ok {
			continue
		}
		v, err := os.ReadFile(filepath.Join(root, string(path), "memory.max")) //nolint:gosec // G304: under the cgroup root
		if err != nil {
			return 0
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(v)), 10, 64)
		if err != nil { // "max"
			return 0
		}
		return n
	}
	return 0
}

// setMemoryLimit is debug.SetMemoryLimit without its result.
func setMemoryLimit(l int64) { debug.SetMemoryLimit(l) }

// warmWorkingKeys opens the stored keys into the working-key cache
// (ops.Service.WarmWorkingKeys) until ctx ends, resting after each page as
// long as the page took: at most half of a core, and the requests'
// traffic goes on meanwhile. Only on a store of this appliance's own
// (Pebble): a node of a fleet would read every key from the shared etcd
// cluster (one to three reads a key) each time it starts, so its keys
// open on first use.
func warmWorkingKeys(ctx context.Context, cfg *appliance.Config, svc *ops.Service, log *zap.Logger) {
	if cfg.Keystore.Engine != appliance.EnginePebble {
		return
	}
	t0 := time.Now()
	opened, err := svc.WarmWorkingKeys(ctx, func(busy time.Duration) {
		t := time.NewTimer(busy)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	})
	if err != nil && ctx.Err() == nil && !errors.Is(err, keystore.ErrClosed) {
		log.Warn("working keys: warming stopped", zap.Int("opened", opened), zap.Error(err))
		return
	}
	log.Info("working keys warmed", zap.Int("opened", opened), zap.Int("cached", svc.CachedKeys()), zap.Duration("took", time.Since(t0)))
}
