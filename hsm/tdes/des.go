// Copyright 2010 The Go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in Go's LICENSE file.
//
// The block functions (cryptBlock, feistel, initFeistelBox and the initial
// and final permutations) are crypto/des's (block.go, Go 1.26); the key
// schedule is crypto/des's with its two bit permutations (PC-1, PC-2) done
// by byte tables instead of a loop over the bits, and a double-length key
// schedules K1 once for its first and third stage (and for its left half).

package tdes

import (
	"crypto/cipher"
	"encoding/binary"
)

// Why not crypto/des: a working key's miss (ops: a key read from the store
// and opened) schedules a double-length key four times over with it — K1,
// K2 and K1 again for the TDEA cipher, K1 a fourth time for the single-DES
// left half that CVV and ISO 9797-1 algorithm 3 use — and crypto/des moves
// the 56 + 16 × 48 bits of each schedule's permutations one at a time:
// about a third of a miss's CPU. crypto/des offers no way to reuse a
// schedule. Encryption and decryption are crypto/des's code, so they cost
// what it costs; FuzzDES and TestDESMatchesStdlib check every function
// against crypto/des, TestKnownAnswer and TestDESKnownAnswers against
// published vectors.

// subkeys are the 16 round keys of one DES key, in crypto/des's layout.
type subkeys [16]uint64

// permTable is a bit permutation (crypto/des's permuteBlock with a given
// permutation) as one table per input byte: the permutation moves each bit
// alone, so the image of a block is the OR of the images of its bytes.
type permTable struct {
	n int            // input bytes
	t [8][256]uint64 // t[i][b]: the image of byte i (from the most significant) equal to b, the others 0
}

func newPermTable(permutation []uint8, inBits int) *permTable {
	p := &permTable{n: (inBits + 7) / 8}
	for i := range p.n {
		for b := range 256 {
			p.t[i][b] = permuteBlock(uint64(b)<<(8*(p.n-1-i)), permutation)
		}
	}
	return p
}

func (p *permTable) apply(x uint64) (out uint64) {
	for i := range p.n {
		out |= p.t[i][byte(x>>(8*(p.n-1-i)))] //nolint:gosec // G115: a byte of x, by design
	}
	return out
}

// permuteBlock is crypto/des's: output bit len-1-position is bit
// permutation[position] of src.
func permuteBlock(src uint64, permutation []uint8) (block uint64) {
	for position, n := range permutation {
		bit := (src >> n) & 1
		block |= bit << uint((len(permutation)-1)-position)
	}
	return block
}

var (
	pc1Table = newPermTable(permutedChoice1[:], 64)
	pc2Table = newPermTable(permutedChoice2[:], 56)
	// feistelBox is crypto/des's S-boxes and P permutation combined.
	feistelBox = initFeistelBox()
)

// schedule is crypto/des's generateSubkeys.
func schedule(key []byte) (k subkeys) {
	permutedKey := pc1Table.apply(binary.BigEndian.Uint64(key))
	left, right := uint32(permutedKey>>28), uint32(permutedKey<<4)>>4 //nolint:gosec // G115: truncation as crypto/des does, by design
	for i := range 16 {
		left, right = rotate28(left, ksRotations[i]), rotate28(right, ksRotations[i])
		k[i] = unpack(pc2Table.apply(uint64(left)<<28 | uint64(right)))
	}
	return k
}

// rotate28 is a 28-bit circular left shift by n (crypto/des's ksRotate, one step).
func rotate28(x uint32, n uint8) uint32 {
	return (x<<(4+n))>>4 | (x<<4)>>(32-n)
}

func unpack(x uint64) uint64 {
	return ((x>>(6*1))&0xff)<<(8*0) |
		((x>>(6*3))&0xff)<<(8*1) |
		((x>>(6*5))&0xff)<<(8*2) |
		((x>>(6*7))&0xff)<<(8*3) |
		((x>>(6*0))&0xff)<<(8*4) |
		((x>>(6*2))&0xff)<<(8*5) |
		((x>>(6*4))&0xff)<<(8*6) |
		((x>>(6*6))&0xff)<<(8*7)
}

func initFeistelBox() (box [8][64]uint32) {
	for s := range sBoxes {
		for i := range 4 {
			for j := range 16 {
				f := uint64(sBoxes[s][i][j]) << (4 * (7 - uint(s)))
				f = permuteBlock(f, permutationFunction[:])
				// Row is determined by the 1st and 6th bit.
				// Column is the middle four bits.
				row := uint8(((i & 2) << 4) | i&1) //nolint:gosec // G115: truncation as crypto/des does, by design
				col := uint8(j << 1)
				// The rotation was performed in the feistel rounds, being
				// factored out and now mixed into the feistelBox.
				f = (f << 1) | (f >> 31)
				box[s][row|col] = uint32(f) //nolint:gosec // G115: truncation as crypto/des does, by design
			}
		}
	}
	return box
}

func feistel(l, r uint32, k0, k1 uint64) (lout, rout uint32) {
	var t uint32

	t = r ^ uint32(k0>>32)
	l ^= feistelBox[7][t&0x3f] ^
		feistelBox[5][(t>>8)&0x3f] ^
		feistelBox[3][(t>>16)&0x3f] ^
		feistelBox[1][(t>>24)&0x3f]

	t = ((r << 28) | (r >> 4)) ^ uint32(k0) //nolint:gosec // G115: truncation as crypto/des does, by design
	l ^= feistelBox[6][(t)&0x3f] ^
		feistelBox[4][(t>>8)&0x3f] ^
		feistelBox[2][(t>>16)&0x3f] ^
		feistelBox[0][(t>>24)&0x3f]

	t = l ^ uint32(k1>>32)
	r ^= feistelBox[7][t&0x3f] ^
		feistelBox[5][(t>>8)&0x3f] ^
		feistelBox[3][(t>>16)&0x3f] ^
		feistelBox[1][(t>>24)&0x3f]

	t = ((l << 28) | (l >> 4)) ^ uint32(k1) //nolint:gosec // G115: truncation as crypto/des does, by design
	r ^= feistelBox[6][(t)&0x3f] ^
		feistelBox[4][(t>>8)&0x3f] ^
		feistelBox[2][(t>>16)&0x3f] ^
		feistelBox[0][(t>>24)&0x3f]

	return l, r
}

