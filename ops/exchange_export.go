package ops

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"sort"
	"strings"

	"payhsm/fault"
	"payhsm/hsm/dukpt"
	"payhsm/hsm/tr31"
	"payhsm/keyspec"
	"payhsm/keystore"
)

// Forms of wrapped key material (WrappedKey.Format, TranslatedKey.Format);
// each edge spells them its own way.
const (
	FormatKeyCryptogram = MaterialKeyCryptogram
	FormatTR31          = MaterialTR31
	FormatTR34          = MaterialTR34
)

// maxOptionalBlockChars is the model's limit on the combined optional blocks
// of KeyBlockHeaders (each block counts its 2-character ID, its 2-character
// length and its value).
const maxOptionalBlockChars = 112

// KeyBlockHeaders are the caller's changes to an exported key block header:
// only more restrictive modes of use and exportability, a key version and
// additional optional blocks.
type KeyBlockHeaders struct {
	Modes          *keyspec.ModesOfUse   // nil = the key's own
	Exportability  keyspec.Exportability // "" = EXPORTABLE
	KeyVersion     string                // "" = "00"
	OptionalBlocks map[string]string
}

// ExportKeyInput is ExportKey's request; exactly one material member is set.
type ExportKeyInput struct {
	KeyIdentifier string
	KCVAlgorithm  keyspec.KCVAlgorithm // the check value method ("" = the key's own)
	// DukptKSN, when set, exports the DUKPT initial key of this key serial
	// number (10 bytes for TDES, 12 for AES) derived from the BDK KeyIdentifier.
	DukptKSN []byte

	Tr31          *ExportTr31
	Tr34          *ExportTr34
	KeyCryptogram *ExportKeyCryptogram
	DiffieHellman *ExportDiffieHellmanTr31
}

// ExportTr31 exports under a stored K0/K1 key.
type ExportTr31 struct {
	WrappingKeyIdentifier string
	Headers               *KeyBlockHeaders
}

// ExportKeyCryptogram exports with RSA-OAEP to a partner certificate.
type ExportKeyCryptogram struct {
	CAIdentifier string // imported CA that signed Certificate
	Certificate  []byte // DER
	WrappingSpec WrappingSpec
}

// WrappedKey is ExportKey's answer: a key block (KeyMaterial) or a binary
// cryptogram (Cryptogram), by Format.
type WrappedKey struct {
	WrappingKeyARN string
	Format         KeyMaterialType // FormatKeyCryptogram, FormatTR31 or FormatTR34
	// KeyMaterial is an X9.143 (TR-31) key block: ASCII by definition.
	KeyMaterial string
	// Cryptogram is a key cryptogram (RSA-OAEP ciphertext) or a TR-34 token (DER).
	Cryptogram   []byte
	KCV          string // checkValueText
	KCVAlgorithm keyspec.KCVAlgorithm
}

// exportable is a key ready to leave: its attributes, stored header and
// clear material (owned, zeroed by release).
type exportable struct {
	rec    *keystore.Key
	attrs  keyspec.Attributes
	header tr31.Header
	key    []byte
	ipek   bool // an IPEK/IK derived for ExportDukptInitialKey
	ksn    []byte
}

func (e *exportable) release() { clear(e.key) }

