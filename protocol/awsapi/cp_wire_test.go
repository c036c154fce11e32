package awsapi

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/ops"
	cp "payhsm/protocol/awsapi/cpshape"
	dp "payhsm/protocol/awsapi/dpshape"
)

func TestMembersName(t *testing.T) {
	m := members{fault.SubjectToken: "KeyMaterial.KeyCryptogram.ImportToken"}
	for _, tc := range []struct {
		name           string
		err            error
		field, message string
	}{
		{"mapped subject", fault.About(fault.SubjectToken, "import token not found"),
			"KeyMaterial.KeyCryptogram.ImportToken", "KeyMaterial.KeyCryptogram.ImportToken: import token not found"},
		{"unmapped subject", fault.About(fault.SubjectNonce, "does not match"), "", "does not match"},
		{"no subject", fault.Validationf("weaker"), "", "weaker"},
		{"already named", invalid("ImportToken", "bad"), "ImportToken", "ImportToken: bad"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if path, message := located(t, m.name(tc.err)); path != tc.field || message != tc.message {
				t.Errorf("member %q message %q; want %q, %q", path, message, tc.field, tc.message)
			}
		})
	}
	if m.name(nil) != nil {
		t.Error("name(nil) is not nil")
	}
}

// TestKeyspecFaultsNamed: keyspec's attribute faults, which say what they
// are about by subject, reach an AWS client under the member AWS names (the
// messages keyspec used to spell itself).
func TestKeyspecFaultsNamed(t *testing.T) {
	m := keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}
	for _, tc := range []struct {
		name    string
		names   members
		err     error
		path    string
		message string
	}{
		{"unknown usage", createKeyMembers, keyspec.ValidateCreate(keyspec.Attributes{Usage: "TR31_Z9_BOGUS", Class: keyspec.Symmetric,
			Algorithm: keyspec.AES128, Modes: m}, ""), "KeyAttributes.KeyUsage", `KeyAttributes.KeyUsage: unknown key usage "TR31_Z9_BOGUS"`},
		{"DeriveKeyUsage on a symmetric key", createKeyMembers, keyspec.ValidateCreate(keyspec.Attributes{Usage: keyspec.K1, Class: keyspec.Symmetric,
			Algorithm: keyspec.AES128, Modes: m}, keyspec.P0), "DeriveKeyUsage",
			"DeriveKeyUsage: is only allowed for TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT keys, not TR31_K1_KEY_BLOCK_PROTECTION_KEY"},
		{"check value", createKeyMembers, keyspec.ValidKCVAlgorithm(keyspec.AES128, keyspec.KCVANSIX924), "KeyCheckValueAlgorithm",
			"KeyCheckValueAlgorithm: ANSI_X9_24 cannot be used for AES_128 keys"},
		{"imported cryptogram's modes", importMembers["KeyCryptogram"], keyspec.ValidateImport(keyspec.Attributes{Usage: keyspec.P0,
			Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key, Modes: keyspec.ModesOfUse{Generate: true}}, ""),
			"KeyMaterial.KeyCryptogram.KeyAttributes.KeyModesOfUse", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, message := located(t, tc.names.name(tc.err))
			if path != tc.path || tc.message != "" && message != tc.message || !strings.HasPrefix(message, tc.path+": ") {
				t.Errorf("%q at %q, want %q at %q", message, path, tc.message, tc.path)
			}
		})
	}
}

