package e2e

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"

	"payhsm/hsm/as2805"
)

// AS2805 over the wire (user guide "AS2805"). No public AS2805 example has
// known keys, so the expected values were computed with the OpenSSL command
// line on the constructions of the public sources cited in hsm/as2805
// (hsm/as2805/testdata/openssl_kat.sh):
//   - KEK tdesKey (KCV 08D7B4); working key / KPP as2805Key (KCV 387A9F).
//   - As2805KeyCryptogram: openssl enc -des-ede-cbc -iv 0 -K (KEK XOR vvC0…).
//   - KEK validation: KRs as2805KRs is answered with KRr as2805KRr.
//   - KPE of STAN 000348 / amount 000000000328 (the guide's example values)
//     under as2805Key: 3EFDE74E8FA9FA29A4ADBED43D96FF4E. PIN 1234 with PAN
//     9999179999900013 (ISO 0 block 0412A5866666FFFE) is 0F6237D32CF66782
//     under the KPE and 6986F8D19B2C40A8 under tdesKey (openssl enc -des-ede-ecb).
const (
	as2805Key       = "A8B5F2C4D3E6B5A19DF0BCD62A8C4B7F"
	as2805KeyKCV    = "387A9F"
	as2805PIN28     = "D3F307F15FA89F1F420E58F063693023"
	as2805MAC24     = "3C726BEF38C8A97F4CA491DA17EC01D9"
	as2805KRs       = "243B0AA2B8BA6F80C5DA2D88331131C7"
	as2805KRr       = "44F8078074141B9CF30FC8A34ABBF403"
	as2805PAN       = "9999179999900013"
	as2805PinKPE    = "0F6237D32CF66782"
	as2805PinOutPEK = "6986F8D19B2C40A8"
)

