package dpshape_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"payhsm/protocol/awsapi/dpshape"
)

// Constraints below are quoted from the data-plane model,
// shared/aws-models/payment-cryptography-data-2022-02-03.json (botocore
// 0e6e2404b85dc336dd2889814e089bde7d1a4c55), by shape name.

// pan is the well-known Visa test card number (not a real account).
const pan = "4111111111111111"

// request decodes body as the input of operation op and sets its URI labels.
func request(t *testing.T, op, body string, labels map[string]string) dpshape.Validator {
	t.Helper()
	o, ok := dpshape.Operations[op]
	if !ok {
		t.Fatalf("no operation %s", op)
	}
	in := o.NewInput()
	if err := json.Unmarshal([]byte(body), in); err != nil {
		t.Fatalf("%s: decode: %v", op, err)
	}
	for k, v := range labels {
		if !in.(dpshape.URILabelSetter).SetURILabel(k, v) {
			t.Fatalf("%s: label %s not accepted", op, k)
		}
	}
	return in
}

func TestValidate(t *testing.T) {
	key := map[string]string{"KeyIdentifier": "alias/data-key"}
	tests := []struct {
		name, op, body string
		labels         map[string]string
		field, msg     string // field "" when valid
	}{
		{"encrypt ok", "EncryptData", `{"PlainText":"00112233","EncryptionAttributes":{"Symmetric":{"Mode":"CBC","InitializationVector":"0000000000000000"}}}`, key, "", ""},
		{"encrypt without label", "EncryptData", `{"PlainText":"00112233","EncryptionAttributes":{"Symmetric":{"Mode":"CBC"}}}`, nil,
			"KeyIdentifier", "Value null at 'keyIdentifier' failed to satisfy constraint: Member must not be null"},
		{"label pattern", "EncryptData", `{"PlainText":"00112233","EncryptionAttributes":{"Symmetric":{"Mode":"CBC"}}}`, map[string]string{"KeyIdentifier": "key/abc"},
			"KeyIdentifier", "Value 'key/abc' at 'keyIdentifier' failed to satisfy constraint: Member must satisfy regular expression pattern"},
		{"union empty", "EncryptData", `{"PlainText":"00112233","EncryptionAttributes":{}}`, key,
			"EncryptionAttributes", "Member must have exactly one of [Symmetric, Asymmetric, Dukpt, Emv] set, but 0 are set"},
		{"union two", "EncryptData", `{"PlainText":"00112233","EncryptionAttributes":{"Symmetric":{"Mode":"CBC"},"Dukpt":{"KeySerialNumber":"FFFF9876543210E00001"}}}`, key,
			"EncryptionAttributes", "but 2 are set"},
		{"encryption mode enum", "EncryptData", `{"PlainText":"00112233","EncryptionAttributes":{"Symmetric":{"Mode":"GCM"}}}`, key,
			"EncryptionAttributes.Symmetric.Mode", "Value 'GCM' at 'encryptionAttributes.symmetric.mode' failed to satisfy constraint: Member must satisfy enum value set: [ECB, CBC, CFB, CFB1, CFB8, CFB64, CFB128, OFB]"},
		// PlainTextType: (?:[0-9a-fA-F][0-9a-fA-F])+, 2..4096, sensitive.
		{"odd hex", "EncryptData", `{"PlainText":"001","EncryptionAttributes":{"Symmetric":{"Mode":"CBC"}}}`, key,
			"PlainText", "Value at 'plainText' failed to satisfy constraint: Member must satisfy regular expression pattern: (?:[0-9a-fA-F][0-9a-fA-F])+"},
		// InitializationVectorType: 16 or 32 hex digits.
		{"iv 24 digits", "EncryptData", `{"PlainText":"00","EncryptionAttributes":{"Symmetric":{"Mode":"CBC","InitializationVector":"000000000000000000000000"}}}`, key,
			"EncryptionAttributes.Symmetric.InitializationVector", "regular expression pattern"},
		// HexLength16Or20Or24 (DUKPT KSN).
		{"ksn 20", "EncryptData", `{"PlainText":"00","EncryptionAttributes":{"Dukpt":{"KeySerialNumber":"FFFF9876543210E00001"}}}`, key, "", ""},
		{"ksn 18", "EncryptData", `{"PlainText":"00","EncryptionAttributes":{"Dukpt":{"KeySerialNumber":"FFFF9876543210E000"}}}`, key,
			"EncryptionAttributes.Dukpt.KeySerialNumber", "Value 'FFFF9876543210E000' at"},
		// PrimaryAccountNumberType: [0-9]+, 12..19, sensitive.
		{"cvv2 ok", "GenerateCardValidationData", `{"KeyIdentifier":"alias/cvk","PrimaryAccountNumber":"` + pan + `","GenerationAttributes":{"CardVerificationValue2":{"CardExpiryDate":"1230"}}}`, nil, "", ""},
		{"pan with letter", "GenerateCardValidationData", `{"KeyIdentifier":"alias/cvk","PrimaryAccountNumber":"` + pan + `X","GenerationAttributes":{"CardVerificationValue2":{"CardExpiryDate":"1230"}}}`, nil,
			"PrimaryAccountNumber", "Value at 'primaryAccountNumber' failed to satisfy constraint: Member must satisfy regular expression pattern: [0-9]+"},
		{"pan too long", "GenerateCardValidationData", `{"KeyIdentifier":"alias/cvk","PrimaryAccountNumber":"` + pan + `0000","GenerationAttributes":{"CardVerificationValue2":{"CardExpiryDate":"1230"}}}`, nil,
			"PrimaryAccountNumber", "Member must have length less than or equal to 19"},
		{"validation data length", "GenerateCardValidationData", `{"KeyIdentifier":"alias/cvk","PrimaryAccountNumber":"` + pan + `","GenerationAttributes":{"CardVerificationValue2":{"CardExpiryDate":"1230"}},"ValidationDataLength":6}`, nil,
			"ValidationDataLength", "Value '6' at 'validationDataLength' failed to satisfy constraint: Member must have value less than or equal to 5"},
		// TranslationIsoFormats union; TranslationPinDataIsoFormat1 has no members.
		{"translate pin ok", "TranslatePinData", `{"IncomingKeyIdentifier":"alias/pek1","OutgoingKeyIdentifier":"alias/pek2","IncomingTranslationAttributes":{"IsoFormat1":{}},"OutgoingTranslationAttributes":{"IsoFormat0":{"PrimaryAccountNumber":"` + pan + `"}},"EncryptedPinBlock":"0123456789ABCDEF"}`, nil, "", ""},
		{"translate pin block", "TranslatePinData", `{"IncomingKeyIdentifier":"alias/pek1","OutgoingKeyIdentifier":"alias/pek2","IncomingTranslationAttributes":{"IsoFormat1":{}},"OutgoingTranslationAttributes":{"IsoFormat1":{}},"EncryptedPinBlock":"0123456789ABCDE"}`, nil,
			"EncryptedPinBlock", "Value at 'encryptedPinBlock'"},
		// IntegerRangeBetween0And6 inside a union member.
		{"visa pvki", "VerifyPinData", `{"VerificationKeyIdentifier":"alias/pvk","EncryptionKeyIdentifier":"alias/pek","VerificationAttributes":{"VisaPin":{"PinVerificationKeyIndex":7,"VerificationValue":"1234"}},"EncryptedPinBlock":"0123456789ABCDEF","PinBlockFormat":"ISO_FORMAT_0"}`, nil,
			"VerificationAttributes.VisaPin.PinVerificationKeyIndex", "less than or equal to 6"},
		{"pin block format", "VerifyPinData", `{"VerificationKeyIdentifier":"alias/pvk","EncryptionKeyIdentifier":"alias/pek","VerificationAttributes":{"VisaPin":{"PinVerificationKeyIndex":1,"VerificationValue":"1234"}},"EncryptedPinBlock":"0123456789ABCDEF","PinBlockFormat":"ISO_FORMAT_2"}`, nil,
			"PinBlockFormat", "[ISO_FORMAT_0, ISO_FORMAT_1, ISO_FORMAT_3, ISO_FORMAT_4]"},
		{"reencrypt labels", "ReEncryptData", `{"OutgoingKeyIdentifier":"alias/out","CipherText":"00","IncomingEncryptionAttributes":{"Symmetric":{"Mode":"ECB"}},"OutgoingEncryptionAttributes":{"Symmetric":{"Mode":"ECB"}}}`, map[string]string{"IncomingKeyIdentifier": "alias/in"}, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := request(t, tc.op, tc.body, tc.labels).Validate("")
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var ve *dpshape.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate = %v, want a *ValidationError", err)
			}
			if ve.Field != tc.field || !strings.Contains(ve.Message, tc.msg) {
				t.Fatalf("Validate = {Field: %q, Message: %q}, want field %q and message containing %q", ve.Field, ve.Message, tc.field, tc.msg)
			}
			if strings.Contains(ve.Message, pan) {
				t.Fatalf("message echoes the PAN: %s", ve.Message)
			}
		})
	}
}

