package ops_test

import (
	"strings"
	"testing"

	"payhsm/fault"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

const partnerPolicy = `{"Version":"2012-10-17","Statement":[{"Sid":"Partner","Effect":"Allow",
	"Principal":{"AWS":"444455556666"},"Action":"payment-cryptography:GenerateMac","Resource":"*"}]}`

func TestResourcePolicyLifecycle(t *testing.T) {
	svc := opstest.New(t)
	k, err := svc.CreateKey(ops.CreateKeyInput{Attributes: macKey, Exportable: true})
	if err != nil {
		t.Fatal(err)
	}
	// No policy yet: Get is NotFound, Delete is a no-op, the resource has none.
	_, _, err = svc.GetResourcePolicy(k.ARN)
	_ = mustKind(t, "get before put", err, fault.NotFound)
	if err := svc.DeleteResourcePolicy(k.ARN); err != nil {
		t.Fatalf("delete before put: %v", err)
	}
	if r := svc.AuthzResource(k.ARN); r.ARN != k.ARN || r.Policy != nil {
		t.Fatalf("resource before put: %+v", r)
	}

	arn, err := svc.PutResourcePolicy(k.ARN, partnerPolicy)
	if err != nil || arn != k.ARN {
		t.Fatalf("put: %q, %v", arn, err)
	}
	if _, doc, err := svc.GetResourcePolicy(k.ARN); err != nil || doc != partnerPolicy {
		t.Fatalf("get: %q, %v", doc, err)
	}
	// The cached compiled policy follows the change (it was cached as
	// "none" above).
	r := svc.AuthzResource(k.ARN)
	if r.Policy == nil || r.Policy.Document() != partnerPolicy || r.Policy.Key() != k.ARN {
		t.Fatalf("resource after put: %+v", r)
	}
	if again := svc.AuthzResource(k.ARN); again.Policy != r.Policy {
		t.Fatal("the compiled policy is not cached")
	}
	// By alias too.
	if _, err := svc.CreateAlias("alias/partner-mac", k.ARN); err != nil {
		t.Fatal(err)
	}
	if ra := svc.AuthzResource("alias/partner-mac"); ra.ARN != k.ARN || ra.Policy != r.Policy || !strings.HasSuffix(ra.Alias, ":alias/partner-mac") {
		t.Fatalf("resource by alias: %+v", ra)
	}

	// Malformed and public policies are refused, the stored one kept.
	_, err = svc.PutResourcePolicy(k.ARN, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`)
	if f := mustKind(t, "no principal", err, fault.Validation); !strings.Contains(f.Message, "Statement[0].Principal: is required") {
		t.Fatalf("message %q", f.Message)
	}
	_, err = svc.PutResourcePolicy(k.ARN, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}]}`)
	_ = mustKind(t, "public", err, fault.PublicPolicy)
	if _, doc, _ := svc.GetResourcePolicy(k.ARN); doc != partnerPolicy {
		t.Fatalf("a refused put changed the policy to %q", doc)
	}

	if err := svc.DeleteResourcePolicy(k.ARN); err != nil {
		t.Fatal(err)
	}
	_, _, err = svc.GetResourcePolicy(k.ARN)
	_ = mustKind(t, "get after delete", err, fault.NotFound)
	if r := svc.AuthzResource(k.ARN); r.Policy != nil {
		t.Fatal("the deleted policy is still used")
	}

	// Other keys: not found; pending deletion: conflict.
	missing := k.ARN[:len(k.ARN)-16] + "zzzzzzzzzzzzzzzz"
	_, err = svc.PutResourcePolicy(missing, partnerPolicy)
	_ = mustKind(t, "put on a missing key", err, fault.NotFound)
	if r := svc.AuthzResource(missing); r.ARN != missing || r.Policy != nil {
		t.Fatalf("missing key's resource: %+v", r)
	}
	if _, err := svc.DeleteKey(k.ARN, nil); err != nil {
		t.Fatal(err)
	}
	_, err = svc.PutResourcePolicy(k.ARN, partnerPolicy)
	_ = mustKind(t, "put on a key pending deletion", err, fault.Conflict)
}

// TestResourcePolicyLookupAllocatesNothing: once cached, finding a key's
// policy for a data operation allocates nothing, whether the key has a
// policy or not.
func TestResourcePolicyLookupAllocatesNothing(t *testing.T) {
	svc := opstest.New(t)
	with, err := svc.CreateKey(ops.CreateKeyInput{Attributes: macKey})
	if err != nil {
		t.Fatal(err)
	}
	without, err := svc.CreateKey(ops.CreateKeyInput{Attributes: macKey})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.PutResourcePolicy(with.ARN, partnerPolicy); err != nil {
		t.Fatal(err)
	}
	for _, arn := range []string{with.ARN, without.ARN} {
		svc.AuthzResource(arn)
		if n := testing.AllocsPerRun(100, func() { svc.AuthzResource(arn) }); n != 0 {
			t.Errorf("%s: %v allocations per lookup", arn, n)
		}
	}
}

// BenchmarkAuthzResource is what finding a request key's authorization
// resource costs a data operation (KeyResource and the cached compiled
// policy), by key ARN and by alias, for a key with and without a policy.
func BenchmarkAuthzResource(b *testing.B) {
	svc := opstest.New(b)
	for _, withPolicy := range []bool{false, true} {
		k, err := svc.CreateKey(ops.CreateKeyInput{Attributes: macKey})
		if err != nil {
			b.Fatal(err)
		}
		name := "no-policy"
		if withPolicy {
			name = "policy"
			if _, err := svc.PutResourcePolicy(k.ARN, partnerPolicy); err != nil {
				b.Fatal(err)
			}
		}
		alias := "alias/bench-" + name
		if _, err := svc.CreateAlias(alias, k.ARN); err != nil {
			b.Fatal(err)
		}
		// The data operation caches the working key under the alias.
		w, err := svc.Working(alias, fault.SubjectKey, fault.SideNone)
		if err != nil {
			b.Fatal(err)
		}
		w.Release()
		for ident, label := range map[string]string{k.ARN: "arn", alias: "alias"} {
			b.Run(name+"/"+label, func(b *testing.B) {
				svc.AuthzResource(ident)
				b.ReportAllocs()
				for b.Loop() {
					if r := svc.AuthzResource(ident); (r.Policy != nil) != withPolicy {
						b.Fatal(r)
					}
				}
			})
		}
	}
}

// TestResourcePolicyCacheRace: lookups racing puts and deletes never leave
// a stale compiled policy cached once the changes stop (run with -race).
func TestResourcePolicyCacheRace(t *testing.T) {
	svc := opstest.New(t)
	k, err := svc.CreateKey(ops.CreateKeyInput{Attributes: macKey})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-stop:
					return
				default:
					svc.AuthzResource(k.ARN)
				}
			}
		}()
	}
	for i := range 50 {
		if i%2 == 0 {
			if _, err := svc.PutResourcePolicy(k.ARN, partnerPolicy); err != nil {
				t.Error(err)
			}
		} else if err := svc.DeleteResourcePolicy(k.ARN); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	for range 4 {
		<-done
	}
	// The last change was a delete (i = 49).
	if r := svc.AuthzResource(k.ARN); r.Policy != nil {
		t.Fatal("a deleted policy is still cached")
	}
	if _, err := svc.PutResourcePolicy(k.ARN, partnerPolicy); err != nil {
		t.Fatal(err)
	}
	if r := svc.AuthzResource(k.ARN); r.Policy == nil {
		t.Fatal("a put policy is not seen")
	}
}

