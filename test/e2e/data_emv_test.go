package e2e

import (
	"encoding/hex"
	"net/url"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"

	"payhsm/hsm/tr31"
)

// TestDataEmvAndDynamicKeys drives the EMV members of EncryptData/DecryptData
// and GenerateMac/VerifyMac, and dynamic (TR-31 wrapped) data keys, through
// the real daemon with keys imported as RSA-OAEP key cryptograms.
func TestDataEmvAndDynamicKeys(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	c := d.client()
	imp := newKnownKeys(t, c).arn
	derive := types.KeyModesOfUse{DeriveKey: true}
	encDec := types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}
	// Issuer master keys of knovichikhin/pyemv tests/test_sm_hsm.py.
	smc := imp(types.KeyUsageTr31E1EmvMkeyConfidentiality, types.KeyAlgorithmTdes2key, derive, "11111111111111112222222222222222")
	smi := imp(types.KeyUsageTr31E2EmvMkeyIntegrity, types.KeyAlgorithmTdes2key, derive, "0123456789ABCDEFFEDCBA9876543210")
	keyPath := func(arn, verb string) string { return "/keys/" + url.PathEscape(arn) + "/" + verb }

	// pyemv test_ccd_pin_change: option A, R = ABCDEF1234567890, CBC, zero IV.
	emvAttrs := map[string]any{"Emv": map[string]any{"MajorKeyDerivationMode": "EMV_OPTION_A", "PrimaryAccountNumber": "1234567890123456",
		"PanSequenceNumber": "01", "SessionDerivationData": "ABCDEF1234567890", "Mode": "CBC"}}
	const emvPT, emvCT = "249999FFFFFFFFFF8000000000000000", "28367E05DE3381C29D30A6055A8DEB86"
	st, body, et := d.dataCall(t, keyPath(smc, "encrypt"), map[string]any{"PlainText": emvPT, "EncryptionAttributes": emvAttrs})
	if st != 200 || body["CipherText"] != emvCT || body["KeyArn"] != smc || body["KeyCheckValue"] != "D2B91C" {
		t.Fatalf("EncryptData Emv: %d %s %v", st, et, body)
	}
	st, body, et = d.dataCall(t, keyPath(smc, "decrypt"), map[string]any{"CipherText": emvCT, "DecryptionAttributes": emvAttrs})
	if st != 200 || body["PlainText"] != emvPT {
		t.Fatalf("DecryptData Emv: %d %s %v", st, et, body)
	}
	// The integrity key is not a confidentiality key.
	st, _, et = d.dataCall(t, keyPath(smi, "encrypt"), map[string]any{"PlainText": emvPT, "EncryptionAttributes": emvAttrs})
	if st != 400 || et != "ValidationException" {
		t.Fatalf("E2 key for EncryptData: %d %s", st, et)
	}

	// pyemv test_generate_command_mac: EMV common session key from the cryptogram.
	emvMac := map[string]any{"EmvMac": map[string]any{"MajorKeyDerivationMode": "EMV_OPTION_A", "PrimaryAccountNumber": "1234567890123456",
		"PanSequenceNumber": "01", "SessionKeyDerivationMode": "EMV_COMMON_SESSION_KEY",
		"SessionKeyDerivationValue": map[string]any{"ApplicationCryptogram": "ABCDEF1234567890"}}}
	st, body, et = d.dataCall(t, "/mac/generate", map[string]any{"KeyIdentifier": smi, "MessageData": "8424000008", "GenerationAttributes": emvMac})
	if st != 200 || body["Mac"] != "CF323F09A0F6AB9E" || body["KeyCheckValue"] != "08D7B4" {
		t.Fatalf("GenerateMac EmvMac: %d %s %v", st, et, body)
	}
	// pyemv test_vis_pin_change: Visa session key from ATC FFFF; MacLength 4 verifies the leftmost 4 bytes.
	visaMac := map[string]any{"EmvMac": map[string]any{"MajorKeyDerivationMode": "EMV_OPTION_A", "PrimaryAccountNumber": "1234567890123456",
		"PanSequenceNumber": "01", "SessionKeyDerivationMode": "VISA",
		"SessionKeyDerivationValue": map[string]any{"ApplicationTransactionCounter": "FFFF"}}}
	st, body, et = d.dataCall(t, "/mac/verify", map[string]any{"KeyIdentifier": smi, "MessageData": "8424000210D421231A6FD2F0FAEE671384F0D3A7B9",
		"Mac": "F67E37E6", "MacLength": 4, "VerificationAttributes": visaMac})
	if st != 200 {
		t.Fatalf("VerifyMac EmvMac: %d %s %v", st, et, body)
	}
	st, body, et = d.dataCall(t, "/mac/verify", map[string]any{"KeyIdentifier": smi, "MessageData": "8424000210D421231A6FD2F0FAEE671384F0D3A7B9",
		"Mac": "F67E37E67B06AB98", "VerificationAttributes": visaMac})
	if st != 400 || et != "VerificationFailedException" || body["Reason"] != "INVALID_MAC" {
		t.Fatalf("VerifyMac EmvMac wrong MAC: %d %s %v", st, et, body)
	}

	// Dynamic key: the SP 800-38A AES-128 key as a TR-31 version D block
	// under an imported K1 KEK (NIST SP 800-38A F.2.1/F.2.2 CBC vectors).
	const kekHex = "000102030405060708090A0B0C0D0E0F"
	kek := imp(types.KeyUsageTr31K1KeyBlockProtectionKey, types.KeyAlgorithmAes128, encDec, kekHex)
	kbpk, _ := hex.DecodeString(kekHex)
	key, _ := hex.DecodeString("2B7E151628AED2A6ABF7158809CF4F3C")
	wrap := func(mode byte) map[string]any {
		blk, err := tr31.Wrap(kbpk, tr31.Header{Version: 'D', KeyUsage: "D0", Algorithm: 'A', ModeOfUse: mode, KeyVersion: "00", Exportability: 'N'}, key)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]any{"WrappedKeyMaterial": map[string]any{"Tr31KeyBlock": blk}}
	}
	const pt = "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51"
	const ct = "7649ABAC8119B246CEE98E9B12E9197D5086CB9B507219EE95DB113A917678B2"
	cbc := map[string]any{"Symmetric": map[string]any{"Mode": "CBC", "InitializationVector": "000102030405060708090A0B0C0D0E0F"}}
	st, body, et = d.dataCall(t, keyPath(kek, "encrypt"), map[string]any{"PlainText": pt, "EncryptionAttributes": cbc, "WrappedKey": wrap('E')})
	if st != 200 || body["CipherText"] != ct || body["KeyArn"] != kek || body["KeyCheckValue"] == "" {
		t.Fatalf("EncryptData wrapped: %d %s %v", st, et, body)
	}
	st, body, et = d.dataCall(t, keyPath(kek, "decrypt"), map[string]any{"CipherText": ct, "DecryptionAttributes": cbc, "WrappedKey": wrap('D')})
	if st != 200 || body["PlainText"] != pt {
		t.Fatalf("DecryptData wrapped: %d %s %v", st, et, body)
	}
	// An encrypt-only dynamic key cannot decrypt.
	st, _, et = d.dataCall(t, keyPath(kek, "decrypt"), map[string]any{"CipherText": ct, "DecryptionAttributes": cbc, "WrappedKey": wrap('E')})
	if st != 400 || et != "ValidationException" {
		t.Fatalf("DecryptData with an E key: %d %s", st, et)
	}
	// ReEncryptData from the wrapped key to a second wrapped key (ECB out).
	st, body, et = d.dataCall(t, keyPath(kek, "reencrypt"), map[string]any{"CipherText": ct, "OutgoingKeyIdentifier": kek,
		"IncomingEncryptionAttributes": cbc, "OutgoingEncryptionAttributes": map[string]any{"Symmetric": map[string]any{"Mode": "ECB"}},
		"IncomingWrappedKey": wrap('D'), "OutgoingWrappedKey": wrap('E')})
	// NIST SP 800-38A F.1.1 ECB-AES128.Encrypt, first two blocks.
	if st != 200 || body["CipherText"] != "3AD77BB40D7A3660A89ECAF32466EF97F5D3D58503B9699DE785895A96FDBAAF" {
		t.Fatalf("ReEncryptData wrapped: %d %s %v", st, et, body)
	}
	// A Diffie-Hellman dynamic key needs a K3 key pair and a certificate chained to an imported CA: a KEK
	// named as the key pair and a non-certificate are refused with a ValidationException.
	st, _, et = d.dataCall(t, keyPath(kek, "encrypt"), map[string]any{"PlainText": pt, "EncryptionAttributes": cbc,
		"WrappedKey": map[string]any{"WrappedKeyMaterial": map[string]any{"DiffieHellmanSymmetricKey": map[string]any{
			"CertificateAuthorityPublicKeyIdentifier": kek, "PublicKeyCertificate": "AAAA", "KeyAlgorithm": "AES_128",
			"KeyDerivationFunction": "NIST_SP800", "KeyDerivationHashAlgorithm": "SHA_256", "SharedInformation": "00"}}}})
	if st != 400 || et != "ValidationException" {
		t.Fatalf("DiffieHellmanSymmetricKey: %d %s", st, et)
	}
}
