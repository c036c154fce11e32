// Package tdes owns the Triple-DES (TDEA) helpers that payhsm's key custody
// builds on: constructing a block cipher from a double-length (K1K2) or
// triple-length (K1K2K3) key, and DES odd-parity handling.
//
// Errors never contain key material.
package tdes

import (
	"crypto/cipher"
	"crypto/des"
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
// DES keys and any other length are rejected.
func NewCipher(key []byte) (cipher.Block, error) {
	switch len(key) {
	case 16:
		var k [24]byte
		copy(k[:16], key)
		copy(k[16:], key[:8])
		b, err := des.NewTripleDESCipher(k[:])
		clear(k[:])
		if err != nil {
			return nil, fmt.Errorf("tdes: new double-length cipher: %w", err)
		}
		return b, nil
	case 24:
		b, err := des.NewTripleDESCipher(key)
		if err != nil {
			return nil, fmt.Errorf("tdes: new triple-length cipher: %w", err)
		}
		return b, nil
	default:
		return nil, fmt.Errorf("%w: %d bytes, want 16 or 24", ErrKeySize, len(key))
	}
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
