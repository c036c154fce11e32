package ops_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"payhsm/fault"
	"payhsm/hsm/tr31"
	"payhsm/internal/testkeys"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// Known keys.
const (
	// The classic TDES test key, published with KCV 08D7B4 (ANSI X9.24 method)
	// in payment HSM documentation; cross-checked with OpenSSL below.
	xTdes2    = "0123456789ABCDEFFEDCBA9876543210"
	xTdes2KCV = "08D7B4"
	// ANSI X9 TR-31:2018 Annex A.7.4: AES-128 key with CMAC KCV 08793E (as
	// published with the example in openemv/tr31 test/tr31_decrypt_test.c).
	xAes128    = "3F419E1CB7079442AA37474C2EFBF8B8"
	xAes128KCV = "08793E"
	xTdes3     = "89E88CF7931444F334BD7547FC3F380C0123456789ABCDEF"
	// ANSI X9.24-1-2009 Annex A.4 BDK and initial key (republished in
	// openemv/dukpt test/dukpt_tdes_test.c).
	xX924BDK = "0123456789ABCDEFFEDCBA9876543210"
	xX924IK  = "6AC292FAA1315B4D858AB3A3D7D5933A"
	// ANSI X9.24-3-2017 Annex B.1 AES-128 BDK, initial key ID and initial key
	// (republished in openemv/dukpt test/dukpt_aes128_test.c).
	xAesBDK  = "FEDCBA9876543210F1F1F1F1F1F1F1F1"
	xAesIKID = "1234567890123456"
	xAesIK   = "1273671EA26AC29AFA4D1084127652A1"
)

var (
	xMEDWU = keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}
	xMX    = keyspec.ModesOfUse{DeriveKey: true}
)

func xSym(u keyspec.KeyUsage, a keyspec.Algorithm, m keyspec.ModesOfUse) keyspec.Attributes {
	return keyspec.Attributes{Usage: u, Class: keyspec.Symmetric, Algorithm: a, Modes: m}
}

func xUnhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func xWantKind(t *testing.T, err error, k fault.Kind) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", k)
	}
	if got := fault.KindOf(err); got != k {
		t.Fatalf("error %v is %v, want %v", err, got, k)
	}
}

func xKeyCount(t *testing.T, svc *ops.Service) int {
	t.Helper()
	ks, _, err := svc.ListKeys("", ops.Page{Max: 100})
	if err != nil {
		t.Fatal(err)
	}
	return len(ks)
}

// xOpensslKCV computes an X9.24 (TDES) or CMAC (AES) check value with OpenSSL,
// an implementation independent of hsm/kcv.
func xOpensslKCV(t *testing.T, alg keyspec.Algorithm, keyHex string) string {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	var cmd *exec.Cmd
	if alg.IsTDES() {
		k := keyHex
		if len(k) == 32 {
			k += k[:16]
		}
		cmd = exec.Command("openssl", "enc", "-des-ede3", "-K", k, "-nopad")
		cmd.Stdin = bytes.NewReader(make([]byte, 8))
	} else {
		cmd = exec.Command("openssl", "mac", "-cipher", map[int]string{32: "AES-128-CBC", 48: "AES-192-CBC", 64: "AES-256-CBC"}[len(keyHex)],
			"-macopt", "hexkey:"+keyHex, "-binary", "CMAC")
		cmd.Stdin = bytes.NewReader(make([]byte, 16))
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl: %v", err)
	}
	return strings.ToUpper(hex.EncodeToString(out[:3]))
}

// xExchangeFixture holds a service with known keys imported.
type xExchangeFixture struct {
	svc                                         *ops.Service
	kekTDES3, kekAES128, kekAES256, kekTDES2    string
	pekTDES2, dekAES128, dekAES256, bdk, bdkAES string
	mac                                         string
}

// xCreate makes a key inside the service. AES-256 keys can only be created:
// no RSA import key is strong enough to carry one in.
func xCreate(t *testing.T, svc *ops.Service, a keyspec.Attributes) string {
	t.Helper()
	k, err := svc.CreateKey(ops.CreateKeyInput{Attributes: a, Exportable: true})
	if err != nil {
		t.Fatal(err)
	}
	return k.ARN
}

