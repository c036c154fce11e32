package ops_test

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// TestOnPurge: a key the service deletes itself once its waiting period has
// ended — by the purge loop, or when it is next named — is reported to
// Config.OnPurge (the daemon's audit record), once.
func TestOnPurge(t *testing.T) {
	t.Parallel()
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC).UnixNano())
	var mu sync.Mutex
	var purged []string
	svc := opstest.NewWithConfig(t, func(c *ops.Config) {
		c.Now = func() time.Time { return time.Unix(0, now.Load()) }
		c.OnPurge = func(arn string) {
			mu.Lock()
			defer mu.Unlock()
			purged = append(purged, arn)
		}
	})
	attrs := keyspec.Attributes{Usage: keyspec.C0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
		Modes: keyspec.ModesOfUse{Generate: true, Verify: true}}
	var arns []string
	for i := 0; i < 2; i++ {
		k, err := svc.CreateKey(ops.CreateKeyInput{Attributes: attrs})
		if err != nil {
			t.Fatal(err)
		}
		days := 3
		if _, err := svc.DeleteKey(k.ARN, &days); err != nil {
			t.Fatal(err)
		}
		arns = append(arns, k.ARN)
	}
	svc.PurgeDue()
	if len(purged) != 0 {
		t.Fatalf("purged before the waiting period ended: %v", purged)
	}
	now.Add(int64(4 * 24 * time.Hour))
	if _, err := svc.GetKey(arns[1]); fault.KindOf(err) != fault.NotFound {
		t.Fatalf("GetKey after the waiting period: %v", err)
	}
	svc.PurgeDue()
	svc.PurgeDue()
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(purged)
	slices.Sort(arns)
	if !slices.Equal(purged, arns) {
		t.Errorf("purged %v, want %v", purged, arns)
	}
}
