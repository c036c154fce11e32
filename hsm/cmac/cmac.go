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
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"slices"
	"sync/atomic"
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
	out, _ := k.Sum(nil, msg) // not cleared before it returns
	k.Clear()
	return out
}

// ErrCleared is returned by Key.Sum once Clear has begun.
var ErrCleared = errors.New("cmac: the key was cleared")

// Key is a CMAC key with its subkeys derived once, for keys used many
// times: Sum then costs the message's block encryptions and no allocation
// beyond the tag it appends. A Key is safe for concurrent use (if b is,
// as crypto/aes and crypto/des blocks are), Clear included: a Sum that
// overlaps a Clear either computes with the subkey as it was or returns
// ErrCleared, never a tag under a half-zeroed subkey. (The subkeys are
// atomic words, read once by Sum before it checks cleared, and Clear sets
// cleared before it zeroes them: the seqlock's argument, with Go's
// sequentially consistent atomics.) A caller that holds no reference of
// its own on the key can so use it while its owner may clear it.
type Key struct {
	b       cipher.Block
	bs      int
	k1, k2  [2]atomic.Uint64 // subkeys (SP 800-38B 6.1) as 64-bit words in byte order le; bs/8 words used
	cleared atomic.Bool
}

// le is the byte order of the subkey words (any order works, as long as
// the words are loaded and stored in it; little-endian is one instruction
// on amd64 and arm64).
var le = binary.LittleEndian

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
	var l, k1, k2 [16]byte
	b.Encrypt(l[:bs], l[:bs])
	dbl(k1[:bs], l[:bs], r)
	dbl(k2[:bs], k1[:bs], r)
	for i := range bs / 8 {
		k.k1[i].Store(le.Uint64(k1[8*i:]))
		k.k2[i].Store(le.Uint64(k2[8*i:]))
	}
	clear(l[:])
	clear(k1[:])
	clear(k2[:])
	return k, nil
}

// Size is the length of a full tag: the cipher's block size.
func (k *Key) Size() int { return k.bs }

// Sum appends the full-length CMAC tag of msg to dst. It works in dst's
// spare capacity (two blocks), so it allocates nothing when dst has room.
// After Clear it returns dst unchanged and ErrCleared.
func (k *Key) Sum(dst, msg []byte) ([]byte, error) {
	bs, n := k.bs, len(dst)
	// The subkey of the last block (K1 if it is complete, K2 if padded),
	// read before cleared is checked (see Key) and written out as bytes
	// now, well before the last block is XORed with it: the XOR reads it
	// as one 16-byte load, which stalls if it has to be forwarded from the
	// two 8-byte stores still in flight.
	sk := &k.k2
	if len(msg) > 0 && len(msg)%bs == 0 {
		sk = &k.k1
	}
	var sub [16]byte
	le.PutUint64(sub[:8], sk[0].Load())
	le.PutUint64(sub[8:], sk[1].Load())
	if k.cleared.Load() {
		clear(sub[:])
		return dst, ErrCleared
	}
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
	if len(msg) < bs {
		last[len(msg)] = 0x80
	}
	subtle.XORBytes(last, last, sub[:bs])
	subtle.XORBytes(x, x, last)
	k.b.Encrypt(x, x)
	clear(last)
	clear(sub[:])
	return dst[:n+bs], nil
}

// Clear zeroes the subkeys (the block cipher's own schedule cannot be);
// a Sum after it, or overlapping it, returns ErrCleared.
func (k *Key) Clear() {
	k.cleared.Store(true) // before the words are zeroed: see Key
	for i := range k.k1 {
		k.k1[i].Store(0)
		k.k2[i].Store(0)
	}
}
