package cpshape_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"payhsm/protocol/awsapi/cpshape"
)

// Constraints below are quoted from the control-plane model,
// shared/aws-models/payment-cryptography-2021-09-14.json (botocore
// 0e6e2404b85dc336dd2889814e089bde7d1a4c55), by shape name.

const keyArn = "arn:aws:payment-cryptography:us-east-1:000000000000:key/abcdefghijklmnop"

const keyAttrs = `{"KeyUsage":"TR31_K0_KEY_ENCRYPTION_KEY","KeyClass":"SYMMETRIC_KEY","KeyAlgorithm":"AES_256","KeyModesOfUse":{"Wrap":true,"Unwrap":true}}`

// decode json-decodes body into a new input of operation op.
func decode(t *testing.T, op, body string) cpshape.Validator {
	t.Helper()
	in := cpshape.Operations[op].NewInput()
	if err := json.Unmarshal([]byte(body), in); err != nil {
		t.Fatalf("%s: decode %s: %v", op, body, err)
	}
	return in
}

func TestValidate(t *testing.T) {
	hex56 := strings.Repeat("0A", 28)
	tests := []struct {
		name, op, body string
		field          string // "" when valid
		msg            string // substring of the message
	}{
		// CreateKeyInput: required ["KeyAttributes", "Exportable"].
		{"create key ok", "CreateKey", `{"KeyAttributes":` + keyAttrs + `,"Exportable":true}`, "", ""},
		{"create key without KeyAttributes", "CreateKey", `{"Exportable":true}`, "KeyAttributes",
			"1 validation error detected: Value null at 'keyAttributes' failed to satisfy constraint: Member must not be null"},
		{"create key without Exportable", "CreateKey", `{"KeyAttributes":` + keyAttrs + `}`, "Exportable", "Member must not be null"},
		{"nested required", "CreateKey", `{"KeyAttributes":{"KeyUsage":"TR31_K0_KEY_ENCRYPTION_KEY","KeyClass":"SYMMETRIC_KEY","KeyAlgorithm":"AES_256"},"Exportable":true}`,
			"KeyAttributes.KeyModesOfUse", "Value null at 'keyAttributes.keyModesOfUse'"},
		// KeyUsage enum.
		{"enum outside the set", "CreateKey", `{"KeyAttributes":{"KeyUsage":"TR31_X9_BOGUS","KeyClass":"SYMMETRIC_KEY","KeyAlgorithm":"AES_256","KeyModesOfUse":{}},"Exportable":true}`,
			"KeyAttributes.KeyUsage", "Value 'TR31_X9_BOGUS' at 'keyAttributes.keyUsage' failed to satisfy constraint: Member must satisfy enum value set: [TR31_B0_BASE_DERIVATION_KEY, TR31_C0_CARD_VERIFICATION_KEY,"},
		{"enum is case sensitive", "CreateKey", `{"KeyAttributes":{"KeyUsage":"TR31_K0_KEY_ENCRYPTION_KEY","KeyClass":"symmetric_key","KeyAlgorithm":"AES_256","KeyModesOfUse":{}},"Exportable":true}`,
			"KeyAttributes.KeyClass", "enum value set: [SYMMETRIC_KEY, ASYMMETRIC_KEY_PAIR, PRIVATE_KEY, PUBLIC_KEY]"},
		// AliasName: min 7, max 256, pattern alias/[a-zA-Z0-9/_-]+.
		{"alias foo", "CreateAlias", `{"AliasName":"foo"}`, "AliasName",
			"Value 'foo' at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: alias/[a-zA-Z0-9/_-]+"},
		{"alias good", "CreateAlias", `{"AliasName":"alias/good-name_1"}`, "", ""},
		{"alias with space", "CreateAlias", `{"AliasName":"alias/bad name"}`, "AliasName", "regular expression pattern"},
		{"alias prefix only", "CreateAlias", `{"AliasName":"alias/"}`, "AliasName", "regular expression pattern"},
		{"alias too long", "CreateAlias", `{"AliasName":"alias/` + strings.Repeat("a", 251) + `"}`, "AliasName", "Member must have length less than or equal to 256"},
		{"alias longest", "CreateAlias", `{"AliasName":"alias/` + strings.Repeat("a", 250) + `"}`, "", ""},
		// KeyArnOrKeyAliasType: min 7, max 322.
		{"key arn", "GetKey", `{"KeyIdentifier":"` + keyArn + `"}`, "", ""},
		{"alias", "GetKey", `{"KeyIdentifier":"alias/x"}`, "", ""},
		{"alias arn", "GetKey", `{"KeyIdentifier":"arn:aws:payment-cryptography:us-east-1:000000000000:alias/x"}`, "", ""},
		{"bare key id", "GetKey", `{"KeyIdentifier":"key/abc"}`, "KeyIdentifier", "regular expression pattern"},
		{"key id too short", "GetKey", `{"KeyIdentifier":"arn:aws:payment-cryptography:us-east-1:000000000000:key/abcdefghijklmno"}`, "KeyIdentifier", "regular expression pattern"},
		{"key arn with trailing newline", "GetKey", `{"KeyIdentifier":"` + keyArn + `\n"}`, "KeyIdentifier", "regular expression pattern"},
		{"alias arn with a key prefix", "GetKey", `{"KeyIdentifier":"x` + keyArn + `"}`, "KeyIdentifier", "regular expression pattern"},
		// MaxResults: integer 1..100.
		{"max results 0", "ListKeys", `{"MaxResults":0}`, "MaxResults",
			"Value '0' at 'maxResults' failed to satisfy constraint: Member must have value greater than or equal to 1"},
		{"max results 101", "ListKeys", `{"MaxResults":101}`, "MaxResults", "Member must have value less than or equal to 100"},
		{"max results 1", "ListKeys", `{"MaxResults":1}`, "", ""},
		{"max results 100", "ListKeys", `{"MaxResults":100}`, "", ""},
		{"no inputs", "ListKeys", `{}`, "", ""},
		// DeleteKeyInputDeleteKeyInDaysInteger: 3..180.
		{"delete in 2 days", "DeleteKey", `{"KeyIdentifier":"alias/x","DeleteKeyInDays":2}`, "DeleteKeyInDays", "greater than or equal to 3"},
		{"delete in 3 days", "DeleteKey", `{"KeyIdentifier":"alias/x","DeleteKeyInDays":3}`, "", ""},
		{"delete in 180 days", "DeleteKey", `{"KeyIdentifier":"alias/x","DeleteKeyInDays":180}`, "", ""},
		{"delete in 181 days", "DeleteKey", `{"KeyIdentifier":"alias/x","DeleteKeyInDays":181}`, "DeleteKeyInDays", "less than or equal to 180"},
		// ImportKeyMaterial is a union.
		{"union with no member", "ImportKey", `{"KeyMaterial":{}}`, "KeyMaterial",
			"Value at 'keyMaterial' failed to satisfy constraint: Member must have exactly one of [RootCertificatePublicKey, TrustedCertificatePublicKey, Tr31KeyBlock, Tr34KeyBlock, KeyCryptogram, DiffieHellmanTr31KeyBlock, As2805KeyCryptogram] set, but 0 are set"},
		{"union with two members", "ImportKey", `{"KeyMaterial":{"Tr31KeyBlock":{"WrappingKeyIdentifier":"alias/k","WrappedKeyBlock":"` + hex56 + `"},"RootCertificatePublicKey":{"KeyAttributes":` + keyAttrs + `,"PublicKeyCertificate":"AAAA"}}}`,
			"KeyMaterial", "but 2 are set"},
		{"union with null members", "ImportKey", `{"KeyMaterial":{"Tr31KeyBlock":{"WrappingKeyIdentifier":"alias/k","WrappedKeyBlock":"` + hex56 + `"},"RootCertificatePublicKey":null}}`, "", ""},
		{"union with one member", "ImportKey", `{"KeyMaterial":{"Tr31KeyBlock":{"WrappingKeyIdentifier":"alias/k","WrappedKeyBlock":"` + hex56 + `"}}}`, "", ""},
		{"union member checked", "ImportKey", `{"KeyMaterial":{"Tr31KeyBlock":{"WrappingKeyIdentifier":"alias/k"}}}`, "KeyMaterial.Tr31KeyBlock.WrappedKeyBlock", "Value null at 'keyMaterial.tr31KeyBlock.wrappedKeyBlock'"},
		// Tags: list of Tag, max 200; TagKey min 1.
		{"tag key empty", "TagResource", `{"ResourceArn":"` + keyArn + `","Tags":[{"Key":"a","Value":"b"},{"Key":"","Value":"c"}]}`, "Tags[1].Key",
			"Value '' at 'tags[1].key' failed to satisfy constraint: Member must have length greater than or equal to 1"},
		{"too many tags", "TagResource", `{"ResourceArn":"` + keyArn + `","Tags":[` + strings.TrimSuffix(strings.Repeat(`{"Key":"a","Value":"b"},`, 201), ",") + `]}`, "Tags", "Member must have length less than or equal to 200"},
		{"no tags", "TagResource", `{"ResourceArn":"` + keyArn + `","Tags":[]}`, "", ""},
		{"tags null", "TagResource", `{"ResourceArn":"` + keyArn + `","Tags":null}`, "Tags", "Member must not be null"},
		// Regions: list of Region, pattern [a-z]{2}-[a-z]{1,16}-[0-9]+.
		{"bad region", "CreateKey", `{"KeyAttributes":` + keyAttrs + `,"Exportable":true,"ReplicationRegions":["us-east-1","US-EAST-1"]}`, "ReplicationRegions[1]", "Value 'US-EAST-1' at 'replicationRegions[1]'"},
		// TagKey length counts Unicode scalar values, not bytes: 128 three-byte runes pass.
		{"tag key 128 runes", "TagResource", `{"ResourceArn":"` + keyArn + `","Tags":[{"Key":"` + strings.Repeat("€", 128) + `","Value":"v"}]}`, "", ""},
		{"tag key 129 runes", "TagResource", `{"ResourceArn":"` + keyArn + `","Tags":[{"Key":"` + strings.Repeat("€", 129) + `","Value":"v"}]}`, "Tags[0].Key", "less than or equal to 128"},
		// ResourcePolicy: pattern [\u0009\u000A\u000D\u0020-\u00FF]+.
		{"policy latin-1", "PutResourcePolicy", `{"ResourceArn":"` + keyArn + `","Policy":"{\"a\":\t\"\u00ff\"}\r\n"}`, "", ""},
		{"policy control char", "PutResourcePolicy", `{"ResourceArn":"` + keyArn + `","Policy":"{\u0001}"}`, "Policy", `Value '{\x01}' at 'policy'`},
		{"policy beyond latin-1", "PutResourcePolicy", `{"ResourceArn":"` + keyArn + `","Policy":"\u0100"}`, "Policy", "regular expression pattern"},
		// CertificateSubjectTypeEmailAddressString (pattern contains ’ and `).
		{"email ok", "GetCertificateSigningRequest", `{"KeyIdentifier":"alias/x","SigningAlgorithm":"SHA256","CertificateSubject":{"CommonName":"x","EmailAddress":"o’brien+x@example.com"}}`, "", ""},
		{"email bad", "GetCertificateSigningRequest", `{"KeyIdentifier":"alias/x","SigningAlgorithm":"SHA256","CertificateSubject":{"CommonName":"x","EmailAddress":"a@b..c"}}`, "CertificateSubject.EmailAddress", "regular expression pattern"},
		// OptionalBlocks: map OptionalBlockId (sensitive, [0-9A-Z]{2}+, len 2) -> OptionalBlockValue (sensitive).
		{"optional blocks ok", "ExportKey", `{"ExportKeyIdentifier":"alias/x","KeyMaterial":{"Tr31KeyBlock":{"WrappingKeyIdentifier":"alias/k","KeyBlockHeaders":{"KeyVersion":"01","OptionalBlocks":{"PB":"0000","T1":"AB"}}}}}`, "", ""},
		{"optional block id", "ExportKey", `{"ExportKeyIdentifier":"alias/x","KeyMaterial":{"Tr31KeyBlock":{"WrappingKeyIdentifier":"alias/k","KeyBlockHeaders":{"OptionalBlocks":{"PBX":"0000"}}}}}`,
			"KeyMaterial.Tr31KeyBlock.KeyBlockHeaders.OptionalBlocks", "Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [0-9A-Z]{2}+]"},
		{"optional block value", "ExportKey", `{"ExportKeyIdentifier":"alias/x","KeyMaterial":{"Tr31KeyBlock":{"WrappingKeyIdentifier":"alias/k","KeyBlockHeaders":{"OptionalBlocks":{"PB":"00-00"}}}}}`,
			"KeyMaterial.Tr31KeyBlock.KeyBlockHeaders.OptionalBlocks[*]", "Value at 'keyMaterial.tr31KeyBlock.keyBlockHeaders.optionalBlocks[*]'"},
		// KeyVersion: [0-9A-Z]{2}+ with length 2.
		{"key version", "ExportKey", `{"ExportKeyIdentifier":"alias/x","KeyMaterial":{"Tr31KeyBlock":{"WrappingKeyIdentifier":"alias/k","KeyBlockHeaders":{"KeyVersion":"0a"}}}}`,
			"KeyMaterial.Tr31KeyBlock.KeyBlockHeaders.KeyVersion", "Value '0a'"},
		// ExportTokenId: (export-token-[0-9a-zA-Z]{16,64})? accepts the empty string.
		{"empty export token", "ExportKey", `{"ExportKeyIdentifier":"alias/x","KeyMaterial":{"Tr34KeyBlock":{"CertificateAuthorityPublicKeyIdentifier":"alias/ca","WrappingKeyCertificate":"AAAA","KeyBlockFormat":"X9_TR34_2012","ExportToken":""}}}`, "", ""},
		{"bad export token", "ExportKey", `{"ExportKeyIdentifier":"alias/x","KeyMaterial":{"Tr34KeyBlock":{"CertificateAuthorityPublicKeyIdentifier":"alias/ca","WrappingKeyCertificate":"AAAA","KeyBlockFormat":"X9_TR34_2012","ExportToken":"export-token-short"}}}`,
			"KeyMaterial.Tr34KeyBlock.ExportToken", "regular expression pattern"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := decode(t, tc.op, tc.body).Validate("")
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var ve *cpshape.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate = %v, want a *ValidationError", err)
			}
			if ve.Field != tc.field || !strings.Contains(ve.Message, tc.msg) || ve.Error() != ve.Message {
				t.Fatalf("Validate = {Field: %q, Message: %q}, want field %q and message containing %q", ve.Field, ve.Message, tc.field, tc.msg)
			}
		})
	}
}