func xNewExchange(t *testing.T) *xExchangeFixture {
	svc := opstest.New(t)
	f := &xExchangeFixture{svc: svc}
	imp := func(a keyspec.Attributes, k string) string { return opstest.Import(t, svc, a, k) }
	f.kekTDES3 = imp(xSym(keyspec.K0, keyspec.TDES3Key, xMEDWU), xTdes3)
	f.kekTDES2 = imp(xSym(keyspec.K0, keyspec.TDES2Key, xMEDWU), xTdes2)
	f.kekAES128 = imp(xSym(keyspec.K1, keyspec.AES128, xMEDWU), xAes128)
	f.kekAES256 = xCreate(t, svc, xSym(keyspec.K1, keyspec.AES256, xMEDWU))
	f.pekTDES2 = imp(xSym(keyspec.P0, keyspec.TDES2Key, xMEDWU), xTdes2)
	f.dekAES128 = imp(xSym(keyspec.D0, keyspec.AES128, xMEDWU), xAes128)
	f.dekAES256 = xCreate(t, svc, xSym(keyspec.D0, keyspec.AES256, xMEDWU))
	f.bdk = imp(xSym(keyspec.B0, keyspec.TDES2Key, xMX), xX924BDK)
	f.bdkAES = imp(xSym(keyspec.B0, keyspec.AES128, xMX), xAesBDK)
	f.mac = imp(xSym(keyspec.M3, keyspec.TDES2Key, keyspec.ModesOfUse{Generate: true, Verify: true}), xTdes2)
	return f
}

func TestExportTR31(t *testing.T) {
	f := xNewExchange(t)
	for _, tc := range []struct {
		name        string
		kek, kekHex string
		key, keyHex string
		alg         keyspec.Algorithm
		version     byte
		header      string // expected header prefix after the length
		kcv         string // published KCV, when there is one
	}{
		{"TDES2 PEK under TDES3 KEK", f.kekTDES3, xTdes3, f.pekTDES2, xTdes2, keyspec.TDES2Key, 'B', "P0TB00E", xTdes2KCV},
		{"TDES2 PEK under TDES2 KEK", f.kekTDES2, xTdes2, f.pekTDES2, xTdes2, keyspec.TDES2Key, 'B', "P0TB00E", xTdes2KCV},
		{"AES128 DEK under AES128 KEK", f.kekAES128, xAes128, f.dekAES128, xAes128, keyspec.AES128, 'D', "D0AB00E", xAes128KCV},
		{"TDES3 KEK under AES128 KEK", f.kekAES128, xAes128, f.kekTDES3, xTdes3, keyspec.TDES3Key, 'D', "K0TB00E", ""},
		{"MAC key under AES128 KEK", f.kekAES128, xAes128, f.mac, xTdes2, keyspec.TDES2Key, 'D', "M3TC00E", xTdes2KCV},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: tc.key, Tr31: &ops.ExportTr31{WrappingKeyIdentifier: tc.kek}})
			if err != nil {
				t.Fatal(err)
			}
			if w.Format != ops.FormatTR31 || w.WrappingKeyARN != tc.kek {
				t.Errorf("format %s, wrapping key %s", w.Format, w.WrappingKeyARN)
			}
			b := w.KeyMaterial
			if b[0] != tc.version || b[5:12] != tc.header {
				t.Errorf("block header %s, want version %c and %s", b[:16], tc.version, tc.header)
			}
			h, key, err := tr31.Unwrap(xUnhex(t, tc.kekHex), b)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(key, xUnhex(t, tc.keyHex)) {
				t.Errorf("unwrapped key differs")
			}
			if len(h.Blocks) != 0 {
				t.Errorf("optional blocks %v leaked into the export", h.Blocks)
			}
			want := xOpensslKCV(t, tc.alg, tc.keyHex)
			if tc.kcv != "" && want != tc.kcv {
				t.Fatalf("OpenSSL KCV %s differs from the published %s", want, tc.kcv)
			}
			if w.KCV != want {
				t.Errorf("KCV %s, OpenSSL says %s", w.KCV, want)
			}
		})
	}
}

// TestExportTR31AES256 round-trips a created AES-256 key through export and
// re-import under a created AES-256 KEK (no known AES-256 key can be brought
// in to check it independently) and checks the KCV is preserved.
func TestExportTR31AES256(t *testing.T) {
	f := xNewExchange(t)
	w, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: f.dekAES256, Tr31: &ops.ExportTr31{WrappingKeyIdentifier: f.kekAES256}})
	if err != nil {
		t.Fatal(err)
	}
	orig, err := f.svc.GetKey(f.dekAES256)
	if err != nil {
		t.Fatal(err)
	}
	if w.KeyMaterial[0] != 'D' || w.KCV != orig.KCV {
		t.Errorf("block %.16s KCV %s, key KCV %s", w.KeyMaterial, w.KCV, orig.KCV)
	}
	back, err := f.svc.ImportKey(ops.ImportKeyInput{Tr31KeyBlock: &ops.ImportTr31KeyBlock{WrappingKeyIdentifier: f.kekAES256, KeyBlock: w.KeyMaterial}})
	if err != nil {
		t.Fatal(err)
	}
	if back.KCV != orig.KCV || back.Attributes != orig.Attributes {
		t.Errorf("re-imported %+v, want attributes %+v KCV %s", back, orig.Attributes, orig.KCV)
	}
}

