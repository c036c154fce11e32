package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
)

// TestDataEncryptionAndMac drives EncryptData, DecryptData, ReEncryptData,
// GenerateMac and VerifyMac through the real daemon with keys imported as
// RSA-OAEP key cryptograms through the AWS SDK, checking published vectors.
func TestDataEncryptionAndMac(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	c := d.client()
	imp := newKnownKeys(t, c).arn
	encDec := types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}
	aesKey := imp(types.KeyUsageTr31D0SymmetricDataEncryptionKey, types.KeyAlgorithmAes128, encDec, "2B7E151628AED2A6ABF7158809CF4F3C")
	tdesKey := imp(types.KeyUsageTr31D0SymmetricDataEncryptionKey, types.KeyAlgorithmTdes2key, encDec, "0123456789ABCDEFFEDCBA9876543210")
	bdk := imp(types.KeyUsageTr31B0BaseDerivationKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{DeriveKey: true}, "0123456789ABCDEFFEDCBA9876543210")
	m3 := imp(types.KeyUsageTr31M3Iso97973MacKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{Generate: true, Verify: true}, "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
	pinKey := imp(types.KeyUsageTr31P0PinEncryptionKey, types.KeyAlgorithmTdes2key, encDec, "0123456789ABCDEFFEDCBA9876543210")
	keyPath := func(arn, verb string) string { return "/keys/" + url.PathEscape(arn) + "/" + verb }

	// NIST SP 800-38A F.2.1 CBC-AES128.encrypt (first two blocks).
	const pt = "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51"
	const ct = "7649ABAC8119B246CEE98E9B12E9197D5086CB9B507219EE95DB113A917678B2"
	symCBC := map[string]any{"Symmetric": map[string]any{"Mode": "CBC", "InitializationVector": "000102030405060708090A0B0C0D0E0F"}}
	st, body, et := d.dataCall(t, keyPath(aesKey, "encrypt"), map[string]any{"PlainText": pt, "EncryptionAttributes": symCBC})
	if st != 200 || body["CipherText"] != ct || body["KeyArn"] != aesKey || body["KeyCheckValue"] == "" {
		t.Fatalf("EncryptData: %d %s %v", st, et, body)
	}
	st, body, et = d.dataCall(t, keyPath(aesKey, "decrypt"), map[string]any{"CipherText": ct, "DecryptionAttributes": symCBC})
	if st != 200 || body["PlainText"] != pt {
		t.Fatalf("DecryptData: %d %s %v", st, et, body)
	}

	// ANSI X9.24-1-2009 A.4.2 BDK and KSN ...E00001, data request variant,
	// TDES-CBC with a zero IV (vector: moov-io/dukpt pkg/des/des_test.go).
	dpt := strings.ToUpper(hex.EncodeToString([]byte("4012345678909D987"))) + "00000000000000"
	const dct = "FC0D53B7EA1FDA9EE68AAF2E70D9B9506229BE2AA993F04F"
	dukpt := map[string]any{"Dukpt": map[string]any{"KeySerialNumber": "FFFF9876543210E00001", "DukptKeyVariant": "REQUEST", "Mode": "CBC"}}
	st, body, et = d.dataCall(t, keyPath(bdk, "decrypt"), map[string]any{"CipherText": dct, "DecryptionAttributes": dukpt})
	if st != 200 || body["PlainText"] != dpt {
		t.Fatalf("DecryptData DUKPT: %d %s %v", st, et, body)
	}

	// ReEncryptData: DUKPT → the TDES zone key, then decrypt there.
	st, body, et = d.dataCall(t, keyPath(bdk, "reencrypt"), map[string]any{"CipherText": dct, "OutgoingKeyIdentifier": tdesKey,
		"IncomingEncryptionAttributes": dukpt, "OutgoingEncryptionAttributes": map[string]any{"Symmetric": map[string]any{"Mode": "ECB"}}})
	if st != 200 || body["KeyArn"] != tdesKey {
		t.Fatalf("ReEncryptData: %d %s %v", st, et, body)
	}
	st, body, et = d.dataCall(t, keyPath(tdesKey, "decrypt"), map[string]any{"CipherText": body["CipherText"],
		"DecryptionAttributes": map[string]any{"Symmetric": map[string]any{"Mode": "ECB"}}})
	if st != 200 || body["PlainText"] != dpt {
		t.Fatalf("decrypt after ReEncryptData: %d %s %v", st, et, body)
	}

	// Key separation: a PIN key cannot encrypt data.
	st, _, et = d.dataCall(t, keyPath(pinKey, "encrypt"), map[string]any{"PlainText": "0000000000000000",
		"EncryptionAttributes": map[string]any{"Symmetric": map[string]any{"Mode": "ECB"}}})
	if st != 400 || et != "ValidationException" {
		t.Fatalf("PIN key for EncryptData: %d %s", st, et)
	}

	// ISO 9797-1 algorithm 3, padding method 1 (knovichikhin/pyemv tests/test_mac.py).
	msg := hex.EncodeToString([]byte("hello world"))
	st, body, et = d.dataCall(t, "/mac/generate", map[string]any{"KeyIdentifier": m3, "MessageData": msg,
		"GenerationAttributes": map[string]any{"Algorithm": "ISO9797_ALGORITHM3"}})
	if st != 200 || body["Mac"] != "78DA3D3DEB48FD4D" || body["KeyArn"] != m3 {
		t.Fatalf("GenerateMac: %d %s %v", st, et, body)
	}
	st, body, et = d.dataCall(t, "/mac/verify", map[string]any{"KeyIdentifier": m3, "MessageData": msg, "Mac": "78DA3D3DEB48FD4D",
		"VerificationAttributes": map[string]any{"Algorithm": "ISO9797_ALGORITHM3"}})
	if st != 200 || body["KeyCheckValue"] == "" {
		t.Fatalf("VerifyMac: %d %s %v", st, et, body)
	}
	st, body, et = d.dataCall(t, "/mac/verify", map[string]any{"KeyIdentifier": m3, "MessageData": msg, "Mac": "78DA3D3DEB48FD4E",
		"VerificationAttributes": map[string]any{"Algorithm": "ISO9797_ALGORITHM3"}})
	if st != 400 || et != "VerificationFailedException" || body["Reason"] != "INVALID_MAC" {
		t.Fatalf("VerifyMac wrong MAC: %d %s %v", st, et, body)
	}

	// DUKPT MAC, request variant (moov-io/dukpt pkg/des/des_test.go).
	st, body, et = d.dataCall(t, "/mac/generate", map[string]any{"KeyIdentifier": bdk, "MessageData": dpt[:34],
		"GenerationAttributes": map[string]any{"DukptIso9797Algorithm3": map[string]any{"KeySerialNumber": "FFFF9876543210E00001", "DukptKeyVariant": "REQUEST"}}})
	if st != 200 || body["Mac"] != "9CCC78173FC4FB64" {
		t.Fatalf("GenerateMac DUKPT: %d %s %v", st, et, body)
	}
}

