package ops_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"payhsm/fault"
	"payhsm/hsm/as2805"
	"payhsm/hsm/custody"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// AS2805 vectors. No public worked example with known keys exists (the user
// guide's AS2805 examples show ciphertexts only), so the expected values were
// computed with the OpenSSL command line on the constructions of the public
// sources cited in hsm/as2805 (script: hsm/as2805/testdata/openssl_kat.sh):
//   - KEK 0123456789ABCDEFFEDCBA9876543210 (KCV 08D7B4), working key / KPP
//     A8B5F2C4D3E6B5A19DF0BCD62A8C4B7F (KCV 387A9F; openssl enc -des-ede-ecb
//     of 8 zero bytes).
//   - As2805KeyCryptogram: openssl enc -des-ede-cbc -iv 0 -K (KEK XOR vvC0…).
//   - KEK validation: KRs 243B0AA2B8BA6F80C5DA2D88331131C7 answered with KRr
//     44F8078074141B9CF30FC8A34ABBF403.
//   - KPE for STAN 000348, amount 000000000328 (the guide's "Pin Translation"
//     example values) under the KPP: 3EFDE74E8FA9FA29A4ADBED43D96FF4E; the ISO 0
//     block of PIN 1234, PAN 9999179999900013 (0412A5866666FFFE) enciphers to
//     0F6237D32CF66782 (openssl enc -des-ede-ecb -K 3EFD…FF4E).
const (
	a2KEK    = "0123456789ABCDEFFEDCBA9876543210"
	a2KEKKCV = "08D7B4"
	a2Key    = "A8B5F2C4D3E6B5A19DF0BCD62A8C4B7F"
	a2KeyKCV = "387A9F"
)

var (
	a2KEKModes = keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}
	a2MacModes = keyspec.ModesOfUse{Generate: true, Verify: true}
)

func a2Fixture(t testing.TB) (*ops.Service, string) {
	svc := opstest.New(t)
	kek := opstest.Import(t, svc, keyspec.Attributes{Usage: keyspec.K0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key, Modes: a2KEKModes}, a2KEK)
	return svc, kek
}

func keyCount(t *testing.T, svc *ops.Service) int {
	t.Helper()
	ks, _, err := svc.ListKeys("", ops.Page{Max: 100})
	if err != nil {
		t.Fatal(err)
	}
	return len(ks)
}

func TestAs2805ExportImport(t *testing.T) {
	svc, kek := a2Fixture(t)
	for _, c := range []struct {
		variant ops.As2805Variant
		usage   keyspec.KeyUsage
		modes   keyspec.ModesOfUse
		wrapped string
	}{
		{ops.As2805PinEncryptionKey, keyspec.P0, a2KEKModes, "D3F307F15FA89F1F420E58F063693023"},
		{ops.As2805MacKey, keyspec.M0, a2MacModes, "3C726BEF38C8A97F4CA491DA17EC01D9"},
		{ops.As2805DataKey, keyspec.D0, a2KEKModes, "9896D9DD2AB3B251B0B56F5D9B52531B"},
	} {
		t.Run(string(c.usage), func(t *testing.T) {
			attrs := keyspec.Attributes{Usage: c.usage, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key, Modes: c.modes}
			arn := opstest.Import(t, svc, attrs, a2Key)
			w, err := svc.ExportKeyAs2805(ops.ExportKeyInput{KeyIdentifier: arn}, ops.ExportAs2805{WrappingKeyIdentifier: kek, Variant: c.variant})
			if err != nil {
				t.Fatal(err)
			}
			if hx(w.Cryptogram) != c.wrapped || w.KCV != a2KeyKCV || w.WrappingKeyARN != kek || w.KCVAlgorithm != keyspec.KCVANSIX924 {
				t.Fatalf("export = %+v, want material %s KCV %s", w, c.wrapped, a2KeyKCV)
			}
			k, err := svc.ImportKeyAs2805(ops.ImportKeyInput{}, ops.ImportAs2805{Variant: c.variant, Modes: c.modes, Algorithm: keyspec.TDES2Key,
				Exportable: true, WrappingKeyIdentifier: kek, Cryptogram: hb(c.wrapped)})
			if err != nil {
				t.Fatal(err)
			}
			if k.KCV != a2KeyKCV || k.Attributes != attrs || !k.Exportable || k.Origin != ops.OriginExternal {
				t.Fatalf("import = %+v", k)
			}
			again, err := svc.ExportKeyAs2805(ops.ExportKeyInput{KeyIdentifier: k.ARN}, ops.ExportAs2805{WrappingKeyIdentifier: kek, Variant: c.variant})
			if err != nil || hx(again.Cryptogram) != c.wrapped {
				t.Fatalf("re-export = %+v, %v", again, err)
			}
		})
	}
}

