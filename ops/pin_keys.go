package ops

// Per-request PIN keys: DUKPT PIN keys derived from a BDK and a KSN, and
// dynamic PEKs carried as TR-31 key blocks under a stored KEK ("Using Dynamic
// Keys"). Both are derived or unwrapped for one request and zeroed after it.

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"errors"

	"payhsm/fault"
	"payhsm/hsm/dukpt"
	"payhsm/hsm/tdes"
	"payhsm/hsm/tr31"
	"payhsm/ops/keyspec"
)

// symmetricBlock builds a TDES or AES cipher over key.
func symmetricBlock(a keyspec.Algorithm, key []byte) (cipher.Block, error) {
	if a.IsTDES() {
		return tdes.NewCipher(key)
	}
	return aes.NewCipher(key)
}

var dukptTypes = map[keyspec.Algorithm]dukpt.KeyType{
	keyspec.TDES2Key: dukpt.TDES2, keyspec.TDES3Key: dukpt.TDES3,
	keyspec.AES128: dukpt.AES128, keyspec.AES192: dukpt.AES192, keyspec.AES256: dukpt.AES256,
}

// dukptPinKey derives the PIN encryption key of transaction dk.KSN from the
// BDK w: TDES DUKPT (ANSI X9.24-1-2009, PIN variant) for a TDES_2KEY BDK, AES
// DUKPT (ANSI X9.24-3-2017, key usage PIN encryption) for an AES BDK.
func (s *Service) dukptPinKey(w *WorkingKey, field string, dk *PinDukpt, decrypt bool) (*pinKey, error) {
	bdkAlgs := []keyspec.Algorithm{keyspec.TDES2Key, keyspec.AES128, keyspec.AES192, keyspec.AES256}
	if err := Require(w, field, "DUKPT PIN key derivation", []keyspec.KeyUsage{keyspec.B0}, bdkAlgs,
		func(m keyspec.ModesOfUse) bool { return m.DeriveKey }); err != nil {
		return nil, err
	}
	const ksnField = "KeySerialNumber"
	ksn, err := hex.DecodeString(dk.KSN)
	if err != nil {
		return nil, fault.FieldInvalid(ksnField, "must be hexadecimal")
	}
	bdkAlg := w.Record.Attributes.Algorithm
	typ := dk.DerivationType
	if typ == "" {
		typ = bdkAlg
	}
	var key []byte
	if bdkAlg.IsTDES() {
		if typ != keyspec.TDES2Key {
			return nil, fault.FieldInvalid("DukptKeyDerivationType", "a TDES_2KEY BDK derives TDES_2KEY keys only")
		}
		k, err := dukpt.ParseTDESKSN(ksn)
		if err != nil {
			return nil, fault.Wrap(fault.Validation, ksnField+": a TDES DUKPT key serial number is 20 hexadecimal characters with a usable transaction counter", err)
		}
		key, err = dukpt.TDESKey(w.Material, k, dukpt.PINVariant)
		if err != nil {
			return nil, fault.Internalf("TDES DUKPT PIN key", err)
		}
	} else {
		wt, ok := dukptTypes[typ]
		if !ok {
			return nil, fault.FieldInvalid("DukptKeyDerivationType", "unsupported derivation type %s", typ)
		}
		if keyspec.Strength(typ) > keyspec.Strength(bdkAlg) {
			return nil, fault.FieldInvalid("DukptKeyDerivationType", "%s is stronger than the %s BDK", typ, bdkAlg)
		}
		k, err := dukpt.ParseAESKSN(ksn)
		if err != nil {
			return nil, fault.Wrap(fault.Validation, ksnField+": an AES DUKPT key serial number is 24 hexadecimal characters with a usable transaction counter", err)
		}
		key, err = dukpt.AESKey(w.Material, k, dukpt.UsagePINEncryption, wt)
		if err != nil {
			return nil, fault.Internalf("AES DUKPT PIN key", err)
		}
	}
	b, err := symmetricBlock(typ, key)
	if err != nil {
		clear(key)
		return nil, fault.Internalf("DUKPT PIN key schedule", err)
	}
	return &pinKey{block: b, arn: w.ARN, kcv: w.KCV(), done: func() { clear(key) }}, nil
}

