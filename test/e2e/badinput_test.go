package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
	"github.com/aws/smithy-go"
)

const target = "PaymentCryptographyControlPlane."

// TestBadInput sends malformed, mistyped, oversized, unsigned and mis-signed
// requests: each gets its AWS error, the daemon keeps serving, and nothing is stored.
func TestBadInput(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	ctx := context.Background()
	c := d.client()

	cases := []struct {
		name, target, body string
		mutate             func(*http.Request)
		status             int
		errType            string
	}{
		{"malformed JSON", target + "CreateKey", `{"KeyAttributes":`, nil, 400, "SerializationException"},
		{"not an object", target + "ListKeys", `[1,2]`, nil, 400, "SerializationException"},
		{"wrong type", target + "CreateKey", `{"Exportable":"yes","KeyAttributes":{}}`, nil, 400, "SerializationException"},
		{"wrong nested type", target + "ListKeys", `{"MaxResults":"10"}`, nil, 400, "SerializationException"},
		{"trailing data", target + "ListKeys", `{} {}`, nil, 400, "SerializationException"},
		{"missing required member", target + "CreateKey", `{"Exportable":true}`, nil, 400, "ValidationException"},
		{"bad enum", target + "CreateKey", `{"Exportable":true,"KeyAttributes":{"KeyUsage":"TR31_X9_NOPE","KeyClass":"SYMMETRIC_KEY","KeyAlgorithm":"AES_128","KeyModesOfUse":{"Encrypt":true}}}`, nil, 400, "ValidationException"},
		{"MaxResults out of range", target + "ListKeys", `{"MaxResults":0}`, nil, 400, "ValidationException"},
		{"bad key identifier", target + "GetKey", `{"KeyIdentifier":"key/abc"}`, nil, 400, "ValidationException"},
		{"union with two members", target + "ImportKey", `{"KeyMaterial":{"Tr31KeyBlock":{"WrappingKeyIdentifier":"alias/a","WrappedKeyBlock":"` + strings.Repeat("A", 64) + `"},"KeyCryptogram":{}}}`, nil, 400, "ValidationException"},
		{"unknown target", target + "LaunchMissiles", `{}`, nil, 400, "UnknownOperationException"},
		{"foreign target prefix", "TrentService.ListKeys", `{}`, nil, 400, "UnknownOperationException"},
		{"no target", "", `{}`, nil, 404, "UnknownOperationException"},
		{"oversize body", target + "ListKeys", `{"NextToken":"` + strings.Repeat("A", 300<<10) + `"}`, nil, 400, "ValidationException"},
		{"no signature", target + "ListKeys", `{}`, func(r *http.Request) { r.Header.Del("Authorization") }, 403, "MissingAuthenticationTokenException"},
		{"bad signature", target + "ListKeys", `{}`, func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "Signature=", "Signature=0", 1)[:len(r.Header.Get("Authorization"))])
		}, 403, "InvalidSignatureException"},
		{"body changed after signing", target + "ListKeys", `{}`, func(r *http.Request) {
			b := []byte(`{"MaxResults":1}`)
			r.Body = http.NoBody
			r.Body = ioNopCloser(bytes.NewReader(b))
			r.ContentLength = int64(len(b))
		}, 403, "InvalidSignatureException"},
		{"target changed after signing", target + "ListKeys", `{}`, func(r *http.Request) { r.Header.Set("X-Amz-Target", target+"ListAliases") }, 403, "InvalidSignatureException"},
		{"unknown access key", target + "ListKeys", `{}`, func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "Credential=AKPH", "Credential=AKPX", 1))
		}, 403, "UnrecognizedClientException"},
		{"malformed authorization", target + "ListKeys", `{}`, func(r *http.Request) {
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential")
		}, 400, "IncompleteSignatureException"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body, hdr := d.rawCall(t, tc.target, []byte(tc.body), tc.mutate)
			if status != tc.status {
				t.Errorf("status %d, want %d (%v)", status, tc.status, body)
			}
			// awsJson1_0 names the error in __type (and the header); restJson1 in the header only.
			typ, _ := body["__type"].(string)
			if i := strings.LastIndex(typ, "#"); i >= 0 {
				typ = typ[i+1:]
			}
			if typ == "" && tc.target == "" {
				typ = hdr.Get("X-Amzn-ErrorType")
			}
			if typ != tc.errType || hdr.Get("X-Amzn-ErrorType") != tc.errType {
				t.Errorf("__type %q / X-Amzn-ErrorType %q, want %s (%v)", body["__type"], hdr.Get("X-Amzn-ErrorType"), tc.errType, body)
			}
			msg, _ := body["Message"].(string)
			if m, ok := body["message"].(string); ok {
				msg = m
			}
			if msg == "" {
				t.Errorf("no message in %v", body)
			}
		})
	}

	// A bad percent-escape in the path (which net/http refuses with a
	// plain-text 400) gets an AWS-shaped ValidationException, on a
	// connection that stays usable.
	t.Run("bad percent-escape", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(d.httpURL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		br := bufio.NewReader(conn)
		for range 2 {
			if _, err := io.WriteString(conn, "POST /keys/alias%zz/encrypt HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			var body map[string]any
			derr := json.NewDecoder(resp.Body).Decode(&body)
			_ = resp.Body.Close()
			msg, _ := body["message"].(string)
			if resp.StatusCode != 400 || resp.Header.Get("X-Amzn-ErrorType") != "ValidationException" || derr != nil || !strings.Contains(msg, `"%zz"`) {
				t.Fatalf("status %d, X-Amzn-ErrorType %q, body %v (%v)", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), body, derr)
			}
		}
	})

	// A wrong secret, and a request signed for another region, get AWS's
	// InvalidSignatureException through the SDK.
	bad := pc.New(pc.Options{Region: "us-east-1", BaseEndpoint: aws.String(d.httpURL), RetryMaxAttempts: 1,
		Credentials: staticCreds(d.keyID, "wrong-secret")})
	if _, err := bad.ListKeys(ctx, &pc.ListKeysInput{}); apiErrorCode(err) != "InvalidSignatureException" {
		t.Errorf("wrong secret: %v", err)
	}
	other := pc.New(pc.Options{Region: "eu-west-1", BaseEndpoint: aws.String(d.httpURL), RetryMaxAttempts: 1,
		Credentials: staticCreds(d.keyID, d.secret)})
	if _, err := other.ListKeys(ctx, &pc.ListKeysInput{}); apiErrorCode(err) != "InvalidSignatureException" {
		t.Errorf("other region: %v", err)
	}

	// The disallowed attribute combinations of the user guide are refused; nothing was stored.
	for _, a := range disallowed {
		in := pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: &a.attrs, DeriveKeyUsage: a.derive}
		if _, err := c.CreateKey(ctx, &in); !isErr[*types.ValidationException](err) {
			t.Errorf("CreateKey %s: %v", a.name, err)
		}
	}
	for _, a := range allowed {
		in := pc.CreateKeyInput{Exportable: aws.Bool(false), KeyAttributes: &a.attrs, DeriveKeyUsage: a.derive}
		if _, err := c.CreateKey(ctx, &in); err != nil {
			t.Errorf("CreateKey %s: %v", a.name, err)
		}
	}
	ks, err := c.ListKeys(ctx, &pc.ListKeysInput{})
	if err != nil || len(ks.Keys) != len(allowed) {
		t.Errorf("after bad input: %d keys (want %d), %v", len(ks.Keys), len(allowed), err)
	}
	if d.cmd.ProcessState != nil {
		t.Fatalf("daemon died")
	}
}

