package ops_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"payhsm/ops"
)

// TestRequestsMaskPAN: every request type that carries a PAN prints it
// masked, with every verb a log line or error would use, also when nested
// in another value or wrapped in an error.
func TestRequestsMaskPAN(t *testing.T) {
	t.Parallel()
	const pan = "4761739001010119"
	const masked = "476173******0119"
	for _, v := range []any{
		ops.PinBlockSpec{Format: ops.PinFormatISO0, PAN: pan},
		ops.GeneratePinInput{PAN: pan},
		ops.VerifyPinInput{PAN: pan},
		ops.CardValidationInput{PAN: pan},
		ops.EMVSession{PAN: pan},
		ops.EmvPinChangeDerivation{PAN: pan},
		ops.TranslatePinInput{Incoming: ops.PinBlockSpec{PAN: pan}, Outgoing: ops.PinBlockSpec{PAN: pan}},
		ops.AuthRequestCryptogramInput{Session: ops.EMVSession{PAN: pan}},
	} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			out := fmt.Sprintf(verb, v)
			wrapped := fmt.Errorf("request %v: %w", v, errors.New("x")).Error()
			for _, s := range []string{out, wrapped} {
				if strings.Contains(s, pan) {
					t.Errorf("%T with %s shows the PAN: %s", v, verb, s)
				}
			}
			if !strings.Contains(out, masked) {
				t.Errorf("%T with %s: %s, want the masked PAN %s", v, verb, out, masked)
			}
		}
	}
}
