package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"regexp"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"

	"payhsm/hsm/tr31"
)

// TestHostKeyExchangeBothFrontEnds: A6, A8 and A0 mode 1 over the real daemon's host
// port, with the ANSI X9 TR-31:2018 A.7.2.2 KBPK as the ZMK (stored through
// the AWS SDK). The published block imports by A6 with the published KCV and
// comes back out by A8 as a block the published KBPK opens to the published
// key; blocks cross between A8 and ImportKey, and ExportKey and A6, with the
// same check value; a non-exportable key stays in (AA).
func TestHostKeyExchangeBothFrontEnds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := startDaemon(t, t.TempDir())
	c := d.client()
	kk := newKnownKeys(t, c)
	zmk := kk.arn(types.KeyUsageTr31K0KeyEncryptionKey, types.KeyAlgorithmTdes2key,
		types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}, a722KBPK)
	call := d.hostCaller(t)
	lmkBlock := regexp.MustCompile(`^S(D[0-9]{4}[A-Z0-9]+)([0-9A-F]{6})$`)
	zmkBlock := regexp.MustCompile(`^R([BD][0-9]{4}[A-Z0-9]+)([0-9A-F]{6})$`)

	// A6: the published block under the ZMK -> a block under the profile main key.
	a6 := call("A6", "FFF@"+zmk+";R"+a722Block+"S")
	m := lmkBlock.FindSubmatch(a6.Fields)
	if a6.Error != "00" || m == nil || string(m[2]) != a722KCV {
		t.Fatalf("A6: %s %q, want KCV %s", a6.Error, a6.Fields, a722KCV)
	}
	imported := string(m[1])

	// A8: that key back under the ZMK; the published KBPK opens it.
	a8 := call("A8", "FFF@"+zmk+";S"+imported+"R")
	m = zmkBlock.FindSubmatch(a8.Fields)
	if a8.Error != "00" || m == nil || string(m[2]) != a722KCV {
		t.Fatalf("A8: %s %q", a8.Error, a8.Fields)
	}
	kbpk, _ := hex.DecodeString(a722KBPK)
	hdr, key, err := tr31.Unwrap(kbpk, string(m[1]))
	want, _ := hex.DecodeString(a722Key)
	if err != nil || !bytes.Equal(key, want) || hdr.KeyUsage != "P0" || hdr.ModeOfUse != 'E' {
		t.Fatalf("A8 block does not open to the published key under the published KBPK: %v %+v", err, hdr)
	}

	// A8's block imports through the AWS API with the same check value ...
	awsImp, err := c.ImportKey(ctx, &pc.ImportKeyInput{KeyMaterial: &types.ImportKeyMaterialMemberTr31KeyBlock{Value: types.ImportTr31KeyBlock{
		WrappingKeyIdentifier: aws.String(zmk), WrappedKeyBlock: aws.String(string(m[1]))}}})
	if err != nil || *awsImp.Key.KeyCheckValue != a722KCV {
		t.Fatalf("ImportKey of A8's block: %v", err)
	}
	// ... and ExportKey's block imports by A6 with the same check value.
	awsExp, err := c.ExportKey(ctx, &pc.ExportKeyInput{ExportKeyIdentifier: awsImp.Key.KeyArn,
		KeyMaterial: &types.ExportKeyMaterialMemberTr31KeyBlock{Value: types.ExportTr31KeyBlock{WrappingKeyIdentifier: aws.String(zmk)}}})
	if err != nil {
		t.Fatal(err)
	}
	back := call("A6", "FFF@"+zmk+";R"+*awsExp.WrappedKey.KeyMaterial+"S")
	if m := lmkBlock.FindSubmatch(back.Fields); back.Error != "00" || m == nil || string(m[2]) != a722KCV {
		t.Errorf("A6 of ExportKey's block: %s %q", back.Error, back.Fields)
	}

	// A0 mode 1: one fresh key under the profile main key and under the ZMK;
	// the published KBPK opens the ZMK block to a key whose KCV (OpenSSL) is
	// the one A0 answered, and A6 of that block gives the same KCV.
	gen := call("A0", "1FFFS@"+zmk+";R#P0T2B00E00")
	gm := regexp.MustCompile(`^S(D[0-9]{4}[A-Z0-9]+)R(B[0-9]{4}[A-Z0-9]+)([0-9A-F]{6})$`).FindSubmatch(gen.Fields)
	if gen.Error != "00" || gm == nil {
		t.Fatalf("A0 mode 1: %s %q", gen.Error, gen.Fields)
	}
	_, fresh, err := tr31.Unwrap(kbpk, string(gm[2]))
	if err != nil {
		t.Fatal(err)
	}
	if got := opensslTDESKCV(t, hex.EncodeToString(fresh)); got != string(gm[3]) {
		t.Errorf("A0 mode 1: the ZMK block's key has KCV %s, A0 answered %s", got, gm[3])
	}
	if r := call("A6", "FFF@"+zmk+";R"+string(gm[2])+"S"); r.Error != "00" || !bytes.HasSuffix(r.Fields, gm[3]) {
		t.Errorf("A6 of A0's ZMK block: %s %q", r.Error, r.Fields)
	}
	if r := call("BU", "FFFS"+string(gm[1])+";FFF;001"); r.Error != "00" || !bytes.Equal(r.Fields, gm[3]) {
		t.Errorf("BU of A0's LMK block: %s %q, want %s", r.Error, r.Fields, gm[3])
	}

	// Key separation and exportability on the host port.
	a0 := call("A0", "0FFFS#D0A1B00N00") // non-exportable AES-128 data key
	if a0.Error != "00" {
		t.Fatalf("A0: %s", a0.Error)
	}
	nonExp := string(a0.Fields[:len(a0.Fields)-6])
	rsa, err := c.CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: &types.KeyAttributes{
		KeyAlgorithm: types.KeyAlgorithmRsa2048, KeyClass: types.KeyClassAsymmetricKeyPair,
		KeyUsage:      types.KeyUsageTr31D1AsymmetricKeyForDataEncryption,
		KeyModesOfUse: &types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ code, fields, want string }{
		{"A8", "FFF@" + zmk + ";" + nonExp + "R", "AA"},
		{"A8", "FFF@" + zmk + ";@" + *rsa.Key.KeyArn + ";R", "29"},              // a key pair does not leave under a ZMK                         // not exportable
		{"A8", "FFF" + nonExp + "S" + imported + "R", "A6"},                     // the "ZMK" is a data key
		{"A6", "FFF@" + zmk + ";R" + a722Block[:len(a722Block)-1] + "0S", "A4"}, // tampered
		{"A6", "FFF@" + *awsImp.Key.KeyArn + ";R" + a722Block + "S", "A6"},      // a PIN key is not a ZMK
	} {
		if r := call(tc.code, tc.fields); r.Error != tc.want {
			t.Errorf("%s %.40s...: %s, want %s", tc.code, tc.fields, r.Error, tc.want)
		}
	}
}
