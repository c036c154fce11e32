// Package pinblock owns the ISO 9564-1 PIN block formats 0, 1, 3 and 4:
// encoding a PIN (with its PAN where the format binds one) into a plaintext
// block, decoding a plaintext block back to a PIN with every structural check
// the standard allows, and enciphering/deciphering a block under a PIN
// encryption key — TDEA for the 8-byte formats 0, 1 and 3, AES for format 4
// with the standard's two-pass encipherment (C = E(K, E(K, P) XOR A)).
//
// AS2805.3 PIN block format 0 is the same block as ISO 9564-1 format 0
// (AS2805 Part 3 adopts the ANSI X9.8 / ISO format 0 layout), so it has no
// separate Format value here; callers map it onto ISO0.
//
// A clear PIN is a []byte of ASCII digits owned by the caller, who zeroes it
// with Zero after use; this package zeroes every intermediate block it
// creates. Errors name what is wrong with a block, never a PIN or PAN digit.
package pinblock

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
)

// Format is an ISO 9564-1 PIN block format number.
type Format uint8

// The supported formats.
const (
	ISO0 Format = 0 // PIN XOR PAN, fill F (ANSI X9.8, VISA-1, ECI-1, AS2805 format 0)
	ISO1 Format = 1 // PIN with random fill, no PAN
	ISO3 Format = 3 // as format 0 with random fill A–F
	ISO4 Format = 4 // AES, 16 bytes, PAN enciphered in a second pass
)

// Errors. They carry no PIN or PAN data.
var (
	ErrFormat    = errors.New("pinblock: unsupported PIN block format")
	ErrPINLength = errors.New("pinblock: PIN must be 4 to 12 decimal digits")
	ErrPAN       = errors.New("pinblock: PAN must be decimal digits of a length the format allows")
	ErrLength    = errors.New("pinblock: PIN block has the wrong length for its format")
	ErrInvalid   = errors.New("pinblock: PIN block does not decode") // wrong key, PAN, format or a corrupted block
	ErrCipher    = errors.New("pinblock: key algorithm does not match the PIN block format")
)

// MinPIN and MaxPIN bound a PIN's length (ISO 9564-1: 4 to 12 digits).
const (
	MinPIN = 4
	MaxPIN = 12
)

// Known reports whether f is a supported format.
func (f Format) Known() bool { return f == ISO0 || f == ISO1 || f == ISO3 || f == ISO4 }

// BlockSize is the block length in bytes: 8 for formats 0, 1, 3; 16 for format 4.
func (f Format) BlockSize() int {
	if f == ISO4 {
		return 16
	}
	return 8
}

// NeedsPAN reports whether the format binds the PIN to a PAN.
func (f Format) NeedsPAN() bool { return f != ISO1 }

func (f Format) String() string { return fmt.Sprintf("ISO 9564-1 format %d", uint8(f)) }

// Zero overwrites b with zeros (use it on every clear PIN when done).
func Zero(b []byte) { clear(b) }