// TestSensitiveValuesNotEchoed: Tr31WrappedKeyBlock, WrappedKeyCryptogram,
// OptionalBlockValue and KeyMaterial are "sensitive": true in the model.
func TestSensitiveValuesNotEchoed(t *testing.T) {
	const secret = "SECRETKEYBLOCK-0123456789ABCDEF"
	bodies := map[string]string{
		"ImportKey": `{"KeyMaterial":{"Tr31KeyBlock":{"WrappingKeyIdentifier":"alias/k","WrappedKeyBlock":"` + secret + `"}}}`,
		"ExportKey": `{"ExportKeyIdentifier":"alias/x","KeyMaterial":{"Tr31KeyBlock":{"WrappingKeyIdentifier":"alias/k","KeyBlockHeaders":{"OptionalBlocks":{"PB":"` + secret + `"}}}}}`,
	}
	for op, body := range bodies {
		err := decode(t, op, body).Validate("")
		if err == nil {
			t.Fatalf("%s: Validate accepted an invalid sensitive value", op)
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Fatalf("%s: message echoes a sensitive value: %v", op, err)
		}
		if !strings.Contains(err.Error(), "1 validation error detected: Value at '") {
			t.Fatalf("%s: message %q does not use the value-free form", op, err)
		}
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name, body string
		field      string // DecodeError.Field, or "-" for success
		reason     string
	}{
		{"ok", `{"AliasName":"alias/x","KeyArn":"` + keyArn + `"}`, "-", ""},
		{"null", `null`, "-", ""},
		{"unknown member ignored", `{"AliasName":"alias/x","Extra":{"a":[1,2]}}`, "-", ""},
		{"duplicate member", `{"AliasName":"alias/x","AliasName":"alias/y"}`, "AliasName", "duplicate member"},
		{"wrong type", `{"AliasName":12345678}`, "AliasName", "expected a JSON string, got number"},
		{"not an object", `["alias/x"]`, "", "expected a JSON object, got array"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in cpshape.CreateAliasInput
			err := json.Unmarshal([]byte(tc.body), &in)
			if tc.field == "-" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var de *cpshape.DecodeError
			if !errors.As(err, &de) || de.Field != tc.field || de.Reason != tc.reason {
				t.Fatalf("Unmarshal = %#v, want field %q reason %q", err, tc.field, tc.reason)
			}
			if strings.Contains(err.Error(), "12345678") {
				t.Fatalf("decode error echoes the value: %v", err)
			}
		})
	}
	// Member names are case sensitive: "aliasName" is not AliasName.
	var in cpshape.CreateAliasInput
	if err := json.Unmarshal([]byte(`{"aliasName":"alias/x"}`), &in); err != nil {
		t.Fatal(err)
	}
	if in.AliasName != nil {
		t.Fatal("aliasName decoded into AliasName")
	}
	// Nested errors carry the member path.
	var ck cpshape.CreateKeyInput
	err := json.Unmarshal([]byte(`{"KeyAttributes":{"KeyModesOfUse":{"Encrypt":"yes"}}}`), &ck)
	var de *cpshape.DecodeError
	if !errors.As(err, &de) || de.Field != "KeyAttributes.KeyModesOfUse.Encrypt" || de.Reason != "expected a JSON boolean, got string" {
		t.Fatalf("nested decode error = %v", err)
	}
	var lk cpshape.ListKeysInput
	err = json.Unmarshal([]byte(`{"MaxResults":3000000000}`), &lk)
	if !errors.As(err, &de) || de.Field != "MaxResults" || de.Reason != "number does not fit int32" {
		t.Fatalf("int32 overflow = %v", err)
	}
}

