package ops

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"strings"

	"payhsm/fault"
	"payhsm/hsm/tr34"
	"payhsm/keyspec"
	"payhsm/keystore"
)

// TR34Format is the only TR-34 KeyBlockFormat (the AWS Tr34KeyBlockFormat enum).
const TR34Format = "X9_TR34_2012"

// ImportTr34 imports a TR-34 two-pass token signed by a partner KDH whose
// certificate chains to an imported CA, encrypted to an import token's key.
type ImportTr34 struct {
	CAIdentifier          string
	SigningCertificate    string // the KDH's leaf certificate (base64 PEM)
	ImportToken           string
	WrappingKeyIdentifier string // BYOCA KRD key: not supported
	KeyBlock              string // hex DER
	Format                string
	RandomNonce           string // hex, the two-pass nonce
}

// ExportTr34 exports a key as a TR-34 token signed with an export token's key
// and encrypted to the partner KRD's certificate.
type ExportTr34 struct {
	CAIdentifier          string
	Certificate           string // the KRD's wrapping certificate (base64 PEM)
	ExportToken           string
	SigningKeyIdentifier  string // BYOCA KDH key: not supported
	SigningKeyCertificate string
	Format                string
	RandomNonce           string // hex; a fresh one when empty
	Headers               *KeyBlockHeaders
}

// validToken loads an unexpired token of kind issued for typ.
func (s *Service) validToken(kind, token, typ, field string) (*importToken, error) {
	t, err := s.loadToken(kind, token)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, fault.FieldInvalid(field, "%s token not found", kind)
	} else if err != nil {
		return nil, fault.Internalf("read token", err)
	}
	if t.Type != typ {
		return nil, fault.FieldInvalid(field, "the token was issued for %s, not %s", t.Type, typ)
	}
	if !s.now().Before(t.Expires) {
		return nil, fault.FieldInvalid(field, "the token has expired")
	}
	return t, nil
}

// partnerRSA checks a partner certificate holds an RSA key allowed the given use.
func partnerRSA(c *x509.Certificate, use x509.KeyUsage, field string) (*rsa.PublicKey, keyspec.Algorithm, error) {
	pub, ok := c.PublicKey.(*rsa.PublicKey)
	alg, known := certAlgorithm(c)
	if !ok || !known {
		return nil, "", fault.FieldInvalid(field, "must certify an RSA_2048, RSA_3072 or RSA_4096 public key")
	}
	if c.KeyUsage != 0 && c.KeyUsage&use == 0 {
		return nil, "", fault.FieldInvalid(field, "the certificate's key usage does not allow this use")
	}
	return pub, alg, nil
}

// ImportKeyTR34 imports a TR-34 key token (ImportKey's Tr34KeyBlock); in
// supplies the common members (KCV algorithm, enabled, tags). Nothing is
// stored unless the signature, the chain, the nonce, the recipient and the
// strength rules all check.
func (s *Service) ImportKeyTR34(in ImportKeyInput, b ImportTr34) (*Key, error) {
	const m = "KeyMaterial.Tr34KeyBlock"
	if b.Format != TR34Format {
		return nil, fault.FieldInvalid(m+".KeyBlockFormat", "must be %s", TR34Format)
	}
	if b.WrappingKeyIdentifier != "" || b.ImportToken == "" {
		return nil, fault.FieldInvalid(m+".ImportToken", "an import token from GetParametersForImport is required (a customer KRD key is not supported)")
	}
	t, err := s.validToken(importKind, b.ImportToken, MaterialTR34, m+".ImportToken")
	if err != nil {
		return nil, err
	}
	kdhCert, _, err := s.verifyLeaf(b.CAIdentifier, m+".CertificateAuthorityPublicKeyIdentifier", b.SigningCertificate, m+".SigningKeyCertificate")
	if err != nil {
		return nil, err
	}
	kdhPub, _, err := partnerRSA(kdhCert, x509.KeyUsageDigitalSignature, m+".SigningKeyCertificate")
	if err != nil {
		return nil, err
	}
	der, err := hex.DecodeString(b.KeyBlock)
	if err != nil {
		return nil, fault.FieldInvalid(m+".WrappedKeyBlock", "must be hexadecimal")
	}
	tok, err := tr34.Parse(der)
	if err != nil {
		return nil, fault.Wrap(fault.Validation, m+".WrappedKeyBlock: not a TR-34 two-pass key token", err)
	}
	if kdhID, err := tr34.Identity(kdhCert); err != nil || string(kdhID) != string(tok.KDH) {
		return nil, fault.FieldInvalid(m+".SigningKeyCertificate", "the token was not signed by this certificate's key")
	}
	tokCert, err := x509.ParseCertificate(t.Cert)
	if err != nil {
		return nil, fault.Internalf("token certificate", err)
	}
	if krdID, err := tr34.Identity(tokCert); err != nil || string(krdID) != string(tok.KRD) {
		return nil, fault.FieldInvalid(m+".WrappedKeyBlock", "the token is not encrypted to this import token's wrapping key")
	}
	if err := tok.Verify(kdhPub); err != nil {
		return nil, fault.Wrap(fault.Validation, m+".WrappedKeyBlock: the KDH signature or the envelope digest does not verify", err)
	}
	nonce, err := hex.DecodeString(b.RandomNonce)
	if err != nil || len(nonce) == 0 {
		return nil, fault.FieldInvalid(m+".RandomNonce", "the two-pass random nonce (hexadecimal) is required")
	}
	if tok.Nonce == nil || !hmacEqual(hex.EncodeToString(tok.Nonce), b.RandomNonce) {
		return nil, fault.FieldInvalid(m+".RandomNonce", "does not match the nonce the KDH signed")
	}
	h, err := tr34.ParseHeader(tok.Header)
	if err != nil {
		return nil, fault.Wrap(fault.Validation, m+".WrappedKeyBlock: malformed key block header", err)
	}
	krd, err := s.tokenKey(importKind, t)
	if err != nil {
		return nil, err
	}
	key, err := tok.Open(krd)
	if err != nil {
		return nil, fault.Wrap(fault.Validation, m+".WrappedKeyBlock: the key block does not open under the import token's key", err)
	}
	defer clear(key)
	a, exportable, err := attributesFromHeaderField(h, len(key), m+".WrappedKeyBlock")
	if err != nil {
		return nil, err
	}
	if err := keyspec.ValidateImport(a, ""); err != nil {
		return nil, err
	}
	if !keyspec.AtLeastAsStrong(t.Algorithm, a.Algorithm) {
		return nil, fault.Validationf("a %s wrapping key is weaker than the %s key it would protect", t.Algorithm, a.Algorithm)
	}
	return s.storeImported(in, a, "", exportable, key, m)
}

