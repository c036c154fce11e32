package ops_test

import (
	"bytes"
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

func emvCipher(opt ops.EmvOption, pan string, mode ops.CipherMode, iv string) ops.DataCipher {
	return ops.DataCipher{Emv: &ops.EmvCipher{MajorKeyMode: opt, PAN: pan, PSN: emvPSN,
		SessionDerivationData: hb(emvR), Mode: mode, IV: hb(iv)}}
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
		{"pyemv mastercard ECB", e1, "249999FFFFFFFFFF", "28367E05DE3381C2", emvCipher(ops.EmvOptionA, emvPAN, ops.ModeECB, "")},
		{"pyemv mastercard CBC", e1, "249999FFFFFFFFFF", "28367E05DE3381C2", emvCipher(ops.EmvOptionA, emvPAN, ops.ModeCBC, "")},
		// test_mastercard_pin_change_12.
		{"pyemv mastercard 12-digit", e1, "2C999999999999FF", "99AD3AF9EB3ECF0C", emvCipher(ops.EmvOptionA, emvPAN, ops.ModeECB, "")},
		// test_ccd_pin_change: ISO/IEC 9797-1 method 2 padding, CBC, zero IV (Mode defaults to CBC).
		{"pyemv CCD CBC", e1, "249999FFFFFFFFFF8000000000000000", "28367E05DE3381C29D30A6055A8DEB86", emvCipher(ops.EmvOptionA, emvPAN, 0, "")},
		// E6 keys are allowed too; option B of a 16-digit PAN is option A (Book 2 A1.4.2).
		{"E6 option B short PAN", e6, "249999FFFFFFFFFF", "28367E05DE3381C2", emvCipher(ops.EmvOptionB, emvPAN, ops.ModeECB, "")},
		// CBC with the guide's example IV: the same keys, computed with
		// openssl des-ede3 (ICC MK, session key, CBC) as a cross-check.
		{"openssl CBC IV", e1, "249999FFFFFFFFFF8000000000000000", "5A3D78FF0AC8690855BB913948008BAE", emvCipher(ops.EmvOptionA, emvPAN, ops.ModeCBC, "1500000000000999")},
		// Option B, 17-digit PAN: the ICC MK AD406D7F6D7570916D75E5DCAB8CF737 of
		// pyemv pyemv/kd.py's derive_icc_mk_b docstring; session key and
		// encipherment computed with openssl des-ede3.
		{"option B long PAN ECB", e1AC, "249999FFFFFFFFFF", "848D49EC8F775BE4", emvCipher(ops.EmvOptionB, "12345678901234567", ops.ModeECB, "")},
		{"option B long PAN CBC", e1AC, "249999FFFFFFFFFF8000000000000000", "01B6C9B7A0D627BD8D247442DBAAD500", emvCipher(ops.EmvOptionB, "12345678901234567", ops.ModeCBC, "0102030405060708")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: tc.key, PlainText: hb(tc.pt), Attributes: tc.c})
			if err != nil {
				t.Fatal(err)
			}
			if hx(out.Data) != tc.ct || out.KeyARN != tc.key || out.KCV == "" {
				t.Fatalf("EncryptData = %+v, want %s", out, tc.ct)
			}
			back, err := svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: tc.key, CipherText: hb(tc.ct), Attributes: tc.c})
			if err != nil || hx(back.Data) != tc.pt {
				t.Fatalf("DecryptData = %+v, %v", back, err)
			}
		})
	}
	// The session key depends on every input.
	base, _ := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: e1, PlainText: hb("249999FFFFFFFFFF"), Attributes: emvCipher(ops.EmvOptionA, emvPAN, ops.ModeECB, "")})
	for name, c := range map[string]ops.DataCipher{
		"PSN": {Emv: &ops.EmvCipher{MajorKeyMode: ops.EmvOptionA, PAN: emvPAN, PSN: "02", SessionDerivationData: hb(emvR), Mode: ops.ModeECB}},
		"PAN": {Emv: &ops.EmvCipher{MajorKeyMode: ops.EmvOptionA, PAN: "1234567890123457", PSN: emvPSN, SessionDerivationData: hb(emvR), Mode: ops.ModeECB}},
		"R":   {Emv: &ops.EmvCipher{MajorKeyMode: ops.EmvOptionA, PAN: emvPAN, PSN: emvPSN, SessionDerivationData: hb("ABCDEF1234567891"), Mode: ops.ModeECB}},
	} {
		out, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: e1, PlainText: hb("249999FFFFFFFFFF"), Attributes: c})
		if err != nil || bytes.Equal(out.Data, base.Data) {
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
	ok := emvCipher(ops.EmvOptionA, emvPAN, ops.ModeECB, "")
	with := func(f func(e *ops.EmvCipher)) ops.DataCipher {
		e := *ok.Emv
		f(&e)
		return ops.DataCipher{Emv: &e}
	}
	key := at{fault.SubjectKey, fault.SideNone}
	about := func(s fault.Subject) at { return at{s, fault.SideNone} }
	for _, tc := range []struct {
		name, key, pt string
		field         at
		c             ops.DataCipher
	}{
		{"E2 key", e2, "249999FFFFFFFFFF", key, ok},
		{"E0 key", e0, "249999FFFFFFFFFF", key, ok},
		{"D0 key", d0, "249999FFFFFFFFFF", key, ok},
		{"AES IMK", e1AES, "249999FFFFFFFFFF", key, ok},
		{"E1 as a symmetric key", e1, "249999FFFFFFFFFF", key, ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeECB}}},
		{"option C", e1, "249999FFFFFFFFFF", about(fault.SubjectMajorKeyDerivationMode), with(func(e *ops.EmvCipher) { e.MajorKeyMode = 3 })},
		{"PAN letters", e1, "249999FFFFFFFFFF", about(fault.SubjectPAN), with(func(e *ops.EmvCipher) { e.PAN = "12345678901234AB" })},
		{"PSN length", e1, "249999FFFFFFFFFF", about(fault.SubjectPSN), with(func(e *ops.EmvCipher) { e.PSN = "1" })},
		{"short R", e1, "249999FFFFFFFFFF", about(fault.SubjectSessionDerivationData), with(func(e *ops.EmvCipher) { e.SessionDerivationData = hb("ABCD") })},
		{"mode", e1, "249999FFFFFFFFFF", about(fault.SubjectCipherMode), with(func(e *ops.EmvCipher) { e.Mode = ops.ModeCFB })},
		{"IV with ECB", e1, "249999FFFFFFFFFF", about(fault.SubjectIV), with(func(e *ops.EmvCipher) { e.IV = hb("0000000000000000") })},
		{"IV length", e1, "249999FFFFFFFFFF", about(fault.SubjectIV), with(func(e *ops.EmvCipher) { e.Mode, e.IV = ops.ModeCBC, hb("00") })},
		{"partial block", e1, "249999FFFFFFFF", about(fault.SubjectData), ok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: tc.key, PlainText: hb(tc.pt), Attributes: tc.c})
			if !isAbout(err, tc.field) {
				t.Fatalf("err = %s, want Validation about %+v", aboutOf(err), tc.field)
			}
		})
	}
	// ReEncryptData has no Emv member.
	_, err := svc.ReEncryptData(ops.ReEncryptDataInput{IncomingKeyIdentifier: e1, OutgoingKeyIdentifier: d0, CipherText: hb("28367E05DE3381C2"),
		Incoming: ok, Outgoing: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeECB}}})
	if fault.KindOf(err) != fault.Validation {
		t.Fatalf("ReEncryptData with Emv: %v", err)
	}
}

