package daemon

import (
	"os"
	"path/filepath"
	"testing"

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
		{"24 GiB", 0, 24 * gib, 24 * gib / 8 / ops.WorkingKeyHeap},
		{"4 GiB", 0, 4 * gib, 4 * gib / 8 / ops.WorkingKeyHeap},
		{"capped", 0, 1 << 50, 1 << 26},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := workingKeyCapacity(c.configured, c.memory); got != c.want {
				t.Fatalf("workingKeyCapacity(%d, %d) = %d, want %d", c.configured, c.memory, got, c.want)
			}
		})
	}
	// The collector's limit leaves room for a full cache over the base.
	if got, want := gcMemoryLimit(1_000_000), int64(gcBaseLimit+1_000_000*ops.WorkingKeyHeap); got != want {
		t.Fatalf("gcMemoryLimit(1e6) = %d, want %d", got, want)
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
