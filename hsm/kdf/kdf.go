// Package kdf owns the hash-based key derivation functions that turn an
// ECDH shared secret into a key: the ANSI X9.63-2011 KDF (also SEC 1 v2
// section 3.6.1) and the NIST SP 800-56C Rev. 2 one-step KDF with a hash
// function (section 4.1, option 1). Both concatenate H(...) blocks with a
// 32-bit big-endian counter starting at 1; X9.63 hashes Z || counter ||
// SharedInfo, SP 800-56C hashes counter || Z || FixedInfo. Outputs are fresh
// slices the caller owns; intermediate buffers are zeroed.
package kdf

import (
	"encoding/binary"
	"errors"
	"hash"
)

// ErrLength reports an output length the KDFs cannot produce.
var ErrLength = errors.New("kdf: invalid output length")

// maxOut bounds the output: far more than any key, far below the 2^32-1 blocks the counters allow.
const maxOut = 1 << 16

func derive(h func() hash.Hash, z, info []byte, n int, counterFirst bool) ([]byte, error) {
	if n <= 0 || n > maxOut || h == nil {
		return nil, ErrLength
	}
	d := h()
	out := make([]byte, 0, n+d.Size())
	var ctr [4]byte
	for i := uint32(1); len(out) < n; i++ {
		binary.BigEndian.PutUint32(ctr[:], i)
		d.Reset()
		if counterFirst {
			d.Write(ctr[:])
			d.Write(z)
		} else {
			d.Write(z)
			d.Write(ctr[:])
		}
		d.Write(info)
		out = d.Sum(out)
	}
	clear(out[n:cap(out)])
	return out[:n:n], nil
}

// X963 is the ANSI X9.63 KDF: n bytes of H(Z || counter || sharedInfo) blocks.
func X963(h func() hash.Hash, z, sharedInfo []byte, n int) ([]byte, error) {
	return derive(h, z, sharedInfo, n, false)
}

// OneStep is the SP 800-56C Rev. 2 one-step KDF with hash function H: n bytes
// of H(counter || Z || fixedInfo) blocks.
func OneStep(h func() hash.Hash, z, fixedInfo []byte, n int) ([]byte, error) {
	return derive(h, z, fixedInfo, n, true)
}
