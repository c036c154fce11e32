package e2e

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"

	"payhsm/internal/testkeys"
)

// The user guide's key exchange flows as printed (with our own keys), through
// the daemon and the AWS SDK, with OpenSSL's command line as the partner:
//   - ECDH import and export ("Import keys using asymmetric techniques
//     (ECDH)", "Export keys ...") with an ECC_NIST_P256 key pair deriving an
//     AES_256 KBPK that carries a TDES_3KEY key, and the AES_256 key flow,
//     which takes an ECC_NIST_P521 key pair (the guide's strength table);
//   - "Creating an asymmetric ECC key": a K3 key pair without DeriveKeyUsage;
//   - "Bring Your Own Certificate Authority (BYOCA)": TR-34 export signed by
//     the customer's own RSA key pair, its CSR signed by an OpenSSL CA, and
//     the token imported back (a TR-34 import whose KDH is the customer's),
//     plus a TR-34 import to the customer's own TR31_K2 key pair.
// Nothing here uses payhsm's own hsm/ packages.

// ecdhCurvePartner is OpenSSL's half of an ECDH agreement on one curve with
// one of the appliance's K3 key pairs.
type ecdhCurvePartner struct {
	k3, root, cert string // our key pair's ARN, the imported CA's ARN, the partner's certificate (base64 PEM)
	keyFile, peer  string
}

// newCurvePartner creates a K3 key pair on curve (DeriveKeyUsage derive, ""
// for none) and an OpenSSL partner on the same curve certified by a CA the
// appliance trusts.
func newCurvePartner(t *testing.T, c *pc.Client, curve types.KeyAlgorithm, derive types.DeriveKeyUsage) *ecdhCurvePartner {
	t.Helper()
	ctx := context.Background()
	k3, err := c.CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(true), DeriveKeyUsage: derive,
		KeyAttributes: &types.KeyAttributes{KeyUsage: types.KeyUsageTr31K3AsymmetricKeyForKeyAgreement, KeyClass: types.KeyClassAsymmetricKeyPair,
			KeyAlgorithm: curve, KeyModesOfUse: &types.KeyModesOfUse{DeriveKey: true}}})
	if err != nil {
		t.Fatal(err)
	}
	ours, err := c.GetPublicKeyCertificate(ctx, &pc.GetPublicKeyCertificateInput{KeyIdentifier: k3.Key.KeyArn})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := &ecdhCurvePartner{k3: *k3.Key.KeyArn, keyFile: filepath.Join(dir, "partner.pem"), peer: filepath.Join(dir, "peer.pem")}
	if err := os.WriteFile(p.peer, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: parseB64PEM(t, *ours.KeyCertificate).RawSubjectPublicKeyInfo}), 0o600); err != nil {
		t.Fatal(err)
	}
	name := map[types.KeyAlgorithm]string{types.KeyAlgorithmEccNistP256: "P-256", types.KeyAlgorithmEccNistP384: "P-384", types.KeyAlgorithmEccNistP521: "P-521"}[curve]
	openssl(t, nil, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:"+name, "-out", p.keyFile)
	blk, _ := pem.Decode(openssl(t, nil, "pkey", "-in", p.keyFile, "-pubout"))
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ca := newPartnerCA(t)
	p.root, p.cert = importRoot(t, c, certB64(ca.cert), types.KeyAlgorithmRsa2048), certB64(ca.issue(t, pub, x509.KeyUsageKeyAgreement))
	return p
}

// kbpk is the partner's KBPK: Z by `openssl pkeyutl -derive`, then the NIST SP
// 800-56C one-step KDF (`openssl kdf SSKDF`) with SHA-256.
func (p *ecdhCurvePartner) kbpk(t *testing.T, info string, n int) string {
	t.Helper()
	z := openssl(t, nil, "pkeyutl", "-derive", "-inkey", p.keyFile, "-peerkey", p.peer)
	out := openssl(t, nil, "kdf", "-keylen", fmt.Sprint(n), "-kdfopt", "digest:SHA256", "-kdfopt", "hexsecret:"+hex.EncodeToString(z),
		"-kdfopt", "hexinfo:"+info, "SSKDF")
	return strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(string(out)), ":", ""))
}