func emvMacAttrs(scheme ops.EmvScheme, ac, atc string) ops.MacAttributes {
	return ops.MacAttributes{EmvMac: &ops.EmvMac{MajorKeyMode: ops.EmvOptionA, PAN: emvPAN, PSN: emvPSN,
		SessionScheme: scheme, ApplicationCryptogram: hb(ac), ATC: hb(atc)}}
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
		{"pyemv common", "8424000008", "CF323F09A0F6AB9E", emvMacAttrs(ops.EmvCommon, emvR, "")},
		// test_mastercard_pin_change: header 8424000210 || enciphered PIN data.
		{"pyemv mastercard", "842400021028367E05DE3381C2", "8C4D10091A093B5B", emvMacAttrs(ops.EmvMastercard, emvR, "")},
		// test_ccd_pin_change.
		{"pyemv CCD", "842400021028367E05DE3381C29D30A6055A8DEB86", "69DA1EE208823022", emvMacAttrs(ops.EmvCommon, emvR, "")},
		// test_vis_pin_change: Visa secure-messaging session key from ATC FFFF.
		{"pyemv visa", "8424000210D421231A6FD2F0FAEE671384F0D3A7B9", "F67E37E67B06AB99", emvMacAttrs(ops.EmvVisa, "", "FFFF")},
		// test_vis_change_change_current_pin.
		{"pyemv visa current PIN", "8424000110C29371CC36BA70C1EE671384F0D3A7B9", "6AB3AD15D8B0621A", emvMacAttrs(ops.EmvVisa, "", "FFFF")},
		// Amex secure messaging uses the Visa derivation (emv.SMSessionKey).
		{"amex as visa", "8424000210D421231A6FD2F0FAEE671384F0D3A7B9", "F67E37E67B06AB99", emvMacAttrs(ops.EmvAmex, "", "FFFF")},
		// UnionPay: SK = DES3(MK)[00..ATC] || DES3(MK)[00..ATC^FFFF], ATC 0001,
		// and the retail MAC, computed with openssl des-ede3 as a cross-check.
		{"openssl unionpay", "84240000080001999E57FD0F47CACE", "2906B442F2AF350A", emvMacAttrs(ops.EmvUnionPay, "", "0001")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: e2, MessageData: hb(tc.msg), Attributes: tc.a})
			if err != nil || hx(g.Mac) != tc.mac || g.KeyARN != e2 || g.KCV != "08D7B4" {
				t.Fatalf("GenerateMac = %+v, %v; want %s", g, err, tc.mac)
			}
			if _, err := svc.VerifyMac(ops.VerifyMacInput{KeyIdentifier: e2, MessageData: hb(tc.msg), Mac: hb(tc.mac), Attributes: tc.a}); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.VerifyMac(ops.VerifyMacInput{KeyIdentifier: e2, MessageData: hb(tc.msg), Mac: hb(tc.mac)[:4], MacLength: 4, Attributes: tc.a}); err != nil {
				t.Fatalf("truncated: %v", err)
			}
			_, err = svc.VerifyMac(ops.VerifyMacInput{KeyIdentifier: e2, MessageData: hb(tc.msg + "00"), Mac: hb(tc.mac), Attributes: tc.a})
			if f := fault.As(err); f == nil || f.Kind != fault.VerificationFailed || f.Reason != fault.ReasonInvalidMAC {
				t.Fatalf("altered message: %v", err)
			}
		})
	}
	// EMV 2000 tree: generate/verify round trip (the derivation's vectors are in hsm/emv).
	a := emvMacAttrs(ops.EmvEMV2000, "", "0010")
	g, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: e2, MessageData: hb("8424000008"), Attributes: a})
	if err != nil || len(g.Mac) != 8 {
		t.Fatalf("EMV2000: %+v %v", g, err)
	}
	if _, err := svc.VerifyMac(ops.VerifyMacInput{KeyIdentifier: e2, MessageData: hb("8424000008"), Mac: g.Mac, Attributes: a}); err != nil {
		t.Fatal(err)
	}
}

