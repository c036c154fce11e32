// Package cmac owns CMAC (NIST SP 800-38B; ISO/IEC 9797-1 MAC algorithm 5)
// over any cipher.Block with a 64-bit (TDEA) or 128-bit (AES) block.
//
// The cipher is used only through cipher.Block, so a block cipher backed by
// a PKCS#11 token works as well as crypto/aes or hsm/tdes: the key never has
// to leave the token.
package cmac

import (
	"crypto/cipher"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"slices"
)

// ErrBlockSize reports a block cipher whose block size is neither 8 nor 16.
var ErrBlockSize = errors.New("cmac: unsupported cipher block size")

// MAC is a streaming CMAC computation. It implements hash.Hash; Sum does not
// change its state. A MAC is not safe for concurrent use.
type MAC struct {
	b      cipher.Block
	k1, k2 []byte // subkeys (SP 800-38B 6.1)
	x      []byte // chaining value over all blocks already processed
	buf    []byte // pending bytes; the last block is held back until Sum
	n      int    // number of pending bytes in buf
}

var _ hash.Hash = (*MAC)(nil)

// rb returns the constant R_b of SP 800-38B 5.3 for the block size.
func rb(bs int) (byte, error) {
	switch bs {
	case 8:
		return 0x1b, nil
	case 16:
		return 0x87, nil
	default:
		return 0, fmt.Errorf("%w: %d bytes, want 8 or 16", ErrBlockSize, bs)
	}
}

// New returns a CMAC computation keyed by b.
func New(b cipher.Block) (*MAC, error) {
	if b == nil {
		return nil, errors.New("cmac: nil block cipher")
	}
	bs := b.BlockSize()
	r, err := rb(bs)
	if err != nil {
		return nil, err
	}
	m := &MAC{
		b:   b,
		k1:  make([]byte, bs),
		k2:  make([]byte, bs),
		x:   make([]byte, bs),
		buf: make([]byte, bs),
	}
	l := make([]byte, bs)
	b.Encrypt(l, l)
	dbl(m.k1, l, r)
	dbl(m.k2, m.k1, r)
	clear(l)
	return m, nil
}

// dbl sets dst to the doubling of src in GF(2^n): src<<1, xored with r when
// the most significant bit of src is set. It runs in constant time.
func dbl(dst, src []byte, r byte) {
	msb := src[0] >> 7
	for i := 0; i < len(src)-1; i++ {
		dst[i] = src[i]<<1 | src[i+1]>>7
	}
	dst[len(src)-1] = src[len(src)-1]<<1 ^ (r & -msb)
}

// Size returns the length of a full CMAC tag: the cipher's block size.
func (m *MAC) Size() int { return len(m.x) }

// BlockSize returns the cipher's block size.
func (m *MAC) BlockSize() int { return len(m.x) }

// Reset clears the message absorbed so far; the key and subkeys are kept.
func (m *MAC) Reset() {
	clear(m.x)
	clear(m.buf)
	m.n = 0
}

// Write absorbs p. It never returns an error.
func (m *MAC) Write(p []byte) (int, error) {
	written := len(p)
	bs := len(m.x)
	for len(p) > 0 {
		if m.n == bs {
			// A full pending block that is not the last one: process it.
			subtle.XORBytes(m.x, m.x, m.buf)
			m.b.Encrypt(m.x, m.x)
			m.n = 0
		}
		c := copy(m.buf[m.n:], p)
		m.n += c
		p = p[c:]
	}
	return written, nil
}

// Sum appends the full-length CMAC tag of the data written so far to in.
func (m *MAC) Sum(in []byte) []byte {
	bs := len(m.x)
	last := make([]byte, bs)
	copy(last, m.buf[:m.n])
	if m.n == bs {
		subtle.XORBytes(last, last, m.k1)
	} else {
		last[m.n] = 0x80
		subtle.XORBytes(last, last, m.k2)
	}
	subtle.XORBytes(last, last, m.x)
	m.b.Encrypt(last, last)
	return append(in, last...)
}

// Sum returns the full-length CMAC tag of msg under b (8 bytes for TDEA,
// 16 for AES). Truncate the result if a shorter tag is wanted.
//
// Like crypto/cipher's mode constructors, Sum panics if b's block size is
// neither 8 nor 16: that is a programming error, not a property of the
// message. Use NewKey to get an error instead.
func Sum(b cipher.Block, msg []byte) []byte {
	k, err := NewKey(b)
	if err != nil {
		panic(err)
	}
	out := k.Sum(nil, msg)
	k.Clear()
	return out
}

// Key is a CMAC key with its subkeys derived once, for keys used many
// times: Sum then costs the message's block encryptions and no allocation
// beyond the tag it appends. A Key is safe for concurrent use (if b is,
// as crypto/aes and crypto/des blocks are).
type Key struct {
	b      cipher.Block
	bs     int
	k1, k2 [16]byte // subkeys (SP 800-38B 6.1), bs bytes used
}

// NewKey derives the subkeys of b.
func NewKey(b cipher.Block) (*Key, error) {
	if b == nil {
		return nil, errors.New("cmac: nil block cipher")
	}
	bs := b.BlockSize()
	r, err := rb(bs)
	if err != nil {
		return nil, err
	}
	k := &Key{b: b, bs: bs}
	var l [16]byte
	b.Encrypt(l[:bs], l[:bs])
	dbl(k.k1[:bs], l[:bs], r)
	dbl(k.k2[:bs], k.k1[:bs], r)
	clear(l[:])
	return k, nil
}

// Size is the length of a full tag: the cipher's block size.
func (k *Key) Size() int { return k.bs }

// Sum appends the full-length CMAC tag of msg to dst. It works in dst's
// spare capacity (two blocks), so it allocates nothing when dst has room.
func (k *Key) Sum(dst, msg []byte) []byte {
	bs, n := k.bs, len(dst)
	dst = slices.Grow(dst, 2*bs)[:n+2*bs]
	x, last := dst[n:n+bs], dst[n+bs:n+2*bs]
	clear(x)
	clear(last)
	// Every complete block but the last is chained as it is.
	for len(msg) > bs {
		subtle.XORBytes(x, x, msg[:bs])
		k.b.Encrypt(x, x)
		msg = msg[bs:]
	}
	copy(last, msg)
	if len(msg) == bs {
		subtle.XORBytes(last, last, k.k1[:bs])
	} else {
		last[len(msg)] = 0x80
		subtle.XORBytes(last, last, k.k2[:bs])
	}
	subtle.XORBytes(x, x, last)
	k.b.Encrypt(x, x)
	clear(last)
	return dst[:n+bs]
}

// Clear zeroes the subkeys (the block cipher's own schedule cannot be).
func (k *Key) Clear() {
	clear(k.k1[:])
	clear(k.k2[:])
}
