package ops

import (
	"payhsm/fault"
	"payhsm/hsm/tr31"
	"payhsm/keyspec"
)

// DiffieHellman names the ECDH key agreement that derives a one-time KBPK:
// our K3 key pair, the partner's K3 certificate (chaining to an imported CA)
// and the key derivation parameters. The derived key is never stored.
//
// Transitional (issue #13): agreeKey (ecdh_agree.go, data plane) takes this
// type and decodes Certificate and SharedInformation itself, and names KDF
// and Hash by their AWS spellings; they become DER, bytes and typed values
// together with agreeKey.
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

// deriveKBPK runs the key agreement (agreeKey) for a one-time TDES or AES
// KBPK: the K3 key pair must derive K0 or K1 keys. The caller zeroes the key.
// m is the request member of the derivation, which agreeKey still names its
// faults by (issue #13: until it takes subjects).
func (s *Service) deriveKBPK(dh DiffieHellman, m string) ([]byte, string, error) {
	f := tr31ECDHFields(m)
	w, err := s.Working(dh.PrivateKeyIdentifier, fault.SubjectKey, fault.SideNone)
	if err != nil {
		return nil, "", err
	}
	if err := checkAgreementKey(w, f.priv); err != nil {
		return nil, "", err
	}
	// These two faults name f's members, as agreeKey's do, until it takes subjects (issue #13).
	if u := w.Record.DeriveKeyUsage; u != keyspec.K0 && u != keyspec.K1 {
		return nil, "", fault.FieldInvalid(f.priv, "the key pair derives %s keys, not key block protection keys (create it with DeriveKeyUsage TR31_K1_KEY_BLOCK_PROTECTION_KEY or TR31_K0_KEY_ENCRYPTION_KEY)", orDefault(string(u), "no"))
	}
	if d := dh.DeriveKeyAlgorithm; !d.IsTDES() && !d.IsAES() {
		return nil, "", fault.FieldInvalid(f.alg, "must be a TDES or AES algorithm")
	}
	kbpk, err := s.agreeKey(w, dh, f)
	if err != nil {
		return nil, "", err
	}
	return kbpk, w.ARN, nil
}

// ImportKeyDiffieHellman imports a TR-31 block under an ECDH-derived KBPK
// (ImportKey's DiffieHellmanTr31KeyBlock).
func (s *Service) ImportKeyDiffieHellman(in ImportKeyInput, b ImportDiffieHellmanTr31) (*Key, error) {
	o, err := s.openAgreedBlock(b, legacyImportDHMember)
	if err != nil {
		return nil, err
	}
	defer clear(o.key)
	return s.storeKey(in, o.attrs, "", o.exportable, o.key)
}

// openAgreedBlock derives the KBPK of b (deriveKBPK, member m) and opens b's
// key block under it with openTR31. The KBPK is zeroed before it returns;
// the caller zeroes the opened key.
func (s *Service) openAgreedBlock(b ImportDiffieHellmanTr31, m string) (*openedBlock, error) {
	kbpk, _, err := s.deriveKBPK(b.DiffieHellman, m)
	if err != nil {
		return nil, err
	}
	defer clear(kbpk)
	return openTR31(kbpk, b.DeriveKeyAlgorithm, b.KeyBlock)
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
	kbpk, arn, err := s.deriveKBPK(x.DiffieHellman, legacyExportDHMember)
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
