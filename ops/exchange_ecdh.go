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

// deriveKBPK runs the key agreement (agree) for a one-time TDES or AES KBPK:
// the K3 key pair must derive K0 or K1 keys. Its faults are on side. The
// caller zeroes the key.
func (s *Service) deriveKBPK(dh DiffieHellman, side fault.Side) ([]byte, string, error) {
	const subj = fault.SubjectAgreementKey
	w, err := s.Working(dh.PrivateKeyIdentifier, subj, side)
	if err != nil {
		return nil, "", err
	}
	defer w.Release()
	if err := agreementKey(w, subj, side); err != nil {
		return nil, "", err
	}
	if u := w.Record.DeriveKeyUsage; u != keyspec.K0 && u != keyspec.K1 {
		return nil, "", about(subj, side, "the key pair derives %s keys, not key block protection keys (create it with DeriveKeyUsage TR31_K1_KEY_BLOCK_PROTECTION_KEY or TR31_K0_KEY_ENCRYPTION_KEY)", orDefault(string(u), "no"))
	}
	if d := dh.DeriveKeyAlgorithm; !d.IsTDES() && !d.IsAES() {
		return nil, "", about(fault.SubjectDerivedKeyAlgorithm, side, "must be a TDES or AES algorithm")
	}
	kbpk, err := s.agree(w, &EcdhDerivation{CAIdentifier: dh.CAIdentifier, Certificate: dh.Certificate, KeyAlgorithm: dh.DeriveKeyAlgorithm,
		KDF: dh.KDF, Hash: dh.Hash, SharedInformation: dh.SharedInformation}, side)
	if err != nil {
		return nil, "", err
	}
	return kbpk, w.ARN, nil
}

// ImportKeyDiffieHellman imports a TR-31 block under an ECDH-derived KBPK
// (ImportKey's DiffieHellmanTr31KeyBlock).
func (s *Service) ImportKeyDiffieHellman(in ImportKeyInput, b ImportDiffieHellmanTr31) (*Key, error) {
	o, err := s.openAgreedBlock(b, fault.SideNone)
	if err != nil {
		return nil, err
	}
	defer clear(o.key)
	return s.storeKey(in, o.attrs, "", o.exportable, o.key)
}

// openAgreedBlock derives the KBPK of b (deriveKBPK) and opens b's key block
// under it with openTR31; its faults are on side. The KBPK is zeroed before
// it returns; the caller zeroes the opened key.
func (s *Service) openAgreedBlock(b ImportDiffieHellmanTr31, side fault.Side) (*openedBlock, error) {
	kbpk, _, err := s.deriveKBPK(b.DiffieHellman, side)
	if err != nil {
		return nil, err
	}
	defer clear(kbpk)
	o, err := openTR31(kbpk, b.DeriveKeyAlgorithm, b.KeyBlock)
	return o, onSide(err, side)
}

// exportDiffieHellman wraps the key in a TR-31 block under an ECDH-derived KBPK.
func (s *Service) exportDiffieHellman(e *exportable, x *ExportDiffieHellmanTr31) (*WrappedKey, error) {
	d := x.DeriveKeyAlgorithm
	if (d.IsTDES() || d.IsAES()) && !keyspec.AtLeastAsStrong(d, e.attrs.Algorithm) {
		return nil, weakerWrapping(d, e.attrs.Algorithm)
	}
	h, err := e.exportHeader(x.Headers)
	if err != nil {
		return nil, err
	}
	kbpk, arn, err := s.deriveKBPK(x.DiffieHellman, fault.SideNone)
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
