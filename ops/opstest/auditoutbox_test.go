package opstest

import (
	"errors"
	"strings"
	"testing"

	"payhsm/keyspec"
	"payhsm/ops"
)

// TestCreateKeyAuditOutbox: CreateKey's AuditOutbox hook gets the new key's
// ARN, and what it returns is stored, authenticated, in the key's record
// (CreatedBy); a hook that fails fails the creation, which then stores
// nothing.
func TestCreateKeyAuditOutbox(t *testing.T) {
	t.Parallel()
	svc, store := NewWithStore(t)
	attrs := keyspec.Attributes{Usage: keyspec.M3, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
		Modes: keyspec.ModesOfUse{Generate: true, Verify: true}}
	var gotARN string
	k, err := svc.CreateKey(ops.CreateKeyInput{Attributes: attrs, AuditOutbox: func(arn string) (string, error) {
		gotARN = arn
		return "AKPHTEST 127.0.0.1:5555 req-1", nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if gotARN != k.ARN {
		t.Errorf("the hook got %q for key %q", gotARN, k.ARN)
	}
	rec, err := store.GetKey(keyID(k.ARN))
	if err != nil || rec.CreatedBy != "AKPHTEST 127.0.0.1:5555 req-1" {
		t.Errorf("stored CreatedBy %q, %v", rec.CreatedBy, err)
	}
	plain, err := svc.CreateKey(ops.CreateKeyInput{Attributes: attrs})
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := store.GetKey(keyID(plain.ARN)); err != nil || rec.CreatedBy != "" {
		t.Errorf("a key made without the hook: CreatedBy %q, %v", rec.CreatedBy, err)
	}

	before, _, err := svc.ListKeys("", ops.Page{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = svc.CreateKey(ops.CreateKeyInput{Attributes: attrs, AuditOutbox: func(string) (string, error) {
		return "", errors.New("no trail")
	}})
	if err == nil {
		t.Fatal("a creation whose audit entry failed succeeded")
	}
	after, _, err := svc.ListKeys("", ops.Page{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("a failed creation stored a key: %d keys, then %d", len(before), len(after))
	}
}

// keyID is the key id at the end of a key ARN.
func keyID(arn string) string { return arn[strings.LastIndexByte(arn, '/')+1:] }
