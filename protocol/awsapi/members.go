package awsapi

// The operations layer names the input a Validation fault is about in
// transport-neutral terms: a fault.Subject and, in two-key operations, a
// fault.Side. This file turns them into what an AWS client sees: the request
// member path, in front of the message and in the ValidationException's
// fieldList. Each data-plane handler knows its request's shape (which member
// of a union was sent, which operation it is) and passes locate a function
// that maps (side, subject) to the path; subjects it does not map fall back
// to the member's usual name (leafMember).

import (
	"encoding/hex"
	"errors"
	"strings"

	"payhsm/fault"
)

// memberPath maps a fault's side and subject to the request member path of
// one request; "" when it has none (leafMember applies).
type memberPath func(side fault.Side, subj fault.Subject) string

// atMember is a Validation fault located at a request member: path is what
// the ValidationException's fieldList names, and the fault's message
// already carries it.
type atMember struct {
	path string
	f    *fault.Error
}

func (e *atMember) Error() string { return e.f.Error() }
func (e *atMember) Unwrap() error { return e.f }

// memberFault locates f at path: the message becomes "path: message", unless
// it is a whole sentence of AWS's own wording (it ends with a full stop, as
// "Pin block provided is invalid. Please check your input to ensure all
// field values are correct." does), which is reported as it is.
func memberFault(path string, f *fault.Error) error {
	g := *f
	if path != "" && g.Message != "" && !strings.HasSuffix(g.Message, ".") {
		g.Message = path + ": " + g.Message
	}
	return &atMember{path: path, f: &g}
}

// invalid is a Validation fault of the edge itself about the member at path.
func invalid(path, msg string) error {
	return memberFault(path, fault.Validationf("%s", msg))
}

// locate reports a Validation fault that has a subject at the member path
// paths names for it (or, when it names none, at leafMember's). Other
// errors, and faults already located, pass unchanged.
func locate(err error, paths memberPath) error {
	return place(err, func(side fault.Side, subj fault.Subject) string {
		p := ""
		if paths != nil {
			p = paths(side, subj)
		}
		if p == "" {
			p = leafMember(side, subj)
		}
		return p
	})
}

// place reports a Validation fault that has a subject at the member path
// paths names for it; faults about a subject it names no path for, other
// errors and faults already located pass unchanged.
func place(err error, paths memberPath) error {
	if err == nil {
		return nil
	}
	var am *atMember
	if errors.As(err, &am) {
		return err
	}
	var f *fault.Error
	if !errors.As(err, &f) || f.Kind != fault.Validation || f.Subject == fault.SubjectNone {
		return err
	}
	p := paths(f.Side, f.Subject)
	if p == "" {
		return err
	}
	return memberFault(p, f)
}

// join builds a member path from its non-empty parts.
func join(parts ...string) string {
	n := 0
	for _, p := range parts {
		if p != "" {
			parts[n] = p
			n++
		}
	}
	return strings.Join(parts[:n], ".")
}

// sided picks the member of side: in, out or (no side) none.
func sided(side fault.Side, none, in, out string) string {
	switch side {
	case fault.SideIncoming:
		return in
	case fault.SideOutgoing:
		return out
	}
	return none
}

