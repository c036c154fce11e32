// Package mac owns the block-cipher and hash MACs of the payment data
// plane: ISO/IEC 9797-1 MAC algorithm 1 (CBC-MAC) and algorithm 3 (the
// retail MAC, ANSI X9.19) with padding methods 1 and 2, the AS2805.4.1 MAC,
// and HMAC (RFC 2104) over SHA-2. CMAC lives in hsm/cmac.
package mac

import (
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
)

// Padding is an ISO/IEC 9797-1 padding method.
type Padding int

const (
	// Method1 appends zero bytes up to a block boundary (none when aligned;
	// one zero block for empty data).
	Method1 Padding = 1
	// Method2 appends 0x80 then zero bytes up to a block boundary, always.
	Method2 Padding = 2
)

var errPadding = errors.New("mac: unknown padding method")

// Pad returns data padded with method p to a multiple of bs.
func Pad(data []byte, bs int, p Padding) ([]byte, error) {
	var n int
	switch p {
	case Method1:
		n = len(data) + (bs-len(data)%bs)%bs
		if len(data) == 0 {
			n = bs
		}
	case Method2:
		n = len(data) + bs - len(data)%bs
	default:
		return nil, errPadding
	}
	out := make([]byte, n)
	copy(out, data)
	if p == Method2 {
		out[len(data)] = 0x80
	}
	return out, nil
}

// Algorithm1 is ISO/IEC 9797-1 MAC algorithm 1: CBC-MAC under b with a zero
// IV, initial transformation 1, output transformation 1; the full final
// block is returned.
func Algorithm1(b cipher.Block, data []byte, p Padding) ([]byte, error) {
	return AppendAlgorithm1(nil, b, data, p)
}

// AppendAlgorithm1 appends Algorithm1's MAC to dst (no allocation when
// dst has room for a block).
func AppendAlgorithm1(dst []byte, b cipher.Block, data []byte, p Padding) ([]byte, error) {
	return cbcMAC(dst, b, b, data, p)
}

// maxBlock is the largest block size of the ciphers these MACs take (AES).
const maxBlock = 16

// cbcMAC appends the CBC-MAC of data padded with p to dst: every block but
// the last chained under k, the last under final (Algorithm1: final is k;
// Algorithm3: the whole TDES key, which is output transformation 3). It
// reads data in place: only the final, padded block is copied, into a
// block on the stack, so it allocates nothing but dst's growth.
func cbcMAC(dst []byte, k, final cipher.Block, data []byte, p Padding) ([]byte, error) {
	bs := k.BlockSize()
	if bs > maxBlock || final.BlockSize() != bs {
		return nil, errors.New("mac: unsupported block size")
	}
	// The whole blocks before the padded last one: method 1 leaves an
	// aligned (non-empty) message unpadded, so its last block is data's
	// own; method 2 always pads.
	whole := len(data) - len(data)%bs
	switch p {
	case Method1:
		if whole == len(data) && whole > 0 {
			whole -= bs
		}
	case Method2:
	default:
		return nil, errPadding
	}
	var last [maxBlock]byte
	defer clear(last[:])
	n := copy(last[:bs], data[whole:])
	if p == Method2 {
		last[n] = 0x80
	}
	off := len(dst)
	dst = append(dst, make([]byte, bs)...)
	h := dst[off:]
	chain(k, h, data[:whole])
	for j := range h {
		h[j] ^= last[j]
	}
	final.Encrypt(h, h)
	return dst, nil
}

func chain(b cipher.Block, h, d []byte) {
	bs := len(h)
	for i := 0; i < len(d); i += bs {
		for j := range bs {
			h[j] ^= d[i+j]
		}
		b.Encrypt(h, h)
	}
}

// Algorithm3 is ISO/IEC 9797-1 MAC algorithm 3 (retail MAC): single-DES
// CBC-MAC under K1, then output transformation 3 — decrypt under K2 and
// encrypt under K1 (K3 for a triple-length key), which is the final block
// TDES-encrypted under the whole key. key is 16 or 24 bytes; full is the
// TDES cipher over the same key.
func Algorithm3(key []byte, full cipher.Block, data []byte, p Padding) ([]byte, error) {
	if len(key) != 16 && len(key) != 24 {
		return nil, fmt.Errorf("mac: algorithm 3 needs a double- or triple-length DES key, got %d bytes", len(key))
	}
	k1, err := des.NewCipher(key[:8])
	if err != nil {
		return nil, fmt.Errorf("mac: algorithm 3: %w", err)
	}
	return Algorithm3Ciphers(k1, full, data, p)
}

// Algorithm3Ciphers is Algorithm3 with the key schedules made by the
// caller: k1 is single DES under the key's first 8 bytes and full the TDES
// cipher under the whole key (a stored key's are made once, not per MAC).
func Algorithm3Ciphers(k1, full cipher.Block, data []byte, p Padding) ([]byte, error) {
	return AppendAlgorithm3(nil, k1, full, data, p)
}

// AppendAlgorithm3 appends Algorithm3Ciphers' MAC to dst (no allocation
// when dst has room for a block).
func AppendAlgorithm3(dst []byte, k1, full cipher.Block, data []byte, p Padding) ([]byte, error) {
	if k1.BlockSize() != des.BlockSize || full.BlockSize() != des.BlockSize {
		return nil, errors.New("mac: algorithm 3 needs DES ciphers")
	}
	return cbcMAC(dst, k1, full, data, p)
}

// AS2805 is the AS2805.4.1 MAC: the TDES CBC-MAC of ISO 16609 (ISO/IEC
// 9797-1 algorithm 1 with the full TDEA key on every block) with padding
// method 1. b must be a TDES cipher.
func AS2805(b cipher.Block, data []byte) ([]byte, error) {
	if b.BlockSize() != des.BlockSize {
		return nil, errors.New("mac: AS2805.4.1 needs a TDES key")
	}
	return Algorithm1(b, data, Method1)
}

// Hash names an HMAC hash function.
type Hash int

const (
	SHA224 Hash = iota + 1
	SHA256
	SHA384
	SHA512
)

func (h Hash) new() (func() hash.Hash, error) {
	switch h {
	case SHA224:
		return sha256.New224, nil
	case SHA256:
		return sha256.New, nil
	case SHA384:
		return sha512.New384, nil
	case SHA512:
		return sha512.New, nil
	}
	return nil, fmt.Errorf("mac: unknown HMAC hash %d", int(h))
}

// HMAC is RFC 2104 HMAC of data under key with hash h.
func HMAC(h Hash, key, data []byte) ([]byte, error) {
	f, err := h.new()
	if err != nil {
		return nil, err
	}
	m := hmac.New(f, key)
	m.Write(data)
	return m.Sum(nil), nil
}