// TestAuthzWarmsWorkingKey: authorizing a request on a key that is not
// cached reads it once and caches its working key, so that the operation
// that follows finds it (one store read per request, not two); a key not
// usable now is not cached there (Working reads it itself).
func TestAuthzWarmsWorkingKey(t *testing.T) {
	svc := opstest.New(t)
	k, err := svc.CreateKey(ops.CreateKeyInput{Attributes: macKey})
	if err != nil {
		t.Fatal(err)
	}
	ops.DropWorkingKeys(svc)
	s0 := svc.CacheStats()
	if r := svc.AuthzResource(k.ARN); r.ARN != k.ARN || r.Policy != nil {
		t.Fatalf("resource: %+v", r)
	}
	s1 := svc.CacheStats()
	if s1.Misses != s0.Misses+1 || s1.Entries != 1 {
		t.Fatalf("after authorization: %+v, before %+v; want one miss and the key cached", s1, s0)
	}
	attrs := ops.MacAttributes{Algorithm: ops.MacHMACSHA256}
	if _, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: k.ARN, MessageData: []byte("abc"), Attributes: attrs}); err != nil {
		t.Fatal(err)
	}
	if s2 := svc.CacheStats(); s2.Misses != s1.Misses || s2.Hits != s1.Hits+1 {
		t.Fatalf("the operation after authorization: %+v, before %+v; want a hit", s2, s1)
	}
	// The policy's second lookup comes from the cache too.
	ops.DropPolicies(svc)
	if r := svc.AuthzResource(k.ARN); r.ARN != k.ARN || r.Policy != nil {
		t.Fatalf("resource: %+v", r)
	}
	if s3 := svc.CacheStats(); s3.Misses != s1.Misses {
		t.Fatalf("policy of a cached key: %+v; want no miss", s3)
	}

	if _, err := svc.StopKeyUsage(k.ARN); err != nil {
		t.Fatal(err)
	}
	ops.DropWorkingKeys(svc)
	svc.AuthzResource(k.ARN)
	if s := svc.CacheStats(); s.Entries != 0 {
		t.Fatalf("a disabled key was cached by authorization: %+v", s)
	}
	_, err = svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: k.ARN, MessageData: []byte("abc"), Attributes: attrs})
	_ = mustKind(t, "disabled key", err, fault.Validation)
}