// ExportKey exports a symmetric key under a KEK (TR-31) or to a partner's RSA
// certificate (TR-34 token or key cryptogram). Non-exportable keys never leave, and the
// wrapping key must be at least as strong as the key it protects.
func (s *Service) ExportKey(in ExportKeyInput) (*WrappedKey, error) {
	e, err := s.exportableKey(in)
	if err != nil {
		return nil, err
	}
	defer e.release()
	var out *WrappedKey
	switch {
	case in.Tr31 != nil:
		out, err = s.exportTR31(e, in.Tr31)
	case in.Tr34 != nil:
		out, err = s.exportTR34(e, in.Tr34)
	case in.KeyCryptogram != nil:
		out, err = s.exportCryptogram(e, in.KeyCryptogram)
	case in.DiffieHellman != nil:
		out, err = s.exportDiffieHellman(e, in.DiffieHellman)
	default:
		return nil, fault.About(fault.SubjectKeyMaterial, "this key material type is not supported by this appliance")
	}
	if err != nil {
		return nil, err
	}
	method := in.KCVAlgorithm
	if method == "" && !e.ipek {
		method = e.rec.KCVAlgorithm
	}
	if method, err = kcvMethod(e.attrs.Algorithm, method); err != nil {
		return nil, err
	}
	if out.KCV, err = symmetricKCV(e.attrs.Algorithm, method, e.key); err != nil {
		return nil, err
	}
	out.KCVAlgorithm = method
	return out, nil
}

// exportableKey resolves the key under export, checks it may leave and opens
// it; with a DUKPT KSN it derives the initial key from the BDK instead. Its
// faults about the key are about SubjectKey.
func (s *Service) exportableKey(in ExportKeyInput) (*exportable, error) {
	rec, err := s.resolve(in.KeyIdentifier)
	if err != nil {
		return nil, err
	}
	if err := s.usable(rec, in.KeyIdentifier); err != nil {
		return nil, err
	}
	a := rec.Attributes
	if !a.Algorithm.IsSymmetric() || a.Class != keyspec.Symmetric {
		return nil, fault.About(fault.SubjectKey, "only symmetric keys are exported; export a public key with GetPublicKeyCertificate")
	}
	if in.KCVAlgorithm != "" {
		if err := keyspec.ValidKCVAlgorithm(a.Algorithm, in.KCVAlgorithm); err != nil {
			return nil, fault.About(fault.SubjectKeyCheckValueAlgorithm, "%s is not a check value method for %s keys", in.KCVAlgorithm, a.Algorithm)
		}
	}
	// Whether the key may leave is the authenticated block header's to say
	// (loadMaterial refuses a record that disagrees with it).
	h, key, err := s.loadMaterial(rec)
	if err != nil {
		return nil, err
	}
	if in.DukptKSN == nil && h.Exportability != 'E' {
		clear(key)
		return nil, fault.About(fault.SubjectKey, "key %s is not exportable", in.KeyIdentifier)
	}
	e := &exportable{rec: rec, attrs: a, header: h, key: key}
	if in.DukptKSN != nil {
		if err := e.deriveInitialKey(in.DukptKSN); err != nil {
			e.release()
			return nil, err
		}
	}
	return e, nil
}

// deriveInitialKey replaces a BDK by the DUKPT initial key (IPEK/IK) of ksn:
// ANSI X9.24-1-2009 A.6 for TDES (10-byte KSN, counter ignored) and ANSI
// X9.24-3-2017 6.3.3 for AES (12-byte KSN, initial key ID = first 8 bytes).
func (e *exportable) deriveInitialKey(requested []byte) error {
	if e.attrs.Usage != keyspec.B0 {
		return fault.About(fault.SubjectKey, "an initial DUKPT key is derived from a TR31_B0_BASE_DERIVATION_KEY, not %s", e.attrs.Usage)
	}
	ksn := append([]byte(nil), requested...) // the counter bits are cleared below; the caller's copy stays
	var ik []byte
	var err error
	switch {
	case e.attrs.Algorithm == keyspec.TDES2Key && len(ksn) == dukpt.TDESKSNLen:
		ik, err = dukpt.TDESInitialKey(e.key, dukpt.TDESKSN(ksn))
		ksn[7] &^= 0x1F // KS block: the initial KSN, counter zeroed
		ksn[8], ksn[9] = 0, 0
	case e.attrs.Algorithm.IsAES() && len(ksn) == dukpt.AESKSNLen:
		ik, err = dukpt.AESInitialKey(e.key, [8]byte(ksn[:8]))
		ksn = ksn[:8] // IK block: the initial key ID
	case e.attrs.Algorithm.IsTDES():
		return fault.About(fault.SubjectInitialKeySerialNumber, "a TDES DUKPT key serial number is %d bytes, and the BDK must be TDES_2KEY", dukpt.TDESKSNLen)
	default:
		return fault.About(fault.SubjectInitialKeySerialNumber, "an AES DUKPT key serial number is %d bytes", dukpt.AESKSNLen)
	}
	if err != nil {
		return fault.Internalf("derive initial DUKPT key", err)
	}
	clear(e.key)
	e.key, e.ipek, e.ksn = ik, true, ksn
	e.header = tr31.Header{KeyUsage: "B1", Algorithm: e.attrs.Algorithm.TR31(), ModeOfUse: 'X', Exportability: 'S'}
	return nil
}