func TestExportTR31Refused(t *testing.T) {
	f := xNewExchange(t)
	nonExp, err := f.svc.CreateKey(ops.CreateKeyInput{Attributes: xSym(keyspec.D0, keyspec.AES128, xMEDWU), Exportable: false})
	if err != nil {
		t.Fatal(err)
	}
	disabledKEK := xCreate(t, f.svc, xSym(keyspec.K0, keyspec.AES256, xMEDWU))
	if _, err := f.svc.StopKeyUsage(disabledKEK); err != nil {
		t.Fatal(err)
	}
	encOnly := xCreate(t, f.svc, xSym(keyspec.K0, keyspec.AES256, keyspec.ModesOfUse{Decrypt: true, Unwrap: true}))
	for _, tc := range []struct {
		name, key, kek string
		kind           fault.Kind
	}{
		{"TDES3 under TDES2 (weaker)", f.kekTDES3, f.kekTDES2, fault.Validation},
		{"AES128 under TDES3 (weaker)", f.dekAES128, f.kekTDES3, fault.Validation},
		{"AES256 under AES128 (weaker)", f.dekAES256, f.kekAES128, fault.Validation},
		{"non-exportable key", nonExp.ARN, f.kekAES256, fault.Validation},
		{"wrapping key is not a KEK", f.dekAES128, f.dekAES256, fault.Validation},
		{"wrapping key cannot wrap", f.dekAES128, encOnly, fault.Validation},
		{"disabled wrapping key", f.dekAES128, disabledKEK, fault.Validation},
		{"key under itself", f.kekAES256, f.kekAES256, fault.Validation},
		{"unknown key", "alias/nothing", f.kekAES256, fault.NotFound},
		{"unknown wrapping key", f.dekAES128, "alias/nothing", fault.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: tc.key, Tr31: &ops.ExportTr31{WrappingKeyIdentifier: tc.kek}})
			xWantKind(t, err, tc.kind)
		})
	}
}

func TestExportKeyBlockHeaders(t *testing.T) {
	f := xNewExchange(t)
	kbpk := xUnhex(t, xAes128)
	for _, tc := range []struct {
		name    string
		key     string
		h       ops.KeyBlockHeaders
		mode    byte
		exp     byte
		version string
		blocks  []tr31.OptionalBlock
		bad     bool
	}{
		{name: "defaults", key: f.pekTDES2, mode: 'B', exp: 'E', version: "00"},
		{name: "restrict to encrypt+wrap", key: f.pekTDES2, h: ops.KeyBlockHeaders{Modes: &keyspec.ModesOfUse{Encrypt: true, Wrap: true}}, mode: 'E', exp: 'E', version: "00"},
		{name: "restrict MAC to verify", key: f.mac, h: ops.KeyBlockHeaders{Modes: &keyspec.ModesOfUse{Verify: true}}, mode: 'V', exp: 'E', version: "00"},
		{name: "non-exportable, version 02, BI block (guide example)", key: f.bdk,
			h:    ops.KeyBlockHeaders{Exportability: keyspec.NonExportable, KeyVersion: "02", OptionalBlocks: map[string]string{"BI": "00ABCDEFABCD"}},
			mode: 'X', exp: 'N', version: "02", blocks: []tr31.OptionalBlock{{ID: "BI", Data: "00ABCDEFABCD"}}},
		{name: "sensitive, blocks sorted", key: f.dekAES128, h: ops.KeyBlockHeaders{Exportability: keyspec.Sensitive, OptionalBlocks: map[string]string{"TS": "20260101", "DA": "x1"}},
			mode: 'B', exp: 'S', version: "00", blocks: []tr31.OptionalBlock{{ID: "DA", Data: "x1"}, {ID: "TS", Data: "20260101"}}},
		{name: "widen modes", key: f.mac, h: ops.KeyBlockHeaders{Modes: &keyspec.ModesOfUse{Generate: true, Verify: true, Encrypt: true}}, bad: true},
		{name: "no restrictions", key: f.pekTDES2, h: ops.KeyBlockHeaders{Modes: &keyspec.ModesOfUse{NoRestrictions: true}}, bad: true},
		{name: "modes without a code", key: f.pekTDES2, h: ops.KeyBlockHeaders{Modes: &keyspec.ModesOfUse{Encrypt: true, Unwrap: true}}, bad: true},
		{name: "bad version", key: f.pekTDES2, h: ops.KeyBlockHeaders{KeyVersion: "a1"}, bad: true},
		{name: "bad exportability", key: f.pekTDES2, h: ops.KeyBlockHeaders{Exportability: "MAYBE"}, bad: true},
		{name: "PB is the service's", key: f.pekTDES2, h: ops.KeyBlockHeaders{OptionalBlocks: map[string]string{"PB": "00"}}, bad: true},
		{name: "bad block id", key: f.pekTDES2, h: ops.KeyBlockHeaders{OptionalBlocks: map[string]string{"b1": "00"}}, bad: true},
		{name: "bad block value", key: f.pekTDES2, h: ops.KeyBlockHeaders{OptionalBlocks: map[string]string{"DA": "a-b"}}, bad: true},
		{name: "113 characters", key: f.pekTDES2, h: ops.KeyBlockHeaders{OptionalBlocks: map[string]string{"DA": strings.Repeat("A", 100), "DB": strings.Repeat("B", 5)}}, bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.h
			w, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: tc.key, Tr31: &ops.ExportTr31{WrappingKeyIdentifier: f.kekAES128, Headers: &h}})
			if tc.bad {
				xWantKind(t, err, fault.Validation)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := tr31.Unwrap(kbpk, w.KeyMaterial)
			if err != nil {
				t.Fatal(err)
			}
			if got.ModeOfUse != tc.mode || got.Exportability != tc.exp || got.KeyVersion != tc.version {
				t.Errorf("mode %c exportability %c version %s, want %c %c %s", got.ModeOfUse, got.Exportability, got.KeyVersion, tc.mode, tc.exp, tc.version)
			}
			if len(got.Blocks) != len(tc.blocks) {
				t.Fatalf("blocks %v, want %v", got.Blocks, tc.blocks)
			}
			for i := range tc.blocks {
				if got.Blocks[i] != tc.blocks[i] {
					t.Errorf("block %d %v, want %v", i, got.Blocks[i], tc.blocks[i])
				}
			}
		})
	}
	// The 112-character limit itself is allowed (108 value + 4).
	h := ops.KeyBlockHeaders{OptionalBlocks: map[string]string{"DA": strings.Repeat("A", 108)}}
	if _, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: f.pekTDES2, Tr31: &ops.ExportTr31{WrappingKeyIdentifier: f.kekAES128, Headers: &h}}); err != nil {
		t.Errorf("112 characters: %v", err)
	}
}

