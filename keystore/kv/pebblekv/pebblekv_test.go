package pebblekv

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"payhsm/keystore/kv"
	"payhsm/keystore/kv/kvtest"
)

func TestConformance(t *testing.T) {
	for _, serial := range []bool{false, true} {
		name := "group-commit"
		if serial {
			name = "serial-commit"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			kvtest.Run(t, kvtest.Env{New: func(t *testing.T) kv.Engine {
				d, err := Open("db", Options{FS: vfs.NewMem(), SerialCommit: serial})
				if err != nil {
					t.Fatal(err)
				}
				return d
			}})
		})
	}
}

// TestRateLimited: one event per interval, the others counted.
func TestRateLimited(t *testing.T) {
	t.Parallel()
	var r rateLimited
	t0 := time.Unix(0, 0)
	steps := []struct {
		at        time.Duration
		allowed   bool
		suppressd uint64
	}{{0, true, 0}, {time.Second, false, 0}, {9 * time.Second, false, 0}, {10 * time.Second, true, 2}, {11 * time.Second, false, 0}, {time.Minute, true, 1}}
	for _, st := range steps {
		n, ok := r.allow(t0.Add(st.at), 10*time.Second)
		if ok != st.allowed || n != st.suppressd {
			t.Errorf("at %v: allowed=%v suppressed=%d, want %v %d", st.at, ok, n, st.allowed, st.suppressd)
		}
	}
}
