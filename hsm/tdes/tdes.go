// Package tdes owns the Triple-DES (TDEA) helpers that payhsm's key custody
// builds on: constructing a block cipher from a double-length (K1K2) or
// triple-length (K1K2K3) key, and DES odd-parity handling.
//
// Errors never contain key material.
package tdes

import (
	"crypto/cipher"
	"crypto/des"
	"crypto/fips140"
	"errors"
	"fmt"
	"math/bits"
)

// BlockSize is the TDEA block size in bytes.
const BlockSize = des.BlockSize

// ErrKeySize reports a key that is neither 16 nor 24 bytes long.
var ErrKeySize = errors.New("tdes: invalid key size")

// NewCipher returns a TDEA block cipher for a 16-byte double-length key
// (used as K1K2K1) or a 24-byte triple-length key (K1K2K3). Single-length
// DES keys and any other length are rejected. It is crypto/des's cipher
// with a cheaper key schedule (des.go).
func NewCipher(key []byte) (cipher.Block, error) {
	b, err := newTDEA(key)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// NewCipherLeft is NewCipher and, beside it, the single-DES cipher of the
// key's left half K1 (the one that CVV and ISO 9797-1 MAC algorithm 3 use),
// sharing K1's schedule.
func NewCipherLeft(key []byte) (block, left cipher.Block, err error) {
	b, err2 := newTDEA(key)
	if err2 != nil {
		return nil, nil, err2
	}
	return b, &desCipher{k: b.k1}, nil
}

func newTDEA(key []byte) (*tdeaCipher, error) {
	if fips140.Enforced() { // as crypto/des
		return nil, errors.New("tdes: TDEA is not allowed in FIPS 140-only mode")
	}
	c := new(tdeaCipher)
	switch len(key) {
	case 16:
		c.k1, c.k2 = schedule(key[:8]), schedule(key[8:16])
		c.k3 = c.k1
	case 24:
		c.k1, c.k2, c.k3 = schedule(key[:8]), schedule(key[8:16]), schedule(key[16:])
	default:
		return nil, fmt.Errorf("%w: %d bytes, want 16 or 24", ErrKeySize, len(key))
	}
	return c, nil
}

// FixParity sets the least significant bit of every byte of key, in place,
// so that each byte has odd parity as DES requires.
func FixParity(key []byte) {
	for i, b := range key {
		b &^= 1
		if bits.OnesCount8(b)%2 == 0 {
			b |= 1
		}
		key[i] = b
	}
}

// CheckParity reports whether every byte of key has odd parity. An empty key
// is reported as not having correct parity.
func CheckParity(key []byte) bool {
	if len(key) == 0 {
		return false
	}
	for _, b := range key {
		if bits.OnesCount8(b)%2 == 0 {
			return false
		}
	}
	return true
}
