package e2e

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
)

// ECDH on the data plane, with OpenSSL's command line as the partner HSM:
// TranslateKeyMaterial (a key block under an ECDH-derived KBPK re-wrapped
// under a stored KEK) and DiffieHellmanSymmetricKey dynamic keys in
// EncryptData/DecryptData and TranslatePinData. Known answers:
//   - 0123456789ABCDEFFEDCBA9876543210 has the published X9.24 check value 08D7B4.
//   - ANSI X9.24-1-2009 Annex A.4: ISO 0 clear block 041274EDCBA9876F (PIN
//     1234, PAN 4012345678909); under the key above it is C03D21CDBCB0C58B
//     (also recomputed here with OpenSSL).

const (
	ecdhTDES2    = "0123456789ABCDEFFEDCBA9876543210"
	ecdhTDES2KCV = "08D7B4"
	ecdhKEK      = "000102030405060708090A0B0C0D0E0F"
	x924Clear    = "041274EDCBA9876F"
	x924PAN      = "4012345678909"
)

// ecdhSide is the OpenSSL partner of one K3 key pair of the appliance.
type ecdhSide struct {
	k3, root, cert string // our key pair's ARN, the imported CA's ARN, the partner's certificate (base64 PEM)
	keyFile, peer  string // the partner's private key, our public key (PEM files)
}

// newECDHSide creates a K3 key pair deriving derive keys, imports the
// partner's CA and gives the partner (OpenSSL) a certificate under it.
func newECDHSide(t *testing.T, c *pc.Client, derive types.DeriveKeyUsage) *ecdhSide {
	t.Helper()
	ctx := context.Background()
	k3, err := c.CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(false), DeriveKeyUsage: derive,
		KeyAttributes: &types.KeyAttributes{KeyUsage: types.KeyUsageTr31K3AsymmetricKeyForKeyAgreement, KeyClass: types.KeyClassAsymmetricKeyPair,
			KeyAlgorithm: types.KeyAlgorithmEccNistP256, KeyModesOfUse: &types.KeyModesOfUse{DeriveKey: true}}})
	if err != nil {
		t.Fatal(err)
	}
	ours, err := c.GetPublicKeyCertificate(ctx, &pc.GetPublicKeyCertificateInput{KeyIdentifier: k3.Key.KeyArn})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &ecdhSide{k3: *k3.Key.KeyArn, keyFile: filepath.Join(dir, "partner.pem"), peer: filepath.Join(dir, "peer.pem")}
	if err := os.WriteFile(s.peer, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: parseB64PEM(t, *ours.KeyCertificate).RawSubjectPublicKeyInfo}), 0o600); err != nil {
		t.Fatal(err)
	}
	openssl(t, nil, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", s.keyFile)
	blk, _ := pem.Decode(openssl(t, nil, "pkey", "-in", s.keyFile, "-pubout"))
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ca := newPartnerCA(t)
	rootARN := importRoot(t, c, certB64(ca.cert), types.KeyAlgorithmRsa2048)
	s.root, s.cert = rootARN, certB64(ca.issue(t, pub, x509.KeyUsageKeyAgreement))
	return s
}

// derive is the partner's key: Z by `openssl pkeyutl -derive`, then
// `openssl kdf` (SSKDF = SP 800-56C one-step, X963KDF) with SHA-256.
func (s *ecdhSide) derive(t *testing.T, kdf, info string, n int) string {
	t.Helper()
	z := openssl(t, nil, "pkeyutl", "-derive", "-inkey", s.keyFile, "-peerkey", s.peer)
	out := openssl(t, nil, "kdf", "-keylen", fmt.Sprint(n), "-kdfopt", "digest:SHA256", "-kdfopt", "hexsecret:"+hex.EncodeToString(z),
		"-kdfopt", "hexinfo:"+info, kdf)
	return strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(string(out)), ":", ""))
}