func TestAs2805Refusals(t *testing.T) {
	svc, kek := a2Fixture(t)
	sym := func(u keyspec.KeyUsage, a keyspec.Algorithm, m keyspec.ModesOfUse) keyspec.Attributes {
		return keyspec.Attributes{Usage: u, Class: keyspec.Symmetric, Algorithm: a, Modes: m}
	}
	pek := opstest.Import(t, svc, sym(keyspec.P0, keyspec.TDES2Key, a2KEKModes), a2Key)
	pek3 := opstest.Import(t, svc, sym(keyspec.P0, keyspec.TDES3Key, a2KEKModes), a2Key+"0123456789ABCDEF")
	kek3 := opstest.Import(t, svc, sym(keyspec.K0, keyspec.TDES3Key, a2KEKModes), a2KEK+"89ABCDEF01234567")
	kekIn := opstest.Import(t, svc, sym(keyspec.K0, keyspec.TDES2Key, keyspec.ModesOfUse{Decrypt: true, Unwrap: true}), a2KEK)
	kekOut := opstest.Import(t, svc, sym(keyspec.K0, keyspec.TDES2Key, keyspec.ModesOfUse{Encrypt: true, Wrap: true}), a2KEK)
	kbpk := opstest.Import(t, svc, sym(keyspec.K1, keyspec.TDES2Key, a2KEKModes), a2KEK)
	aesPEK := opstest.Import(t, svc, sym(keyspec.P0, keyspec.AES128, a2KEKModes), a2Key)
	hidden, err := svc.CreateKey(ops.CreateKeyInput{Attributes: sym(keyspec.P0, keyspec.TDES2Key, a2KEKModes), Exportable: false})
	if err != nil {
		t.Fatal(err)
	}
	exp := func(key, wrapping string, variant ops.As2805Variant) error {
		_, err := svc.ExportKeyAs2805(ops.ExportKeyInput{KeyIdentifier: key}, ops.ExportAs2805{WrappingKeyIdentifier: wrapping, Variant: variant})
		return err
	}
	imp := func(wrapping string, variant ops.As2805Variant, alg keyspec.Algorithm, ct string) error {
		_, err := svc.ImportKeyAs2805(ops.ImportKeyInput{}, ops.ImportAs2805{Variant: variant, Modes: a2KEKModes, Algorithm: alg,
			Exportable: true, WrappingKeyIdentifier: wrapping, Cryptogram: hb(ct)})
		return err
	}
	const ct = "D3F307F15FA89F1F420E58F063693023"
	before := keyCount(t, svc)
	for _, c := range []struct {
		name  string
		err   error
		field at
	}{
		{"export variant 00", exp(pek, kek, ops.As2805TerminalMajorKey), at{fault.SubjectAs2805Variant, fault.SideNone}},
		{"export variant of another usage", exp(pek, kek, ops.As2805MacKey), at{fault.SubjectAs2805Variant, fault.SideNone}},
		{"export unknown variant", exp(pek, kek, 99), at{fault.SubjectAs2805Variant, fault.SideNone}},
		{"export under a TDES_3KEY KEK", exp(pek, kek3, ops.As2805PinEncryptionKey), at{fault.SubjectWrappingKey, fault.SideNone}},
		{"export under a K1 key", exp(pek, kbpk, ops.As2805PinEncryptionKey), at{fault.SubjectWrappingKey, fault.SideNone}},
		{"export under a PEK", exp(pek, pek, ops.As2805PinEncryptionKey), at{fault.SubjectWrappingKey, fault.SideNone}},
		{"export under an import-only KEK", exp(pek, kekIn, ops.As2805PinEncryptionKey), at{fault.SubjectWrappingKey, fault.SideNone}},
		{"export a TDES_3KEY key under TDES_2KEY", exp(pek3, kek, ops.As2805PinEncryptionKey), at{}},
		{"export an AES key", exp(aesPEK, kek, ops.As2805PinEncryptionKey), at{fault.SubjectKey, fault.SideNone}},
		{"export a non-exportable key", exp(hidden.ARN, kek, ops.As2805PinEncryptionKey), at{fault.SubjectKey, fault.SideNone}}, // exportableKey
		{"import variant 00", imp(kek, ops.As2805TerminalMajorKey, keyspec.TDES2Key, ct), at{fault.SubjectAs2805Variant, fault.SideNone}},
		{"import under an export-only KEK", imp(kekOut, ops.As2805PinEncryptionKey, keyspec.TDES2Key, ct), at{fault.SubjectWrappingKey, fault.SideNone}},
		{"import under a TDES_3KEY KEK", imp(kek3, ops.As2805PinEncryptionKey, keyspec.TDES2Key, ct), at{fault.SubjectWrappingKey, fault.SideNone}},
		{"import a TDES_3KEY key under TDES_2KEY", imp(kek, ops.As2805PinEncryptionKey, keyspec.TDES3Key, ct+"0123456789ABCDEF"), at{}},
		{"import an AES key", imp(kek, ops.As2805PinEncryptionKey, keyspec.AES128, ct), at{fault.SubjectKeyAlgorithm, fault.SideNone}},
		{"import a short cryptogram", imp(kek, ops.As2805PinEncryptionKey, keyspec.TDES2Key, ct[:16]), at{fault.SubjectKeyCryptogram, fault.SideNone}},
	} {
		if !isAbout(c.err, c.field) {
			t.Errorf("%s: %s, want a validation error about %+v", c.name, aboutOf(c.err), c.field)
		}
		if c.err != nil && strings.Contains(strings.ToUpper(c.err.Error()), a2Key[:16]) {
			t.Errorf("%s: error shows key material", c.name)
		}
	}
	if n := keyCount(t, svc); n != before {
		t.Errorf("refused imports stored %d keys", n-before)
	}
	if _, err := svc.ExportKeyAs2805(ops.ExportKeyInput{KeyIdentifier: pek, DukptKSN: xUnhex(t, "FFFF9876543210E00001")},
		ops.ExportAs2805{WrappingKeyIdentifier: kek, Variant: ops.As2805PinEncryptionKey}); fault.As(err).Kind != fault.Validation {
		t.Errorf("DUKPT initial key with AS2805: %v", err)
	}
}

