package opstest

import (
	"bytes"
	"errors"
	"testing"

	"payhsm/keyspec"
	"payhsm/ops"
)

// TestCreateKeyAuditOutbox: CreateKey's AuditOutbox hook gets the new key's
// ARN, and what it returns is stored in the key's own transaction; a hook
// that fails fails the creation, which then stores nothing.
func TestCreateKeyAuditOutbox(t *testing.T) {
	t.Parallel()
	svc, store := NewWithStore(t)
	attrs := keyspec.Attributes{Usage: keyspec.M3, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
		Modes: keyspec.ModesOfUse{Generate: true, Verify: true}}
	var gotARN string
	k, err := svc.CreateKey(ops.CreateKeyInput{Attributes: attrs, AuditOutbox: func(arn string) (string, []byte, error) {
		gotARN = arn
		return "audit-outbox/req-1", []byte(`{"entry":"` + arn + `"}`), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if gotARN != k.ARN {
		t.Errorf("the hook got %q for key %q", gotARN, k.ARN)
	}
	b, err := store.GetMeta("audit-outbox/req-1")
	if err != nil || !bytes.Equal(b, []byte(`{"entry":"`+k.ARN+`"}`)) {
		t.Errorf("staged meta %q, %v", b, err)
	}

	before, _, err := svc.ListKeys("", ops.Page{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = svc.CreateKey(ops.CreateKeyInput{Attributes: attrs, AuditOutbox: func(string) (string, []byte, error) {
		return "", nil, errors.New("no trail")
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
	if names, err := store.MetaNames("audit-outbox/"); err != nil || len(names) != 1 {
		t.Errorf("staged metas %v, %v", names, err)
	}
}