// material is the guide's DiffieHellmanTr31KeyBlock members for this
// agreement (NIST_SP800, SHA_256, an AES_256 KBPK).
func (p *ecdhCurvePartner) exportMaterial(info string) *types.ExportKeyMaterialMemberDiffieHellmanTr31KeyBlock {
	return &types.ExportKeyMaterialMemberDiffieHellmanTr31KeyBlock{Value: types.ExportDiffieHellmanTr31KeyBlock{
		CertificateAuthorityPublicKeyIdentifier: aws.String(p.root), DerivationData: &types.DiffieHellmanDerivationDataMemberSharedInformation{Value: info},
		DeriveKeyAlgorithm: types.SymmetricKeyAlgorithmAes256, KeyDerivationFunction: types.KeyDerivationFunctionNistSp800,
		KeyDerivationHashAlgorithm: types.KeyDerivationHashAlgorithmSha256, PrivateKeyIdentifier: aws.String(p.k3), PublicKeyCertificate: aws.String(p.cert)}}
}

func (p *ecdhCurvePartner) importMaterial(info, block string) *types.ImportKeyMaterialMemberDiffieHellmanTr31KeyBlock {
	return &types.ImportKeyMaterialMemberDiffieHellmanTr31KeyBlock{Value: types.ImportDiffieHellmanTr31KeyBlock{
		CertificateAuthorityPublicKeyIdentifier: aws.String(p.root), DerivationData: &types.DiffieHellmanDerivationDataMemberSharedInformation{Value: info},
		DeriveKeyAlgorithm: types.SymmetricKeyAlgorithmAes256, KeyDerivationFunction: types.KeyDerivationFunctionNistSp800,
		KeyDerivationHashAlgorithm: types.KeyDerivationHashAlgorithmSha256, PrivateKeyIdentifier: aws.String(p.k3), PublicKeyCertificate: aws.String(p.cert),
		WrappedKeyBlock: aws.String(block)}}
}

// osslWrapTR31DAny builds a version D X9.143 key block under an AES KBPK of
// any length with OpenSSL: KBEK and KBMK by CMAC in counter mode (ANSI X9
// TR-31:2018 section 5.3.2: counter || usage (0000 encryption, 0001 MAC) ||
// 00 || algorithm (0002..0004 AES-128..256) || length in bits), the CMAC of
// header || padded payload as authenticator, AES-CBC of the payload with the
// authenticator as IV. attrs is the header after the length ("K1TB00E").
func osslWrapTR31DAny(t *testing.T, kbpkHex, attrs, keyHex string) string {
	t.Helper()
	n := len(kbpkHex) / 2
	cmac := map[int]string{16: "AES-128-CBC", 24: "AES-192-CBC", 32: "AES-256-CBC"}[n]
	derive := func(usage uint16) string {
		var out []byte
		for ctr := byte(1); len(out) < n; ctr++ {
			d := []byte{ctr, 0, 0, 0, 0, 0, 0, 0}
			binary.BigEndian.PutUint16(d[1:], usage)
			binary.BigEndian.PutUint16(d[4:], map[int]uint16{16: 2, 24: 3, 32: 4}[n])
			binary.BigEndian.PutUint16(d[6:], uint16(8*n))
			out = append(out, openssl(t, d, "mac", "-cipher", cmac, "-macopt", "hexkey:"+kbpkHex, "-binary", "CMAC")...)
		}
		return hex.EncodeToString(out[:n])
	}
	key, _ := hex.DecodeString(keyHex)
	payload := binary.BigEndian.AppendUint16(nil, uint16(8*len(key)))
	payload = append(payload, key...)
	pad := make([]byte, (16-len(payload)%16)%16)
	if _, err := rand.Read(pad); err != nil {
		t.Fatal(err)
	}
	payload = append(payload, pad...)
	header := fmt.Sprintf("D%04d%s0000", 16+2*len(payload)+32, attrs)
	mac := openssl(t, append([]byte(header), payload...), "mac", "-cipher", cmac, "-macopt", "hexkey:"+derive(1), "-binary", "CMAC")
	enc := openssl(t, payload, "enc", "-"+strings.ToLower(cmac), "-K", derive(0), "-iv", hex.EncodeToString(mac), "-nopad")
	return header + strings.ToUpper(hex.EncodeToString(enc)+hex.EncodeToString(mac))
}