func TestExportKCVAlgorithm(t *testing.T) {
	f := xNewExchange(t)
	w, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: f.pekTDES2, KCVAlgorithm: keyspec.KCVCMAC, Tr31: &ops.ExportTr31{WrappingKeyIdentifier: f.kekTDES3}})
	if err != nil {
		t.Fatal(err)
	}
	// TDES CMAC KCV by OpenSSL: CMAC of 8 zero bytes under the key.
	cmd := exec.Command("openssl", "mac", "-cipher", "DES-EDE3-CBC", "-macopt", "hexkey:"+xTdes2+xTdes2[:16], "-binary", "CMAC")
	cmd.Stdin = bytes.NewReader(make([]byte, 8))
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("openssl: %v", err)
	}
	if want := strings.ToUpper(hex.EncodeToString(out[:3])); w.KCV != want || w.KCVAlgorithm != keyspec.KCVCMAC {
		t.Errorf("KCV %s %s, OpenSSL CMAC %s", w.KCV, w.KCVAlgorithm, want)
	}
	_, err = f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: f.dekAES128, KCVAlgorithm: keyspec.KCVANSIX924, Tr31: &ops.ExportTr31{WrappingKeyIdentifier: f.kekAES128}})
	xWantKind(t, err, fault.Validation)
}

func TestExportDukptInitialKey(t *testing.T) {
	f := xNewExchange(t)
	for _, tc := range []struct {
		name, bdk, kek, kekHex, ksn, ik, block, blockData string
		alg                                               keyspec.Algorithm
	}{
		{"TDES X9.24-1 A.4", f.bdk, f.kekTDES3, xTdes3, "FFFF9876543210E00008", xX924IK, "KS", "FFFF9876543210E00000", keyspec.TDES2Key},
		{"AES X9.24-3 B.1", f.bdkAES, f.kekAES128, xAes128, xAesIKID + "00000001", xAesIK, "IK", xAesIKID, keyspec.AES128},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ksn := xUnhex(t, tc.ksn)
			w, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: tc.bdk, DukptKSN: ksn, Tr31: &ops.ExportTr31{WrappingKeyIdentifier: tc.kek}})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ksn, xUnhex(t, tc.ksn)) {
				t.Errorf("the caller's KSN became %X", ksn)
			}
			h, key, err := tr31.Unwrap(xUnhex(t, tc.kekHex), w.KeyMaterial)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(key, xUnhex(t, tc.ik)) {
				t.Errorf("initial key %X, want %s", key, tc.ik)
			}
			if h.KeyUsage != "B1" || h.ModeOfUse != 'X' || h.Exportability != 'S' || len(h.Blocks) != 1 || h.Blocks[0].ID != tc.block || h.Blocks[0].Data != tc.blockData {
				t.Errorf("header %+v", h)
			}
			if want := xOpensslKCV(t, tc.alg, tc.ik); w.KCV != want {
				t.Errorf("KCV %s, OpenSSL %s", w.KCV, want)
			}
		})
	}
	for _, tc := range []struct{ name, key, ksn string }{
		{"not a BDK", f.pekTDES2, "FFFF9876543210E00008"},
		{"AES KSN for a TDES BDK", f.bdk, xAesIKID + "00000001"},
		{"TDES KSN for an AES BDK", f.bdkAES, "FFFF9876543210E00008"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: tc.key, DukptKSN: xUnhex(t, tc.ksn), Tr31: &ops.ExportTr31{WrappingKeyIdentifier: f.kekAES256}})
			xWantKind(t, err, fault.Validation)
		})
	}
}