type combo struct {
	name   string
	attrs  types.KeyAttributes
	derive types.DeriveKeyUsage
}

func sym(usage types.KeyUsage, alg types.KeyAlgorithm, m types.KeyModesOfUse) types.KeyAttributes {
	return types.KeyAttributes{KeyUsage: usage, KeyClass: types.KeyClassSymmetricKey, KeyAlgorithm: alg, KeyModesOfUse: &m}
}

// allowed: one row of each kind from "Understanding key attributes" (the
// keyspec unit tests cover every row exhaustively).
var allowed = []combo{
	{"B0 AES_128 DeriveKey", sym(types.KeyUsageTr31B0BaseDerivationKey, types.KeyAlgorithmAes128, types.KeyModesOfUse{DeriveKey: true}), ""},
	{"C0 TDES_2KEY Generate", sym(types.KeyUsageTr31C0CardVerificationKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{Generate: true}), ""},
	{"D0 AES_192 Encrypt+Wrap", sym(types.KeyUsageTr31D0SymmetricDataEncryptionKey, types.KeyAlgorithmAes192, types.KeyModesOfUse{Encrypt: true, Wrap: true}), ""},
	{"E0 TDES_2KEY DeriveKey", sym(types.KeyUsageTr31E0EmvMkeyAppCryptograms, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{DeriveKey: true}), ""},
	{"K1 AES_256 Decrypt+Unwrap", sym(types.KeyUsageTr31K1KeyBlockProtectionKey, types.KeyAlgorithmAes256, types.KeyModesOfUse{Decrypt: true, Unwrap: true}), ""},
	{"M1 TDES_3KEY Verify", sym(types.KeyUsageTr31M1Iso97971MacKey, types.KeyAlgorithmTdes3key, types.KeyModesOfUse{Verify: true}), ""},
	{"M6 AES_128 NoRestrictions", sym(types.KeyUsageTr31M6Iso97975CmacKey, types.KeyAlgorithmAes128, types.KeyModesOfUse{NoRestrictions: true}), ""},
	{"M7 HMAC_SHA256", sym(types.KeyUsageTr31M7HmacKey, types.KeyAlgorithmHmacSha256, types.KeyModesOfUse{Generate: true, Verify: true}), ""},
	{"P0 AES_256", sym(types.KeyUsageTr31P0PinEncryptionKey, types.KeyAlgorithmAes256, types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}), ""},
	{"V1 TDES_3KEY", sym(types.KeyUsageTr31V1Ibm3624PinVerificationKey, types.KeyAlgorithmTdes3key, types.KeyModesOfUse{Generate: true, Verify: true}), ""},
	{"S0 RSA_3072 Sign", types.KeyAttributes{KeyUsage: types.KeyUsageTr31S0AsymmetricKeyForDigitalSignature, KeyClass: types.KeyClassAsymmetricKeyPair,
		KeyAlgorithm: types.KeyAlgorithmRsa3072, KeyModesOfUse: &types.KeyModesOfUse{Sign: true}}, ""},
	{"K3 P384 DeriveKey", types.KeyAttributes{KeyUsage: types.KeyUsageTr31K3AsymmetricKeyForKeyAgreement, KeyClass: types.KeyClassAsymmetricKeyPair,
		KeyAlgorithm: types.KeyAlgorithmEccNistP384, KeyModesOfUse: &types.KeyModesOfUse{DeriveKey: true}}, types.DeriveKeyUsageTr31P0PinEncryptionKey},
	// The guide's "Creating an asymmetric ECC key" example names no DeriveKeyUsage.
	{"K3 P256 without DeriveKeyUsage", types.KeyAttributes{KeyUsage: types.KeyUsageTr31K3AsymmetricKeyForKeyAgreement, KeyClass: types.KeyClassAsymmetricKeyPair,
		KeyAlgorithm: types.KeyAlgorithmEccNistP256, KeyModesOfUse: &types.KeyModesOfUse{DeriveKey: true}}, ""},
}

