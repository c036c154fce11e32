package ops

// The one ECDH key agreement of the service. Every key derived from a stored
// K3 key pair and a partner's certificate goes through agreeKey: the one-time
// KBPK of ImportKey, ExportKey and TranslateKeyMaterial
// (DiffieHellmanTr31KeyBlock), and the data key of a DiffieHellmanSymmetricKey
// dynamic key. The partner's certificate must chain to an imported CA and
// certify a key on the curve of our key pair; the shared secret Z (SEC 1 v2
// section 3.3.1) goes through the ANSI X9.63 or NIST SP 800-56C one-step KDF
// (hsm/kdf). Z is zeroed at once; the derived key belongs to the caller.

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"hash"

	"payhsm/fault"
	"payhsm/hsm/kdf"
	"payhsm/keyspec"
)

// ecdhFields names the request members of one ECDH derivation in errors.
type ecdhFields struct {
	priv, ca, cert, alg, kdf, hash, info string
}

// tr31ECDHFields are the members of the DiffieHellmanTr31KeyBlock shapes
// (ImportKey, ExportKey, TranslateKeyMaterial) under member m.
func tr31ECDHFields(m string) ecdhFields {
	return ecdhFields{priv: m + ".PrivateKeyIdentifier", ca: m + ".CertificateAuthorityPublicKeyIdentifier",
		cert: m + ".PublicKeyCertificate", alg: m + ".DeriveKeyAlgorithm", kdf: m + ".KeyDerivationFunction",
		hash: m + ".KeyDerivationHashAlgorithm", info: m + ".DerivationData.SharedInformation"}
}

var errNotECDSA = errors.New("not an ECC key")

// checkAgreementKey checks that w is a K3 ECC key pair whose modes allow
// deriving keys (the guide's "Valid keys" row for key agreement).
func checkAgreementKey(w *WorkingKey, field string) error {
	a := w.Record.Attributes
	if a.Usage != keyspec.K3 || a.Class != keyspec.AsymmetricPair || !a.Algorithm.IsECC() || !(a.Modes.DeriveKey || a.Modes.NoRestrictions) || len(w.Material) == 0 {
		return fault.FieldInvalid(field, "must be a TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT ECC key pair allowed to derive keys")
	}
	return nil
}

// agreeKey derives an alg key from the K3 key pair priv (checked with
// checkAgreementKey) and the partner's certificate dh.Certificate, issued
// under the imported CA dh.CAIdentifier. dh.DeriveKeyAlgorithm is the derived
// key's algorithm, which the curve must be at least as strong as;
// dh.PrivateKeyIdentifier is not used. The caller zeroes the key.
func (s *Service) agreeKey(priv *WorkingKey, dh DiffieHellman, f ecdhFields) ([]byte, error) {
	curve, d := priv.Record.Attributes.Algorithm, dh.DeriveKeyAlgorithm
	if !d.IsSymmetric() || d.KeyLen() == 0 {
		return nil, fault.FieldInvalid(f.alg, "must be a TDES, AES or HMAC algorithm")
	}
	if !keyspec.AtLeastAsStrong(curve, d) {
		return nil, fault.Validationf("a %s key agreement is weaker than the %s key it would derive", curve, d)
	}
	var h func() hash.Hash
	switch dh.Hash {
	case "SHA_256":
		h = sha256.New
	case "SHA_384":
		h = sha512.New384
	case "SHA_512":
		h = sha512.New
	default:
		return nil, fault.FieldInvalid(f.hash, "must be SHA_256, SHA_384 or SHA_512")
	}
	derive := kdf.OneStep
	switch dh.KDF {
	case "NIST_SP800":
	case "ANSI_X963":
		derive = kdf.X963
	default:
		return nil, fault.FieldInvalid(f.kdf, "must be NIST_SP800 or ANSI_X963")
	}
	info, err := hex.DecodeString(dh.SharedInformation)
	if err != nil {
		return nil, fault.FieldInvalid(f.info, "must be hexadecimal")
	}
	peer, _, err := s.verifyLeaf(dh.CAIdentifier, f.ca, dh.Certificate, f.cert)
	if err != nil {
		return nil, err
	}
	peerPub, ok := peer.PublicKey.(*ecdsa.PublicKey)
	if palg, known := certAlgorithm(peer); !ok || !known || palg != curve {
		return nil, fault.FieldInvalid(f.cert, "must certify an %s public key (the curve of the private key)", curve)
	}
	if peer.KeyUsage != 0 && peer.KeyUsage&x509.KeyUsageKeyAgreement == 0 {
		return nil, fault.FieldInvalid(f.cert, "the certificate's key usage does not allow key agreement")
	}
	pk, err := x509.ParsePKCS8PrivateKey(priv.Material) // Material is shared and read-only
	if err != nil {
		return nil, fault.Internalf("parse key agreement key", err)
	}
	ecPriv, ok := pk.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fault.Internalf("parse key agreement key", errNotECDSA)
	}
	ep, err := ecPriv.ECDH()
	if err != nil {
		return nil, fault.Internalf("key agreement key", err)
	}
	pp, err := peerPub.ECDH()
	if err != nil {
		return nil, fault.FieldInvalid(f.cert, "the public key is not a valid point")
	}
	z, err := ep.ECDH(pp)
	if err != nil {
		return nil, fault.FieldInvalid(f.cert, "key agreement failed")
	}
	defer clear(z)
	key, err := derive(h, z, info, d.KeyLen())
	if err != nil {
		return nil, fault.Internalf("derive key", err)
	}
	return key, nil
}