// TestDiffieHellmanDecoding: a DiffieHellmanTr31KeyBlock derivation is
// decoded at the edge (certificate to DER, shared information to bytes, KDF
// names to the operations layer's), and a member that does not decode is a
// ValidationException naming it.
func TestDiffieHellmanDecoding(t *testing.T) {
	const p = "KeyMaterial.DiffieHellmanTr31KeyBlock"
	der := testCertificate(t)
	cert := *pemBase64("CERTIFICATE", der)
	dh, err := diffieHellman(p, sp("alias/k3"), sp("alias/ca"), &cert, "AES_128", "ANSI_X963", "SHA_384", sp("0aFF"))
	if err != nil || !bytes.Equal(dh.Certificate, der) || !bytes.Equal(dh.SharedInformation, []byte{0x0A, 0xFF}) ||
		dh.KDF != ops.KDFAnsiX963 || dh.Hash != ops.KDFSHA384 || dh.PrivateKeyIdentifier != "alias/k3" || dh.CAIdentifier != "alias/ca" {
		t.Fatalf("%+v, %v", dh, err)
	}
	if dh, err := diffieHellman(p, sp("k"), sp("c"), &cert, "AES_128", "HKDF", "", nil); err != nil || dh.KDF == 0 || dh.Hash != 0 || dh.SharedInformation != nil {
		t.Errorf("unknown KDF, no hash, no shared information: %+v, %v", dh, err)
	}
	for _, tc := range []struct {
		name       string
		cert, info string
		path       string
	}{
		{"certificate", "@@@@", "00", p + ".PublicKeyCertificate"},
		{"shared information", cert, "0G", p + ".DerivationData.SharedInformation"},
	} {
		_, err := diffieHellman(p, sp("k"), sp("c"), &tc.cert, "AES_128", "NIST_SP800", "SHA_256", &tc.info)
		if path, _ := located(t, err); err == nil || fault.KindOf(err) != fault.Validation || path != tc.path {
			t.Errorf("%s: %v at %q, want a ValidationException at %s", tc.name, err, path, tc.path)
		}
	}
	// The data plane's DiffieHellmanSymmetricKey: the same certificate decoding.
	dk, err := wrappedKey("WrappedKey", &dp.WrappedKey{WrappedKeyMaterial: &dp.WrappedKeyMaterial{
		DiffieHellmanSymmetricKey: &dp.EcdhDerivationAttributes{PublicKeyCertificate: &cert, SharedInformation: sp("01")}}})
	if err != nil || !bytes.Equal(dk.DiffieHellman.Certificate, der) || !bytes.Equal(dk.DiffieHellman.SharedInformation, []byte{1}) {
		t.Errorf("DiffieHellmanSymmetricKey: %+v, %v", dk, err)
	}
	_, err = wrappedKey("WrappedKey", &dp.WrappedKey{WrappedKeyMaterial: &dp.WrappedKeyMaterial{
		DiffieHellmanSymmetricKey: &dp.EcdhDerivationAttributes{PublicKeyCertificate: sp("@@@@")}}})
	if path, _ := located(t, err); path != "WrappedKey.WrappedKeyMaterial.DiffieHellmanSymmetricKey.PublicKeyCertificate" {
		t.Errorf("DiffieHellmanSymmetricKey certificate: %v at %q", err, path)
	}
}

