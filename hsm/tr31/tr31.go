// Package tr31 owns the ANSI X9.143 / ASC X9 TR-31 key block codec: parsing
// and verifying key blocks of versions A, C (TDEA key variant binding), B
// (TDEA key derivation binding) and D (AES key derivation binding), and
// building version B and D blocks.
//
// The codec carries symmetric keys as well as DER-encoded asymmetric private
// keys (RSA, ECC) and HMAC keys. It enforces the strict wire syntax of
// X9.143 section 6 (printable header, decimal and upper-case hexadecimal
// fields, consistent lengths and counts, block-aligned header), verifies the
// authenticator in constant time before any payload field is interpreted,
// and clears derived keys and decrypted payloads once used. Errors wrap
// ErrFormat, ErrIntegrity or ErrKBPK and never contain key material.
//
// Policy (which usages may be imported, exportability rules and so on)
// belongs to the caller; this package only enforces what the standard
// itself requires of a well-formed block.
package tr31

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
)

// OptionalBlock is one optional header block (X9.143 6.3.6).
type OptionalBlock struct {
	ID   string // two upper-case letters or digits, e.g. "KS", "HM", "KC"
	Data string // printable ASCII
}

// Header is the key block header (X9.143 6.2 and 6.3).
type Header struct {
	Version       byte   // 'A','B','C','D'
	KeyUsage      string // two characters, e.g. "P0", "K1", "D0", "B0", "M7", "S0", "K2", "K3"
	Algorithm     byte   // 'T' TDES, 'A' AES, 'H' HMAC, 'R' RSA, 'E' ECC, 'D' DES, 'S' DSA
	ModeOfUse     byte   // 'B','C','D','E','G','N','S','T','V','X','Y'
	KeyVersion    string // two characters, "00" when unused; Wrap treats "" as "00"
	Exportability byte   // 'E','N','S'
	// KeyContext is header byte 14 (X9.143:2021 table 1): '0' determined by
	// the wrapping key, '1' storage context only, '2' key exchange context
	// only. Wrap treats the zero value as '0'.
	KeyContext byte
	Blocks     []OptionalBlock // in wire order; the codec adds/strips the PB padding block itself
}

// Sentinel errors. Every error returned by this package wraps one of them.
var (
	ErrFormat    = errors.New("tr31: malformed key block")
	ErrIntegrity = errors.New("tr31: key block authentication failed")
	ErrKBPK      = errors.New("tr31: unsuitable key block protection key")
)

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrFormat}, args...)...)
}

func kbpkErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrKBPK}, args...)...)
}

// versionParams returns the cipher block size and the authenticator length
// in bytes of a key block version.
func versionParams(v byte) (blockSize, macLen int, ok bool) {
	switch v {
	case 'A', 'C':
		return 8, 4, true
	case 'B':
		return 8, 8, true
	case 'D':
		return 16, 16, true
	}
	return 0, 0, false
}

// checkKBPK checks the KBPK length for the version: TDEA double or triple
// length for A, B and C; AES-128/192/256 for D.
func checkKBPK(v byte, kbpk []byte) error {
	switch {
	case v == 'D' && (len(kbpk) == 16 || len(kbpk) == 24 || len(kbpk) == 32):
		return nil
	case v != 'D' && (len(kbpk) == 16 || len(kbpk) == 24):
		return nil
	case v == 'D':
		return kbpkErr("version D needs an AES KBPK of 16, 24 or 32 bytes, got %d bytes", len(kbpk))
	default:
		return kbpkErr("version %c needs a TDES KBPK of 16 or 24 bytes, got %d bytes", v, len(kbpk))
	}
}

// ParseHeader parses and validates the structure of a complete key block
// without any cryptography: header fields, optional blocks (the PB padding
// block is removed from the result), lengths and the hexadecimal payload and
// authenticator fields.
func ParseHeader(block string) (Header, error) {
	kb, err := parse(block)
	if err != nil {
		return Header{}, err
	}
	return kb.h, nil
}

// Unwrap verifies a version A, B, C or D key block under kbpk and returns its
// header and the wrapped key. The authenticator is checked in constant time
// before the key length field is interpreted.
func Unwrap(kbpk []byte, block string) (Header, []byte, error) {
	kb, err := parse(block)
	if err != nil {
		return Header{}, nil, err
	}
	if err := checkKBPK(kb.h.Version, kbpk); err != nil {
		return Header{}, nil, err
	}
	payload, err := open(kb.h.Version, kbpk, kb.header, kb.payload, kb.mac)
	if err != nil {
		return Header{}, nil, err
	}
	return unwrapped(kb.h, payload)
}

