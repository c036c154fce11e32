// Package pinverify owns the issuer PIN verification algorithms: the Visa
// PIN Verification Value (PVV) and the IBM 3624 natural PIN, PIN offset and
// PIN-from-offset computations with a decimalization table. Each takes the PIN
// verification key as a TDEA cipher.Block (double- or triple-length) so that
// the caller's key schedule is reused on the hot path.
//
// A PIN is a []byte of ASCII digits owned by the caller; PINs this package
// returns (natural PIN, PIN from offset) are fresh slices the caller zeroes.
// Intermediate buffers are zeroed here. Errors never contain PIN, PAN,
// validation data or table digits.
package pinverify

import (
	"crypto/cipher"
	"crypto/subtle"
	"encoding/hex"
	"errors"
)

// Errors (no sensitive data in any of them).
var (
	ErrKey        = errors.New("pinverify: the PIN verification key must be a TDEA key")
	ErrPAN        = errors.New("pinverify: PAN must be 12 to 19 decimal digits")
	ErrPVKI       = errors.New("pinverify: PIN verification key index must be 0 to 9")
	ErrPIN        = errors.New("pinverify: PIN must be 4 to 12 decimal digits")
	ErrDecTable   = errors.New("pinverify: decimalization table must be 16 decimal digits")
	ErrValidation = errors.New("pinverify: validation data must be 4 to 16 decimal digits")
	ErrPad        = errors.New("pinverify: pad character must be one hexadecimal digit")
	ErrOffset     = errors.New("pinverify: PIN offset must be 4 to 12 decimal digits")
)

