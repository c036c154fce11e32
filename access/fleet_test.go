package access

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// blockSealer is a test BlockSealer: SealBlock keeps its "data key" in the
// key block (xorSealer underneath, the block as part of the associated data).
type blockSealer struct{ xorSealer }

func (blockSealer) SealBlock(pt, aad []byte) (string, []byte, error) {
	ct, err := xorSealer{}.Seal(pt, append([]byte("block\x00"), aad...))
	return "D0000K0AB00N0000", ct, err
}

func (blockSealer) UnsealBlock(block string, ct, aad []byte) ([]byte, error) {
	if block != "D0000K0AB00N0000" {
		return nil, errors.New("unknown block")
	}
	return xorSealer{}.Unseal(ct, append([]byte("block\x00"), aad...))
}

// TestFleetSealing: a Manager with a BlockSealer (a fleet node) seals new
// secrets with it and keeps the key block in the record's "keyBlock"
// member (which a main key rotation re-wraps); it still reads a secret
// sealed before under the region main key; a Manager without one refuses a
// fleet-sealed record instead of misreading it.
func TestFleetSealing(t *testing.T) {
	meta := memMeta{}
	// Before the appliance became a fleet node: sealed under the region main key.
	single, err := NewManager(meta, xorSealer{}, "111122223333", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, old, err := single.Add(AddInput{Name: "before", AccessKey: true})
	if err != nil {
		t.Fatal(err)
	}
	fleet, err := NewManager(meta, blockSealer{}, "111122223333", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, creds, err := fleet.Add(AddInput{Name: "after", AccessKey: true})
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(meta[metaPrefix+"after"], &rec); err != nil {
		t.Fatal(err)
	}
	if rec["keyBlock"] != "D0000K0AB00N0000" {
		t.Errorf("fleet-sealed record's keyBlock %v", rec["keyBlock"])
	}
	if bytes.Contains(meta[metaPrefix+"after"], []byte(creds.SecretAccessKey)) {
		t.Fatal("the secret is stored in the clear")
	}
	if _, ok := meta[metaPrefix+"before"]; !ok || bytes.Contains(meta[metaPrefix+"before"], []byte("keyBlock")) {
		t.Errorf("the single appliance's record: %s", meta[metaPrefix+"before"])
	}
	again, err := NewManager(meta, blockSealer{}, "111122223333", nil)
	if err != nil {
		t.Fatal(err)
	}
	az := again.Authorizer()
	for _, c := range []*Credentials{old, creds} {
		if s, ok := az.SecretFor(c.AccessKeyID); !ok || s != c.SecretAccessKey {
			t.Errorf("secret of %s after reload: %q %v", c.AccessKeyID, s, ok)
		}
	}
	if _, err := NewManager(meta, xorSealer{}, "111122223333", nil); err == nil {
		t.Error("a manager without a fleet sealer loaded a fleet-sealed secret")
	}
}
