package ops_test

import (
	"testing"

	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// Issuer master keys of knovichikhin/pyemv tests/test_sm_hsm.py (KCVs
// D2B91C and 08D7B4 there), the card of those tests and the cryptogram
// they use as the common session key's R.
const (
	emvIMKSMC = "11111111111111112222222222222222"
	emvIMKSMI = "0123456789ABCDEFFEDCBA9876543210"
	emvPAN    = "1234567890123456"
	emvPSN    = "01"
	emvR      = "ABCDEF1234567890"
)

func emvCipher(opt, pan, mode, iv string) ops.DataCipher {
	return ops.DataCipher{Emv: &ops.EmvCipher{MajorKeyDerivationMode: opt, PAN: pan, PSN: emvPSN,
		SessionDerivationData: emvR, Mode: mode, IV: iv}}
}

// TestEmvDataKAT: EncryptData/DecryptData with EMV-derived confidentiality
// session keys (ICC master key option A/B, then the EMV common session key
// with R = SessionDerivationData).
func TestEmvDataKAT(t *testing.T) {
	svc := opstest.New(t)
	e1 := opstest.Import(t, svc, sym(keyspec.E1, keyspec.TDES2Key, derive), emvIMKSMC)
	e6 := opstest.Import(t, svc, sym(keyspec.E6, keyspec.TDES2Key, derive), emvIMKSMC)
	e1AC := opstest.Import(t, svc, sym(keyspec.E1, keyspec.TDES2Key, derive), emvIMKSMI)
	for _, tc := range []struct {
		name, key, pt, ct string
		c                 ops.DataCipher
	}{
		// pyemv tests/test_sm_hsm.py test_mastercard_pin_change: PIN block
		// 249999FFFFFFFFFF, one block (CBC, zero IV = ECB).
		{"pyemv mastercard ECB", e1, "249999FFFFFFFFFF", "28367E05DE3381C2", emvCipher("EMV_OPTION_A", emvPAN, "ECB", "")},
		{"pyemv mastercard CBC", e1, "249999FFFFFFFFFF", "28367E05DE3381C2", emvCipher("EMV_OPTION_A", emvPAN, "CBC", "")},
		// test_mastercard_pin_change_12.
		{"pyemv mastercard 12-digit", e1, "2C999999999999FF", "99AD3AF9EB3ECF0C", emvCipher("EMV_OPTION_A", emvPAN, "ECB", "")},
		// test_ccd_pin_change: ISO/IEC 9797-1 method 2 padding, CBC, zero IV (Mode defaults to CBC).
		{"pyemv CCD CBC", e1, "249999FFFFFFFFFF8000000000000000", "28367E05DE3381C29D30A6055A8DEB86", emvCipher("EMV_OPTION_A", emvPAN, "", "")},
		// E6 keys are allowed too; option B of a 16-digit PAN is option A (Book 2 A1.4.2).
		{"E6 option B short PAN", e6, "249999FFFFFFFFFF", "28367E05DE3381C2", emvCipher("EMV_OPTION_B", emvPAN, "ECB", "")},
		// CBC with the guide's example IV: the same keys, computed with
		// openssl des-ede3 (ICC MK, session key, CBC) as a cross-check.
		{"openssl CBC IV", e1, "249999FFFFFFFFFF8000000000000000", "5A3D78FF0AC8690855BB913948008BAE", emvCipher("EMV_OPTION_A", emvPAN, "CBC", "1500000000000999")},
		// Option B, 17-digit PAN: the ICC MK AD406D7F6D7570916D75E5DCAB8CF737 of
		// pyemv pyemv/kd.py's derive_icc_mk_b docstring; session key and
		// encipherment computed with openssl des-ede3.
		{"option B long PAN ECB", e1AC, "249999FFFFFFFFFF", "848D49EC8F775BE4", emvCipher("EMV_OPTION_B", "12345678901234567", "ECB", "")},
		{"option B long PAN CBC", e1AC, "249999FFFFFFFFFF8000000000000000", "01B6C9B7A0D627BD8D247442DBAAD500", emvCipher("EMV_OPTION_B", "12345678901234567", "CBC", "0102030405060708")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: tc.key, PlainText: tc.pt, Attributes: tc.c})
			if err != nil {
				t.Fatal(err)
			}
			if out.Data != tc.ct || out.KeyARN != tc.key || out.KCV == "" {
				t.Fatalf("EncryptData = %+v, want %s", out, tc.ct)
			}
			back, err := svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: tc.key, CipherText: tc.ct, Attributes: tc.c})
			if err != nil || back.Data != tc.pt {
				t.Fatalf("DecryptData = %+v, %v", back, err)
			}
		})
	}
	// The session key depends on every input.
	base, _ := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: e1, PlainText: "249999FFFFFFFFFF", Attributes: emvCipher("EMV_OPTION_A", emvPAN, "ECB", "")})
	for name, c := range map[string]ops.DataCipher{
		"PSN": {Emv: &ops.EmvCipher{MajorKeyDerivationMode: "EMV_OPTION_A", PAN: emvPAN, PSN: "02", SessionDerivationData: emvR, Mode: "ECB"}},
		"PAN": {Emv: &ops.EmvCipher{MajorKeyDerivationMode: "EMV_OPTION_A", PAN: "1234567890123457", PSN: emvPSN, SessionDerivationData: emvR, Mode: "ECB"}},
		"R":   {Emv: &ops.EmvCipher{MajorKeyDerivationMode: "EMV_OPTION_A", PAN: emvPAN, PSN: emvPSN, SessionDerivationData: "ABCDEF1234567891", Mode: "ECB"}},
	} {
		out, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: e1, PlainText: "249999FFFFFFFFFF", Attributes: c})
		if err != nil || out.Data == base.Data {
			t.Errorf("changed %s: %+v %v", name, out, err)
		}
	}
}

