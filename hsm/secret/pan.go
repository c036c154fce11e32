package secret

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// PAN is a primary account number: 12 to 19 decimal digits (the lengths the
// API accepts). Every text form masks it: the first six and last four digits
// show, as PCI DSS allows at most, when that still hides six digits or more
// (PANs of 16 digits and longer); shorter PANs show their last four only.
// E.g. 4761739001010119 is 476173******0119 and 378282246310005 is
// ***********0005. The zero PAN holds no number.
//
// A Go string cannot be zeroed, so PAN has no Destroy: its point is that it
// never prints.
type PAN struct{ d *string }

// Errors of ParsePAN. They never contain the digits.
var (
	ErrPANLength = errors.New("secret: a PAN is 12 to 19 digits")
	ErrPANDigits = errors.New("secret: a PAN is decimal digits only")
)

// ParsePAN checks that s is 12 to 19 decimal digits and returns it as a PAN.
func ParsePAN(s string) (PAN, error) {
	if len(s) < 12 || len(s) > 19 {
		return PAN{}, ErrPANLength
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return PAN{}, ErrPANDigits
		}
	}
	return PAN{&s}, nil
}

// Digits is the PAN, for use ("" for the zero PAN).
func (p PAN) Digits() string {
	if p.d == nil {
		return ""
	}
	return *p.d
}

// Len is the number of digits.
func (p PAN) Len() int { return len(p.Digits()) }

// IsZero reports whether p holds no number.
func (p PAN) IsZero() bool { return p.d == nil }

// Equal reports, in constant time for PANs of equal length, whether p and q
// are the same number.
func (p PAN) Equal(q PAN) bool {
	return p.IsZero() == q.IsZero() && subtle.ConstantTimeCompare([]byte(p.Digits()), []byte(q.Digits())) == 1
}

// Masked is the masked PAN (see PAN); "" for the zero PAN.
func (p PAN) Masked() string { return MaskPAN(p.Digits()) }

// MaskPAN masks the PAN digits d as PAN's String does: the first 6 and last
// 4 digits show only when that still hides at least 6, else the last 4
// only; fewer than 4 characters are all masked. For PANs held as plain
// strings by types that mask them when formatted.
func MaskPAN(d string) string {
	shown := 0
	if len(d)-10 >= 6 {
		shown = 6
	}
	if len(d) < 4 {
		return strings.Repeat("*", len(d))
	}
	return d[:shown] + strings.Repeat("*", len(d)-shown-4) + d[len(d)-4:]
}

// String is Masked ("[NO PAN]" for the zero PAN).
func (p PAN) String() string {
	if p.d == nil {
		return "[NO PAN]"
	}
	return p.Masked()
}

// GoString is the %#v form: secret.PAN(476173******0119).
func (p PAN) GoString() string { return "secret.PAN(" + p.String() + ")" }

// Format prints String for every verb (%q quotes it; %#v is GoString).
func (p PAN) Format(f fmt.State, verb rune) { format(f, verb, p.String(), p.GoString()) }

// MarshalJSON is the JSON string of String: marshalling is one way, a
// masked PAN does not parse back.
func (p PAN) MarshalJSON() ([]byte, error) { return json.Marshal(p.String()) }

// MarshalText is String.
func (p PAN) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText parses a PAN (ParsePAN), so that a request can be decoded
// straight into one.
func (p *PAN) UnmarshalText(b []byte) error {
	q, err := ParsePAN(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// LogValue is String, for log/slog.
func (p PAN) LogValue() slog.Value { return slog.StringValue(p.String()) }
