package ops_test

import (
	"errors"
	"testing"

	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/keystore"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// TestBlockHeaderIsTheSourceOfTruth: a key record that disagrees with the
// authenticated header of its key block (here written through the store,
// as a bug would, so that the record itself authenticates) is a
// record-integrity failure wherever the key is opened — never a silent
// choice of one side. In particular an exportability flag set in the record
// of a key whose block says N does not let it leave, and one cleared does
// not hide the disagreement either.
func TestBlockHeaderIsTheSourceOfTruth(t *testing.T) {
	cvk := xSym(keyspec.C0, keyspec.TDES2Key, keyspec.ModesOfUse{Generate: true, Verify: true})
	dek := xSym(keyspec.D0, keyspec.AES128, xMEDWU)
	for _, tc := range []struct {
		name       string
		attrs      keyspec.Attributes
		exportable bool
		edit       func(*keystore.Key)
	}{
		{"exportable set on a non-exportable key", dek, false, func(k *keystore.Key) { k.Exportable = true }},
		{"exportable cleared on an exportable key", dek, true, func(k *keystore.Key) { k.Exportable = false }},
		{"usage", cvk, true, func(k *keystore.Key) { k.Attributes.Usage = keyspec.V2 }},
		{"algorithm", cvk, true, func(k *keystore.Key) { k.Attributes.Algorithm = keyspec.TDES3Key }},
		{"modes of use", cvk, true, func(k *keystore.Key) { k.Attributes.Modes = keyspec.ModesOfUse{Generate: true} }},
		{"another key's block", cvk, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc, store := opstest.NewWithStore(t)
			k, err := svc.CreateKey(ops.CreateKeyInput{Attributes: tc.attrs, Exportable: tc.exportable})
			if err != nil {
				t.Fatal(err)
			}
			other, err := svc.CreateKey(ops.CreateKeyInput{Attributes: tc.attrs, Exportable: tc.exportable})
			if err != nil {
				t.Fatal(err)
			}
			kek, err := svc.CreateKey(ops.CreateKeyInput{Attributes: xSym(keyspec.K1, keyspec.AES256, xMEDWU), Exportable: true})
			if err != nil {
				t.Fatal(err)
			}
			id := k.ARN[len(k.ARN)-16:]
			edit := tc.edit
			if edit == nil {
				o, err := store.GetKey(other.ARN[len(other.ARN)-16:])
				if err != nil {
					t.Fatal(err)
				}
				edit = func(k *keystore.Key) { k.KeyBlock = o.KeyBlock }
			}
			if _, err := store.UpdateKey(id, func(k *keystore.Key) error { edit(k); return nil }); err != nil {
				t.Fatal(err)
			}
			wantIntegrity := func(what string, err error) {
				t.Helper()
				f := fault.As(err)
				if err == nil || f.Kind != fault.Internal || f.Violation != fault.ViolationRecordIntegrity ||
					fault.ClientMessage(err) != fault.RecordIntegrityMessage {
					t.Errorf("%s: %v (kind %v, violation %q), want the record-integrity fault", what, err, f.Kind, f.Violation)
				}
			}
			_, err = svc.Working(k.ARN, fault.SubjectKey, fault.SideNone)
			wantIntegrity("Working", err)
			_, err = svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: k.ARN, Tr31: &ops.ExportTr31{WrappingKeyIdentifier: kek.ARN}})
			wantIntegrity("ExportKey", err)
			if _, err := svc.Working(other.ARN, fault.SubjectKey, fault.SideNone); err != nil {
				t.Errorf("the other key: %v", err)
			}
		})
	}
}

// TestIntegrityFaultIsFresh: every integrity failure the service returns is
// a fault of its own, not the store's shared sentinel, which a caller that
// annotates its fault would otherwise change for everyone.
func TestIntegrityFaultIsFresh(t *testing.T) {
	svc, store := opstest.NewWithStore(t)
	dek := xSym(keyspec.D0, keyspec.AES128, xMEDWU)
	k, err := svc.CreateKey(ops.CreateKeyInput{Attributes: dek})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.UpdateKey(k.ARN[len(k.ARN)-16:], func(k *keystore.Key) error { k.Exportable = true; return nil }); err != nil {
		t.Fatal(err)
	}
	_, err = svc.Working(k.ARN, fault.SubjectKey, fault.SideNone)
	var f *fault.Error
	if !errors.As(err, &f) || f == keystore.ErrIntegrity {
		t.Fatalf("%v", err)
	}
	if keystore.ErrIntegrity.Subject != fault.SubjectNone {
		t.Errorf("the sentinel was changed: %+v", keystore.ErrIntegrity)
	}
}
