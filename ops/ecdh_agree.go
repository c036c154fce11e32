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
	"errors"
	"fmt"
	"hash"
	"strings"

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

// agree derives an a.KeyAlgorithm key that is used as it is (a dynamic
// key): the curve must be at least as strong as that key (agreementProtects).
// See agreeKey for the rest.
func (s *Service) agree(priv *WorkingKey, a *EcdhDerivation, side fault.Side) ([]byte, error) {
	if d := a.KeyAlgorithm; d.IsSymmetric() && d.KeyLen() > 0 {
		if err := agreementProtects(priv.Record.Attributes.Algorithm, d, d.KeyLen(), true); err != nil {
			return nil, onSide(err, side)
		}
	}
	return s.agreeKey(priv, a, side)
}

// agreementCurves are the curves of a K3 key pair, weakest first.
var agreementCurves = []keyspec.Algorithm{keyspec.ECCP256, keyspec.ECCP384, keyspec.ECCP521}

// agreementProtects refuses a key agreement on curve that would protect (or,
// when derived, be) a key of algorithm key and keyLen bytes stronger than the
// agreement: keying material derived from an ECDH shared secret has at most
// the security strength of the agreement, whatever length the KDF stretches
// it to (NIST SP 800-56A and SP 800-56C; the comparable strengths are those
// of SP 800-57 Part 1 Rev. 5 Table 2, which PCI PIN Security Requirements
// v3.1 Normative Annex C repeats: ECC 256 = AES-128, 384 = AES-192,
// 512 = AES-256). So a P-256 agreement may derive an AES_256 KBPK to carry a
// TDES or AES_128 key (the user guide's ECDH import and export examples),
// while an AES_192 key needs P-384 or P-521 and an AES_256 key P-521 (the
// guide's "Minimum key strengths" table). The fault names the curves that
// would do. Protecting, it is a wrapping-key rule about the key pair
// (SubjectAgreementKey); deriving a key used as it is (a dynamic key), a
// Validation fault about no one member, as the derivation as a whole is.
func agreementProtects(curve, key keyspec.Algorithm, keyLen int, derived bool) error {
	have, need := keyspec.Strength(curve), keyspec.KeyStrength(key, keyLen)
	if have >= need {
		return nil
	}
	var ok []string
	for _, c := range agreementCurves {
		if keyspec.Strength(c) >= need {
			ok = append(ok, string(c))
		}
	}
	const format = "a key agreement on %s (%d-bit security strength) is weaker than the %s key it would %s; use an %s key pair " +
		"(PCI key-strength equivalences: ECC_NIST_P256 = AES_128, ECC_NIST_P384 = AES_192, ECC_NIST_P521 = AES_256)"
	if derived {
		return fault.Validationf(format, curve, have, key, fmt.Sprintf("derive (%d bits)", need), strings.Join(ok, " or "))
	}
	return keyRuleAbout(fault.ViolationWrappingKey, fault.SubjectAgreementKey, format,
		curve, have, key, fmt.Sprintf("protect (%d bits), whatever key block protection key it derives", need), strings.Join(ok, " or "))
}

// agreeKey derives an a.KeyAlgorithm key from the K3 key pair priv (checked
// with agreementKey) and the partner's certificate a.Certificate, issued
// under the imported CA a.CAIdentifier. It does not compare strengths: its
// callers do, against the key the agreement protects (agree,
// agreementProtects). Its faults are about the agreement's inputs on side.
// The caller zeroes the key.
func (s *Service) agreeKey(priv *WorkingKey, a *EcdhDerivation, side fault.Side) ([]byte, error) {
	curve, d := priv.Record.Attributes.Algorithm, a.KeyAlgorithm
	if !d.IsSymmetric() || d.KeyLen() == 0 {
		return nil, about(fault.SubjectDerivedKeyAlgorithm, side, "must be a TDES, AES or HMAC algorithm")
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
