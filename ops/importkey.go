package ops

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"payhsm/fault"
	"payhsm/hsm/tr31"
	"payhsm/keyspec"
	"payhsm/keystore"
)

const (
	tokenValidity = 30 * 24 * time.Hour
	tokenReuseMin = 7 * 24 * time.Hour
)

// importToken is an issued import token: an RSA wrapping key pair whose
// private key is stored as an X9.143 block under the profile main key.
type importToken struct {
	Version   int               `json:"v"`
	Token     string            `json:"token"`
	Type      string            `json:"type"` // tokenTypeNames
	Algorithm keyspec.Algorithm `json:"alg"`
	Profile   string            `json:"profile"`
	Created   time.Time         `json:"created"`
	Expires   time.Time         `json:"expires"`
	Cert      []byte            `json:"cert"`
	KeyBlock  string            `json:"keyBlock"`
}

// Token kinds: the prefix of the token string and of its metadata names.
const (
	importKind = "import"
	exportKind = "export"
)

// tokenTypeNames are the names token records and their metadata keys store
// a material type under: the spellings the first records were written with,
// kept so that stored tokens stay valid. They are storage names, not any
// edge's vocabulary.
var tokenTypeNames = map[KeyMaterialType]string{MaterialKeyCryptogram: "KEY_CRYPTOGRAM", MaterialTR34: "TR34_KEY_BLOCK"}

// material is the material type t was issued for (0 if unknown).
func (t *importToken) material() KeyMaterialType {
	for m, name := range tokenTypeNames {
		if name == t.Type {
			return m
		}
	}
	return 0
}

func tokenMeta(kind, token string) string { return kind + "-token/" + token }
func lastTokenMeta(kind, typ string, a keyspec.Algorithm) string {
	return kind + "-token-last/" + typ + "/" + string(a)
}

// GetParametersForImport issues (or, with reuse, returns the last) import
// token and wrapping key certificate for key cryptogram or TR-34 imports.
func (s *Service) GetParametersForImport(materialType KeyMaterialType, alg keyspec.Algorithm, reuse bool) (*ImportParameters, error) {
	switch materialType {
	case MaterialKeyCryptogram, MaterialTR34:
	default:
		return nil, fault.About(fault.SubjectKeyMaterialType, "%s imports need no import token; only key cryptogram and TR-34 key block imports do", materialType)
	}
	switch alg {
	case keyspec.RSA2048, keyspec.RSA3072, keyspec.RSA4096:
	default:
		return nil, fault.About(fault.SubjectTokenKeyAlgorithm, "must be RSA_2048, RSA_3072 or RSA_4096")
	}
	usage := "D1"
	if materialType == MaterialTR34 {
		usage = "K2"
	}
	return s.issueToken(importKind, materialType, alg, reuse, bindingHeader(usage, 'R', 'D', ""), x509.KeyUsageKeyEncipherment)
}

// issueToken issues (or, with reuse, returns the last still valid for at
// least 7 days, of the same kind, material type and algorithm) a token: an
// RSA key pair whose private key is stored under the profile main key with
// header h (bound to the token) and whose public key the profile CA certifies
// for certUsage, valid 30 days.
func (s *Service) issueToken(kind string, materialType KeyMaterialType, alg keyspec.Algorithm, reuse bool, h tr31.Header, certUsage x509.KeyUsage) (*ImportParameters, error) {
	s.tokenMu.Lock()
	defer s.tokenMu.Unlock()
	now := s.now()
	typ := tokenTypeNames[materialType]
	if reuse {
		if last, err := s.store.GetMeta(lastTokenMeta(kind, typ, alg)); err == nil {
			if t, err := s.loadToken(kind, string(last)); err == nil && t.Type == typ && t.Algorithm == alg && t.Expires.Sub(now) >= tokenReuseMin {
				return s.tokenParameters(t)
			}
		}
	}
	id, err := newKeyID()
	if err != nil {
		return nil, fault.Internalf("token id", err)
	}
	t := &importToken{Version: 1, Token: kind + "-token-" + id, Type: typ, Algorithm: alg,
		Profile: s.cfg.Profile, Created: now, Expires: now.Add(tokenValidity)}
	priv, pub, err := s.newKeyPair(alg)
	if err != nil {
		return nil, fault.Internalf("generate token key", err)
	}
	defer clear(priv)
	p, err := s.cust.Profile(t.Profile)
	if err != nil {
		return nil, fault.Internalf("profile main key", err)
	}
	h.Blocks = []tr31.OptionalBlock{{ID: bindingBlock, Data: tokenMeta(kind, t.Token)}}
	if t.KeyBlock, err = p.Wrap(h, priv); err != nil {
		return nil, fault.Internalf("wrap token key", err)
	}
	ca, err := s.authority(t.Profile)
	if err != nil {
		return nil, err
	}
	if t.Cert, err = ca.issue(pub, t.Token, "", certUsage, now, tokenValidity); err != nil {
		return nil, fault.Internalf("certify token key", err)
	}
	raw, _ := json.Marshal(t)
	if err := s.store.PutMeta(tokenMeta(kind, t.Token), raw); err != nil {
		return nil, fault.Internalf("store token", err)
	}
	if err := s.store.PutMeta(lastTokenMeta(kind, typ, alg), []byte(t.Token)); err != nil {
		return nil, fault.Internalf("store token", err)
	}
	return s.tokenParameters(t)
}

