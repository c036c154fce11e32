// Package fault owns payhsm's one error-kind enum. Every layer below the edges
// returns errors that carry a Kind; each front end translates the Kind exactly
// once (the AWS API into an exception name and HTTP status, the host protocol
// into a payShield error code). A fault's Message is safe to show a client; its
// wrapped cause is internal detail that is logged, never sent.
package fault

import (
	"errors"
	"fmt"
)

// Kind classifies an error for the edges.
type Kind int

const (
	// Internal is any failure that is not the caller's fault. Its message never reaches a client.
	Internal Kind = iota
	// Validation: the request is malformed or breaks a rule (key usage, algorithm, mode of use, format).
	Validation
	// NotFound: the named key, alias or resource does not exist.
	NotFound
	// Conflict: the resource is in a state that forbids the operation.
	Conflict
	// AccessDenied: the caller is not authenticated or not allowed.
	AccessDenied
	// VerificationFailed: a cryptographic verification (PIN, MAC, CVV, ARQC) did not match.
	VerificationFailed
	// Throttling: too many requests.
	Throttling
	// QuotaExceeded: a service quota would be exceeded.
	QuotaExceeded
	// Unavailable: the service cannot serve the request now (e.g. draining).
	Unavailable
	// PublicPolicy: a resource-based policy would grant public access to its key.
	PublicPolicy
)