// exportTR34 builds a TR-34 token for the KRD certificate, signed with the
// export token's key.
func (s *Service) exportTR34(e *exportable, x *ExportTr34) (*WrappedKey, error) {
	const m = "KeyMaterial.Tr34KeyBlock"
	if x.Format != TR34Format {
		return nil, fault.FieldInvalid(m+".KeyBlockFormat", "must be %s", TR34Format)
	}
	if x.SigningKeyIdentifier != "" || x.SigningKeyCertificate != "" || x.ExportToken == "" {
		return nil, fault.FieldInvalid(m+".ExportToken", "an export token from GetParametersForExport is required (a customer KDH signing key is not supported)")
	}
	t, err := s.validToken(exportKind, x.ExportToken, MaterialTR34, m+".ExportToken")
	if err != nil {
		return nil, err
	}
	krdCert, caKey, err := s.verifyLeaf(x.CAIdentifier, m+".CertificateAuthorityPublicKeyIdentifier", x.Certificate, m+".WrappingKeyCertificate")
	if err != nil {
		return nil, err
	}
	_, alg, err := partnerRSA(krdCert, x509.KeyUsageKeyEncipherment, m+".WrappingKeyCertificate")
	if err != nil {
		return nil, err
	}
	if !keyspec.AtLeastAsStrong(alg, e.attrs.Algorithm) {
		return nil, fault.Validationf("a %s wrapping key is weaker than the %s key it would protect", alg, e.attrs.Algorithm)
	}
	if a := e.attrs.Algorithm; !a.IsTDES() && a != keyspec.AES128 {
		return nil, fault.FieldInvalid("ExportKeyIdentifier", "TR-34 carries TDES and AES_128 keys, not %s", a)
	}
	h, err := e.exportHeader(x.Headers, m+".KeyBlockHeaders")
	if err != nil {
		return nil, err
	}
	h.Version = 'D'
	header, err := tr34.EncodeHeader(h)
	if err != nil {
		return nil, fault.Internalf("TR-34 header", err)
	}
	nonce := make([]byte, 8)
	if x.RandomNonce != "" {
		if nonce, err = hex.DecodeString(x.RandomNonce); err != nil || len(nonce) < 8 || len(nonce) > 16 {
			return nil, fault.FieldInvalid(m+".RandomNonce", "must be 16 to 32 hexadecimal digits")
		}
	} else if _, err := rand.Read(nonce); err != nil {
		return nil, fault.Internalf("nonce", err)
	}
	kdhCert, err := x509.ParseCertificate(t.Cert)
	if err != nil {
		return nil, fault.Internalf("token certificate", err)
	}
	kdhKey, err := s.tokenKey(exportKind, t)
	if err != nil {
		return nil, err
	}
	der, err := tr34.Build(tr34.BuildInput{Key: e.key, Header: header, Nonce: nonce, KDH: kdhCert, KDHKey: kdhKey,
		KRD: krdCert, UseAES: e.attrs.Algorithm.IsAES()})
	if err != nil {
		return nil, fault.Internalf("build TR-34 token", err)
	}
	return &WrappedKey{WrappingKeyARN: s.keyARN(caKey.ID), Format: FormatTR34, KeyMaterial: strings.ToUpper(hex.EncodeToString(der))}, nil
}
