package secret

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// PIN is a clear PIN: 4 to 12 ASCII decimal digits (ISO 9564-1). Every text
// form is "****", whatever the PIN's length: neither its digits nor its
// length show. The zero PIN holds none. Copies share the digits: Destroy
// through one zeroes them for all.
type PIN struct{ s *pinState }

// pinState holds the digits behind one more pointer (see keyState).
type pinState struct {
	mu sync.Mutex
	d  *[]byte
}

// Errors of NewPIN. They never contain the digits.
var (
	ErrPINLength = errors.New("secret: a PIN is 4 to 12 digits")
	ErrPINDigits = errors.New("secret: a PIN is decimal digits only")
)

// PINMask is every text form of a PIN.
const PINMask = "****"

// NewPIN takes ownership of digits (ASCII '0'..'9', 4 to 12 of them), which
// the caller must no longer use directly. When they are not a PIN, they are
// zeroed and the error says why.
func NewPIN(digits []byte) (PIN, error) {
	if len(digits) < 4 || len(digits) > 12 {
		clear(digits)
		return PIN{}, ErrPINLength
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			clear(digits)
			return PIN{}, ErrPINDigits
		}
	}
	return PIN{&pinState{d: &digits}}, nil
}

// Digits is the PIN's ASCII digits, for use; nil for the zero PIN and once
// destroyed. The caller must not modify or keep them beyond the PIN's life.
func (p PIN) Digits() []byte {
	if p.s == nil {
		return nil
	}
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	return *p.s.d
}

// Len is the number of digits (0 for the zero PIN and once destroyed).
func (p PIN) Len() int { return len(p.Digits()) }

// IsZero reports whether p is the zero PIN.
func (p PIN) IsZero() bool { return p.s == nil }

// Destroy zeroes the digits. Destroying twice, or the zero PIN, does nothing.
func (p PIN) Destroy() {
	if p.s == nil {
		return
	}
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	clear(*p.s.d)
	*p.s.d = nil
}

// String is PINMask.
func (p PIN) String() string { return PINMask }

// GoString is the %#v form: secret.PIN(****).
func (p PIN) GoString() string { return "secret.PIN(" + PINMask + ")" }

// Format prints PINMask for every verb (%q quotes it; %#v is GoString).
func (p PIN) Format(f fmt.State, verb rune) { format(f, verb, PINMask, p.GoString()) }

// MarshalJSON is the JSON string "****".
func (p PIN) MarshalJSON() ([]byte, error) { return json.Marshal(PINMask) }

// MarshalText is PINMask.
func (p PIN) MarshalText() ([]byte, error) { return []byte(PINMask), nil }

// UnmarshalJSON refuses: a clear PIN is never decoded from JSON.
func (p *PIN) UnmarshalJSON([]byte) error { return ErrNotDecodable }

// UnmarshalText refuses: a clear PIN is never decoded from text.
func (p *PIN) UnmarshalText([]byte) error { return ErrNotDecodable }

// LogValue is PINMask, for log/slog.
func (p PIN) LogValue() slog.Value { return slog.StringValue(PINMask) }
