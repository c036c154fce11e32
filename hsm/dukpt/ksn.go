// Package dukpt owns Derived Unique Key Per Transaction key derivation on the
// host side: ANSI X9.24-1-2009 TDES DUKPT (initial key, transaction keys by
// the non-reversible key generation process, and the PIN, MAC and data
// encryption variants) and ANSI X9.24-3-2017 AES DUKPT (initial key,
// intermediate derivation keys and working keys of every key usage and key
// type). It also parses key serial numbers.
//
// Every function returns fresh slices that the caller owns and should zero
// with clear() when done. Errors never contain key material.
package dukpt

import (
	"errors"
	"fmt"
	"math/bits"
)

// Sizes of the key serial numbers.
const (
	TDESKSNLen = 10 // X9.24-1: 59-bit initial KSN + 21-bit transaction counter
	AESKSNLen  = 12 // X9.24-3: 64-bit initial key ID + 32-bit transaction counter
)

const (
	tdesCounterMask = 0x1FFFFF // rightmost 21 bits of the TDES KSN
	tdesMaxOnes     = 10       // X9.24-1 A.2: counters with more than ten 1 bits are skipped
	aesMaxOnes      = 16       // X9.24-3 6.6: counters with more than sixteen 1 bits are skipped
)

// ErrKSN reports a malformed or unusable key serial number.
var ErrKSN = errors.New("dukpt: invalid key serial number")

// TDESKSN is an X9.24-1 key serial number.
type TDESKSN [TDESKSNLen]byte

// ParseTDESKSN checks and returns a 10-byte TDES DUKPT key serial number.
// The transaction counter must be non-zero and have at most ten 1 bits, as
// an originating device never uses any other value.
func ParseTDESKSN(b []byte) (TDESKSN, error) {
	var k TDESKSN
	if len(b) != TDESKSNLen {
		return k, fmt.Errorf("%w: %d bytes, want %d", ErrKSN, len(b), TDESKSNLen)
	}
	copy(k[:], b)
	c := k.Counter()
	if c == 0 {
		return k, fmt.Errorf("%w: transaction counter is zero", ErrKSN)
	}
	if n := bits.OnesCount32(c); n > tdesMaxOnes {
		return k, fmt.Errorf("%w: transaction counter has %d one bits, at most %d allowed", ErrKSN, n, tdesMaxOnes)
	}
	return k, nil
}

// Counter is the 21-bit transaction counter.
func (k TDESKSN) Counter() uint32 {
	return (uint32(k[7])<<16 | uint32(k[8])<<8 | uint32(k[9])) & tdesCounterMask
}

// initial returns the KSN with the transaction counter cleared.
func (k TDESKSN) initial() TDESKSN {
	k[7] &^= 0x1F
	k[8], k[9] = 0, 0
	return k
}

// AESKSN is an X9.24-3 key serial number: initial key ID || transaction counter.
type AESKSN [AESKSNLen]byte

// ParseAESKSN checks and returns a 12-byte AES DUKPT key serial number. The
// transaction counter must be non-zero and have at most sixteen 1 bits.
func ParseAESKSN(b []byte) (AESKSN, error) {
	var k AESKSN
	if len(b) != AESKSNLen {
		return k, fmt.Errorf("%w: %d bytes, want %d", ErrKSN, len(b), AESKSNLen)
	}
	copy(k[:], b)
	c := k.Counter()
	if c == 0 {
		return k, fmt.Errorf("%w: transaction counter is zero", ErrKSN)
	}
	if n := bits.OnesCount32(c); n > aesMaxOnes {
		return k, fmt.Errorf("%w: transaction counter has %d one bits, at most %d allowed", ErrKSN, n, aesMaxOnes)
	}
	return k, nil
}

// InitialKeyID is the 8-byte initial key ID (BDK ID || derivation ID).
func (k AESKSN) InitialKeyID() [8]byte { return [8]byte(k[:8]) }

// Counter is the 32-bit transaction counter.
func (k AESKSN) Counter() uint32 {
	return uint32(k[8])<<24 | uint32(k[9])<<16 | uint32(k[10])<<8 | uint32(k[11])
}