// TestURILabels: the data plane binds KeyIdentifier / IncomingKeyIdentifier
// to the URI ("location": "uri"); the body must not be able to set them.
func TestURILabels(t *testing.T) {
	want := map[string]struct {
		uri    string
		labels []string
	}{
		"DecryptData":   {"/keys/{KeyIdentifier}/decrypt", []string{"KeyIdentifier"}},
		"EncryptData":   {"/keys/{KeyIdentifier}/encrypt", []string{"KeyIdentifier"}},
		"ReEncryptData": {"/keys/{IncomingKeyIdentifier}/reencrypt", []string{"IncomingKeyIdentifier"}},
		"GenerateMac":   {"/mac/generate", nil},
	}
	for name, w := range want {
		op := dpshape.Operations[name]
		if op.RequestURI != w.uri || !slices.Equal(op.URILabels, w.labels) || op.Method != "POST" || op.ResponseCode != 200 {
			t.Errorf("%s = %+v", name, op)
		}
		_, setter := op.NewInput().(dpshape.URILabelSetter)
		if setter != (len(w.labels) > 0) {
			t.Errorf("%s: URILabelSetter %v", name, setter)
		}
	}
	if len(dpshape.Operations) != 15 { // README: "The data plane has 15 operations"
		t.Fatalf("%d operations, want 15", len(dpshape.Operations))
	}
	for name, op := range dpshape.Operations {
		if op.NewInput == nil || op.NewOutput == nil {
			t.Errorf("%s: missing factory", name)
		}
		if s, ok := op.NewInput().(dpshape.URILabelSetter); ok && s.SetURILabel("Nope", "x") {
			t.Errorf("%s: unknown label accepted", name)
		}
	}

	var in dpshape.DecryptDataInput
	if err := json.Unmarshal([]byte(`{"KeyIdentifier":"alias/evil","CipherText":"00","DecryptionAttributes":{"Symmetric":{"Mode":"ECB"}}}`), &in); err != nil {
		t.Fatal(err)
	}
	if in.KeyIdentifier != nil {
		t.Fatal("body member set a URI-bound field")
	}
	in.SetURILabel("KeyIdentifier", "alias/good")
	b, _ := json.Marshal(&in)
	if bytes.Contains(b, []byte("KeyIdentifier")) {
		t.Fatalf("URI-bound member encoded in the body: %s", b)
	}
	if err := in.Validate(""); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeNeverEchoesValues(t *testing.T) {
	// A PAN sent as a JSON number: encoding/json's own error would quote it.
	var in dpshape.GenerateCardValidationDataInput
	err := json.Unmarshal([]byte(`{"PrimaryAccountNumber":`+pan+`}`), &in)
	var de *dpshape.DecodeError
	if !errors.As(err, &de) || de.Field != "PrimaryAccountNumber" || de.Reason != "expected a JSON string, got number" {
		t.Fatalf("Unmarshal = %v", err)
	}
	if strings.Contains(err.Error(), pan) {
		t.Fatalf("decode error echoes the PAN: %v", err)
	}
	err = json.Unmarshal([]byte(`{"GenerationAttributes":{"CardVerificationValue2":{"CardExpiryDate":1230}}}`), &in)
	if !errors.As(err, &de) || de.Field != "GenerationAttributes.CardVerificationValue2.CardExpiryDate" || strings.Contains(err.Error(), "1230") {
		t.Fatalf("nested Unmarshal = %v", err)
	}
}

func TestErrorShapes(t *testing.T) {
	byName := map[string]dpshape.ErrorShape{}
	for _, e := range dpshape.ErrorShapes {
		byName[e.Name] = e
	}
	// HTTP codes are the model's error.httpStatusCode values.
	for name, status := range map[string]int{"AccessDeniedException": 403, "InternalServerException": 500, "ResourceNotFoundException": 404, "ThrottlingException": 429, "VerificationFailedException": 400, "ValidationException": 0} {
		if byName[name].HTTPStatus != status {
			t.Errorf("%s: status %d, want %d", name, byName[name].HTTPStatus, status)
		}
	}
	if m := byName["ValidationException"].Members; !slices.Equal(m, []string{"message", "fieldList"}) {
		t.Errorf("ValidationException members %v", m)
	}
	msg, path := "bad", "keyIdentifier"
	ve := dpshape.ValidationException{Message: &msg, FieldList: []dpshape.ValidationExceptionField{{Path: &path, Message: &msg}}}
	b, _ := json.Marshal(&ve)
	if string(b) != `{"message":"bad","fieldList":[{"path":"keyIdentifier","message":"bad"}]}` {
		t.Errorf("ValidationException encodes as %s", b)
	}
	if err := (&dpshape.ValidationException{}).Validate(""); err == nil {
		t.Error("ValidationException without message validated")
	}
	reason := dpshape.VerificationFailedReasonInvalidPin
	vf := &dpshape.VerificationFailedException{Reason: &reason, Message: &msg}
	if vf.Error() != "VerificationFailedException: bad" || vf.ErrorCode() != "VerificationFailedException" {
		t.Errorf("VerificationFailedException: %q", vf.Error())
	}
	if dpshape.Protocol != "rest-json" || dpshape.TargetPrefix != "" || dpshape.SigningName != "payment-cryptography" {
		t.Error("service metadata")
	}
}

// FuzzDecodeValidate decodes arbitrary bytes into data-plane inputs that
// carry PANs, PIN blocks and plaintext, then validates them: no panics, only
// the documented error types, and no sensitive value in any message.
func FuzzDecodeValidate(f *testing.F) {
	f.Add([]byte(`{"PlainText":"00112233","EncryptionAttributes":{"Symmetric":{"Mode":"CBC","InitializationVector":"0000000000000000"}}}`))
	f.Add([]byte(`{"IncomingKeyIdentifier":"alias/a","OutgoingKeyIdentifier":"alias/b","IncomingTranslationAttributes":{"IsoFormat0":{"PrimaryAccountNumber":"4111111111111111"}},"OutgoingTranslationAttributes":{"IsoFormat1":{}},"EncryptedPinBlock":"0123456789ABCDEF"}`))
	f.Add([]byte(`{"KeyIdentifier":"alias/cvk","PrimaryAccountNumber":"4111111111111111Z","GenerationAttributes":{"CardVerificationValue2":{"CardExpiryDate":"12x0"}}}`))
	f.Add([]byte(`{"EncryptionAttributes":{"Symmetric":null,"Emv":{}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, in := range []dpshape.Validator{new(dpshape.EncryptDataInput), new(dpshape.TranslatePinDataInput), new(dpshape.GenerateCardValidationDataInput)} {
			err := json.Unmarshal(data, in)
			if err != nil {
				var de *dpshape.DecodeError
				var se *json.SyntaxError
				if !errors.As(err, &de) && !errors.As(err, &se) {
					t.Fatalf("Unmarshal returned %T %v", err, err)
				}
				continue
			}
			if s, ok := in.(dpshape.URILabelSetter); ok {
				s.SetURILabel("KeyIdentifier", "alias/k")
			}
			err = in.Validate("")
			if err == nil {
				continue
			}
			var ve *dpshape.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate returned %T %v", err, err)
			}
			if strings.Contains(ve.Message, "Value '") && sensitivePath(ve.Field) {
				t.Fatalf("sensitive member echoed: %s", ve.Message)
			}
		}
	})
}

// sensitivePath reports whether a member path ends in a member whose shape
// the model marks sensitive, for the inputs the fuzzer uses.
func sensitivePath(field string) bool {
	for _, s := range []string{"PlainText", "PrimaryAccountNumber", "EncryptedPinBlock", "CardExpiryDate", "InitializationVector", "ServiceCode", "PinBlock"} {
		if strings.HasSuffix(field, s) {
			return true
		}
	}
	return false
}
