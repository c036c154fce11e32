package e2e

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"

	"payhsm/hsm/pinblock"
	"payhsm/hsm/tdes"
)

// PIN vectors (sources):
//   - ep2 eft/pos 2000 Security Specification 8.0.0 section 8.4 (as cited in
//     knovichikhin/psec tests/test_pinblock.py): AES key pinEp2Key, ISO 4 block
//     pinEp2Block = PIN 1234 with PAN 432198765432109870.
//   - ANSI X9.24-1-2009 Annex A.4: BDK 0123456789ABCDEFFEDCBA9876543210, PIN
//     1234, PAN 4012345678909, KSN FFFF9876543210E00001 -> 1B9C1845EB993A7A,
//     E00002 -> 10A01C8D02C69107.
//   - Visa PVV 8523 (PIN 4524, PVKI 1) and IBM 3624 offset 7710 (PIN 1234,
//     decimalization 1234567890123456, validation data 1122334455667788, pad
//     F) under PVK 0123456789ABCDEFFEDCBA9876543210: knovichikhin/psec
//     tests/test_pin.py.
//   - TR-31:2018 A.7.2.2 (a722Block, a P0 key with mode E under a722KBPK) as
//     an outgoing dynamic key.
//   - Every ISO 0 block named pinOut* / pinBlk* was computed with
//     `openssl enc -des-ede-ecb -nopad -K <key>` over the clear block noted.
const (
	pinEp2Key   = "C1D0F8FB4958670DBA40AB1F3752EF0D"
	pinEp2PAN   = "432198765432109870"
	pinEp2Block = "CC17F65586BFD0953010226C4FC5B3CA"
	pinOutEp2   = "F0ADBF664D504880" // 0412B39ABCDEF678 under tdesKey
	pinOutA722  = "37919AF66F54FF52" // 0412B39ABCDEF678 under a722Key
	pinX924PAN  = "4012345678909"
	pinOutX924  = "C03D21CDBCB0C58B" // 041274EDCBA9876F under tdesKey
	pinPVVPAN   = "1122334455667788"
	pinBlk4524  = "E59EF17C9608D041" // 044507CBBAA99887 under tdesKey
	pinBlk1234  = "909325A57CA3ED7B" // 041217CBBAA99887 under tdesKey
	pinKey2     = "89ABCDEF0123456776543210FEDCBA98"
)

type pinKeys struct {
	pek, pek2, aesPEK, pvk, ibm, bdk, kek string
}

func importPinKeys(t *testing.T, d *daemon) pinKeys {
	c := d.client()
	imp := newKnownKeys(t, c).arn
	edwu := types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}
	gv := types.KeyModesOfUse{Generate: true, Verify: true}
	return pinKeys{
		pek:    imp(types.KeyUsageTr31P0PinEncryptionKey, types.KeyAlgorithmTdes2key, edwu, tdesKey),
		pek2:   imp(types.KeyUsageTr31P0PinEncryptionKey, types.KeyAlgorithmTdes2key, edwu, pinKey2),
		aesPEK: imp(types.KeyUsageTr31P0PinEncryptionKey, types.KeyAlgorithmAes128, edwu, pinEp2Key),
		pvk:    imp(types.KeyUsageTr31V2VisaPinVerificationKey, types.KeyAlgorithmTdes2key, gv, tdesKey),
		ibm:    imp(types.KeyUsageTr31V1Ibm3624PinVerificationKey, types.KeyAlgorithmTdes2key, gv, tdesKey),
		bdk:    imp(types.KeyUsageTr31B0BaseDerivationKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{DeriveKey: true}, tdesKey),
		kek:    imp(types.KeyUsageTr31K0KeyEncryptionKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{Decrypt: true, Unwrap: true}, a722KBPK),
	}
}

func isoAttrs(format, pan string) map[string]any {
	if pan == "" {
		return map[string]any{format: map[string]any{}}
	}
	return map[string]any{format: map[string]any{"PrimaryAccountNumber": pan}}
}

