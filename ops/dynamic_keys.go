package ops

// Dynamic keys ("Using Dynamic Keys" in the user guide): a working key that
// travels in the request as an X9.143 (TR-31) key block under a stored key
// encryption key instead of being imported. It is unwrapped for one request,
// never stored or cached, and its clear bytes are zeroed when the request is
// done. The key block's authenticated header gives the key's usage,
// algorithm and modes of use, so every operation applies to a dynamic key
// exactly the key-separation rule (Require) it applies to a stored key.

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"

	"payhsm/fault"
	"payhsm/hsm/tdes"
	"payhsm/hsm/tr31"
	"payhsm/keystore"
	"payhsm/ops/keyspec"
)

// DynamicKey is a key carried in the request (the AWS WrappedKey shape):
// a TR-31 key block under the KEK named by the request's key identifier.
type DynamicKey struct {
	Tr31KeyBlock string
	KCVAlgorithm keyspec.KCVAlgorithm // "" = the key's default
}

// dynamicKeyName stands for a dynamic key's ARN in key-separation errors.
const dynamicKeyName = "the wrapped key"

var kekAlgorithms = []keyspec.Algorithm{keyspec.TDES2Key, keyspec.TDES3Key, keyspec.AES128, keyspec.AES192, keyspec.AES256}

// dynamicKey unwraps the key block blk under the KEK kek into a transient
// working key, for the request member blockField (kekField names the KEK's
// member). The KEK must be a K0 or K1 key whose modes allow unwrapping and
// at least as strong as the key it carries; the key's header must describe
// a valid TDES, AES or HMAC key. The result's ARN is dynamicKeyName and its
// check value is computed with kcvAlg (default: the algorithm's). The
// caller checks it with Require, uses it, then calls release, which zeroes
// the clear key.
func (s *Service) dynamicKey(kek *WorkingKey, kekField, blockField, blk string, kcvAlg keyspec.KCVAlgorithm) (w *WorkingKey, release func(), err error) {
	if err := Require(kek, kekField, "unwrapping a dynamic key", []keyspec.KeyUsage{keyspec.K0, keyspec.K1}, kekAlgorithms,
		func(m keyspec.ModesOfUse) bool { return m.Unwrap || m.Decrypt }); err != nil {
		return nil, nil, err
	}
	ka := kek.Record.Attributes.Algorithm
	if len(blk) > 0 {
		switch v := blk[0]; {
		case v == 'D' && !ka.IsAES(), (v == 'A' || v == 'B' || v == 'C') && !ka.IsTDES():
			return nil, nil, fault.FieldInvalid(blockField, "a version %c key block cannot be protected by a %s key", v, ka)
		}
	}
	h, key, err := tr31.Unwrap(kek.Material, blk)
	if err != nil {
		if errors.Is(err, tr31.ErrIntegrity) || errors.Is(err, tr31.ErrFormat) || errors.Is(err, tr31.ErrKBPK) {
			return nil, nil, fault.Wrap(fault.Validation, blockField+": the key block is malformed or does not verify under the wrapping key", err)
		}
		return nil, nil, fault.Internalf("unwrap dynamic key", err)
	}
	defer func() {
		if err != nil {
			clear(key)
		}
	}()
	a, _, err := attributesFromHeaderField(h, len(key), blockField)
	if err != nil {
		return nil, nil, err
	}
	if err := keyspec.ValidateImport(a, ""); err != nil {
		return nil, nil, fault.FieldInvalid(blockField, "the key block's header is not a valid key: %s", fault.As(err).Message)
	}
	// An HMAC key is only as strong as its length (SP 800-107 Rev. 1 5.3.4).
	if keyspec.Strength(ka) < keyspec.KeyStrength(a.Algorithm, len(key)) {
		return nil, nil, fault.FieldInvalid(blockField, "a %s wrapping key is weaker than the %s key it protects", ka, a.Algorithm)
	}
	if kcvAlg == "" {
		kcvAlg = keyspec.DefaultKCVAlgorithm(a.Algorithm)
	}
	if err := keyspec.ValidKCVAlgorithm(a.Algorithm, kcvAlg); err != nil {
		return nil, nil, err
	}
	rec := &keystore.Key{Attributes: a, Enabled: true, State: StateCreateComplete, Origin: OriginExternal, KCVAlgorithm: kcvAlg}
	if rec.KCV, err = symmetricKCV(a.Algorithm, kcvAlg, key); err != nil {
		return nil, nil, err
	}
	w = &WorkingKey{Record: rec, ARN: dynamicKeyName, Header: h, Material: key}
	if a.Algorithm.IsTDES() || a.Algorithm.IsAES() {
		if w.Block, err = symmetricBlock(a.Algorithm, key); err != nil {
			return nil, nil, fault.Internalf("dynamic key schedule", err)
		}
	}
	return w, func() { clear(key) }, nil
}

// symmetricBlock builds a TDES or AES cipher over key.
func symmetricBlock(a keyspec.Algorithm, key []byte) (cipher.Block, error) {
	if a.IsTDES() {
		return tdes.NewCipher(key)
	}
	return aes.NewCipher(key)
}

// requestKey resolves the key of one side of a data operation: the stored
// key ident, or, when dk is set, the dynamic key it carries under the KEK
// ident. arn is what the response names (the KEK for a dynamic key, as in
// the guide's examples); release must be called when the key is no longer
// needed.
func (s *Service) requestKey(ident, field string, dk *DynamicKey, dkField string) (w *WorkingKey, keyField, arn string, release func(), err error) {
	kek, err := s.Working(ident, field)
	if err != nil {
		return nil, "", "", nil, err
	}
	if dk == nil {
		return kek, field, kek.ARN, func() {}, nil
	}
	bf := dkField + ".WrappedKeyMaterial.Tr31KeyBlock"
	w, release, err = s.dynamicKey(kek, field, bf, dk.Tr31KeyBlock, dk.KCVAlgorithm)
	if err != nil {
		return nil, "", "", nil, err
	}
	return w, bf, kek.ARN, release, nil
}
