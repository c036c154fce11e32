// Package as2805 owns the AS2805 part 6 key-management computations that
// payhsm performs with TDES: key variants for wrapping working keys under a
// KEK (the As2805KeyCryptogram format), node-to-node KEK validation (KRs/KRr)
// and the derivation of a transaction PIN encipherment key (KPE) from a PIN
// protection key (KPP) with the STAN and the transaction amount.
//
// The AS2805.6 standards themselves are not public. Everything here is
// implemented exactly as these public sources define it, and nothing beyond:
//
//   - AWS Payment Cryptography User Guide, "AS2805" (variants ↔ key usages,
//     KEKs/KEKr, KEK validation, "Pin Translation": KPE derived from the
//     terminal PIN key with SystemTraceAuditNumber and TransactionAmount).
//   - aws-samples/samples-for-payment-cryptography-service,
//     python_sdk_example/as2805_node-to-node_examples (MIT-0), a software node
//     that interoperates with AWS Payment Cryptography:
//     as2805_2_1_Working_Key_Exchange.py (variant masks 28C0, 24C0, 22C0
//     repeated over a 16-byte KEK; key wrapped with TDES-CBC, zero IV),
//     as2805_1_5_KEK_Validation.py (VARIANT_MASK_82: KRs under KEK⊕82…82,
//     KRr under KEK⊕84…84, TDES-CBC zero IV; KRr is the bitwise complement of
//     the random key with odd parity restored) and
//     as2805_3_1_pin_translation.py (KPE = OWF(KPP, D), D = STAN left
//     justified zero filled to 64 bits ‖ amount right justified zero filled to
//     64 bits; OWF over more than one block: MAC = last block of TDES-CBC with
//     zero IV, then TDES-CBC again with the MAC as IV, XORed with D).
//
// Only double-length (TDES_2KEY) KEKs and KPPs are accepted: the published
// masks and derivation are for 16-byte keys. Errors never contain key
// material, random keys or PIN data.
package as2805

import (
	"crypto/cipher"
	"errors"
	"fmt"

	"payhsm/hsm/tdes"
)

// KeyLen is the length of the KEKs and KPPs this package accepts (TDES_2KEY).
const KeyLen = 16

// Errors. None carries key material.
var (
	ErrKeyLen  = errors.New("as2805: the key must be a 16-byte double-length TDES key")
	ErrDataLen = errors.New("as2805: the data must be 8, 16 or 24 bytes")
	ErrVariant = errors.New("as2805: unknown key variant")
	ErrSTAN    = errors.New("as2805: the system trace audit number must be 6 decimal digits")
	ErrAmount  = errors.New("as2805: the transaction amount must be 12 decimal digits")
)

// KeyVariant is the first byte of an AS2805 key-type variant mask.
type KeyVariant byte

// The working-key variants whose masks are published (User Guide "AS2805"
// table and as2805_2_1_Working_Key_Exchange.py).
const (
	VariantPIN  KeyVariant = 0x28 // PIN_ENCRYPTION_KEY_VARIANT_28 (TR31_P0)
	VariantMAC  KeyVariant = 0x24 // MESSAGE_AUTHENTICATION_KEY_VARIANT_24 (TR31_M0)
	VariantData KeyVariant = 0x22 // DATA_ENCRYPTION_KEY_VARIANT_22 (TR31_D0)
)

// KEK validation masks (VARIANT_MASK_82): the random key sent (KRs) is
// enciphered under KEK⊕82…82, the inverted random key (KRr) under KEK⊕84…84.
const (
	maskSend    = 0x82
	maskReceive = 0x84
)

// Mask returns the 16-byte mask of variant v: the two bytes v, C0 repeated.
func (v KeyVariant) Mask() ([]byte, error) {
	switch v {
	case VariantPIN, VariantMAC, VariantData:
	default:
		return nil, ErrVariant
	}
	m := make([]byte, KeyLen)
	for i := 0; i+1 < len(m); i += 2 {
		m[i], m[i+1] = byte(v), 0xC0
	}
	return m, nil
}

// variantCipher returns the TDES cipher of kek XOR mask; the masked key is
// zeroed before returning.
func variantCipher(kek, mask []byte) (cipher.Block, error) {
	if len(kek) != KeyLen || len(mask) != KeyLen {
		return nil, ErrKeyLen
	}
	k := make([]byte, KeyLen)
	defer clear(k)
	for i := range k {
		k[i] = kek[i] ^ mask[i]
	}
	b, err := tdes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("as2805: variant key schedule: %w", err)
	}
	return b, nil
}

func repeated(b byte) []byte {
	m := make([]byte, KeyLen)
	for i := range m {
		m[i] = b
	}
	return m
}

func checkData(d []byte) error {
	switch len(d) {
	case 8, 16, 24:
		return nil
	}
	return ErrDataLen
}

// cbc enciphers (or deciphers) data with TDES-CBC and a zero IV under b.
func cbc(b cipher.Block, data []byte, encrypt bool) []byte {
	out := make([]byte, len(data))
	iv := make([]byte, tdes.BlockSize) // AS 2805.6: CBC with a zero IV
	if encrypt {
		cipher.NewCBCEncrypter(b, iv).CryptBlocks(out, data) //nolint:gosec // G407: the zero IV is the standard's.
	} else {
		cipher.NewCBCDecrypter(b, iv).CryptBlocks(out, data)
	}
	return out
}

