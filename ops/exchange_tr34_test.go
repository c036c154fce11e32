package ops_test

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
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
		{"customer KRD key", func() ops.ImportTr34 {
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
		{"customer signing key", ops.ExportTr34{CAIdentifier: caKey.ARN, Certificate: cert2048.Raw, SigningKeyIdentifier: f.kekAES128}, f.kekTDES3},
		{"customer signing certificate", ops.ExportTr34{CAIdentifier: caKey.ARN, Certificate: cert2048.Raw, ExportToken: p.Token, SigningKeyCertificate: cert2048.Raw}, f.kekTDES3},
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
