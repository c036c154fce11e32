package ops_test

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"payhsm/fault"
	"payhsm/hsm/tr34"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// The partner KDH/KRD in these tests uses hsm/tr34, whose tokens
// TestPartnerTokenOpens and TestBuildOpensAtPartner show interoperable with an
// encoding/asn1 implementation of the AWS samples' layout.

func xParseCert(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestImportTR34(t *testing.T) {
	svc := opstest.New(t)
	ca := xNewTestCA(t, nil)
	caKey, err := svc.ImportCertificate(ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: ca.cert.Raw})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	kdhKey := xRsaKey(t, 2048)
	kdh := xNewCert(t, ca, kdhKey.Public(), nil, false, x509.KeyUsageDigitalSignature, now.Add(-time.Hour), now.Add(24*time.Hour))
	p2048, err := svc.GetParametersForImport(ops.MaterialTR34, keyspec.RSA2048, false)
	if err != nil {
		t.Fatal(err)
	}
	krd := xParseCert(t, p2048.Certificate)
	nonce := []byte{0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6, 0x07, 0x18}
	build := func(key []byte, header string, kdhCert *x509.Certificate, kdhPriv *rsa.PrivateKey, krdCert *x509.Certificate) []byte {
		der, err := tr34.Build(tr34.BuildInput{Key: key, Header: header, Nonce: nonce, KDH: kdhCert, KDHKey: kdhPriv, KRD: krdCert})
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	in := func(block []byte, token string, nonce []byte) ops.ImportTr34 {
		return ops.ImportTr34{CAIdentifier: caKey.ARN, SigningCertificate: kdh.Raw, ImportToken: token, KeyBlock: block, RandomNonce: nonce}
	}
	good := build(xUnhex(t, xTdes3), "D0000K0TB00E0000", kdh, kdhKey, krd)
	k, err := svc.ImportKeyTR34(ops.ImportKeyInput{}, in(good, p2048.Token, nonce))
	if err != nil {
		t.Fatal(err)
	}
	if want := xOpensslKCV(t, keyspec.TDES3Key, xTdes3); k.KCV != want || k.Attributes.Usage != keyspec.K0 || k.Attributes.Algorithm != keyspec.TDES3Key ||
		k.Attributes.Modes != xMEDWU || !k.Exportable || k.Origin != ops.OriginExternal {
		t.Errorf("imported %+v, KCV want %s", k, want)
	}

	// Refusals: each stores nothing.
	otherCA := xNewTestCA(t, nil)
	foreignKDH := xNewCert(t, otherCA, kdhKey.Public(), nil, false, x509.KeyUsageDigitalSignature, now.Add(-time.Hour), now.Add(24*time.Hour))
	impostor := xRsaKey(t, 2048)
	pCrypt, err := svc.GetParametersForImport(ops.MaterialKeyCryptogram, keyspec.RSA2048, false)
	if err != nil {
		t.Fatal(err)
	}
	p3072, err := svc.GetParametersForImport(ops.MaterialTR34, keyspec.RSA3072, false)
	if err != nil {
		t.Fatal(err)
	}
	exp, err := svc.GetParametersForExport(ops.MaterialTR34, keyspec.RSA2048, false)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(good)
	tampered[len(tampered)-2] ^= 0x01 // inside the signature
	before := xKeyCount(t, svc)
	for _, tc := range []struct {
		name string
		in   ops.ImportTr34
		kind fault.Kind
	}{
		{"wrong nonce", in(good, p2048.Token, make([]byte, 8)), fault.Validation},
		{"no nonce", in(good, p2048.Token, nil), fault.Validation},
		{"tampered signature", in(tampered, p2048.Token, nonce), fault.Validation},
		{"signed by an impostor", in(build(xUnhex(t, xTdes3), "D0000K0TB00E0000", kdh, impostor, krd), p2048.Token, nonce), fault.Validation},
		{"encrypted to another token", in(good, p3072.Token, nonce), fault.Validation},
		{"KEY_CRYPTOGRAM token", in(good, pCrypt.Token, nonce), fault.Validation},
		{"export token", in(good, exp.Token, nonce), fault.Validation},
		{"unknown token", in(good, "import-token-aaaaaaaaaaaaaaaa", nonce), fault.Validation},
		{"AES-128 under RSA-2048 (weaker)", in(build(xUnhex(t, xAes128), "D0000K0AB00E0000", kdh, kdhKey, krd), p2048.Token, nonce), fault.Validation},
		{"unsupported usage", in(build(xUnhex(t, xTdes3), "D0000ZZTB00E0000", kdh, kdhKey, krd), p2048.Token, nonce), fault.Validation},
		{"garbage", in(xUnhex(t, "3003020101"), p2048.Token, nonce), fault.Validation},
		{"empty", in(nil, p2048.Token, nonce), fault.Validation},
		{"a CA certificate as the KRD key pair", func() ops.ImportTr34 {
			x := in(good, "", nonce)
			x.WrappingKeyIdentifier = caKey.ARN
			return x
		}(), fault.Validation},
		{"KDH from another CA", func() ops.ImportTr34 {
			x := in(good, p2048.Token, nonce)
			x.SigningCertificate = foreignKDH.Raw
			return x
		}(), fault.Validation},
		{"unknown CA", func() ops.ImportTr34 {
			x := in(good, p2048.Token, nonce)
			x.CAIdentifier = "alias/none"
			return x
		}(), fault.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := svc.ImportKeyTR34(ops.ImportKeyInput{}, tc.in)
			xWantKind(t, err, tc.kind)
		})
	}
	if n := xKeyCount(t, svc); n != before {
		t.Errorf("%d keys after refused imports, want %d", n, before)
	}
}

