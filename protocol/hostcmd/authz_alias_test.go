package hostcmd

import (
	"sync/atomic"
	"testing"

	"payhsm/access"
	"payhsm/keyspec"
	"payhsm/ops/opstest"
)

// TestHostAliasPinnedAtAuthorization: a client allowed key A only uses
// "@alias/…;" while the alias names A; the alias is re-pointed to key B
// between the command's authorization and its operation (afterAuthorize).
// The command must run on A, the key that was authorized (its answer equals
// the one under @<A's ARN>;), never on B; the next command, authorized
// against B, is refused as "not found".
func TestHostAliasPinnedAtAuthorization(t *testing.T) {
	svc := opstest.New(t)
	attrs := keyspec.Attributes{Usage: keyspec.D0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
		Modes: keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}
	keyA := opstest.Import(t, svc, attrs, "0123456789ABCDEFFEDCBA9876543210")
	keyB := opstest.Import(t, svc, attrs, "89ABCDEF0123456776543210FEDCBA98")
	const alias = "alias/switch-zek"
	if _, err := svc.CreateAlias(alias, keyA); err != nil {
		t.Fatal(err)
	}
	pol, err := access.ParsePolicy("only-a", []byte(`{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"payment-cryptography:EncryptData","Resource":"`+keyA+`"}]}`))
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
	az := access.NewAuthorizer(dir)
	az.SetAccount("000000000000")
	ts := startServer(t, svc, Config{Authorizer: az, Principal: "app"})
	c := ts.dial(t, nil)
	enc := func(key string) string { return c.call("0001M0001100B" + key + "0010" + "0123456789ABCDEF") }

	want := enc("@" + keyA + ";")
	if want[4:8] != "M100" {
		t.Fatalf("M0 under key A's ARN: %s", want)
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
	if got := enc("@" + alias + ";"); got != want {
		t.Errorf("M0 by alias re-pointed after authorization: %s; want the answer under the authorized key A, %s", got, want)
	}
	if n := repointed.Load(); n != 1 {
		t.Fatalf("the hook ran %d times", n)
	}
	if got := enc("@" + alias + ";"); got[4:8] != "M1"+codeNotStored {
		t.Errorf("M0 by alias now naming key B: %s; want M1%s", got, codeNotStored)
	}
}
