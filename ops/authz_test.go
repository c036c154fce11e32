package ops_test

import (
	"testing"

	"payhsm/keyspec"
	"payhsm/ops/opstest"
)

// TestKeyResourceCachesAlias: authorizing an alias resolves it once and
// caches its key (the front ends then run the operation on the key's ARN,
// so nothing else would): the next decision is a cache hit, and
// re-pointing the alias is seen at once.
func TestKeyResourceCachesAlias(t *testing.T) {
	t.Parallel()
	svc := opstest.New(t)
	attrs := keyspec.Attributes{Usage: keyspec.D0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
		Modes: keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}
	a := opstest.Import(t, svc, attrs, "0123456789ABCDEFFEDCBA9876543210")
	b := opstest.Import(t, svc, attrs, "89ABCDEF0123456776543210FEDCBA98")
	if _, err := svc.CreateAlias("alias/zek", a); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{a, a} {
		before := svc.CacheStats()
		got, aliasARN := svc.KeyResource("alias/zek")
		after := svc.CacheStats()
		if got != want || aliasARN != svc.AliasARN("alias/zek") {
			t.Fatalf("decision %d: KeyResource = %s, %s; want %s", i, got, aliasARN, want)
		}
		if i > 0 && (after.Hits != before.Hits+1 || after.Misses != before.Misses) {
			t.Errorf("decision %d was not served from the cache: %+v -> %+v", i, before, after)
		}
	}
	if _, err := svc.UpdateAlias("alias/zek", b); err != nil {
		t.Fatal(err)
	}
	if got, _ := svc.KeyResource("alias/zek"); got != b {
		t.Errorf("after UpdateAlias: %s; want %s", got, b)
	}
	if got, _ := svc.KeyResource("alias/none"); got != "" {
		t.Errorf("a missing alias names %q", got)
	}
}
