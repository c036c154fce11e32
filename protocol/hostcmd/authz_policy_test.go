package hostcmd

import (
	"strings"
	"testing"

	"payhsm/access"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// TestHostResourcePolicy: a host client of another account uses a key by
// @ARN and by its S block exactly while the key's resource policy grants
// it; a policy put or deleted applies to an open connection at once (the S
// block's resource is remembered, its key's policy is not); the resource
// policy's explicit Deny beats the identity Allow.
func TestHostResourcePolicy(t *testing.T) {
	svc, store := opstest.NewWithStore(t)
	attrs := keyspec.Attributes{Usage: keyspec.D0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
		Modes: keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}
	k, err := svc.CreateKey(ops.CreateKeyInput{Attributes: attrs})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := store.GetKey(k.ARN[strings.LastIndex(k.ARN, "/")+1:])
	if err != nil {
		t.Fatal(err)
	}
	pol, err := access.ParsePolicy("all", []byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	partner, err := access.NewPrincipal(access.Principal{Name: "partner", Account: "444455556666"}, pol)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := access.NewDirectory([]*access.Principal{partner})
	if err != nil {
		t.Fatal(err)
	}
	az := access.NewAuthorizer(dir)
	az.SetAccount("000000000000")
	ts := startServer(t, svc, Config{Authorizer: az, Principal: "partner"})
	c := ts.dial(t, nil)
	const pt = "0123456789ABCDEF"
	enc := func(key string) string { return c.call("0001M0001100B" + key + "0010" + pt)[:8] }
	dec := func(key string) string { return c.call("0001M2001100B" + key + "0010" + pt)[:8] }
	ref, block := "@"+k.ARN+";", "S"+rec.KeyBlock
	check := func(stage, gotRef, gotBlock, wantRef, wantBlock string) {
		t.Helper()
		if gotRef != wantRef || gotBlock != wantBlock {
			t.Errorf("%s: @ARN %s, S block %s; want %s, %s", stage, gotRef, gotBlock, wantRef, wantBlock)
		}
	}
	check("no policy: M0", enc(ref), enc(block), "0001M112", "0001M117")
	if _, err := svc.PutResourcePolicy(k.ARN, `{"Version":"2012-10-17","Statement":[
		{"Sid":"Partner","Effect":"Allow","Principal":{"AWS":"444455556666"},"Action":["payment-cryptography:EncryptData","payment-cryptography:DecryptData"],"Resource":"*"},
		{"Sid":"NoDecrypt","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::444455556666:user/partner"},"Action":"payment-cryptography:DecryptData","Resource":"*"}]}`); err != nil {
		t.Fatal(err)
	}
	check("granted: M0", enc(ref), enc(block), "0001M100", "0001M100")
	check("resource Deny: M2", dec(ref), dec(block), "0001M312", "0001M317")
	if err := svc.DeleteResourcePolicy(k.ARN); err != nil {
		t.Fatal(err)
	}
	check("deleted: M0", enc(ref), enc(block), "0001M112", "0001M117")
}
