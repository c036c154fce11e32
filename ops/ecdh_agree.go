package ops

// The one ECDH key agreement of the service. Every key derived from a stored
// K3 key pair and a partner's certificate goes through agree: the one-time
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
	"errors"
	"hash"

	"payhsm/fault"
	"payhsm/hsm/kdf"
	"payhsm/keyspec"
)

// KDF is a key derivation function of a key agreement.
type KDF uint8

// Key derivation functions.
const (
	KDFNistSP800 KDF = iota + 1 // NIST SP 800-56C one-step KDF
	KDFAnsiX963                 // ANSI X9.63 KDF
)

// KDFHash is the hash function of a key derivation.
type KDFHash uint8

// Key derivation hashes.
const (
	KDFSHA256 KDFHash = iota + 1
	KDFSHA384
	KDFSHA512
)

var errNotECDSA = errors.New("not an ECC key")

// agreementKey checks that w, the request's key subj on side, is a K3 ECC
// key pair whose modes allow deriving keys (the guide's "Valid keys" row for
// key agreement).
func agreementKey(w *WorkingKey, subj fault.Subject, side fault.Side) error {
	if !isAgreementKey(w) {
		return about(subj, side, "must be a TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT ECC key pair allowed to derive keys")
	}
	return nil
}

func isAgreementKey(w *WorkingKey) bool {
	a := w.Record.Attributes
	return a.Usage == keyspec.K3 && a.Class == keyspec.AsymmetricPair && a.Algorithm.IsECC() && (a.Modes.DeriveKey || a.Modes.NoRestrictions) && len(w.Material) > 0
}

// agree derives an a.KeyAlgorithm key from the K3 key pair priv (checked
// with agreementKey) and the partner's certificate a.Certificate, issued
// under the imported CA a.CAIdentifier; the curve must be at least as strong
// as the key. Its faults are about the agreement's inputs on side. The
// caller zeroes the key.
func (s *Service) agree(priv *WorkingKey, a *EcdhDerivation, side fault.Side) ([]byte, error) {
	curve, d := priv.Record.Attributes.Algorithm, a.KeyAlgorithm
	if !d.IsSymmetric() || d.KeyLen() == 0 {
		return nil, about(fault.SubjectDerivedKeyAlgorithm, side, "must be a TDES, AES or HMAC algorithm")
	}
	if !keyspec.AtLeastAsStrong(curve, d) {
		return nil, fault.Validationf("a %s key agreement is weaker than the %s key it would derive", curve, d)
	}
	var h func() hash.Hash
	switch a.Hash {
	case KDFSHA256:
		h = sha256.New
	case KDFSHA384:
		h = sha512.New384
	case KDFSHA512:
		h = sha512.New
	default:
		return nil, about(fault.SubjectKDFHash, side, "must be SHA-256, SHA-384 or SHA-512")
	}
	derive := kdf.OneStep
	switch a.KDF {
	case KDFNistSP800:
	case KDFAnsiX963:
		derive = kdf.X963
	default:
		return nil, about(fault.SubjectKDF, side, "must be the NIST SP 800-56C or the ANSI X9.63 key derivation function")
	}
	peer, _, err := s.verifyPartner(a.CAIdentifier, a.Certificate)
	if err != nil {
		return nil, onSide(err, side)
	}
	peerPub, ok := peer.PublicKey.(*ecdsa.PublicKey)
	if palg, known := certAlgorithm(peer); !ok || !known || palg != curve {
		return nil, about(fault.SubjectCertificate, side, "must certify an %s public key (the curve of the private key)", curve)
	}
	if peer.KeyUsage != 0 && peer.KeyUsage&x509.KeyUsageKeyAgreement == 0 {
		return nil, about(fault.SubjectCertificate, side, "the certificate's key usage does not allow key agreement")
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
		return nil, about(fault.SubjectCertificate, side, "the public key is not a valid point")
	}
	z, err := ep.ECDH(pp)
	if err != nil {
		return nil, about(fault.SubjectCertificate, side, "key agreement failed")
	}
	defer clear(z)
	key, err := derive(h, z, a.SharedInformation, d.KeyLen())
	if err != nil {
		return nil, fault.Internalf("derive key", err)
	}
	return key, nil
}
