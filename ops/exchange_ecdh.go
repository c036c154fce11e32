package ops

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"hash"
	"strings"

	"payhsm/fault"
	"payhsm/hsm/kdf"
	"payhsm/hsm/tr31"
	"payhsm/ops/keyspec"
)

// DiffieHellman names the ECDH key agreement that derives a one-time KBPK:
// our K3 key pair, the partner's K3 certificate (chaining to an imported CA)
// and the key derivation parameters. The derived key is never stored.
type DiffieHellman struct {
	PrivateKeyIdentifier string
	CAIdentifier         string
	Certificate          string            // the partner's ECC certificate (base64 PEM)
	DeriveKeyAlgorithm   keyspec.Algorithm // the KBPK's algorithm
	KDF                  string            // NIST_SP800 or ANSI_X963
	Hash                 string            // SHA_256, SHA_384 or SHA_512
	SharedInformation    string            // hex
}

// ImportDiffieHellmanTr31 imports a TR-31 block protected by an ECDH-derived KBPK.
type ImportDiffieHellmanTr31 struct {
	DiffieHellman
	KeyBlock string
}

// ExportDiffieHellmanTr31 exports a key in a TR-31 block under an ECDH-derived KBPK.
type ExportDiffieHellmanTr31 struct {
	DiffieHellman
	Headers *KeyBlockHeaders
}

// deriveKBPK runs the key agreement and the KDF. The caller zeroes the key.
func (s *Service) deriveKBPK(dh DiffieHellman, m string) ([]byte, string, error) {
	rec, err := s.resolve(dh.PrivateKeyIdentifier)
	if err != nil {
		return nil, "", err
	}
	if err := s.usable(rec, dh.PrivateKeyIdentifier); err != nil {
		return nil, "", err
	}
	a := rec.Attributes
	if a.Usage != keyspec.K3 || a.Class != keyspec.AsymmetricPair || !a.Algorithm.IsECC() || !(a.Modes.DeriveKey || a.Modes.NoRestrictions) {
		return nil, "", fault.FieldInvalid(m+".PrivateKeyIdentifier", "must be a TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT ECC key pair allowed to derive keys")
	}
	if rec.DeriveKeyUsage != keyspec.K0 && rec.DeriveKeyUsage != keyspec.K1 {
		return nil, "", fault.FieldInvalid(m+".PrivateKeyIdentifier", "the key pair derives %s keys, not key block protection keys (create it with DeriveKeyUsage TR31_K1_KEY_BLOCK_PROTECTION_KEY or TR31_K0_KEY_ENCRYPTION_KEY)", orDefault(string(rec.DeriveKeyUsage), "no"))
	}
	d := dh.DeriveKeyAlgorithm
	if !d.IsTDES() && !d.IsAES() {
		return nil, "", fault.FieldInvalid(m+".DeriveKeyAlgorithm", "must be a TDES or AES algorithm")
	}
	if !keyspec.AtLeastAsStrong(a.Algorithm, d) {
		return nil, "", fault.Validationf("a %s key agreement is weaker than the %s key it would derive", a.Algorithm, d)
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
		return nil, "", fault.FieldInvalid(m+".KeyDerivationHashAlgorithm", "must be SHA_256, SHA_384 or SHA_512")
	}
	derive := kdf.OneStep
	switch dh.KDF {
	case "NIST_SP800":
	case "ANSI_X963":
		derive = kdf.X963
	default:
		return nil, "", fault.FieldInvalid(m+".KeyDerivationFunction", "must be NIST_SP800 or ANSI_X963")
	}
	info, err := hex.DecodeString(dh.SharedInformation)
	if err != nil {
		return nil, "", fault.FieldInvalid(m+".DerivationData.SharedInformation", "must be hexadecimal")
	}
	peer, _, err := s.verifyLeaf(dh.CAIdentifier, m+".CertificateAuthorityPublicKeyIdentifier", dh.Certificate, m+".PublicKeyCertificate")
	if err != nil {
		return nil, "", err
	}
	peerPub, ok := peer.PublicKey.(*ecdsa.PublicKey)
	if palg, known := certAlgorithm(peer); !ok || !known || palg != a.Algorithm {
		return nil, "", fault.FieldInvalid(m+".PublicKeyCertificate", "must certify an %s public key (the curve of the private key)", a.Algorithm)
	}
	if peer.KeyUsage != 0 && peer.KeyUsage&x509.KeyUsageKeyAgreement == 0 {
		return nil, "", fault.FieldInvalid(m+".PublicKeyCertificate", "the certificate's key usage does not allow key agreement")
	}
	_, der, err := s.loadMaterial(rec)
	if err != nil {
		return nil, "", err
	}
	pk, err := x509.ParsePKCS8PrivateKey(der)
	clear(der)
	if err != nil {
		return nil, "", fault.Internalf("parse key agreement key", err)
	}
	priv, ok := pk.(*ecdsa.PrivateKey)
	if !ok {
		return nil, "", fault.Internalf("parse key agreement key", errNotECDSA)
	}
	ep, err := priv.ECDH()
	if err != nil {
		return nil, "", fault.Internalf("key agreement key", err)
	}
	pp, err := peerPub.ECDH()
	if err != nil {
		return nil, "", fault.FieldInvalid(m+".PublicKeyCertificate", "the public key is not a valid point")
	}
	z, err := ep.ECDH(pp)
	if err != nil {
		return nil, "", fault.FieldInvalid(m+".PublicKeyCertificate", "key agreement failed")
	}
	defer clear(z)
	kbpk, err := derive(h, z, info, d.KeyLen())
	if err != nil {
		return nil, "", fault.Internalf("derive KBPK", err)
	}
	return kbpk, s.keyARN(rec.ID), nil
}

