// Package rsaraw owns RSA without padding: the RSAEP and RSADP primitives of
// PKCS #1 v2.2 (RFC 8017 5.1.1, 5.1.2) on whole modulus-sized blocks, for
// callers that pad (and unpad) their data themselves, as the AWS user guide's
// EncryptData/DecryptData with `Asymmetric={}` allows.
//
// The arithmetic is filippo.io/bigmod, the constant-time modular arithmetic
// of the standard library's crypto/rsa: the private operation takes the same
// time whatever the key and the ciphertext, and is checked by re-encrypting
// its result (a fault in the CRT computation must not reveal a factor).
// Errors never contain data or key material.
package rsaraw

import (
	"crypto/rsa"
	"errors"
	"math/big"

	"filippo.io/bigmod"
)

// Errors of the primitives.
var (
	ErrLength = errors.New("rsaraw: data must be exactly as long as the modulus")
	ErrRange  = errors.New("rsaraw: data is not less than the modulus")
	ErrKey    = errors.New("rsaraw: unusable RSA key")
	ErrFault  = errors.New("rsaraw: private operation failed its check")
)

// Size is the block size of pub: the length of its modulus in bytes.
func Size(pub *rsa.PublicKey) int { return (pub.N.BitLen() + 7) / 8 }

// Encrypt is RSAEP: m^e mod n. m must be Size(pub) bytes, big-endian, and
// less than the modulus; the result is Size(pub) bytes.
func Encrypt(pub *rsa.PublicKey, m []byte) ([]byte, error) {
	if pub == nil || pub.N == nil || pub.N.Sign() <= 0 || pub.N.Bit(0) == 0 || pub.E < 2 {
		return nil, ErrKey
	}
	n, err := bigmod.NewModulus(pub.N.Bytes())
	if err != nil {
		return nil, ErrKey
	}
	if len(m) != n.Size() {
		return nil, ErrLength
	}
	x, err := bigmod.NewNat().SetBytes(m, n)
	if err != nil {
		return nil, ErrRange
	}
	return bigmod.NewNat().ExpShortVarTime(x, uint(pub.E), n).Bytes(n), nil
}

// Decrypt is RSADP: c^d mod n, by the Chinese remainder theorem for a
// two-prime key. c must be Size bytes and less than the modulus; the result
// is Size bytes (leading zero bytes included). The caller zeroes it.
func Decrypt(priv *rsa.PrivateKey, c []byte) ([]byte, error) {
	if priv == nil || priv.N == nil || priv.N.Sign() <= 0 || priv.N.Bit(0) == 0 || priv.D == nil || priv.E < 2 {
		return nil, ErrKey
	}
	n, err := bigmod.NewModulus(priv.N.Bytes())
	if err != nil {
		return nil, ErrKey
	}
	if len(c) != n.Size() {
		return nil, ErrLength
	}
	x, err := bigmod.NewNat().SetBytes(c, n)
	if err != nil {
		return nil, ErrRange
	}
	var m *bigmod.Nat
	if len(priv.Primes) == 2 && priv.Precomputed.Dp != nil && priv.Precomputed.Dq != nil && priv.Precomputed.Qinv != nil {
		m, err = crt(priv, n, x)
		if err != nil {
			return nil, err
		}
	} else {
		m = bigmod.NewNat().Exp(x, padded(priv.D, n.Size()), n)
	}
	// Check: m^e = c (RFC 8017 leaves it to the implementation; crypto/rsa does it).
	if bigmod.NewNat().ExpShortVarTime(m, uint(priv.E), n).Equal(x) != 1 {
		return nil, ErrFault
	}
	return m.Bytes(n), nil
}

// crt computes x^d mod n as m2 + q·(qInv·(m1 − m2) mod p), m1 = x^dP mod p,
// m2 = x^dQ mod q (RFC 8017 5.1.2, step 2b).
func crt(priv *rsa.PrivateKey, n *bigmod.Modulus, x *bigmod.Nat) (*bigmod.Nat, error) {
	for _, f := range priv.Primes {
		if f == nil || f.Sign() <= 0 || f.Bit(0) == 0 {
			return nil, ErrKey // bigmod's exponentiation needs an odd modulus
		}
	}
	if priv.Precomputed.Qinv.Sign() <= 0 || priv.Precomputed.Dp.Sign() <= 0 || priv.Precomputed.Dq.Sign() <= 0 {
		return nil, ErrKey
	}
	p, err := bigmod.NewModulus(priv.Primes[0].Bytes())
	if err != nil {
		return nil, ErrKey
	}
	q, err := bigmod.NewModulus(priv.Primes[1].Bytes())
	if err != nil {
		return nil, ErrKey
	}
	qInv, err := bigmod.NewNat().SetBytes(priv.Precomputed.Qinv.Bytes(), p)
	if err != nil {
		return nil, ErrKey
	}
	m1 := bigmod.NewNat().Exp(bigmod.NewNat().Mod(x, p), padded(priv.Precomputed.Dp, p.Size()), p)
	m2 := bigmod.NewNat().Exp(bigmod.NewNat().Mod(x, q), padded(priv.Precomputed.Dq, q.Size()), q)
	h := bigmod.NewNat().Mod(m2, p)
	h = m1.Sub(h, p).Mul(qInv, p)
	qn, err := bigmod.NewNat().SetBytes(priv.Primes[1].Bytes(), n)
	if err != nil {
		return nil, ErrKey
	}
	return bigmod.NewNat().Mod(h, n).Mul(qn, n).Add(m2.ExpandFor(n), n), nil
}

// padded is d as size big-endian bytes, so that the exponent's length does
// not depend on its value (d ≤ the modulus, which is size bytes long).
func padded(d *big.Int, size int) []byte {
	if (d.BitLen()+7)/8 > size {
		return d.Bytes()
	}
	return d.FillBytes(make([]byte, size))
}