func TestExportTR34(t *testing.T) {
	f := xNewExchange(t)
	ca := xNewTestCA(t, nil)
	caKey, err := f.svc.ImportCertificate(ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: ca.cert.Raw})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	krd2048, krd3072 := xRsaKey(t, 2048), xRsaKey(t, 3072)
	cert2048 := xNewCert(t, ca, krd2048.Public(), nil, false, x509.KeyUsageKeyEncipherment, now.Add(-time.Hour), now.Add(24*time.Hour))
	cert3072 := xNewCert(t, ca, krd3072.Public(), nil, false, x509.KeyUsageKeyEncipherment, now.Add(-time.Hour), now.Add(24*time.Hour))
	p, err := f.svc.GetParametersForExport(ops.MaterialTR34, keyspec.RSA2048, false)
	if err != nil {
		t.Fatal(err)
	}
	kdh := xParseCert(t, p.Certificate)
	const nonceHex = "0102030405060708090A0B0C0D0E0F10"
	for _, tc := range []struct {
		name, key, keyHex string
		krd               *x509.Certificate
		krdKey            *rsa.PrivateKey
		h                 *ops.KeyBlockHeaders
		header            string
		alg               keyspec.Algorithm
	}{
		{"TDES3 KEK to RSA-2048", f.kekTDES3, xTdes3, cert2048, krd2048, nil, "D0000K0TB00E0000", keyspec.TDES3Key},
		{"AES-128 KEK to RSA-3072, headers", f.kekAES128, xAes128, cert3072, krd3072,
			&ops.KeyBlockHeaders{Exportability: keyspec.NonExportable, KeyVersion: "01", OptionalBlocks: map[string]string{"DA": "x9"}},
			"D0000K1AB01N0100DA06x9", keyspec.AES128},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: tc.key, Tr34: &ops.ExportTr34{CAIdentifier: caKey.ARN, Certificate: tc.krd.Raw,
				ExportToken: p.Token, RandomNonce: xUnhex(t, nonceHex), Headers: tc.h}})
			if err != nil {
				t.Fatal(err)
			}
			if w.Format != ops.FormatTR34 || w.WrappingKeyARN != caKey.ARN {
				t.Errorf("format %s wrapping %s", w.Format, w.WrappingKeyARN)
			}
			tok, err := tr34.Parse(w.Cryptogram)
			if err != nil {
				t.Fatal(err)
			}
			if err := tok.Verify(kdh.PublicKey.(*rsa.PublicKey)); err != nil {
				t.Fatal(err)
			}
			key, err := tok.Open(tc.krdKey)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(key, xUnhex(t, tc.keyHex)) || tok.Header != tc.header || !strings.EqualFold(hex.EncodeToString(tok.Nonce), nonceHex) {
				t.Errorf("header %q nonce %X", tok.Header, tok.Nonce)
			}
			if want := xOpensslKCV(t, tc.alg, tc.keyHex); w.KCV != want {
				t.Errorf("KCV %s, OpenSSL %s", w.KCV, want)
			}
		})
	}
	imp, err := f.svc.GetParametersForImport(ops.MaterialTR34, keyspec.RSA2048, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		x    ops.ExportTr34
		key  string
	}{
		{"AES-128 to RSA-2048 (weaker)", ops.ExportTr34{CAIdentifier: caKey.ARN, Certificate: cert2048.Raw, ExportToken: p.Token}, f.kekAES128},
		{"AES-256 key", ops.ExportTr34{CAIdentifier: caKey.ARN, Certificate: cert3072.Raw, ExportToken: p.Token}, f.dekAES256},
		{"no token", ops.ExportTr34{CAIdentifier: caKey.ARN, Certificate: cert2048.Raw}, f.kekTDES3},
		{"import token", ops.ExportTr34{CAIdentifier: caKey.ARN, Certificate: cert2048.Raw, ExportToken: imp.Token}, f.kekTDES3},
		{"a KEK as the signing key pair", ops.ExportTr34{CAIdentifier: caKey.ARN, Certificate: cert2048.Raw, SigningKeyIdentifier: f.kekAES128, SigningKeyCertificate: cert2048.Raw}, f.kekTDES3},
		{"signing certificate without its key pair", ops.ExportTr34{CAIdentifier: caKey.ARN, Certificate: cert2048.Raw, ExportToken: p.Token, SigningKeyCertificate: cert2048.Raw}, f.kekTDES3},
		{"bad nonce", ops.ExportTr34{CAIdentifier: caKey.ARN, Certificate: cert2048.Raw, ExportToken: p.Token, RandomNonce: []byte{1, 2}}, f.kekTDES3},
		{"certificate from another CA", ops.ExportTr34{CAIdentifier: caKey.ARN, Certificate: xNewCert(t, xNewTestCA(t, nil), krd2048.Public(), nil, false, 0, now.Add(-time.Hour), now.Add(time.Hour)).Raw, ExportToken: p.Token}, f.kekTDES3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := tc.x
			_, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: tc.key, Tr34: &x})
			xWantKind(t, err, fault.Validation)
		})
	}
}

