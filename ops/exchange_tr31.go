package ops

// X9.143 (TR-31) key blocks under a key-encryption key: the one way such a
// block is opened, whatever protects it (a stored or host-carried K0/K1 key,
// or a KBPK agreed by ECDH), so that ImportKey, TranslateKeyMaterial and the
// host protocol's A6 apply the same checks.

import (
	"strings"

	"payhsm/fault"
	"payhsm/hsm/tr31"
	"payhsm/keyspec"
)

// openedBlock is an opened key block: its header, the attributes it gives the
// key, and the clear key (owned by the caller, who zeroes it).
type openedBlock struct {
	header     tr31.Header
	attrs      keyspec.Attributes
	exportable bool
	key        []byte
}

// openTR31 opens an X9.143 key block under kbpk, a key of algorithm
// kbpkAlg: the block's version must suit the KBPK (A, B or C under TDES, D
// under AES), the block must verify and not be marked for storage only, a KP
// optional block must name the KBPK, the header must describe a key this
// appliance imports, and the KBPK must be at least as strong as that key.
// Its faults about the block are about SubjectWrappedKey.
func openTR31(kbpk []byte, kbpkAlg keyspec.Algorithm, block string) (*openedBlock, error) {
	if len(block) > 0 {
		switch v := block[0]; {
		case v == 'D' && !kbpkAlg.IsAES(), (v == 'A' || v == 'B' || v == 'C') && !kbpkAlg.IsTDES():
			return nil, keyRuleAbout(fault.ViolationWrappingKey, fault.SubjectWrappedKey, "a version %c key block cannot be protected by a %s key", v, kbpkAlg)
		}
	}
	h, key, err := tr31.Unwrap(kbpk, block)
	if err != nil {
		f := invalidBecause(fault.SubjectWrappedKey, "the key block is malformed or does not verify under the wrapping key", err)
		f.Violation = fault.ViolationIntegrity
		return nil, f
	}
	ok := false
	defer func() {
		if !ok {
			clear(key)
		}
	}()
	if h.KeyContext == '1' {
		return nil, fault.About(fault.SubjectWrappedKey, "the key block is for storage only (X9.143 key context 1), not for key exchange")
	}
	if kp, found := blockData(h, "KP"); found {
		if err := checkKP(kp, kbpkAlg, kbpk); err != nil {
			return nil, err
		}
	}
	a, exportable, err := attributesFromHeader(h, len(key))
	if err != nil {
		return nil, err
	}
	if err := keyspec.ValidateImport(a, ""); err != nil {
		return nil, err
	}
	if keyspec.Strength(kbpkAlg) < keyspec.KeyStrength(a.Algorithm, len(key)) {
		return nil, weakerWrapping(kbpkAlg, a.Algorithm)
	}
	ok = true
	return &openedBlock{header: h, attrs: a, exportable: exportable, key: key}, nil
}

// checkKP verifies an X9.143 KP optional block: the check value of the key
// block protection key (method 00 ANSI X9.24, 01 CMAC), whole or truncated.
// X9.143 writes the check value in hexadecimal, as checkValueText does.
func checkKP(kp string, kbpkAlg keyspec.Algorithm, kbpk []byte) error {
	if len(kp) < 4 {
		return fault.About(fault.SubjectWrappedKey, "malformed KP optional block")
	}
	method := keyspec.KCVANSIX924
	switch kp[:2] {
	case "00":
	case "01":
		method = keyspec.KCVCMAC
	default:
		return fault.About(fault.SubjectWrappedKey, "unknown KCV method in KP optional block")
	}
	want, err := symmetricKCV(kbpkAlg, method, kbpk)
	if err != nil {
		return err
	}
	got := kp[2:]
	if len(got) > len(want) || !hmacEqual(got, want[:len(got)]) {
		return keyRuleAbout(fault.ViolationWrappingKey, fault.SubjectWrappedKey, "the KP optional block names a different wrapping key (KCV %s)", strings.ToUpper(got))
	}
	return nil
}

// importTR31 imports an X9.143 key block protected by a stored K0/K1 key.
func (s *Service) importTR31(in ImportKeyInput, b *ImportTr31KeyBlock) (*Key, error) {
	kek, err := s.keyEncryptionKey(b.WrappingKeyIdentifier, true)
	if err != nil {
		return nil, err
	}
	defer kek.Release()
	o, err := openTR31(kek.Material, kek.Record.Attributes.Algorithm, b.KeyBlock)
	if err != nil {
		return nil, err
	}
	defer clear(o.key)
	return s.storeKey(in, o.attrs, "", o.exportable, o.key)
}
