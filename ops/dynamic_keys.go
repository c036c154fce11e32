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
//     certificate, then derived with the request's KDF (agreeKey). Its usage
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
	Tr31KeyBlock  string
	DiffieHellman *EcdhDerivation
	KCVAlgorithm  keyspec.KCVAlgorithm // "" = the key's default
}

// EcdhDerivation is the DiffieHellmanSymmetricKey form of a dynamic key (the
// AWS EcdhDerivationAttributes shape).
type EcdhDerivation struct {
	CAIdentifier      string            // the imported CA that issued Certificate
	Certificate       string            // the partner's ECC certificate (base64 PEM)
	KeyAlgorithm      keyspec.Algorithm // the derived key's algorithm
	KDF               string            // NIST_SP800 or ANSI_X963
	Hash              string            // SHA_256, SHA_384 or SHA_512
	SharedInformation string            // hex
}

// dynamicKeyName and derivedKeyName stand for a dynamic key's ARN in
// key-separation errors.
const (
	dynamicKeyName = "the wrapped key"
	derivedKeyName = "the ECDH-derived key"
)

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
// key ident, or, when dk is set, the dynamic key it carries (Tr31KeyBlock
// under the KEK ident) or agrees (DiffieHellmanSymmetricKey with the K3 key
// pair ident). arn is what the response names (the KEK or key pair, as in the
// guide's examples); release must be called when the key is no longer needed.
func (s *Service) requestKey(ident, field string, dk *DynamicKey, dkField string) (w *WorkingKey, keyField, arn string, release func(), err error) {
	base, err := s.Working(ident, field)
	if err != nil {
		return nil, "", "", nil, err
	}
	if dk == nil {
		return base, field, base.ARN, func() {}, nil
	}
	w, keyField, release, err = s.wrappedKey(base, field, dk, dkField)
	if err != nil {
		return nil, "", "", nil, err
	}
	return w, keyField, base.ARN, release, nil
}

// wrappedKey opens the dynamic key dk, request member dkField ("" for none),
// carried or agreed with the stored key base (member field). keyField is the
// member to name in the caller's key-separation errors.
func (s *Service) wrappedKey(base *WorkingKey, field string, dk *DynamicKey, dkField string) (w *WorkingKey, keyField string, release func(), err error) {
	m := "WrappedKeyMaterial"
	if dkField != "" {
		m = dkField + "." + m
	}
	switch {
	case dk.DiffieHellman != nil && dk.Tr31KeyBlock != "":
		return nil, "", nil, fault.FieldInvalid(m, "must set exactly one of Tr31KeyBlock and DiffieHellmanSymmetricKey")
	case dk.DiffieHellman != nil:
		keyField = m + ".DiffieHellmanSymmetricKey"
		w, release, err = s.agreedKey(base, field, keyField, dk.DiffieHellman, dk.KCVAlgorithm)
	default:
		keyField = m + ".Tr31KeyBlock"
		w, release, err = s.dynamicKey(base, field, keyField, dk.Tr31KeyBlock, dk.KCVAlgorithm)
	}
	if err != nil {
		return nil, "", nil, err
	}
	return w, keyField, release, nil
}

// derivedModes are the modes of use an agreed key gets, widest first: the
// first one the guide's rules allow for its usage and algorithm is taken.
var derivedModes = []keyspec.ModesOfUse{
	{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true},
	{Generate: true, Verify: true},
	{DeriveKey: true},
}

// agreedKey derives the DiffieHellmanSymmetricKey dynamic key x (member m)
// from the K3 key pair pair (member field) into a transient working key: see
// the file comment for its attributes. Its check value is computed with
// kcvAlg (default: the algorithm's); release zeroes the clear key.
func (s *Service) agreedKey(pair *WorkingKey, field, m string, x *EcdhDerivation, kcvAlg keyspec.KCVAlgorithm) (w *WorkingKey, release func(), err error) {
	if err := checkAgreementKey(pair, field); err != nil {
		return nil, nil, err
	}
	u := pair.Record.DeriveKeyUsage
	if !u.IsSymmetric() {
		return nil, nil, fault.FieldInvalid(field, "the key pair has no DeriveKeyUsage: it derives no keys")
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
		return nil, nil, fault.FieldInvalid(m+".KeyAlgorithm", "the key pair derives %s keys, which cannot be %.32q keys", u, string(x.KeyAlgorithm))
	}
	if kcvAlg == "" {
		kcvAlg = keyspec.DefaultKCVAlgorithm(a.Algorithm)
	}
	if err := keyspec.ValidKCVAlgorithm(a.Algorithm, kcvAlg); err != nil {
		return nil, nil, err
	}
	f := ecdhFields{priv: field, ca: m + ".CertificateAuthorityPublicKeyIdentifier", cert: m + ".PublicKeyCertificate",
		alg: m + ".KeyAlgorithm", kdf: m + ".KeyDerivationFunction", hash: m + ".KeyDerivationHashAlgorithm", info: m + ".SharedInformation"}
	key, err := s.agreeKey(pair, DiffieHellman{CAIdentifier: x.CAIdentifier, Certificate: x.Certificate, DeriveKeyAlgorithm: x.KeyAlgorithm,
		KDF: x.KDF, Hash: x.Hash, SharedInformation: x.SharedInformation}, f)
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