func (s *Service) tokenParameters(t *importToken) (*ImportParameters, error) {
	ca, err := s.authority(t.Profile)
	if err != nil {
		return nil, err
	}
	return &ImportParameters{Certificate: t.Cert, CertificateChain: ca.cert.Raw,
		Algorithm: t.Algorithm, Token: t.Token, ValidUntil: t.Expires}, nil
}

func (s *Service) loadToken(kind, token string) (*importToken, error) {
	if !strings.HasPrefix(token, kind+"-token-") {
		return nil, keystore.ErrNotFound
	}
	raw, err := s.store.GetMeta(tokenMeta(kind, token))
	if err != nil {
		return nil, err
	}
	var t importToken
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// ImportKey imports a key from one of the supported materials.
func (s *Service) ImportKey(in ImportKeyInput) (*Key, error) {
	if err := s.precheckRegions(in.ReplicationRegions); err != nil {
		return nil, err
	}
	switch {
	case in.KeyCryptogram != nil:
		return s.importCryptogram(in, in.KeyCryptogram)
	case in.Tr31KeyBlock != nil:
		return s.importTR31(in, in.Tr31KeyBlock)
	}
	return nil, fault.About(fault.SubjectKeyMaterial, "this key material type is not supported by this appliance")
}

// importCryptogram imports a symmetric key wrapped with RSA-OAEP under an import token's public key.
func (s *Service) importCryptogram(in ImportKeyInput, c *ImportKeyCryptogram) (*Key, error) {
	a := c.Attributes
	if err := keyspec.ValidateImport(a, ""); err != nil {
		return nil, err
	}
	if !a.Algorithm.IsSymmetric() {
		return nil, fault.About(fault.SubjectKeyAlgorithm, "a key cryptogram carries a symmetric key")
	}
	h, err := c.WrappingSpec.oaepHash()
	if err != nil {
		return nil, err
	}
	t, err := s.validToken(importKind, c.ImportToken, MaterialKeyCryptogram)
	if err != nil {
		return nil, err
	}
	if !a.Algorithm.IsHMAC() && keyspec.Strength(t.Algorithm) < keyspec.Strength(a.Algorithm) {
		return nil, weakerWrapping(t.Algorithm, a.Algorithm)
	}
	rsaKey, err := s.tokenKey(importKind, t)
	if err != nil {
		return nil, err
	}
	key, err := rsa.DecryptOAEP(h(), nil, rsaKey, c.Cryptogram, nil)
	if err != nil {
		return nil, fault.About(fault.SubjectWrappedKey, "the cryptogram does not decrypt under the import token's key with %s", c.WrappingSpec)
	}
	defer clear(key)
	if keyspec.Strength(t.Algorithm) < keyspec.KeyStrength(a.Algorithm, len(key)) {
		return nil, weakerWrapping(t.Algorithm, a.Algorithm)
	}
	return s.storeKey(in, a, "", c.Exportable, key)
}

// validToken loads an unexpired token of kind issued for material.
func (s *Service) validToken(kind, token string, material KeyMaterialType) (*importToken, error) {
	t, err := s.loadToken(kind, token)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, fault.About(fault.SubjectToken, "%s token not found", kind)
	} else if err != nil {
		return nil, fault.Internalf("read token", err)
	}
	if got := t.material(); got != material {
		return nil, fault.About(fault.SubjectToken, "the %s token was issued for a %s, not a %s", kind, got, material)
	}
	if !s.now().Before(t.Expires) {
		return nil, fault.About(fault.SubjectToken, "the %s token has expired", kind)
	}
	return t, nil
}