func permuteInitialBlock(block uint64) uint64 {
	b1 := block >> 48
	b2 := block << 48
	block ^= b1 ^ b2 ^ b1<<48 ^ b2>>48

	b1 = block >> 32 & 0xff00ff
	b2 = (block & 0xff00ff00)
	block ^= b1<<32 ^ b2 ^ b1<<8 ^ b2<<24

	b1 = block & 0x0f0f00000f0f0000
	b2 = block & 0x0000f0f00000f0f0
	block ^= b1 ^ b2 ^ b1>>12 ^ b2<<12

	b1 = block & 0x3300330033003300
	b2 = block & 0x00cc00cc00cc00cc
	block ^= b1 ^ b2 ^ b1>>6 ^ b2<<6

	b1 = block & 0xaaaaaaaa55555555
	block ^= b1 ^ b1>>33 ^ b1<<33
	return block
}

func permuteFinalBlock(block uint64) uint64 {
	b1 := block & 0xaaaaaaaa55555555
	block ^= b1 ^ b1>>33 ^ b1<<33

	b1 = block & 0x3300330033003300
	b2 := block & 0x00cc00cc00cc00cc
	block ^= b1 ^ b2 ^ b1>>6 ^ b2<<6

	b1 = block & 0x0f0f00000f0f0000
	b2 = block & 0x0000f0f00000f0f0
	block ^= b1 ^ b2 ^ b1>>12 ^ b2<<12

	b1 = block >> 32 & 0xff00ff
	b2 = (block & 0xff00ff00)
	block ^= b1<<32 ^ b2 ^ b1<<8 ^ b2<<24

	b1 = block >> 48
	b2 = block << 48
	block ^= b1 ^ b2 ^ b1<<48 ^ b2>>48
	return block
}

// begin and end are the initial and final permutations with crypto/des's
// rotations of the halves.
func begin(src []byte) (left, right uint32) {
	b := permuteInitialBlock(binary.BigEndian.Uint64(src))
	left, right = uint32(b>>32), uint32(b) //nolint:gosec // G115: truncation as crypto/des does, by design
	return (left << 1) | (left >> 31), (right << 1) | (right >> 31)
}

func end(dst []byte, left, right uint32) {
	left = (left << 31) | (left >> 1)
	right = (right << 31) | (right >> 1)
	binary.BigEndian.PutUint64(dst, permuteFinalBlock(uint64(right)<<32|uint64(left)))
}

// desCipher is single DES (the left half of a double-length key).
type desCipher struct{ k subkeys }

func (c *desCipher) BlockSize() int { return BlockSize }

// Encrypt and Decrypt read all of src before writing dst, so they allow
// any overlap; like crypto/des they panic on a block shorter than 8 bytes,
// a caller's bug.
func (c *desCipher) Encrypt(dst, src []byte) {
	checkBlocks(dst, src)
	left, right := begin(src)
	for i := range 8 {
		left, right = feistel(left, right, c.k[2*i], c.k[2*i+1])
	}
	end(dst, left, right)
}

func (c *desCipher) Decrypt(dst, src []byte) {
	checkBlocks(dst, src)
	left, right := begin(src)
	for i := range 8 {
		left, right = feistel(left, right, c.k[15-2*i], c.k[15-(2*i+1)])
	}
	end(dst, left, right)
}

// tdeaCipher is TDEA, encrypt-decrypt-encrypt under k1, k2, k3.
type tdeaCipher struct{ k1, k2, k3 subkeys }

func (c *tdeaCipher) BlockSize() int { return BlockSize }

func (c *tdeaCipher) Encrypt(dst, src []byte) {
	checkBlocks(dst, src)
	left, right := begin(src)
	for i := range 8 {
		left, right = feistel(left, right, c.k1[2*i], c.k1[2*i+1])
	}
	for i := range 8 {
		right, left = feistel(right, left, c.k2[15-2*i], c.k2[15-(2*i+1)])
	}
	for i := range 8 {
		left, right = feistel(left, right, c.k3[2*i], c.k3[2*i+1])
	}
	end(dst, left, right)
}

func (c *tdeaCipher) Decrypt(dst, src []byte) {
	checkBlocks(dst, src)
	left, right := begin(src)
	for i := range 8 {
		left, right = feistel(left, right, c.k3[15-2*i], c.k3[15-(2*i+1)])
	}
	for i := range 8 {
		right, left = feistel(right, left, c.k2[2*i], c.k2[2*i+1])
	}
	for i := range 8 {
		left, right = feistel(left, right, c.k1[15-2*i], c.k1[15-(2*i+1)])
	}
	end(dst, left, right)
}

func checkBlocks(dst, src []byte) {
	if len(src) < BlockSize {
		panic("tdes: input not full block")
	}
	if len(dst) < BlockSize {
		panic("tdes: output not full block")
	}
}

var (
	_ cipher.Block = (*desCipher)(nil)
	_ cipher.Block = (*tdeaCipher)(nil)
)
