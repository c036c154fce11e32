package daemon

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"payhsm/ops"
)

func TestWorkingKeyCapacity(t *testing.T) {
	const gib = 1 << 30
	for _, c := range []struct {
		name       string
		configured int
		memory     uint64
		want       int
	}{
		{"configured", 5000, 24 * gib, 5000},
		{"unknown memory", 0, 0, ops.DefaultWorkingKeys},
		{"small machine", 0, 256 << 20, ops.DefaultWorkingKeys},
		{"24 GiB", 0, 24 * gib, 24 * gib / 4 / (2 * ops.WorkingKeyHeap)},
		{"4 GiB", 0, 4 * gib, 4 * gib / 4 / (2 * ops.WorkingKeyHeap)},
		{"capped", 0, 1 << 50, 1 << 26},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := workingKeyCapacity(c.configured, c.memory); got != c.want {
				t.Fatalf("workingKeyCapacity(%d, %d) = %d, want %d", c.configured, c.memory, got, c.want)
			}
		})
	}
}

// TestGCMemoryLimit: the collector's limit is the base and room for the
// keys cached, counted in whole steps; followWorkingKeys moves it only
// when the count crosses a step.
func TestGCMemoryLimit(t *testing.T) {
	for _, c := range []struct {
		cached int
		want   int64
	}{
		{0, gcBaseLimit},
		{1, gcBaseLimit + gcLimitStep*gcRoomPerKey},
		{gcLimitStep, gcBaseLimit + gcLimitStep*gcRoomPerKey},
		{gcLimitStep + 1, gcBaseLimit + 2*gcLimitStep*gcRoomPerKey},
		{1_000_000, gcBaseLimit + 62*gcLimitStep*gcRoomPerKey},
	} {
		if got := gcMemoryLimit(c.cached); got != c.want {
			t.Errorf("gcMemoryLimit(%d) = %d, want %d", c.cached, got, c.want)
		}
	}
	var cached atomic.Int64
	sets := make(chan int64, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		followWorkingKeys(ctx, func() int { return int(cached.Load()) }, func(l int64) { sets <- l }, time.Millisecond)
	}()
	expect := func(want int64) {
		t.Helper()
		select {
		case got := <-sets:
			if got != want {
				t.Fatalf("limit set to %d, want %d", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("limit not set to %d", want)
		}
	}
	cached.Store(10)
	expect(gcMemoryLimit(10))
	cached.Store(gcLimitStep) // the same step: nothing set
	time.Sleep(20 * time.Millisecond)
	cached.Store(3 * gcLimitStep)
	expect(gcMemoryLimit(3 * gcLimitStep))
	cached.Store(0) // emptied (a rotation): back to the base
	expect(gcBaseLimit)
	cancel()
	<-done
	if len(sets) != 0 {
		t.Fatalf("%d more limits set than the count's steps", len(sets))
	}
}

func TestMachineMemoryFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	root := filepath.Join(dir, "cg")
	write("cg/system.slice/payhsm.service/memory.max", "4294967296\n")
	write("cg/user.slice/memory.max", "max\n")
	for _, c := range []struct {
		name, cgroup string
		want         uint64
	}{
		{"limited", "0::/system.slice/payhsm.service\n", 4 << 30},
		{"unlimited", "0::/user.slice\n", 0},
		{"cgroup v1", "12:memory:/system.slice\n", 0},
		{"no memory.max", "0::/nowhere\n", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := cgroupLimit(write("cgroup-"+c.name, c.cgroup), root); got != c.want {
				t.Fatalf("cgroupLimit = %d, want %d", got, c.want)
			}
		})
	}
	if machineMemory() == 0 {
		t.Fatal("machineMemory of this machine is 0") // Linux: sysinfo(2) always answers
	}
}