func TestAs2805KekValidation(t *testing.T) {
	svc, kek := a2Fixture(t)
	clearKEK, _ := hex.DecodeString(a2KEK)

	t.Run("response KAT", func(t *testing.T) {
		r, err := svc.GenerateAs2805KekValidation(ops.As2805KekValidationInput{KeyIdentifier: kek, VariantMask: ops.As2805Mask82,
			ResponseKRs: hb("243B0AA2B8BA6F80C5DA2D88331131C7")})
		if err != nil {
			t.Fatal(err)
		}
		if r.KeyARN != kek || r.KCV != a2KEKKCV || hx(r.RandomKeySend) != "243B0AA2B8BA6F80C5DA2D88331131C7" || hx(r.RandomKeyReceive) != "44F8078074141B9CF30FC8A34ABBF403" {
			want := "KRs 243B0AA2B8BA6F80C5DA2D88331131C7, KRr 44F8078074141B9CF30FC8A34ABBF403"
			t.Fatalf("response = %+v, want %s", r, want)
		}
	})

	for _, c := range []struct {
		alg    keyspec.Algorithm
		max    int
		length int
	}{
		{keyspec.TDES2Key, 0, 16},
		{keyspec.TDES3Key, 0, 24},
		{keyspec.TDES3Key, 16, 16},
		{keyspec.TDES2Key, 8, 8},
		{keyspec.TDES2Key, 24, 16},
	} {
		t.Run(fmt.Sprintf("request %s %d", c.alg, c.max), func(t *testing.T) {
			r, err := svc.GenerateAs2805KekValidation(ops.As2805KekValidationInput{KeyIdentifier: kek, VariantMask: ops.As2805Mask82,
				Request: &ops.As2805KekValidationRequest{DeriveKeyAlgorithm: c.alg, RandomKeyMaxLength: c.max}})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.RandomKeySend) != c.length || len(r.RandomKeyReceive) != c.length || r.KCV != a2KEKKCV || r.KeyARN != kek {
				t.Fatalf("request = %+v", r)
			}
			// The partner, holding the same KEK as KEKr, answers with KRr (hsm/as2805 on the clear KEK).
			krr, err := as2805.KEKValidationResponse(clearKEK, r.RandomKeySend)
			if err != nil || !bytes.Equal(krr, r.RandomKeyReceive) {
				t.Fatalf("partner KRr %X, %v; request KRr %X", krr, err, r.RandomKeyReceive)
			}
			// And this appliance's own response path agrees.
			back, err := svc.GenerateAs2805KekValidation(ops.As2805KekValidationInput{KeyIdentifier: kek, VariantMask: ops.As2805Mask82, ResponseKRs: r.RandomKeySend})
			if err != nil || !bytes.Equal(back.RandomKeyReceive, r.RandomKeyReceive) {
				t.Fatalf("response to own request = %+v, %v", back, err)
			}
		})
	}

	t.Run("requests are random", func(t *testing.T) {
		in := ops.As2805KekValidationInput{KeyIdentifier: kek, VariantMask: ops.As2805Mask82, Request: &ops.As2805KekValidationRequest{DeriveKeyAlgorithm: keyspec.TDES2Key}}
		a, _ := svc.GenerateAs2805KekValidation(in)
		b, _ := svc.GenerateAs2805KekValidation(in)
		if a == nil || b == nil || bytes.Equal(a.RandomKeySend, b.RandomKeySend) {
			t.Fatal("two requests share a random key")
		}
	})

	pek := opstest.Import(t, svc, keyspec.Attributes{Usage: keyspec.P0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key, Modes: a2KEKModes}, a2Key)
	kek3 := opstest.Import(t, svc, keyspec.Attributes{Usage: keyspec.K0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES3Key, Modes: a2KEKModes}, a2KEK+"89ABCDEF01234567")
	kekOut := opstest.Import(t, svc, keyspec.Attributes{Usage: keyspec.K0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key, Modes: keyspec.ModesOfUse{Encrypt: true, Wrap: true}}, a2KEK)
	req := &ops.As2805KekValidationRequest{DeriveKeyAlgorithm: keyspec.TDES2Key}
	for _, c := range []struct {
		name  string
		in    ops.As2805KekValidationInput
		field fault.Subject
	}{
		{"82C0", ops.As2805KekValidationInput{KeyIdentifier: kek, VariantMask: ops.As2805Mask82C0, Request: req}, fault.SubjectVariantMask},
		{"unknown mask", ops.As2805KekValidationInput{KeyIdentifier: kek, VariantMask: 99, Request: req}, fault.SubjectVariantMask},
		{"neither", ops.As2805KekValidationInput{KeyIdentifier: kek, VariantMask: ops.As2805Mask82}, fault.SubjectKekValidation},
		{"both", ops.As2805KekValidationInput{KeyIdentifier: kek, VariantMask: ops.As2805Mask82, Request: req, ResponseKRs: hb("243B0AA2B8BA6F80")}, fault.SubjectKekValidation},
		{"AES random key", ops.As2805KekValidationInput{KeyIdentifier: kek, VariantMask: ops.As2805Mask82, Request: &ops.As2805KekValidationRequest{DeriveKeyAlgorithm: keyspec.AES128}}, fault.SubjectDerivedKeyAlgorithm},
		{"bad max length", ops.As2805KekValidationInput{KeyIdentifier: kek, VariantMask: ops.As2805Mask82, Request: &ops.As2805KekValidationRequest{DeriveKeyAlgorithm: keyspec.TDES2Key, RandomKeyMaxLength: 32}}, fault.SubjectRandomKeyLength},
		{"odd KRs", ops.As2805KekValidationInput{KeyIdentifier: kek, VariantMask: ops.As2805Mask82, ResponseKRs: hb("243B0AA2B8BA6F80C5")}, fault.SubjectRandomKeySend},
		{"PEK as KEK", ops.As2805KekValidationInput{KeyIdentifier: pek, VariantMask: ops.As2805Mask82, Request: req}, fault.SubjectKey},
		{"TDES_3KEY KEK", ops.As2805KekValidationInput{KeyIdentifier: kek3, VariantMask: ops.As2805Mask82, Request: req}, fault.SubjectKey},
		{"export-only KEK answering", ops.As2805KekValidationInput{KeyIdentifier: kekOut, VariantMask: ops.As2805Mask82, ResponseKRs: hb("243B0AA2B8BA6F80")}, fault.SubjectKey},
	} {
		_, err := svc.GenerateAs2805KekValidation(c.in)
		if !isAbout(err, at{c.field, fault.SideNone}) {
			t.Errorf("%s: %s, want a validation error about %d", c.name, aboutOf(err), c.field)
		}
	}
	if _, err := svc.GenerateAs2805KekValidation(ops.As2805KekValidationInput{KeyIdentifier: kekOut, VariantMask: ops.As2805Mask82, Request: req}); err != nil {
		t.Errorf("export-only KEK requesting: %v", err)
	}
	if _, err := svc.GenerateAs2805KekValidation(ops.As2805KekValidationInput{KeyIdentifier: "alias/none", VariantMask: ops.As2805Mask82, Request: req}); fault.As(err).Kind != fault.NotFound {
		t.Errorf("unknown KEK: %v", err)
	}

	t.Run("no PKCS#11 call per operation", func(t *testing.T) {
		in := ops.As2805KekValidationInput{KeyIdentifier: kek, VariantMask: ops.As2805Mask82, ResponseKRs: hb("243B0AA2B8BA6F80C5DA2D88331131C7")}
		if _, err := svc.GenerateAs2805KekValidation(in); err != nil { // warms the working-key cache
			t.Fatal(err)
		}
		before := custody.TokenOperations()
		for i := 0; i < 200; i++ {
			if _, err := svc.GenerateAs2805KekValidation(in); err != nil {
				t.Fatal(err)
			}
		}
		if n := custody.TokenOperations() - before; n != 0 {
			t.Fatalf("%d PKCS#11 calls for 200 operations", n)
		}
	})
}

