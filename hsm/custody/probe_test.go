package custody_test

import (
	"errors"
	"os"
	"testing"

	"payhsm/hsm/custody"
	"payhsm/hsm/softhsm"
)

// TestProbe: each mistake an operator can make with the token is told apart
// (on SoftHSM2, through crypto11, as in production).
func TestProbe(t *testing.T) {
	if _, err := os.Stat(softhsm.DefaultModule); err != nil {
		t.Skipf("SoftHSM2 is not installed: %v", err)
	}
	tok, err := softhsm.Provision(t.TempDir(), "", "probe", true)
	if err != nil {
		t.Fatal(err)
	}
	mod := custody.PKCS11Module(tok.Module)
	if err := custody.Probe(mod, tok.Label, tok.PIN); err != nil {
		t.Errorf("the right token and PIN: %v", err)
	}
	for _, tc := range []struct {
		name       string
		mod        custody.Module
		label, pin string
		want       error
	}{
		{"unknown label", mod, "no-such-token", tok.PIN, custody.ErrNoToken},
		{"wrong PIN", mod, tok.Label, "wrong-pin-0000", custody.ErrPINRefused},
		{"not a module", custody.PKCS11Module("/etc/hostname"), tok.Label, tok.PIN, custody.ErrModule},
	} {
		if err := custody.Probe(tc.mod, tc.label, tc.pin); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// The token still works after the probes (nothing left open, the PIN not locked).
	if err := custody.Probe(mod, tok.Label, tok.PIN); err != nil {
		t.Errorf("after the probes: %v", err)
	}
}
