package ops_test

import (
	"testing"

	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// American Express CSC version 1 and 2 (AmexCardSecurityCodeVersion1/2),
// and the guide's iCSC (version 2, service code 999 or 702) and 3-D Secure
// AEVV (version 2 with the unpredictable number as the expiry date and the
// authentication results and second-factor codes as the service code, 3
// digits). The values and their provenance are hsm/cardverify
// TestAmexCSCKnownAnswers: only the first row is corroborated by an
// independent public source; the others are computed independently from
// the one public description (docs/card-algorithms.md).
func TestAmexCSC(t *testing.T) {
	svc := opstest.New(t)
	c0 := func(a keyspec.Algorithm, m keyspec.ModesOfUse, k string) string {
		return opstest.Import(t, svc, keyspec.Attributes{Usage: keyspec.C0, Class: keyspec.Symmetric, Algorithm: a, Modes: m}, k)
	}
	gv := keyspec.ModesOfUse{Generate: true, Verify: true}
	corroborated := c0(keyspec.TDES2Key, gv, "1234567890ABCDEF1234567890ABCDEF")
	guide := c0(keyspec.TDES2Key, gv, testIMK)
	three := c0(keyspec.TDES3Key, gv, testIMK+"89ABCDEF01234567")
	genOnly := c0(keyspec.TDES2Key, keyspec.ModesOfUse{Generate: true}, testIMK)
	amex := func(key string, kind ops.CardValidationKind, pan, exp, sc string, n int) ops.CardValidationInput {
		return ops.CardValidationInput{KeyIdentifier: key, PAN: pan, Kind: kind, ExpiryDate: exp, ServiceCode: sc, Length: n}
	}

	t.Run("known answers", func(t *testing.T) {
		for _, c := range []struct {
			src  string
			in   ops.CardValidationInput
			want string
		}{
			{"corroborated CSC-5", amex(corroborated, ops.CardAmexCSC1, "371234567890123", "9912", "", 5), "70954"},
			{"corroborated CSC-4", amex(corroborated, ops.CardAmexCSC1, "371234567890123", "9912", "", 4), "4117"},
			{"corroborated CSC-3", amex(corroborated, ops.CardAmexCSC1, "371234567890123", "9912", "", 3), "283"},
			{"corroborated, default length 3", amex(corroborated, ops.CardAmexCSC1, "371234567890123", "9912", "", 0), "283"},
			{"guide CSC1 inputs", amex(guide, ops.CardAmexCSC1, "344131234567848", "1224", "", 4), "7580"},
			{"guide CSC2 inputs", amex(guide, ops.CardAmexCSC2, "344131234567848", "2412", "000", 4), "5522"},
			{"guide iCSC inputs", amex(guide, ops.CardAmexCSC2, "344131234567848", "1224", "702", 4), "2746"},
			{"guide AEVV inputs", amex(guide, ops.CardAmexCSC2, "344131234567848", "1234", "543", 3), "726"},
			{"TDES_3KEY", amex(three, ops.CardAmexCSC2, "371449635398431", "2612", "999", 5), "56842"},
		} {
			r, err := svc.GenerateCardValidationData(c.in)
			if err != nil || r.Value != c.want {
				t.Fatalf("%s: %+v %v", c.src, r, err)
			}
			if _, err := svc.VerifyCardValidationData(c.in, c.want); err != nil {
				t.Fatalf("%s verify: %v", c.src, err)
			}
			bad := []byte(c.want)
			bad[0] = '0' + (bad[0]-'0'+1)%10
			if _, err := svc.VerifyCardValidationData(c.in, string(bad)); reasonOf(err) != fault.ReasonInvalidValidationData {
				t.Fatalf("%s wrong value: %v", c.src, err)
			}
		}
	})

	t.Run("refusals", func(t *testing.T) {
		for _, c := range []struct {
			name string
			in   ops.CardValidationInput
			subj fault.Subject
		}{
			{"Visa PAN", amex(guide, ops.CardAmexCSC1, "4123456789012345", "1224", "", 4), fault.SubjectPAN},
			{"16-digit 34 PAN", amex(guide, ops.CardAmexCSC1, "3441312345678481", "1224", "", 4), fault.SubjectPAN},
			{"expiry", amex(guide, ops.CardAmexCSC1, "344131234567848", "12245", "", 4), fault.SubjectExpiryDate},
			{"v2 without service code", amex(guide, ops.CardAmexCSC2, "344131234567848", "2412", "", 4), fault.SubjectServiceCode},
			{"6 digits", amex(guide, ops.CardAmexCSC1, "344131234567848", "1224", "", 6), fault.SubjectValidationDataLength},
		} {
			_, err := svc.GenerateCardValidationData(c.in)
			if !isAbout(err, at{c.subj, fault.SideNone}) {
				t.Errorf("%s: %v", c.name, err)
			}
		}
		if _, err := svc.VerifyCardValidationData(amex(genOnly, ops.CardAmexCSC1, "344131234567848", "1224", "", 0), "7580"); kindOf(err) != fault.Validation {
			t.Errorf("generate-only key verifies: %v", err)
		}
		if r, err := svc.GenerateCardValidationData(amex(genOnly, ops.CardAmexCSC1, "344131234567848", "1224", "", 4)); err != nil || r.Value != "7580" {
			t.Errorf("generate-only key cannot generate: %+v %v", r, err)
		}
		e6 := opstest.Import(t, svc, keyspec.Attributes{Usage: keyspec.E6, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
			Modes: keyspec.ModesOfUse{DeriveKey: true}}, testIMK)
		if _, err := svc.GenerateCardValidationData(amex(e6, ops.CardAmexCSC1, "344131234567848", "1224", "", 4)); kindOf(err) != fault.Validation {
			t.Errorf("EMV key accepted: %v", err)
		}
	})
}