var errNotECDSA = errors.New("not an ECC key")

// ImportKeyDiffieHellman imports a TR-31 block under an ECDH-derived KBPK
// (ImportKey's DiffieHellmanTr31KeyBlock).
func (s *Service) ImportKeyDiffieHellman(in ImportKeyInput, b ImportDiffieHellmanTr31) (*Key, error) {
	const m = "KeyMaterial.DiffieHellmanTr31KeyBlock"
	kbpk, _, err := s.deriveKBPK(b.DiffieHellman, m)
	if err != nil {
		return nil, err
	}
	defer clear(kbpk)
	d := b.DeriveKeyAlgorithm
	if v := b.KeyBlock; len(v) > 0 && (v[0] == 'D') != d.IsAES() {
		return nil, fault.FieldInvalid(m+".WrappedKeyBlock", "a version %c key block cannot be protected by a %s key", v[0], d)
	}
	h, key, err := tr31.Unwrap(kbpk, b.KeyBlock)
	if err != nil {
		return nil, fault.Wrap(fault.Validation, m+".WrappedKeyBlock: the key block is malformed or does not verify under the derived key", err)
	}
	defer clear(key)
	if kp, ok := blockData(h, "KP"); ok {
		method := keyspec.KCVANSIX924
		if strings.HasPrefix(kp, "01") {
			method = keyspec.KCVCMAC
		}
		want, err := symmetricKCV(d, method, kbpk)
		if err != nil || len(kp) < 4 || len(kp)-2 > len(want) || !hmacEqual(kp[2:], want[:len(kp)-2]) {
			return nil, fault.FieldInvalid(m+".WrappedKeyBlock", "the KP optional block names a different wrapping key")
		}
	}
	a, exportable, err := attributesFromHeaderField(h, len(key), m+".WrappedKeyBlock")
	if err != nil {
		return nil, err
	}
	if err := keyspec.ValidateImport(a, ""); err != nil {
		return nil, err
	}
	if !keyspec.AtLeastAsStrong(d, a.Algorithm) {
		return nil, fault.Validationf("a %s wrapping key is weaker than the %s key it would protect", d, a.Algorithm)
	}
	return s.storeImported(in, a, "", exportable, key, m)
}

// exportDiffieHellman wraps the key in a TR-31 block under an ECDH-derived KBPK.
func (s *Service) exportDiffieHellman(e *exportable, x *ExportDiffieHellmanTr31) (*WrappedKey, error) {
	const m = "KeyMaterial.DiffieHellmanTr31KeyBlock"
	d := x.DeriveKeyAlgorithm
	if (d.IsTDES() || d.IsAES()) && !keyspec.AtLeastAsStrong(d, e.attrs.Algorithm) {
		return nil, fault.Validationf("a %s wrapping key is weaker than the %s key it would protect", d, e.attrs.Algorithm)
	}
	h, err := e.exportHeader(x.Headers, m+".KeyBlockHeaders")
	if err != nil {
		return nil, err
	}
	kbpk, arn, err := s.deriveKBPK(x.DiffieHellman, m)
	if err != nil {
		return nil, err
	}
	defer clear(kbpk)
	h.Version = 'B'
	if d.IsAES() {
		h.Version = 'D'
	}
	block, err := tr31.Wrap(kbpk, h, e.key)
	if err != nil {
		return nil, fault.Wrap(fault.Validation, "the key cannot be wrapped in a TR-31 key block under the derived key", err)
	}
	return &WrappedKey{WrappingKeyARN: arn, Format: FormatTR31, KeyMaterial: block}, nil
}