// --- certificates (the test acts as the partner's CA with crypto/x509) ---

type xTestCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func xNewCert(t testing.TB, parent *xTestCA, pub crypto.PublicKey, signer crypto.Signer, isCA bool, usage x509.KeyUsage, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	n, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: n, Subject: pkix.Name{CommonName: "partner " + n.String()}, NotBefore: notBefore, NotAfter: notAfter,
		IsCA: isCA, BasicConstraintsValid: true, KeyUsage: usage}
	issuer, issuerKey := tmpl, signer
	if parent != nil {
		issuer, issuerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, pub, issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// xRsaKey returns a committed test-only key (ops/testdata), distinct from the
// others of the same test.
func xRsaKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	return testkeys.RSA(t, bits)
}

func xNewTestCA(t testing.TB, parent *xTestCA) *xTestCA {
	k := xRsaKey(t, 2048)
	now := time.Now()
	return &xTestCA{cert: xNewCert(t, parent, k.Public(), k, true, x509.KeyUsageCertSign, now.Add(-time.Hour), now.Add(365*24*time.Hour)), key: k}
}

var xCaAttrs = keyspec.Attributes{Usage: keyspec.S0, Class: keyspec.PublicKey, Algorithm: keyspec.RSA2048, Modes: keyspec.ModesOfUse{Verify: true}}