// exportTR31 wraps the key in a version B (TDES KEK) or D (AES KEK) key block.
func (s *Service) exportTR31(e *exportable, x *ExportTr31) (*WrappedKey, error) {
	return s.wrapKeyBlock(e, x.WrappingKeyIdentifier, x.Headers)
}

// wrapKeyBlock wraps e in a version B (TDES KEK) or D (AES KEK) key block
// under the stored K0 or K1 key kekIdent, which must allow wrapping and be at
// least as strong as e; kh changes the header. The KEK comes from the
// working-key cache. Its faults about the KEK are about SubjectWrappingKey.
func (s *Service) wrapKeyBlock(e *exportable, kekIdent string, kh *KeyBlockHeaders) (*WrappedKey, error) {
	kek, err := s.keyEncryptionKey(kekIdent, false)
	if err != nil {
		return nil, err
	}
	defer kek.Release()
	ka := kek.Record.Attributes
	if e.rec != nil && kek.Record.ID == e.rec.ID && kek.Record.KeyBlock == e.rec.KeyBlock {
		return nil, keyRuleAbout(fault.ViolationWrappingKey, fault.SubjectWrappingKey, "a key cannot be exported under itself")
	}
	if !keyspec.AtLeastAsStrong(ka.Algorithm, e.attrs.Algorithm) {
		return nil, weakerWrapping(ka.Algorithm, e.attrs.Algorithm)
	}
	h, err := e.exportHeader(kh)
	if err != nil {
		return nil, err
	}
	switch {
	case ka.Algorithm.IsTDES():
		h.Version = 'B'
	case ka.Algorithm.IsAES():
		h.Version = 'D'
	default:
		return nil, fault.About(fault.SubjectWrappingKey, "a %s key cannot protect a TR-31 key block", ka.Algorithm)
	}
	block, err := tr31.Wrap(kek.Material, h, e.key) // Material is shared and read-only
	if err != nil {
		return nil, fault.Wrap(fault.Validation, "the key cannot be wrapped in a TR-31 key block under this wrapping key", err)
	}
	return &WrappedKey{WrappingKeyARN: kek.ARN, Format: FormatTR31, KeyMaterial: block}, nil
}

// keyEncryptionKey resolves a key that may wrap (or, with unwrap, open)
// TR-31 key blocks: a K0 or K1 key whose modes of use allow it. It comes from
// the working-key cache (the caller releases it); its faults are about
// SubjectWrappingKey.
func (s *Service) keyEncryptionKey(ident string, unwrap bool) (_ *WorkingKey, err error) {
	kek, err := s.Working(ident, fault.SubjectWrappingKey, fault.SideNone)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			kek.Release()
		}
	}()
	ka := kek.Record.Attributes
	op, allowed := "wrapping", ka.Modes.Wrap || ka.Modes.Encrypt
	if unwrap {
		op, allowed = "unwrapping", ka.Modes.Unwrap || ka.Modes.Decrypt
	}
	if ka.Usage != keyspec.K0 && ka.Usage != keyspec.K1 {
		return nil, keyRuleAbout(fault.ViolationUsage, fault.SubjectWrappingKey, "TR-31 key block %s needs a TR31_K0_KEY_ENCRYPTION_KEY or TR31_K1_KEY_BLOCK_PROTECTION_KEY, not %s", op, ka.Usage)
	}
	if !allowed && !ka.Modes.NoRestrictions {
		return nil, keyRuleAbout(fault.ViolationModes, fault.SubjectWrappingKey, "the wrapping key's modes of use do not allow %s", op)
	}
	return kek, nil
}