// TestEmvDataRejects: key separation and request validation of the Emv attributes.
func TestEmvDataRejects(t *testing.T) {
	svc := opstest.New(t)
	e1 := opstest.Import(t, svc, sym(keyspec.E1, keyspec.TDES2Key, derive), emvIMKSMC)
	e2 := opstest.Import(t, svc, sym(keyspec.E2, keyspec.TDES2Key, derive), emvIMKSMI)
	e0 := opstest.Import(t, svc, sym(keyspec.E0, keyspec.TDES2Key, derive), emvIMKSMI)
	d0 := opstest.Import(t, svc, sym(keyspec.D0, keyspec.TDES2Key, encDec), emvIMKSMI)
	e1AES := createKey(t, svc, sym(keyspec.E1, keyspec.AES128, derive))
	ok := emvCipher("EMV_OPTION_A", emvPAN, "ECB", "")
	with := func(f func(e *ops.EmvCipher)) ops.DataCipher {
		e := *ok.Emv
		f(&e)
		return ops.DataCipher{Emv: &e}
	}
	for _, tc := range []struct {
		name, key, pt, field string
		c                    ops.DataCipher
	}{
		{"E2 key", e2, "249999FFFFFFFFFF", "KeyIdentifier", ok},
		{"E0 key", e0, "249999FFFFFFFFFF", "KeyIdentifier", ok},
		{"D0 key", d0, "249999FFFFFFFFFF", "KeyIdentifier", ok},
		{"AES IMK", e1AES, "249999FFFFFFFFFF", "KeyIdentifier", ok},
		{"E1 as a symmetric key", e1, "249999FFFFFFFFFF", "KeyIdentifier", ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: "ECB"}}},
		{"option C", e1, "249999FFFFFFFFFF", "EncryptionAttributes.Emv.MajorKeyDerivationMode", with(func(e *ops.EmvCipher) { e.MajorKeyDerivationMode = "EMV_OPTION_C" })},
		{"PAN letters", e1, "249999FFFFFFFFFF", "EncryptionAttributes.Emv.PrimaryAccountNumber", with(func(e *ops.EmvCipher) { e.PAN = "12345678901234AB" })},
		{"PSN length", e1, "249999FFFFFFFFFF", "EncryptionAttributes.Emv.PanSequenceNumber", with(func(e *ops.EmvCipher) { e.PSN = "1" })},
		{"short R", e1, "249999FFFFFFFFFF", "EncryptionAttributes.Emv.SessionDerivationData", with(func(e *ops.EmvCipher) { e.SessionDerivationData = "ABCD" })},
		{"mode", e1, "249999FFFFFFFFFF", "EncryptionAttributes.Emv.Mode", with(func(e *ops.EmvCipher) { e.Mode = "CFB" })},
		{"IV with ECB", e1, "249999FFFFFFFFFF", "EncryptionAttributes.Emv.InitializationVector", with(func(e *ops.EmvCipher) { e.IV = "0000000000000000" })},
		{"IV length", e1, "249999FFFFFFFFFF", "EncryptionAttributes.Emv.InitializationVector", with(func(e *ops.EmvCipher) { e.Mode, e.IV = "CBC", "00" })},
		{"partial block", e1, "249999FFFFFFFF", "PlainText", ok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: tc.key, PlainText: tc.pt, Attributes: tc.c})
			if f := fault.As(err); f == nil || f.Kind != fault.Validation || f.Field != tc.field {
				t.Fatalf("err = %v (%+v), want Validation on %s", err, f, tc.field)
			}
		})
	}
	// ReEncryptData has no Emv member.
	_, err := svc.ReEncryptData(ops.ReEncryptDataInput{IncomingKeyIdentifier: e1, OutgoingKeyIdentifier: d0, CipherText: "28367E05DE3381C2",
		Incoming: ok, Outgoing: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: "ECB"}}})
	if fault.KindOf(err) != fault.Validation {
		t.Fatalf("ReEncryptData with Emv: %v", err)
	}
}

