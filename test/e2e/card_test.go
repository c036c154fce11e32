package e2e

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
)

// TestCardAndARQCEndToEnd imports known keys as RSA-OAEP key cryptograms
// through the SDK and runs the card-verification and ARQC operations of the
// user guide through the real daemon's restJson1 routes.
func TestCardAndARQCEndToEnd(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	c := d.client()
	kk := newKnownKeys(t, c)
	imp := func(usage types.KeyUsage, modes types.KeyModesOfUse, keyHex string) string {
		return kk.arn(usage, types.KeyAlgorithmTdes2key, modes, keyHex)
	}
	const imk = "0123456789ABCDEFFEDCBA9876543210" // KCV 08D7B4: the key of the guide's EMV examples
	cvk := imp(types.KeyUsageTr31C0CardVerificationKey, types.KeyModesOfUse{Generate: true, Verify: true}, imk)
	ac := imp(types.KeyUsageTr31E0EmvMkeyAppCryptograms, types.KeyModesOfUse{DeriveKey: true}, imk)
	// jPOS JCESecurityModuleTest testVerifyDCVVImpl1: the Visa dCVV under MK "4 times 12345678".
	dcvvMK := imp(types.KeyUsageTr31E6EmvMkeyOther, types.KeyModesOfUse{DeriveKey: true}, "12345678123456781234567812345678")
	dcvv := map[string]any{"DynamicCardVerificationValue": map[string]any{"PanSequenceNumber": "00", "CardExpiryDate": "1310",
		"ServiceCode": "226", "ApplicationTransactionCounter": "3210"}}

	type call struct {
		name, path string
		body       map[string]any
		status     int
		errType    string
		check      func(map[string]any) bool
	}
	for _, k := range []call{
		// Visa CVV worked example: PAN 4123456789012345, expiry 8701, service code 101 → 561.
		{"CVV generate", "/cardvalidationdata/generate", map[string]any{"KeyIdentifier": cvk, "PrimaryAccountNumber": "4123456789012345",
			"GenerationAttributes": map[string]any{"CardVerificationValue1": map[string]any{"CardExpiryDate": "8701", "ServiceCode": "101"}}},
			200, "", func(m map[string]any) bool {
				return m["ValidationData"] == "561" && m["KeyCheckValue"] == "08D7B4" && m["KeyArn"] == cvk
			}},
		{"CVV verify", "/cardvalidationdata/verify", map[string]any{"KeyIdentifier": cvk, "PrimaryAccountNumber": "4123456789012345",
			"VerificationAttributes": map[string]any{"CardVerificationValue1": map[string]any{"CardExpiryDate": "8701", "ServiceCode": "101"}},
			"ValidationData":         "561"}, 200, "", nil},
		{"CVV wrong", "/cardvalidationdata/verify", map[string]any{"KeyIdentifier": cvk, "PrimaryAccountNumber": "4123456789012345",
			"VerificationAttributes": map[string]any{"CardVerificationValue1": map[string]any{"CardExpiryDate": "8701", "ServiceCode": "101"}},
			"ValidationData":         "562"}, 400, "VerificationFailedException", func(m map[string]any) bool { return m["Reason"] == "INVALID_VALIDATION_DATA" }},
		{"CVV2 with the ARQC key", "/cardvalidationdata/generate", map[string]any{"KeyIdentifier": ac, "PrimaryAccountNumber": "171234567890123",
			"GenerationAttributes": map[string]any{"CardVerificationValue2": map[string]any{"CardExpiryDate": "0123"}}}, 400, "ValidationException", nil},
		{"dCVV generate (jPOS)", "/cardvalidationdata/generate", map[string]any{"KeyIdentifier": dcvvMK, "PrimaryAccountNumber": "1234567890123456",
			"GenerationAttributes": dcvv}, 200, "", func(m map[string]any) bool { return m["ValidationData"] == "422" }},
		{"dCVV verify (jPOS)", "/cardvalidationdata/verify", map[string]any{"KeyIdentifier": dcvvMK, "PrimaryAccountNumber": "1234567890123456",
			"VerificationAttributes": dcvv, "ValidationData": "422"}, 200, "", nil},
		{"dCVV wrong", "/cardvalidationdata/verify", map[string]any{"KeyIdentifier": dcvvMK, "PrimaryAccountNumber": "1234567890123456",
			"VerificationAttributes": dcvv, "ValidationData": "423"}, 400, "VerificationFailedException",
			func(m map[string]any) bool { return m["Reason"] == "INVALID_VALIDATION_DATA" }},
		{"dCVV with the CVK", "/cardvalidationdata/generate", map[string]any{"KeyIdentifier": cvk, "PrimaryAccountNumber": "1234567890123456",
			"GenerationAttributes": dcvv}, 400, "ValidationException", nil},
		// The guide's Visa CVN10 example (Verify auth request (ARQC) cryptogram → Examples).
		{"guide CVN10", "/cryptogram/verify", map[string]any{"KeyIdentifier": ac, "AuthRequestCryptogram": "D791093C8A921769",
			"MajorKeyDerivationMode": "EMV_OPTION_A", "TransactionData": "00000000170000000000000008400080008000084016051700000000093800000B03011203000000",
			"SessionKeyDerivationAttributes": map[string]any{"Visa": map[string]any{"PanSequenceNumber": "01", "PrimaryAccountNumber": "9137631040001422"}}},
			200, "", func(m map[string]any) bool { return m["KeyCheckValue"] == "08D7B4" }},
		// knovichikhin/pyemv tests/test_cvn_hsm.py test_visa_cvn18: ARQC 7A788EA6B8A3E733, ARPC method 2 9AF514C1.
		{"pyemv CVN18 + ARPC2", "/cryptogram/verify", map[string]any{"KeyIdentifier": ac, "AuthRequestCryptogram": "7A788EA6B8A3E733",
			"MajorKeyDerivationMode": "EMV_OPTION_B",
			"TransactionData":        "0000000040000000000000000124800004800001241911050152BF45851800001C06011203A0B80080",
			"SessionKeyDerivationAttributes": map[string]any{"EmvCommon": map[string]any{"PanSequenceNumber": "00", "PrimaryAccountNumber": "1234567890123456",
				"ApplicationTransactionCounter": "001C"}},
			"AuthResponseAttributes": map[string]any{"ArpcMethod2": map[string]any{"CardStatusUpdate": "00000000"}}},
			200, "", func(m map[string]any) bool { return m["AuthResponseValue"] == "9AF514C1" }},
		{"pyemv CVN18 generate", "/cryptogram/generate", map[string]any{"KeyIdentifier": ac, "MajorKeyDerivationMode": "EMV_OPTION_B",
			"TransactionData": "0000000040000000000000000124800004800001241911050152BF45851800001C06011203A0B80080",
			"SessionKeyDerivationAttributes": map[string]any{"EmvCommon": map[string]any{"PanSequenceNumber": "00", "PrimaryAccountNumber": "1234567890123456",
				"ApplicationTransactionCounter": "001C"}}},
			200, "", func(m map[string]any) bool { return m["AuthRequestCryptogram"] == "7A788EA6B8A3E733" }},
		{"ARQC wrong", "/cryptogram/verify", map[string]any{"KeyIdentifier": ac, "AuthRequestCryptogram": "D791093C8A921768",
			"MajorKeyDerivationMode": "EMV_OPTION_A", "TransactionData": "00000000170000000000000008400080008000084016051700000000093800000B03011203000000",
			"SessionKeyDerivationAttributes": map[string]any{"Visa": map[string]any{"PanSequenceNumber": "01", "PrimaryAccountNumber": "9137631040001422"}}},
			400, "VerificationFailedException", func(m map[string]any) bool { return m["Reason"] == "INVALID_AUTH_REQUEST_CRYPTOGRAM" }},
		{"ARQC with the CVK", "/cryptogram/verify", map[string]any{"KeyIdentifier": cvk, "AuthRequestCryptogram": "D791093C8A921769",
			"MajorKeyDerivationMode": "EMV_OPTION_A", "TransactionData": "00000000170000000000000008400080008000084016051700000000093800000B03011203000000",
			"SessionKeyDerivationAttributes": map[string]any{"Visa": map[string]any{"PanSequenceNumber": "01", "PrimaryAccountNumber": "9137631040001422"}}},
			400, "ValidationException", nil},
	} {
		status, body, et := d.dataCall(t, k.path, k.body)
		if status != k.status || (k.errType != "" && !strings.HasPrefix(et, k.errType)) || (k.check != nil && !k.check(body)) {
			t.Errorf("%s: %d %s %v", k.name, status, et, body)
		}
	}
}