func TestPinEndToEnd(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	k := importPinKeys(t, d)
	ibm := map[string]any{"DecimalizationTable": "1234567890123456", "PinValidationDataPadCharacter": "F", "PinValidationData": pinPVVPAN}
	with := func(m map[string]any, kv ...any) map[string]any {
		out := map[string]any{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1]
		}
		return out
	}
	for _, tc := range []struct {
		name, path string
		body       map[string]any
		status     int
		errType    string
		want       map[string]any
	}{
		{"ISO4 AES -> ISO0 TDES (ep2)", "/pindata/translate", map[string]any{
			"IncomingKeyIdentifier": k.aesPEK, "IncomingTranslationAttributes": isoAttrs("IsoFormat4", pinEp2PAN),
			"OutgoingKeyIdentifier": k.pek, "OutgoingTranslationAttributes": isoAttrs("IsoFormat0", pinEp2PAN),
			"EncryptedPinBlock": pinEp2Block}, 200, "", map[string]any{"PinBlock": pinOutEp2, "KeyArn": k.pek, "KeyCheckValue": tdesKeyKCV}},
		{"DUKPT -> PEK (X9.24-1 A.4)", "/pindata/translate", map[string]any{
			"IncomingKeyIdentifier": k.bdk, "IncomingTranslationAttributes": isoAttrs("IsoFormat0", pinX924PAN),
			"IncomingDukptAttributes": map[string]any{"KeySerialNumber": "FFFF9876543210E00001"},
			"OutgoingKeyIdentifier":   k.pek, "OutgoingTranslationAttributes": isoAttrs("IsoFormat0", pinX924PAN),
			"EncryptedPinBlock": "1B9C1845EB993A7A"}, 200, "", map[string]any{"PinBlock": pinOutX924}},
		{"PEK -> DUKPT (X9.24-1 A.4)", "/pindata/translate", map[string]any{
			"IncomingKeyIdentifier": k.pek, "IncomingTranslationAttributes": isoAttrs("IsoFormat0", pinX924PAN),
			"OutgoingKeyIdentifier": k.bdk, "OutgoingTranslationAttributes": isoAttrs("IsoFormat0", pinX924PAN),
			"OutgoingDukptAttributes": map[string]any{"KeySerialNumber": "FFFF9876543210E00002", "DukptKeyDerivationType": "TDES_2KEY"},
			"EncryptedPinBlock":       pinOutX924}, 200, "", map[string]any{"PinBlock": "10A01C8D02C69107", "KeyArn": k.bdk}},
		{"PEK -> dynamic key (TR-31 A.7.2.2)", "/pindata/translate", map[string]any{
			"IncomingKeyIdentifier": k.pek, "IncomingTranslationAttributes": isoAttrs("IsoFormat0", pinEp2PAN),
			"OutgoingKeyIdentifier": k.kek, "OutgoingTranslationAttributes": isoAttrs("IsoFormat0", pinEp2PAN),
			"OutgoingWrappedKey": map[string]any{"WrappedKeyMaterial": map[string]any{"Tr31KeyBlock": a722Block}},
			"EncryptedPinBlock":  pinOutEp2}, 200, "", map[string]any{"PinBlock": pinOutA722, "KeyCheckValue": a722KCV}},
		{"PAN mismatch refused", "/pindata/translate", map[string]any{
			"IncomingKeyIdentifier": k.pek, "IncomingTranslationAttributes": isoAttrs("IsoFormat0", pinEp2PAN),
			"OutgoingKeyIdentifier": k.pek2, "OutgoingTranslationAttributes": isoAttrs("IsoFormat0", "432198765432109880"),
			"EncryptedPinBlock": pinOutEp2}, 400, "ValidationException", nil},
		{"PAN-bound to ISO 1 refused", "/pindata/translate", map[string]any{
			"IncomingKeyIdentifier": k.pek, "IncomingTranslationAttributes": isoAttrs("IsoFormat0", pinEp2PAN),
			"OutgoingKeyIdentifier": k.pek2, "OutgoingTranslationAttributes": isoAttrs("IsoFormat1", ""),
			"EncryptedPinBlock": pinOutEp2}, 400, "ValidationException", nil},
		{"PVK as PEK refused", "/pindata/translate", map[string]any{
			"IncomingKeyIdentifier": k.pvk, "IncomingTranslationAttributes": isoAttrs("IsoFormat0", pinEp2PAN),
			"OutgoingKeyIdentifier": k.pek2, "OutgoingTranslationAttributes": isoAttrs("IsoFormat0", pinEp2PAN),
			"EncryptedPinBlock": pinOutEp2}, 400, "ValidationException", nil},
		{"generate PVV (psec)", "/pindata/generate", map[string]any{
			"GenerationKeyIdentifier": k.pvk, "EncryptionKeyIdentifier": k.pek, "PrimaryAccountNumber": pinPVVPAN, "PinBlockFormat": "ISO_FORMAT_0",
			"GenerationAttributes": map[string]any{"VisaPinVerificationValue": map[string]any{"PinVerificationKeyIndex": 1, "EncryptedPinBlock": pinBlk4524}}},
			200, "", map[string]any{"EncryptedPinBlock": pinBlk4524, "GenerationKeyCheckValue": tdesKeyKCV, "PinData": map[string]any{"VerificationValue": "8523"}}},
		{"generate IBM offset (psec)", "/pindata/generate", map[string]any{
			"GenerationKeyIdentifier": k.ibm, "EncryptionKeyIdentifier": k.pek, "PrimaryAccountNumber": pinPVVPAN, "PinBlockFormat": "ISO_FORMAT_0",
			"GenerationAttributes": map[string]any{"Ibm3624PinOffset": with(ibm, "EncryptedPinBlock", pinBlk1234)}},
			200, "", map[string]any{"PinData": map[string]any{"PinOffset": "7710"}}},
		{"generate PIN from offset (psec)", "/pindata/generate", map[string]any{
			"GenerationKeyIdentifier": k.ibm, "EncryptionKeyIdentifier": k.pek, "PrimaryAccountNumber": pinPVVPAN, "PinBlockFormat": "ISO_FORMAT_0",
			"GenerationAttributes": map[string]any{"Ibm3624PinFromOffset": with(ibm, "PinOffset", "7710")}},
			200, "", map[string]any{"EncryptedPinBlock": pinBlk1234}},
		{"generate natural PIN (psec)", "/pindata/generate", map[string]any{
			"GenerationKeyIdentifier": k.ibm, "EncryptionKeyIdentifier": k.pek, "PrimaryAccountNumber": pinPVVPAN, "PinBlockFormat": "ISO_FORMAT_0",
			"GenerationAttributes": map[string]any{"Ibm3624NaturalPin": ibm}},
			200, "", map[string]any{"EncryptedPinBlock": pinBlk4524, "PinData": map[string]any{"PinOffset": "0000"}}},
		{"verify PVV", "/pindata/verify", map[string]any{
			"VerificationKeyIdentifier": k.pvk, "EncryptionKeyIdentifier": k.pek, "PrimaryAccountNumber": pinPVVPAN, "PinBlockFormat": "ISO_FORMAT_0",
			"VerificationAttributes": map[string]any{"VisaPin": map[string]any{"PinVerificationKeyIndex": 1, "VerificationValue": "8523"}},
			"EncryptedPinBlock":      pinBlk4524}, 200, "", map[string]any{"VerificationKeyArn": k.pvk, "EncryptionKeyCheckValue": tdesKeyKCV}},
		{"verify PVV wrong", "/pindata/verify", map[string]any{
			"VerificationKeyIdentifier": k.pvk, "EncryptionKeyIdentifier": k.pek, "PrimaryAccountNumber": pinPVVPAN, "PinBlockFormat": "ISO_FORMAT_0",
			"VerificationAttributes": map[string]any{"VisaPin": map[string]any{"PinVerificationKeyIndex": 1, "VerificationValue": "9999"}},
			"EncryptedPinBlock":      pinBlk4524}, 400, "VerificationFailedException", map[string]any{"Reason": "INVALID_PIN"}},
		{"verify IBM offset", "/pindata/verify", map[string]any{
			"VerificationKeyIdentifier": k.ibm, "EncryptionKeyIdentifier": k.pek, "PrimaryAccountNumber": pinPVVPAN, "PinBlockFormat": "ISO_FORMAT_0",
			"VerificationAttributes": map[string]any{"Ibm3624Pin": with(ibm, "PinOffset", "7710")},
			"EncryptedPinBlock":      pinBlk1234}, 200, "", nil},
		{"verify IBM offset wrong", "/pindata/verify", map[string]any{
			"VerificationKeyIdentifier": k.ibm, "EncryptionKeyIdentifier": k.pek, "PrimaryAccountNumber": pinPVVPAN, "PinBlockFormat": "ISO_FORMAT_0",
			"VerificationAttributes": map[string]any{"Ibm3624Pin": with(ibm, "PinOffset", "7711")},
			"EncryptedPinBlock":      pinBlk1234}, 400, "VerificationFailedException", map[string]any{"Reason": "INVALID_PIN"}},
		{"verify DUKPT PIN against IBM offset", "/pindata/verify", map[string]any{
			"VerificationKeyIdentifier": k.ibm, "EncryptionKeyIdentifier": k.bdk, "PrimaryAccountNumber": pinX924PAN, "PinBlockFormat": "ISO_FORMAT_0",
			"VerificationAttributes": map[string]any{"Ibm3624Pin": with(ibm, "PinOffset", "7710")},
			"DukptAttributes":        map[string]any{"KeySerialNumber": "FFFF9876543210E00001", "DukptDerivationType": "TDES_2KEY"},
			"EncryptedPinBlock":      "1B9C1845EB993A7A"}, 200, "", nil},
		{"verify with the wrong PEK: invalid block", "/pindata/verify", map[string]any{
			"VerificationKeyIdentifier": k.pvk, "EncryptionKeyIdentifier": k.pek2, "PrimaryAccountNumber": pinPVVPAN, "PinBlockFormat": "ISO_FORMAT_0",
			"VerificationAttributes": map[string]any{"VisaPin": map[string]any{"PinVerificationKeyIndex": 1, "VerificationValue": "8523"}},
			"EncryptedPinBlock":      pinBlk4524}, 400, "ValidationException", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body, errType := d.dataCall(t, tc.path, tc.body)
			if status != tc.status || errType != tc.errType {
				t.Fatalf("status %d %q, want %d %q: %v", status, errType, tc.status, tc.errType, body)
			}
			for key, want := range tc.want {
				if got := fmt.Sprint(body[key]); got != fmt.Sprint(want) {
					t.Errorf("%s = %s, want %s", key, got, fmt.Sprint(want))
				}
			}
		})
	}

	// Property over the wire: random PINs, ISO 0 -> {ISO 3 TDES, ISO 4 AES} -> ISO 0 is the identity;
	// generate -> verify succeeds and the neighbouring PIN fails.
	d0, _ := tdes.NewCipher(mustHex(t, tdesKey))
	for i := range 5 {
		pin, _ := pinblock.RandomPIN(4+i, nil)
		pan := "54133300890200" + fmt.Sprintf("%02d", i)
		blk, _ := pinblock.Encrypt(d0, pinblock.ISO0, pin, pan, nil)
		orig := strings.ToUpper(hex.EncodeToString(blk))
		for _, via := range []struct{ key, format string }{{k.pek2, "IsoFormat3"}, {k.aesPEK, "IsoFormat4"}} {
			_, mid, _ := d.dataCall(t, "/pindata/translate", map[string]any{
				"IncomingKeyIdentifier": k.pek, "IncomingTranslationAttributes": isoAttrs("IsoFormat0", pan),
				"OutgoingKeyIdentifier": via.key, "OutgoingTranslationAttributes": isoAttrs(via.format, pan), "EncryptedPinBlock": orig})
			_, back, _ := d.dataCall(t, "/pindata/translate", map[string]any{
				"IncomingKeyIdentifier": via.key, "IncomingTranslationAttributes": isoAttrs(via.format, pan),
				"OutgoingKeyIdentifier": k.pek, "OutgoingTranslationAttributes": isoAttrs("IsoFormat0", pan), "EncryptedPinBlock": mid["PinBlock"]})
			if back["PinBlock"] != orig {
				t.Fatalf("round trip via %s: %v -> %v", via.format, mid, back)
			}
		}
		status, g, _ := d.dataCall(t, "/pindata/generate", map[string]any{
			"GenerationKeyIdentifier": k.pvk, "EncryptionKeyIdentifier": k.pek, "PrimaryAccountNumber": pan, "PinBlockFormat": "ISO_FORMAT_0",
			"PinDataLength": 4 + i, "GenerationAttributes": map[string]any{"VisaPin": map[string]any{"PinVerificationKeyIndex": 2}}})
		pvv, _ := g["PinData"].(map[string]any)
		if status != 200 || pvv == nil {
			t.Fatalf("VisaPin: %d %v", status, g)
		}
		verify := func(block any) (int, string) {
			s, _, e := d.dataCall(t, "/pindata/verify", map[string]any{
				"VerificationKeyIdentifier": k.pvk, "EncryptionKeyIdentifier": k.pek, "PrimaryAccountNumber": pan, "PinBlockFormat": "ISO_FORMAT_0",
				"VerificationAttributes": map[string]any{"VisaPin": map[string]any{"PinVerificationKeyIndex": 2, "VerificationValue": pvv["VerificationValue"]}},
				"EncryptedPinBlock":      block})
			return s, e
		}
		if s, e := verify(g["EncryptedPinBlock"]); s != 200 {
			t.Fatalf("verify generated: %d %s", s, e)
		}
		gen, _ := pinblock.Decrypt(d0, pinblock.ISO0, mustHex(t, g["EncryptedPinBlock"].(string)), pan)
		gen[0] = '0' + (gen[0]-'0'+1)%10
		other, _ := pinblock.Encrypt(d0, pinblock.ISO0, gen, pan, nil)
		if s, e := verify(strings.ToUpper(hex.EncodeToString(other))); s != 400 || e != "VerificationFailedException" {
			t.Fatalf("verify other PIN: %d %s", s, e)
		}
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// No clear PIN, clear PIN block or PAN appears in any error body or in the
// daemon's log for failing PIN requests.
func TestPinNoLeakInErrorsOrLogs(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	k := importPinKeys(t, d)
	const pin, pan = "73950628", "4929000012345678"
	d0, _ := tdes.NewCipher(mustHex(t, tdesKey))
	clearBlk, _ := pinblock.Encode(pinblock.ISO0, []byte(pin), pan, nil)
	blk, _ := pinblock.Encrypt(d0, pinblock.ISO0, []byte(pin), pan, nil)
	enc := strings.ToUpper(hex.EncodeToString(blk))
	secrets := []string{pin, pan, pan[3:15], strings.ToUpper(hex.EncodeToString(clearBlk)), hex.EncodeToString(clearBlk)}
	ver := func(key, pvv, p string) map[string]any {
		return map[string]any{"VerificationKeyIdentifier": key, "EncryptionKeyIdentifier": k.pek, "PrimaryAccountNumber": p, "PinBlockFormat": "ISO_FORMAT_0",
			"VerificationAttributes": map[string]any{"VisaPin": map[string]any{"PinVerificationKeyIndex": 1, "VerificationValue": pvv}}, "EncryptedPinBlock": enc}
	}
	for _, req := range []struct {
		path string
		body map[string]any
	}{
		{"/pindata/verify", ver(k.pvk, "0000", pan)},                // wrong PVV
		{"/pindata/verify", ver(k.pvk, "0000", "4929000012345688")}, // wrong PAN: invalid block
		{"/pindata/verify", ver(k.pek, "0000", pan)},                // key separation
		{"/pindata/verify", ver(k.ibm, "0000", pan)},                // wrong PVK family
		{"/pindata/translate", map[string]any{"IncomingKeyIdentifier": k.pek2, // wrong PEK
			"IncomingTranslationAttributes": isoAttrs("IsoFormat0", pan), "OutgoingKeyIdentifier": k.pek,
			"OutgoingTranslationAttributes": isoAttrs("IsoFormat0", pan), "EncryptedPinBlock": enc}},
		{"/pindata/translate", map[string]any{"IncomingKeyIdentifier": k.pek, // PAN mismatch
			"IncomingTranslationAttributes": isoAttrs("IsoFormat0", pan), "OutgoingKeyIdentifier": k.pek2,
			"OutgoingTranslationAttributes": isoAttrs("IsoFormat0", "4929000012345688"), "EncryptedPinBlock": enc}},
		{"/pindata/translate", map[string]any{"IncomingKeyIdentifier": k.pek, // AES format with a TDES key
			"IncomingTranslationAttributes": isoAttrs("IsoFormat0", pan), "OutgoingKeyIdentifier": k.pek2,
			"OutgoingTranslationAttributes": isoAttrs("IsoFormat4", pan), "EncryptedPinBlock": enc}},
		{"/pindata/generate", map[string]any{"GenerationKeyIdentifier": k.ibm, "EncryptionKeyIdentifier": k.pek2, "PrimaryAccountNumber": pan,
			"PinBlockFormat": "ISO_FORMAT_0", "GenerationAttributes": map[string]any{"Ibm3624PinOffset": map[string]any{
				"DecimalizationTable": "0123456789012345", "PinValidationDataPadCharacter": "F", "PinValidationData": "492900001234", "EncryptedPinBlock": enc}}}},
		{"/pindata/generate", map[string]any{"GenerationKeyIdentifier": k.pvk, "EncryptionKeyIdentifier": k.pek, "PrimaryAccountNumber": pan,
			"PinBlockFormat": "ISO_FORMAT_1", "GenerationAttributes": map[string]any{"VisaPinVerificationValue": map[string]any{
				"PinVerificationKeyIndex": 1, "EncryptedPinBlock": enc}}}},
	} {
		status, body, errType := d.dataCall(t, req.path, req.body)
		if status == 200 {
			t.Fatalf("%s succeeded: %v", req.path, body)
		}
		text := fmt.Sprint(body) + errType
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Fatalf("%s error body contains sensitive data: %v", req.path, body)
			}
		}
	}
	logs := d.logs.String()
	if !strings.Contains(logs, "request failed") || !strings.Contains(logs, "TranslatePinData") {
		t.Fatalf("the failing requests were not logged, so the log check proves nothing:\n%s", logs)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Fatalf("daemon log contains sensitive data %q", s)
		}
	}
}
