package awsapi

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"testing"

	"payhsm/fault"
	"payhsm/ops"
	cp "payhsm/protocol/awsapi/cpshape"
	dp "payhsm/protocol/awsapi/dpshape"
)

func sp(s string) *string { return &s }

// located returns the member path and client message err is reported with.
func located(t *testing.T, err error) (string, string) {
	t.Helper()
	if err == nil {
		return "", ""
	}
	var am *atMember
	if !errors.As(err, &am) {
		return "", fault.ClientMessage(err)
	}
	return am.path, fault.ClientMessage(err)
}

// TestLocate: a Validation fault about a subject is reported at the member
// the operation names for it, with the path in front of the message unless
// the message is one of AWS's whole sentences; other errors pass unchanged.
func TestLocate(t *testing.T) {
	paths := func(side fault.Side, subj fault.Subject) string {
		if subj == fault.SubjectPAN && side == fault.SideOutgoing {
			return "OutgoingTranslationAttributes.IsoFormat0.PrimaryAccountNumber"
		}
		return ""
	}
	for _, tc := range []struct {
		name       string
		err        error
		path, text string
	}{
		{"mapped", fault.About(fault.SubjectPAN, "must be 12 to 19 digits").On(fault.SideOutgoing),
			"OutgoingTranslationAttributes.IsoFormat0.PrimaryAccountNumber", "OutgoingTranslationAttributes.IsoFormat0.PrimaryAccountNumber: must be 12 to 19 digits"},
		{"usual name", fault.About(fault.SubjectPinLength, "must be 4 to 12"), "PinDataLength", "PinDataLength: must be 4 to 12"},
		{"side's usual name", fault.About(fault.SubjectKey, "x").On(fault.SideIncoming), "IncomingKeyIdentifier", "IncomingKeyIdentifier: x"},
		{"whole sentence", fault.About(fault.SubjectPinBlock, "Pin block provided is invalid. Please check your input to ensure all field values are correct."),
			"EncryptedPinBlock", "Pin block provided is invalid. Please check your input to ensure all field values are correct."},
		{"no subject", fault.Validationf("x"), "", "x"},
		{"not a validation fault", fault.Mismatch(fault.ReasonInvalidPIN, "Pin block verification failed."), "", "Pin block verification failed."},
		{"already located", invalid("EncryptedPinBlock", "must be hexadecimal"), "EncryptedPinBlock", "EncryptedPinBlock: must be hexadecimal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := locate(tc.err, paths)
			if path, text := located(t, err); path != tc.path || text != tc.text {
				t.Errorf("reported at %q as %q, want %q as %q", path, text, tc.path, tc.text)
			}
			if fault.KindOf(err) != fault.KindOf(tc.err) {
				t.Errorf("kind %v, want %v", fault.KindOf(err), fault.KindOf(tc.err))
			}
		})
	}
}

