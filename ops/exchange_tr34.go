package ops

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"

	"payhsm/fault"
	"payhsm/hsm/tr34"
	"payhsm/keyspec"
)

// The one TR-34 token format (X9 TR-34-2012) is the only one there is to
// import or export; an edge refuses any other it is asked for.

// ImportTr34 imports a TR-34 two-pass token signed by a partner KDH whose
// certificate chains to an imported CA, encrypted to an import token's key.
type ImportTr34 struct {
	CAIdentifier          string
	SigningCertificate    []byte // the KDH's leaf certificate (DER)
	ImportToken           string
	WrappingKeyIdentifier string // BYOCA KRD key: not supported
	KeyBlock              []byte // the token (DER)
	RandomNonce           []byte // the two-pass nonce
}

// ExportTr34 exports a key as a TR-34 token signed with an export token's key
// and encrypted to the partner KRD's certificate.
type ExportTr34 struct {
	CAIdentifier          string
	Certificate           []byte // the KRD's wrapping certificate (DER)
	ExportToken           string
	SigningKeyIdentifier  string // BYOCA KDH key: not supported
	SigningKeyCertificate []byte // BYOCA KDH certificate: not supported
	RandomNonce           []byte // 8 to 16 bytes; a fresh one when nil
	Headers               *KeyBlockHeaders
}

// partnerRSA checks a partner certificate holds an RSA key allowed the given use.
func partnerRSA(c *x509.Certificate, use x509.KeyUsage) (*rsa.PublicKey, keyspec.Algorithm, error) {
	pub, ok := c.PublicKey.(*rsa.PublicKey)
	alg, known := certAlgorithm(c)
	if !ok || !known {
		return nil, "", fault.About(fault.SubjectCertificate, "must certify an RSA_2048, RSA_3072 or RSA_4096 public key")
	}
	if c.KeyUsage != 0 && c.KeyUsage&use == 0 {
		return nil, "", fault.About(fault.SubjectCertificate, "the certificate's key usage does not allow this use")
	}
	return pub, alg, nil
}

// ImportKeyTR34 imports a TR-34 key token (ImportKey's Tr34KeyBlock); in
// supplies the common members (KCV algorithm, enabled, tags). Nothing is
// stored unless the signature, the chain, the nonce, the recipient and the
// strength rules all check.
func (s *Service) ImportKeyTR34(in ImportKeyInput, b ImportTr34) (*Key, error) {
	if b.WrappingKeyIdentifier != "" || b.ImportToken == "" {
		return nil, fault.About(fault.SubjectToken, "an import token from GetParametersForImport is required (a customer KRD key is not supported)")
	}
	t, err := s.validToken(importKind, b.ImportToken, MaterialTR34)
	if err != nil {
		return nil, err
	}
	kdhCert, _, err := s.verifyPartner(b.CAIdentifier, b.SigningCertificate)
	if err != nil {
		return nil, err
	}
	kdhPub, _, err := partnerRSA(kdhCert, x509.KeyUsageDigitalSignature)
	if err != nil {
		return nil, err
	}
	tok, err := tr34.Parse(b.KeyBlock)
	if err != nil {
		return nil, invalidBecause(fault.SubjectWrappedKey, "not a TR-34 two-pass key token", err)
	}
	if kdhID, err := tr34.Identity(kdhCert); err != nil || string(kdhID) != string(tok.KDH) {
		return nil, fault.About(fault.SubjectCertificate, "the token was not signed by this certificate's key")
	}
	tokCert, err := x509.ParseCertificate(t.Cert)
	if err != nil {
		return nil, fault.Internalf("token certificate", err)
	}
	if krdID, err := tr34.Identity(tokCert); err != nil || string(krdID) != string(tok.KRD) {
		return nil, fault.About(fault.SubjectWrappedKey, "the token is not encrypted to this import token's wrapping key")
	}
	if err := tok.Verify(kdhPub); err != nil {
		return nil, invalidBecause(fault.SubjectWrappedKey, "the KDH signature or the envelope digest does not verify", err)
	}
	if len(b.RandomNonce) == 0 {
		return nil, fault.About(fault.SubjectNonce, "the two-pass random nonce is required")
	}
	if tok.Nonce == nil || !hmac.Equal(tok.Nonce, b.RandomNonce) {
		return nil, fault.About(fault.SubjectNonce, "does not match the nonce the KDH signed")
	}
	h, err := tr34.ParseHeader(tok.Header)
	if err != nil {
		return nil, invalidBecause(fault.SubjectWrappedKey, "malformed key block header", err)
	}
	krd, err := s.tokenKey(importKind, t)
	if err != nil {
		return nil, err
	}
	key, err := tok.Open(krd)
	if err != nil {
		return nil, invalidBecause(fault.SubjectWrappedKey, "the key block does not open under the import token's key", err)
	}
	defer clear(key)
	a, exportable, err := attributesFromHeader(h, len(key))
	if err != nil {
		return nil, err
	}
	if err := keyspec.ValidateImport(a, ""); err != nil {
		return nil, err
	}
	if !keyspec.AtLeastAsStrong(t.Algorithm, a.Algorithm) {
		return nil, fault.Validationf("a %s wrapping key is weaker than the %s key it would protect", t.Algorithm, a.Algorithm)
	}
	return s.storeKey(in, a, "", exportable, key)
}

// exportTR34 builds a TR-34 token for the KRD certificate, signed with the
// export token's key.
func (s *Service) exportTR34(e *exportable, x *ExportTr34) (*WrappedKey, error) {
	if x.SigningKeyIdentifier != "" || x.SigningKeyCertificate != nil || x.ExportToken == "" {
		return nil, fault.About(fault.SubjectToken, "an export token from GetParametersForExport is required (a customer KDH signing key is not supported)")
	}
	t, err := s.validToken(exportKind, x.ExportToken, MaterialTR34)
	if err != nil {
		return nil, err
	}
	krdCert, caKey, err := s.verifyPartner(x.CAIdentifier, x.Certificate)
	if err != nil {
		return nil, err
	}
	_, alg, err := partnerRSA(krdCert, x509.KeyUsageKeyEncipherment)
	if err != nil {
		return nil, err
	}
	if !keyspec.AtLeastAsStrong(alg, e.attrs.Algorithm) {
		return nil, fault.Validationf("a %s wrapping key is weaker than the %s key it would protect", alg, e.attrs.Algorithm)
	}
	if a := e.attrs.Algorithm; !a.IsTDES() && a != keyspec.AES128 {
		return nil, fault.About(fault.SubjectKey, "TR-34 carries TDES and AES_128 keys, not %s", a)
	}
	h, err := e.exportHeader(x.Headers)
	if err != nil {
		return nil, err
	}
	h.Version = 'D'
	header, err := tr34.EncodeHeader(h)
	if err != nil {
		return nil, fault.Internalf("TR-34 header", err)
	}
	nonce := make([]byte, 8)
	if x.RandomNonce != nil {
		if nonce = x.RandomNonce; len(nonce) < 8 || len(nonce) > 16 {
			return nil, fault.About(fault.SubjectNonce, "must be 8 to 16 bytes")
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
	return &WrappedKey{WrappingKeyARN: s.keyARN(caKey.ID), Format: FormatTR34, Cryptogram: der}, nil
}
