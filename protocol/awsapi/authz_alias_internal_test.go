package awsapi

import (
	"encoding/json"
	"reflect"
	"strconv"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"

	"payhsm/access"
	"payhsm/keyspec"
	"payhsm/ops/opstest"
	dp "payhsm/protocol/awsapi/dpshape"
	"payhsm/protocol/awsapi/sigv4"
)

// TestAliasPinnedAtAuthorization: a principal allowed key A only calls
// GenerateMac with KeyIdentifier alias/…, which names A; the alias is
// re-pointed to key B between the request's authorization and its
// operation (afterAuthorize). The operation must run on A, the key that was
// authorized (same MAC and KeyArn as under A's ARN), never on B; the next
// request, authorized against B, is refused.
func TestAliasPinnedAtAuthorization(t *testing.T) {
	svc := opstest.New(t)
	gv := keyspec.ModesOfUse{Generate: true, Verify: true}
	attrs := keyspec.Attributes{Usage: keyspec.M3, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key, Modes: gv}
	keyA := opstest.Import(t, svc, attrs, "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
	keyB := opstest.Import(t, svc, attrs, "0123456789ABCDEFFEDCBA9876543210")
	const alias = "alias/issuer-mac"
	if _, err := svc.CreateAlias(alias, keyA); err != nil {
		t.Fatal(err)
	}
	pol, err := access.ParsePolicy("only-a", []byte(`{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"payment-cryptography:GenerateMac","Resource":"`+keyA+`"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	app, err := access.NewPrincipal(access.Principal{Name: "app", Account: "000000000000", AccessKeyID: benchKeyID, Secret: benchSecret}, pol)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := access.NewDirectory([]*access.Principal{app})
	if err != nil {
		t.Fatal(err)
	}
	az := access.NewAuthorizer(dir)
	az.SetAccount("000000000000")
	s := New(svc, &sigv4.Verifier{Creds: az, Region: benchRegion, Service: "payment-cryptography"}, zap.NewNop())
	s.SetAuthorizer(az)

	type macOut struct{ KeyArn, Mac string }
	gen := func(ident string) (int, macOut) {
		t.Helper()
		status, body := serveOnce(t, s, signed(t, "/mac/generate", map[string]any{"KeyIdentifier": ident, "MessageData": "0011223344556677",
			"GenerationAttributes": map[string]any{"Algorithm": "ISO9797_ALGORITHM3"}}))
		var out macOut
		if status == 200 {
			if err := json.Unmarshal(body, &out); err != nil {
				t.Fatal(err)
			}
		}
		return status, out
	}
	status, want := gen(keyA)
	if status != 200 || want.KeyArn != keyA {
		t.Fatalf("GenerateMac under key A's ARN: %d %+v", status, want)
	}
	var repointed atomic.Int32
	hook := func() {
		if repointed.Add(1) == 1 {
			if _, err := svc.UpdateAlias(alias, keyB); err != nil {
				t.Error(err)
			}
		}
	}
	afterAuthorize.Store(&hook)
	t.Cleanup(func() { afterAuthorize.Store(nil) })
	if status, got := gen(alias); status != 200 || got != want {
		t.Errorf("GenerateMac by alias re-pointed after authorization: %d %+v; want the authorized key A's %+v", status, got, want)
	}
	if n := repointed.Load(); n != 1 {
		t.Fatalf("the hook ran %d times", n)
	}
	if status, got := gen(alias); status != 403 {
		t.Errorf("GenerateMac by alias now naming key B: %d %+v; want 403", status, got)
	}
}

// TestPinsRestore: the pinned members of a nested input (TranslatePinData's
// two keys) read the key ARNs while the operation runs and the caller's
// names afterwards (what the audit record shows).
func TestPinsRestore(t *testing.T) {
	const outName = "arn:aws:payment-cryptography:us-east-1:000000000000:alias/out"
	inc, out := "alias/in", outName
	in := &dp.TranslatePinDataInput{IncomingKeyIdentifier: &inc, OutgoingKeyIdentifier: &out}
	plan := planFor("TranslatePinData", in)
	if len(plan.keys) < 2 {
		t.Fatalf("plan names %d key members", len(plan.keys))
	}
	v := reflect.ValueOf(in)
	var p pins
	for i, path := range plan.keys {
		if _, ok := member(v, path); ok {
			p.set(v, path, "arn:key/"+strconv.Itoa(i))
		}
	}
	if p.n != 2 || *in.IncomingKeyIdentifier == "alias/in" || *in.OutgoingKeyIdentifier == outName {
		t.Fatalf("pinned %d: %s, %s", p.n, *in.IncomingKeyIdentifier, *in.OutgoingKeyIdentifier)
	}
	p.restore()
	if p.n != 0 || *in.IncomingKeyIdentifier != "alias/in" || *in.OutgoingKeyIdentifier != outName {
		t.Errorf("restored %d: %s, %s", p.n, *in.IncomingKeyIdentifier, *in.OutgoingKeyIdentifier)
	}
}