// TestMemberPaths: each operation names the member of its own request shape,
// by side and by the union member the request set.
func TestMemberPaths(t *testing.T) {
	dh := &dp.WrappedKey{WrappedKeyMaterial: &dp.WrappedKeyMaterial{DiffieHellmanSymmetricKey: &dp.EcdhDerivationAttributes{}}}
	tr31 := &dp.WrappedKey{WrappedKeyMaterial: &dp.WrappedKeyMaterial{Tr31KeyBlock: sp("D0016D0AB00N0000")}}
	translate := &dp.TranslatePinDataInput{
		IncomingTranslationAttributes: &dp.TranslationIsoFormats{IsoFormat0: &dp.TranslationPinDataIsoFormat034{}},
		OutgoingTranslationAttributes: &dp.TranslationIsoFormats{IsoFormat1: &dp.TranslationPinDataIsoFormat1{}},
		IncomingWrappedKey:            dh,
	}
	reEncrypt := &dp.ReEncryptDataInput{
		IncomingEncryptionAttributes: &dp.ReEncryptionAttributes{Dukpt: &dp.DukptEncryptionAttributes{}},
		OutgoingEncryptionAttributes: &dp.ReEncryptionAttributes{Symmetric: &dp.SymmetricEncryptionAttributes{}},
		OutgoingWrappedKey:           tr31,
	}
	emvMac := &dp.MacAttributes{EmvMac: &dp.MacAlgorithmEmv{}}
	card := &dp.CardVerificationAttributes{DynamicCardVerificationValue: &dp.DynamicCardVerificationValue{}}
	arqc := &dp.SessionKeyDerivation{Mastercard: &dp.SessionKeyMastercard{}}
	pinChange := &dp.DerivationMethodAttributes{Visa: &dp.VisaAttributes{}}
	for _, tc := range []struct {
		name  string
		paths memberPath
		side  fault.Side
		subj  fault.Subject
		want  string
	}{
		{"translate incoming PEK", translatePinMembers(translate), fault.SideIncoming, fault.SubjectPinEncryptionKey, "IncomingKeyIdentifier"},
		{"translate incoming PAN", translatePinMembers(translate), fault.SideIncoming, fault.SubjectPAN, "IncomingTranslationAttributes.IsoFormat0.PrimaryAccountNumber"},
		{"translate to format 1", translatePinMembers(translate), fault.SideOutgoing, fault.SubjectPAN, "OutgoingTranslationAttributes.IsoFormat1"},
		{"translate incoming agreed key", translatePinMembers(translate), fault.SideIncoming, fault.SubjectWrappedKey,
			"IncomingWrappedKey.WrappedKeyMaterial.DiffieHellmanSymmetricKey"},
		{"translate certificate", translatePinMembers(translate), fault.SideIncoming, fault.SubjectCertificate,
			"IncomingWrappedKey.WrappedKeyMaterial.DiffieHellmanSymmetricKey.PublicKeyCertificate"},
		{"translate outgoing DUKPT", translatePinMembers(translate), fault.SideOutgoing, fault.SubjectKeySerialNumber, "OutgoingDukptAttributes.KeySerialNumber"},
		{"re-encrypt incoming KSN", reEncryptMembers(reEncrypt), fault.SideIncoming, fault.SubjectKeySerialNumber, "IncomingEncryptionAttributes.Dukpt.KeySerialNumber"},
		{"re-encrypt outgoing IV", reEncryptMembers(reEncrypt), fault.SideOutgoing, fault.SubjectIV, "OutgoingEncryptionAttributes.Symmetric.InitializationVector"},
		{"re-encrypt outgoing block", reEncryptMembers(reEncrypt), fault.SideOutgoing, fault.SubjectWrappedKey, "OutgoingWrappedKey.WrappedKeyMaterial.Tr31KeyBlock"},
		{"re-encrypt data", reEncryptMembers(reEncrypt), fault.SideOutgoing, fault.SubjectData, "CipherText"},
		{"encrypt data", dataMembers("EncryptionAttributes", "Emv", "WrappedKey", nil, "PlainText"), fault.SideNone, fault.SubjectData, "PlainText"},
		{"encrypt EMV PAN", dataMembers("EncryptionAttributes", "Emv", "WrappedKey", nil, "PlainText"), fault.SideNone, fault.SubjectPAN,
			"EncryptionAttributes.Emv.PrimaryAccountNumber"},
		{"EMV MAC counter", macMembers("GenerationAttributes", emvMac), fault.SideNone, fault.SubjectATC,
			"GenerationAttributes.EmvMac.SessionKeyDerivationValue.ApplicationTransactionCounter"},
		{"MAC algorithm", macMembers("VerificationAttributes", nil), fault.SideNone, fault.SubjectMacAlgorithm, "VerificationAttributes.Algorithm"},
		{"dCVV counter", cardMembers("VerificationAttributes", card), fault.SideNone, fault.SubjectATC,
			"VerificationAttributes.DynamicCardVerificationValue.ApplicationTransactionCounter"},
		{"ARQC UN", authMembers(arqc, nil), fault.SideNone, fault.SubjectUnpredictableNumber, "SessionKeyDerivationAttributes.Mastercard.UnpredictableNumber"},
		{"ARPC CSU", authMembers(arqc, nil), fault.SideNone, fault.SubjectCardStatusUpdate, "AuthResponseAttributes.ArpcMethod2.CardStatusUpdate"},
		{"PIN change current block", pinChangeMembers(pinChange), fault.SideNone, fault.SubjectCurrentPinBlock,
			"DerivationMethodAttributes.Visa.CurrentPinAttributes.CurrentEncryptedPinBlock"},
		{"PIN change new block", pinChangeMembers(pinChange), fault.SideNone, fault.SubjectPinBlock, "NewEncryptedPinBlock"},
		{"AS2805 export key", exportMembers["As2805KeyCryptogram"].path, fault.SideNone, fault.SubjectKey, "ExportKeyIdentifier"},
		{"AS2805 export check value", exportMembers["As2805KeyCryptogram"].path, fault.SideNone, fault.SubjectKeyCheckValueAlgorithm,
			"ExportAttributes.KeyCheckValueAlgorithm"},
		{"AS2805 export variant", exportMembers["As2805KeyCryptogram"].path, fault.SideNone, fault.SubjectAs2805Variant,
			"KeyMaterial.As2805KeyCryptogram.As2805KeyVariant"},
		{"AS2805 cryptogram", importMembers["As2805KeyCryptogram"].path, fault.SideNone, fault.SubjectKeyCryptogram,
			"KeyMaterial.As2805KeyCryptogram.WrappedKeyCryptogram"},
		{"AS2805 modes of use", importMembers["As2805KeyCryptogram"].path, fault.SideNone, fault.SubjectKeyModesOfUse,
			"KeyMaterial.As2805KeyCryptogram.KeyModesOfUse"},
		{"create key usage", createKeyMembers.path, fault.SideNone, fault.SubjectKeyUsage, "KeyAttributes.KeyUsage"},
		{"create derived usage", createKeyMembers.path, fault.SideNone, fault.SubjectDeriveKeyUsage, "DeriveKeyUsage"},
		{"import cryptogram's algorithm", importMembers["KeyCryptogram"].path, fault.SideNone, fault.SubjectKeyAlgorithm,
			"KeyMaterial.KeyCryptogram.KeyAttributes.KeyAlgorithm"},
		{"import block's header", importMembers["Tr31KeyBlock"].path, fault.SideNone, fault.SubjectKeyModesOfUse, "KeyMaterial.Tr31KeyBlock.WrappedKeyBlock"},
		{"import ECDH key pair", importMembers["DiffieHellmanTr31KeyBlock"].path, fault.SideNone, fault.SubjectAgreementKey,
			"KeyMaterial.DiffieHellmanTr31KeyBlock.PrivateKeyIdentifier"},
		{"export ECDH shared information", exportMembers["DiffieHellmanTr31KeyBlock"].path, fault.SideNone, fault.SubjectSharedInformation,
			"KeyMaterial.DiffieHellmanTr31KeyBlock.DerivationData.SharedInformation"},
		{"export ECDH key", exportMembers["DiffieHellmanTr31KeyBlock"].path, fault.SideNone, fault.SubjectKey, "ExportKeyIdentifier"},
		{"translate key pair", translateKeyMaterialMembers, fault.SideIncoming, fault.SubjectAgreementKey,
			"IncomingKeyMaterial.DiffieHellmanTr31KeyBlock.PrivateKeyIdentifier"},
		{"translate certificate", translateKeyMaterialMembers, fault.SideIncoming, fault.SubjectCertificate,
			"IncomingKeyMaterial.DiffieHellmanTr31KeyBlock.PublicKeyCertificate"},
		{"translate header", translateKeyMaterialMembers, fault.SideIncoming, fault.SubjectKeyUsage,
			"IncomingKeyMaterial.DiffieHellmanTr31KeyBlock.WrappedKeyBlock"},
		{"translate outgoing KEK", translateKeyMaterialMembers, fault.SideOutgoing, fault.SubjectWrappingKey,
			"OutgoingKeyMaterial.Tr31KeyBlock.WrappingKeyIdentifier"},
		{"translate check value", translateKeyMaterialMembers, fault.SideNone, fault.SubjectKeyCheckValueAlgorithm, "KeyCheckValueAlgorithm"},
	} {
		if got := tc.paths(tc.side, tc.subj); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestEdgeDecoding: hexadecimal members are decoded at the edge, and a
// member that does not decode is a ValidationException naming it.
func TestEdgeDecoding(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func() error
		path string
	}{
		{"shared information", func() error {
			_, err := wrappedKey("WrappedKey", &dp.WrappedKey{WrappedKeyMaterial: &dp.WrappedKeyMaterial{
				DiffieHellmanSymmetricKey: &dp.EcdhDerivationAttributes{SharedInformation: sp("0G")}}})
			return err
		}, "WrappedKey.WrappedKeyMaterial.DiffieHellmanSymmetricKey.SharedInformation"},
		{"odd IV", func() error {
			_, err := dataCipher("EncryptionAttributes", &dp.EncryptionDecryptionAttributes{Symmetric: &dp.SymmetricEncryptionAttributes{InitializationVector: sp("000")}})
			return err
		}, "EncryptionAttributes.Symmetric.InitializationVector"},
		{"DUKPT MAC KSN", func() error {
			_, err := macAttributes("GenerationAttributes", &dp.MacAttributes{DukptCmac: &dp.MacAlgorithmDukpt{KeySerialNumber: sp("XYZ0")}})
			return err
		}, "GenerationAttributes.DukptCmac.KeySerialNumber"},
		{"long ATC", func() error {
			_, err := cardInput("k", "4123456789012345", "GenerationAttributes", &dp.CardVerificationAttributes{
				DynamicCardVerificationValue: &dp.DynamicCardVerificationValue{ApplicationTransactionCounter: sp("12345")}})
			return err
		}, "GenerationAttributes.DynamicCardVerificationValue.ApplicationTransactionCounter"},
		{"PIN change cryptogram", func() error {
			_, err := pinChangeDerivation(&dp.DerivationMethodAttributes{Mastercard: &dp.MasterCardAttributes{ApplicationCryptogram: sp("ABC")}})
			return err
		}, "DerivationMethodAttributes.Mastercard.ApplicationCryptogram"},
		{"AS2805 cryptogram", func() error {
			_, err := importAs2805(nil, ops.ImportKeyInput{}, &cp.ImportAs2805KeyCryptogram{WrappedKeyCryptogram: sp("Z3F307F15FA89F1F420E58F063693023")})
			return err
		}, "KeyMaterial.As2805KeyCryptogram.WrappedKeyCryptogram"},
	} {
		err := tc.run()
		if path, text := located(t, err); fault.KindOf(err) != fault.Validation || path != tc.path || text != tc.path+": must be hexadecimal with an even number of digits" &&
			text != tc.path+": must be 1 to 4 hexadecimal digits" {
			t.Errorf("%s: %v at %q, want a ValidationException at %s", tc.name, err, path, tc.path)
		}
	}
	if b, err := atcHex("ATC", sp("5E")); err != nil || len(b) != 2 || b[0] != 0 || b[1] != 0x5E {
		t.Errorf("ATC 5E: %X %v, want 005E", b, err)
	}
}

// TestValidationExceptionFieldList: the located member is the fieldList's path.
func TestValidationExceptionFieldList(t *testing.T) {
	w := httptest.NewRecorder()
	writeDataError(w, locate(fault.About(fault.SubjectPinLength, "must be 4 to 12"), nil))
	var body dp.ValidationException
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if w.Code != 400 || w.Header().Get("X-Amzn-ErrorType") != "ValidationException" || len(body.FieldList) != 1 ||
		*body.FieldList[0].Path != "PinDataLength" || *body.Message != "PinDataLength: must be 4 to 12" {
		t.Fatalf("%d %s %s", w.Code, w.Header().Get("X-Amzn-ErrorType"), w.Body.String())
	}
}
