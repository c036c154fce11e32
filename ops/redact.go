package ops

import (
	"fmt"

	"payhsm/hsm/secret"
)

// The request types that carry a primary account number mask it whenever
// they are formatted (every fmt verb, so also in errors and log fields), as
// secret.PAN does: a request printed by mistake shows no full PAN. Each
// Format prints a copy with the PAN masked through a local type that has no
// Format method. Clear PINs never appear in these types: they exist only as
// short-lived byte slices inside the PIN operations.

// String masks the PAN (the type has a Format member, so it cannot have a
// Format method: %v, %s and %#v mask; other verbs print a struct as no
// caller does).
func (p PinBlockSpec) String() string {
	type plain PinBlockSpec
	p.PAN = secret.MaskPAN(p.PAN)
	return fmt.Sprintf("%+v", plain(p))
}

// GoString masks the PAN.
func (p PinBlockSpec) GoString() string {
	type plain PinBlockSpec
	p.PAN = secret.MaskPAN(p.PAN)
	return fmt.Sprintf("%#v", plain(p))
}

// String masks the PAN (the type has a Format member, so it cannot have a
// Format method: %v, %s and %#v mask; other verbs print a struct as no
// caller does).
func (in GeneratePinInput) String() string {
	type plain GeneratePinInput
	in.PAN = secret.MaskPAN(in.PAN)
	return fmt.Sprintf("%+v", plain(in))
}

// GoString masks the PAN.
func (in GeneratePinInput) GoString() string {
	type plain GeneratePinInput
	in.PAN = secret.MaskPAN(in.PAN)
	return fmt.Sprintf("%#v", plain(in))
}

// String masks the PAN (the type has a Format member, so it cannot have a
// Format method: %v, %s and %#v mask; other verbs print a struct as no
// caller does).
func (in VerifyPinInput) String() string {
	type plain VerifyPinInput
	in.PAN = secret.MaskPAN(in.PAN)
	return fmt.Sprintf("%+v", plain(in))
}

// GoString masks the PAN.
func (in VerifyPinInput) GoString() string {
	type plain VerifyPinInput
	in.PAN = secret.MaskPAN(in.PAN)
	return fmt.Sprintf("%#v", plain(in))
}

// Format masks the PAN.
func (in CardValidationInput) Format(f fmt.State, verb rune) {
	type plain CardValidationInput
	in.PAN = secret.MaskPAN(in.PAN)
	formatPlain(f, verb, plain(in))
}

// Format masks the PAN.
func (s EMVSession) Format(f fmt.State, verb rune) {
	type plain EMVSession
	s.PAN = secret.MaskPAN(s.PAN)
	formatPlain(f, verb, plain(s))
}

// Format masks the PAN.
func (d EmvPinChangeDerivation) Format(f fmt.State, verb rune) {
	type plain EmvPinChangeDerivation
	d.PAN = secret.MaskPAN(d.PAN)
	formatPlain(f, verb, plain(d))
}

// formatPlain prints v, a request copied into a local type without Format
// (its PAN already masked), with f's verb and flags.
func formatPlain(f fmt.State, verb rune, v any) {
	_, _ = fmt.Fprintf(f, fmt.FormatString(f, verb), v) // a Formatter cannot report a write error
}