// xOwnPair creates one of the customer's RSA key pairs and has the test CA
// certify it from the appliance's CSR, as the guide's "Bring Your Own
// Certificate Authority" flow does (CreateKey, GetCertificateSigningRequest,
// the CA signs).
func xOwnPair(t *testing.T, svc *ops.Service, ca *xTestCA, u keyspec.KeyUsage, alg keyspec.Algorithm, m keyspec.ModesOfUse, ku x509.KeyUsage) (string, *x509.Certificate) {
	t.Helper()
	k, err := svc.CreateKey(ops.CreateKeyInput{Exportable: true, Attributes: keyspec.Attributes{Usage: u, Class: keyspec.AsymmetricPair, Algorithm: alg, Modes: m}})
	if err != nil {
		t.Fatal(err)
	}
	der, err := svc.GetCertificateSigningRequest(k.ARN, crypto.SHA512, ops.CertificateSubject{CommonName: "MyCertificateAWSUSEAST", Organization: "Amazon"})
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil || csr.CheckSignature() != nil {
		t.Fatalf("CSR: %v", err)
	}
	now := time.Now()
	return k.ARN, xNewCert(t, ca, csr.PublicKey, nil, false, ku, now.Add(-time.Hour), now.Add(24*time.Hour))
}

// xOpensslCMSVerify has OpenSSL verify a TR-34 token's signature (a CMS
// SignedData over the envelope) with the KDH certificate, and the KDH
// certificate's chain to ca.
func xOpensslCMSVerify(t *testing.T, token []byte, kdh *x509.Certificate, ca *x509.Certificate) error {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	files := map[string][]byte{"tok.der": token,
		"kdh.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kdh.Raw}),
		"ca.pem":  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("openssl", "cms", "-verify", "-inform", "DER", "-in", filepath.Join(dir, "tok.der"), "-binary", "-purpose", "any",
		"-certfile", filepath.Join(dir, "kdh.pem"), "-CAfile", filepath.Join(dir, "ca.pem"), "-out", filepath.Join(dir, "envelope.bin")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("openssl cms -verify: %v: %s", err, out)
	}
	return nil
}

// TestTR34CustomerKeys: the guide's BYOCA TR-34 export, signed by the
// customer's own S0 key pair (SigningKeyIdentifier and its CA-signed
// certificate, no export token); the token verifies with OpenSSL's CMS
// implementation against that certificate and its CA, opens at the KRD, and
// imports back into the appliance as a TR-34 import whose KDH is the
// customer's key. And a TR-34 import to the customer's own K2 key pair
// (WrappingKeyIdentifier and its certificate, no import token).
func TestTR34CustomerKeys(t *testing.T) {
	f := xNewExchange(t)
	custCA := xNewTestCA(t, nil) // the customer's external CA (BYOCA)
	partnerCA := xNewTestCA(t, nil)
	imp := func(ca *xTestCA) string {
		k, err := f.svc.ImportCertificate(ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: ca.cert.Raw})
		if err != nil {
			t.Fatal(err)
		}
		return k.ARN
	}
	custCAKey, partnerCAKey := imp(custCA), imp(partnerCA)
	sign := keyspec.ModesOfUse{Sign: true}
	signer, signerCert := xOwnPair(t, f.svc, custCA, keyspec.S0, keyspec.RSA2048, sign, x509.KeyUsageDigitalSignature)
	signer3072, signer3072Cert := xOwnPair(t, f.svc, custCA, keyspec.S0, keyspec.RSA3072, sign, x509.KeyUsageDigitalSignature)
	now := time.Now()
	krdKey := xRsaKey(t, 3072)
	krdCert := xNewCert(t, partnerCA, krdKey.Public(), nil, false, x509.KeyUsageKeyEncipherment, now.Add(-time.Hour), now.Add(24*time.Hour))
	nonce := xUnhex(t, "5A17C0FFEE0DDBA1")
	export := func(key, signer string, cert *x509.Certificate) (*ops.WrappedKey, error) {
		return f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: key, Tr34: &ops.ExportTr34{CAIdentifier: partnerCAKey, Certificate: krdCert.Raw,
			SigningKeyIdentifier: signer, SigningKeyCertificate: cert.Raw, RandomNonce: nonce}})
	}
	for _, tc := range []struct {
		name, key, keyHex, signer string
		cert                      *x509.Certificate
		alg                       keyspec.Algorithm
	}{
		{"TDES_3KEY KEK, RSA_2048 signer (the guide's example)", f.kekTDES3, xTdes3, signer, signerCert, keyspec.TDES3Key},
		{"AES_128 KEK, RSA_3072 signer", f.kekAES128, xAes128, signer3072, signer3072Cert, keyspec.AES128},
	} {
		t.Run("export "+tc.name, func(t *testing.T) {
			w, err := export(tc.key, tc.signer, tc.cert)
			if err != nil {
				t.Fatal(err)
			}
			if err := xOpensslCMSVerify(t, w.Cryptogram, tc.cert, custCA.cert); err != nil {
				t.Fatal(err)
			}
			if err := xOpensslCMSVerify(t, w.Cryptogram, signer3072Cert, custCA.cert); tc.signer == signer && err == nil {
				t.Error("OpenSSL verified the token with another key pair's certificate")
			}
			tok, err := tr34.Parse(w.Cryptogram)
			if err != nil {
				t.Fatal(err)
			}
			if id, _ := tr34.Identity(tc.cert); !bytes.Equal(id, tok.KDH) {
				t.Error("the token does not name the customer's signing certificate")
			}
			key, err := tok.Open(krdKey)
			if err != nil || !bytes.Equal(key, xUnhex(t, tc.keyHex)) {
				t.Fatalf("the KRD could not open the token: %v", err)
			}
			if want := xOpensslKCV(t, tc.alg, tc.keyHex); w.KCV != want {
				t.Errorf("KCV %s, OpenSSL %s", w.KCV, want)
			}
		})
	}

	// Round trip: exported to an import token's KRD with the customer's KDH,
	// imported with the customer's CA as the KDH's certificate authority.
	t.Run("import where the KDH is the customer's", func(t *testing.T) {
		p, err := f.svc.GetParametersForImport(ops.MaterialTR34, keyspec.RSA2048, false)
		if err != nil {
			t.Fatal(err)
		}
		caAttrs := xCaAttrs
		caAttrs.Algorithm = map[int]keyspec.Algorithm{2048: keyspec.RSA2048, 3072: keyspec.RSA3072, 4096: keyspec.RSA4096}[xParseCert(t, p.CertificateChain).PublicKey.(*rsa.PublicKey).N.BitLen()]
		aplCA, err := f.svc.ImportCertificate(ops.ImportCertificateInput{Attributes: caAttrs, Certificate: p.CertificateChain})
		if err != nil {
			t.Fatal(err)
		}
		w, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: f.kekTDES3, Tr34: &ops.ExportTr34{CAIdentifier: aplCA.ARN, Certificate: p.Certificate,
			SigningKeyIdentifier: signer, SigningKeyCertificate: signerCert.Raw, RandomNonce: nonce}})
		if err != nil {
			t.Fatal(err)
		}
		k, err := f.svc.ImportKeyTR34(ops.ImportKeyInput{}, ops.ImportTr34{CAIdentifier: custCAKey, SigningCertificate: signerCert.Raw,
			ImportToken: p.Token, KeyBlock: w.Cryptogram, RandomNonce: nonce})
		if err != nil {
			t.Fatal(err)
		}
		if orig, _ := f.svc.GetKey(f.kekTDES3); k.KCV != orig.KCV {
			t.Errorf("imported KCV %s, exported key %s", k.KCV, orig.KCV)
		}
	})

	// Import to the customer's own K2 key pair: a partner KDH (hsm/tr34, shown
	// interoperable in its tests) encrypts to the key pair's certificate.
	krdPair, krdPairCert := xOwnPair(t, f.svc, custCA, keyspec.K2, keyspec.RSA2048, keyspec.ModesOfUse{Decrypt: true, Unwrap: true}, x509.KeyUsageKeyEncipherment)
	kdhKey := xRsaKey(t, 2048)
	kdhCert := xNewCert(t, partnerCA, kdhKey.Public(), nil, false, x509.KeyUsageDigitalSignature, now.Add(-time.Hour), now.Add(24*time.Hour))
	block := func(krd *x509.Certificate) []byte {
		der, err := tr34.Build(tr34.BuildInput{Key: xUnhex(t, xTdes3), Header: "D0000K0TB00E0000", Nonce: nonce, KDH: kdhCert, KDHKey: kdhKey, KRD: krd})
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	toOwn := func(der []byte, pair string, cert []byte) ops.ImportTr34 {
		return ops.ImportTr34{CAIdentifier: partnerCAKey, SigningCertificate: kdhCert.Raw, WrappingKeyIdentifier: pair, WrappingKeyCertificate: cert,
			KeyBlock: der, RandomNonce: nonce}
	}
	t.Run("import to the customer's K2 key pair", func(t *testing.T) {
		k, err := f.svc.ImportKeyTR34(ops.ImportKeyInput{}, toOwn(block(krdPairCert), krdPair, krdPairCert.Raw))
		if err != nil {
			t.Fatal(err)
		}
		if want := xOpensslKCV(t, keyspec.TDES3Key, xTdes3); k.KCV != want || k.Attributes.Usage != keyspec.K0 {
			t.Errorf("imported %s KCV %s, OpenSSL %s", k.Attributes.Usage, k.KCV, want)
		}
	})

	// Refusals, each about the member at fault; nothing is stored.
	p, err := f.svc.GetParametersForExport(ops.MaterialTR34, keyspec.RSA2048, false)
	if err != nil {
		t.Fatal(err)
	}
	ip, err := f.svc.GetParametersForImport(ops.MaterialTR34, keyspec.RSA2048, false)
	if err != nil {
		t.Fatal(err)
	}
	expired := xNewCert(t, custCA, signerCert.PublicKey, nil, false, x509.KeyUsageDigitalSignature, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	encOnly := xNewCert(t, custCA, signerCert.PublicKey, nil, false, x509.KeyUsageKeyEncipherment, now.Add(-time.Hour), now.Add(24*time.Hour))
	verifier := xNewCert(t, custCA, kdhKey.Public(), nil, false, x509.KeyUsageDigitalSignature, now.Add(-time.Hour), now.Add(24*time.Hour))
	exportOwn := func(pair string, cert []byte) ops.ExportTr34 {
		return ops.ExportTr34{CAIdentifier: partnerCAKey, Certificate: krdCert.Raw, SigningKeyIdentifier: pair, SigningKeyCertificate: cert}
	}
	type sub = at
	signingKey, ownCert, token := sub{fault.SubjectSigningKey, fault.SideNone}, sub{fault.SubjectOwnCertificate, fault.SideNone}, sub{fault.SubjectToken, fault.SideNone}
	for _, tc := range []struct {
		name string
		key  string
		x    ops.ExportTr34
		at   at
	}{
		{"export token and signing key", f.kekTDES3, func() ops.ExportTr34 {
			x := exportOwn(signer, signerCert.Raw)
			x.ExportToken = p.Token
			return x
		}(), token},
		{"signing key without certificate", f.kekTDES3, exportOwn(signer, nil), ownCert},
		{"certificate of another key pair", f.kekTDES3, exportOwn(signer, signer3072Cert.Raw), ownCert},
		{"certificate of a foreign key", f.kekTDES3, exportOwn(signer, verifier.Raw), ownCert},
		{"expired certificate", f.kekTDES3, exportOwn(signer, expired.Raw), ownCert},
		{"certificate not for signing", f.kekTDES3, exportOwn(signer, encOnly.Raw), ownCert},
		{"not a certificate", f.kekTDES3, exportOwn(signer, []byte{0x30, 0x00}), ownCert},
		{"K2 key pair as signer", f.kekTDES3, exportOwn(krdPair, krdPairCert.Raw), signingKey},
		{"RSA_2048 signer for an AES_128 key", f.kekAES128, exportOwn(signer, signerCert.Raw), signingKey},
	} {
		t.Run("export refused: "+tc.name, func(t *testing.T) {
			x := tc.x
			_, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: tc.key, Tr34: &x})
			xWantKind(t, err, fault.Validation)
			if !isAbout(err, tc.at) {
				t.Errorf("%s, want about %+v", aboutOf(err), tc.at)
			}
		})
	}
	before := xKeyCount(t, f.svc)
	wrappingKey := sub{fault.SubjectWrappingKey, fault.SideNone}
	for _, tc := range []struct {
		name string
		in   ops.ImportTr34
		at   at
	}{
		{"import token and wrapping key", func() ops.ImportTr34 {
			x := toOwn(block(krdPairCert), krdPair, krdPairCert.Raw)
			x.ImportToken = ip.Token
			return x
		}(), token},
		{"wrapping certificate without its key pair", toOwn(block(krdPairCert), "", krdPairCert.Raw), wrappingKey},
		{"wrapping key without certificate", toOwn(block(krdPairCert), krdPair, nil), ownCert},
		{"certificate of another key", toOwn(block(krdPairCert), krdPair, verifier.Raw), ownCert},
		{"token encrypted to another KRD", toOwn(block(krdCert), krdPair, krdPairCert.Raw), sub{fault.SubjectWrappedKey, fault.SideNone}},
		{"S0 key pair as KRD", toOwn(block(signerCert), signer, signerCert.Raw), wrappingKey},
	} {
		t.Run("import refused: "+tc.name, func(t *testing.T) {
			_, err := f.svc.ImportKeyTR34(ops.ImportKeyInput{}, tc.in)
			xWantKind(t, err, fault.Validation)
			if !isAbout(err, tc.at) {
				t.Errorf("%s, want about %+v", aboutOf(err), tc.at)
			}
		})
	}
	if n := xKeyCount(t, f.svc); n != before {
		t.Errorf("%d keys after refused imports, want %d", n, before)
	}
}