func TestImportCertificates(t *testing.T) {
	svc := opstest.New(t)
	root := xNewTestCA(t, nil)
	inter := xNewTestCA(t, root)
	other := xNewTestCA(t, nil)
	rootARN, err := svc.ImportCertificate(ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: root.cert.Raw})
	if err != nil {
		t.Fatal(err)
	}
	if rootARN.Attributes.Class != keyspec.PublicKey || rootARN.KCVAlgorithm != keyspec.KCVSHA1 || len(rootARN.KCV) != 8 || rootARN.Origin != ops.OriginExternal {
		t.Errorf("root key %+v", rootARN)
	}
	interKey, err := svc.ImportCertificate(ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: inter.cert.Raw, CAIdentifier: rootARN.ARN})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	leafKey := xRsaKey(t, 2048)
	leaf := xNewCert(t, inter, leafKey.Public(), nil, false, x509.KeyUsageKeyEncipherment, now.Add(-time.Hour), now.Add(24*time.Hour))
	d1 := keyspec.Attributes{Usage: keyspec.D1, Class: keyspec.PublicKey, Algorithm: keyspec.RSA2048, Modes: keyspec.ModesOfUse{Encrypt: true, Wrap: true}}
	if _, err := svc.ImportCertificate(ops.ImportCertificateInput{Attributes: d1, Certificate: leaf.Raw, CAIdentifier: interKey.ARN}); err != nil {
		t.Fatalf("leaf under intermediate: %v", err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	expired := xNewCert(t, root, leafKey.Public(), nil, false, x509.KeyUsageKeyEncipherment, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	notCA := xNewCert(t, nil, leafKey.Public(), leafKey, false, x509.KeyUsageDigitalSignature, now.Add(-time.Hour), now.Add(time.Hour))
	ecLeaf := xNewCert(t, root, ecKey.Public(), nil, false, x509.KeyUsageKeyAgreement, now.Add(-time.Hour), now.Add(time.Hour))
	signLeaf := xNewCert(t, root, leafKey.Public(), nil, false, x509.KeyUsageDigitalSignature, now.Add(-time.Hour), now.Add(time.Hour))
	before := xKeyCount(t, svc)
	for _, tc := range []struct {
		name string
		in   ops.ImportCertificateInput
		kind fault.Kind
	}{
		{"root not self-signed", ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: inter.cert.Raw}, fault.Validation},
		{"root not a CA", ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: notCA.Raw}, fault.Validation},
		{"root algorithm mismatch", ops.ImportCertificateInput{Attributes: keyspec.Attributes{Usage: keyspec.S0, Class: keyspec.PublicKey, Algorithm: keyspec.RSA4096, Modes: keyspec.ModesOfUse{Verify: true}}, Certificate: root.cert.Raw}, fault.Validation},
		{"root with D1 usage", ops.ImportCertificateInput{Attributes: d1, Certificate: root.cert.Raw}, fault.Validation},
		{"garbage", ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: []byte("not a cert")}, fault.Validation},
		{"leaf from another CA", ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: other.cert.Raw, CAIdentifier: rootARN.ARN}, fault.Validation},
		{"expired leaf", ops.ImportCertificateInput{Attributes: d1, Certificate: expired.Raw, CAIdentifier: rootARN.ARN}, fault.Validation},
		{"leaf usage mismatch", ops.ImportCertificateInput{Attributes: d1, Certificate: signLeaf.Raw, CAIdentifier: rootARN.ARN}, fault.Validation},
		{"leaf algorithm mismatch", ops.ImportCertificateInput{Attributes: d1, Certificate: ecLeaf.Raw, CAIdentifier: rootARN.ARN}, fault.Validation},
		{"issuer is not a CA key", ops.ImportCertificateInput{Attributes: d1, Certificate: leaf.Raw, CAIdentifier: opstest.Import(t, svc, xSym(keyspec.K0, keyspec.AES128, xMEDWU), xAes128)}, fault.Validation},
		{"unknown issuer", ops.ImportCertificateInput{Attributes: d1, Certificate: leaf.Raw, CAIdentifier: "alias/none"}, fault.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := svc.ImportCertificate(tc.in)
			xWantKind(t, err, tc.kind)
		})
	}
	if n := xKeyCount(t, svc); n != before+1 { // +1: the K0 imported as a non-CA issuer
		t.Errorf("%d keys after refused imports, want %d", n, before+1)
	}
	k3 := keyspec.Attributes{Usage: keyspec.K3, Class: keyspec.PublicKey, Algorithm: keyspec.ECCP256, Modes: keyspec.ModesOfUse{DeriveKey: true}}
	if _, err := svc.ImportCertificate(ops.ImportCertificateInput{Attributes: k3, Certificate: ecLeaf.Raw, CAIdentifier: rootARN.ARN}); err != nil {
		t.Errorf("ECC leaf: %v", err)
	}
	// Disabling the root breaks trust in everything under it.
	if _, err := svc.StopKeyUsage(rootARN.ARN); err != nil {
		t.Fatal(err)
	}
	_, err = svc.ImportCertificate(ops.ImportCertificateInput{Attributes: d1, Certificate: leaf.Raw, CAIdentifier: interKey.ARN})
	xWantKind(t, err, fault.Validation)
}

// xOpensslOAEPDecrypt decrypts an RSA-OAEP cryptogram with OpenSSL (the partner HSM).
func xOpensslOAEPDecrypt(t *testing.T, key *rsa.PrivateKey, md string, ct []byte) []byte {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	kf, cf := filepath.Join(dir, "k.pem"), filepath.Join(dir, "c.bin")
	if err := os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cf, ct, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "pkeyutl", "-decrypt", "-inkey", kf, "-in", cf,
		"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:"+md, "-pkeyopt", "rsa_mgf1_md:"+md).Output()
	if err != nil {
		t.Fatalf("openssl pkeyutl: %v", err)
	}
	return out
}

