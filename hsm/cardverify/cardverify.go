// Package cardverify owns the card verification value algorithms an issuer
// host computes from a card verification key: the Visa/Mastercard CVV
// algorithm (CVV, CVC, CVV2/CVC2 with service code 000, iCVV with 999, and
// Visa CAVV v7 whose inputs are repurposed), and the two dynamic values of
// contactless magnetic-stripe mode computed under an ICC key derived with
// hsm/emv: the Mastercard CVC3 (DCVC3) and the Visa dCVV; and the American
// Express card security codes (CSC versions 1 and 2, amexcsc.go).
//
// Inputs are the decimal strings and bytes of the card; outputs are decimal
// strings. Errors never contain key material or card data.
package cardverify

import (
	"crypto/cipher"
	"crypto/des"
	"crypto/subtle"
	"errors"
	"fmt"

	"payhsm/hsm/emv"
	"payhsm/hsm/tdes"
)

var errKey = errors.New("cardverify: key must be a double-length TDES key")

// CVV computes an n-digit (1..16) card verification value with the Visa CVV
// algorithm (Visa/Mastercard card verification, e.g. IBM CCA "CVV Generate"):
// the digits PAN‖expiry‖serviceCode, right-padded with zeros to 32, form
// blocks B1 and B2; R = TDES(K)[DES(K_L)[B1] ⊕ B2]; the result is the
// decimal digits of R's 16 hex nibbles in order, then the nibbles A..F
// decimalised (A=0 … F=5), truncated to n digits.
func CVV(key []byte, pan, expiry, serviceCode string, n int) (string, error) {
	if len(key) != 16 {
		return "", errKey
	}
	if err := cvvInputs(pan, expiry, serviceCode, n); err != nil {
		return "", err
	}
	return cvv(key, pan+expiry+serviceCode, n)
}

func cvvInputs(pan, expiry, serviceCode string, n int) error {
	if len(pan) < 1 || len(pan) > 19 || !digits(pan) {
		return errors.New("cardverify: PAN must be 1 to 19 digits")
	}
	if len(expiry) != 4 || !digits(expiry) {
		return errors.New("cardverify: expiry date must be 4 digits")
	}
	if len(serviceCode) != 3 || !digits(serviceCode) {
		return errors.New("cardverify: service code must be 3 digits")
	}
	if n < 1 || n > 16 {
		return fmt.Errorf("cardverify: %d digits requested", n)
	}
	return nil
}

// CVVCiphers is CVV with the key schedules made by the caller: kl is single
// DES under the key's first 8 bytes and k the TDES cipher under the whole
// double-length key (a stored key's are made once, not per value).
func CVVCiphers(kl, k cipher.Block, pan, expiry, serviceCode string, n int) (string, error) {
	if kl.BlockSize() != des.BlockSize || k.BlockSize() != des.BlockSize {
		return "", errKey
	}
	if err := cvvInputs(pan, expiry, serviceCode, n); err != nil {
		return "", err
	}
	return cvvWith(kl, k, pan+expiry+serviceCode, n), nil
}

// cvv is the CVV algorithm over data, at most 32 hexadecimal digits
// (upper case) that the callers have checked.
func cvv(key []byte, data string, n int) (string, error) {
	kl, _ := des.NewCipher(key[:8])
	k, err := tdes.NewCipher(key)
	if err != nil {
		return "", errKey
	}
	return cvvWith(kl, k, data, n), nil
}

func cvvWith(kl, k cipher.Block, data string, n int) string {
	var blk [16]byte
	packLeft(blk[:], data)
	r := make([]byte, 8)
	kl.Encrypt(r, blk[:8])
	subtle.XORBytes(r, r, blk[8:])
	k.Encrypt(r, r)
	out := decimalise(r, n)
	clear(r)
	clear(blk[:])
	return out
}

// CVC3 computes the Mastercard dynamic CVC3 (PayPass magnetic-stripe mode):
// IVCVC3 = the two rightmost bytes of ISO 9797-1 MAC algorithm 3 (padding
// method 2) over the track template under the ICC CVC3 key; CVC3 = the two
// rightmost bytes of TDES(ICC key)[IVCVC3 ‖ UN ‖ ATC] read as an unsigned
// number. The caller keeps as many rightmost decimal digits as the track has.
func CVC3(iccKey, track []byte, un [4]byte, atc [2]byte) (uint16, error) {
	if len(iccKey) != 16 {
		return 0, errKey
	}
	if len(track) == 0 {
		return 0, errors.New("cardverify: empty track data")
	}
	iv, err := emv.Cryptogram(iccKey, track, emv.PadMethod2)
	if err != nil {
		return 0, err
	}
	k, err := tdes.NewCipher(iccKey)
	if err != nil {
		return 0, errKey
	}
	blk := []byte{iv[6], iv[7], un[0], un[1], un[2], un[3], atc[0], atc[1]}
	k.Encrypt(blk, blk)
	return uint16(blk[6])<<8 | uint16(blk[7]), nil
}

// Equal compares two decimal values in constant time (for equal lengths).
func Equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func decimalise(r []byte, n int) string {
	out := make([]byte, 0, 16)
	for pass := 0; pass < 2 && len(out) < n; pass++ {
		for _, c := range r {
			for _, d := range [2]byte{c >> 4, c & 0x0F} {
				if len(out) == n {
					break
				}
				if pass == 0 && d < 10 {
					out = append(out, '0'+d)
				} else if pass == 1 && d >= 10 {
					out = append(out, '0'+d-10)
				}
			}
		}
	}
	return string(out)
}

// packLeft packs the hexadecimal digits s (0-9, A-F) into dst from the
// left, padding with zero nibbles.
func packLeft(dst []byte, s string) {
	clear(dst)
	for i := 0; i < len(s) && i < 2*len(dst); i++ {
		d := s[i] - '0'
		if s[i] >= 'A' {
			d = s[i] - 'A' + 10
		}
		if i%2 == 0 {
			dst[i/2] = d << 4
		} else {
			dst[i/2] |= d
		}
	}
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
