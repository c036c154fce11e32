package ops

// Dynamic keys ("Using Dynamic Keys" in the user guide): a working key that
// travels with the request instead of being imported, in one of the two forms
// of the AWS WrappedKeyMaterial union:
//
//   - Tr31KeyBlock: an X9.143 (TR-31) key block under the stored key
//     encryption key named by the request's key identifier. The block's
//     authenticated header gives the key's usage, algorithm and modes of use.
//   - DiffieHellmanSymmetricKey: a key agreed by ECDH between the stored K3
//     key pair named by the request's key identifier and the partner's
//     certificate, then derived with the request's KDF (agree). Its usage
//     is the key pair's DeriveKeyUsage, fixed when the pair was created; its
//     algorithm is the request's KeyAlgorithm; its modes of use are the
//     widest combination the guide's key attribute rules allow for that usage
//     and algorithm ({Encrypt, Decrypt, Wrap, Unwrap}, {Generate, Verify} or
//     {DeriveKey}); and the curve must be at least as strong as the key.
//
// Either way the key is unwrapped or derived for one request, never stored or
// cached, and its clear bytes are zeroed when the request is done; every
// operation applies to it exactly the key-separation rule (Require) it
// applies to a stored key.

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"

	"payhsm/fault"
	"payhsm/hsm/tdes"
	"payhsm/hsm/tr31"
	"payhsm/keyspec"
	"payhsm/keystore"
)

// DynamicKey is a key carried in the request (the AWS WrappedKey shape):
// exactly one of Tr31KeyBlock (under the KEK named by the request's key
// identifier) and DiffieHellman (agreed with the K3 key pair named by it).
type DynamicKey struct {
	Tr31KeyBlock  string // an X9.143 key block (its printable form)
	DiffieHellman *EcdhDerivation
	KCVAlgorithm  keyspec.KCVAlgorithm // "" = the key's default
}

// EcdhDerivation is the DiffieHellmanSymmetricKey form of a dynamic key (the
// AWS EcdhDerivationAttributes shape).
type EcdhDerivation struct {
	CAIdentifier      string            // the imported CA that issued Certificate
	Certificate       []byte            // the partner's ECC certificate (DER)
	KeyAlgorithm      keyspec.Algorithm // the derived key's algorithm
	KDF               KDF
	Hash              KDFHash
	SharedInformation []byte
}

// dynamicKeyName and derivedKeyName stand for a dynamic key's ARN in
// key-separation errors.
const (
	dynamicKeyName = "the wrapped key"
	derivedKeyName = "the ECDH-derived key"
)

