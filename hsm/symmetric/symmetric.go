// Package symmetric owns block-cipher modes of operation for data encryption
// (NIST SP 800-38A: ECB, CBC, s-bit CFB for s = 1, 8, 64, 128, OFB) over any
// cipher.Block (TDES or AES), and PKCS#7 padding. It checks only what the
// modes themselves require; payment rules (which key, which lengths a
// service accepts) belong to the caller.
package symmetric

import (
	"crypto/cipher"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"unsafe"
)

// Mode is a mode of operation.
type Mode int

const (
	ECB Mode = iota + 1
	CBC
	CFB // full-block CFB: CFB64 for TDES, CFB128 for AES
	CFB1
	CFB8
	CFB64
	CFB128
	OFB
)

var modeNames = map[Mode]string{ECB: "ECB", CBC: "CBC", CFB: "CFB", CFB1: "CFB1", CFB8: "CFB8", CFB64: "CFB64", CFB128: "CFB128", OFB: "OFB"}

func (m Mode) String() string {
	if s, ok := modeNames[m]; ok {
		return s
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode maps the AWS EncryptionMode names to a Mode.
func ParseMode(s string) (Mode, bool) {
	for m, n := range modeNames {
		if n == s {
			return m, true
		}
	}
	return 0, false
}

// Errors, matchable with errors.Is.
var (
	ErrLength  = errors.New("symmetric: data length not valid for the mode")
	ErrIV      = errors.New("symmetric: invalid initialization vector")
	ErrMode    = errors.New("symmetric: mode not available for this cipher")
	ErrPadding = errors.New("symmetric: invalid padding")
	ErrOverlap = errors.New("symmetric: output overlaps input")
)

// NeedsIV reports whether the mode uses an initialization vector.
func (m Mode) NeedsIV() bool { return m != ECB }

// segmentBits is the CFB segment size s, or 0 for other modes.
func (m Mode) segmentBits(bs int) int {
	switch m {
	case CFB:
		return 8 * bs
	case CFB1:
		return 1
	case CFB8:
		return 8
	case CFB64:
		return 64
	case CFB128:
		return 128
	}
	return 0
}

// Unit is the length granularity in bytes that the mode requires of data
// for cipher block size bs: the block size for ECB and CBC, the segment
// size for CFB, 1 for OFB and CFB1/CFB8.
func (m Mode) Unit(bs int) int {
	switch m {
	case ECB, CBC:
		return bs
	case OFB:
		return 1
	}
	if s := m.segmentBits(bs); s >= 8 {
		return s / 8
	}
	return 1
}

// Encrypt encrypts src in mode m under b with iv (ignored by, and required
// to be empty for, ECB) and returns the ciphertext in a new slice.
func Encrypt(b cipher.Block, m Mode, iv, src []byte) ([]byte, error) {
	dst := make([]byte, len(src))
	if err := crypt(b, m, iv, dst, src, true); err != nil {
		return nil, err
	}
	return dst, nil
}

// Decrypt is the inverse of Encrypt.
func Decrypt(b cipher.Block, m Mode, iv, src []byte) ([]byte, error) {
	dst := make([]byte, len(src))
	if err := crypt(b, m, iv, dst, src, false); err != nil {
		return nil, err
	}
	return dst, nil
}

// EncryptTo is Encrypt into dst, which must be as long as src, for callers
// that keep the output in a buffer of their own. dst may be src itself
// (every mode reads each input byte before it writes the output byte at
// the same position) but must not otherwise overlap it.
func EncryptTo(b cipher.Block, m Mode, iv, dst, src []byte) error {
	return crypt(b, m, iv, dst, src, true)
}

// DecryptTo is Decrypt into dst, which must be as long as src and must not
// overlap it at all: CBC and CFB read each ciphertext block again after
// the previous plaintext block is written.
func DecryptTo(b cipher.Block, m Mode, iv, dst, src []byte) error {
	return crypt(b, m, iv, dst, src, false)
}

func crypt(b cipher.Block, m Mode, iv, dst, src []byte, enc bool) error {
	bs := b.BlockSize()
	// CBC, the data plane's usual mode, valid as it usually is: the checks
	// below in one test (any failure takes them in turn, for its error).
	if m == CBC && len(iv) == bs && len(dst) == len(src) && bs > 0 && MultipleOf(len(src), bs) {
		if o, exact := overlap(dst, src); !o || (enc && exact) {
			if enc {
				cbcEncrypt(b, bs, iv, dst, src)
			} else {
				cbcDecrypt(b, bs, iv, dst, src)
			}
			return nil
		}
	}
	if m < ECB || m > OFB {
		return fmt.Errorf("%w: %v", ErrMode, m)
	}
	if s := m.segmentBits(bs); s > 8*bs {
		return fmt.Errorf("%w: %v with a %d-byte block", ErrMode, m, bs)
	}
	if m.NeedsIV() && len(iv) != bs {
		return fmt.Errorf("%w: %d bytes, want %d", ErrIV, len(iv), bs)
	}
	if !m.NeedsIV() && len(iv) != 0 {
		return fmt.Errorf("%w: ECB takes no IV", ErrIV)
	}
	if u := m.Unit(bs); !MultipleOf(len(src), u) {
		return fmt.Errorf("%w: %v needs a multiple of %d bytes, got %d", ErrLength, m, u, len(src))
	}
	if len(dst) != len(src) {
		return fmt.Errorf("%w: %d bytes of output for %d of input", ErrLength, len(dst), len(src))
	}
	if o, exact := overlap(dst, src); o && (!enc || !exact) {
		return ErrOverlap
	}
	switch m {
	case ECB:
		f := b.Encrypt
		if !enc {
			f = b.Decrypt
		}
		for i := 0; i < len(src); i += bs {
			f(dst[i:i+bs], src[i:i+bs])
		}
	case CBC:
		if enc {
			cbcEncrypt(b, bs, iv, dst, src)
		} else {
			cbcDecrypt(b, bs, iv, dst, src)
		}
	case OFB:
		ofb(b, bs, iv, dst, src)
	default:
		cfb(b, bs, m.segmentBits(bs), iv, dst, src, enc)
	}
	return nil
}

// MultipleOf reports whether n is a multiple of u (u > 0): a mask when u
// is a power of two, as every block and segment size of TDES and AES is,
// rather than a division (a 64-bit divide is tens of cycles, on a path
// whose whole overhead is measured in them).
func MultipleOf(n, u int) bool {
	if u&(u-1) == 0 {
		return n&(u-1) == 0
	}
	return n%u == 0
}

// overlap reports whether x and y share memory, and whether they start at
// the same byte (as crypto/internal/alias compares them).
func overlap(x, y []byte) (any, exact bool) {
	if len(x) == 0 || len(y) == 0 {
		return false, false
	}
	xp, yp := uintptr(unsafe.Pointer(&x[0])), uintptr(unsafe.Pointer(&y[0])) //nolint:gosec // G103: address comparison only, as crypto/internal/alias
	return xp < yp+uintptr(len(y)) && yp < xp+uintptr(len(x)), xp == yp
}

// cbcEncrypt is SP 800-38A 6.2's encryption on whole blocks, dst and src
// the same slice or not overlapping: C_i = E(P_i xor C_i-1), C_0 the IV.
// It chains b's own Encrypt rather than crypto/cipher's CBC modes, which
// copy the whole key schedule (AES: 480 bytes) into a new BlockMode per
// message: a copy of the round keys left on the heap for every call, and
// most of the cost of a short message. crypto/cipher's CBC on amd64 and
// arm64 is this same block-at-a-time loop (FuzzCBC compares the two).
//
// The XOR stays crypto/subtle's, which writes a 16-byte block with one
// vector store: an XOR in two 64-bit words, stored as two 8-byte halves
// that the cipher then loads as one 16-byte block, defeats the processor's
// store-to-load forwarding and measured 25-35% slower on a 64-byte AES
// message (docs/performance.md, "Fourth pass").
func cbcEncrypt(b cipher.Block, bs int, iv, dst, src []byte) {
	prev := iv
	for len(src) >= bs && len(dst) >= bs {
		d := dst[:bs:bs]
		subtle.XORBytes(d, src[:bs], prev)
		b.Encrypt(d, d)
		prev = d
		dst, src = dst[bs:], src[bs:]
	}
}

// Block16 is a block cipher with 16-byte blocks (AES), checked once by
// NewBlock16, for a caller that keeps it (a cached data key) and runs CBC
// on it per message: its CBC loops have the block size as a constant, so
// they ask the cipher nothing but its blocks and slice without length
// arithmetic. The zero Block16 is not usable.
type Block16 struct{ b cipher.Block }

// NewBlock16 returns b as a Block16, and false when b's blocks are not 16
// bytes long.
func NewBlock16(b cipher.Block) (Block16, bool) {
	if b == nil || b.BlockSize() != 16 {
		return Block16{}, false
	}
	return Block16{b}, true
}

// EncryptCBC is EncryptTo(b, CBC, iv, dst, src) for the Block16's cipher
// b, with the same results and errors: arguments that EncryptTo would
// refuse take EncryptTo's checks, for its error.
func (k Block16) EncryptCBC(iv, dst, src []byte) error {
	if len(iv) != 16 || len(dst) != len(src) || len(src)&15 != 0 || k.b == nil {
		return k.crypt(iv, dst, src, true)
	}
	if o, exact := overlap(dst, src); o && !exact {
		return ErrOverlap
	}
	prev := iv[:16:16]
	for i := 0; i+16 <= len(src) && i+16 <= len(dst); i += 16 {
		d := dst[i : i+16 : i+16]
		subtle.XORBytes(d, src[i:i+16], prev)
		k.b.Encrypt(d, d)
		prev = d
	}
	return nil
}

// crypt is EncryptTo or DecryptTo in CBC, for the arguments the loops
// do not take.
func (k Block16) crypt(iv, dst, src []byte, enc bool) error {
	if k.b == nil {
		return fmt.Errorf("%w: the zero Block16", ErrMode)
	}
	return crypt(k.b, CBC, iv, dst, src, enc)
}

// DecryptCBC is DecryptTo(b, CBC, iv, dst, src) for the Block16's cipher
// b, as EncryptCBC is EncryptTo.
func (k Block16) DecryptCBC(iv, dst, src []byte) error {
	if len(iv) != 16 || len(dst) != len(src) || len(src)&15 != 0 || k.b == nil {
		return k.crypt(iv, dst, src, false)
	}
	if o, _ := overlap(dst, src); o {
		return ErrOverlap
	}
	prev := iv[:16:16]
	for i := 0; i+16 <= len(src) && i+16 <= len(dst); i += 16 {
		d, s := dst[i:i+16:i+16], src[i:i+16:i+16]
		k.b.Decrypt(d, s)
		subtle.XORBytes(d, d, prev)
		prev = s
	}
	return nil
}

// cbcDecrypt is SP 800-38A 6.2's decryption, dst and src not overlapping:
// P_i = D(C_i) xor C_i-1.
func cbcDecrypt(b cipher.Block, bs int, iv, dst, src []byte) {
	prev := iv
	for len(src) >= bs && len(dst) >= bs {
		d, s := dst[:bs:bs], src[:bs:bs]
		b.Decrypt(d, s)
		subtle.XORBytes(d, d, prev)
		prev = s
		dst, src = dst[bs:], src[bs:]
	}
}

// ofb is SP 800-38A 6.4: the keystream is the iterated encryption of the IV.
func ofb(b cipher.Block, bs int, iv, dst, src []byte) {
	o := make([]byte, bs)
	copy(o, iv)
	for i := 0; i < len(src); i += bs {
		b.Encrypt(o, o)
		subtle.XORBytes(dst[i:], src[i:], o)
	}
	clear(o)
}

// cfb is SP 800-38A 6.3 with an s-bit segment: each segment is XORed with
// the s most significant bits of E(register), and the register is shifted
// left by s bits with the ciphertext segment shifted in.
func cfb(b cipher.Block, bs, s int, iv, dst, src []byte, enc bool) {
	reg := make([]byte, bs)
	out := make([]byte, bs)
	copy(reg, iv)
	defer clear(reg)
	defer clear(out)
	if s%8 == 0 {
		n := s / 8
		for i := 0; i < len(src); i += n {
			b.Encrypt(out, reg)
			subtle.XORBytes(dst[i:i+n], src[i:i+n], out[:n])
			c := dst[i : i+n]
			if !enc {
				c = src[i : i+n]
			}
			copy(reg, reg[n:])
			copy(reg[bs-n:], c)
		}
		return
	}
	// s == 1: one bit at a time, most significant bit of each byte first.
	for i := range src {
		var d byte
		for bit := 7; bit >= 0; bit-- {
			b.Encrypt(out, reg)
			p := (src[i] >> bit) & 1
			c := p ^ out[0]>>7
			d |= c << bit
			if !enc {
				c = p
			}
			shiftLeft1(reg, c)
		}
		dst[i] = d
	}
}

// shiftLeft1 shifts reg left by one bit and sets the last bit to in.
func shiftLeft1(reg []byte, in byte) {
	for j := 0; j < len(reg)-1; j++ {
		reg[j] = reg[j]<<1 | reg[j+1]>>7
	}
	reg[len(reg)-1] = reg[len(reg)-1]<<1 | in
}

// PadPKCS7 returns data followed by PKCS#7 padding to a multiple of bs, a
// cipher's block size. Like crypto/cipher's modes, it panics when bs is out
// of range (1 to 255, what a padding byte can count): a programming error.
func PadPKCS7(data []byte, bs int) []byte {
	return AppendPadPKCS7(nil, data, bs)
}

// AppendPadPKCS7 is PadPKCS7 appending to dst; data must not lie in dst's
// spare capacity.
func AppendPadPKCS7(dst, data []byte, bs int) []byte {
	if bs < 1 || bs > 255 {
		panic("symmetric: PKCS#7 block size out of range")
	}
	n := bs - len(data)%bs // 1 to bs
	start := len(dst)
	dst = slices.Grow(dst, len(data)+n)[:start+len(data)+n]
	copy(dst[start:], data)
	for i := start + len(data); i < len(dst); i++ {
		dst[i] = byte(n) //nolint:gosec // G115: 1 <= n <= bs <= 255 (checked above).
	}
	return dst
}

// UnpadPKCS7 checks and strips PKCS#7 padding, returning a subslice of data.
// The check does not branch on the padding bytes' values.
func UnpadPKCS7(data []byte, bs int) ([]byte, error) {
	if len(data) == 0 || len(data)%bs != 0 {
		return nil, fmt.Errorf("%w: %d bytes", ErrPadding, len(data))
	}
	last := data[len(data)-1]
	n := int(last)
	bad := subtle.ConstantTimeLessOrEq(n, 0) | (1 ^ subtle.ConstantTimeLessOrEq(n, bs))
	for i := 1; i <= bs; i++ {
		in := subtle.ConstantTimeLessOrEq(i, n)
		eq := subtle.ConstantTimeByteEq(data[len(data)-i], last)
		bad |= in & (1 ^ eq)
	}
	if bad != 0 {
		return nil, ErrPadding
	}
	return data[:len(data)-n], nil
}
