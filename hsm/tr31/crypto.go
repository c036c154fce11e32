package tr31

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"fmt"

	"payhsm/hsm/cmac"
	"payhsm/hsm/tdes"
)

// Key usage indicators of the key derivation input (X9.143 7.3 / TR-31:2018
// 5.3.2): the derived key is the KBEK or the KBMK (KBAK).
const (
	usageEncryption = 0x0000
	usageMAC        = 0x0001
)

// deriveKeys derives the key block encryption and MAC keys from kbpk with
// CMAC as PRF (NIST SP 800-108 counter mode): each 8-byte input is
// counter || usage indicator (2) || 0x00 || algorithm indicator (2) ||
// length in bits (2), and successive CMAC outputs are concatenated and cut
// to the KBPK length. Version B: TDES CMAC, algorithm 0000 (two-key) or
// 0001 (three-key). Version D: AES CMAC, algorithm 0002/0003/0004 for
// AES-128/192/256.
func deriveKeys(v byte, kbpk []byte) (kbek, kbmk []byte, err error) {
	var prf cipher.Block
	switch v {
	case 'B':
		prf, err = tdes.NewCipher(kbpk)
	case 'D':
		prf, err = aes.NewCipher(kbpk)
	default:
		return nil, nil, fmt.Errorf("tr31: no key derivation for version %q", string(rune(v)))
	}
	if err != nil {
		return nil, nil, kbpkErr("%v", err)
	}
	// The algorithm indicator and the length in bits of the derived key.
	var alg, bits uint16
	switch {
	case v == 'B' && len(kbpk) == 16:
		alg, bits = 0x0000, 128
	case v == 'B' && len(kbpk) == 24:
		alg, bits = 0x0001, 192
	case v == 'D' && len(kbpk) == 16:
		alg, bits = 0x0002, 128
	case v == 'D' && len(kbpk) == 24:
		alg, bits = 0x0003, 192
	case v == 'D' && len(kbpk) == 32:
		alg, bits = 0x0004, 256
	default:
		return nil, nil, kbpkErr("a %d-byte KBPK has no version %c key derivation", len(kbpk), v)
	}
	derive := func(usage uint16) []byte {
		var in [8]byte
		binary.BigEndian.PutUint16(in[1:3], usage)
		binary.BigEndian.PutUint16(in[4:6], alg)
		binary.BigEndian.PutUint16(in[6:8], bits)
		out := make([]byte, 0, len(kbpk)+aes.BlockSize)
		for ctr := byte(1); len(out) < len(kbpk); ctr++ {
			in[0] = ctr
			t := cmac.Sum(prf, in[:])
			out = append(out, t...)
			clear(t)
		}
		clear(out[len(kbpk):])
		return out[:len(kbpk)]
	}
	return derive(usageEncryption), derive(usageMAC), nil
}

// variantKeys returns the key block encryption and MAC keys of the key
// variant binding method (versions A and C): the KBPK with every byte
// xored with 0x45 ('E') and 0x4D ('M') respectively.
func variantKeys(kbpk []byte) (kbek, kbmk []byte) {
	kbek = make([]byte, len(kbpk))
	kbmk = make([]byte, len(kbpk))
	for i, b := range kbpk {
		kbek[i] = b ^ 0x45
		kbmk[i] = b ^ 0x4D
	}
	return kbek, kbmk
}

// blockKeys returns ciphers for the KBEK and the KBMK of the version. The
// derived key bytes are cleared before it returns.
func blockKeys(v byte, kbpk []byte) (enc, mac cipher.Block, err error) {
	var kbek, kbmk []byte
	if v == 'A' || v == 'C' {
		kbek, kbmk = variantKeys(kbpk)
	} else if kbek, kbmk, err = deriveKeys(v, kbpk); err != nil {
		return nil, nil, err
	}
	defer clear(kbek)
	defer clear(kbmk)
	newCipher := tdes.NewCipher
	if v == 'D' {
		newCipher = aes.NewCipher
	}
	if enc, err = newCipher(kbek); err != nil {
		return nil, nil, kbpkErr("%v", err)
	}
	if mac, err = newCipher(kbmk); err != nil {
		return nil, nil, kbpkErr("%v", err)
	}
	return enc, mac, nil
}

// cbcMAC is ISO/IEC 9797-1 MAC algorithm 1 without padding (the data is a
// whole number of blocks), as used by versions A and C.
func cbcMAC(b cipher.Block, parts ...[]byte) []byte {
	bs := b.BlockSize()
	x := make([]byte, bs)
	var pending []byte
	for _, p := range parts {
		pending = append(pending, p...)
	}
	for i := 0; i+bs <= len(pending); i += bs {
		subtle.XORBytes(x, x, pending[i:i+bs])
		b.Encrypt(x, x)
	}
	return x
}

func cmacOf(b cipher.Block, header string, payload []byte) ([]byte, error) {
	m, err := cmac.New(b)
	if err != nil {
		return nil, err
	}
	m.Write([]byte(header))
	m.Write(payload)
	return m.Sum(nil), nil
}