// TestHMACKnownAnswersThroughAPI imports 128-bit HMAC-SHA256 keys as RSA-OAEP
// key cryptograms (an HMAC key's strength is its length, NIST SP 800-107 Rev. 1
// §5.3.4, so RSA-3072 may carry it) and checks published MACs through
// GenerateMac/VerifyMac: C2SP/wycheproof testvectors/hmac_sha256_test.json
// tcId 164 and 165 (keySize 128, tagSize 256) and 167 (tagSize 128).
func TestHMACKnownAnswersThroughAPI(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	kk := newKnownKeys(t, d.client())
	gv := types.KeyModesOfUse{Generate: true, Verify: true}
	for _, tc := range []struct {
		id, key, msg, mac string
		length            int
	}{
		{"164", "ac686ba0f1a51b4ec4f0b30492b7f556", "2fa43a14ae500507deb95ab5bd32b0fe", "008532A53D0C0AB22027AE249023375374E2239B959609E8339B05A15742A675", 0},
		{"165", "73ef9ef1a4225e51e3c1db3ace1fa24f", "ffad380d9aabb0acede5c1bf112925cdfc3d379fc2376a4fe2644490d0430ac3", "9C7CB9F7C207EC46D1E3C55764731C4AB5DDBAE4E1401E52A895DF0CFF4787C9", 0},
		{"167", "e09eaa5a3f5e56d279d5e7a03373f6ea", "ef4eab37181f98423e53e947e7050fd0", "CFC19EC07902EC8BE489606D8F40D172", 16},
	} {
		arn := kk.arn(types.KeyUsageTr31M7HmacKey, types.KeyAlgorithmHmacSha256, gv, tc.key)
		macAttrs := map[string]any{"Algorithm": "HMAC_SHA256"}
		req := map[string]any{"KeyIdentifier": arn, "MessageData": strings.ToUpper(tc.msg), "GenerationAttributes": macAttrs}
		if tc.length > 0 {
			req["MacLength"] = tc.length
		}
		st, body, et := d.dataCall(t, "/mac/generate", req)
		if st != 200 || body["Mac"] != tc.mac {
			t.Fatalf("tcId %s: %d %s %v, want %s", tc.id, st, et, body, tc.mac)
		}
		st, _, et = d.dataCall(t, "/mac/verify", map[string]any{"KeyIdentifier": arn, "MessageData": strings.ToUpper(tc.msg), "Mac": tc.mac, "VerificationAttributes": macAttrs})
		if st != 200 {
			t.Fatalf("tcId %s verify: %d %s", tc.id, st, et)
		}
	}
	// A 256-bit HMAC key is stronger than an RSA-3072 import key: refused.
	_, err := kk.c.ImportKey(context.Background(), &pc.ImportKeyInput{KeyMaterial: &types.ImportKeyMaterialMemberKeyCryptogram{Value: types.ImportKeyCryptogram{
		KeyAttributes: attrs(types.KeyUsageTr31M7HmacKey, types.KeyAlgorithmHmacSha256, gv), Exportable: aws.Bool(true), ImportToken: aws.String(kk.tok),
		WrappedKeyCryptogram: aws.String(wrapOAEP(t, kk.pub, sha256.New(), strings.Repeat("ab", 32)))}}})
	if !isErr[*types.ValidationException](err) {
		t.Errorf("a 256-bit HMAC key under RSA-3072: %v", err)
	}
}
