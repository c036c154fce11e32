// Package kcv owns key check values (KCVs) as AWS Payment Cryptography
// reports them in KeyCheckValue / KeyCheckValueAlgorithm:
//
//   - ANSI_X9_24: the leftmost 3 bytes of the encryption of one all-zero
//     block under the key (8 zero bytes for TDES). ANSI X9.24-1:2017 Annex A.
//   - CMAC: the leftmost 3 bytes of the CMAC of one all-zero block of the
//     cipher's block size (16 zero bytes for AES). ANSI X9.24-1:2017 Annex A
//     (CMAC-based check values).
//   - HMAC: the leftmost 3 bytes of HMAC, with the key's own hash, of the
//     zero-length message (the APC API model's KeyCheckValueAlgorithm
//     documentation: "computed using the hash selected at key creation on a
//     zero-length message, taking the leftmost 3 bytes").
//
// SHA_1, which APC reports for asymmetric keys (4-byte values), is not
// implemented: neither the APC user guide nor the API model says what is
// hashed.
//
// Block-cipher KCVs take a cipher.Block rather than key bytes so that a key
// held in a PKCS#11 token can be checked without leaving it. The ANSI X9.143
// KC/KP optional blocks carry longer CMAC KCVs (5 bytes); use hsm/cmac and
// truncate for those.
package kcv

import (
	"crypto/cipher"
	"crypto/hmac"
	"hash"

	"payhsm/hsm/cmac"
)

// Len is the length in bytes of the KCVs returned by this package.
const Len = 3

// ANSIX924 returns the ANSI X9.24 (legacy) KCV of the key behind b: the
// leftmost 3 bytes of b's encryption of an all-zero block (8 bytes for
// TDES, 16 for AES).
func ANSIX924(b cipher.Block) []byte {
	blk := make([]byte, b.BlockSize())
	b.Encrypt(blk, blk)
	return blk[:Len:Len]
}

// CMAC returns the CMAC KCV of the key behind b: the leftmost 3 bytes of the
// CMAC of an all-zero block of b's block size. It panics, as cmac.Sum does,
// if b's block size is neither 8 nor 16 (a programming error).
func CMAC(b cipher.Block) []byte {
	return cmac.Sum(b, make([]byte, b.BlockSize()))[:Len:Len]
}

// HMAC returns the HMAC KCV of key: the leftmost 3 bytes of HMAC(key, "")
// computed with newHash, which must be the hash bound to the key (for
// example sha256.New for an HMAC_SHA256 key).
func HMAC(newHash func() hash.Hash, key []byte) []byte {
	return hmac.New(newHash, key).Sum(nil)[:Len:Len]
}