// osslWrapTR31D builds a version D X9.143 key block under an AES-128 KBPK
// with OpenSSL (the inverse of osslOpenTR31): KBEK and KBMK by CMAC in
// counter mode (TR-31:2018 5.3.2), the CMAC of header || padded payload as
// authenticator, AES-CBC of the payload with the authenticator as IV.
// attrs is the header after the length: usage, algorithm, mode, version,
// exportability ("P0TB00E").
func osslWrapTR31D(t *testing.T, kbpkHex, attrs, keyHex string) string {
	t.Helper()
	derive := func(usage uint16) string {
		d := []byte{1, 0, 0, 0, 0, 2, 0, 128} // counter 1, usage, separator, AES-128, 128 bits
		binary.BigEndian.PutUint16(d[1:], usage)
		return hex.EncodeToString(openssl(t, d, "mac", "-cipher", "AES-128-CBC", "-macopt", "hexkey:"+kbpkHex, "-binary", "CMAC"))
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
	mac := openssl(t, append([]byte(header), payload...), "mac", "-cipher", "AES-128-CBC", "-macopt", "hexkey:"+derive(1), "-binary", "CMAC")
	enc := openssl(t, payload, "enc", "-aes-128-cbc", "-K", derive(0), "-iv", hex.EncodeToString(mac), "-nopad")
	return header + strings.ToUpper(hex.EncodeToString(enc)+hex.EncodeToString(mac))
}

func TestTranslateKeyMaterialInterop(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	c := d.client()
	side := newECDHSide(t, c, types.DeriveKeyUsageTr31K1KeyBlockProtectionKey)
	kek := importKnown(t, c, attrs(types.KeyUsageTr31K1KeyBlockProtectionKey, types.KeyAlgorithmAes128, modesEDWU), ecdhKEK)
	const info = "ADEF567890"
	kbpk := side.derive(t, "SSKDF", info, 16)
	request := func(block, info, out string) map[string]any {
		return map[string]any{
			"IncomingKeyMaterial": map[string]any{"DiffieHellmanTr31KeyBlock": map[string]any{
				"PrivateKeyIdentifier": side.k3, "CertificateAuthorityPublicKeyIdentifier": side.root, "PublicKeyCertificate": side.cert,
				"DeriveKeyAlgorithm": "AES_128", "KeyDerivationFunction": "NIST_SP800", "KeyDerivationHashAlgorithm": "SHA_256",
				"DerivationData": map[string]any{"SharedInformation": info}, "WrappedKeyBlock": block}},
			"OutgoingKeyMaterial": map[string]any{"Tr31KeyBlock": map[string]any{"WrappingKeyIdentifier": out}},
		}
	}
	block := osslWrapTR31D(t, kbpk, "P0TB00E", ecdhTDES2)
	st, body, et := d.dataCall(t, "/keymaterial/translate", request(block, info, *kek.KeyArn))
	if st != 200 {
		t.Fatalf("TranslateKeyMaterial: %d %s %v", st, et, body)
	}
	wk, _ := body["WrappedKey"].(map[string]any)
	material, _ := wk["WrappedKeyMaterial"].(string)
	if wk["KeyCheckValue"] != ecdhTDES2KCV || wk["WrappedKeyMaterialFormat"] != "TR31_KEY_BLOCK" || osslKCV(t, ecdhTDES2, false) != ecdhTDES2KCV {
		t.Errorf("TranslateKeyMaterial answer %v", wk)
	}
	header, key := osslOpenTR31(t, ecdhKEK, material)
	if key != ecdhTDES2 || header[0] != 'D' || header[5:12] != "P0TB00E" {
		t.Errorf("OpenSSL opened %s with header %s", key, header)
	}

	// Refusals: 400 ValidationException, nothing opened.
	for name, req := range map[string]map[string]any{
		"other shared information": request(block, "ADEF567891", *kek.KeyArn),
		"non-exportable key":       request(osslWrapTR31D(t, kbpk, "P0TB00N", ecdhTDES2), info, *kek.KeyArn),
		"key pair as outgoing KEK": request(block, info, side.k3),
		"tampered block":           request(block[:len(block)-2]+map[bool]string{true: "00", false: "11"}[strings.HasSuffix(block, "11")], info, *kek.KeyArn),
	} {
		if st, _, et := d.dataCall(t, "/keymaterial/translate", req); st != 400 || et != "ValidationException" {
			t.Errorf("%s: %d %s", name, st, et)
		}
	}
}

// TestDiffieHellmanSymmetricKeyInterop: EncryptData/DecryptData and
// TranslatePinData with keys agreed between the appliance's K3 key pairs and
// OpenSSL.
func TestDiffieHellmanSymmetricKeyInterop(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	c := d.client()
	ecdh := func(s *ecdhSide, alg, kdf, info string) map[string]any {
		return map[string]any{"WrappedKeyMaterial": map[string]any{"DiffieHellmanSymmetricKey": map[string]any{
			"CertificateAuthorityPublicKeyIdentifier": s.root, "PublicKeyCertificate": s.cert, "KeyAlgorithm": alg,
			"KeyDerivationFunction": kdf, "KeyDerivationHashAlgorithm": "SHA_256", "SharedInformation": info}}}
	}

	t.Run("EncryptData and DecryptData", func(t *testing.T) {
		side := newECDHSide(t, c, types.DeriveKeyUsageTr31D0SymmetricDataEncryptionKey)
		const pt = "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51"
		const iv = "000102030405060708090A0B0C0D0E0F"
		key := side.derive(t, "X963KDF", "0102", 16)
		want := strings.ToUpper(hex.EncodeToString(openssl(t, mustHex(t, pt), "enc", "-aes-128-cbc", "-K", key, "-iv", iv, "-nopad")))
		cbc := map[string]any{"Symmetric": map[string]any{"Mode": "CBC", "InitializationVector": iv}}
		path := "/keys/" + url.PathEscape(side.k3)
		st, body, et := d.dataCall(t, path+"/encrypt", map[string]any{"PlainText": pt, "EncryptionAttributes": cbc,
			"WrappedKey": ecdh(side, "AES_128", "ANSI_X963", "0102")})
		if st != 200 || body["CipherText"] != want || body["KeyArn"] != side.k3 || body["KeyCheckValue"] != osslKCV(t, key, true) {
			t.Fatalf("EncryptData: %d %s %v; OpenSSL %s", st, et, body, want)
		}
		st, body, et = d.dataCall(t, path+"/decrypt", map[string]any{"CipherText": want, "DecryptionAttributes": cbc,
			"WrappedKey": ecdh(side, "AES_128", "ANSI_X963", "0102")})
		if st != 200 || body["PlainText"] != pt {
			t.Fatalf("DecryptData: %d %s %v", st, et, body)
		}
		// The key pair derives data keys, not MAC keys; and a P-256 agreement
		// cannot give an AES-256 key.
		for name, wk := range map[string]map[string]any{
			"HMAC": ecdh(side, "HMAC_SHA256", "ANSI_X963", "0102"), "AES_256": ecdh(side, "AES_256", "ANSI_X963", "0102"),
		} {
			if st, _, et := d.dataCall(t, path+"/encrypt", map[string]any{"PlainText": pt, "EncryptionAttributes": cbc, "WrappedKey": wk}); st != 400 || et != "ValidationException" {
				t.Errorf("%s: %d %s", name, st, et)
			}
		}
	})

	t.Run("TranslatePinData", func(t *testing.T) {
		side := newECDHSide(t, c, types.DeriveKeyUsageTr31P0PinEncryptionKey)
		pek := importKnown(t, c, attrs(types.KeyUsageTr31P0PinEncryptionKey, types.KeyAlgorithmTdes2key, modesEDWU), ecdhTDES2)
		key := side.derive(t, "SSKDF", "CAFE", 16)
		in := strings.ToUpper(hex.EncodeToString(openssl(t, mustHex(t, x924Clear), "enc", "-des-ede3", "-K", tdes24(key), "-nopad")))
		st, body, et := d.dataCall(t, "/pindata/translate", map[string]any{
			"IncomingKeyIdentifier": side.k3, "IncomingTranslationAttributes": isoAttrs("IsoFormat0", x924PAN),
			"OutgoingKeyIdentifier": *pek.KeyArn, "OutgoingTranslationAttributes": isoAttrs("IsoFormat0", x924PAN),
			"EncryptedPinBlock": in, "IncomingWrappedKey": ecdh(side, "TDES_2KEY", "NIST_SP800", "CAFE")})
		if st != 200 {
			t.Fatalf("TranslatePinData: %d %s %v", st, et, body)
		}
		out, _ := body["PinBlock"].(string)
		clearOut := strings.ToUpper(hex.EncodeToString(tdesECB(t, ecdhTDES2, mustHex(t, out), true)))
		if out != "C03D21CDBCB0C58B" || clearOut != x924Clear {
			t.Errorf("PinBlock %s (clear %s), want C03D21CDBCB0C58B", out, clearOut)
		}
	})
}