// TestGuideECDHFlows: the guide's ECDH import and export as printed, an
// ECC_NIST_P256 key pair deriving an AES_256 KBPK for a TDES_3KEY key; an
// AES_256 key, which the guide's strength table lets only ECC_NIST_P521
// protect, refused on P-256 with a message naming P-521, and exchanged end to
// end on P-521.
func TestGuideECDHFlows(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	c := d.client()
	ctx := context.Background()
	p256 := newCurvePartner(t, c, types.KeyAlgorithmEccNistP256, types.DeriveKeyUsageTr31K1KeyBlockProtectionKey)

	t.Run("import, as printed", func(t *testing.T) {
		const tdes3 = "0123456789ABCDEFFEDCBA987654321089ABCDEF01234567"
		block := osslWrapTR31DAny(t, p256.kbpk(t, "1234567890", 32), "K1TB00E", tdes3)
		if !strings.HasPrefix(block, "D0112K1TB00E0000") {
			t.Fatalf("block header %.16s, the guide's is D0112K1TB00E0000", block)
		}
		k, err := c.ImportKey(ctx, &pc.ImportKeyInput{KeyMaterial: p256.importMaterial("1234567890", block)})
		if err != nil {
			t.Fatalf("ImportKey DiffieHellmanTr31KeyBlock: %v", err)
		}
		a := k.Key.KeyAttributes
		if a.KeyAlgorithm != types.KeyAlgorithmTdes3key || a.KeyClass != types.KeyClassSymmetricKey || a.KeyUsage != types.KeyUsageTr31K1KeyBlockProtectionKey ||
			*a.KeyModesOfUse != modesEDWU || k.Key.KeyOrigin != types.KeyOriginExternal || *k.Key.KeyCheckValue != osslKCV(t, tdes3, false) {
			t.Errorf("imported %+v %+v KCV %s", a, *a.KeyModesOfUse, *k.Key.KeyCheckValue)
		}
	})
	t.Run("export, as printed", func(t *testing.T) {
		key := createKey(t, c, attrs(types.KeyUsageTr31K1KeyBlockProtectionKey, types.KeyAlgorithmTdes3key, modesEDWU), true)
		out, err := c.ExportKey(ctx, &pc.ExportKeyInput{ExportKeyIdentifier: key.KeyArn, KeyMaterial: p256.exportMaterial("ADEF567890")})
		if err != nil {
			t.Fatalf("ExportKey DiffieHellmanTr31KeyBlock: %v", err)
		}
		w := out.WrappedKey
		if w.WrappedKeyMaterialFormat != types.WrappedKeyMaterialFormatTr31KeyBlock || !strings.HasPrefix(*w.KeyMaterial, "D0112K1TB00E0000") ||
			w.KeyCheckValueAlgorithm != types.KeyCheckValueAlgorithmAnsiX924 || *w.KeyCheckValue != *key.KeyCheckValue {
			t.Errorf("export %s %.16s %s %s", w.WrappedKeyMaterialFormat, *w.KeyMaterial, w.KeyCheckValueAlgorithm, *w.KeyCheckValue)
		}
		_, clear := osslOpenTR31(t, p256.kbpk(t, "ADEF567890", 32), *w.KeyMaterial)
		if osslKCV(t, clear, false) != *key.KeyCheckValue {
			t.Errorf("OpenSSL opened a key with another check value")
		}
	})

	aes256 := createKey(t, c, attrs(types.KeyUsageTr31K0KeyEncryptionKey, types.KeyAlgorithmAes256, modesEDWU), true)
	t.Run("AES_256 key on P-256 refused", func(t *testing.T) {
		_, err := c.ExportKey(ctx, &pc.ExportKeyInput{ExportKeyIdentifier: aes256.KeyArn, KeyMaterial: p256.exportMaterial("ADEF567890")})
		if !isErr[*types.ValidationException](err) || !strings.Contains(err.Error(), "use an ECC_NIST_P521 key pair") ||
			!strings.Contains(err.Error(), "KeyMaterial.DiffieHellmanTr31KeyBlock.PrivateKeyIdentifier: a key agreement on ECC_NIST_P256") {
			t.Fatalf("export: %v", err)
		}
		const key = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
		block := osslWrapTR31DAny(t, p256.kbpk(t, "1234567890", 32), "K0AB00E", key)
		_, err = c.ImportKey(ctx, &pc.ImportKeyInput{KeyMaterial: p256.importMaterial("1234567890", block)})
		if !isErr[*types.ValidationException](err) || !strings.Contains(err.Error(), "ECC_NIST_P521") {
			t.Fatalf("import: %v", err)
		}
	})
	t.Run("AES_256 key on P-521", func(t *testing.T) {
		p521 := newCurvePartner(t, c, types.KeyAlgorithmEccNistP521, types.DeriveKeyUsageTr31K1KeyBlockProtectionKey)
		out, err := c.ExportKey(ctx, &pc.ExportKeyInput{ExportKeyIdentifier: aes256.KeyArn, KeyMaterial: p521.exportMaterial("ADEF567890")})
		if err != nil {
			t.Fatalf("export: %v", err)
		}
		header, clear := osslOpenTR31(t, p521.kbpk(t, "ADEF567890", 32), *out.WrappedKey.KeyMaterial)
		if header[5:12] != "K0AB00E" || osslKCV(t, clear, true) != *aes256.KeyCheckValue {
			t.Errorf("OpenSSL opened %s with another check value", header)
		}
		const key = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
		block := osslWrapTR31DAny(t, p521.kbpk(t, "1234567890", 32), "K0AB00E", key)
		k, err := c.ImportKey(ctx, &pc.ImportKeyInput{KeyMaterial: p521.importMaterial("1234567890", block)})
		if err != nil {
			t.Fatalf("import: %v", err)
		}
		if k.Key.KeyAttributes.KeyAlgorithm != types.KeyAlgorithmAes256 || *k.Key.KeyCheckValue != osslKCV(t, key, true) {
			t.Errorf("imported %s KCV %s", k.Key.KeyAttributes.KeyAlgorithm, *k.Key.KeyCheckValue)
		}
	})
}