func TestTimestampUnmarshal(t *testing.T) {
	// Expected instants were checked with GNU date, e.g. date -u -d @1686938393
	// = Fri Jun 16 17:59:53 UTC 2023. Millisecond resolution and the
	// 0001..9999 range: smithy-lang/smithy designs/defining-timestamps.md.
	base := time.Date(2023, 6, 16, 17, 59, 53, 0, time.UTC)
	ms := time.Millisecond
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"1686938393", base, true},
		{"1686938393.123", base.Add(123 * ms), true},
		{"1.686938393123E9", base.Add(123 * ms), true},
		{"1686938393123e-3", base.Add(123 * ms), true},
		{"1686938393.1239", base.Add(123 * ms), true},       // truncated to ms
		{"1686938393.9999999999", base.Add(999 * ms), true}, // never rounded up
		{"0.1686938393123e10", base.Add(123 * ms), true},
		{"1686938393.000", base, true},
		{"0", time.Unix(0, 0).UTC(), true},
		{"-0", time.Unix(0, 0).UTC(), true},
		{"1e-10", time.Unix(0, 0).UTC(), true},
		{"-1.5", time.Date(1969, 12, 31, 23, 59, 58, 500_000_000, time.UTC), true},
		{"-0.0001", time.Date(1969, 12, 31, 23, 59, 59, 999_000_000, time.UTC), true},       // floored
		{"-1.0000000001", time.Date(1969, 12, 31, 23, 59, 58, 999_000_000, time.UTC), true}, // floored below 1 ns
		{"253402300799.999", time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC), true},
		{"-62135596800", time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{"253402300800", time.Time{}, false},
		{"-62135596801", time.Time{}, false},
		{"1e13", time.Time{}, false},
		{"1e1000000000", time.Time{}, false},
		{"1e-1000000000", time.Unix(0, 0).UTC(), true},
		{`"1686938393"`, time.Time{}, false},
		{"01", time.Time{}, false},
		{"1.", time.Time{}, false},
		{".5", time.Time{}, false},
		{"1e", time.Time{}, false},
		{"+1", time.Time{}, false},
		{"true", time.Time{}, false},
		{"{}", time.Time{}, false},
	}
	for _, tc := range tests {
		var ts cpshape.Timestamp
		err := ts.UnmarshalJSON([]byte(tc.in))
		if !tc.ok {
			var de *cpshape.DecodeError
			if !errors.As(err, &de) {
				t.Errorf("UnmarshalJSON(%s) = %v, %v; want a DecodeError", tc.in, ts.Time, err)
			}
			continue
		}
		if err != nil || !ts.Equal(tc.want) {
			t.Errorf("UnmarshalJSON(%s) = %v, %v; want %v", tc.in, ts.Time, err, tc.want)
		}
	}
	ts := cpshape.Timestamp{Time: base}
	if err := ts.UnmarshalJSON([]byte("null")); err != nil || !ts.Equal(base) {
		t.Errorf("null changed the value: %v %v", ts.Time, err)
	}
}

