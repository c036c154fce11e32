package access

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"payhsm/keystore"
)

type memMeta map[string][]byte

func (m memMeta) GetMeta(n string) ([]byte, error) {
	if v, ok := m[n]; ok {
		return bytes.Clone(v), nil
	}
	return nil, fmt.Errorf("meta %s: %w", n, keystore.ErrNotFound)
}
func (m memMeta) PutMeta(n string, v []byte) error { m[n] = bytes.Clone(v); return nil }
func (m memMeta) MetaNames(p string) ([]string, error) {
	var out []string
	for n := range m {
		if strings.HasPrefix(n, p) {
			out = append(out, n)
		}
	}
	return out, nil
}

// xorSealer is a test sealer: it checks the associated data like an AEAD.
type xorSealer struct{}

func (xorSealer) Seal(pt, aad []byte) ([]byte, error) {
	out := append(append([]byte{}, aad...), 0xff)
	for _, b := range pt {
		out = append(out, b^0x5a)
	}
	return out, nil
}
func (xorSealer) Unseal(ct, aad []byte) ([]byte, error) {
	if !bytes.HasPrefix(ct, append(append([]byte{}, aad...), 0xff)) {
		return nil, errors.New("aad mismatch")
	}
	ct = ct[len(aad)+1:]
	out := make([]byte, len(ct))
	for i, b := range ct {
		out[i] = b ^ 0x5a
	}
	return out, nil
}

func TestManagerLifecycle(t *testing.T) {
	meta := memMeta{}
	builtIn, err := BuiltIn("111122223333", map[string]string{"AKIADEVDEVDEVDEVDEV0": "devsecret"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(meta, xorSealer{}, "111122223333", builtIn)
	if err != nil {
		t.Fatal(err)
	}
	az := m.Authorizer()
	if s, ok := az.SecretFor("AKIADEVDEVDEVDEVDEV0"); !ok || s != "devsecret" {
		t.Fatal("built-in default principal missing")
	}
	if d := az.Authorize(az.ByName(DefaultPrincipal), MustAction("DeleteKey"), []Resource{{ARN: keyA}}, nil); !d.Allowed {
		t.Fatal("default principal is not all-powerful")
	}
	pol := `{"Version":"2012-10-17","Statement":{"Sid":"D","Effect":"Allow","Action":"payment-cryptography:DecryptData","Resource":"` + keyA + `"}}`
	inf, creds, err := m.Add(AddInput{Name: "issuer", AccessKey: true, HostClients: []string{"issuer-host"}, Policies: map[string]string{"data": pol}})
	if err != nil {
		t.Fatal(err)
	}
	if creds == nil || inf.AccessKeyID != creds.AccessKeyID || inf.ARN != "arn:aws:iam::111122223333:user/issuer" {
		t.Fatalf("add: %+v %+v", inf, creds)
	}
	if bytes.Contains(meta[metaPrefix+"issuer"], []byte(creds.SecretAccessKey)) {
		t.Fatal("the secret is stored in the clear")
	}
	if _, _, err := m.Add(AddInput{Name: "issuer"}); err == nil {
		t.Error("duplicate add accepted")
	}
	if _, _, err := m.Add(AddInput{Name: DefaultPrincipal}); err == nil {
		t.Error("add over a built-in accepted")
	}
	if _, _, err := m.Add(AddInput{Name: "x", Policies: map[string]string{"bad": `{}`}}); err == nil || !strings.Contains(err.Error(), "policy bad") {
		t.Errorf("bad policy: %v", err)
	}
	if _, _, err := m.Add(AddInput{Name: "y", HostClients: []string{"issuer-host"}}); err == nil {
		t.Error("a second principal for the same host client accepted")
	}
	// A new manager over the same store sees the principal (sealed secret round-trips).
	m2, err := NewManager(meta, xorSealer{}, "111122223333", builtIn)
	if err != nil {
		t.Fatal(err)
	}
	p := m2.Authorizer().ByAccessKey(creds.AccessKeyID)
	if p == nil || p.Secret != creds.SecretAccessKey || len(p.Policies()) != 1 {
		t.Fatalf("reloaded principal %+v", p)
	}
	// Rotation: old key stops at once.
	nc, err := m.RotateSecret("issuer")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := az.SecretFor(creds.AccessKeyID); ok {
		t.Error("the old access key still works after rotation")
	}
	if s, ok := az.SecretFor(nc.AccessKeyID); !ok || s != nc.SecretAccessKey {
		t.Error("the new access key does not work")
	}
	if err := m.SetDisabled("issuer", true); err != nil {
		t.Fatal(err)
	}
	if _, ok := az.SecretFor(nc.AccessKeyID); ok {
		t.Error("a disabled principal's key works")
	}
	if err := m.PutPolicy("issuer", "more", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}`); err != nil {
		t.Fatal(err)
	}
	if got := len(az.ByName("issuer").Policies()); got != 2 {
		t.Errorf("%d policies after PutPolicy, want 2", got)
	}
	if err := m.Remove("issuer"); err != nil {
		t.Fatal(err)
	}
	if az.ByName("issuer") != nil {
		t.Error("removed principal still present")
	}
	if err := m.Remove("issuer"); err == nil {
		t.Error("removing twice succeeded")
	}
	if _, _, err := m.Add(AddInput{Name: "issuer"}); err != nil {
		t.Errorf("re-adding a removed principal: %v", err)
	}
	if err := m.SetDisabled(DefaultPrincipal, true); err == nil {
		t.Error("changing a built-in principal succeeded")
	}
	// A record moved onto another principal's name does not unseal.
	if _, _, err := m.Add(AddInput{Name: "issuer2", AccessKey: true}); err != nil {
		t.Fatal(err)
	}
	meta[metaPrefix+"thief"] = bytes.Replace(meta[metaPrefix+"issuer2"], []byte(`"name":"issuer2"`), []byte(`"name":"thief"`), 1)
	if _, err := NewManager(meta, xorSealer{}, "111122223333", builtIn); err == nil || !strings.Contains(err.Error(), "unseal") {
		t.Errorf("a moved record loaded: %v", err)
	}
}

// TestManagerOtherAccount: a principal added in another account keeps it
// across a reload, and the Manager's Authorizer knows the appliance's
// account (an operation on no key is another account's principal's to ask
// only in its own account).
func TestManagerOtherAccount(t *testing.T) {
	meta := memMeta{}
	m, err := NewManager(meta, xorSealer{}, "111122223333", nil)
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]string{"all": `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`}
	if _, _, err := m.Add(AddInput{Name: "partner", Account: "444455556666", Policies: all}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Add(AddInput{Name: "bad", Account: "4444", Policies: all}); err == nil || !strings.Contains(err.Error(), "must be 12 digits") {
		t.Errorf("a malformed account: %v", err)
	}
	m2, err := NewManager(meta, xorSealer{}, "111122223333", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := m2.Authorizer().ByName("partner")
	if p == nil || p.ARN() != "arn:aws:iam::444455556666:user/partner" {
		t.Fatalf("reloaded partner: %+v", p)
	}
	if d := m2.Authorizer().Authorize(p, MustAction("ListKeys"), nil, nil); d.Allowed || !d.CrossAccount {
		t.Errorf("another account's ListKeys: %+v", d)
	}
}
