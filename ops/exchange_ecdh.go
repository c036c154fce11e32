package ops

import (
	"payhsm/fault"
	"payhsm/hsm/tr31"
	"payhsm/keyspec"
)

// DiffieHellman names the ECDH key agreement that derives a one-time KBPK:
// our K3 key pair, the partner's K3 certificate (chaining to an imported CA)
// and the key derivation parameters. The derived key is never stored. Faults
// about it are about SubjectAgreementKey (the key pair),
// SubjectCertificateAuthority, SubjectCertificate,
// SubjectDerivedKeyAlgorithm, SubjectKDF and SubjectKDFHash.
type DiffieHellman struct {
	PrivateKeyIdentifier string
	CAIdentifier         string
	Certificate          []byte            // the partner's ECC certificate (DER)
	DeriveKeyAlgorithm   keyspec.Algorithm // the KBPK's algorithm
	KDF                  KDF
	Hash                 KDFHash
	SharedInformation    []byte
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

// agreedKBPK is a one-time KBPK derived by deriveKBPK: the clear key (the
// caller zeroes it), the ARN of the key pair and its curve, which bounds the
// strength of every key the KBPK carries (agreementProtects).
type agreedKBPK struct {
	key   []byte
	arn   string
	curve keyspec.Algorithm
}

// deriveKBPK runs the key agreement (agreeKey) for a one-time TDES or AES
// KBPK: the K3 key pair must derive K0 or K1 keys. Any TDES or AES KBPK may
// be derived on any curve; what the KBPK may carry is checked by the caller
// against the curve (agreementProtects) and the KBPK's own algorithm. Its
// faults are on side.
func (s *Service) deriveKBPK(dh DiffieHellman, side fault.Side) (*agreedKBPK, error) {
	const subj = fault.SubjectAgreementKey
	w, err := s.Working(dh.PrivateKeyIdentifier, subj, side)
	if err != nil {
		return nil, err
	}
	defer w.Release()
	if err := agreementKey(w, subj, side); err != nil {
		return nil, err
	}
	if u := w.Record.DeriveKeyUsage; u != keyspec.K0 && u != keyspec.K1 {
		return nil, about(subj, side, "the key pair derives %s keys, not key block protection keys (create it with DeriveKeyUsage TR31_K1_KEY_BLOCK_PROTECTION_KEY or TR31_K0_KEY_ENCRYPTION_KEY)", orDefault(string(u), "no"))
	}
	if d := dh.DeriveKeyAlgorithm; !d.IsTDES() && !d.IsAES() {
		return nil, about(fault.SubjectDerivedKeyAlgorithm, side, "must be a TDES or AES algorithm")
	}
	kbpk, err := s.agreeKey(w, &EcdhDerivation{CAIdentifier: dh.CAIdentifier, Certificate: dh.Certificate, KeyAlgorithm: dh.DeriveKeyAlgorithm,
		KDF: dh.KDF, Hash: dh.Hash, SharedInformation: dh.SharedInformation}, side)
	if err != nil {
		return nil, err
	}
	return &agreedKBPK{key: kbpk, arn: w.ARN, curve: w.Record.Attributes.Algorithm}, nil
}

// ImportKeyDiffieHellman imports a TR-31 block under an ECDH-derived KBPK
// (ImportKey's DiffieHellmanTr31KeyBlock).
func (s *Service) ImportKeyDiffieHellman(in ImportKeyInput, b ImportDiffieHellmanTr31) (*Key, error) {
	if err := s.precheckRegions(in.ReplicationRegions); err != nil {
		return nil, err
	}
	o, err := s.openAgreedBlock(b, fault.SideNone)
	if err != nil {
		return nil, err
	}
	defer clear(o.key)
	return s.storeKey(in, o.attrs, "", o.exportable, o.key)
}

// openAgreedBlock derives the KBPK of b (deriveKBPK) and opens b's key block
// under it with openTR31; the key it carries must be no stronger than the
// agreement's curve (agreementProtects). Its faults are on side. The KBPK is
// zeroed before it returns; the caller zeroes the opened key.
func (s *Service) openAgreedBlock(b ImportDiffieHellmanTr31, side fault.Side) (*openedBlock, error) {
	kbpk, err := s.deriveKBPK(b.DiffieHellman, side)
	if err != nil {
		return nil, err
	}
	defer clear(kbpk.key)
	o, err := openTR31(kbpk.key, b.DeriveKeyAlgorithm, b.KeyBlock)
	if err != nil {
		return nil, onSide(err, side)
	}
	if err := agreementProtects(kbpk.curve, o.attrs.Algorithm, len(o.key), false); err != nil {
		clear(o.key)
		return nil, onSide(err, side)
	}
	return o, nil
}

// exportDiffieHellman wraps the key in a TR-31 block under an ECDH-derived
// KBPK, which must be at least as strong as the key, as must the curve it is
// agreed on (agreementProtects).
func (s *Service) exportDiffieHellman(e *exportable, x *ExportDiffieHellmanTr31) (*WrappedKey, error) {
	d := x.DeriveKeyAlgorithm
	if (d.IsTDES() || d.IsAES()) && !keyspec.AtLeastAsStrong(d, e.attrs.Algorithm) {
		return nil, weakerWrapping(d, e.attrs.Algorithm)
	}
	h, err := e.exportHeader(x.Headers)
	if err != nil {
		return nil, err
	}
	kbpk, err := s.deriveKBPK(x.DiffieHellman, fault.SideNone)
	if err != nil {
		return nil, err
	}
	defer clear(kbpk.key)
	if err := agreementProtects(kbpk.curve, e.attrs.Algorithm, len(e.key), false); err != nil {
		return nil, err
	}
	h.Version = 'B'
	if d.IsAES() {
		h.Version = 'D'
	}
	block, err := tr31.Wrap(kbpk.key, h, e.key)
	if err != nil {
		return nil, fault.Wrap(fault.Validation, "the key cannot be wrapped in a TR-31 key block under the derived key", err)
	}
	return &WrappedKey{WrappingKeyARN: kbpk.arn, Format: FormatTR31, KeyMaterial: block}, nil
}
