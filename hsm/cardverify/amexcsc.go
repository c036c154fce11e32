package cardverify

import (
	"crypto/cipher"
	"crypto/des"
	"errors"
)

// AmexCSCVersion is an American Express card security code algorithm.
type AmexCSCVersion int

// Amex CSC algorithms.
const (
	AmexCSC1 AmexCSCVersion = 1 // "Classic" CSC: PAN and expiry date
	AmexCSC2 AmexCSCVersion = 2 // "Enhanced" CSC: PAN, expiry date and service code (also iCSC and 3-D Secure AEVV)
)

var errAmexPAN = errors.New("cardverify: an American Express PAN is 15 digits beginning with 34 or 37")

// AmexCSC computes the American Express card security code of n digits (5,
// 4 or 3) under the CSC key k (a TDES cipher), as the payShield RY command
// returns them all at once. docs/card-algorithms.md records the sources and
// how sure they make us.
//
// The 16-digit block is the PAN without its two-digit prefix and check digit
// (digits 3 to 14), after the 4-digit expiry date for a PAN beginning 37 and
// before it for one beginning 34. Version 1 enciphers the block (TDES, ECB);
// version 2 appends the service code, fills with zeros to two blocks and
// keeps the last block of their TDES CBC encryption under a zero IV. The
// result's 16 hexadecimal digits are decimalised into 12: its decimal digits
// in order, then its letters in order, A..F counting 1..6 in the first five
// positions and 6,7,8,9,0,1 after them. The 5-digit CSC is digits 1–5, the
// 4-digit CSC digits 6–9 and the 3-digit CSC digits 10–12.
func AmexCSC(k cipher.Block, v AmexCSCVersion, pan, expiry, serviceCode string, n int) (string, error) {
	if k == nil || k.BlockSize() != des.BlockSize {
		return "", errKey
	}
	if len(pan) != 15 || !digits(pan) || (pan[:2] != "34" && pan[:2] != "37") {
		return "", errAmexPAN
	}
	if len(expiry) != 4 || !digits(expiry) {
		return "", errors.New("cardverify: expiry date must be 4 digits")
	}
	var off int
	switch n {
	case 5:
		off = 0
	case 4:
		off = 5
	case 3:
		off = 9
	default:
		return "", errors.New("cardverify: an Amex CSC has 3, 4 or 5 digits")
	}
	blk := pan[2:14] + expiry
	if pan[:2] == "37" {
		blk = expiry + pan[2:14]
	}
	var r [8]byte
	switch v {
	case AmexCSC1:
		var in [8]byte
		packLeft(in[:], blk)
		k.Encrypt(r[:], in[:])
	case AmexCSC2:
		if len(serviceCode) != 3 || !digits(serviceCode) {
			return "", errors.New("cardverify: service code must be 3 digits")
		}
		var in [16]byte
		packLeft(in[:], blk+serviceCode)
		k.Encrypt(r[:], in[:8])
		for i := range r {
			r[i] ^= in[8+i]
		}
		k.Encrypt(r[:], r[:])
		clear(in[:])
	default:
		return "", errors.New("cardverify: unknown Amex CSC version")
	}
	all := amexDecimalise(r)
	clear(r[:])
	return string(all[off : off+n]), nil
}

// amexDecimalise turns the 16 nibbles of r into the 12 CSC digits.
func amexDecimalise(r [8]byte) [12]byte {
	var out [12]byte
	j := 0
	for i := 0; i < 16 && j < 12; i++ {
		if d := nibble(r, i); d < 10 {
			out[j] = '0' + d
			j++
		}
	}
	for i := 0; i < 16 && j < 12; i++ {
		d := nibble(r, i)
		if d < 10 {
			continue
		}
		v := d - 9 // A = 1 … F = 6
		if i >= 5 {
			v = (v + 5) % 10
		}
		out[j] = '0' + v
		j++
	}
	return out
}

func nibble(r [8]byte, i int) byte {
	if i%2 == 0 {
		return r[i/2] >> 4
	}
	return r[i/2] & 0x0F
}