// wrappedPinKey unwraps a dynamic PEK from a TR-31 key block under the KEK w.
// The block must be a P0 key whose mode of use allows the direction (B or D
// to decipher an incoming PIN, B or E to encipher an outgoing one), of a TDES
// or AES algorithm no stronger than the KEK.
func (s *Service) wrappedPinKey(w *WorkingKey, field string, wk *PinWrappedKey, decrypt bool) (*pinKey, error) {
	if err := Require(w, field, "unwrapping a dynamic PIN key", []keyspec.KeyUsage{keyspec.K0, keyspec.K1}, pinKeyAlgs,
		func(m keyspec.ModesOfUse) bool { return m.Unwrap || m.Decrypt }); err != nil {
		return nil, err
	}
	const bf = "WrappedKeyMaterial.Tr31KeyBlock"
	ka := w.Record.Attributes.Algorithm
	if blk := wk.Tr31KeyBlock; len(blk) > 0 {
		switch v := blk[0]; {
		case v == 'D' && !ka.IsAES(), (v == 'A' || v == 'B' || v == 'C') && !ka.IsTDES():
			return nil, fault.FieldInvalid(bf, "a version %c key block cannot be protected by a %s key", v, ka)
		}
	}
	h, key, err := tr31.Unwrap(w.Material, wk.Tr31KeyBlock)
	if err != nil {
		if errors.Is(err, tr31.ErrIntegrity) || errors.Is(err, tr31.ErrFormat) || errors.Is(err, tr31.ErrKBPK) {
			return nil, fault.Wrap(fault.Validation, bf+": the key block is malformed or does not verify under the wrapping key", err)
		}
		return nil, fault.Internalf("unwrap dynamic key", err)
	}
	fail := func(e error) (*pinKey, error) { clear(key); return nil, e }
	if h.KeyUsage != "P0" {
		return fail(fault.FieldInvalid(bf, "the wrapped key must have key usage P0, not %s", h.KeyUsage))
	}
	if decrypt && h.ModeOfUse != 'B' && h.ModeOfUse != 'D' {
		return fail(fault.FieldInvalid(bf, "an incoming wrapped PIN key must have mode of use B or D"))
	}
	if !decrypt && h.ModeOfUse != 'B' && h.ModeOfUse != 'E' {
		return fail(fault.FieldInvalid(bf, "an outgoing wrapped PIN key must have mode of use B or E"))
	}
	var alg keyspec.Algorithm
	switch {
	case h.Algorithm == 'T' && len(key) == 16:
		alg = keyspec.TDES2Key
	case h.Algorithm == 'T' && len(key) == 24:
		alg = keyspec.TDES3Key
	case h.Algorithm == 'A' && len(key) == 16:
		alg = keyspec.AES128
	case h.Algorithm == 'A' && len(key) == 24:
		alg = keyspec.AES192
	case h.Algorithm == 'A' && len(key) == 32:
		alg = keyspec.AES256
	default:
		return fail(fault.FieldInvalid(bf, "the wrapped key must be a TDES or AES key"))
	}
	if keyspec.Strength(ka) < keyspec.Strength(alg) {
		return fail(fault.FieldInvalid(bf, "a %s wrapping key is weaker than the %s key it protects", ka, alg))
	}
	method := wk.KCVAlgorithm
	if method == "" {
		method = keyspec.DefaultKCVAlgorithm(alg)
	}
	if err := keyspec.ValidKCVAlgorithm(alg, method); err != nil {
		return fail(err)
	}
	kcv, err := symmetricKCV(alg, method, key)
	if err != nil {
		return fail(err)
	}
	b, err := symmetricBlock(alg, key)
	if err != nil {
		return fail(fault.Internalf("dynamic key schedule", err))
	}
	return &pinKey{block: b, arn: w.ARN, kcv: kcv, done: func() { clear(key) }}, nil
}

// as2805PinKey would derive an AS2805.6.4 session PIN key (KPE) from the
// terminal PIN key with the STAN and amount. The derivation is specified only
// in the (non-public) AS2805.6.4 standard and is not implemented.
func (s *Service) as2805PinKey(w *WorkingKey, field string, as *PinAs2805) (*pinKey, error) {
	return nil, fault.FieldInvalid("IncomingAs2805Attributes", "AS2805 session PIN key derivation is not supported")
}
