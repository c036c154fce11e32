package ops_test

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
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

func xPEMCert(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(p)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestImportTR34(t *testing.T) {
	svc := opstest.New(t)
	ca := xNewTestCA(t, nil)
	caKey, err := svc.ImportCertificate(ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: xB64(ca.cert)})
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
	krd := xPEMCert(t, p2048.Certificate)
	nonce := []byte{0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6, 0x07, 0x18}
	build := func(key []byte, header string, kdhCert *x509.Certificate, kdhPriv *rsa.PrivateKey, krdCert *x509.Certificate) string {
		der, err := tr34.Build(tr34.BuildInput{Key: key, Header: header, Nonce: nonce, KDH: kdhCert, KDHKey: kdhPriv, KRD: krdCert})
		if err != nil {
			t.Fatal(err)
		}
		return strings.ToUpper(hex.EncodeToString(der))
	}
	in := func(block, token, nonceHex string) ops.ImportTr34 {
		return ops.ImportTr34{CAIdentifier: caKey.ARN, SigningCertificate: xB64(kdh), ImportToken: token, KeyBlock: block,
			Format: ops.TR34Format, RandomNonce: nonceHex}
	}
	good := build(xUnhex(t, xTdes3), "D0000K0TB00E0000", kdh, kdhKey, krd)
	k, err := svc.ImportKeyTR34(ops.ImportKeyInput{}, in(good, p2048.Token, hex.EncodeToString(nonce)))
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
	tampered := []byte(good)
	tampered[len(tampered)-3] ^= 0x01 // inside the signature
	if tampered[len(tampered)-3] > 'F' || tampered[len(tampered)-3] < '0' {
		tampered[len(tampered)-3] = '0'
	}
	before := xKeyCount(t, svc)
	for _, tc := range []struct {
		name string
		in   ops.ImportTr34
		kind fault.Kind
	}{
		{"wrong nonce", in(good, p2048.Token, "0000000000000000"), fault.Validation},
		{"no nonce", in(good, p2048.Token, ""), fault.Validation},
		{"tampered signature", in(string(tampered), p2048.Token, hex.EncodeToString(nonce)), fault.Validation},
		{"signed by an impostor", in(build(xUnhex(t, xTdes3), "D0000K0TB00E0000", kdh, impostor, krd), p2048.Token, hex.EncodeToString(nonce)), fault.Validation},
		{"encrypted to another token", in(good, p3072.Token, hex.EncodeToString(nonce)), fault.Validation},
		{"KEY_CRYPTOGRAM token", in(good, pCrypt.Token, hex.EncodeToString(nonce)), fault.Validation},
		{"export token", in(good, exp.Token, hex.EncodeToString(nonce)), fault.Validation},
		{"unknown token", in(good, "import-token-aaaaaaaaaaaaaaaa", hex.EncodeToString(nonce)), fault.Validation},
		{"AES-128 under RSA-2048 (weaker)", in(build(xUnhex(t, xAes128), "D0000K0AB00E0000", kdh, kdhKey, krd), p2048.Token, hex.EncodeToString(nonce)), fault.Validation},
		{"unsupported usage", in(build(xUnhex(t, xTdes3), "D0000ZZTB00E0000", kdh, kdhKey, krd), p2048.Token, hex.EncodeToString(nonce)), fault.Validation},
		{"garbage", in("3003020101", p2048.Token, hex.EncodeToString(nonce)), fault.Validation},
		{"not hex", in("zz", p2048.Token, hex.EncodeToString(nonce)), fault.Validation},
		{"wrong format", func() ops.ImportTr34 {
			x := in(good, p2048.Token, hex.EncodeToString(nonce))
			x.Format = "X9_TR34_2019"
			return x
		}(), fault.Validation},
		{"customer KRD key", func() ops.ImportTr34 {
			x := in(good, "", hex.EncodeToString(nonce))
			x.WrappingKeyIdentifier = caKey.ARN
			return x
		}(), fault.Validation},
		{"KDH from another CA", func() ops.ImportTr34 {
			x := in(good, p2048.Token, hex.EncodeToString(nonce))
			x.SigningCertificate = xB64(foreignKDH)
			return x
		}(), fault.Validation},
		{"unknown CA", func() ops.ImportTr34 {
			x := in(good, p2048.Token, hex.EncodeToString(nonce))
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
	caKey, err := f.svc.ImportCertificate(ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: xB64(ca.cert)})
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
	kdh := xPEMCert(t, p.Certificate)
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
			w, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: tc.key, Tr34: &ops.ExportTr34{CAIdentifier: caKey.ARN, Certificate: xB64(tc.krd),
				ExportToken: p.Token, Format: ops.TR34Format, RandomNonce: nonceHex, Headers: tc.h}})
			if err != nil {
				t.Fatal(err)
			}
			if w.Format != ops.FormatTR34 || w.WrappingKeyARN != caKey.ARN {
				t.Errorf("format %s wrapping %s", w.Format, w.WrappingKeyARN)
			}
			tok, err := tr34.Parse(xUnhex(t, w.KeyMaterial))
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
		{"AES-128 to RSA-2048 (weaker)", ops.ExportTr34{CAIdentifier: caKey.ARN, Certificate: xB64(cert2048), ExportToken: p.Token, Format: ops.TR34Format}, f.kekAES128},
		{"AES-256 key", ops.ExportTr34{CAIdentifier: caKey.ARN, Certificate: xB64(cert3072), ExportToken: p.Token, Format: ops.TR34Format}, f.dekAES256},
		{"no token", ops.ExportTr34{CAIdentifier: caKey.ARN, Certificate: xB64(cert2048), Format: ops.TR34Format}, f.kekTDES3},
		{"import token", ops.ExportTr34{CAIdentifier: caKey.ARN, Certificate: xB64(cert2048), ExportToken: imp.Token, Format: ops.TR34Format}, f.kekTDES3},
		{"customer signing key", ops.ExportTr34{CAIdentifier: caKey.ARN, Certificate: xB64(cert2048), SigningKeyIdentifier: f.kekAES128, Format: ops.TR34Format}, f.kekTDES3},
		{"bad nonce", ops.ExportTr34{CAIdentifier: caKey.ARN, Certificate: xB64(cert2048), ExportToken: p.Token, Format: ops.TR34Format, RandomNonce: "0102"}, f.kekTDES3},
		{"certificate from another CA", ops.ExportTr34{CAIdentifier: caKey.ARN, Certificate: xB64(xNewCert(t, xNewTestCA(t, nil), krd2048.Public(), nil, false, 0, now.Add(-time.Hour), now.Add(time.Hour))), ExportToken: p.Token, Format: ops.TR34Format}, f.kekTDES3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := tc.x
			_, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: tc.key, Tr34: &x})
			xWantKind(t, err, fault.Validation)
		})
	}
}
