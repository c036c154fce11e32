// Package emv owns the symmetric cryptography of EMV chip cards as an issuer
// host sees it (EMV 4.4 Book 2, Annex A1, and the schemes' variants):
//
//   - ICC master key derivation from an issuer master key, option A and
//     option B (Book 2 A1.4.1, A1.4.2);
//   - session key derivation: the EMV common session key (A1.3.1) with the
//     diversification value of each scheme (EMV CSK, Mastercard SKD with the
//     unpredictable number, cryptogram-based secure messaging keys), the
//     EMV 2000 tree (EMV 4.0/4.1 Book 2 A1.3, b=4, H=8, IV=0), the Visa
//     secure-messaging XOR derivation, and the UnionPay (PBOC) ATC derivation;
//   - ISO/IEC 9797-1 padding methods 1 and 2 and MAC algorithm 3 with DES
//     (Book 2 A1.2.1), used for application cryptograms (ARQC/TC/AAC) and
//     secure-messaging MACs;
//   - ARPC method 1 and method 2 (Book 2 8.2.1, 8.2.2);
//   - offline PIN change issuer scripts (Book 2 9.2, 9.3): the ISO 9564-1
//     format 2 and VIS PIN blocks, their encipherment under the
//     confidentiality session key and the script MAC (pinchange.go).
//
// Every function takes clear key bytes and returns fresh slices; callers own
// (and should zero) what they get back. Errors never contain key material.
package emv

import (
	"crypto/cipher"
	"crypto/des"
	"crypto/sha1"
	"crypto/subtle"
	"errors"
	"fmt"

	"payhsm/hsm/tdes"
)

// Option selects the ICC master key derivation method of Book 2 A1.4.
type Option int

const (
	// OptionA: Y = the 16 rightmost digits of PAN||PSN (A1.4.1).
	OptionA Option = iota + 1
	// OptionB: for PANs of more than 16 digits, Y comes from SHA-1 of
	// PAN||PSN decimalised (A1.4.2); otherwise it is option A.
	OptionB
)

func (o Option) String() string {
	switch o {
	case OptionA:
		return "EMV_OPTION_A"
	case OptionB:
		return "EMV_OPTION_B"
	}
	return fmt.Sprintf("Option(%d)", int(o))
}

var (
	errKeyLen = errors.New("emv: key must be a double- or triple-length TDES key")
	errDigits = errors.New("emv: PAN and PAN sequence number must be decimal digits")
)

// ICCMasterKey derives the 16-byte ICC master key MK from the issuer master
// key imk (16 or 24 bytes) for the PAN and the two-digit PAN sequence number
// psn ("00" when the card has none). The result has odd DES parity.
func ICCMasterKey(imk []byte, opt Option, pan, psn string) ([]byte, error) {
	b, err := tdes.NewCipher(imk)
	if err != nil {
		return nil, errKeyLen
	}
	return ICCMasterKeyBlock(b, opt, pan, psn)
}

// ICCMasterKeyBlock is ICCMasterKey with the issuer master key's cipher
// already scheduled (the hot path of a cached working key).
func ICCMasterKeyBlock(imk cipher.Block, opt Option, pan, psn string) ([]byte, error) {
	if imk.BlockSize() != 8 {
		return nil, errKeyLen
	}
	if !digits(pan) || !digits(psn) || len(pan) < 1 || len(psn) != 2 {
		return nil, errDigits
	}
	var y [8]byte
	x := pan + psn
	switch opt {
	case OptionA:
		packRight(y[:], x)
	case OptionB:
		if len(pan) <= 16 {
			packRight(y[:], x)
			break
		}
		// Whole bytes: a hex zero on the left when PAN||PSN has an odd length.
		if len(x)%2 == 1 {
			x = "0" + x
		}
		in := make([]byte, len(x)/2)
		packRight(in, x)
		sum := sha1.Sum(in)
		optionBDigits(y[:], sum[:])
	default:
		return nil, fmt.Errorf("emv: unknown master key derivation option %d", int(opt))
	}
	mk := make([]byte, 16)
	imk.Encrypt(mk[:8], y[:])
	for i := range y {
		y[i] ^= 0xFF
	}
	imk.Encrypt(mk[8:], y[:])
	tdes.FixParity(mk)
	return mk, nil
}