func TestEmvMacRejects(t *testing.T) {
	svc := opstest.New(t)
	e2 := opstest.Import(t, svc, sym(keyspec.E2, keyspec.TDES2Key, derive), emvIMKSMI)
	e1 := opstest.Import(t, svc, sym(keyspec.E1, keyspec.TDES2Key, derive), emvIMKSMI)
	m3 := opstest.Import(t, svc, sym(keyspec.M3, keyspec.TDES2Key, genVer), emvIMKSMI)
	key := at{fault.SubjectKey, fault.SideNone}
	about := func(s fault.Subject) at { return at{s, fault.SideNone} }
	for _, tc := range []struct {
		name, key string
		field     at
		a         ops.MacAttributes
	}{
		{"E1 key", e1, key, emvMacAttrs(ops.EmvCommon, emvR, "")},
		{"M3 key", m3, key, emvMacAttrs(ops.EmvCommon, emvR, "")},
		{"E2 as ISO 9797 key", e2, key, ops.MacAttributes{Algorithm: ops.MacISO9797Alg3}},
		{"common with ATC", e2, about(fault.SubjectSessionDerivation), emvMacAttrs(ops.EmvCommon, "", "0001")},
		{"visa with AC", e2, about(fault.SubjectSessionDerivation), emvMacAttrs(ops.EmvVisa, emvR, "")},
		{"short AC", e2, about(fault.SubjectApplicationCryptogram), emvMacAttrs(ops.EmvMastercard, "ABCD", "")},
		{"short ATC", e2, about(fault.SubjectATC), emvMacAttrs(ops.EmvEMV2000, "", "01")},
		{"mode", e2, about(fault.SubjectSessionKeyDerivationMode), emvMacAttrs(99, "", "0001")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: tc.key, MessageData: hb("8424000008"), Attributes: tc.a})
			if !isAbout(err, tc.field) {
				t.Fatalf("err = %s, want Validation about %+v", aboutOf(err), tc.field)
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
	f.Add(uint8(ops.EmvOptionA), emvPAN, emvPSN, hb(emvR), uint8(ops.ModeCBC), []byte(nil), hb("249999FFFFFFFFFF"), uint8(ops.EmvCommon), hb(emvR), []byte(nil))
	f.Add(uint8(ops.EmvOptionB), "12345678901234567", "00", hb("0000000000000000"), uint8(ops.ModeECB), []byte(nil), hb("00"), uint8(ops.EmvEMV2000), []byte(nil), hb("FFFF"))
	f.Add(uint8(ops.EmvOptionB), "1234567890123456789", "99", hb("ABCD"), uint8(ops.ModeCBC), hb("00"), []byte(nil), uint8(ops.EmvUnionPay), []byte(nil), hb("00"))
	f.Fuzz(func(t *testing.T, opt uint8, pan, psn string, sdd []byte, mode uint8, iv, data []byte, scheme uint8, ac, atc []byte) {
		_, err1 := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: e1, PlainText: data, Attributes: ops.DataCipher{Emv: &ops.EmvCipher{
			MajorKeyMode: ops.EmvOption(opt), PAN: pan, PSN: psn, SessionDerivationData: sdd, Mode: ops.CipherMode(mode), IV: iv}}})
		_, err2 := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: e2, MessageData: data, Attributes: ops.MacAttributes{EmvMac: &ops.EmvMac{
			MajorKeyMode: ops.EmvOption(opt), PAN: pan, PSN: psn, SessionScheme: ops.EmvScheme(scheme), ApplicationCryptogram: ac, ATC: atc}}})
		for _, err := range []error{err1, err2} {
			if err != nil && fault.KindOf(err) == fault.Internal {
				t.Fatalf("internal error: %v", err)
			}
		}
	})
}