// exportHeader is the header of an exported key block: the key's usage,
// algorithm and mode of use (with its HM block), exportability E, key version
// 00, changed by the caller's KeyBlockHeaders.
func (e *exportable) exportHeader(kh *KeyBlockHeaders) (tr31.Header, error) {
	src := e.header
	h := tr31.Header{KeyUsage: src.KeyUsage, Algorithm: src.Algorithm, ModeOfUse: src.ModeOfUse, KeyVersion: "00", Exportability: 'E'}
	if e.ipek {
		h.Exportability = src.Exportability
		id := "KS"
		if e.attrs.Algorithm.IsAES() {
			id = "IK"
		}
		// X9.143 writes the KS and IK blocks' values in hexadecimal: a
		// deliberate hex encoding in ops, the key block's own format, not a
		// transport encoding (see checkValueText for the other).
		h.Blocks = append(h.Blocks, tr31.OptionalBlock{ID: id, Data: strings.ToUpper(hex.EncodeToString(e.ksn))})
	}
	if hm, ok := blockData(src, "HM"); ok {
		h.Blocks = append(h.Blocks, tr31.OptionalBlock{ID: "HM", Data: hm})
	}
	if kh == nil {
		return h, nil
	}
	if kh.Modes != nil {
		m, cur := *kh.Modes, e.attrs.Modes
		if e.ipek {
			cur = keyspec.ModesOfUse{DeriveKey: true}
		}
		if !cur.NoRestrictions && (m.Encrypt && !cur.Encrypt || m.Decrypt && !cur.Decrypt || m.Wrap && !cur.Wrap ||
			m.Unwrap && !cur.Unwrap || m.Generate && !cur.Generate || m.Sign && !cur.Sign || m.Verify && !cur.Verify ||
			m.DeriveKey && !cur.DeriveKey || m.NoRestrictions) {
			return h, fault.About(fault.SubjectHeaderModesOfUse, "may only restrict the key's modes of use (%s), not widen them", cur)
		}
		code, err := m.TR31()
		if err != nil {
			return h, fault.About(fault.SubjectHeaderModesOfUse, "%v", err)
		}
		h.ModeOfUse = code
	}
	// An exportable key may leave in any form (SENSITIVE in X9.143 terms), so
	// each of the three values is at least as restrictive as the key's own.
	if x := kh.Exportability; x != "" {
		if x.TR31() == 0 {
			return h, fault.About(fault.SubjectHeaderExportability, "must be EXPORTABLE, NON_EXPORTABLE or SENSITIVE")
		}
		h.Exportability = x.TR31()
	}
	if v := kh.KeyVersion; v != "" {
		if len(v) != 2 || !isUpperAlnum(v[0]) || !isUpperAlnum(v[1]) {
			return h, fault.About(fault.SubjectHeaderKeyVersion, "must be two digits or upper-case letters")
		}
		h.KeyVersion = v
	}
	ids := make([]string, 0, len(kh.OptionalBlocks))
	total := 0
	for id, v := range kh.OptionalBlocks {
		switch {
		case len(id) != 2 || !isUpperAlnum(id[0]) || !isUpperAlnum(id[1]):
			return h, fault.About(fault.SubjectHeaderOptionalBlocks, "an optional block ID is two digits or upper-case letters")
		case id == "PB" || id == "HM" || id == bindingBlock:
			return h, fault.About(fault.SubjectHeaderOptionalBlocks, "optional block %s is set by the service", id)
		case len(v) == 0 || !isAlnumString(v):
			return h, fault.About(fault.SubjectHeaderOptionalBlocks, "optional block %s must be 1 to 108 letters or digits", id)
		}
		if _, dup := blockData(h, id); dup {
			return h, fault.About(fault.SubjectHeaderOptionalBlocks, "optional block %s is set by the service", id)
		}
		total += 4 + len(v)
		ids = append(ids, id)
	}
	if total > maxOptionalBlockChars {
		return h, fault.About(fault.SubjectHeaderOptionalBlocks, "the optional blocks take %d characters; at most %d are allowed", total, maxOptionalBlockChars)
	}
	sort.Strings(ids)
	for _, id := range ids {
		h.Blocks = append(h.Blocks, tr31.OptionalBlock{ID: id, Data: kh.OptionalBlocks[id]})
	}
	return h, nil
}