func TestAs2805SessionPinKey(t *testing.T) {
	svc := opstest.New(t)
	sym := func(u keyspec.KeyUsage, a keyspec.Algorithm, m keyspec.ModesOfUse) keyspec.Attributes {
		return keyspec.Attributes{Usage: u, Class: keyspec.Symmetric, Algorithm: a, Modes: m}
	}
	kpp := opstest.Import(t, svc, sym(keyspec.P0, keyspec.TDES2Key, a2KEKModes), a2Key)
	b, release, err := svc.As2805KPEForTest(kpp, "000348", "000000000328")
	if err != nil {
		t.Fatal(err)
	}
	clearBlock, _ := hex.DecodeString("0412A5866666FFFE")
	got := make([]byte, 8)
	b.Encrypt(got, clearBlock)
	release()
	if want, _ := hex.DecodeString("0F6237D32CF66782"); !bytes.Equal(got, want) {
		t.Fatalf("PIN block under the KPE = %X, want %X", got, want)
	}

	encOnly := opstest.Import(t, svc, sym(keyspec.P0, keyspec.TDES2Key, keyspec.ModesOfUse{Encrypt: true, Wrap: true}), a2Key)
	kpp3 := opstest.Import(t, svc, sym(keyspec.P0, keyspec.TDES3Key, a2KEKModes), a2Key+"0123456789ABCDEF")
	dek := opstest.Import(t, svc, sym(keyspec.D0, keyspec.TDES2Key, a2KEKModes), a2Key)
	pek := at{fault.SubjectPinEncryptionKey, fault.SideIncoming}
	for _, c := range []struct {
		name, key, stan, amount string
		field                   at
		violation               string
	}{
		{"encrypt-only KPP", encOnly, "000348", "000000000328", pek, fault.ViolationModes},
		{"TDES_3KEY KPP", kpp3, "000348", "000000000328", pek, fault.ViolationAlgorithm},
		{"data key", dek, "000348", "000000000328", pek, fault.ViolationUsage},
		{"short STAN", kpp, "00348", "000000000328", at{fault.SubjectSTAN, fault.SideIncoming}, ""},
		{"letter in amount", kpp, "000348", "00000000032A", at{fault.SubjectTransactionAmount, fault.SideIncoming}, ""},
	} {
		_, _, err := svc.As2805KPEForTest(c.key, c.stan, c.amount)
		if f := fault.As(err); !isAbout(err, c.field) || f.Violation != c.violation {
			t.Errorf("%s: %s, want a validation error about %+v (%s)", c.name, aboutOf(err), c.field, c.violation)
		}
	}

	before := custody.TokenOperations()
	for i := 0; i < 200; i++ {
		_, release, err := svc.As2805KPEForTest(kpp, "000348", "000000000328")
		if err != nil {
			t.Fatal(err)
		}
		release()
	}
	if n := custody.TokenOperations() - before; n != 0 {
		t.Fatalf("%d PKCS#11 calls for 200 KPE derivations", n)
	}
}

func BenchmarkAs2805KekValidationResponse(b *testing.B) {
	svc, kek := a2Fixture(b)
	in := ops.As2805KekValidationInput{KeyIdentifier: kek, VariantMask: ops.As2805Mask82, ResponseKRs: hb("243B0AA2B8BA6F80C5DA2D88331131C7")}
	if _, err := svc.GenerateAs2805KekValidation(in); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := svc.GenerateAs2805KekValidation(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAs2805SessionPinKey(b *testing.B) {
	svc := opstest.New(b)
	kpp := opstest.Import(b, svc, keyspec.Attributes{Usage: keyspec.P0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key, Modes: a2KEKModes}, a2Key)
	b.ResetTimer()
	for b.Loop() {
		_, release, err := svc.As2805KPEForTest(kpp, "000348", "000000000328")
		if err != nil {
			b.Fatal(err)
		}
		release()
	}
}
