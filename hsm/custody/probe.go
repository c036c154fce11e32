package custody

import (
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"
)

// Why a token cannot be used, as Probe reports it (errors.Is).
var (
	// ErrNoToken: the module has no token with the label.
	ErrNoToken = errors.New("no token with this label")
	// ErrPINRefused: the token refused the user PIN (wrong, or of a length it does not accept).
	ErrPINRefused = errors.New("the token refused the user PIN")
	// ErrPINLocked: too many wrong PINs have locked the user PIN.
	ErrPINLocked = errors.New("the token's user PIN is locked")
	// ErrModule: the module could not be loaded or initialized.
	ErrModule = errors.New("the PKCS#11 module cannot be loaded")
)

// Probe logs in to the token labelled label of module and logs out again: a
// check, before anything is created, that the token is there and takes the
// PIN. Its error wraps ErrNoToken, ErrPINRefused, ErrPINLocked or ErrModule
// when it is one of those.
func Probe(module Module, label, pin string) error {
	tok, err := module.Login(label, pin)
	if err != nil {
		return classify(err)
	}
	return tok.Close()
}

// classify recognises crypto11's and PKCS#11's errors for the cases an
// operator can fix.
func classify(err error) error {
	var ck pkcs11.Error
	if errors.As(err, &ck) {
		switch uint(ck) {
		case pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_LEN_RANGE, pkcs11.CKR_PIN_INVALID:
			return fmt.Errorf("%w (%v)", ErrPINRefused, err)
		case pkcs11.CKR_PIN_LOCKED:
			return fmt.Errorf("%w (%v)", ErrPINLocked, err)
		}
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "could not find PKCS#11 token"):
		return fmt.Errorf("%w (%v)", ErrNoToken, err)
	case strings.Contains(msg, "failed to create module context"), strings.Contains(msg, "failed to initialize"):
		return fmt.Errorf("%w (%v)", ErrModule, err)
	}
	return err
}
