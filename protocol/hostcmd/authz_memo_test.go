package hostcmd

import (
	"testing"

	"payhsm/access"
	"payhsm/keyspec"
	"payhsm/ops/opstest"
)

// TestAllowMemoFollowsPolicyChanges: a connection remembers an Allow, and
// forgets it as soon as the principal's policies change (a new directory)
// or the key's resource policy does: the next command on the same
// connection is decided again and refused.
func TestAllowMemoFollowsPolicyChanges(t *testing.T) {
	svc := opstest.New(t)
	attrs := keyspec.Attributes{Usage: keyspec.D0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
		Modes: keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}
	key := opstest.Import(t, svc, attrs, "0123456789ABCDEFFEDCBA9876543210")
	principal := func(effect string) *access.Directory {
		t.Helper()
		pol, err := access.ParsePolicy("p", []byte(`{"Version":"2012-10-17","Statement":[
			{"Effect":"Allow","Action":"payment-cryptography:EncryptData","Resource":"*"},
			{"Effect":"`+effect+`","Action":"payment-cryptography:EncryptData","Resource":"`+key+`"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		app, err := access.NewPrincipal(access.Principal{Name: "app", Account: "000000000000"}, pol)
		if err != nil {
			t.Fatal(err)
		}
		dir, err := access.NewDirectory([]*access.Principal{app})
		if err != nil {
			t.Fatal(err)
		}
		return dir
	}
	az := access.NewAuthorizer(principal("Allow"))
	az.SetAccount("000000000000")
	ts := startServer(t, svc, Config{Authorizer: az, Principal: "app"})
	c := ts.dial(t, nil)
	enc := func() string { return c.call("0001M0001100B@" + key + ";" + "0010" + "0123456789ABCDEF") }
	for range 3 { // decided, then remembered
		if got := enc(); got[4:8] != "M100" {
			t.Fatalf("allowed M0: %s", got)
		}
	}
	az.Swap(principal("Deny")) // the principal's policies change
	if got := enc(); got[4:8] != "M1"+codeNotStored {
		t.Fatalf("M0 after an explicit Deny was added: %s; want M1%s", got, codeNotStored)
	}
	az.Swap(principal("Allow"))
	if got := enc(); got[4:8] != "M100" {
		t.Fatalf("M0 allowed again: %s", got)
	}
	if _, err := svc.PutResourcePolicy(key, `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"payment-cryptography:EncryptData","Resource":"*"}]}`); err != nil {
		t.Fatal(err)
	}
	if got := enc(); got[4:8] != "M1"+codeNotStored {
		t.Fatalf("M0 after the key's resource policy denies: %s; want M1%s", got, codeNotStored)
	}
}
