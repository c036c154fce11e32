package ops_test

import (
	"fmt"
	"testing"

	"payhsm/fault"
	"payhsm/hsm/custody"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

const testIMK = "0123456789ABCDEFFEDCBA9876543210" // KCV 08D7B4, the key of the guide's EMV examples

func cardKeys(t testing.TB, svc *ops.Service) (cvk, imkAC, imkCVC3, cvkGenOnly string) {
	sym := func(u keyspec.KeyUsage, m keyspec.ModesOfUse, k string) string {
		return opstest.Import(t, svc, keyspec.Attributes{Usage: u, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key, Modes: m}, k)
	}
	cvk = sym(keyspec.C0, keyspec.ModesOfUse{Generate: true, Verify: true}, testIMK)
	imkAC = sym(keyspec.E0, keyspec.ModesOfUse{DeriveKey: true}, testIMK)
	imkCVC3 = sym(keyspec.E4, keyspec.ModesOfUse{DeriveKey: true}, "01234567899876543210012345678998")
	cvkGenOnly = sym(keyspec.C0, keyspec.ModesOfUse{Generate: true}, testIMK)
	return
}

// Transaction data of pyemv's CVN tests: 9F02 9F03 9F1A 95 5F2A 9A 9C 9F37 82 9F36.
const cvnData = "000000004000" + "000000000000" + "0124" + "8000048000" + "0124" + "191105" + "01" + "52BF4585" + "1800" + "001C"

func TestCardAndEMVThroughService(t *testing.T) {
	svc := opstest.New(t)
	cvk, imkAC, imkCVC3, cvkGenOnly := cardKeys(t, svc)

	t.Run("CVV known answers", func(t *testing.T) {
		for _, c := range []struct {
			src  string
			kind ops.CardValidationKind
			sc   string
			want string
		}{
			// Visa CVV worked example (CVK-A 0123456789ABCDEF, CVK-B FEDCBA9876543210).
			{"visa example", ops.CardCVV1, "101", "561"},
			// The same with ValidationDataLength 4 and 5 (hsm/cardverify
			// TestCVVKnownAnswers: computed with OpenSSL).
			{"visa example, 4 digits", ops.CardCVV1, "101", "5614"},
			{"visa example, 5 digits", ops.CardCVV1, "101", "56149"},
		} {
			in := ops.CardValidationInput{KeyIdentifier: cvk, PAN: "4123456789012345", Kind: c.kind,
				ExpiryDate: "8701", ServiceCode: c.sc, Length: len(c.want)}
			r, err := svc.GenerateCardValidationData(in)
			if err != nil || r.Value != c.want || r.KCV != "08D7B4" {
				t.Fatalf("%s: %+v %v", c.src, r, err)
			}
			if _, err := svc.VerifyCardValidationData(in, c.want); err != nil {
				t.Fatalf("%s verify: %v", c.src, err)
			}
		}
	})

	t.Run("CVV2 and iCVV generate→verify, any other value fails", func(t *testing.T) {
		for _, in := range []ops.CardValidationInput{
			{KeyIdentifier: cvk, PAN: "171234567890123", Kind: ops.CardCVV2, ExpiryDate: "0123"},
			{KeyIdentifier: cvk, PAN: "171234567890123", Kind: ops.CardCVV1, ExpiryDate: "1127", ServiceCode: "999"},
		} {
			r, err := svc.GenerateCardValidationData(in)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 1000; i++ {
				v := fmt.Sprintf("%03d", i)
				_, err := svc.VerifyCardValidationData(in, v)
				if v == r.Value && err != nil {
					t.Fatalf("own value rejected: %v", err)
				}
				if v != r.Value {
					f := fault.As(err)
					if f == nil || f.Kind != fault.VerificationFailed || f.Reason != fault.ReasonInvalidValidationData {
						t.Fatalf("value %s: %v", v, err)
					}
				}
			}
			other := in
			other.ExpiryDate = "0223"
			if _, err := svc.VerifyCardValidationData(other, r.Value); kindOf(err) != fault.VerificationFailed {
				// 1 in 1000 chance of a collision for a fixed pair; this pair does not collide.
				t.Fatalf("other expiry %+v value %s: %v", other, r.Value, err)
			}
		}
	})

	t.Run("DCVC3 known answer", func(t *testing.T) {
		// knovichikhin/pyemv tests/test_cvv_hsm.py test_generate_cvc3_track2.
		in := ops.CardValidationInput{KeyIdentifier: imkCVC3, PAN: "5123456789012345", Kind: ops.CardDynamicCode,
			PSN: "00", ATC: hb("005E"), UN: hb("00000899"), TrackData: hb("5123456789012345D35121010000000000000F")}
		r, err := svc.GenerateCardValidationData(in)
		if err != nil || r.Value != "488" {
			t.Fatalf("%+v %v", r, err)
		}
		if _, err := svc.VerifyCardValidationData(in, "488"); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.VerifyCardValidationData(in, "489"); reasonOf(err) != fault.ReasonInvalidValidationData {
			t.Fatalf("wrong DCVC3: %v", err)
		}
		// The guide: "The service expects a 3 digit DCVC3" (29488 in full).
		if _, err := svc.VerifyCardValidationData(in, "29488"); !isAbout(err, at{fault.SubjectValidationData, fault.SideNone}) {
			t.Fatalf("5-digit DCVC3: %v", err)
		}
	})

	t.Run("key separation", func(t *testing.T) {
		cvv := ops.CardValidationInput{PAN: "4123456789012345", Kind: ops.CardCVV1, ExpiryDate: "8701", ServiceCode: "101"}
		for _, c := range []struct {
			name string
			run  func() error
		}{
			{"ARQC key for CVV", func() error {
				in := cvv
				in.KeyIdentifier = imkAC
				_, err := svc.GenerateCardValidationData(in)
				return err
			}},
			{"generate-only CVK verifies", func() error {
				in := cvv
				in.KeyIdentifier = cvkGenOnly
				_, err := svc.VerifyCardValidationData(in, "561")
				return err
			}},
			{"CVK for DCVC3", func() error {
				in := ops.CardValidationInput{KeyIdentifier: cvk, PAN: "5123456789012345", Kind: ops.CardDynamicCode, PSN: "00", ATC: hb("005E"),
					UN: hb("00000899"), TrackData: hb("5123")}
				_, err := svc.GenerateCardValidationData(in)
				return err
			}},
			{"CVK for ARQC", func() error {
				_, err := svc.VerifyAuthRequestCryptogram(ops.AuthRequestCryptogramInput{KeyIdentifier: cvk, TransactionData: hb(cvnData),
					MajorKeyMode: ops.EmvOptionA, Session: ops.EMVSession{Scheme: ops.EmvVisa, PAN: "1234567890123456", PSN: "00"}},
					hb("29CCA15AE665FA2E"), nil)
				return err
			}},
		} {
			if err := c.run(); kindOf(err) != fault.Validation {
				t.Errorf("%s: %v", c.name, err)
			}
		}
		if _, err := svc.GenerateCardValidationData(ops.CardValidationInput{KeyIdentifier: cvkGenOnly, PAN: "4123456789012345",
			Kind: ops.CardCVV1, ExpiryDate: "8701", ServiceCode: "101"}); err != nil {
			t.Errorf("generate-only CVK cannot generate: %v", err)
		}
	})

	t.Run("ARQC and ARPC known answers", func(t *testing.T) {
		for _, c := range []struct {
			src        string
			mode       ops.EmvOption
			sess       ops.EMVSession
			data, arqc string
			arpc       *ops.ARPCRequest
			arpcWant   string
		}{
			// pyemv tests/test_cvn_hsm.py test_visa_cvn10 (data ‖ CVR, zero-padded).
			{"pyemv CVN10", ops.EmvOptionA, ops.EMVSession{Scheme: ops.EmvVisa, PAN: "1234567890123456", PSN: "00"},
				cvnData + "03A06010", "29CCA15AE665FA2E", &ops.ARPCRequest{Method: 1, AuthResponseCode: hb("3030")}, "28993816AFAE4AEB"},
			// pyemv tests/test_cvn_hsm.py test_visa_cvn18 (data ‖ IAD, ISO 9797-1 method 2 padded by the caller).
			{"pyemv CVN18", ops.EmvOptionB, ops.EMVSession{Scheme: ops.EmvCommon, PAN: "1234567890123456", PSN: "00", ATC: hb("001C")},
				cvnData + "06011203A0B800" + "80", "7A788EA6B8A3E733", &ops.ARPCRequest{Method: 2, CardStatusUpdate: hb("00000000")}, "9AF514C1"},
			// pyemv tests/test_cvn_hsm.py test_mastercard_cvn16 (Mastercard SKD;
			// ARPC method 1 under the ICC master key: emv_arpc_test.go).
			{"pyemv CVN16", ops.EmvOptionA, ops.EMVSession{Scheme: ops.EmvMastercard, PAN: "1234567890123456", PSN: "00", ATC: hb("001C"), UN: hb("ABCDEF12")},
				mcData + "A00003220000" + "80", "24CCF3DEE3158C70", &ops.ARPCRequest{Method: 1, AuthResponseCode: hb("0010")}, "73F6BBF389A6586C"},
			// The user guide's Visa CVN10 example (key KCV 08D7B4 = 0123456789ABCDEFFEDCBA9876543210),
			// transaction data of its "ISO 9797 Method 1 Padding" example.
			{"guide CVN10", ops.EmvOptionA, ops.EMVSession{Scheme: ops.EmvVisa, PAN: "9137631040001422", PSN: "01"},
				"00000000170000000000000008400080008000084016051700000000093800000B03011203000000", "D791093C8A921769", nil, ""},
		} {
			in := ops.AuthRequestCryptogramInput{KeyIdentifier: imkAC, TransactionData: hb(c.data), MajorKeyMode: c.mode, Session: c.sess}
			g, err := svc.GenerateAuthRequestCryptogram(in)
			if err != nil || hx(g.Cryptogram) != c.arqc {
				t.Fatalf("%s: generate %+v %v", c.src, g, err)
			}
			r, err := svc.VerifyAuthRequestCryptogram(in, hb(c.arqc), c.arpc)
			if err != nil || hx(r.Cryptogram) != c.arpcWant || r.KCV != "08D7B4" {
				t.Fatalf("%s: verify %+v %v", c.src, r, err)
			}
			bad := hb(c.arqc)
			bad[7] ^= 1
			if _, err := svc.VerifyAuthRequestCryptogram(in, bad, nil); reasonOf(err) != fault.ReasonInvalidAuthCryptogram {
				t.Fatalf("%s: wrong ARQC: %v", c.src, err)
			}
			in.TransactionData = hb("01" + c.data[2:])
			if _, err := svc.VerifyAuthRequestCryptogram(in, hb(c.arqc), nil); reasonOf(err) != fault.ReasonInvalidAuthCryptogram {
				t.Fatalf("%s: other data: %v", c.src, err)
			}
		}
	})

	t.Run("every session scheme: generate→verify", func(t *testing.T) {
		for _, sess := range []ops.EMVSession{
			{Scheme: ops.EmvCommon, ATC: hb("000B")}, {Scheme: ops.EmvMastercard, ATC: hb("000B"), UN: hb("12345678")},
			{Scheme: ops.EmvEMV2000, ATC: hb("000B")}, {Scheme: ops.EmvAmex}, {Scheme: ops.EmvVisa}, {Scheme: ops.EmvUnionPay, ATC: hb("000B")},
		} {
			sess.PAN, sess.PSN = "9137631040001422", "01"
			in := ops.AuthRequestCryptogramInput{KeyIdentifier: imkAC, TransactionData: hb("00000000170000000000000008400080008000084016051700000000093800000B1F220103000000"),
				MajorKeyMode: ops.EmvOptionB, Session: sess}
			g, err := svc.GenerateAuthRequestCryptogram(in)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := svc.VerifyAuthRequestCryptogram(in, g.Cryptogram, &ops.ARPCRequest{Method: 2, CardStatusUpdate: hb("12345678"), ProprietaryAuthenticationData: hb("01")}); err != nil {
				t.Fatalf("scheme %d: %v", sess.Scheme, err)
			}
			other := in
			other.Session.PSN = "02"
			if _, err := svc.VerifyAuthRequestCryptogram(other, g.Cryptogram, nil); kindOf(err) != fault.VerificationFailed {
				t.Fatalf("scheme %d other PSN: %v", sess.Scheme, err)
			}
		}
	})

	t.Run("no PKCS#11 call per operation", func(t *testing.T) {
		in := ops.CardValidationInput{KeyIdentifier: cvk, PAN: "171234567890123", Kind: ops.CardCVV2, ExpiryDate: "0123"}
		arqc := ops.AuthRequestCryptogramInput{KeyIdentifier: imkAC, TransactionData: hb(cvnData + "06011203A0B800" + "80"), MajorKeyMode: ops.EmvOptionB,
			Session: ops.EMVSession{Scheme: ops.EmvCommon, PAN: "1234567890123456", PSN: "00", ATC: hb("001C")}}
		r, _ := svc.GenerateCardValidationData(in)
		before := custody.TokenOperations()
		for i := 0; i < 200; i++ {
			if _, err := svc.VerifyCardValidationData(in, r.Value); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.VerifyAuthRequestCryptogram(arqc, hb("7A788EA6B8A3E733"), nil); err != nil {
				t.Fatal(err)
			}
		}
		if n := custody.TokenOperations() - before; n != 0 {
			t.Fatalf("%d PKCS#11 calls for 400 operations", n)
		}
	})
}

func BenchmarkVerifyCVV2(b *testing.B) {
	svc := opstest.New(b)
	cvk, _, _, _ := cardKeys(b, svc)
	in := ops.CardValidationInput{KeyIdentifier: cvk, PAN: "171234567890123", Kind: ops.CardCVV2, ExpiryDate: "0123"}
	r, err := svc.GenerateCardValidationData(in)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := svc.VerifyCardValidationData(in, r.Value); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyARQCCVN18(b *testing.B) {
	svc := opstest.New(b)
	_, imkAC, _, _ := cardKeys(b, svc)
	in := ops.AuthRequestCryptogramInput{KeyIdentifier: imkAC, TransactionData: hb(cvnData + "06011203A0B800" + "80"), MajorKeyMode: ops.EmvOptionB,
		Session: ops.EMVSession{Scheme: ops.EmvCommon, PAN: "1234567890123456", PSN: "00", ATC: hb("001C")}}
	arqc := hb("7A788EA6B8A3E733")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := svc.VerifyAuthRequestCryptogram(in, arqc, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// kindOf is fault.KindOf that reports success as an impossible kind.
func kindOf(err error) fault.Kind {
	if err == nil {
		return -1
	}
	return fault.KindOf(err)
}

func reasonOf(err error) string {
	if err == nil {
		return "success"
	}
	return fault.As(err).Reason
}