// leafMember is the usual name of a subject's member, used when an
// operation does not place it more precisely.
func leafMember(side fault.Side, subj fault.Subject) string {
	switch subj {
	case fault.SubjectKey:
		return sided(side, "KeyIdentifier", "IncomingKeyIdentifier", "OutgoingKeyIdentifier")
	case fault.SubjectWrappingKey:
		return "WrappingKeyIdentifier"
	case fault.SubjectKeyCheckValueAlgorithm:
		return "KeyCheckValueAlgorithm"
	case fault.SubjectPinBlock:
		return "EncryptedPinBlock"
	case fault.SubjectPinBlockFormat:
		return "PinBlockFormat"
	case fault.SubjectPAN:
		return "PrimaryAccountNumber"
	case fault.SubjectPinLength:
		return "PinDataLength"
	case fault.SubjectDecimalizationTable:
		return "DecimalizationTable"
	case fault.SubjectPinEncryptionKey:
		return "EncryptionKeyIdentifier"
	case fault.SubjectPinValidationData:
		return "PinValidationData"
	case fault.SubjectPadCharacter:
		return "PinValidationDataPadCharacter"
	case fault.SubjectPinOffset:
		return "PinOffset"
	case fault.SubjectPVKI:
		return "PinVerificationKeyIndex"
	case fault.SubjectKeySerialNumber:
		return "KeySerialNumber"
	case fault.SubjectDukptDerivationType:
		return "DukptKeyDerivationType"
	case fault.SubjectDukptVariant:
		return "DukptKeyVariant"
	case fault.SubjectExpiryDate:
		return "CardExpiryDate"
	case fault.SubjectServiceCode:
		return "ServiceCode"
	case fault.SubjectPSN:
		return "PanSequenceNumber"
	case fault.SubjectATC:
		return "ApplicationTransactionCounter"
	case fault.SubjectUnpredictableNumber:
		return "UnpredictableNumber"
	case fault.SubjectTrackData:
		return "TrackData"
	case fault.SubjectValidationDataLength:
		return "ValidationDataLength"
	case fault.SubjectValidationData:
		return "ValidationData"
	case fault.SubjectMessage:
		return "MessageData"
	case fault.SubjectMAC:
		return "Mac"
	case fault.SubjectMacLength:
		return "MacLength"
	case fault.SubjectCipherMode:
		return "Mode"
	case fault.SubjectPadding:
		return "PaddingType"
	case fault.SubjectIV:
		return "InitializationVector"
	case fault.SubjectMajorKeyDerivationMode:
		return "MajorKeyDerivationMode"
	case fault.SubjectSessionDerivationData:
		return "SessionDerivationData"
	case fault.SubjectSessionKeyDerivationMode:
		return "SessionKeyDerivationMode"
	case fault.SubjectApplicationCryptogram:
		return "ApplicationCryptogram"
	case fault.SubjectTransactionData:
		return "TransactionData"
	case fault.SubjectAuthRequestCryptogram:
		return "AuthRequestCryptogram"
	case fault.SubjectCertificateAuthority:
		return "CertificateAuthorityPublicKeyIdentifier"
	case fault.SubjectCertificate:
		return "PublicKeyCertificate"
	case fault.SubjectKDF:
		return "KeyDerivationFunction"
	case fault.SubjectKDFHash:
		return "KeyDerivationHashAlgorithm"
	case fault.SubjectSharedInformation:
		return "SharedInformation"
	case fault.SubjectSTAN:
		return "SystemTraceAuditNumber"
	case fault.SubjectTransactionAmount:
		return "TransactionAmount"
	case fault.SubjectAs2805Variant:
		return "As2805KeyVariant"
	case fault.SubjectKeyAlgorithm:
		return "KeyAlgorithm"
	case fault.SubjectKeyCryptogram:
		return "WrappedKeyCryptogram"
	case fault.SubjectVariantMask:
		return "RandomKeySendVariantMask"
	case fault.SubjectKekValidation:
		return "KekValidationType"
	}
	return ""
}

// unhex decodes the hexadecimal member at path (absent or empty: nil).
func unhex(path string, s *string) ([]byte, error) {
	if s == nil || *s == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(*s)
	if err != nil {
		return nil, invalid(path, "must be hexadecimal with an even number of digits")
	}
	return b, nil
}

// upperHex is the upper-case hexadecimal of b, as the API answers.
func upperHex(b []byte) *string {
	s := upperHexString(b)
	return &s
}

// upperHexString is upperHex's string (one allocation).
func upperHexString(b []byte) string {
	const digits = "0123456789ABCDEF"
	var sb strings.Builder
	sb.Grow(2 * len(b))
	for _, c := range b {
		sb.WriteByte(digits[c>>4])
		sb.WriteByte(digits[c&0x0F])
	}
	return sb.String()
}