// UnwrapWith is Unwrap of a version B or D block under the KBPK whose block
// keys k are (DeriveBlockKeys): the same header and key, or the same error,
// without deriving the block keys again.
func UnwrapWith(k BlockKeys, block string) (Header, []byte, error) {
	return UnwrapSelect(block, func(Header) (BlockKeys, error) { return k, nil })
}

// UnwrapSelect is UnwrapWith under the block keys that keys chooses from the
// block's header (for instance by a key version an optional block names),
// with the block parsed once. An error from keys is returned as it is.
func UnwrapSelect(block string, keys func(Header) (BlockKeys, error)) (Header, []byte, error) {
	kb, err := parse(block)
	if err != nil {
		return Header{}, nil, err
	}
	k, err := keys(kb.h)
	if err != nil {
		return Header{}, nil, err
	}
	if err := k.check(kb.h.Version); err != nil {
		return Header{}, nil, err
	}
	encKey, macKey, err := k.ciphers()
	if err != nil {
		return Header{}, nil, err
	}
	payload, err := openWith(kb.h.Version, encKey, macKey, kb.header, kb.payload, kb.mac)
	if err != nil {
		return Header{}, nil, err
	}
	return unwrapped(kb.h, payload)
}

// unwrapped extracts the key from a verified payload and clears the payload.
func unwrapped(h Header, payload []byte) (Header, []byte, error) {
	defer clear(payload)
	key, err := extractKey(h.Algorithm, payload)
	if err != nil {
		return Header{}, nil, err
	}
	return h, key, nil
}

// extractKey reads the key length field (in bits) and returns a copy of the
// key, checking that it fits the payload and suits the algorithm.
func extractKey(alg byte, payload []byte) ([]byte, error) {
	bits := int(binary.BigEndian.Uint16(payload))
	if bits == 0 || bits%8 != 0 {
		return nil, formatErr("key length field %d bits is not a positive whole number of bytes", bits)
	}
	n := bits / 8
	if n > len(payload)-2 {
		return nil, formatErr("key length field %d bits exceeds the %d-byte payload", bits, len(payload))
	}
	if err := checkKeyLen(alg, n); err != nil {
		return nil, err
	}
	key := make([]byte, n)
	copy(key, payload[2:])
	return key, nil
}

// checkKeyLen checks the length of a symmetric key against its algorithm.
func checkKeyLen(alg byte, n int) error {
	switch alg {
	case 'T':
		if n != 16 && n != 24 {
			return formatErr("TDES key of %d bytes, want 16 or 24", n)
		}
	case 'A':
		if n != 16 && n != 24 && n != 32 {
			return formatErr("AES key of %d bytes, want 16, 24 or 32", n)
		}
	case 'D':
		if n != 8 {
			return formatErr("DES key of %d bytes, want 8", n)
		}
	}
	return nil
}

// strength returns the security strength in bits of a TDES or AES key of n
// bytes (NIST SP 800-57 Part 1 Rev. 5, table 2), or 0 for other algorithms.
func strength(alg byte, n int) int {
	switch alg {
	case 'T':
		if n == 16 {
			return 80
		}
		return 112
	case 'A':
		return n * 8
	}
	return 0
}

// maxKeyBytes is the largest key the 16-bit key length field can describe.
const maxKeyBytes = 0xFFFF / 8

// Wrap builds a version B (TDES KBPK of 16 or 24 bytes) or version D (AES
// KBPK of 16, 24 or 32 bytes) key block for key.
//
// The payload is padded with random bytes. As X9.143 recommends, the real
// length of a TDES key is hidden by padding it to 24 bytes and that of an
// AES key by padding it to 32 bytes; other keys (HMAC keys, DER-encoded
// private keys) are padded only to the cipher block. A PB optional block is
// added when the header needs one to be block-aligned; h.Blocks must not
// contain one.
//
// Wrap refuses a TDES or AES key stronger than the KBPK (ANSI X9.24-1: a
// key is protected by a key of equal or greater strength), a single-length
// DES key, and versions A and C (variant binding is deprecated).
func Wrap(kbpk []byte, h Header, key []byte) (string, error) {
	if h.Version != 'B' && h.Version != 'D' {
		return "", formatErr("wrap supports versions B and D, not %q", string(rune(h.Version)))
	}
	if err := checkKBPK(h.Version, kbpk); err != nil {
		return "", err
	}
	pad, err := wrapPadding(h, len(kbpk), key)
	if err != nil {
		return "", err
	}
	defer clear(pad)
	return wrap(kbpk, h, key, pad)
}

