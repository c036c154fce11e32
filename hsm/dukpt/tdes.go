package dukpt

import (
	"crypto/des"
	"encoding/binary"
	"errors"
	"fmt"

	"payhsm/hsm/tdes"
)

// TDESVariant selects an X9.24-1-2009 transaction key variant.
type TDESVariant int

const (
	// PINVariant is the PIN encryption key (X9.24-1-2009 A.6, variant constant 00..FF).
	PINVariant TDESVariant = iota + 1
	// MACRequestVariant is the MAC key for request (or both-ways) messages.
	MACRequestVariant
	// MACResponseVariant is the MAC key for response messages.
	MACResponseVariant
	// DataRequestVariant is the data encryption key for request (or both-ways) messages.
	DataRequestVariant
	// DataResponseVariant is the data encryption key for response messages.
	DataResponseVariant
)

// variantMask is the byte pattern XORed into each half of the transaction
// key, as (offset within the half, value).
var variantMask = map[TDESVariant]int{
	PINVariant:          7,
	MACRequestVariant:   6,
	MACResponseVariant:  4,
	DataRequestVariant:  5,
	DataResponseVariant: 3,
}

var errKeyLen = errors.New("dukpt: invalid key length")

// TDESInitialKey derives the initial key (IPEK) from a double-length BDK
// and any KSN of the device (its counter bits are ignored), X9.24-1-2009 A.6.
func TDESInitialKey(bdk []byte, ksn TDESKSN) ([]byte, error) {
	if len(bdk) != 16 {
		return nil, fmt.Errorf("%w: TDES DUKPT BDK is %d bytes, want 16", errKeyLen, len(bdk))
	}
	ik := ksn.initial()
	ik8 := ik[:8]
	var masked [16]byte
	for i := range masked {
		masked[i] = bdk[i] ^ kmask[i]
	}
	defer clear(masked[:])
	out := make([]byte, 16)
	for i, k := range [][]byte{bdk, masked[:]} {
		b, err := tdes.NewCipher(k)
		if err != nil {
			clear(out)
			return nil, fmt.Errorf("dukpt: initial key: %w", err)
		}
		b.Encrypt(out[8*i:], ik8)
	}
	return out, nil
}

// kmask is the key register mask C0C0C0C000000000C0C0C0C000000000.
var kmask = [16]byte{0xC0, 0xC0, 0xC0, 0xC0, 0, 0, 0, 0, 0xC0, 0xC0, 0xC0, 0xC0, 0, 0, 0, 0}

// TDESTransactionKey derives the transaction ("current") key for ksn from
// the device's initial key: one non-reversible key generation per 1 bit of
// the transaction counter, most significant first (X9.24-1-2009 A.2, A.3).
func TDESTransactionKey(ik []byte, ksn TDESKSN) ([]byte, error) {
	if len(ik) != 16 {
		return nil, fmt.Errorf("%w: initial key is %d bytes, want 16", errKeyLen, len(ik))
	}
	key := make([]byte, 16)
	copy(key, ik)
	init := ksn.initial()
	var reg [8]byte // rightmost 64 bits of the KSN, counter bits built up one at a time
	copy(reg[:], init[2:])
	counter := ksn.Counter()
	for bit := uint32(1 << 20); bit != 0; bit >>= 1 {
		if counter&bit == 0 {
			continue
		}
		// bit < 1<<21: it lands in the counter's bits of reg[5:8].
		binary.BigEndian.PutUint32(reg[4:8], binary.BigEndian.Uint32(reg[4:8])|bit)
		if err := nrkgp(key, reg[:]); err != nil {
			clear(key)
			return nil, err
		}
	}
	return key, nil
}

// nrkgp is the non-reversible key generation process: key (16 bytes) is
// replaced in place by the key derived from it and the 8-byte register.
func nrkgp(key, reg []byte) error {
	var l, r [8]byte
	half := func(k []byte, dst *[8]byte) error {
		c, err := des.NewCipher(k[:8])
		if err != nil {
			return fmt.Errorf("dukpt: key generation: %w", err)
		}
		var t [8]byte
		for i := range t {
			t[i] = reg[i] ^ k[8+i]
		}
		c.Encrypt(dst[:], t[:])
		for i := range dst {
			dst[i] ^= k[8+i]
		}
		clear(t[:])
		return nil
	}
	if err := half(key, &r); err != nil {
		return err
	}
	var mk [16]byte
	for i := range mk {
		mk[i] = key[i] ^ kmask[i]
	}
	err := half(mk[:], &l)
	clear(mk[:])
	if err != nil {
		return err
	}
	copy(key[:8], l[:])
	copy(key[8:], r[:])
	clear(l[:])
	clear(r[:])
	return nil
}

// TDESVariantKey applies variant v to a transaction key. The data variants
// are further passed through the one-way function of X9.24-1-2009 A.4.1
// (each half TDES-encrypted under the variant key itself).
func TDESVariantKey(txn []byte, v TDESVariant) ([]byte, error) {
	if len(txn) != 16 {
		return nil, fmt.Errorf("%w: transaction key is %d bytes, want 16", errKeyLen, len(txn))
	}
	off, ok := variantMask[v]
	if !ok {
		return nil, fmt.Errorf("dukpt: unknown TDES variant %d", v)
	}
	k := make([]byte, 16)
	copy(k, txn)
	k[off] ^= 0xFF
	k[8+off] ^= 0xFF
	if v == DataRequestVariant || v == DataResponseVariant {
		b, err := tdes.NewCipher(k)
		if err != nil {
			clear(k)
			return nil, fmt.Errorf("dukpt: data key: %w", err)
		}
		b.Encrypt(k[:8], k[:8])
		b.Encrypt(k[8:], k[8:])
	}
	return k, nil
}

// TDESKey derives, on the host, the variant-v key of transaction ksn from
// the base derivation key.
func TDESKey(bdk []byte, ksn TDESKSN, v TDESVariant) ([]byte, error) {
	ik, err := TDESInitialKey(bdk, ksn)
	if err != nil {
		return nil, err
	}
	defer clear(ik)
	txn, err := TDESTransactionKey(ik, ksn)
	if err != nil {
		return nil, err
	}
	defer clear(txn)
	return TDESVariantKey(txn, v)
}