func isUpperAlnum(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' }

func isAlnumString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isUpperAlnum(c) && (c < 'a' || c > 'z') {
			return false
		}
	}
	return true
}

// exportCryptogram encrypts the key with RSA-OAEP to a partner's certificate
// that chains to an imported CA. The key must be exportable in non-key-block
// form, which an AWS-style Exportable key is.
func (s *Service) exportCryptogram(e *exportable, x *ExportKeyCryptogram) (*WrappedKey, error) {
	h, err := x.WrappingSpec.oaepHash()
	if err != nil {
		return nil, err
	}
	c, ca, err := s.verifyPartner(x.CAIdentifier, x.Certificate)
	if err != nil {
		return nil, err
	}
	pub, ok := c.PublicKey.(*rsa.PublicKey)
	alg, known := certAlgorithm(c)
	if !ok || !known {
		return nil, fault.About(fault.SubjectCertificate, "must certify an RSA_2048, RSA_3072 or RSA_4096 public key")
	}
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
		return nil, fault.About(fault.SubjectCertificate, "the certificate's key usage does not allow key encipherment")
	}
	if !keyspec.AtLeastAsStrong(alg, e.attrs.Algorithm) {
		return nil, fault.Validationf("a %s wrapping key is weaker than the %s key it would protect", alg, e.attrs.Algorithm)
	}
	ct, err := rsa.EncryptOAEP(h(), rand.Reader, pub, e.key, nil)
	if err != nil {
		return nil, fault.Internalf("RSA-OAEP encrypt", err)
	}
	return &WrappedKey{WrappingKeyARN: s.keyARN(ca.ID), Format: FormatKeyCryptogram, Cryptogram: ct}, nil
}

// ExportParameters is GetParametersForExport's answer: the KDH signing
// certificate, its CA, and the export token.
type ExportParameters = ImportParameters

// GetParametersForExport issues (or, with reuse, returns the last) export
// token and TR-34 KDH signing key certificate. Only TR-34 exports need a token
// (the AWS model's KeyMaterialType documentation); the signing key is RSA.
func (s *Service) GetParametersForExport(materialType KeyMaterialType, alg keyspec.Algorithm, reuse bool) (*ExportParameters, error) {
	if materialType != MaterialTR34 {
		return nil, fault.About(fault.SubjectKeyMaterialType, "%s exports need no export token; only TR-34 key block exports do", materialType)
	}
	switch alg {
	case keyspec.RSA2048, keyspec.RSA3072, keyspec.RSA4096:
	default:
		return nil, fault.About(fault.SubjectTokenKeyAlgorithm, "must be RSA_2048, RSA_3072 or RSA_4096")
	}
	return s.issueToken(exportKind, materialType, alg, reuse, bindingHeader("S0", 'R', 'S', ""), x509.KeyUsageDigitalSignature)
}
