package e2e

import (
	"bytes"
	"context"
	"crypto/des"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"

	"payhsm/internal/testkeys"
)

// The partner side of these tests is OpenSSL's command line and Go's
// standard library: nothing here uses payhsm's own hsm/ packages.

var modesEDWU = types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}

func openssl(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	cmd := exec.Command("openssl", args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v: %s", args[0], err, stderr.String())
	}
	return out
}

// osslKCV is the X9.24 (TDES) or CMAC (AES) check value, computed by OpenSSL.
func osslKCV(t *testing.T, keyHex string, aes bool) string {
	t.Helper()
	if aes {
		c := map[int]string{32: "AES-128-CBC", 48: "AES-192-CBC", 64: "AES-256-CBC"}[len(keyHex)]
		return strings.ToUpper(hex.EncodeToString(openssl(t, make([]byte, 16), "mac", "-cipher", c, "-macopt", "hexkey:"+keyHex, "-binary", "CMAC")[:3]))
	}
	return strings.ToUpper(hex.EncodeToString(openssl(t, make([]byte, 8), "enc", "-des-ede3", "-K", tdes24(keyHex), "-nopad")[:3]))
}

func tdes24(k string) string {
	if len(k) == 32 {
		return k + k[:16]
	}
	return k
}

// osslOpenTR31 opens a version B (TDES KBPK) or D (AES KBPK) X9.143 key block
// with OpenSSL: key derivation by CMAC in counter mode (ANSI X9 TR-31:2018
// section 5.3.2, derivation data counter || key usage (0000 encryption, 0001
// MAC) || 00 || algorithm (0000 2TDEA, 0001 3TDEA, 0002..0004 AES-128..256) ||
// length in bits), CBC decryption with the authenticator as IV, and the CMAC
// over header || clear payload checked. It returns the header text and the key.
func osslOpenTR31(t *testing.T, kbpkHex, block string) (string, string) {
	t.Helper()
	v := block[0]
	var bs int
	var cmacCipher, cbcCipher string
	var algID uint16
	kbpkLen := len(kbpkHex) / 2
	kbpkHex = strings.ToUpper(kbpkHex)
	switch v {
	case 'B':
		bs, cmacCipher, cbcCipher = 8, "DES-EDE3-CBC", "des-ede3-cbc"
		algID = map[int]uint16{16: 0, 24: 1}[kbpkLen]
		kbpkHex = tdes24(kbpkHex)
	case 'D':
		bs = 16
		cmacCipher = map[int]string{16: "AES-128-CBC", 24: "AES-192-CBC", 32: "AES-256-CBC"}[kbpkLen]
		cbcCipher = strings.ToLower(cmacCipher)
		algID = map[int]uint16{16: 2, 24: 3, 32: 4}[kbpkLen]
	default:
		t.Fatalf("version %c", v)
	}
	derive := func(usage uint16) string {
		var out []byte
		for ctr := byte(1); len(out) < kbpkLen; ctr++ {
			d := make([]byte, 8)
			d[0] = ctr
			binary.BigEndian.PutUint16(d[1:], usage)
			binary.BigEndian.PutUint16(d[4:], algID)
			binary.BigEndian.PutUint16(d[6:], uint16(kbpkLen*8))
			out = append(out, openssl(t, d, "mac", "-cipher", cmacCipher, "-macopt", "hexkey:"+kbpkHex, "-binary", "CMAC")...)
		}
		k := strings.ToUpper(hex.EncodeToString(out[:kbpkLen]))
		if v == 'B' {
			k = tdes24(k)
		}
		return k
	}
	kbek, kbmk := derive(0), derive(1)
	// Header: 16 characters, then the optional blocks.
	n, _ := strconv.Atoi(block[12:14])
	pos := 16
	for i := 0; i < n; i++ {
		l, err := strconv.ParseUint(block[pos+2:pos+4], 16, 8)
		if err != nil || l < 4 {
			t.Fatalf("optional block length at %d", pos)
		}
		pos += int(l)
	}
	header, body := block[:pos], block[pos:]
	macHex := body[len(body)-2*bs:]
	if v == 'B' {
		macHex = body[len(body)-16:]
	}
	enc, err := hex.DecodeString(body[:len(body)-len(macHex)])
	if err != nil {
		t.Fatal(err)
	}
	iv := macHex
	clearPayload := openssl(t, enc, "enc", "-d", "-"+cbcCipher, "-K", kbek, "-iv", iv, "-nopad")
	mac := openssl(t, append([]byte(header), clearPayload...), "mac", "-cipher", cmacCipher, "-macopt", "hexkey:"+kbmk, "-binary", "CMAC")
	if !strings.EqualFold(hex.EncodeToString(mac[:len(macHex)/2]), macHex) {
		t.Fatalf("OpenSSL: the key block authenticator does not verify")
	}
	bits := int(binary.BigEndian.Uint16(clearPayload))
	return header, strings.ToUpper(hex.EncodeToString(clearPayload[2 : 2+bits/8]))
}