var kindNames = [...]string{"Internal", "Validation", "NotFound", "Conflict", "AccessDenied",
	"VerificationFailed", "Throttling", "QuotaExceeded", "Unavailable", "PublicPolicy"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Verification failure reasons (the data plane's VerificationFailedReason enum).
const (
	ReasonInvalidMAC            = "INVALID_MAC"
	ReasonInvalidPIN            = "INVALID_PIN"
	ReasonInvalidValidationData = "INVALID_VALIDATION_DATA"
	ReasonInvalidAuthCryptogram = "INVALID_AUTH_REQUEST_CRYPTOGRAM"
)

// Error is a classified error.
type Error struct {
	Kind     Kind
	Message  string // client-safe text; empty for Internal
	Resource string // NotFound: the identifier that was not found
	Reason   string // VerificationFailed: one of the Reason constants
	// Subject and Side name the offending input in transport-neutral terms
	// (see subject.go); each edge maps them to its own vocabulary (the AWS
	// edge to a request member path, the host edge to an error code).
	Subject Subject
	Side    Side
	// Violation names the key-separation rule a Validation fault broke
	// (ViolationUsage, ViolationAlgorithm, ViolationModes), for edges that
	// report them apart (payShield's A6/A7/A8).
	Violation string
	cause     error // internal detail, logged only
}

// Key-separation rules (Error.Violation).
const (
	ViolationUsage     = "KeyUsage"
	ViolationAlgorithm = "KeyAlgorithm"
	ViolationModes     = "KeyModesOfUse"
	// ViolationState: the key is disabled, pending deletion or outside its usage period.
	ViolationState = "KeyState"
	// ViolationIntegrity: a key block does not verify under its protection key.
	ViolationIntegrity = "KeyBlockIntegrity"
	// ViolationWrappingKey: a key-encryption key cannot protect this key
	// (weaker than it, of the wrong algorithm for the block, named otherwise
	// by the block's KP check value, or the key itself).
	ViolationWrappingKey = "WrappingKey"
	// ViolationExportability: the key may not leave, or not in this form.
	ViolationExportability = "Exportability"
	// ViolationRecordIntegrity: a stored record (a key record, an alias, a
	// tag, an index entry or service metadata) failed its integrity check,
	// or a key record disagrees with its authenticated key block. It rides
	// on an Internal fault whose Message is RecordIntegrityMessage: the one
	// Internal fault whose message a client sees, because it names no detail
	// and tells the operator where to look.
	ViolationRecordIntegrity = "RecordIntegrity"
)

// RecordIntegrityMessage is what a client is told about a record that failed
// its integrity check; the detail (which record, why) is only logged.
const RecordIntegrityMessage = "the key record failed its integrity check"

// RecordIntegrity returns the Internal fault of a stored record that failed
// its integrity check; cause (logged only) says which and why.
func RecordIntegrity(cause error) *Error {
	return &Error{Kind: Internal, Message: RecordIntegrityMessage, Violation: ViolationRecordIntegrity, cause: cause}
}

// KeyRule returns a Validation fault for a broken key-separation rule.
func KeyRule(violation, format string, args ...any) *Error {
	f := Validationf(format, args...)
	f.Violation = violation
	return f
}

func (e *Error) Error() string {
	if e.cause != nil {
		if e.Message != "" {
			return e.Message + ": " + e.cause.Error()
		}
		return e.Kind.String() + ": " + e.cause.Error()
	}
	if e.Message == "" {
		return e.Kind.String()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.cause }

// Validationf returns a Validation fault with a client-safe message.
func Validationf(format string, args ...any) *Error {
	return &Error{Kind: Validation, Message: fmt.Sprintf(format, args...)}
}

// NotFoundf returns a NotFound fault for resource id.
func NotFoundf(resource string, format string, args ...any) *Error {
	return &Error{Kind: NotFound, Resource: resource, Message: fmt.Sprintf(format, args...)}
}

// Conflictf returns a Conflict fault.
func Conflictf(format string, args ...any) *Error {
	return &Error{Kind: Conflict, Message: fmt.Sprintf(format, args...)}
}

// AccessDeniedf returns an AccessDenied fault.
func AccessDeniedf(format string, args ...any) *Error {
	return &Error{Kind: AccessDenied, Message: fmt.Sprintf(format, args...)}
}

// QuotaExceededf returns a QuotaExceeded fault.
func QuotaExceededf(format string, args ...any) *Error {
	return &Error{Kind: QuotaExceeded, Message: fmt.Sprintf(format, args...)}
}

// PublicPolicyf returns a PublicPolicy fault.
func PublicPolicyf(format string, args ...any) *Error {
	return &Error{Kind: PublicPolicy, Message: fmt.Sprintf(format, args...)}
}

// Mismatch returns a VerificationFailed fault with the given reason.
func Mismatch(reason, message string) *Error {
	return &Error{Kind: VerificationFailed, Reason: reason, Message: message}
}

// Internalf wraps cause as an Internal fault; what names the failed step (for
// logs). A record-integrity failure anywhere in cause stays one (see
// RecordIntegrity), so that every layer that wraps a store error keeps it;
// and an Unavailable fault in cause (a key store that does not answer, a
// token that is gone) stays Unavailable, with its message.
func Internalf(what string, cause error) *Error {
	f := &Error{Kind: Internal, cause: fmt.Errorf("%s: %w", what, cause)}
	var inner *Error
	if errors.As(cause, &inner) {
		switch {
		case inner.Violation == ViolationRecordIntegrity:
			f.Message, f.Violation = RecordIntegrityMessage, ViolationRecordIntegrity
		case inner.Kind == Unavailable:
			f.Kind, f.Message = Unavailable, inner.Message
		}
	}
	return f
}

// Wrap classifies cause with kind and a client-safe message, keeping cause for logs.
func Wrap(kind Kind, message string, cause error) *Error {
	return &Error{Kind: kind, Message: message, cause: cause}
}

// As returns err's *Error, or an Internal fault wrapping err when it carries none.
func As(err error) *Error {
	if err == nil {
		return nil
	}
	var f *Error
	if errors.As(err, &f) {
		return f
	}
	return &Error{Kind: Internal, cause: err}
}

// KindOf returns the Kind of err (Internal when unclassified). KindOf(nil) is Internal
// and callers test err != nil first.
func KindOf(err error) Kind {
	if err == nil {
		return Internal
	}
	return As(err).Kind
}

// ClientMessage is the text an edge may show a client for err.
func ClientMessage(err error) string {
	f := As(err)
	if f.Violation == ViolationRecordIntegrity {
		return RecordIntegrityMessage
	}
	if f.Kind == Internal || f.Message == "" {
		switch f.Kind {
		case Internal:
			return "An internal error occurred"
		default:
			return f.Kind.String()
		}
	}
	return f.Message
}