// optionBDigits fills y (8 bytes, 16 nibbles) from the hex digits of the
// SHA-1 result: first the decimal nibbles in order, then, if fewer than 16,
// the nibbles A..F in order decimalised as A=0 .. F=5 (Book 2 A1.4.2).
func optionBDigits(y, sum []byte) {
	n := 0
	put := func(d byte) {
		if n%2 == 0 {
			y[n/2] = d << 4
		} else {
			y[n/2] |= d
		}
		n++
	}
	for _, c := range sum {
		for _, d := range [2]byte{c >> 4, c & 0x0F} {
			if d < 10 && n < 16 {
				put(d)
			}
		}
	}
	for _, c := range sum {
		for _, d := range [2]byte{c >> 4, c & 0x0F} {
			if d >= 10 && n < 16 {
				put(d - 10)
			}
		}
	}
}

// packRight packs the rightmost 2*len(dst) decimal digits of s into dst,
// right-justified and padded on the left with zero nibbles.
func packRight(dst []byte, s string) {
	clear(dst)
	n := len(dst) * 2
	if len(s) > n {
		s = s[len(s)-n:]
	}
	off := n - len(s)
	for i := 0; i < len(s); i++ {
		d := s[i] - '0'
		p := off + i
		if p%2 == 0 {
			dst[p/2] |= d << 4
		} else {
			dst[p/2] |= d
		}
	}
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// CommonSessionKey is the EMV common session key derivation of Book 2
// A1.3.1 for an 8-byte diversification value r:
// SK = DES3(MK)[r with r[2]='F0'] || DES3(MK)[r with r[2]='0F'], odd parity.
func CommonSessionKey(mk []byte, r [8]byte) ([]byte, error) {
	b, err := tdes.NewCipher(mk)
	if err != nil || len(mk) != 16 {
		return nil, errors.New("emv: ICC master key must be a double-length TDES key")
	}
	sk := make([]byte, 16)
	r[2] = 0xF0
	b.Encrypt(sk[:8], r[:])
	r[2] = 0x0F
	b.Encrypt(sk[8:], r[:])
	tdes.FixParity(sk)
	return sk, nil
}

// ATCDiversifier is the application-cryptogram R of the EMV common session
// key: ATC || '00'*6 (Book 2 A1.3.1).
func ATCDiversifier(atc [2]byte) [8]byte { return [8]byte{atc[0], atc[1]} }

// MastercardDiversifier is the Mastercard session key derivation (SKD) R:
// ATC || '00' || '00' || UN (M/Chip; EMV CSK with the unpredictable number).
func MastercardDiversifier(atc [2]byte, un [4]byte) [8]byte {
	return [8]byte{atc[0], atc[1], 0, 0, un[0], un[1], un[2], un[3]}
}

// Tree parameters of the EMV 2000 session key derivation as payment HSMs use
// them for application cryptograms: branch factor 4, height 8 (4^8 = 65536
// leaves, one per ATC value) and an all-zero IV.
const (
	TreeBranch = 4
	TreeHeight = 8
)

// TreeSessionKey is the EMV 2000 tree-based session key derivation (EMV 4.0
// and 4.1 Book 2 Annex A1.3, withdrawn by Specification Bulletin 46) with
// b = TreeBranch, H = TreeHeight and IV = 0:
//
//	F(X, Y, j) = DES3(X)[Y_L ⊕ j] || DES3(X)[Y_R ⊕ j ⊕ 'F0']   (j = j mod b in the last byte)
//	IK(0,0) = MK, IK(-1,0) = IV
//	IK(i,j) = F(IK(i-1, j div b), IK(i-2, j div b²), j mod b)
//	SK = IK(H, ATC) ⊕ IK(H-2, ATC div b²), odd parity.
func TreeSessionKey(mk []byte, atc [2]byte) ([]byte, error) {
	return treeSessionKey(mk, atc, TreeBranch, TreeHeight, make([]byte, 16))
}

func treeSessionKey(mk []byte, atc [2]byte, b, h int, iv []byte) ([]byte, error) {
	if len(mk) != 16 {
		return nil, errors.New("emv: ICC master key must be a double-length TDES key")
	}
	if len(iv) != 16 || b < 2 || b > 256 || h < 2 {
		return nil, errors.New("emv: bad tree parameters")
	}
	n := int(atc[0])<<8 | int(atc[1])
	leaves := 1
	for i := 0; i < h && leaves <= 0xFFFF; i++ {
		leaves *= b
	}
	if n >= leaves {
		return nil, errors.New("emv: ATC beyond the leaves of the derivation tree")
	}
	// path[i] is the index j of the node on level i on the way to leaf n.
	path := make([]int, h+1)
	for i, j := h, n; i >= 0; i-- {
		path[i] = j
		j /= b
	}
	prev2 := append([]byte(nil), iv...) // IK(i-2)
	prev1 := append([]byte(nil), mk...) // IK(i-1)
	var keep []byte                     // IK(H-2)
	for i := 1; i <= h; i++ {
		c, err := tdes.NewCipher(prev1)
		if err != nil {
			return nil, err
		}
		j := byte(path[i] % b) //nolint:gosec // G115: 0 <= path[i]%b < b <= 256 (checked above), so it fits a byte.
		next := make([]byte, 16)
		var y [8]byte
		copy(y[:], prev2[:8])
		y[7] ^= j
		c.Encrypt(next[:8], y[:])
		copy(y[:], prev2[8:])
		y[7] ^= j ^ 0xF0
		c.Encrypt(next[8:], y[:])
		if i == h-2 {
			keep = append([]byte(nil), next...)
		}
		clear(prev2)
		prev2, prev1 = prev1, next
	}
	if h == 2 {
		keep = append([]byte(nil), mk...)
	}
	sk := prev1
	subtle.XORBytes(sk, sk, keep)
	clear(prev2)
	clear(keep)
	tdes.FixParity(sk)
	return sk, nil
}

// VisaSMSessionKey is the Visa secure-messaging session key derivation
// (VIS 1.5 Appendix; pyemv kd.derive_visa_sm_sk):
// SK_L = MK_L ⊕ ('00'*6 || ATC), SK_R = MK_R ⊕ ('00'*6 || ATC ⊕ 'FFFF').
func VisaSMSessionKey(mk []byte, atc [2]byte) ([]byte, error) {
	if len(mk) != 16 {
		return nil, errors.New("emv: ICC master key must be a double-length TDES key")
	}
	sk := append([]byte(nil), mk...)
	sk[6] ^= atc[0]
	sk[7] ^= atc[1]
	sk[14] ^= ^atc[0]
	sk[15] ^= ^atc[1]
	tdes.FixParity(sk)
	return sk, nil
}

// UnionPaySessionKey is the UnionPay (PBOC 2.0/3.0, UICS) process key
// derivation: SK = DES3(MK)['00'*6 || ATC] || DES3(MK)['00'*6 || ATC ⊕ 'FFFF'].
func UnionPaySessionKey(mk []byte, atc [2]byte) ([]byte, error) {
	b, err := tdes.NewCipher(mk)
	if err != nil || len(mk) != 16 {
		return nil, errors.New("emv: ICC master key must be a double-length TDES key")
	}
	sk := make([]byte, 16)
	b.Encrypt(sk[:8], []byte{0, 0, 0, 0, 0, 0, atc[0], atc[1]})
	b.Encrypt(sk[8:], []byte{0, 0, 0, 0, 0, 0, ^atc[0], ^atc[1]})
	tdes.FixParity(sk)
	return sk, nil
}

// Padding is an ISO/IEC 9797-1 padding method.
type Padding int

const (
	// PadNone: the data must already be a whole number of blocks.
	PadNone Padding = iota
	// PadMethod1: '00' bytes up to a block boundary (none when aligned;
	// one zero block for empty data).
	PadMethod1
	// PadMethod2: '80' then '00' bytes up to a block boundary (always adds).
	PadMethod2
)

// Pad returns data padded to a multiple of bs bytes with method m.
func Pad(data []byte, bs int, m Padding) []byte {
	switch m {
	case PadMethod1:
		n := len(data) + (bs-len(data)%bs)%bs
		if n == 0 {
			n = bs
		}
		out := make([]byte, n)
		copy(out, data)
		return out
	case PadMethod2:
		out := make([]byte, len(data)+bs-len(data)%bs)
		copy(out, data)
		out[len(data)] = 0x80
		return out
	}
	return append([]byte(nil), data...)
}

// MAC is ISO/IEC 9797-1 MAC algorithm 3 with DES (the "retail MAC" of EMV
// Book 2 A1.2.1) under a double-length key: single-DES CBC under K_L, the
// last block then decrypted under K_R and encrypted under K_L. data must be
// a non-empty multiple of 8 bytes (pad it first). It returns 8 bytes.
func MAC(key, data []byte) ([]byte, error) {
	if len(key) != 16 {
		return nil, errors.New("emv: MAC key must be a double-length TDES key")
	}
	if len(data) == 0 || len(data)%8 != 0 {
		return nil, errors.New("emv: MAC data must be a non-empty multiple of 8 bytes")
	}
	kl, _ := des.NewCipher(key[:8])
	kr, _ := des.NewCipher(key[8:])
	h := make([]byte, 8)
	for i := 0; i < len(data); i += 8 {
		subtle.XORBytes(h, h, data[i:i+8])
		kl.Encrypt(h, h)
	}
	kr.Decrypt(h, h)
	kl.Encrypt(h, h)
	return h, nil
}

// Cryptogram computes an application cryptogram (ARQC, TC or AAC) under a
// session key (or, for schemes without session keys, the ICC master key):
// MAC algorithm 3 over data padded with method pad.
func Cryptogram(key, data []byte, pad Padding) ([]byte, error) {
	return MAC(key, Pad(data, 8, pad))
}

// ARPCMethod1 is ARPC method 1 (Book 2 8.2.1):
// ARPC = DES3(SK)[ARQC ⊕ (ARC || '00'*6)], 8 bytes.
func ARPCMethod1(key []byte, arqc [8]byte, arc [2]byte) ([]byte, error) {
	b, err := tdes.NewCipher(key)
	if err != nil {
		return nil, errKeyLen
	}
	arqc[0] ^= arc[0]
	arqc[1] ^= arc[1]
	out := make([]byte, 8)
	b.Encrypt(out, arqc[:])
	return out, nil
}

// ARPCMethod2 is ARPC method 2 (Book 2 8.2.2): the 4 leftmost bytes of MAC
// algorithm 3 (padding method 2) over ARQC || CSU || proprietary
// authentication data (0 to 8 bytes).
func ARPCMethod2(key []byte, arqc [8]byte, csu [4]byte, pad []byte) ([]byte, error) {
	if len(pad) > 8 {
		return nil, errors.New("emv: proprietary authentication data is at most 8 bytes")
	}
	msg := make([]byte, 0, 20)
	msg = append(append(append(msg, arqc[:]...), csu[:]...), pad...)
	m, err := Cryptogram(key, msg, PadMethod2)
	if err != nil {
		return nil, err
	}
	return m[:4], nil
}

// Scheme is a session key derivation of the AWS Payment Cryptography
// SessionKeyDerivation union (and of MacAlgorithmEmv's SessionKeyDerivationMode).
type Scheme int

const (
	// SchemeEMVCommon: the EMV common session key (Book 2 A1.3.1); Visa
	// CVN18/CVN22, Mastercard CVN14/15, JCB CVN04.
	SchemeEMVCommon Scheme = iota + 1
	// SchemeMastercard: Mastercard SKD, the common session key with
	// R = ATC||'0000'||UN (Mastercard CVN12/13).
	SchemeMastercard
	// SchemeEMV2000: the EMV 2000 tree derivation.
	SchemeEMV2000
	// SchemeAmex: no session key; the ICC master key is used directly for
	// application cryptograms (AEIPS).
	SchemeAmex
	// SchemeVisa: no session key; the ICC master key is used directly for
	// application cryptograms (Visa CVN10, JCB CVN01).
	SchemeVisa
	// SchemeUnionPay: the UnionPay (PBOC) ATC derivation.
	SchemeUnionPay
)

// ACSessionKey derives the application-cryptogram key (for ARQC, TC, AAC and
// ARPC) from the ICC master key mk: the session key of the scheme, or a copy
// of mk for the schemes that have none (Visa, Amex). un is used by
// SchemeMastercard only.
func ACSessionKey(mk []byte, s Scheme, atc [2]byte, un [4]byte) ([]byte, error) {
	switch s {
	case SchemeEMVCommon:
		return CommonSessionKey(mk, ATCDiversifier(atc))
	case SchemeMastercard:
		return CommonSessionKey(mk, MastercardDiversifier(atc, un))
	case SchemeEMV2000:
		return TreeSessionKey(mk, atc)
	case SchemeUnionPay:
		return UnionPaySessionKey(mk, atc)
	case SchemeVisa, SchemeAmex:
		if len(mk) != 16 {
			return nil, errors.New("emv: ICC master key must be a double-length TDES key")
		}
		return append([]byte(nil), mk...), nil
	}
	return nil, fmt.Errorf("emv: unknown session key scheme %d", int(s))
}

// SMSessionKey derives a secure-messaging session key (integrity or
// confidentiality) from an ICC master key mk: the common session key with
// R = the application cryptogram ac for SchemeEMVCommon and
// SchemeMastercard (Book 2 A1.3.1 and 9.2); the tree from the ATC for
// SchemeEMV2000; the Visa XOR derivation from the ATC for SchemeVisa and
// SchemeAmex; the UnionPay ATC derivation for SchemeUnionPay.
func SMSessionKey(mk []byte, s Scheme, ac [8]byte, atc [2]byte) ([]byte, error) {
	switch s {
	case SchemeEMVCommon, SchemeMastercard:
		return CommonSessionKey(mk, ac)
	case SchemeEMV2000:
		return TreeSessionKey(mk, atc)
	case SchemeVisa, SchemeAmex:
		return VisaSMSessionKey(mk, atc)
	case SchemeUnionPay:
		return UnionPaySessionKey(mk, atc)
	}
	return nil, fmt.Errorf("emv: unknown session key scheme %d", int(s))
}