func TestExportKeyCryptogram(t *testing.T) {
	f := xNewExchange(t)
	root := xNewTestCA(t, nil)
	ca, err := f.svc.ImportCertificate(ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: root.cert.Raw})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	k3072, k2048 := xRsaKey(t, 3072), xRsaKey(t, 2048)
	leaf3072 := xNewCert(t, root, k3072.Public(), nil, false, x509.KeyUsageKeyEncipherment, now.Add(-time.Hour), now.Add(24*time.Hour))
	leaf2048 := xNewCert(t, root, k2048.Public(), nil, false, 0, now.Add(-time.Hour), now.Add(24*time.Hour))
	for _, tc := range []struct {
		name, key, keyHex, md string
		spec                  ops.WrappingSpec
		priv                  *rsa.PrivateKey
		cert                  *x509.Certificate
		alg                   keyspec.Algorithm
	}{
		{"AES128 to RSA3072 SHA-256", f.dekAES128, xAes128, "sha256", ops.OAEPSHA256, k3072, leaf3072, keyspec.AES128},
		{"TDES2 to RSA2048 SHA-512", f.pekTDES2, xTdes2, "sha512", ops.OAEPSHA512, k2048, leaf2048, keyspec.TDES2Key},
		{"TDES3 KEK to RSA2048 SHA-256", f.kekTDES3, xTdes3, "sha256", ops.OAEPSHA256, k2048, leaf2048, keyspec.TDES3Key},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: tc.key, KeyCryptogram: &ops.ExportKeyCryptogram{CAIdentifier: ca.ARN, Certificate: tc.cert.Raw, WrappingSpec: tc.spec}})
			if err != nil {
				t.Fatal(err)
			}
			if w.Format != ops.FormatKeyCryptogram || w.WrappingKeyARN != ca.ARN {
				t.Errorf("format %s wrapping %s", w.Format, w.WrappingKeyARN)
			}
			if w.KeyMaterial != "" {
				t.Errorf("a key cryptogram in KeyMaterial: %q", w.KeyMaterial)
			}
			got := xOpensslOAEPDecrypt(t, tc.priv, tc.md, w.Cryptogram)
			if !bytes.Equal(got, xUnhex(t, tc.keyHex)) {
				t.Errorf("OpenSSL unwrapped a different key")
			}
			if want := xOpensslKCV(t, tc.alg, tc.keyHex); w.KCV != want {
				t.Errorf("KCV %s, OpenSSL %s", w.KCV, want)
			}
		})
	}
	other := xNewTestCA(t, nil)
	foreign := xNewCert(t, other, k3072.Public(), nil, false, x509.KeyUsageKeyEncipherment, now.Add(-time.Hour), now.Add(24*time.Hour))
	expired := xNewCert(t, root, k3072.Public(), nil, false, x509.KeyUsageKeyEncipherment, now.Add(-48*time.Hour), now.Add(-time.Hour))
	signOnly := xNewCert(t, root, k3072.Public(), nil, false, x509.KeyUsageDigitalSignature, now.Add(-time.Hour), now.Add(24*time.Hour))
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecLeaf := xNewCert(t, root, ecKey.Public(), nil, false, 0, now.Add(-time.Hour), now.Add(24*time.Hour))
	nonExp, err := f.svc.CreateKey(ops.CreateKeyInput{Attributes: xSym(keyspec.D0, keyspec.AES128, xMEDWU)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, key, ca string
		cert          *x509.Certificate
		kind          fault.Kind
	}{
		{"AES128 to RSA2048 (weaker)", f.dekAES128, ca.ARN, leaf2048, fault.Validation},
		{"AES256 to RSA3072 (weaker)", f.dekAES256, ca.ARN, leaf3072, fault.Validation},
		{"certificate from another CA", f.dekAES128, ca.ARN, foreign, fault.Validation},
		{"expired certificate", f.dekAES128, ca.ARN, expired, fault.Validation},
		{"signing-only certificate", f.dekAES128, ca.ARN, signOnly, fault.Validation},
		{"ECC certificate", f.dekAES128, ca.ARN, ecLeaf, fault.Validation},
		{"non-exportable key", nonExp.ARN, ca.ARN, leaf3072, fault.Validation},
		{"CA is a symmetric key", f.dekAES128, f.kekAES256, leaf3072, fault.Validation},
		{"unknown CA", f.dekAES128, "alias/none", leaf3072, fault.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: tc.key, KeyCryptogram: &ops.ExportKeyCryptogram{CAIdentifier: tc.ca, Certificate: tc.cert.Raw}})
			xWantKind(t, err, tc.kind)
		})
	}
	// Not a certificate, an unknown OAEP variant: refused, about their subjects.
	for _, tc := range []struct {
		name string
		x    ops.ExportKeyCryptogram
		want fault.Subject
	}{
		{"not a certificate", ops.ExportKeyCryptogram{CAIdentifier: ca.ARN, Certificate: []byte("not a cert")}, fault.SubjectCertificate},
		{"no certificate", ops.ExportKeyCryptogram{CAIdentifier: ca.ARN}, fault.SubjectCertificate},
		{"unknown wrapping spec", ops.ExportKeyCryptogram{CAIdentifier: ca.ARN, Certificate: leaf3072.Raw, WrappingSpec: 9}, fault.SubjectWrappingSpec},
		{"certificate from another CA", ops.ExportKeyCryptogram{CAIdentifier: ca.ARN, Certificate: foreign.Raw}, fault.SubjectCertificate},
		{"CA is a symmetric key", ops.ExportKeyCryptogram{CAIdentifier: f.kekAES256, Certificate: leaf3072.Raw}, fault.SubjectCertificateAuthority},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: f.dekAES128, KeyCryptogram: &tc.x})
			xWantSubject(t, err, tc.want)
		})
	}
}

