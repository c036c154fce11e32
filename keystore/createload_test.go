package keystore

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"payhsm/keystore/kv/pebblekv"
)

// TestCreateKeyJournalLoad measures, on disk with the journal on, N creates
// of keys with random ids from 32 writers (as the daemon's CreateKey
// writes them, checkpoints included), then the process's CPU per create,
// Pebble's metrics (block cache hit rate, flushes, WAL bytes), the reopen
// (Pebble's WAL replay and StartJournal) and Verify. It runs only with
// PAYHSM_CREATE_LOAD set to N (docs/performance.md "Group-committed key
// writes"). With PAYHSM_CREATE_LOAD_STEP set to M it also logs the rate and
// CPU per create of every M creates (how creation slows as the store grows);
// PAYHSM_CREATE_LOAD_TARGET overrides bucketTarget.
func TestCreateKeyJournalLoad(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PAYHSM_CREATE_LOAD"))
	if n <= 0 {
		t.Skip("set PAYHSM_CREATE_LOAD to run")
	}
	const writers = 32
	dir, auth := t.TempDir(), newTestAuth()
	o := JournalOptions{}
	o.bucketTarget, _ = strconv.Atoi(os.Getenv("PAYHSM_CREATE_LOAD_TARGET")) // 0: bucketTarget
	s, _ := openJournaledIn(t, vfs.Default, dir, auth, o)
	cpu0, t0 := processCPU(t), time.Now()
	step, _ := strconv.Atoi(os.Getenv("PAYHSM_CREATE_LOAD_STEP"))
	var (
		count   atomic.Int64
		stepMu  sync.Mutex
		stepAt  = t0
		stepCPU = cpu0
	)
	stepped := func() {
		c := count.Add(1)
		if step <= 0 || c%int64(step) != 0 {
			return
		}
		stepMu.Lock()
		defer stepMu.Unlock()
		now, cpu := time.Now(), processCPU(t)
		t.Logf("creates %d-%d: %.0f/s, %.1f µs CPU per create", c-int64(step), c,
			float64(step)/now.Sub(stepAt).Seconds(), float64((cpu-stepCPU).Microseconds())/float64(step))
		stepAt, stepCPU = now, cpu
	}
	var wg sync.WaitGroup
	per := n / writers
	for range writers {
		wg.Go(func() {
			for range per {
				var b [IDLen / 2]byte
				if _, err := rand.Read(b[:]); err != nil {
					t.Error(err)
					return
				}
				if err := s.CreateKey(testKey(hex.EncodeToString(b[:])), nil, ""); err != nil {
					t.Error(err)
					return
				}
				stepped()
			}
		})
	}
	wg.Wait()
	elapsed, cpu, done := time.Since(t0), processCPU(t)-cpu0, per*writers
	t.Logf("%d creates in %v: %.0f/s, %.1f µs CPU per create", done, elapsed.Round(time.Millisecond),
		float64(done)/elapsed.Seconds(), float64(cpu.Microseconds())/float64(done))
	if d, ok := s.eng.(*pebblekv.DB); ok {
		t.Logf("pebble:\n%s", d.Pebble().Metrics())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	s, _ = openJournaledIn(t, vfs.Default, dir, auth, o)
	t.Logf("reopen (Open and StartJournal): %v", time.Since(t1).Round(time.Millisecond))
	t2 := time.Now()
	rep, err := s.Verify()
	if err != nil || len(rep.Failures) != 0 {
		t.Fatalf("Verify: %v %v", rep.Failures, err)
	}
	t.Logf("Verify: %v", time.Since(t2).Round(time.Millisecond))
}

// processCPU is the process's user and system CPU time so far.
func processCPU(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