// TestGuideK3WithoutDeriveKeyUsage: "Creating an asymmetric ECC key" as
// printed: no DeriveKeyUsage. The key pair derives TR31_K1 key block
// protection keys (the value the guide's ECDH flows use), says so, and does.
func TestGuideK3WithoutDeriveKeyUsage(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	c := d.client()
	ctx := context.Background()
	out, err := c.CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: &types.KeyAttributes{
		KeyAlgorithm: types.KeyAlgorithmEccNistP256, KeyUsage: types.KeyUsageTr31K3AsymmetricKeyForKeyAgreement,
		KeyClass: types.KeyClassAsymmetricKeyPair, KeyModesOfUse: &types.KeyModesOfUse{DeriveKey: true}}})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	k := out.Key
	if k.KeyState != types.KeyStateCreateComplete || !*k.Enabled || !*k.Exportable || k.KeyOrigin != types.KeyOriginAwsPaymentCryptography ||
		k.KeyCheckValueAlgorithm != types.KeyCheckValueAlgorithmSha1 || len(*k.KeyCheckValue) != 8 ||
		*k.KeyAttributes.KeyModesOfUse != (types.KeyModesOfUse{DeriveKey: true}) || k.DeriveKeyUsage != types.DeriveKeyUsageTr31K1KeyBlockProtectionKey {
		t.Errorf("created %+v", k)
	}
	g, err := c.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: k.KeyArn})
	if err != nil || g.Key.DeriveKeyUsage != types.DeriveKeyUsageTr31K1KeyBlockProtectionKey {
		t.Fatalf("GetKey: %v", err)
	}
	// It serves the guide's ECDH export: OpenSSL opens the block.
	ours, err := c.GetPublicKeyCertificate(ctx, &pc.GetPublicKeyCertificateInput{KeyIdentifier: k.KeyArn})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := &ecdhCurvePartner{k3: *k.KeyArn, keyFile: filepath.Join(dir, "partner.pem"), peer: filepath.Join(dir, "peer.pem")}
	if err := os.WriteFile(p.peer, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: parseB64PEM(t, *ours.KeyCertificate).RawSubjectPublicKeyInfo}), 0o600); err != nil {
		t.Fatal(err)
	}
	openssl(t, nil, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", p.keyFile)
	blk, _ := pem.Decode(openssl(t, nil, "pkey", "-in", p.keyFile, "-pubout"))
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ca := newPartnerCA(t)
	p.root, p.cert = importRoot(t, c, certB64(ca.cert), types.KeyAlgorithmRsa2048), certB64(ca.issue(t, pub, x509.KeyUsageKeyAgreement))
	key := createKey(t, c, attrs(types.KeyUsageTr31P0PinEncryptionKey, types.KeyAlgorithmTdes2key, modesEDWU), true)
	w, err := c.ExportKey(ctx, &pc.ExportKeyInput{ExportKeyIdentifier: key.KeyArn, KeyMaterial: p.exportMaterial("ADEF567890")})
	if err != nil {
		t.Fatalf("ExportKey: %v", err)
	}
	if _, clear := osslOpenTR31(t, p.kbpk(t, "ADEF567890", 32), *w.WrappedKey.KeyMaterial); osslKCV(t, clear, false) != *key.KeyCheckValue {
		t.Error("OpenSSL opened a key with another check value")
	}
}