func emvMacAttrs(mode, ac, atc string) ops.MacAttributes {
	return ops.MacAttributes{EmvMac: &ops.EmvMac{MajorKeyDerivationMode: "EMV_OPTION_A", PAN: emvPAN, PSN: emvPSN,
		SessionKeyDerivationMode: mode, ApplicationCryptogram: ac, ATC: atc}}
}

// TestEmvMacKAT: GenerateMac/VerifyMac with EmvMac (integrity session key,
// ISO/IEC 9797-1 MAC algorithm 3, padding method 2).
func TestEmvMacKAT(t *testing.T) {
	svc := opstest.New(t)
	e2 := opstest.Import(t, svc, sym(keyspec.E2, keyspec.TDES2Key, derive), emvIMKSMI)
	for _, tc := range []struct {
		name, msg, mac string
		a              ops.MacAttributes
	}{
		// pyemv tests/test_sm_hsm.py test_generate_command_mac (common session key, R = ABCDEF1234567890).
		{"pyemv common", "8424000008", "CF323F09A0F6AB9E", emvMacAttrs("EMV_COMMON_SESSION_KEY", emvR, "")},
		// test_mastercard_pin_change: header 8424000210 || enciphered PIN data.
		{"pyemv mastercard", "842400021028367E05DE3381C2", "8C4D10091A093B5B", emvMacAttrs("MASTERCARD_SESSION_KEY", emvR, "")},
		// test_ccd_pin_change.
		{"pyemv CCD", "842400021028367E05DE3381C29D30A6055A8DEB86", "69DA1EE208823022", emvMacAttrs("EMV_COMMON_SESSION_KEY", emvR, "")},
		// test_vis_pin_change: Visa secure-messaging session key from ATC FFFF.
		{"pyemv visa", "8424000210D421231A6FD2F0FAEE671384F0D3A7B9", "F67E37E67B06AB99", emvMacAttrs("VISA", "", "FFFF")},
		// test_vis_change_change_current_pin.
		{"pyemv visa current PIN", "8424000110C29371CC36BA70C1EE671384F0D3A7B9", "6AB3AD15D8B0621A", emvMacAttrs("VISA", "", "FFFF")},
		// Amex secure messaging uses the Visa derivation (emv.SMSessionKey).
		{"amex as visa", "8424000210D421231A6FD2F0FAEE671384F0D3A7B9", "F67E37E67B06AB99", emvMacAttrs("AMEX", "", "FFFF")},
		// UnionPay: SK = DES3(MK)[00..ATC] || DES3(MK)[00..ATC^FFFF], ATC 0001,
		// and the retail MAC, computed with openssl des-ede3 as a cross-check.
		{"openssl unionpay", "84240000080001999E57FD0F47CACE", "2906B442F2AF350A", emvMacAttrs("UNION_PAY", "", "0001")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: e2, MessageData: tc.msg, Attributes: tc.a})
			if err != nil || g.Mac != tc.mac || g.KeyARN != e2 || g.KCV != "08D7B4" {
				t.Fatalf("GenerateMac = %+v, %v; want %s", g, err, tc.mac)
			}
			if _, err := svc.VerifyMac(ops.VerifyMacInput{KeyIdentifier: e2, MessageData: tc.msg, Mac: tc.mac, Attributes: tc.a}); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.VerifyMac(ops.VerifyMacInput{KeyIdentifier: e2, MessageData: tc.msg, Mac: tc.mac[:8], MacLength: 4, Attributes: tc.a}); err != nil {
				t.Fatalf("truncated: %v", err)
			}
			_, err = svc.VerifyMac(ops.VerifyMacInput{KeyIdentifier: e2, MessageData: tc.msg + "00", Mac: tc.mac, Attributes: tc.a})
			if f := fault.As(err); f == nil || f.Kind != fault.VerificationFailed || f.Reason != fault.ReasonInvalidMAC {
				t.Fatalf("altered message: %v", err)
			}
		})
	}
	// EMV 2000 tree: generate/verify round trip (the derivation's vectors are in hsm/emv).
	a := emvMacAttrs("EMV2000", "", "0010")
	g, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: e2, MessageData: "8424000008", Attributes: a})
	if err != nil || len(g.Mac) != 16 {
		t.Fatalf("EMV2000: %+v %v", g, err)
	}
	if _, err := svc.VerifyMac(ops.VerifyMacInput{KeyIdentifier: e2, MessageData: "8424000008", Mac: g.Mac, Attributes: a}); err != nil {
		t.Fatal(err)
	}
}