// weakerWrapping refuses a wrapping key weaker than the key it would protect.
// An HMAC key's strength is its length in bits, up to its hash's (NIST SP
// 800-107 Rev. 1 §5.3.4), which is why HMAC checks wait for the clear key.
func weakerWrapping(wrapping, key keyspec.Algorithm) error {
	return fault.KeyRule(fault.ViolationWrappingKey, "a %s wrapping key is weaker than the %s key it would protect", wrapping, key)
}

// tokenKey opens a token's RSA private key.
func (s *Service) tokenKey(kind string, t *importToken) (*rsa.PrivateKey, error) {
	p, err := s.cust.Profile(t.Profile)
	if err != nil {
		return nil, fault.Internalf("profile main key", err)
	}
	hdr, der, err := p.Unwrap(t.KeyBlock)
	if err != nil {
		return nil, fault.Internalf("open token key", err)
	}
	defer clear(der)
	if err := checkBinding(hdr, tokenMeta(kind, t.Token)); err != nil {
		return nil, fault.Internalf("open token key", err)
	}
	pk, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fault.Internalf("parse token key", err)
	}
	rsaKey, ok := pk.(*rsa.PrivateKey)
	if !ok {
		return nil, fault.Internalf("parse token key", errors.New("not RSA"))
	}
	return rsaKey, nil
}

// attributesFromHeader maps an imported X9.143 header onto key attributes;
// its faults are about the wrapped key (the block) that carried the header.
func attributesFromHeader(h tr31.Header, keyLen int) (keyspec.Attributes, bool, error) {
	usage, ok := keyspec.UsageFromTR31(h.KeyUsage)
	if !ok {
		return keyspec.Attributes{}, false, fault.About(fault.SubjectWrappedKey, "key usage %q is not supported", h.KeyUsage)
	}
	hm, _ := blockData(h, "HM")
	alg, err := keyspec.AlgorithmFromTR31(h.Algorithm, keyLen, hm)
	if err != nil {
		return keyspec.Attributes{}, false, fault.About(fault.SubjectWrappedKey, "%v", err)
	}
	if !alg.IsSymmetric() {
		return keyspec.Attributes{}, false, fault.About(fault.SubjectWrappedKey, "asymmetric keys are not imported from TR-31 key blocks")
	}
	modes, err := keyspec.ModesFromTR31(h.ModeOfUse)
	if err != nil {
		return keyspec.Attributes{}, false, fault.About(fault.SubjectWrappedKey, "%v", err)
	}
	exp, err := keyspec.ExportabilityFromTR31(h.Exportability)
	if err != nil {
		return keyspec.Attributes{}, false, fault.About(fault.SubjectWrappedKey, "%v", err)
	}
	return keyspec.Attributes{Usage: usage, Class: keyspec.Symmetric, Algorithm: alg, Modes: modes}, exp != keyspec.NonExportable, nil
}

// storeKey stores imported clear key material.
func (s *Service) storeKey(in ImportKeyInput, a keyspec.Attributes, derive keyspec.KeyUsage, exportable bool, key []byte) (*Key, error) {
	if !a.Algorithm.ValidImportLen(len(key)) {
		return nil, fault.About(fault.SubjectKeyMaterial, "a %d-byte key does not fit %s", len(key), a.Algorithm)
	}
	method, err := kcvMethod(a.Algorithm, in.KCVAlgorithm)
	if err != nil {
		return nil, err
	}
	id, err := newKeyID()
	if err != nil {
		return nil, fault.Internalf("key id", err)
	}
	rec := &keystore.Key{ID: id, Profile: s.cfg.Profile, Attributes: a, DeriveKeyUsage: derive,
		Exportable: exportable, Origin: OriginExternal, KCVAlgorithm: method}
	if rec.KCV, err = symmetricKCV(a.Algorithm, method, key); err != nil {
		return nil, err
	}
	if rec.KeyBlock, err = s.wrapStored(id, a, exportable, key); err != nil {
		return nil, err
	}
	return s.finishCreate(rec, in.Enabled, in.Tags, in.ReplicationRegions, nil)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