// dynamicKey unwraps the key block blk under the KEK kek (the request's key
// kekSubj on side) into a transient working key, the side's
// SubjectWrappedKey. The KEK must be a K0 or K1 key whose modes allow
// unwrapping and at least as strong as the key it carries; the key's header
// must describe a valid TDES, AES or HMAC key. The result's ARN is
// dynamicKeyName and its check value is computed with kcvAlg (default: the
// algorithm's). The caller checks it with RequireUse, uses it, then calls
// release, which zeroes the clear key.
func (s *Service) dynamicKey(kek *WorkingKey, kekSubj fault.Subject, side fault.Side, blk string, kcvAlg keyspec.KCVAlgorithm) (w *WorkingKey, release func(), err error) {
	if err := RequireUse(kek, keyspec.UseDynamicKeyKEK, kekSubj, side); err != nil {
		return nil, nil, err
	}
	const subj = fault.SubjectWrappedKey
	ka := kek.Record.Attributes.Algorithm
	if len(blk) > 0 {
		switch v := blk[0]; {
		case v == 'D' && !ka.IsAES(), (v == 'A' || v == 'B' || v == 'C') && !ka.IsTDES():
			return nil, nil, about(subj, side, "a version %c key block cannot be protected by a %s key", v, ka)
		}
	}
	h, key, err := tr31.Unwrap(kek.Material, blk)
	if err != nil {
		if errors.Is(err, tr31.ErrIntegrity) || errors.Is(err, tr31.ErrFormat) || errors.Is(err, tr31.ErrKBPK) {
			f := fault.Wrap(fault.Validation, "the key block is malformed or does not verify under the wrapping key", err)
			f.Subject, f.Side = subj, side
			return nil, nil, f
		}
		return nil, nil, fault.Internalf("unwrap dynamic key", err)
	}
	defer func() {
		if err != nil {
			clear(key)
		}
	}()
	a, _, err := attributesFromHeader(h, len(key)) // its faults are about SubjectWrappedKey
	if err != nil {
		return nil, nil, onSide(err, side)
	}
	if err := keyspec.ValidateImport(a, ""); err != nil {
		return nil, nil, about(subj, side, "the key block's header is not a valid key: %s", fault.As(err).Message)
	}
	// An HMAC key is only as strong as its length (SP 800-107 Rev. 1 5.3.4).
	if keyspec.Strength(ka) < keyspec.KeyStrength(a.Algorithm, len(key)) {
		return nil, nil, about(subj, side, "a %s wrapping key is weaker than the %s key it protects", ka, a.Algorithm)
	}
	if kcvAlg == "" {
		kcvAlg = keyspec.DefaultKCVAlgorithm(a.Algorithm)
	}
	if err := keyspec.ValidKCVAlgorithm(a.Algorithm, kcvAlg); err != nil {
		return nil, nil, onSide(err, side)
	}
	rec := &keystore.Key{Attributes: a, Enabled: true, State: StateCreateComplete, Origin: OriginExternal, KCVAlgorithm: kcvAlg}
	if rec.KCV, err = symmetricKCV(a.Algorithm, kcvAlg, key); err != nil {
		return nil, nil, err
	}
	w = &WorkingKey{Record: rec, ARN: dynamicKeyName, Header: h, Material: key}
	if err := w.schedule(a.Algorithm); err != nil {
		return nil, nil, fault.Internalf("dynamic key schedule", err)
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
// key ident (the request's key subj on side), or, when dk is set, the
// dynamic key it carries (Tr31KeyBlock under the KEK ident) or agrees
// (DiffieHellmanSymmetricKey with the K3 key pair ident). keySubj is the
// subject of the key returned (subj or SubjectWrappedKey), for the caller's
// key-separation faults; arn is what the response names (the KEK or key
// pair, as in the guide's examples); release must be called when the key is
// no longer needed.
func (s *Service) requestKey(ident string, subj fault.Subject, side fault.Side, dk *DynamicKey) (w *WorkingKey, keySubj fault.Subject, arn string, release func(), err error) {
	base, err := s.Working(ident, subj, side)
	if err != nil {
		return nil, 0, "", nil, err
	}
	if dk == nil {
		return base, subj, base.ARN, func() {}, nil
	}
	w, release, err = s.wrappedKey(base, subj, side, dk)
	if err != nil {
		return nil, 0, "", nil, err
	}
	return w, fault.SubjectWrappedKey, base.ARN, release, nil
}

// wrappedKey opens the dynamic key dk (the side's SubjectWrappedKey),
// carried or agreed with the stored key base (the request's key subj on
// side).
func (s *Service) wrappedKey(base *WorkingKey, subj fault.Subject, side fault.Side, dk *DynamicKey) (w *WorkingKey, release func(), err error) {
	switch {
	case dk.DiffieHellman != nil && dk.Tr31KeyBlock != "":
		return nil, nil, about(fault.SubjectWrappedKey, side, "must set exactly one of a key block and a key agreement")
	case dk.DiffieHellman != nil:
		return s.agreedKey(base, subj, side, dk.DiffieHellman, dk.KCVAlgorithm)
	}
	return s.dynamicKey(base, subj, side, dk.Tr31KeyBlock, dk.KCVAlgorithm)
}

// derivedModes are the modes of use an agreed key gets, widest first: the
// first one the guide's rules allow for its usage and algorithm is taken.
var derivedModes = []keyspec.ModesOfUse{
	{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true},
	{Generate: true, Verify: true},
	{DeriveKey: true},
}

// agreedKey derives the DiffieHellmanSymmetricKey dynamic key x from the K3
// key pair pair (the request's key subj on side) into a transient working
// key: see the file comment for its attributes. Its check value is computed
// with kcvAlg (default: the algorithm's); release zeroes the clear key.
func (s *Service) agreedKey(pair *WorkingKey, subj fault.Subject, side fault.Side, x *EcdhDerivation, kcvAlg keyspec.KCVAlgorithm) (w *WorkingKey, release func(), err error) {
	if err := agreementKey(pair, subj, side); err != nil {
		return nil, nil, err
	}
	u := pair.Record.DeriveKeyUsage
	if !u.IsSymmetric() {
		return nil, nil, about(subj, side, "the key pair has no DeriveKeyUsage: it derives no keys")
	}
	a := keyspec.Attributes{Usage: u, Class: keyspec.Symmetric, Algorithm: x.KeyAlgorithm}
	valid := false
	for _, modes := range derivedModes {
		a.Modes = modes
		if keyspec.ValidateCreate(a, "") == nil {
			valid = true
			break
		}
	}
	if !valid {
		return nil, nil, about(fault.SubjectDerivedKeyAlgorithm, side, "the key pair derives %s keys, which cannot be %.32q keys", u, string(x.KeyAlgorithm))
	}
	if kcvAlg == "" {
		kcvAlg = keyspec.DefaultKCVAlgorithm(a.Algorithm)
	}
	if err := keyspec.ValidKCVAlgorithm(a.Algorithm, kcvAlg); err != nil {
		return nil, nil, onSide(err, side)
	}
	key, err := s.agree(pair, x, side)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			clear(key)
		}
	}()
	rec := &keystore.Key{Attributes: a, Enabled: true, State: StateCreateComplete, Origin: OriginExternal, KCVAlgorithm: kcvAlg}
	if rec.KCV, err = symmetricKCV(a.Algorithm, kcvAlg, key); err != nil {
		return nil, nil, err
	}
	w = &WorkingKey{Record: rec, ARN: derivedKeyName, Material: key}
	if err := w.schedule(a.Algorithm); err != nil {
		return nil, nil, fault.Internalf("derived key schedule", err)
	}
	return w, func() { clear(key) }, nil
}
