package e2e

import (
	"context"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
)

// TestGuideCVN18EndToEnd: the user guide's Visa CVN18/CVN22 ARQC example
// (IMK KCV 08D7B4, option A, PAN 9137631040001422, PSN 01, ATC 000B, ARQC
// 61EDCC708B4C97B4) through the real daemon, with the transaction data
// reconstructed from the guide's two line-wrapped renditions (see hsm/emv
// TestGuideCVN18Example): 33 bytes of terminal data, the 32-byte CVN22 IAD
// 1F220103 00..00, padded by the caller with ISO/IEC 9797-1 method 2.
func TestGuideCVN18EndToEnd(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	c := d.client()
	pub, tok := importParams(t, c, types.KeyAlgorithmRsa2048)
	out, err := c.ImportKey(context.Background(), &pc.ImportKeyInput{KeyMaterial: &types.ImportKeyMaterialMemberKeyCryptogram{Value: types.ImportKeyCryptogram{
		KeyAttributes: attrs(types.KeyUsageTr31E0EmvMkeyAppCryptograms, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{DeriveKey: true}),
		Exportable:    aws.Bool(true), ImportToken: aws.String(tok),
		WrappedKeyCryptogram: aws.String(wrapOAEP(t, pub, sha256.New(), "0123456789ABCDEFFEDCBA9876543210")), WrappingSpec: types.WrappingKeySpecRsaOaepSha256}}})
	if err != nil {
		t.Fatal(err)
	}
	ac := *out.Key.KeyArn
	data := "00000000170000000000000008400080008000084016051700000000093800000B" + "1F220103" + strings.Repeat("00", 27) + "8000000000000000"
	req := func(arqc, psn string) map[string]any {
		return map[string]any{"KeyIdentifier": ac, "AuthRequestCryptogram": arqc, "MajorKeyDerivationMode": "EMV_OPTION_A", "TransactionData": data,
			"SessionKeyDerivationAttributes": map[string]any{"EmvCommon": map[string]any{"ApplicationTransactionCounter": "000B",
				"PanSequenceNumber": psn, "PrimaryAccountNumber": "9137631040001422"}}}
	}
	if status, m, et := d.dataCall(t, "/cryptogram/verify", req("61EDCC708B4C97B4", "01")); status != 200 || m["KeyCheckValue"] != "08D7B4" {
		t.Fatalf("guide CVN18: %d %s %v", status, et, m)
	}
	if status, m, et := d.dataCall(t, "/cryptogram/verify", req("61EDCC708B4C97B4", "00")); status != 400 || et != "VerificationFailedException" ||
		m["Reason"] != "INVALID_AUTH_REQUEST_CRYPTOGRAM" {
		t.Fatalf("other PSN: %d %s %v", status, et, m)
	}
}
