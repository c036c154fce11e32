package ops_test

import (
	"strings"
	"testing"

	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// The card validation types whose algorithms are scheme-proprietary and
// unpublished (CardHolderVerificationValue, Discover dCVC) answer a
// ValidationException naming the type and the reason, with a key of the
// right usage, for generate and verify alike; a key of the wrong usage is
// still refused by key separation first. (The Visa dCVV and the Amex CSCs
// are implemented: card_dcvv_test.go, card_amex_test.go.)
func TestUnsupportedCardKinds(t *testing.T) {
	svc := opstest.New(t)
	sym := func(u keyspec.KeyUsage, m keyspec.ModesOfUse) string {
		return opstest.Import(t, svc, keyspec.Attributes{Usage: u, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key, Modes: m}, testIMK)
	}
	csc := sym(keyspec.C0, keyspec.ModesOfUse{Generate: true, Verify: true})
	e6 := sym(keyspec.E6, keyspec.ModesOfUse{DeriveKey: true})
	for _, c := range []struct {
		kind ops.CardValidationKind
		key  string
		name string
	}{
		{ops.CardHolderVerification, e6, "CardHolderVerificationValue"},
		{ops.CardDiscoverDynamicCode, e6, "DiscoverDynamicCardVerificationCode"},
	} {
		in := ops.CardValidationInput{KeyIdentifier: c.key, PAN: "344131234567848", Kind: c.kind,
			ExpiryDate: "1224", ServiceCode: "000", PSN: "00", ATC: hb("0001"), UN: hb("00000001")}
		_, err := svc.VerifyCardValidationData(in, "1234")
		if f := fault.As(err); f == nil || f.Kind != fault.Validation || !strings.Contains(f.Message, c.name) || !strings.Contains(f.Message, "not published") {
			t.Errorf("%s verify: %v", c.name, err)
		}
		if c.kind != ops.CardDiscoverDynamicCode {
			if _, err := svc.GenerateCardValidationData(in); kindOf(err) != fault.Validation || !strings.Contains(err.Error(), "not published") {
				t.Errorf("%s generate: %v", c.name, err)
			}
		}
		wrong := in
		wrong.KeyIdentifier = map[string]string{csc: e6, e6: csc}[c.key]
		if _, err := svc.VerifyCardValidationData(wrong, "1234"); kindOf(err) != fault.Validation || !strings.Contains(err.Error(), "KeyUsage") {
			t.Errorf("%s wrong key: %v", c.name, err)
		}
	}
}