// importKnown imports a clear key through an RSA-OAEP key cryptogram.
func importKnown(t *testing.T, c *pc.Client, a *types.KeyAttributes, keyHex string) *types.Key {
	t.Helper()
	return newKnownKeys(t, c).key(a, keyHex)
}

func createKey(t *testing.T, c *pc.Client, a *types.KeyAttributes, exportable bool) *types.Key {
	t.Helper()
	k, err := c.CreateKey(context.Background(), &pc.CreateKeyInput{KeyAttributes: a, Exportable: aws.Bool(exportable)})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return k.Key
}

func exportTR31(c *pc.Client, key, kek string, h *types.KeyBlockHeaders, ea *types.ExportAttributes) (*pc.ExportKeyOutput, error) {
	return c.ExportKey(context.Background(), &pc.ExportKeyInput{ExportKeyIdentifier: aws.String(key), ExportAttributes: ea,
		KeyMaterial: &types.ExportKeyMaterialMemberTr31KeyBlock{Value: types.ExportTr31KeyBlock{WrappingKeyIdentifier: aws.String(kek), KeyBlockHeaders: h}}})
}

func TestExportTR31Interop(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	c := d.client()
	const kekAES = "89E88CF7931444F334BD7547FC3F380C" // TR-31:2018 A.7.4 KBPK
	kekT := importKnown(t, c, attrs(types.KeyUsageTr31K0KeyEncryptionKey, types.KeyAlgorithmTdes3key, modesEDWU), "89E88CF7931444F334BD7547FC3F380C0123456789ABCDEF")
	kekA := importKnown(t, c, attrs(types.KeyUsageTr31K1KeyBlockProtectionKey, types.KeyAlgorithmAes128, modesEDWU), kekAES)

	for _, tc := range []struct {
		name    string
		kek     *types.Key
		kekHex  string
		a       *types.KeyAttributes
		aes     bool
		version byte
	}{
		{"created TDES_2KEY PEK under TDES_3KEY KEK", kekT, "89E88CF7931444F334BD7547FC3F380C0123456789ABCDEF", attrs(types.KeyUsageTr31P0PinEncryptionKey, types.KeyAlgorithmTdes2key, modesEDWU), false, 'B'},
		{"created TDES_3KEY PEK under TDES_3KEY KEK", kekT, "89E88CF7931444F334BD7547FC3F380C0123456789ABCDEF", attrs(types.KeyUsageTr31P0PinEncryptionKey, types.KeyAlgorithmTdes3key, modesEDWU), false, 'B'},
		{"created AES_128 DEK under AES_128 KEK", kekA, kekAES, attrs(types.KeyUsageTr31D0SymmetricDataEncryptionKey, types.KeyAlgorithmAes128, modesEDWU), true, 'D'},
		{"created TDES_2KEY CVK under AES_128 KEK", kekA, kekAES, attrs(types.KeyUsageTr31C0CardVerificationKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{Generate: true, Verify: true}), false, 'D'},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := createKey(t, c, tc.a, true)
			out, err := exportTR31(c, *k.KeyArn, *tc.kek.KeyArn, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			w := out.WrappedKey
			if w.WrappedKeyMaterialFormat != types.WrappedKeyMaterialFormatTr31KeyBlock || *w.WrappingKeyArn != *tc.kek.KeyArn {
				t.Errorf("format %s wrapping %s", w.WrappedKeyMaterialFormat, *w.WrappingKeyArn)
			}
			header, key := osslOpenTR31(t, tc.kekHex, *w.KeyMaterial)
			if header[0] != tc.version || header[11] != 'E' {
				t.Errorf("header %s", header)
			}
			if kcv := osslKCV(t, key, tc.aes); kcv != *k.KeyCheckValue || kcv != *w.KeyCheckValue {
				t.Errorf("OpenSSL KCV of the opened key %s; key KCV %s, export KCV %s", kcv, *k.KeyCheckValue, *w.KeyCheckValue)
			}
		})
	}

	// KeyBlockHeaders: the guide's BDK example (version 02, NON_EXPORTABLE, BI block).
	bdk := createKey(t, c, attrs(types.KeyUsageTr31B0BaseDerivationKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{DeriveKey: true}), true)
	out, err := exportTR31(c, *bdk.KeyArn, *kekA.KeyArn, &types.KeyBlockHeaders{KeyExportability: types.KeyExportabilityNonExportable,
		KeyVersion: aws.String("02"), OptionalBlocks: map[string]string{"BI": "00ABCDEFABCD"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	header, _ := osslOpenTR31(t, kekAES, *out.WrappedKey.KeyMaterial)
	if header[5:14] != "B0TX02N01" || !strings.Contains(header[16:], "BI1000ABCDEFABCD") || len(header)%16 != 0 {
		t.Errorf("header %s", header)
	}
	// ExportDukptInitialKey: the X9.24-1-2009 A.4 BDK gives the published IPEK.
	pubBDK := importKnown(t, c, attrs(types.KeyUsageTr31B0BaseDerivationKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{DeriveKey: true}), "0123456789ABCDEFFEDCBA9876543210")
	out, err = exportTR31(c, *pubBDK.KeyArn, *kekA.KeyArn, nil, &types.ExportAttributes{ExportDukptInitialKey: &types.ExportDukptInitialKey{KeySerialNumber: aws.String("FFFF9876543210E00008")}})
	if err != nil {
		t.Fatal(err)
	}
	header, ipek := osslOpenTR31(t, kekAES, *out.WrappedKey.KeyMaterial)
	if ipek != "6AC292FAA1315B4D858AB3A3D7D5933A" || header[5:9] != "B1TX" || !strings.Contains(header, "KS18FFFF9876543210E00000") {
		t.Errorf("IPEK header %s", header)
	}

	// Refused: weaker KEK, non-exportable key, widened modes.
	aesKey := createKey(t, c, attrs(types.KeyUsageTr31D0SymmetricDataEncryptionKey, types.KeyAlgorithmAes128, modesEDWU), true)
	if _, err := exportTR31(c, *aesKey.KeyArn, *kekT.KeyArn, nil, nil); !isErr[*types.ValidationException](err) {
		t.Errorf("AES-128 under TDES: %v", err)
	}
	locked := createKey(t, c, attrs(types.KeyUsageTr31D0SymmetricDataEncryptionKey, types.KeyAlgorithmAes128, modesEDWU), false)
	if _, err := exportTR31(c, *locked.KeyArn, *kekA.KeyArn, nil, nil); !isErr[*types.ValidationException](err) {
		t.Errorf("non-exportable: %v", err)
	}
	cvk := createKey(t, c, attrs(types.KeyUsageTr31C0CardVerificationKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{Verify: true}), true)
	if _, err := exportTR31(c, *cvk.KeyArn, *kekA.KeyArn, &types.KeyBlockHeaders{KeyModesOfUse: &types.KeyModesOfUse{Generate: true, Verify: true}}, nil); !isErr[*types.ValidationException](err) {
		t.Errorf("widened modes: %v", err)
	}
}

// partnerCA is a partner's certificate authority made with crypto/x509.
type partnerCA struct {
	cert *x509.Certificate
	key  *rsa.PrivateKey
}

func newPartnerCA(t *testing.T) *partnerCA {
	k := testkeys.RSA(t, 2048) // committed test-only keys (testdata)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "partner root"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &partnerCA{cert: c, key: k}
}

func (ca *partnerCA) issue(t *testing.T, pub any, usage x509.KeyUsage) *x509.Certificate {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "partner KRD"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: usage}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func certB64(c *x509.Certificate) string {
	return base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// importRoot imports a certificate (base64 PEM) as a trusted root (S0 public key) and returns its ARN.
func importRoot(t *testing.T, c *pc.Client, certB64 string, alg types.KeyAlgorithm) string {
	t.Helper()
	k, err := c.ImportKey(context.Background(), &pc.ImportKeyInput{KeyMaterial: &types.ImportKeyMaterialMemberRootCertificatePublicKey{Value: types.RootCertificatePublicKey{
		KeyAttributes: &types.KeyAttributes{KeyAlgorithm: alg, KeyClass: types.KeyClassPublicKey,
			KeyModesOfUse: &types.KeyModesOfUse{Verify: true}, KeyUsage: types.KeyUsageTr31S0AsymmetricKeyForDigitalSignature},
		PublicKeyCertificate: aws.String(certB64)}}})
	if err != nil {
		t.Fatalf("import root: %v", err)
	}
	return *k.Key.KeyArn
}

func TestExportKeyCryptogramInterop(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	c := d.client()
	ctx := context.Background()
	ca := newPartnerCA(t)
	rootARN := importRoot(t, c, certB64(ca.cert), types.KeyAlgorithmRsa2048)
	krd := testkeys.RSA(t, 3072)
	leaf := ca.issue(t, krd.Public(), x509.KeyUsageKeyEncipherment)
	k := createKey(t, c, attrs(types.KeyUsageTr31K0KeyEncryptionKey, types.KeyAlgorithmAes128, modesEDWU), true)
	out, err := c.ExportKey(ctx, &pc.ExportKeyInput{ExportKeyIdentifier: k.KeyArn, KeyMaterial: &types.ExportKeyMaterialMemberKeyCryptogram{Value: types.ExportKeyCryptogram{
		CertificateAuthorityPublicKeyIdentifier: &rootARN, WrappingKeyCertificate: aws.String(certB64(leaf)), WrappingSpec: types.WrappingKeySpecRsaOaepSha256}}})
	if err != nil {
		t.Fatal(err)
	}
	// The partner HSM (OpenSSL) unwraps it and finds the same KCV.
	dir := t.TempDir()
	p8, _ := x509.MarshalPKCS8PrivateKey(krd)
	kf, cf := filepath.Join(dir, "krd.pem"), filepath.Join(dir, "ct.bin")
	ct, _ := hex.DecodeString(*out.WrappedKey.KeyMaterial)
	if err := os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cf, ct, 0o600); err != nil {
		t.Fatal(err)
	}
	plain := openssl(t, nil, "pkeyutl", "-decrypt", "-inkey", kf, "-in", cf, "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256")
	if kcv := osslKCV(t, strings.ToUpper(hex.EncodeToString(plain)), true); kcv != *k.KeyCheckValue || kcv != *out.WrappedKey.KeyCheckValue {
		t.Errorf("OpenSSL KCV %s, key %s, export %s", kcv, *k.KeyCheckValue, *out.WrappedKey.KeyCheckValue)
	}
	// A certificate from another CA is refused.
	other := newPartnerCA(t).issue(t, krd.Public(), x509.KeyUsageKeyEncipherment)
	if _, err := c.ExportKey(ctx, &pc.ExportKeyInput{ExportKeyIdentifier: k.KeyArn, KeyMaterial: &types.ExportKeyMaterialMemberKeyCryptogram{Value: types.ExportKeyCryptogram{
		CertificateAuthorityPublicKeyIdentifier: &rootARN, WrappingKeyCertificate: aws.String(certB64(other))}}}); !isErr[*types.ValidationException](err) {
		t.Errorf("foreign certificate: %v", err)
	}
	// GetParametersForExport: a TR-34 signing certificate chaining to the profile CA.
	p, err := c.GetParametersForExport(ctx, &pc.GetParametersForExportInput{KeyMaterialType: types.KeyMaterialTypeTr34KeyBlock, SigningKeyAlgorithm: types.KeyAlgorithmRsa2048})
	if err != nil {
		t.Fatal(err)
	}
	verifyChain(t, *p.SigningKeyCertificate, *p.SigningKeyCertificateChain)
	if !strings.HasPrefix(*p.ExportToken, "export-token-") || p.SigningKeyAlgorithm != types.KeyAlgorithmRsa2048 {
		t.Errorf("export parameters %+v", p)
	}
}

// isoFormat0 builds an ISO 9564-1 format 0 PIN block.
func isoFormat0(pin, pan string) []byte {
	p, _ := hex.DecodeString(("0" + strconv.Itoa(len(pin)) + pin + strings.Repeat("F", 14))[:16])
	a, _ := hex.DecodeString("0000" + pan[len(pan)-13:len(pan)-1])
	for i := range p {
		p[i] ^= a[i]
	}
	return p
}

func tdesECB(t *testing.T, keyHex string, in []byte, decrypt bool) []byte {
	k, _ := hex.DecodeString(tdes24(keyHex))
	b, err := des.NewTripleDESCipher(k)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 8)
	if decrypt {
		b.Decrypt(out, in)
	} else {
		b.Encrypt(out, in)
	}
	return out
}

// TestTwoAppliancesExchangeKeys: appliance A sends a KEK to appliance B with
// TR-34 (A signs as KDH with its export token key, B's import token key is
// the KRD; each trusts the other's CA), then a PIN encryption key by TR-31
// under that KEK; a PIN block then travels A's acquirer key -> shared PEK (on
// A) -> B's issuer key (on B).
func TestTwoAppliancesExchangeKeys(t *testing.T) {
	t.Parallel()
	a, b := startDaemon(t, t.TempDir()), startDaemon(t, t.TempDir())
	ca, cb := a.client(), b.client()
	ctx := context.Background()
	trustRoot := func(c *pc.Client, chainB64 *string, alg types.KeyAlgorithm) *string {
		return aws.String(importRoot(t, c, *chainB64, alg))
	}

	pb, err := cb.GetParametersForImport(ctx, &pc.GetParametersForImportInput{KeyMaterialType: types.KeyMaterialTypeTr34KeyBlock, WrappingKeyAlgorithm: types.KeyAlgorithmRsa3072})
	if err != nil {
		t.Fatal(err)
	}
	pa, err := ca.GetParametersForExport(ctx, &pc.GetParametersForExportInput{KeyMaterialType: types.KeyMaterialTypeTr34KeyBlock, SigningKeyAlgorithm: types.KeyAlgorithmRsa2048})
	if err != nil {
		t.Fatal(err)
	}
	bRootInA := trustRoot(ca, pb.WrappingKeyCertificateChain, types.KeyAlgorithmRsa3072)
	aRootInB := trustRoot(cb, pa.SigningKeyCertificateChain, types.KeyAlgorithmRsa3072)
	const nonce = "5A17C0FFEE0DDBA1"

	kekA := createKey(t, ca, attrs(types.KeyUsageTr31K0KeyEncryptionKey, types.KeyAlgorithmAes128, modesEDWU), true)
	wrapped, err := ca.ExportKey(ctx, &pc.ExportKeyInput{ExportKeyIdentifier: kekA.KeyArn, KeyMaterial: &types.ExportKeyMaterialMemberTr34KeyBlock{Value: types.ExportTr34KeyBlock{
		CertificateAuthorityPublicKeyIdentifier: bRootInA, WrappingKeyCertificate: pb.WrappingKeyCertificate, ExportToken: pa.ExportToken,
		KeyBlockFormat: types.Tr34KeyBlockFormatX9Tr342012, RandomNonce: aws.String(nonce)}}})
	if err != nil {
		t.Fatalf("A exports the KEK with TR-34: %v", err)
	}
	if wrapped.WrappedKey.WrappedKeyMaterialFormat != types.WrappedKeyMaterialFormatTr34KeyBlock || !strings.HasPrefix(*wrapped.WrappedKey.KeyMaterial, "30") {
		t.Errorf("TR-34 export %s %.8s", wrapped.WrappedKey.WrappedKeyMaterialFormat, *wrapped.WrappedKey.KeyMaterial)
	}
	importTR34 := func(nonce string) (*pc.ImportKeyOutput, error) {
		return cb.ImportKey(ctx, &pc.ImportKeyInput{KeyMaterial: &types.ImportKeyMaterialMemberTr34KeyBlock{Value: types.ImportTr34KeyBlock{
			CertificateAuthorityPublicKeyIdentifier: aRootInB, SigningKeyCertificate: pa.SigningKeyCertificate, ImportToken: pb.ImportToken,
			WrappedKeyBlock: wrapped.WrappedKey.KeyMaterial, KeyBlockFormat: types.Tr34KeyBlockFormatX9Tr342012, RandomNonce: aws.String(nonce)}}})
	}
	if _, err := importTR34("0000000000000000"); !isErr[*types.ValidationException](err) {
		t.Errorf("B accepted a TR-34 token with the wrong nonce: %v", err)
	}
	kekB, err := importTR34(nonce)
	if err != nil {
		t.Fatalf("B imports the KEK: %v", err)
	}
	if *kekB.Key.KeyCheckValue != *kekA.KeyCheckValue || kekB.Key.KeyAttributes.KeyUsage != types.KeyUsageTr31K0KeyEncryptionKey {
		t.Fatalf("KEK KCV %s on B, %s on A", *kekB.Key.KeyCheckValue, *kekA.KeyCheckValue)
	}

	shared := createKey(t, ca, attrs(types.KeyUsageTr31P0PinEncryptionKey, types.KeyAlgorithmTdes3key, modesEDWU), true)
	blk, err := exportTR31(ca, *shared.KeyArn, *kekA.KeyArn, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sharedB, err := cb.ImportKey(ctx, &pc.ImportKeyInput{KeyMaterial: &types.ImportKeyMaterialMemberTr31KeyBlock{Value: types.ImportTr31KeyBlock{
		WrappingKeyIdentifier: kekB.Key.KeyArn, WrappedKeyBlock: blk.WrappedKey.KeyMaterial}}})
	if err != nil {
		t.Fatalf("B imports the PEK: %v", err)
	}
	if *sharedB.Key.KeyCheckValue != *shared.KeyCheckValue {
		t.Fatalf("PEK KCV %s on B, %s on A", *sharedB.Key.KeyCheckValue, *shared.KeyCheckValue)
	}

	const acqKey, issKey = "0123456789ABCDEFFEDCBA9876543210", "89E88CF7931444F334BD7547FC3F380C"
	acq := importKnown(t, ca, attrs(types.KeyUsageTr31P0PinEncryptionKey, types.KeyAlgorithmTdes2key, modesEDWU), acqKey)
	iss := importKnown(t, cb, attrs(types.KeyUsageTr31P0PinEncryptionKey, types.KeyAlgorithmTdes2key, modesEDWU), issKey)
	const pan, pin = "4111111111111111", "1234"
	clearBlock := isoFormat0(pin, pan)
	iso0 := map[string]any{"IsoFormat0": map[string]any{"PrimaryAccountNumber": pan}}
	translate := func(d *daemon, in, out, block string) string {
		t.Helper()
		status, body, errType := d.dataCall(t, "/pindata/translate", map[string]any{"IncomingKeyIdentifier": in, "OutgoingKeyIdentifier": out,
			"IncomingTranslationAttributes": iso0, "OutgoingTranslationAttributes": iso0, "EncryptedPinBlock": block})
		if status != 200 {
			t.Fatalf("TranslatePinData: %d %s %v", status, errType, body)
		}
		return body["PinBlock"].(string)
	}
	step1 := translate(a, *acq.KeyArn, *shared.KeyArn, strings.ToUpper(hex.EncodeToString(tdesECB(t, acqKey, clearBlock, false))))
	step2 := translate(b, *sharedB.Key.KeyArn, *iss.KeyArn, step1)
	got, _ := hex.DecodeString(step2)
	if !bytes.Equal(tdesECB(t, issKey, got, true), clearBlock) {
		t.Errorf("the PIN block did not survive the trip across the two appliances")
	}
}

// TestECDHExportAndCSR: the partner (OpenSSL) agrees a KBPK with the
// appliance's K3 key pair and opens a TR-31 block exported under it; and a
// CSR for that key pair verifies with OpenSSL.
func TestECDHExportAndCSR(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	c := d.client()
	ctx := context.Background()
	k3, err := c.CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(true), DeriveKeyUsage: types.DeriveKeyUsageTr31K1KeyBlockProtectionKey,
		KeyAttributes: &types.KeyAttributes{KeyUsage: types.KeyUsageTr31K3AsymmetricKeyForKeyAgreement, KeyClass: types.KeyClassAsymmetricKeyPair,
			KeyAlgorithm: types.KeyAlgorithmEccNistP256, KeyModesOfUse: &types.KeyModesOfUse{DeriveKey: true}}})
	if err != nil {
		t.Fatal(err)
	}
	ours, err := c.GetPublicKeyCertificate(ctx, &pc.GetPublicKeyCertificateInput{KeyIdentifier: k3.Key.KeyArn})
	if err != nil {
		t.Fatal(err)
	}
	ourCert := parseB64PEM(t, *ours.KeyCertificate)

	dir := t.TempDir()
	partnerKey, peer := filepath.Join(dir, "partner.pem"), filepath.Join(dir, "peer.pem")
	openssl(t, nil, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", partnerKey)
	pubPEM := openssl(t, nil, "pkey", "-in", partnerKey, "-pubout")
	blk, _ := pem.Decode(pubPEM)
	partnerPub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ca := newPartnerCA(t)
	rootARN := importRoot(t, c, certB64(ca.cert), types.KeyAlgorithmRsa2048)
	partnerCert := ca.issue(t, partnerPub, x509.KeyUsageKeyAgreement)

	key := createKey(t, c, attrs(types.KeyUsageTr31D0SymmetricDataEncryptionKey, types.KeyAlgorithmAes128, modesEDWU), true)
	out, err := c.ExportKey(ctx, &pc.ExportKeyInput{ExportKeyIdentifier: key.KeyArn, KeyMaterial: &types.ExportKeyMaterialMemberDiffieHellmanTr31KeyBlock{
		Value: types.ExportDiffieHellmanTr31KeyBlock{PrivateKeyIdentifier: k3.Key.KeyArn, CertificateAuthorityPublicKeyIdentifier: &rootARN,
			PublicKeyCertificate: aws.String(certB64(partnerCert)), DeriveKeyAlgorithm: types.SymmetricKeyAlgorithmAes128,
			KeyDerivationFunction: types.KeyDerivationFunctionNistSp800, KeyDerivationHashAlgorithm: types.KeyDerivationHashAlgorithmSha256,
			DerivationData: &types.DiffieHellmanDerivationDataMemberSharedInformation{Value: "ADEF567890"}}}})
	if err != nil {
		t.Fatalf("ExportKey ECDH: %v", err)
	}
	if err := os.WriteFile(peer, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ourCert.RawSubjectPublicKeyInfo}), 0o600); err != nil {
		t.Fatal(err)
	}
	z := openssl(t, nil, "pkeyutl", "-derive", "-inkey", partnerKey, "-peerkey", peer)
	kbpk := strings.ReplaceAll(strings.TrimSpace(string(openssl(t, nil, "kdf", "-keylen", "16", "-kdfopt", "digest:SHA256",
		"-kdfopt", "hexsecret:"+hex.EncodeToString(z), "-kdfopt", "hexinfo:ADEF567890", "SSKDF"))), ":", "")
	_, opened := osslOpenTR31(t, kbpk, *out.WrappedKey.KeyMaterial)
	if kcv := osslKCV(t, opened, true); kcv != *key.KeyCheckValue {
		t.Errorf("OpenSSL KCV %s of the ECDH-exported key, key KCV %s", kcv, *key.KeyCheckValue)
	}

	csr, err := c.GetCertificateSigningRequest(ctx, &pc.GetCertificateSigningRequestInput{KeyIdentifier: k3.Key.KeyArn,
		SigningAlgorithm: types.SigningAlgorithmTypeSha256, CertificateSubject: &types.CertificateSubjectType{CommonName: aws.String("payhsm K3"), Country: aws.String("US")}})
	if err != nil {
		t.Fatal(err)
	}
	reqPEM, err := base64.StdEncoding.DecodeString(*csr.CertificateSigningRequest)
	if err != nil {
		t.Fatal(err)
	}
	reqFile := filepath.Join(dir, "req.pem")
	if err := os.WriteFile(reqFile, reqPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("openssl", "req", "-in", reqFile, "-verify", "-noout", "-subject")
	res, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(res), "verify OK") || !strings.Contains(string(res), "CN = payhsm K3") {
		t.Errorf("openssl req -verify: %v %s", err, res)
	}
}
