package e2e

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
)

// TestHostCommandsBothFrontEnds: keys imported through the AWS SDK answer the
// same way over the host port and over the AWS data plane — a CVV from CW
// verifies with VerifyCardValidationData, a PIN block translated by CC equals
// TranslatePinData's result — and host key blocks from A0 work on the port.
// The known keys and vectors are those of protocol/hostcmd/testdata.
func TestHostCommandsBothFrontEnds(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	c := d.client()
	kk := newKnownKeys(t, c)
	imp := func(usage types.KeyUsage, modes types.KeyModesOfUse, keyHex string) string {
		return kk.arn(usage, types.KeyAlgorithmTdes2key, modes, keyHex)
	}
	cvk := imp(types.KeyUsageTr31C0CardVerificationKey, types.KeyModesOfUse{Generate: true, Verify: true}, "0123456789ABCDEFFEDCBA9876543210")
	zpka := imp(types.KeyUsageTr31P0PinEncryptionKey, types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}, "0123456789ABCDEFFEDCBA9876543210")
	zpkb := imp(types.KeyUsageTr31P0PinEncryptionKey, types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}, "89ABCDEF0123456776543210FEDCBA98")
	if _, err := c.CreateAlias(context.Background(), &pc.CreateAliasInput{AliasName: aws.String("alias/host-cvk"), KeyArn: aws.String(cvk)}); err != nil {
		t.Fatal(err)
	}
	call := d.hostCaller(t)

	// CVV: CW over the host port (by ARN and by alias), verified over HTTP.
	for _, ref := range []string{"@" + cvk + ";", "@alias/host-cvk;"} {
		r := call("CW", ref+"4123456789012345;8701101")
		if r.Error != "00" || string(r.Fields) != "561" {
			t.Fatalf("CW %s: %s %q", ref, r.Error, r.Fields)
		}
	}
	r := call("CW", "@"+cvk+";4123456789012345;2512000")
	status, _, _ := d.dataCall(t, "/cardvalidationdata/verify", map[string]any{"KeyIdentifier": cvk, "PrimaryAccountNumber": "4123456789012345",
		"VerificationAttributes": map[string]any{"CardVerificationValue1": map[string]any{"CardExpiryDate": "2512", "ServiceCode": "000"}},
		"ValidationData":         string(r.Fields)})
	if status != 200 {
		t.Errorf("VerifyCardValidationData of CW's CVV: status %d", status)
	}

	// PIN: CC equals TranslatePinData (PIN 1234, PAN 5555555551234567; block from psec + OpenSSL, see testdata/pin.txt).
	cc := call("CC", "@"+zpka+";@"+zpkb+";12230B4C43B8BA2C5C0147555555123456")
	if cc.Error != "00" || len(cc.Fields) != 20 {
		t.Fatalf("CC %s %q", cc.Error, cc.Fields)
	}
	status, body, _ := d.dataCall(t, "/pindata/translate", map[string]any{
		"IncomingKeyIdentifier": zpka, "IncomingTranslationAttributes": map[string]any{"IsoFormat0": map[string]any{"PrimaryAccountNumber": "5555555551234567"}},
		"OutgoingKeyIdentifier": zpkb, "OutgoingTranslationAttributes": map[string]any{"IsoFormat3": map[string]any{"PrimaryAccountNumber": "5555555551234567"}},
		"EncryptedPinBlock": "230B4C43B8BA2C5C"})
	if status != 200 {
		t.Fatalf("TranslatePinData: %d %v", status, body)
	}
	// ISO 3 has a random fill: translate both back to ISO 0 and compare.
	back := call("CC", "@"+zpkb+";@"+zpka+";12"+string(cc.Fields[2:18])+"4701555555123456")
	back2 := call("CC", "@"+zpkb+";@"+zpka+";12"+body["PinBlock"].(string)+"4701555555123456")
	if back.Error != "00" || string(back.Fields[2:18]) != "230B4C43B8BA2C5C" || string(back2.Fields[2:18]) != "230B4C43B8BA2C5C" {
		t.Errorf("round trips: host %q, http %q", back.Fields, back2.Fields)
	}
	iso0 := call("CC", "@"+zpka+";@"+zpkb+";12230B4C43B8BA2C5C0101555555123456")
	status, body, _ = d.dataCall(t, "/pindata/translate", map[string]any{
		"IncomingKeyIdentifier": zpka, "IncomingTranslationAttributes": map[string]any{"IsoFormat0": map[string]any{"PrimaryAccountNumber": "5555555551234567"}},
		"OutgoingKeyIdentifier": zpkb, "OutgoingTranslationAttributes": map[string]any{"IsoFormat0": map[string]any{"PrimaryAccountNumber": "5555555551234567"}},
		"EncryptedPinBlock": "230B4C43B8BA2C5C"})
	if status != 200 || string(iso0.Fields[2:18]) != body["PinBlock"] || body["PinBlock"] != "E83CE81E1644472B" {
		t.Errorf("CC %q vs TranslatePinData %v", iso0.Fields, body)
	}

	// Key separation is the same on both front ends: the CVK is not a PIN key.
	if r := call("CC", "@"+cvk+";@"+zpkb+";12230B4C43B8BA2C5C0101555555123456"); r.Error != "A6" {
		t.Errorf("CVK as PIN key: %s", r.Error)
	}
	status, _, errType := d.dataCall(t, "/pindata/translate", map[string]any{
		"IncomingKeyIdentifier": cvk, "IncomingTranslationAttributes": map[string]any{"IsoFormat0": map[string]any{"PrimaryAccountNumber": "5555555551234567"}},
		"OutgoingKeyIdentifier": zpkb, "OutgoingTranslationAttributes": map[string]any{"IsoFormat0": map[string]any{"PrimaryAccountNumber": "5555555551234567"}},
		"EncryptedPinBlock": "230B4C43B8BA2C5C"})
	if status != 400 || errType != "ValidationException" {
		t.Errorf("CVK as PIN key over HTTP: %d %s", status, errType)
	}

	// A disabled key is refused on the host port too (17).
	if _, err := c.StopKeyUsage(context.Background(), &pc.StopKeyUsageInput{KeyIdentifier: aws.String(zpkb)}); err != nil {
		t.Fatal(err)
	}
	if r := call("CC", "@"+zpka+";@"+zpkb+";12230B4C43B8BA2C5C0101555555123456"); r.Error != "17" {
		t.Errorf("disabled key: %s", r.Error)
	}

	// A0 key blocks under the profile main key; profile selection by %nn.
	a0 := call("A0", "0FFFS#C0T2C00N00")
	if a0.Error != "00" || !regexp.MustCompile(`^S[A-Z0-9]+[0-9A-F]{6}$`).Match(a0.Fields) {
		t.Fatalf("A0 %s %q", a0.Error, a0.Fields)
	}
	blk := string(a0.Fields[:len(a0.Fields)-6])
	cw := call("CW", blk+"4123456789012345;8701101%00")
	if cw.Error != "00" || call("CY", blk+string(cw.Fields)+"4123456789012345;8701101").Error != "00" {
		t.Errorf("CW/CY with an A0 key block: %s", cw.Error)
	}
	if r := call("CW", blk+"4123456789012345;8701101%01"); r.Error != "13" {
		t.Errorf("unknown profile by LMK identifier: %s", r.Error)
	}
	if r := call("NC", "%01\x19TRL"); r.Error != "13" || !strings.HasSuffix(string(r.Fields), "\x19TRL") {
		t.Errorf("NC %%01 with trailer: %s %q", r.Error, r.Fields)
	}
}