// xWantSubject fails unless err is a Validation fault about subject (the
// edges name it).
func xWantSubject(t *testing.T, err error, subject fault.Subject) {
	t.Helper()
	f := fault.As(err)
	if err == nil || f.Kind != fault.Validation || f.Subject != subject {
		t.Fatalf("err = %v (kind %v, subject %d); want a Validation fault about subject %d", err, f.Kind, f.Subject, subject)
	}
}

func TestGetParametersForExport(t *testing.T) {
	svc := opstest.New(t)
	p, err := svc.GetParametersForExport(ops.MaterialTR34, keyspec.RSA2048, false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.Token, "export-token-") || p.Algorithm != keyspec.RSA2048 {
		t.Fatalf("parameters %+v", p)
	}
	cert, err := x509.ParseCertificate(p.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(p.CertificateChain)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignatureFrom(root); err != nil || cert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("signing certificate: %v, usage %v", err, cert.KeyUsage)
	}
	if d := time.Until(p.ValidUntil); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("valid for %v, want 30 days", d)
	}
	again, err := svc.GetParametersForExport(ops.MaterialTR34, keyspec.RSA2048, true)
	if err != nil || again.Token != p.Token {
		t.Errorf("reuse gave %v, %v; want token %s", again, err, p.Token)
	}
	fresh, err := svc.GetParametersForExport(ops.MaterialTR34, keyspec.RSA2048, false)
	if err != nil || fresh.Token == p.Token {
		t.Errorf("no reuse gave the same token")
	}
	other, err := svc.GetParametersForExport(ops.MaterialTR34, keyspec.RSA3072, true)
	if err != nil || other.Token == fresh.Token {
		t.Errorf("reuse across algorithms")
	}
	for _, tc := range []struct {
		typ  ops.KeyMaterialType
		alg  keyspec.Algorithm
		want fault.Subject
	}{
		{ops.MaterialKeyCryptogram, keyspec.RSA2048, fault.SubjectKeyMaterialType},
		{ops.MaterialTR31, keyspec.RSA2048, fault.SubjectKeyMaterialType},
		{0, keyspec.RSA2048, fault.SubjectKeyMaterialType},
		{ops.MaterialTR34, keyspec.ECCP256, fault.SubjectTokenKeyAlgorithm},
		{ops.MaterialTR34, keyspec.AES128, fault.SubjectTokenKeyAlgorithm},
	} {
		_, err := svc.GetParametersForExport(tc.typ, tc.alg, false)
		xWantSubject(t, err, tc.want)
	}
	// An export token is not an import token.
	_, err = svc.ImportKey(ops.ImportKeyInput{KeyCryptogram: &ops.ImportKeyCryptogram{Attributes: xSym(keyspec.D0, keyspec.AES128, xMEDWU), ImportToken: p.Token, Cryptogram: []byte{0}}})
	xWantSubject(t, err, fault.SubjectToken)
}

// BenchmarkExportKeyTR31 exports a TDES PEK under a TDES KEK (the common
// working-key export); BenchmarkExportKeyCryptogram does an RSA-3072 OAEP
// wrap with the partner's certificate chain checked.
func BenchmarkExportKeyTR31(b *testing.B) {
	svc := opstest.New(b)
	kek := opstest.Import(b, svc, xSym(keyspec.K0, keyspec.TDES3Key, xMEDWU), xTdes3)
	pek := opstest.Import(b, svc, xSym(keyspec.P0, keyspec.TDES2Key, xMEDWU), xTdes2)
	in := ops.ExportKeyInput{KeyIdentifier: pek, Tr31: &ops.ExportTr31{WrappingKeyIdentifier: kek}}
	b.ResetTimer()
	for b.Loop() {
		if _, err := svc.ExportKey(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExportKeyCryptogram(b *testing.B) {
	svc := opstest.New(b)
	pek := opstest.Import(b, svc, xSym(keyspec.P0, keyspec.TDES2Key, xMEDWU), xTdes2)
	ca := xNewTestCA(b, nil)
	caKey, err := svc.ImportCertificate(ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: ca.cert.Raw})
	if err != nil {
		b.Fatal(err)
	}
	k := xRsaKey(b, 3072)
	now := time.Now()
	leaf := xNewCert(b, ca, k.Public(), nil, false, x509.KeyUsageKeyEncipherment, now.Add(-time.Hour), now.Add(time.Hour))
	in := ops.ExportKeyInput{KeyIdentifier: pek, KeyCryptogram: &ops.ExportKeyCryptogram{CAIdentifier: caKey.ARN, Certificate: leaf.Raw}}
	b.ResetTimer()
	for b.Loop() {
		if _, err := svc.ExportKey(in); err != nil {
			b.Fatal(err)
		}
	}
}