// BlockKeys are the key block encryption key (KBEK) and authentication key
// (KBAK, the KBMK of TR-31) that a version B or D block derives from its
// KBPK (X9.143 7.3). Deriving them costs an AES or TDES key schedule and two
// to four CMACs per block; a caller that opens many blocks under one KBPK
// derives them once (DeriveBlockKeys) and passes them to UnwrapWith and
// WrapWith, whose results are those of Unwrap and Wrap under the KBPK.
//
// The slices belong to the caller, who may move them to memory of its own
// (mlocked pages) and must clear them when the KBPK is retired. They are as
// secret as the KBPK.
type BlockKeys struct {
	Version    byte   // 'B' or 'D'
	KBEK, KBAK []byte // each as long as the KBPK
}

// DeriveBlockKeys derives the version B or D KBEK and KBAK of kbpk.
func DeriveBlockKeys(v byte, kbpk []byte) (BlockKeys, error) {
	if v != 'B' && v != 'D' {
		return BlockKeys{}, kbpkErr("only versions B and D derive block keys, not %q", string(rune(v)))
	}
	if err := checkKBPK(v, kbpk); err != nil {
		return BlockKeys{}, err
	}
	kbek, kbak, err := deriveKeys(v, kbpk)
	if err != nil {
		return BlockKeys{}, err
	}
	return BlockKeys{Version: v, KBEK: kbek, KBAK: kbak}, nil
}

// check reports whether k can protect a block of version v: the version
// matches and both keys have a length a KBPK of the version may have.
func (k BlockKeys) check(v byte) error {
	if k.Version != 'B' && k.Version != 'D' {
		return kbpkErr("block keys of version %q", string(rune(k.Version)))
	}
	if v != k.Version {
		return kbpkErr("a version %c block cannot be opened or made with version %c block keys", v, k.Version)
	}
	if len(k.KBEK) != len(k.KBAK) {
		return kbpkErr("block keys of unequal lengths")
	}
	return checkKBPK(v, k.KBEK)
}

// ciphers schedules the KBEK and the KBAK.
func (k BlockKeys) ciphers() (enc, mac cipher.Block, err error) {
	newCipher := tdes.NewCipher
	if k.Version == 'D' {
		newCipher = aes.NewCipher
	}
	if enc, err = newCipher(k.KBEK); err != nil {
		return nil, nil, kbpkErr("%v", err)
	}
	if mac, err = newCipher(k.KBAK); err != nil {
		return nil, nil, kbpkErr("%v", err)
	}
	return enc, mac, nil
}

// seal encrypts the clear payload and computes the authenticator under the
// block keys of kbpk.
func seal(v byte, kbpk []byte, header string, payload []byte) (enc, mac []byte, err error) {
	encKey, macKey, err := blockKeys(v, kbpk)
	if err != nil {
		return nil, nil, err
	}
	return sealWith(v, encKey, macKey, header, payload)
}

// sealWith encrypts the clear payload and computes the authenticator.
//
// Versions A and C: the payload is TDES-CBC encrypted under the KBEK with
// the first 8 header characters as IV, and the authenticator is the
// leftmost 4 bytes of the CBC-MAC under the KBMK of header || ciphertext.
// Versions B and D: the authenticator is the CMAC under the KBMK of
// header || clear payload (8 or 16 bytes), and the payload is CBC encrypted
// under the KBEK with the authenticator as IV.
func sealWith(v byte, encKey, macKey cipher.Block, header string, payload []byte) (enc, mac []byte, err error) {
	enc = make([]byte, len(payload))
	switch v {
	case 'A', 'C':
		cipher.NewCBCEncrypter(encKey, []byte(header[:8])).CryptBlocks(enc, payload)
		mac = cbcMAC(macKey, []byte(header), enc)[:4]
	default:
		if mac, err = cmacOf(macKey, header, payload); err != nil {
			return nil, nil, err
		}
		cipher.NewCBCEncrypter(encKey, mac).CryptBlocks(enc, payload)
	}
	return enc, mac, nil
}

// open verifies the authenticator under the block keys of kbpk and returns
// the clear payload, which the caller must clear.
func open(v byte, kbpk []byte, header string, enc, mac []byte) ([]byte, error) {
	encKey, macKey, err := blockKeys(v, kbpk)
	if err != nil {
		return nil, err
	}
	return openWith(v, encKey, macKey, header, enc, mac)
}

// openWith verifies the authenticator in constant time and returns the clear
// payload, which the caller must clear.
func openWith(v byte, encKey, macKey cipher.Block, header string, enc, mac []byte) ([]byte, error) {
	payload := make([]byte, len(enc))
	switch v {
	case 'A', 'C':
		want := cbcMAC(macKey, []byte(header), enc)[:4]
		if subtle.ConstantTimeCompare(want, mac) != 1 {
			return nil, fmt.Errorf("%w: authenticator mismatch (wrong KBPK or altered block)", ErrIntegrity)
		}
		cipher.NewCBCDecrypter(encKey, []byte(header[:8])).CryptBlocks(payload, enc)
	default:
		cipher.NewCBCDecrypter(encKey, mac).CryptBlocks(payload, enc)
		want, err := cmacOf(macKey, header, payload)
		if err != nil {
			clear(payload)
			return nil, err
		}
		if subtle.ConstantTimeCompare(want, mac) != 1 {
			clear(payload)
			return nil, fmt.Errorf("%w: authenticator mismatch (wrong KBPK or altered block)", ErrIntegrity)
		}
	}
	return payload, nil
}