// WrapWith is Wrap under the KBPK whose block keys k are
// (DeriveBlockKeys): h.Version must be k.Version, and the block is the one
// Wrap would make with the same random padding.
func WrapWith(k BlockKeys, h Header, key []byte) (string, error) {
	if h.Version != 'B' && h.Version != 'D' {
		return "", formatErr("wrap supports versions B and D, not %q", string(rune(h.Version)))
	}
	if err := k.check(h.Version); err != nil {
		return "", err
	}
	pad, err := wrapPadding(h, len(k.KBEK), key)
	if err != nil {
		return "", err
	}
	defer clear(pad)
	return wrapWith(k, h, key, pad)
}

// wrapPadding checks key against the header and a KBPK of kbpkLen bytes and
// returns the random padding that fills the payload (X9.143 6.4: keys of
// one algorithm padded to one length, so that the length is not revealed).
func wrapPadding(h Header, kbpkLen int, key []byte) ([]byte, error) {
	if err := checkWrapKey(h, kbpkLen, key); err != nil {
		return nil, err
	}
	bs, _, _ := versionParams(h.Version)
	target := len(key)
	switch h.Algorithm {
	case 'T':
		target = max(target, 24)
	case 'A':
		target = max(target, 32)
	}
	total := (2 + target + bs - 1) / bs * bs
	pad := make([]byte, total-2-len(key))
	if _, err := rand.Read(pad); err != nil {
		return nil, fmt.Errorf("tr31: random padding: %w", err)
	}
	return pad, nil
}

func checkWrapKey(h Header, kbpkLen int, key []byte) error {
	if len(key) == 0 {
		return formatErr("empty key")
	}
	if len(key) > maxKeyBytes {
		return formatErr("key of %d bytes exceeds the %d bytes the key length field can describe", len(key), maxKeyBytes)
	}
	if h.Algorithm == 'D' {
		return formatErr("single-length DES keys are not wrapped")
	}
	if err := checkKeyLen(h.Algorithm, len(key)); err != nil {
		return err
	}
	if s := strength(h.Algorithm, len(key)); s > 0 {
		kalg := byte('T')
		if h.Version == 'D' {
			kalg = 'A'
		}
		if ks := strength(kalg, kbpkLen); s > ks {
			return kbpkErr("key strength of %d bits exceeds the KBPK's %d bits", s, ks)
		}
	}
	return nil
}

// wrap builds a key block with exactly the given padding bytes after the
// key. 2+len(key)+len(pad) must be a multiple of the cipher block size.
func wrap(kbpk []byte, h Header, key, pad []byte) (string, error) {
	if _, _, ok := versionParams(h.Version); !ok {
		return "", formatErr("unsupported version ID %q", string(rune(h.Version)))
	}
	if err := checkKBPK(h.Version, kbpk); err != nil {
		return "", err
	}
	return buildBlock(h, key, pad, func(hdr string, payload []byte) ([]byte, []byte, error) {
		return seal(h.Version, kbpk, hdr, payload)
	})
}

// wrapWith is wrap under pre-derived block keys.
func wrapWith(k BlockKeys, h Header, key, pad []byte) (string, error) {
	if err := k.check(h.Version); err != nil {
		return "", err
	}
	encKey, macKey, err := k.ciphers()
	if err != nil {
		return "", err
	}
	return buildBlock(h, key, pad, func(hdr string, payload []byte) ([]byte, []byte, error) {
		return sealWith(h.Version, encKey, macKey, hdr, payload)
	})
}

// buildBlock encodes the header, builds the clear payload (key length in
// bits, key, padding), seals it and encodes the block.
func buildBlock(h Header, key, pad []byte, seal func(hdr string, payload []byte) (enc, mac []byte, err error)) (string, error) {
	bs, macLen, ok := versionParams(h.Version)
	if !ok {
		return "", formatErr("unsupported version ID %q", string(rune(h.Version)))
	}
	n := 2 + len(key) + len(pad)
	if n%bs != 0 || len(key) > maxKeyBytes {
		return "", formatErr("payload of %d bytes is not a multiple of the %d-byte block", n, bs)
	}
	hdr, err := encodeHeader(h, bs, 2*n+2*macLen)
	if err != nil {
		return "", err
	}
	payload := make([]byte, n)
	defer clear(payload)
	binary.BigEndian.PutUint16(payload, uint16(len(key)*8)) //nolint:gosec // G115: len(key) <= maxKeyBytes (checked above), so the bit length fits 16 bits.
	copy(payload[2:], key)
	copy(payload[2+len(key):], pad)
	enc, mac, err := seal(hdr, payload)
	if err != nil {
		return "", err
	}
	out := make([]byte, 0, len(hdr)+2*len(enc)+2*len(mac))
	out = append(out, hdr...)
	out = appendHexUpper(out, enc)
	out = appendHexUpper(out, mac)
	return string(out), nil
}