func TestAS2805(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	c := d.client()
	ctx := context.Background()
	imp := newKnownKeys(t, c).arn
	edwu := types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}
	kek := imp(types.KeyUsageTr31K0KeyEncryptionKey, types.KeyAlgorithmTdes2key, edwu, tdesKey)
	zpk := imp(types.KeyUsageTr31P0PinEncryptionKey, types.KeyAlgorithmTdes2key, edwu, as2805Key)
	pek := imp(types.KeyUsageTr31P0PinEncryptionKey, types.KeyAlgorithmTdes2key, edwu, tdesKey)
	if got := opensslTDESKCV(t, as2805Key); got != as2805KeyKCV {
		t.Fatalf("OpenSSL KCV of the working key %s, want %s", got, as2805KeyKCV)
	}

	t.Run("ExportKey As2805KeyCryptogram", func(t *testing.T) {
		out, err := c.ExportKey(ctx, &pc.ExportKeyInput{ExportKeyIdentifier: aws.String(zpk), KeyMaterial: &types.ExportKeyMaterialMemberAs2805KeyCryptogram{
			Value: types.ExportAs2805KeyCryptogram{WrappingKeyIdentifier: aws.String(kek), As2805KeyVariant: types.As2805KeyVariantPinEncryptionKeyVariant28}}})
		if err != nil {
			t.Fatal(err)
		}
		w := out.WrappedKey
		if aws.ToString(w.KeyMaterial) != as2805PIN28 || aws.ToString(w.KeyCheckValue) != as2805KeyKCV ||
			w.WrappedKeyMaterialFormat != types.WrappedKeyMaterialFormatKeyCryptogram || aws.ToString(w.WrappingKeyArn) != kek {
			t.Fatalf("wrapped key %+v", w)
		}
	})

	t.Run("ImportKey As2805KeyCryptogram", func(t *testing.T) {
		out, err := c.ImportKey(ctx, &pc.ImportKeyInput{KeyMaterial: &types.ImportKeyMaterialMemberAs2805KeyCryptogram{Value: types.ImportAs2805KeyCryptogram{
			As2805KeyVariant: types.As2805KeyVariantMessageAuthenticationKeyVariant24, KeyAlgorithm: types.KeyAlgorithmTdes2key,
			KeyModesOfUse: &types.KeyModesOfUse{Generate: true, Verify: true}, Exportable: aws.Bool(true),
			WrappingKeyIdentifier: aws.String(kek), WrappedKeyCryptogram: aws.String(as2805MAC24)}}})
		if err != nil {
			t.Fatal(err)
		}
		k := out.Key
		if aws.ToString(k.KeyCheckValue) != as2805KeyKCV || k.KeyAttributes.KeyUsage != types.KeyUsageTr31M0Iso16609MacKey || k.KeyOrigin != types.KeyOriginExternal {
			t.Fatalf("imported key %+v", k)
		}
	})

	t.Run("refused variants store nothing", func(t *testing.T) {
		before, err := c.ListKeys(ctx, &pc.ListKeysInput{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ImportKey(ctx, &pc.ImportKeyInput{KeyMaterial: &types.ImportKeyMaterialMemberAs2805KeyCryptogram{Value: types.ImportAs2805KeyCryptogram{
			As2805KeyVariant: types.As2805KeyVariantTerminalMajorKeyVariant00, KeyAlgorithm: types.KeyAlgorithmTdes2key,
			KeyModesOfUse: &edwu, Exportable: aws.Bool(true), WrappingKeyIdentifier: aws.String(kek), WrappedKeyCryptogram: aws.String(as2805PIN28)}}})
		var ve *types.ValidationException
		if !errors.As(err, &ve) {
			t.Fatalf("TERMINAL_MAJOR_KEY_VARIANT_00 import: %v, want ValidationException", err)
		}
		_, err = c.ExportKey(ctx, &pc.ExportKeyInput{ExportKeyIdentifier: aws.String(zpk), KeyMaterial: &types.ExportKeyMaterialMemberAs2805KeyCryptogram{
			Value: types.ExportAs2805KeyCryptogram{WrappingKeyIdentifier: aws.String(kek), As2805KeyVariant: types.As2805KeyVariantDataEncryptionKeyVariant22}}})
		if !errors.As(err, &ve) {
			t.Fatalf("P0 key exported as variant 22: %v, want ValidationException", err)
		}
		after, _ := c.ListKeys(ctx, &pc.ListKeysInput{})
		if len(after.Keys) != len(before.Keys) {
			t.Fatalf("%d keys before, %d after", len(before.Keys), len(after.Keys))
		}
	})

	const kv = "/as2805kekvalidation/generate"
	t.Run("GenerateAs2805KekValidation response", func(t *testing.T) {
		status, body, errType := d.dataCall(t, kv, map[string]any{"KeyIdentifier": kek, "RandomKeySendVariantMask": "VARIANT_MASK_82",
			"KekValidationType": map[string]any{"KekValidationResponse": map[string]any{"RandomKeySend": as2805KRs}}})
		if status != 200 || body["RandomKeyReceive"] != as2805KRr || body["RandomKeySend"] != as2805KRs || body["KeyCheckValue"] != tdesKeyKCV || body["KeyArn"] != kek {
			t.Fatalf("%d %s %v", status, errType, body)
		}
	})

	t.Run("GenerateAs2805KekValidation request", func(t *testing.T) {
		status, body, errType := d.dataCall(t, kv, map[string]any{"KeyIdentifier": kek, "RandomKeySendVariantMask": "VARIANT_MASK_82",
			"KekValidationType": map[string]any{"KekValidationRequest": map[string]any{"DeriveKeyAlgorithm": "TDES_2KEY"}}})
		if status != 200 {
			t.Fatalf("%d %s %v", status, errType, body)
		}
		krs, _ := hex.DecodeString(body["RandomKeySend"].(string))
		clearKEK, _ := hex.DecodeString(tdesKey)
		krr, err := as2805.KEKValidationResponse(clearKEK, krs) // the partner node
		if err != nil || strings.ToUpper(hex.EncodeToString(krr)) != body["RandomKeyReceive"] {
			t.Fatalf("partner KRr %X (%v), request KRr %v", krr, err, body["RandomKeyReceive"])
		}
	})

	t.Run("GenerateAs2805KekValidation refusals", func(t *testing.T) {
		for name, body := range map[string]map[string]any{
			"VARIANT_MASK_82C0": {"KeyIdentifier": kek, "RandomKeySendVariantMask": "VARIANT_MASK_82C0",
				"KekValidationType": map[string]any{"KekValidationResponse": map[string]any{"RandomKeySend": as2805KRs}}},
			"PEK as KEK": {"KeyIdentifier": pek, "RandomKeySendVariantMask": "VARIANT_MASK_82",
				"KekValidationType": map[string]any{"KekValidationResponse": map[string]any{"RandomKeySend": as2805KRs}}},
			"AES random key": {"KeyIdentifier": kek, "RandomKeySendVariantMask": "VARIANT_MASK_82",
				"KekValidationType": map[string]any{"KekValidationRequest": map[string]any{"DeriveKeyAlgorithm": "AES_128"}}},
		} {
			status, resp, errType := d.dataCall(t, kv, body)
			if status != 400 || errType != "ValidationException" {
				t.Errorf("%s: %d %q %v", name, status, errType, resp)
			}
		}
	})

	translate := func(stan string) (int, map[string]any, string) {
		return d.dataCall(t, "/pindata/translate", map[string]any{
			"IncomingKeyIdentifier": zpk, "IncomingTranslationAttributes": isoAttrs("IsoFormat0", as2805PAN),
			"IncomingAs2805Attributes": map[string]any{"SystemTraceAuditNumber": stan, "TransactionAmount": "000000000328"},
			"OutgoingKeyIdentifier":    pek, "OutgoingTranslationAttributes": isoAttrs("IsoFormat0", as2805PAN),
			"EncryptedPinBlock": as2805PinKPE})
	}
	t.Run("TranslatePinData IncomingAs2805Attributes", func(t *testing.T) {
		status, body, errType := translate("000348")
		if status != 200 || body["PinBlock"] != as2805PinOutPEK || body["KeyArn"] != pek || body["KeyCheckValue"] != tdesKeyKCV {
			t.Fatalf("%d %s %v", status, errType, body)
		}
		// Another STAN derives another KPE: the block no longer decodes to the PIN.
		if status, body, _ := translate("000349"); status == 200 && body["PinBlock"] == as2805PinOutPEK {
			t.Fatalf("STAN 000349 translated to the same block")
		}
	})
}