// memberType follows a member path (JSON member names) from the shape root
// and reports whether every step exists.
func memberType(root reflect.Type, path string) bool {
	t := root
	for _, name := range strings.Split(path, ".") {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return false
		}
		found := false
		for i := 0; i < t.NumField(); i++ {
			if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); tag == name {
				t, found = t.Field(i).Type, true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// TestMemberPathsExist: every member path a fault can be reported under is a
// member of the operation's input shape, so a model change that renames one
// fails here rather than in a client's error message.
func TestMemberPathsExist(t *testing.T) {
	check := func(op string, root any, m members) {
		for s, path := range m {
			if !memberType(reflect.TypeOf(root), path) {
				t.Errorf("%s: subject %d maps to %q, which is not a member", op, s, path)
			}
		}
	}
	if !memberType(reflect.TypeOf(cp.ExportKeyInput{}), "KeyMaterial.Tr34KeyBlock.KeyBlockHeaders.OptionalBlocks") ||
		memberType(reflect.TypeOf(cp.ExportKeyInput{}), "KeyMaterial.Tr34KeyBlock.Nonce") {
		t.Fatal("memberType does not follow member paths")
	}
	check("CreateKey", cp.CreateKeyInput{}, createKeyMembers)
	check("ListKeys", cp.ListKeysInput{}, listMembers)
	check("ListAliases", cp.ListAliasesInput{}, listMembers)
	check("ListTagsForResource", cp.ListTagsForResourceInput{}, listMembers)
	check("DeleteKey", cp.DeleteKeyInput{}, deleteKeyMembers)
	check("TagResource", cp.TagResourceInput{}, tagMembers)
	check("GetParametersForImport", cp.GetParametersForImportInput{}, importParamMembers)
	check("GetParametersForExport", cp.GetParametersForExportInput{}, exportParamMembers)
	check("GetCertificateSigningRequest", cp.GetCertificateSigningRequestInput{}, csrMembers)
	for material, m := range importMembers {
		if material != "" && !memberType(reflect.TypeOf(cp.ImportKeyMaterial{}), material) {
			t.Errorf("ImportKey: %q is not a KeyMaterial member", material)
		}
		check("ImportKey "+material, cp.ImportKeyInput{}, m)
	}
	for material, m := range exportMembers {
		if material != "" && !memberType(reflect.TypeOf(cp.ExportKeyMaterial{}), material) {
			t.Errorf("ExportKey: %q is not a KeyMaterial member", material)
		}
		check("ExportKey "+material, cp.ExportKeyInput{}, m)
	}
}

// TestEnumsMapped: every model value of the enums the control plane maps
// has an operations-layer value.
func TestEnumsMapped(t *testing.T) {
	for _, v := range cp.KeyMaterialType("").Values() {
		if keyMaterialTypes[v] == 0 {
			t.Errorf("KeyMaterialType %s is not mapped", v)
		}
	}
	seen := map[ops.KeyMaterialType]bool{}
	for _, v := range keyMaterialTypes {
		if seen[v] {
			t.Errorf("%v is mapped twice", v)
		}
		seen[v] = true
	}
	for _, v := range cp.SigningAlgorithmType("").Values() {
		if h := signingHashes[v]; h == 0 || !h.Available() {
			t.Errorf("SigningAlgorithm %s maps to %v", v, h)
		}
	}
	for _, v := range cp.WrappingKeySpec("").Values() {
		if _, ok := wrappingSpecs[v]; !ok {
			t.Errorf("WrappingKeySpec %s is not mapped", v)
		}
	}
	formats := map[cp.WrappedKeyMaterialFormat]bool{}
	for _, f := range wrappedFormats {
		formats[f] = true
	}
	for _, v := range cp.WrappedKeyMaterialFormat("").Values() {
		if !formats[v] {
			t.Errorf("WrappedKeyMaterialFormat %s is no format's spelling", v)
		}
	}
	for _, f := range []ops.KeyMaterialType{ops.FormatKeyCryptogram, ops.FormatTR31, ops.FormatTR34} {
		if wrappedFormats[f] == "" {
			t.Errorf("%v has no spelling", f)
		}
	}
	for _, tc := range []struct {
		in   *cp.WrappingKeySpec
		want ops.WrappingSpec
		ok   bool
	}{
		{nil, ops.OAEPSHA256, true},
		{ptr(cp.WrappingKeySpecRsaOaepSha256), ops.OAEPSHA256, true},
		{ptr(cp.WrappingKeySpecRsaOaepSha512), ops.OAEPSHA512, true},
		{ptr(cp.WrappingKeySpec("RSA_OAEP_SHA_1")), 0, false},
	} {
		got, err := wrappingSpec("KeyMaterial.KeyCryptogram.WrappingSpec", tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("wrappingSpec(%v) = %v, %v", tc.in, got, err)
		}
		if err != nil {
			if path, _ := located(t, err); path != "KeyMaterial.KeyCryptogram.WrappingSpec" {
				t.Errorf("wrappingSpec error names %q", path)
			}
		}
	}
	if crypto.SHA256 != signingHashes[cp.SigningAlgorithmTypeSha256] {
		t.Error("SHA256 is not crypto.SHA256")
	}
}

func TestHexMembers(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []byte
		ok   bool
	}{
		{"00A1ff", []byte{0, 0xA1, 0xFF}, true},
		{"", []byte{}, true},
		{"ABC", nil, false},
		{"ZZ", nil, false},
	} {
		got, err := hexMember("P.Q", tc.in)
		if (err == nil) != tc.ok || (tc.ok && !bytes.Equal(got, tc.want)) {
			t.Errorf("hexMember(%q) = %X, %v", tc.in, got, err)
		}
		if err != nil {
			if path, message := located(t, err); fault.KindOf(err) != fault.Validation || path != "P.Q" || message != "P.Q: must be hexadecimal" {
				t.Errorf("hexMember(%q) fault %v at %q", tc.in, err, path)
			}
		}
	}
	if b, err := optHexMember("P", nil); b != nil || err != nil {
		t.Errorf("absent member: %X, %v", b, err)
	}
	if got := hexText([]byte{0xab, 0x01}); got != "AB01" {
		t.Errorf("hexText = %s", got)
	}
}

func testCertificate(t testing.TB) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "awsapi test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestCertificateMember(t *testing.T) {
	der := testCertificate(t)
	p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"base64 of PEM", base64.StdEncoding.EncodeToString(p), true},
		{"raw PEM", string(p), true},
		{"base64 of DER", base64.StdEncoding.EncodeToString(der), true},
		{"two certificates", base64.StdEncoding.EncodeToString(append(p, p...)), false},
		{"a key, not a certificate", base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), false},
		{"not base64", "@@@@", false},
		{"empty", "", false},
		{"white space", " \n", false},
		{"an empty PEM block", "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----", false},
		{"base64 of an empty PEM block", base64.StdEncoding.EncodeToString([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")), false},
		{"too long", strings.Repeat("A", maxCertificateLen+4), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := certificateMember("KeyMaterial.KeyCryptogram.WrappingKeyCertificate", tc.in)
			if tc.ok {
				if err != nil || !bytes.Equal(got, der) {
					t.Fatalf("got %d bytes, %v; want the DER", len(got), err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if path, _ := located(t, err); fault.KindOf(err) != fault.Validation || path != "KeyMaterial.KeyCryptogram.WrappingKeyCertificate" {
				t.Fatalf("err = %v at %q", err, path)
			}
		})
	}
	out := pemBase64("CERTIFICATE", der)
	back, err := certificateMember("C", *out)
	if err != nil || !bytes.Equal(back, der) {
		t.Errorf("pemBase64 does not round-trip: %v", err)
	}
	if pemBase64("CERTIFICATE", nil) != nil {
		t.Error("pemBase64(nil) is not absent")
	}
}

// FuzzCertificateMember: the certificate member decoder never panics; it
// either returns bytes or a Validation fault naming the member, whose message
// does not echo the input.
func FuzzCertificateMember(f *testing.F) {
	der := testCertificate(f)
	p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	f.Add(base64.StdEncoding.EncodeToString(p))
	f.Add(string(p))
	f.Add(base64.StdEncoding.EncodeToString(der))
	f.Add(base64.StdEncoding.EncodeToString(append(p, p...)))
	f.Add("")
	f.Add("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := certificateMember("Cert", s)
		if err != nil {
			fe := fault.As(err)
			if path, _ := located(t, err); fe.Kind != fault.Validation || path != "Cert" {
				t.Fatalf("fault %+v at %q", fe, path)
			}
			if len(s) > 8 && strings.Contains(fe.Message, s) {
				t.Fatalf("the message echoes the input")
			}
			return
		}
		if len(b) == 0 {
			t.Fatalf("no error and no bytes")
		}
	})
}
