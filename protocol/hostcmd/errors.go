package hostcmd

import (
	"payhsm/fault"
)

// Error codes (payShield's standard codes, see docs/host-protocol.md).
const (
	codeOK             = "00"
	codeVerifyFailed   = "01"
	codeNotStored      = "12" // a stored-key reference names no usable key
	codeInvalidLMK     = "13"
	codeInvalidInput   = "15"
	codeProhibited     = "17"
	codeBadPinBlock    = "20"
	codeBadFormat      = "23"
	codePinLength      = "24"
	codeDecTable       = "25"
	codeKeyScheme      = "26"
	codeKeyFunction    = "29"
	codeRecordFailed   = "33" // a stored record failed its integrity check (payShield: key change storage corrupted)
	codeInternal       = "41"
	codeDisabled       = "68"
	codeDataLength     = "80"
	codeBlockAuth      = "A4"
	codeExportField    = "AA"
	codeWrappingKey    = "BB"
	codeBadUsage       = "A6"
	codeBadAlgorithm   = "A7"
	codeBadModeOfUse   = "A8"
	codeBadKeyBlockHdr = "B2"
)

// codeError is a decoding error that already carries its payShield code.
type codeError struct {
	code string
	msg  string
}

func (e *codeError) Error() string { return "hostcmd: " + e.code + ": " + e.msg }

func errCode(code, msg string) error { return &codeError{code: code, msg: msg} }

// errorCode is THE translation of an error into a payShield error code: a
// decoding error keeps its own code; an operations-layer fault is translated
// from its kind (and, for Validation, from the rule it broke or the input it
// is about).
func errorCode(err error) string {
	if ce, ok := err.(*codeError); ok {
		return ce.code
	}
	f := fault.As(err)
	if f.Violation == fault.ViolationRecordIntegrity {
		return codeRecordFailed
	}
	switch f.Kind {
	case fault.VerificationFailed:
		return codeVerifyFailed
	case fault.NotFound:
		return codeNotStored
	case fault.AccessDenied, fault.Conflict:
		return codeProhibited
	case fault.Validation:
		return validationCode(f)
	}
	return codeInternal
}

// validationCode refines a Validation fault: by the key rule it broke (the
// key-block codes A4/A6/A7/A8/AA/BB and 17 say the same things), else by the
// input it is about (its subject: the operations layer's name for it, never a
// transport's field name).
func validationCode(f *fault.Error) string {
	switch f.Violation {
	case fault.ViolationIntegrity:
		return codeBlockAuth
	case fault.ViolationUsage:
		return codeBadUsage
	case fault.ViolationAlgorithm:
		return codeBadAlgorithm
	case fault.ViolationModes:
		return codeBadModeOfUse
	case fault.ViolationState:
		return codeProhibited
	case fault.ViolationWrappingKey:
		return codeWrappingKey
	case fault.ViolationExportability:
		return codeExportField
	}
	switch f.Subject {
	case fault.SubjectKey, fault.SubjectWrappingKey, fault.SubjectPinEncryptionKey, fault.SubjectPinVerificationKey,
		fault.SubjectIntegrityKey, fault.SubjectConfidentialityKey, fault.SubjectAuthRequestKey, fault.SubjectCurrentPinKey,
		fault.SubjectWrappedKey, fault.SubjectAgreementKey:
		// A key (or the ZMK) that this command cannot use, whatever rule it
		// breaks beside the key-block ones above: a key pair asked to leave
		// under a ZMK, say (A8 answers 29, as payShield does).
		return codeKeyFunction
	case fault.SubjectPinBlock, fault.SubjectCurrentPinBlock:
		return codeBadPinBlock
	case fault.SubjectPinBlockFormat:
		return codeBadFormat
	case fault.SubjectPinLength:
		return codePinLength
	case fault.SubjectDecimalizationTable:
		return codeDecTable
	}
	return codeInvalidInput
}