func TestEmvMacRejects(t *testing.T) {
	svc := opstest.New(t)
	e2 := opstest.Import(t, svc, sym(keyspec.E2, keyspec.TDES2Key, derive), emvIMKSMI)
	e1 := opstest.Import(t, svc, sym(keyspec.E1, keyspec.TDES2Key, derive), emvIMKSMI)
	m3 := opstest.Import(t, svc, sym(keyspec.M3, keyspec.TDES2Key, genVer), emvIMKSMI)
	const f = "GenerationAttributes.EmvMac"
	for _, tc := range []struct {
		name, key, field string
		a                ops.MacAttributes
	}{
		{"E1 key", e1, "KeyIdentifier", emvMacAttrs("EMV_COMMON_SESSION_KEY", emvR, "")},
		{"M3 key", m3, "KeyIdentifier", emvMacAttrs("EMV_COMMON_SESSION_KEY", emvR, "")},
		{"E2 as ISO 9797 key", e2, "KeyIdentifier", ops.MacAttributes{Algorithm: "ISO9797_ALGORITHM3"}},
		{"common with ATC", e2, f + ".SessionKeyDerivationValue", emvMacAttrs("EMV_COMMON_SESSION_KEY", "", "0001")},
		{"visa with AC", e2, f + ".SessionKeyDerivationValue", emvMacAttrs("VISA", emvR, "")},
		{"short AC", e2, f + ".SessionKeyDerivationValue.ApplicationCryptogram", emvMacAttrs("MASTERCARD_SESSION_KEY", "ABCD", "")},
		{"short ATC", e2, f + ".SessionKeyDerivationValue.ApplicationTransactionCounter", emvMacAttrs("EMV2000", "", "1")},
		{"mode", e2, f + ".SessionKeyDerivationMode", emvMacAttrs("JCB", "", "0001")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: tc.key, MessageData: "8424000008", Attributes: tc.a})
			if fl := fault.As(err); fl == nil || fl.Kind != fault.Validation || fl.Field != tc.field {
				t.Fatalf("err = %v (%+v), want Validation on %s", err, fl, tc.field)
			}
		})
	}
}

// FuzzEmvAttributes: any Emv/EmvMac request values give a result or a
// client fault, never a panic or an internal error.
func FuzzEmvAttributes(f *testing.F) {
	svc := opstest.New(f)
	e1 := opstest.Import(f, svc, sym(keyspec.E1, keyspec.TDES2Key, derive), emvIMKSMC)
	e2 := opstest.Import(f, svc, sym(keyspec.E2, keyspec.TDES2Key, derive), emvIMKSMI)
	f.Add("EMV_OPTION_A", emvPAN, emvPSN, emvR, "CBC", "", "249999FFFFFFFFFF", "EMV_COMMON_SESSION_KEY", emvR, "")
	f.Add("EMV_OPTION_B", "12345678901234567", "00", "0000000000000000", "ECB", "", "00", "EMV2000", "", "FFFF")
	f.Add("EMV_OPTION_B", "1234567890123456789", "99", "ABCD", "CBC", "00", "", "UNION_PAY", "", "0")
	f.Fuzz(func(t *testing.T, opt, pan, psn, sdd, mode, iv, data, skMode, ac, atc string) {
		_, err1 := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: e1, PlainText: data, Attributes: ops.DataCipher{Emv: &ops.EmvCipher{
			MajorKeyDerivationMode: opt, PAN: pan, PSN: psn, SessionDerivationData: sdd, Mode: mode, IV: iv}}})
		_, err2 := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: e2, MessageData: data, Attributes: ops.MacAttributes{EmvMac: &ops.EmvMac{
			MajorKeyDerivationMode: opt, PAN: pan, PSN: psn, SessionKeyDerivationMode: skMode, ApplicationCryptogram: ac, ATC: atc}}})
		for _, err := range []error{err1, err2} {
			if err != nil && fault.KindOf(err) == fault.Internal {
				t.Fatalf("internal error: %v", err)
			}
		}
	})
}