// customerCA is the customer's external CA of the BYOCA flow, run with the
// OpenSSL commands the guide prints ("Using OpenSSL for Testing"), on a
// committed test key.
type customerCA struct{ dir, key, cert string }

func newCustomerCA(t *testing.T) *customerCA {
	t.Helper()
	ca := &customerCA{dir: t.TempDir()}
	ca.key, ca.cert = filepath.Join(ca.dir, "ca-key.pem"), filepath.Join(ca.dir, "ca-cert.pem")
	p8, err := x509.MarshalPKCS8PrivateKey(testkeys.RSA(t, 2048))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca.key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600); err != nil {
		t.Fatal(err)
	}
	openssl(t, nil, "req", "-new", "-x509", "-days", "3650", "-key", ca.key, "-out", ca.cert, "-subj", "/C=US/ST=Virginia/L=Arlington/O=TestOrg/CN=Test CA")
	return ca
}

// sign signs a CSR (the base64 PEM GetCertificateSigningRequest returns) as
// the guide does and returns the certificate as base64 PEM.
func (ca *customerCA) sign(t *testing.T, csrB64 string) string {
	t.Helper()
	csr, err := base64.StdEncoding.DecodeString(csrB64)
	if err != nil {
		t.Fatal(err)
	}
	in, out := filepath.Join(ca.dir, "csr.pem"), filepath.Join(ca.dir, "signed-cert.pem")
	if err := os.WriteFile(in, csr, 0o600); err != nil {
		t.Fatal(err)
	}
	openssl(t, nil, "x509", "-req", "-in", in, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-out", out, "-days", "365", "-sha512")
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func (ca *customerCA) certB64(t *testing.T) string {
	b, err := os.ReadFile(ca.cert)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// cmsVerify has OpenSSL verify a TR-34 token (hex) as a CMS SignedData: the
// signature with the signing certificate (base64 PEM) and that
// certificate's chain to the CA.
func (ca *customerCA) cmsVerify(t *testing.T, tokenHex, signerB64 string) error {
	t.Helper()
	tok, err := hex.DecodeString(tokenHex)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := base64.StdEncoding.DecodeString(signerB64)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tf, sf := filepath.Join(dir, "token.der"), filepath.Join(dir, "signer.pem")
	if err := os.WriteFile(tf, tok, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sf, signer, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "cms", "-verify", "-inform", "DER", "-in", tf, "-binary", "-purpose", "any",
		"-certfile", sf, "-CAfile", ca.cert, "-out", filepath.Join(dir, "envelope.der")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("openssl cms -verify: %v: %s", err, out)
	}
	return nil
}

// TestGuideTR34CustomerKDH: the guide's BYOCA TR-34 export as printed
// (steps 1 to 7: CreateKey, GetCertificateSigningRequest, OpenSSL CA signs,
// ImportKey the CA, GetParametersForImport for the KRD, ExportKey with
// SigningKeyIdentifier and SigningKeyCertificate, no export token). OpenSSL
// verifies the token's CMS signature with the customer's certificate and CA;
// the token imports back with the customer's CA as the KDH's (a TR-34 import
// whose KDH is the customer's). Then a TR-34 import to the customer's own
// TR31_K2 key pair (WrappingKeyIdentifier and its certificate, no import token).
func TestGuideTR34CustomerKDH(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	c := d.client()
	ctx := context.Background()

	// Step 1: the signing key pair.
	sk, err := c.CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: &types.KeyAttributes{KeyAlgorithm: types.KeyAlgorithmRsa2048,
		KeyUsage: types.KeyUsageTr31S0AsymmetricKeyForDigitalSignature, KeyClass: types.KeyClassAsymmetricKeyPair, KeyModesOfUse: &types.KeyModesOfUse{Sign: true}}})
	if err != nil {
		t.Fatalf("step 1: %v", err)
	}
	// Step 2: its CSR; step 4: the customer's CA signs it.
	csr, err := c.GetCertificateSigningRequest(ctx, &pc.GetCertificateSigningRequestInput{KeyIdentifier: sk.Key.KeyArn, SigningAlgorithm: types.SigningAlgorithmTypeSha512,
		CertificateSubject: &types.CertificateSubjectType{CommonName: aws.String("MyCertificateAWSUSEAST"), Organization: aws.String("Amazon"),
			OrganizationUnit: aws.String("PaymentCryptography"), Country: aws.String("US"), StateOrProvince: aws.String("Virginia"), City: aws.String("Arlington")}})
	if err != nil {
		t.Fatalf("step 2: %v", err)
	}
	ca := newCustomerCA(t)
	signingCert := ca.sign(t, *csr.CertificateSigningRequest)
	// Step 5: trust the customer's CA.
	custRoot := importRoot(t, c, ca.certB64(t), types.KeyAlgorithmRsa2048)
	// Step 6: the KRD certificate (here the appliance's own import parameters),
	// whose chain is trusted for the export.
	ip, err := c.GetParametersForImport(ctx, &pc.GetParametersForImportInput{KeyMaterialType: types.KeyMaterialTypeTr34KeyBlock, WrappingKeyAlgorithm: types.KeyAlgorithmRsa2048})
	if err != nil {
		t.Fatalf("step 6: %v", err)
	}
	krdRoot := importRoot(t, c, *ip.WrappingKeyCertificateChain, types.KeyAlgorithmRsa3072)
	// Step 7: the export.
	kek := createKey(t, c, attrs(types.KeyUsageTr31K0KeyEncryptionKey, types.KeyAlgorithmTdes2key, modesEDWU), true)
	export := func(nonce *string, signer string) (*pc.ExportKeyOutput, error) {
		return c.ExportKey(ctx, &pc.ExportKeyInput{ExportKeyIdentifier: kek.KeyArn, KeyMaterial: &types.ExportKeyMaterialMemberTr34KeyBlock{Value: types.ExportTr34KeyBlock{
			CertificateAuthorityPublicKeyIdentifier: aws.String(krdRoot), SigningKeyIdentifier: sk.Key.KeyArn, SigningKeyCertificate: aws.String(signer),
			KeyBlockFormat: types.Tr34KeyBlockFormatX9Tr342012, WrappingKeyCertificate: ip.WrappingKeyCertificate, RandomNonce: nonce}}})
	}
	out, err := export(nil, signingCert)
	if err != nil {
		t.Fatalf("step 7: %v", err)
	}
	w := out.WrappedKey
	if w.WrappedKeyMaterialFormat != types.WrappedKeyMaterialFormatTr34KeyBlock || !strings.HasPrefix(*w.KeyMaterial, "30") ||
		*w.KeyCheckValue != *kek.KeyCheckValue || w.KeyCheckValueAlgorithm != types.KeyCheckValueAlgorithmAnsiX924 {
		t.Errorf("step 7 answer %s %.8s %s %s", w.WrappedKeyMaterialFormat, *w.KeyMaterial, *w.KeyCheckValue, w.KeyCheckValueAlgorithm)
	}
	if err := ca.cmsVerify(t, *w.KeyMaterial, signingCert); err != nil {
		t.Errorf("OpenSSL does not verify the token's signature: %v", err)
	}
	// Another key pair's certificate is refused (the guide's "most common error").
	other, err := c.CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: sk.Key.KeyAttributes})
	if err != nil {
		t.Fatal(err)
	}
	otherCSR, err := c.GetCertificateSigningRequest(ctx, &pc.GetCertificateSigningRequestInput{KeyIdentifier: other.Key.KeyArn,
		SigningAlgorithm: types.SigningAlgorithmTypeSha256, CertificateSubject: &types.CertificateSubjectType{CommonName: aws.String("other")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := export(nil, ca.sign(t, *otherCSR.CertificateSigningRequest)); !isErr[*types.ValidationException](err) ||
		!strings.Contains(err.Error(), "SigningKeyCertificate") {
		t.Errorf("a certificate of another key pair: %v", err)
	}

	// The receiving system imports it: a TR-34 import whose KDH is the customer's key.
	const nonce = "5A17C0FFEE0DDBA1"
	out, err = export(aws.String(nonce), signingCert)
	if err != nil {
		t.Fatal(err)
	}
	k, err := c.ImportKey(ctx, &pc.ImportKeyInput{KeyMaterial: &types.ImportKeyMaterialMemberTr34KeyBlock{Value: types.ImportTr34KeyBlock{
		CertificateAuthorityPublicKeyIdentifier: aws.String(custRoot), SigningKeyCertificate: aws.String(signingCert), ImportToken: ip.ImportToken,
		WrappedKeyBlock: out.WrappedKey.KeyMaterial, KeyBlockFormat: types.Tr34KeyBlockFormatX9Tr342012, RandomNonce: aws.String(nonce)}}})
	if err != nil {
		t.Fatalf("import with the customer's KDH: %v", err)
	}
	if *k.Key.KeyCheckValue != *kek.KeyCheckValue || k.Key.KeyAttributes.KeyUsage != types.KeyUsageTr31K0KeyEncryptionKey {
		t.Errorf("imported KCV %s, exported %s", *k.Key.KeyCheckValue, *kek.KeyCheckValue)
	}

	// A TR-34 import to the customer's own K2 key pair: the appliance's
	// export token signs as the partner KDH, to the key pair's certificate.
	krd, err := c.CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(false), KeyAttributes: &types.KeyAttributes{KeyAlgorithm: types.KeyAlgorithmRsa2048,
		KeyUsage: types.KeyUsageTr31K2Tr34AsymmetricKey, KeyClass: types.KeyClassAsymmetricKeyPair, KeyModesOfUse: &types.KeyModesOfUse{Decrypt: true, Unwrap: true}}})
	if err != nil {
		t.Fatal(err)
	}
	krdCert, err := c.GetPublicKeyCertificate(ctx, &pc.GetPublicKeyCertificateInput{KeyIdentifier: krd.Key.KeyArn})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := c.GetParametersForExport(ctx, &pc.GetParametersForExportInput{KeyMaterialType: types.KeyMaterialTypeTr34KeyBlock, SigningKeyAlgorithm: types.KeyAlgorithmRsa2048})
	if err != nil {
		t.Fatal(err)
	}
	// The appliance's one profile CA issues the import, export and key pair
	// certificates alike; it is already trusted (krdRoot).
	for _, chain := range []*string{krdCert.KeyCertificateChain, ep.SigningKeyCertificateChain} {
		if *chain != *ip.WrappingKeyCertificateChain {
			t.Fatal("the appliance's certificates chain to different CAs")
		}
	}
	ownRoot, kdhRoot := krdRoot, krdRoot
	pek := createKey(t, c, attrs(types.KeyUsageTr31P0PinEncryptionKey, types.KeyAlgorithmTdes3key, modesEDWU), true)
	tok, err := c.ExportKey(ctx, &pc.ExportKeyInput{ExportKeyIdentifier: pek.KeyArn, KeyMaterial: &types.ExportKeyMaterialMemberTr34KeyBlock{Value: types.ExportTr34KeyBlock{
		CertificateAuthorityPublicKeyIdentifier: aws.String(ownRoot), ExportToken: ep.ExportToken, KeyBlockFormat: types.Tr34KeyBlockFormatX9Tr342012,
		WrappingKeyCertificate: krdCert.KeyCertificate, RandomNonce: aws.String(nonce)}}})
	if err != nil {
		t.Fatal(err)
	}
	importOwn := func(cert *string) (*pc.ImportKeyOutput, error) {
		return c.ImportKey(ctx, &pc.ImportKeyInput{KeyMaterial: &types.ImportKeyMaterialMemberTr34KeyBlock{Value: types.ImportTr34KeyBlock{
			CertificateAuthorityPublicKeyIdentifier: aws.String(kdhRoot), SigningKeyCertificate: ep.SigningKeyCertificate,
			WrappingKeyIdentifier: krd.Key.KeyArn, WrappingKeyCertificate: cert,
			WrappedKeyBlock: tok.WrappedKey.KeyMaterial, KeyBlockFormat: types.Tr34KeyBlockFormatX9Tr342012, RandomNonce: aws.String(nonce)}}})
	}
	if _, err := importOwn(aws.String(signingCert)); !isErr[*types.ValidationException](err) || !strings.Contains(err.Error(), "WrappingKeyCertificate") {
		t.Errorf("another key pair's certificate as the KRD's: %v", err)
	}
	got, err := importOwn(krdCert.KeyCertificate)
	if err != nil {
		t.Fatalf("import to the customer's K2 key pair: %v", err)
	}
	if *got.Key.KeyCheckValue != *pek.KeyCheckValue {
		t.Errorf("imported KCV %s, exported %s", *got.Key.KeyCheckValue, *pek.KeyCheckValue)
	}
}