// WrapKey enciphers a working key (8, 16 or 24 bytes) under kek with variant
// v: TDES-CBC with a zero IV under kek XOR v.Mask().
func WrapKey(kek []byte, v KeyVariant, key []byte) ([]byte, error) {
	return wrap(kek, v, key, true)
}

// UnwrapKey deciphers a cryptogram produced by WrapKey. The caller owns (and
// should zero) the returned clear key.
func UnwrapKey(kek []byte, v KeyVariant, cryptogram []byte) ([]byte, error) {
	return wrap(kek, v, cryptogram, false)
}

func wrap(kek []byte, v KeyVariant, data []byte, encrypt bool) ([]byte, error) {
	if err := checkData(data); err != nil {
		return nil, err
	}
	m, err := v.Mask()
	if err != nil {
		return nil, err
	}
	b, err := variantCipher(kek, m)
	if err != nil {
		return nil, err
	}
	return cbc(b, data, encrypt), nil
}

// invert returns the bitwise complement of rnd with odd parity restored on
// every byte (a no-op when rnd already has odd parity).
func invert(rnd []byte) []byte {
	out := make([]byte, len(rnd))
	for i, c := range rnd {
		out[i] = ^c
	}
	tdes.FixParity(out)
	return out
}

// KEKValidationRequest builds a KEK validation request from the random key
// rnd (8, 16 or 24 bytes) under the sending KEK: KRs = e(KEK⊕82)(rnd), the
// value sent to the partner, and KRr = e(KEK⊕84)(~rnd), the value the
// partner's response must equal (VARIANT_MASK_82).
func KEKValidationRequest(kek, rnd []byte) (krs, krr []byte, err error) {
	if err := checkData(rnd); err != nil {
		return nil, nil, err
	}
	send, err := variantCipher(kek, repeated(maskSend))
	if err != nil {
		return nil, nil, err
	}
	recv, err := variantCipher(kek, repeated(maskReceive))
	if err != nil {
		return nil, nil, err
	}
	inv := invert(rnd)
	defer clear(inv)
	return cbc(send, rnd, true), cbc(recv, inv, true), nil
}

// KEKValidationResponse answers a partner's KRs under the receiving KEK:
// rnd = d(KEK⊕82)(KRs), KRr = e(KEK⊕84)(~rnd) (VARIANT_MASK_82).
func KEKValidationResponse(kek, krs []byte) ([]byte, error) {
	if err := checkData(krs); err != nil {
		return nil, err
	}
	send, err := variantCipher(kek, repeated(maskSend))
	if err != nil {
		return nil, err
	}
	recv, err := variantCipher(kek, repeated(maskReceive))
	if err != nil {
		return nil, err
	}
	rnd := cbc(send, krs, false)
	defer clear(rnd)
	inv := invert(rnd)
	defer clear(inv)
	return cbc(recv, inv, true), nil
}

// DerivationData builds the 16-byte KPE derivation data D from a 6-digit
// STAN and a 12-digit amount: the STAN's digits left justified and zero
// filled to 16 digits, then the amount's right justified and zero filled,
// each digit one BCD nibble.
func DerivationData(stan, amount string) ([]byte, error) {
	if !digits(stan, 6) {
		return nil, ErrSTAN
	}
	if !digits(amount, 12) {
		return nil, ErrAmount
	}
	d := make([]byte, 16)
	packBCD(d[:8], stan+"0000000000")
	packBCD(d[8:], "0000"+amount)
	return d, nil
}

func digits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// packBCD packs 2*len(dst) decimal digits into dst.
func packBCD(dst []byte, s string) {
	for i := range dst {
		dst[i] = (s[2*i]-'0')<<4 | (s[2*i+1] - '0')
	}
}

// OWF is the one-way function over data of one or more 8-byte blocks under
// a 16-byte key: MAC = the last block of TDES-CBC(key, data, IV 0); result =
// TDES-CBC(key, data, IV MAC) XOR data.
func OWF(key, data []byte) ([]byte, error) {
	if len(key) != KeyLen {
		return nil, ErrKeyLen
	}
	if len(data) == 0 || len(data)%tdes.BlockSize != 0 {
		return nil, ErrDataLen
	}
	b, err := tdes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("as2805: OWF key schedule: %w", err)
	}
	first := cbc(b, data, true)
	mac := first[len(first)-tdes.BlockSize:]
	out := make([]byte, len(data))
	cipher.NewCBCEncrypter(b, mac).CryptBlocks(out, data) //nolint:gosec // G407: the chaining value is the first pass's last block, as the OWF specifies; not a constant.
	clear(first)
	for i := range out {
		out[i] ^= data[i]
	}
	return out, nil
}

// SessionPINKey derives the transaction PIN encipherment key KPE =
// OWF(KPP, DerivationData(stan, amount)), a 16-byte TDES key. The caller owns
// (and should zero) the result.
func SessionPINKey(kpp []byte, stan, amount string) ([]byte, error) {
	d, err := DerivationData(stan, amount)
	if err != nil {
		return nil, err
	}
	return OWF(kpp, d)
}