func validPIN(pin []byte) bool {
	if len(pin) < MinPIN || len(pin) > MaxPIN {
		return false
	}
	for _, c := range pin {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// panField03 is the format 0/3 PAN field: four zero nibbles then the 12
// rightmost PAN digits excluding the check digit, left-padded with zeros
// (ISO 9564-1:2017 9.3.1). The PAN must be 12 to 19 digits (ISO/IEC 7812-1).
func panField03(pan string) ([8]byte, error) {
	var a [8]byte
	if len(pan) < 12 || len(pan) > 19 || !digits(pan) {
		return a, ErrPAN
	}
	body := pan[:len(pan)-1]
	if len(body) > 12 {
		body = body[len(body)-12:]
	}
	// nibble positions 4..15 hold the 12 digits, right-justified
	off := 16 - len(body)
	for i := 0; i < len(body); i++ {
		setNibble(a[:], off+i, body[i]-'0')
	}
	return a, nil
}

// PANField4 is the format 4 plain-text PAN field (ISO 9564-1:2017 9.4.2): a
// nibble M = PAN length − 12 (0 when the PAN is shorter than 12 digits), the
// PAN (left-padded with zeros to 12 digits when shorter), then zero nibbles
// to 32. The PAN is 1 to 19 digits.
func PANField4(pan string) ([]byte, error) {
	if len(pan) < 1 || len(pan) > 19 || !digits(pan) {
		return nil, ErrPAN
	}
	a := make([]byte, 16)
	m, pos := 0, 1
	if len(pan) > 12 {
		m = len(pan) - 12
	} else {
		pos += 12 - len(pan)
	}
	setNibble(a, 0, byte(m)) //nolint:gosec // G115: 0 <= m <= 7 (the PAN is at most 19 digits).
	for i := 0; i < len(pan); i++ {
		setNibble(a, pos+i, pan[i]-'0')
	}
	return a, nil
}

func nibble(b []byte, i int) byte {
	if i%2 == 0 {
		return b[i/2] >> 4
	}
	return b[i/2] & 0x0f
}

func setNibble(b []byte, i int, v byte) {
	if i%2 == 0 {
		b[i/2] = b[i/2]&0x0f | v<<4
	} else {
		b[i/2] = b[i/2]&0xf0 | v&0x0f
	}
}

// randomNibbles fills nibbles [from, to) of b with values in [lo, lo+n) drawn
// uniformly from r (rejection sampling, no modulo bias).
func randomNibbles(r io.Reader, b []byte, from, to int, lo, n byte) error {
	var buf [16]byte
	for i := from; i < to; {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return fmt.Errorf("pinblock: random fill: %w", err)
		}
		for _, x := range buf {
			for _, v := range [2]byte{x >> 4, x & 0x0f} {
				if i < to && v < n*(16/n) {
					setNibble(b, i, lo+v%n)
					i++
				}
			}
		}
		clear(buf[:])
	}
	return nil
}

// Encode builds the plaintext for format f. For formats 0, 1 and 3 it is the
// clear PIN block (for 0 and 3, the PIN field XOR the PAN field); for format
// 4 it is the plain-text PIN field, which Encrypt combines with PANField4.
// rnd supplies the fill of formats 1, 3 and 4 (crypto/rand when nil). pan is
// ignored for format 1.
func Encode(f Format, pin []byte, pan string, rnd io.Reader) ([]byte, error) {
	if !f.Known() {
		return nil, ErrFormat
	}
	if !validPIN(pin) {
		return nil, ErrPINLength
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	p := make([]byte, f.BlockSize())
	setNibble(p, 0, byte(f))
	setNibble(p, 1, byte(len(pin))) //nolint:gosec // G115: validPIN bounds the PIN to 4 to 12 digits.
	for i, c := range pin {
		setNibble(p, 2+i, c-'0')
	}
	end := 2 + len(pin)
	var err error
	switch f {
	case ISO0:
		for i := end; i < 16; i++ {
			setNibble(p, i, 0xf)
		}
	case ISO1:
		err = randomNibbles(rnd, p, end, 16, 0, 16)
	case ISO3:
		err = randomNibbles(rnd, p, end, 16, 0xa, 6)
	case ISO4:
		for i := end; i < 16; i++ {
			setNibble(p, i, 0xa)
		}
		err = randomNibbles(rnd, p, 16, 32, 0, 16)
	}
	if err != nil {
		clear(p)
		return nil, err
	}
	if f == ISO0 || f == ISO3 {
		a, err := panField03(pan)
		if err != nil {
			clear(p)
			return nil, err
		}
		subtle.XORBytes(p, p, a[:])
	}
	return p, nil
}

// Decode recovers the PIN from plaintext of format f (see Encode) and checks
// the control field, the PIN length, that every PIN digit is decimal and the
// fill the format prescribes. It returns a fresh []byte the caller zeroes.
func Decode(f Format, plain []byte, pan string) ([]byte, error) {
	if !f.Known() {
		return nil, ErrFormat
	}
	if len(plain) != f.BlockSize() {
		return nil, ErrLength
	}
	p := make([]byte, len(plain))
	copy(p, plain)
	defer clear(p)
	if f == ISO0 || f == ISO3 {
		a, err := panField03(pan)
		if err != nil {
			return nil, err
		}
		subtle.XORBytes(p, p, a[:])
	}
	if nibble(p, 0) != byte(f) {
		return nil, ErrInvalid
	}
	n := int(nibble(p, 1))
	if n < MinPIN || n > MaxPIN {
		return nil, ErrInvalid
	}
	end := 2 + n
	fill := func(i int) bool {
		v := nibble(p, i)
		switch f {
		case ISO0:
			return v == 0xf
		case ISO3:
			return v >= 0xa
		case ISO4:
			return v == 0xa
		}
		return true // ISO1: any fill (transaction field)
	}
	for i := end; i < 16; i++ {
		if !fill(i) {
			return nil, ErrInvalid
		}
	}
	pin := make([]byte, n)
	for i := range pin {
		v := nibble(p, 2+i)
		if v > 9 {
			clear(pin)
			return nil, ErrInvalid
		}
		pin[i] = '0' + v
	}
	return pin, nil
}

func checkCipher(b cipher.Block, f Format) error {
	if b == nil || b.BlockSize() != f.BlockSize() {
		return ErrCipher
	}
	return nil
}

// Encrypt encodes pin for format f and enciphers it under the PIN encryption
// key b: TDEA ECB for formats 0, 1, 3; for format 4, AES with
// C = E(b, E(b, P) XOR A), A = PANField4(pan) (ISO 9564-1:2017 9.4.3).
func Encrypt(b cipher.Block, f Format, pin []byte, pan string, rnd io.Reader) ([]byte, error) {
	if !f.Known() {
		return nil, ErrFormat
	}
	if err := checkCipher(b, f); err != nil {
		return nil, err
	}
	p, err := Encode(f, pin, pan, rnd)
	if err != nil {
		return nil, err
	}
	defer clear(p)
	out := make([]byte, len(p))
	if f != ISO4 {
		b.Encrypt(out, p)
		return out, nil
	}
	a, err := PANField4(pan)
	if err != nil {
		return nil, err
	}
	b.Encrypt(out, p)
	subtle.XORBytes(out, out, a)
	b.Encrypt(out, out)
	return out, nil
}

// Decrypt deciphers an encrypted PIN block of format f under b and decodes
// it (see Decode). It returns the clear PIN, which the caller zeroes.
func Decrypt(b cipher.Block, f Format, block []byte, pan string) ([]byte, error) {
	if !f.Known() {
		return nil, ErrFormat
	}
	if err := checkCipher(b, f); err != nil {
		return nil, err
	}
	if len(block) != f.BlockSize() {
		return nil, ErrLength
	}
	p := make([]byte, len(block))
	defer clear(p)
	b.Decrypt(p, block)
	if f == ISO4 {
		a, err := PANField4(pan)
		if err != nil {
			return nil, err
		}
		subtle.XORBytes(p, p, a)
		b.Decrypt(p, p)
	}
	return Decode(f, p, pan)
}

// Translate deciphers block (format in, key from) and re-enciphers the same
// PIN as format out under key to, without the PIN leaving this package; it
// returns the new block and the PIN's length. inPAN and outPAN are the PANs
// each format binds (ignored for format 1). From format 0 to format 0 under
// the same PAN (a switch's ZPK-to-ZPK translation, the commonest) the
// checked clear block is re-enciphered as it is (translateISO0).
func Translate(from cipher.Block, in Format, block []byte, inPAN string, to cipher.Block, out Format, outPAN string, rnd io.Reader) ([]byte, int, error) {
	if in == ISO0 && out == ISO0 && inPAN == outPAN {
		dst := make([]byte, 8)
		n, err := translateISO0(from, block, inPAN, to, dst)
		if err != nil {
			return nil, 0, err
		}
		return dst, n, nil
	}
	pin, err := Decrypt(from, in, block, inPAN)
	if err != nil {
		return nil, 0, err
	}
	defer clear(pin)
	b, err := Encrypt(to, out, pin, outPAN, rnd)
	if err != nil {
		return nil, 0, err
	}
	return b, len(pin), nil
}

// RandomPIN returns n uniformly random decimal digits (4 ≤ n ≤ 12) drawn
// from rnd (crypto/rand when nil) by rejection sampling. The caller zeroes it.
func RandomPIN(n int, rnd io.Reader) ([]byte, error) {
	if n < MinPIN || n > MaxPIN {
		return nil, ErrPINLength
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	pin := make([]byte, 0, n)
	var buf [16]byte
	defer clear(buf[:])
	for len(pin) < n {
		if _, err := io.ReadFull(rnd, buf[:]); err != nil {
			clear(pin)
			return nil, fmt.Errorf("pinblock: random PIN: %w", err)
		}
		for _, x := range buf {
			if x < 250 && len(pin) < n { // 250 = 25 × 10: no modulo bias
				pin = append(pin, '0'+x%10)
			}
		}
	}
	return pin, nil
}

// translateISO0 is Translate from format 0 to format 0 with the same PAN,
// into dst, which must hold 8 bytes; it returns the PIN's length. A format
// 0 block that Decode accepts is the one Encode makes of its PIN and PAN
// (control nibble 0, the length, decimal digits, fill F, XOR the PAN field:
// there is no other), so the deciphered block is re-enciphered as it is,
// once checked, without decoding the PIN and encoding it again. It fails as
// Decrypt then Encrypt would, with the same errors in the same order, and
// writes dst only on success. The clear block lives on the stack and is
// zeroed on return.
func translateISO0(from cipher.Block, block []byte, pan string, to cipher.Block, dst []byte) (int, error) {
	if err := checkCipher(from, ISO0); err != nil {
		return 0, err
	}
	if len(block) != 8 {
		return 0, ErrLength
	}
	a, err := panField03(pan)
	if err != nil {
		return 0, err
	}
	var p, q [8]byte
	defer clear(q[:])
	defer clear(p[:])
	from.Decrypt(p[:], block)
	subtle.XORBytes(q[:], p[:], a[:]) // the PIN field
	n := int(q[0] & 0x0f)
	if q[0]>>4 != 0 || n < MinPIN || n > MaxPIN {
		return 0, ErrInvalid
	}
	for i := 2; i < 16; i++ {
		v := nibble(q[:], i)
		if (i < 2+n && v > 9) || (i >= 2+n && v != 0xf) {
			return 0, ErrInvalid
		}
	}
	if err := checkCipher(to, ISO0); err != nil {
		return 0, err
	}
	if len(dst) < 8 {
		return 0, ErrLength
	}
	to.Encrypt(dst[:8], p[:])
	return n, nil
}