var disallowed = []combo{
	{"M1 with AES", sym(types.KeyUsageTr31M1Iso97971MacKey, types.KeyAlgorithmAes128, types.KeyModesOfUse{Generate: true}), ""},
	{"P0 with Generate", sym(types.KeyUsageTr31P0PinEncryptionKey, types.KeyAlgorithmTdes3key, types.KeyModesOfUse{Generate: true}), ""},
	{"C0 with Encrypt", sym(types.KeyUsageTr31C0CardVerificationKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{Encrypt: true}), ""},
	{"mixed Encrypt+Generate", sym(types.KeyUsageTr31D0SymmetricDataEncryptionKey, types.KeyAlgorithmAes128, types.KeyModesOfUse{Encrypt: true, Generate: true}), ""},
	{"NoRestrictions plus Encrypt", sym(types.KeyUsageTr31K0KeyEncryptionKey, types.KeyAlgorithmAes128, types.KeyModesOfUse{NoRestrictions: true, Encrypt: true}), ""},
	{"no modes at all", sym(types.KeyUsageTr31K0KeyEncryptionKey, types.KeyAlgorithmAes128, types.KeyModesOfUse{}), ""},
	{"Encrypt without Wrap", sym(types.KeyUsageTr31D0SymmetricDataEncryptionKey, types.KeyAlgorithmAes128, types.KeyModesOfUse{Encrypt: true}), ""},
	{"symmetric usage as a key pair", types.KeyAttributes{KeyUsage: types.KeyUsageTr31P0PinEncryptionKey, KeyClass: types.KeyClassAsymmetricKeyPair,
		KeyAlgorithm: types.KeyAlgorithmTdes3key, KeyModesOfUse: &types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}, ""},
	{"RSA for a PIN key", types.KeyAttributes{KeyUsage: types.KeyUsageTr31P0PinEncryptionKey, KeyClass: types.KeyClassAsymmetricKeyPair,
		KeyAlgorithm: types.KeyAlgorithmRsa2048, KeyModesOfUse: &types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}, ""},
	{"HMAC algorithm on C0", sym(types.KeyUsageTr31C0CardVerificationKey, types.KeyAlgorithmHmacSha256, types.KeyModesOfUse{Generate: true}), ""},
	{"DeriveKeyUsage on a B0", sym(types.KeyUsageTr31B0BaseDerivationKey, types.KeyAlgorithmTdes3key, types.KeyModesOfUse{DeriveKey: true}), types.DeriveKeyUsageTr31P0PinEncryptionKey},
	{"D1 with ECC", types.KeyAttributes{KeyUsage: types.KeyUsageTr31D1AsymmetricKeyForDataEncryption, KeyClass: types.KeyClassAsymmetricKeyPair,
		KeyAlgorithm: types.KeyAlgorithmEccNistP256, KeyModesOfUse: &types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}, ""},
	{"S0 with Sign+Verify", types.KeyAttributes{KeyUsage: types.KeyUsageTr31S0AsymmetricKeyForDigitalSignature, KeyClass: types.KeyClassAsymmetricKeyPair,
		KeyAlgorithm: types.KeyAlgorithmRsa2048, KeyModesOfUse: &types.KeyModesOfUse{Sign: true, Verify: true}}, ""},
	{"public key class on create", types.KeyAttributes{KeyUsage: types.KeyUsageTr31D1AsymmetricKeyForDataEncryption, KeyClass: types.KeyClassPublicKey,
		KeyAlgorithm: types.KeyAlgorithmRsa2048, KeyModesOfUse: &types.KeyModesOfUse{Encrypt: true, Wrap: true}}, ""},
}

// apiErrorCode is the AWS error code of an SDK error ("" when it has none).
func apiErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}