func decimal(b []byte, min, max int) bool {
	if len(b) < min || len(b) > max {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func tdea(k cipher.Block) error {
	if k == nil || k.BlockSize() != 8 {
		return ErrKey
	}
	return nil
}

// VisaPVV computes the 4-digit Visa PVV: the transformed security parameter
// TSP = the 11 rightmost PAN digits excluding the check digit, the PVKI and
// the 4 leftmost PIN digits is enciphered under the PVK; the PVV is the first
// four decimal digits of the result read left to right, completed if needed
// by the hexadecimal digits A–F (minus 10) in a second left-to-right pass
// (Visa PIN Verification Value method; as in knovichikhin/psec psec/pin.py
// generate_visa_pvv).
func VisaPVV(pvk cipher.Block, pan string, pvki int, pin []byte) ([]byte, error) {
	if err := tdea(pvk); err != nil {
		return nil, err
	}
	if len(pan) < 12 || len(pan) > 19 || !decimal([]byte(pan), 12, 19) {
		return nil, ErrPAN
	}
	if pvki < 0 || pvki > 9 {
		return nil, ErrPVKI
	}
	if !decimal(pin, 4, 12) {
		return nil, ErrPIN
	}
	var tsp [16]byte
	defer clear(tsp[:])
	copy(tsp[:11], pan[len(pan)-12:len(pan)-1])
	tsp[11] = '0' + byte(pvki)
	copy(tsp[12:], pin[:4])
	var in, out [8]byte
	defer clear(in[:])
	defer clear(out[:])
	if _, err := hex.Decode(in[:], tsp[:]); err != nil {
		return nil, ErrPIN // unreachable: every TSP character is a decimal digit
	}
	pvk.Encrypt(out[:], in[:])
	pvv := make([]byte, 0, 4)
	for pass := 0; pass < 2 && len(pvv) < 4; pass++ {
		for i := 0; i < 16 && len(pvv) < 4; i++ {
			v := out[i/2] >> 4
			if i%2 == 1 {
				v = out[i/2] & 0x0f
			}
			if pass == 0 && v <= 9 {
				pvv = append(pvv, '0'+v)
			} else if pass == 1 && v > 9 {
				pvv = append(pvv, '0'+v-10)
			}
		}
	}
	return pvv, nil
}

// VerifyVisaPVV reports whether pin matches pvv (4 digits), in constant time.
func VerifyVisaPVV(pvk cipher.Block, pan string, pvki int, pin, pvv []byte) (bool, error) {
	got, err := VisaPVV(pvk, pan, pvki, pin)
	if err != nil {
		return false, err
	}
	defer clear(got)
	return subtle.ConstantTimeCompare(got, pvv) == 1, nil
}

// IBM3624 holds the parameters of the IBM 3624 PIN method.
type IBM3624 struct {
	DecTable       string // 16 decimal digits: the digit each hex nibble 0–F maps to
	ValidationData string // 4–16 decimal digits, usually part of the PAN
	Pad            byte   // hex digit that right-pads ValidationData to 16 digits
}

func (p IBM3624) check() error {
	if !decimal([]byte(p.DecTable), 16, 16) {
		return ErrDecTable
	}
	if !decimal([]byte(p.ValidationData), 4, 16) {
		return ErrValidation
	}
	if !isHex(p.Pad) {
		return ErrPad
	}
	return nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' || c >= 'a' && c <= 'f'
}

// Natural computes the IBM 3624 natural (intermediate) PIN of length n: the
// validation data, right-padded with Pad to 16 hex digits, is enciphered under
// the PVK; each hex digit of the result is decimalized through DecTable and
// the n leftmost digits are the natural PIN.
func (p IBM3624) Natural(pvk cipher.Block, n int) ([]byte, error) {
	if err := tdea(pvk); err != nil {
		return nil, err
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	if n < 4 || n > 12 {
		return nil, ErrPIN
	}
	var vd [16]byte
	var in, out [8]byte
	defer clear(vd[:])
	defer clear(in[:])
	defer clear(out[:])
	copy(vd[:], p.ValidationData)
	for i := len(p.ValidationData); i < 16; i++ {
		vd[i] = p.Pad
	}
	if _, err := hex.Decode(in[:], vd[:]); err != nil {
		return nil, ErrPad
	}
	pvk.Encrypt(out[:], in[:])
	nat := make([]byte, n)
	for i := range nat {
		v := out[i/2] >> 4
		if i%2 == 1 {
			v = out[i/2] & 0x0f
		}
		nat[i] = p.DecTable[v]
	}
	return nat, nil
}

// Offset computes the IBM 3624 PIN offset of pin: digit by digit,
// (pin − natural) mod 10, as long as the PIN.
func (p IBM3624) Offset(pvk cipher.Block, pin []byte) ([]byte, error) {
	if !decimal(pin, 4, 12) {
		return nil, ErrPIN
	}
	nat, err := p.Natural(pvk, len(pin))
	if err != nil {
		return nil, err
	}
	defer clear(nat)
	off := make([]byte, len(pin))
	for i := range off {
		off[i] = '0' + (pin[i]-nat[i]+10)%10
	}
	return off, nil
}

// PINFromOffset computes the PIN that offset (4–12 digits) yields: digit by
// digit, (natural + offset) mod 10. The caller zeroes the result.
func (p IBM3624) PINFromOffset(pvk cipher.Block, offset []byte) ([]byte, error) {
	if !decimal(offset, 4, 12) {
		return nil, ErrOffset
	}
	nat, err := p.Natural(pvk, len(offset))
	if err != nil {
		return nil, err
	}
	for i := range nat {
		nat[i] = '0' + (nat[i]-'0'+offset[i]-'0')%10
	}
	return nat, nil
}

// Verify reports, in constant time, whether pin is the PIN that offset
// yields. The PIN check length is the offset's length, and the PIN must have
// exactly that length.
func (p IBM3624) Verify(pvk cipher.Block, pin, offset []byte) (bool, error) {
	want, err := p.PINFromOffset(pvk, offset)
	if err != nil {
		return false, err
	}
	defer clear(want)
	return subtle.ConstantTimeCompare(want, pin) == 1, nil
}
