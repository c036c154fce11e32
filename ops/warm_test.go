package ops_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// TestWarmWorkingKeys: warming opens every usable stored key into the
// working-key cache, a page at a time with a rest after each, skips the
// keys that cannot be used (disabled, pending deletion), opens nothing
// twice, stops when the cache is full without evicting what requests
// cached, and stops when its context ends; a request on a warmed key is a
// cache hit.
func TestWarmWorkingKeys(t *testing.T) {
	svc := opstest.New(t)
	const n = 600
	keys := make([]string, n)
	for i := range keys {
		keys[i] = createKey(t, svc, sym(keyspec.M3, keyspec.TDES2Key, genVer))
	}
	if _, err := svc.StopKeyUsage(keys[7]); err != nil {
		t.Fatal(err)
	}
	days := 3
	if _, err := svc.DeleteKey(keys[300], &days); err != nil {
		t.Fatal(err)
	}
	ops.DropWorkingKeys(svc)
	rests := 0
	rest := func(time.Duration) { rests++ }
	opened, err := svc.WarmWorkingKeys(context.Background(), rest)
	if err != nil || opened != n-2 || svc.CachedKeys() != n-2 {
		t.Fatalf("warmed %d keys (%d cached), %v; want %d", opened, svc.CachedKeys(), err, n-2)
	}
	if rests != 2 { // 598 usable keys: pages of 256, 256 and 86
		t.Fatalf("%d rests, want one after each full page (2)", rests)
	}
	before := svc.CacheStats()
	data := hb("A5A5A5A5A5A5A5A5")
	attrs := ops.MacAttributes{Algorithm: ops.MacISO9797Alg3}
	for _, k := range []string{keys[0], keys[599]} {
		if _, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: k, MessageData: data, Attributes: attrs}); err != nil {
			t.Fatal(err)
		}
	}
	if after := svc.CacheStats(); after.Misses != before.Misses {
		t.Fatalf("%d misses on warmed keys", after.Misses-before.Misses)
	}
	if opened, err := svc.WarmWorkingKeys(context.Background(), rest); err != nil || opened != 0 {
		t.Fatalf("warming a warm cache opened %d keys, %v", opened, err)
	}

	// A cache of 100 keys, 10 of them cached by requests: warming fills
	// the other 90 and evicts none.
	ops.DropWorkingKeys(svc)
	ops.SetWorkingKeyCapacity(svc, 100)
	for _, k := range keys[500:510] {
		if _, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: k, MessageData: data, Attributes: attrs}); err != nil {
			t.Fatal(err)
		}
	}
	if opened, err := svc.WarmWorkingKeys(context.Background(), rest); err != nil || opened != 90 || svc.CachedKeys() != 100 {
		t.Fatalf("warming a cache of 100 keys opened %d (%d cached), %v", opened, svc.CachedKeys(), err)
	}
	if st := svc.CacheStats(); st.Evictions != 0 {
		t.Fatalf("warming evicted %d keys", st.Evictions)
	}

	ops.DropWorkingKeys(svc)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if opened, err := svc.WarmWorkingKeys(ctx, rest); !errors.Is(err, context.Canceled) || opened != 0 {
		t.Fatalf("warming after its context ended opened %d keys, %v", opened, err)
	}
}
