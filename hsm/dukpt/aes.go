package dukpt

import (
	"crypto/aes"
	"encoding/binary"
	"fmt"
	"math/bits"
)

// KeyType is an X9.24-3 derived key type (the algorithm indicator of the
// derivation data).
type KeyType uint16

const (
	TDES2  KeyType = 0 // 2TDEA
	TDES3  KeyType = 1 // 3TDEA
	AES128 KeyType = 2
	AES192 KeyType = 3
	AES256 KeyType = 4
)

// Len is the key length in bytes; 0 for an unknown type.
func (t KeyType) Len() int { return int(t.bits() / 8) }

// bits is the key length in bits, as the derivation data carries it.
func (t KeyType) bits() uint16 {
	switch t {
	case TDES2, AES128:
		return 128
	case TDES3, AES192:
		return 192
	case AES256:
		return 256
	}
	return 0
}

// strength is the security strength in bits (NIST SP 800-57 Part 1 Table 2).
func (t KeyType) strength() int {
	switch t {
	case TDES2:
		return 80
	case TDES3:
		return 112
	}
	return 8 * t.Len()
}

func (t KeyType) String() string {
	switch t {
	case TDES2:
		return "TDES_2KEY"
	case TDES3:
		return "TDES_3KEY"
	case AES128:
		return "AES_128"
	case AES192:
		return "AES_192"
	case AES256:
		return "AES_256"
	}
	return fmt.Sprintf("KeyType(%d)", uint16(t))
}

// aesType is the key type of an AES key of n bytes.
func aesType(n int) (KeyType, error) {
	switch n {
	case 16:
		return AES128, nil
	case 24:
		return AES192, nil
	case 32:
		return AES256, nil
	}
	return 0, fmt.Errorf("%w: AES DUKPT key is %d bytes, want 16, 24 or 32", errKeyLen, n)
}

// Usage is an X9.24-3 key usage indicator (derivation data bytes 2-3).
type Usage uint16

const (
	UsageKeyEncryption   Usage = 0x0002
	UsagePINEncryption   Usage = 0x1000
	UsageMACGeneration   Usage = 0x2000
	UsageMACVerification Usage = 0x2001
	UsageMACBoth         Usage = 0x2002
	UsageDataEncrypt     Usage = 0x3000
	UsageDataDecrypt     Usage = 0x3001
	UsageDataBoth        Usage = 0x3002
	usageKeyDerivation   Usage = 0x8000
	usageInitialKey      Usage = 0x8001
)

func (u Usage) valid() bool {
	switch u {
	case UsageKeyEncryption, UsagePINEncryption, UsageMACGeneration, UsageMACVerification,
		UsageMACBoth, UsageDataEncrypt, UsageDataDecrypt, UsageDataBoth:
		return true
	}
	return false
}

// derive is the X9.24-3 key derivation function (6.3.1): NIST SP 800-108
// counter mode with AES-ECB as the PRF over the 16-byte derivation data.
func derive(key []byte, u Usage, t KeyType, tail [8]byte) ([]byte, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("dukpt: derivation key: %w", err)
	}
	n := t.Len()
	var d [16]byte
	d[0] = 0x01 // version
	binary.BigEndian.PutUint16(d[2:4], uint16(u))
	binary.BigEndian.PutUint16(d[4:6], uint16(t))
	binary.BigEndian.PutUint16(d[6:8], t.bits())
	copy(d[8:], tail[:])
	out := make([]byte, (n+15)/16*16)
	for i := 0; i*16 < n; i++ {
		d[1] = byte(i + 1) // key block counter
		b.Encrypt(out[16*i:], d[:])
	}
	clear(out[n:])
	return out[:n:n], nil
}

// AESInitialKey derives the device initial key from an AES BDK (16, 24 or 32
// bytes) and the 8-byte initial key ID (X9.24-3 6.3.3). The initial key has
// the type of the BDK.
func AESInitialKey(bdk []byte, ikid [8]byte) ([]byte, error) {
	t, err := aesType(len(bdk))
	if err != nil {
		return nil, err
	}
	return derive(bdk, usageInitialKey, t, ikid)
}

// AESTransactionKey derives the intermediate derivation key of transaction
// ksn from the device initial key (X9.24-3 6.3.4 and Annex B's "derivation
// key" column): one derivation per 1 bit of the counter, most significant first.
func AESTransactionKey(ik []byte, ksn AESKSN) ([]byte, error) {
	t, err := aesType(len(ik))
	if err != nil {
		return nil, err
	}
	key := make([]byte, len(ik))
	copy(key, ik)
	var tail [8]byte
	copy(tail[:4], ksn[4:8])
	counter := ksn.Counter()
	if bits.OnesCount32(counter) > aesMaxOnes {
		clear(key)
		return nil, fmt.Errorf("%w: transaction counter has more than %d one bits", ErrKSN, aesMaxOnes)
	}
	var reg uint32
	for bit := uint32(1 << 31); bit != 0; bit >>= 1 {
		if counter&bit == 0 {
			continue
		}
		reg |= bit
		binary.BigEndian.PutUint32(tail[4:8], reg)
		next, err := derive(key, usageKeyDerivation, t, tail)
		clear(key)
		if err != nil {
			return nil, err
		}
		key = next
	}
	return key, nil
}

// AESWorkingKey derives the working key of usage u and type wt from the
// intermediate derivation key of transaction ksn (X9.24-3 6.3.5). The working
// key may not be stronger than the derivation key.
func AESWorkingKey(txn []byte, ksn AESKSN, u Usage, wt KeyType) ([]byte, error) {
	t, err := aesType(len(txn))
	if err != nil {
		return nil, err
	}
	if !u.valid() {
		return nil, fmt.Errorf("dukpt: unknown key usage %#04x", uint16(u))
	}
	if wt.Len() == 0 {
		return nil, fmt.Errorf("dukpt: unknown key type %d", uint16(wt))
	}
	if wt.strength() > t.strength() {
		return nil, fmt.Errorf("dukpt: a %s working key cannot be derived from a %s key", wt, t)
	}
	var tail [8]byte
	copy(tail[:], ksn[4:])
	return derive(txn, u, wt, tail)
}

// AESKey derives, on the host, the working key of usage u and type wt for
// transaction ksn from the base derivation key.
func AESKey(bdk []byte, ksn AESKSN, u Usage, wt KeyType) ([]byte, error) {
	ik, err := AESInitialKey(bdk, ksn.InitialKeyID())
	if err != nil {
		return nil, err
	}
	defer clear(ik)
	txn, err := AESTransactionKey(ik, ksn)
	if err != nil {
		return nil, err
	}
	defer clear(txn)
	return AESWorkingKey(txn, ksn, u, wt)
}