func TestTimestampMarshal(t *testing.T) {
	base := time.Date(2023, 6, 16, 17, 59, 53, 0, time.UTC)
	tests := []struct {
		in   time.Time
		want string
	}{
		{base, "1686938393"},
		{base.Add(123 * time.Millisecond), "1686938393.123"},
		{base.Add(100 * time.Millisecond), "1686938393.1"},
		{base.Add(20 * time.Millisecond), "1686938393.02"},
		{base.Add(999_999_999), "1686938393.999"},
		{time.Date(1969, 12, 31, 23, 59, 58, 500_000_000, time.UTC), "-1.5"},
		{time.Unix(0, 0), "0"},
	}
	for _, tc := range tests {
		b, err := json.Marshal(cpshape.Timestamp{Time: tc.in})
		if err != nil || string(b) != tc.want {
			t.Errorf("Marshal(%v) = %s, %v; want %s", tc.in, b, err, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestKeyRoundTrip(t *testing.T) {
	created := time.Date(2023, 6, 16, 17, 59, 53, 123_000_000, time.UTC)
	key := cpshape.Key{
		KeyArn: ptr(keyArn),
		KeyAttributes: &cpshape.KeyAttributes{
			KeyUsage:      ptr(cpshape.KeyUsageTr31K0KeyEncryptionKey),
			KeyClass:      ptr(cpshape.KeyClassSymmetricKey),
			KeyAlgorithm:  ptr(cpshape.KeyAlgorithmAes256),
			KeyModesOfUse: &cpshape.KeyModesOfUse{Wrap: ptr(true), Unwrap: ptr(true), Encrypt: ptr(false)},
		},
		KeyCheckValue:          ptr("7C2A3F"),
		KeyCheckValueAlgorithm: ptr(cpshape.KeyCheckValueAlgorithmCmac),
		Enabled:                ptr(true),
		Exportable:             ptr(false),
		KeyState:               ptr(cpshape.KeyStateCreateComplete),
		KeyOrigin:              ptr(cpshape.KeyOriginAwsPaymentCryptography),
		CreateTimestamp:        &cpshape.Timestamp{Time: created},
		ReplicationStatus:      map[string]cpshape.ReplicationStatusType{"eu-west-1": {Status: ptr(cpshape.KeyReplicationStateSynchronized)}},
	}
	if err := key.Validate(""); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(&key)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"CreateTimestamp":1686938393.123`, `"Exportable":false`, `"Encrypt":false`, `"KeyUsage":"TR31_K0_KEY_ENCRYPTION_KEY"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	if bytes.Contains(b, []byte("UsageStartTimestamp")) || bytes.Contains(b, []byte("Tags")) {
		t.Errorf("absent members encoded: %s", b)
	}
	var back cpshape.Key
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.CreateTimestamp.Equal(created) || *back.Exportable || *back.KeyAttributes.KeyUsage != cpshape.KeyUsageTr31K0KeyEncryptionKey {
		t.Fatalf("round trip changed the key: %+v", back)
	}
	b2, err := json.Marshal(&back)
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("round trip not stable:\n%s\n%s", b, b2)
	}
	// An empty but present list reaches the wire; an absent one does not.
	out, _ := json.Marshal(cpshape.ListKeysOutput{Keys: []cpshape.KeySummary{}})
	if string(out) != `{"Keys":[]}` {
		t.Fatalf("empty list encoded as %s", out)
	}
}

func TestOperationsAndErrors(t *testing.T) {
	if len(cpshape.Operations) != 32 { // README: "The control plane has 32 operations"
		t.Fatalf("%d operations, want 32", len(cpshape.Operations))
	}
	for name, op := range cpshape.Operations {
		if op.Name != name || op.Method != "POST" || op.RequestURI != "/" || op.ResponseCode != 200 || len(op.URILabels) != 0 {
			t.Errorf("%s: %+v", name, op)
		}
		if op.NewInput == nil || op.NewOutput == nil || op.NewInput() == nil || op.NewOutput() == nil {
			t.Errorf("%s: missing input or output factory", name)
		}
		if len(op.Errors) == 0 {
			t.Errorf("%s: no errors", name)
		}
	}
	if err := cpshape.Operations["CreateKey"].NewInput().Validate(""); err == nil {
		t.Error("empty CreateKeyInput validated")
	}
	if _, ok := cpshape.Operations["ListKeys"].NewOutput().(*cpshape.ListKeysOutput); !ok {
		t.Error("ListKeys output type")
	}
	if errs := cpshape.Operations["PutResourcePolicy"].Errors; !strings.Contains(strings.Join(errs, ","), "PublicPolicyException") {
		t.Errorf("PutResourcePolicy errors %v", errs)
	}
	byName := map[string]cpshape.ErrorShape{}
	for _, e := range cpshape.ErrorShapes {
		byName[e.Name] = e
	}
	if len(byName) != 9 {
		t.Errorf("%d error shapes, want 9", len(byName))
	}
	if e := byName["ResourceNotFoundException"]; len(e.Members) != 1 || e.Members[0] != "ResourceId" || e.Fault != "client" || e.HTTPStatus != 0 {
		t.Errorf("ResourceNotFoundException = %+v", e)
	}
	if e := byName["ServiceUnavailableException"]; e.Fault != "server" {
		t.Errorf("ServiceUnavailableException = %+v", e)
	}
	ce := &cpshape.ConflictException{Message: ptr("key is pending deletion")}
	var err error = ce
	if err.Error() != "ConflictException: key is pending deletion" || ce.ErrorCode() != "ConflictException" {
		t.Errorf("ConflictException: %q %q", err.Error(), ce.ErrorCode())
	}
	if e, ok := byName["ConflictException"].New().(*cpshape.ConflictException); !ok || e.Error() != "ConflictException" {
		t.Error("ConflictException factory")
	}
	if cpshape.TargetPrefix != "PaymentCryptographyControlPlane" || cpshape.Protocol != "json" || cpshape.JSONVersion != "1.0" {
		t.Error("service metadata")
	}
	if got := cpshape.KeyUsage("").Values(); len(got) != 24 || got[0] != cpshape.KeyUsageTr31B0BaseDerivationKey {
		t.Errorf("KeyUsage values %v", got)
	}
}

// FuzzDecodeValidate json-decodes arbitrary bytes into CreateKeyInput and
// ImportKeyInput and validates them: nothing may panic, failures must be the
// documented error types, and a decoded value must re-encode stably.
func FuzzDecodeValidate(f *testing.F) {
	f.Add([]byte(`{"KeyAttributes":` + keyAttrs + `,"Exportable":true,"Tags":[{"Key":"a","Value":"b"}],"ReplicationRegions":["us-east-1"]}`))
	f.Add([]byte(`{"KeyMaterial":{"Tr31KeyBlock":{"WrappingKeyIdentifier":"alias/k","WrappedKeyBlock":"00"}},"Enabled":false}`))
	f.Add([]byte(`{"KeyMaterial":{"KeyCryptogram":{"KeyAttributes":` + keyAttrs + `,"Exportable":true,"WrappedKeyCryptogram":"00112233445566778899AABBCCDDEEFF","ImportToken":"import-token-abcdefghijklmnop"}}}`))
	f.Add([]byte(`{"KeyMaterial":{},"KeyMaterial":null}`))
	f.Add([]byte(`{"Tags":[{"Key":"\u0000"}],"Exportable":"x"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, op := range []string{"CreateKey", "ImportKey"} {
			in := cpshape.Operations[op].NewInput()
			if err := json.Unmarshal(data, in); err != nil {
				var de *cpshape.DecodeError
				var se *json.SyntaxError
				if !errors.As(err, &de) && !errors.As(err, &se) {
					t.Fatalf("Unmarshal returned %T %v", err, err)
				}
				continue
			}
			if err := in.Validate(""); err != nil {
				var ve *cpshape.ValidationError
				if !errors.As(err, &ve) || ve.Message == "" {
					t.Fatalf("Validate returned %T %v", err, err)
				}
			}
			b1, err := json.Marshal(in)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			again := cpshape.Operations[op].NewInput()
			if err := json.Unmarshal(b1, again); err != nil {
				t.Fatalf("re-decode %s: %v", b1, err)
			}
			b2, _ := json.Marshal(again)
			if !bytes.Equal(b1, b2) {
				t.Fatalf("unstable round trip:\n%s\n%s", b1, b2)
			}
		}
	})
}

// FuzzTimestamp checks the exact decimal parser against strconv.ParseFloat:
// an accepted number must be within a millisecond (plus float rounding) of
// the float reading, and must re-encode to the same instant.
func FuzzTimestamp(f *testing.F) {
	for _, s := range []string{"1686938393.123", "1.686938393123E9", "-1.5", "0", "1e-5", "253402300799.999", "12e10", "-0.0001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var ts cpshape.Timestamp
		if err := ts.UnmarshalJSON([]byte(s)); err != nil {
			return
		}
		if s == "null" {
			return
		}
		if !json.Valid([]byte(s)) {
			t.Fatalf("accepted %q, which is not JSON", s)
		}
		fl, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			t.Fatalf("accepted %q, which is not a number: %v", s, err)
		}
		got := float64(ts.Unix()) + float64(ts.Nanosecond())/1e9
		if d := fl - got; d < -1e-6*math.Max(1, math.Abs(fl)) || d >= 0.001+1e-6*math.Max(1, math.Abs(fl)) {
			t.Fatalf("%q parsed as %v (%f), float reading %f", s, ts.Time, got, fl)
		}
		b, err := json.Marshal(ts)
		if err != nil {
			t.Fatal(err)
		}
		var back cpshape.Timestamp
		if err := back.UnmarshalJSON(b); err != nil || !back.Equal(ts.Time) {
			t.Fatalf("%q -> %s -> %v, %v", s, b, back.Time, err)
		}
	})
}
