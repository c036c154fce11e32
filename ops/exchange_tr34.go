package ops

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"

	"payhsm/fault"
	"payhsm/hsm/tr34"
	"payhsm/keyspec"
)

// The one TR-34 token format (X9 TR-34-2012) is the only one there is to
// import or export; an edge refuses any other it is asked for.
//
// Each side of a TR-34 exchange is either a short-lived key pair of an
// import or export token (GetParametersForImport / GetParametersForExport)
// or one of the customer's own key pairs with the certificate the partner
// knows it by ("Bring Your Own Certificate Authority" in the user guide):
// a TR31_S0 RSA key pair signs an export as the KDH (SigningKeyIdentifier
// and SigningKeyCertificate), a TR31_K2 RSA key pair receives an import as
// the KRD (WrappingKeyIdentifier and WrappingKeyCertificate). The
// certificate must certify that key pair's public key and be within its
// validity period; it need not chain to an imported CA, as the request
// gives no CA for it and it is the partner who relies on it (the partner's
// own certificate is the one checked against CertificateAuthority...).

// ImportTr34 imports a TR-34 two-pass token signed by a partner KDH whose
// certificate chains to an imported CA, encrypted to an import token's key
// or to one of the customer's K2 key pairs (WrappingKeyIdentifier).
type ImportTr34 struct {
	CAIdentifier           string
	SigningCertificate     []byte // the KDH's leaf certificate (DER)
	ImportToken            string
	WrappingKeyIdentifier  string // the customer's own KRD key pair (instead of ImportToken)
	WrappingKeyCertificate []byte // its certificate (DER), which the KDH encrypted to
	KeyBlock               []byte // the token (DER)
	RandomNonce            []byte // the two-pass nonce
}

// ExportTr34 exports a key as a TR-34 token signed with an export token's key
// or one of the customer's S0 key pairs (SigningKeyIdentifier), encrypted to
// the partner KRD's certificate.
type ExportTr34 struct {
	CAIdentifier          string
	Certificate           []byte // the KRD's wrapping certificate (DER)
	ExportToken           string
	SigningKeyIdentifier  string // the customer's own KDH key pair (instead of ExportToken)
	SigningKeyCertificate []byte // its certificate (DER), which the KRD verifies the token with
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

var errNotRSA = errors.New("not an RSA key")

// ownPair is one of the customer's RSA key pairs taking a side of a TR-34
// exchange, with the certificate the request carries for it.
type ownPair struct {
	key  *rsa.PrivateKey
	cert *x509.Certificate
	alg  keyspec.Algorithm
	arn  string
}

// ownRSAPair resolves ident, the request's key subj, as the customer's own
// RSA key pair of usage u whose modes of use allow it (modes, named what),
// and checks der, the certificate the request carries for it (the fault
// subject SubjectOwnCertificate): it must certify that key pair's public key,
// be within its validity period and, when it restricts key usage, allow ku.
func (s *Service) ownRSAPair(ident string, subj fault.Subject, u keyspec.KeyUsage, modes func(keyspec.ModesOfUse) bool, what string,
	der []byte, ku x509.KeyUsage) (*ownPair, error) {
	const side = fault.SideNone
	w, err := s.Working(ident, subj, side)
	if err != nil {
		return nil, err
	}
	defer w.Release()
	a := w.Record.Attributes
	switch {
	case a.Usage != u:
		return nil, keyRule(fault.ViolationUsage, subj, side, "must be a %s key pair, not %s", u, a.Usage)
	case a.Class != keyspec.AsymmetricPair || !a.Algorithm.IsRSA():
		return nil, keyRule(fault.ViolationAlgorithm, subj, side, "must be an RSA key pair (ASYMMETRIC_KEY_PAIR), not a %s %s", a.Algorithm, a.Class)
	case !modes(a.Modes):
		return nil, keyRule(fault.ViolationModes, subj, side, "the key pair's modes of use do not allow it to %s", what)
	}
	if len(der) == 0 {
		return nil, about(fault.SubjectOwnCertificate, side, "is required with a key pair of your own: the certificate of %s", w.ARN)
	}
	c, err := parseCertificate(der)
	if err != nil {
		f := fault.As(err)
		f.Subject = fault.SubjectOwnCertificate
		return nil, f
	}
	stored, err := x509.ParsePKIXPublicKey(w.Record.PublicKey)
	if err != nil {
		return nil, fault.Internalf("stored public key", err)
	}
	if pub, ok := c.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(stored) {
		return nil, about(fault.SubjectOwnCertificate, side, "does not certify the public key of %s", w.ARN)
	}
	if now := s.now(); now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return nil, about(fault.SubjectOwnCertificate, side, "the certificate is expired or not yet valid")
	}
	if c.KeyUsage != 0 && c.KeyUsage&ku == 0 {
		return nil, about(fault.SubjectOwnCertificate, side, "the certificate's key usage does not allow the key pair to %s", what)
	}
	pk, err := x509.ParsePKCS8PrivateKey(w.Material) // Material is shared and read-only
	if err != nil {
		return nil, fault.Internalf("parse key pair", err)
	}
	key, ok := pk.(*rsa.PrivateKey)
	if !ok {
		return nil, fault.Internalf("parse key pair", errNotRSA)
	}
	return &ownPair{key: key, cert: c, alg: a.Algorithm, arn: w.ARN}, nil
}

// tr34Side checks that a TR-34 request names exactly one of a token (what
// the token is) and a key pair of the customer's own (pairKind, the fault
// subject pairSubj), whose certificate may only come with it.
func tr34Side(token, pair string, pairCert []byte, tokenWhat string, pairSubj fault.Subject, pairKind string) error {
	switch {
	case token != "" && pair != "":
		return fault.About(fault.SubjectToken, "give either %s or a %s of your own, not both", tokenWhat, pairKind)
	case pair == "" && len(pairCert) > 0:
		return fault.About(pairSubj, "is required with the certificate of a %s of your own", pairKind)
	case token == "" && pair == "":
		return fault.About(fault.SubjectToken, "%s, or a %s of your own with its certificate, is required", tokenWhat, pairKind)
	}
	return nil
}

// ImportKeyTR34 imports a TR-34 key token (ImportKey's Tr34KeyBlock); in
// supplies the common members (KCV algorithm, enabled, tags). Nothing is
// stored unless the signature, the chain, the nonce, the recipient and the
// strength rules all check.
func (s *Service) ImportKeyTR34(in ImportKeyInput, b ImportTr34) (*Key, error) {
	if err := s.precheckRegions(in.ReplicationRegions); err != nil {
		return nil, err
	}
	if err := tr34Side(b.ImportToken, b.WrappingKeyIdentifier, b.WrappingKeyCertificate, "an import token from GetParametersForImport", fault.SubjectWrappingKey,
		"TR31_K2_TR34_ASYMMETRIC_KEY wrapping key pair"); err != nil {
		return nil, err
	}
	// The KRD: an import token's key pair, or the customer's K2 key pair.
	var (
		krdCert *x509.Certificate
		krdAlg  keyspec.Algorithm
		openKRD func() (*rsa.PrivateKey, error)
	)
	if b.WrappingKeyIdentifier != "" {
		own, err := s.ownRSAPair(b.WrappingKeyIdentifier, fault.SubjectWrappingKey, keyspec.K2,
			func(m keyspec.ModesOfUse) bool { return m.Decrypt || m.Unwrap }, "unwrap keys", b.WrappingKeyCertificate, x509.KeyUsageKeyEncipherment)
		if err != nil {
			return nil, err
		}
		krdCert, krdAlg = own.cert, own.alg
		openKRD = func() (*rsa.PrivateKey, error) { return own.key, nil }
	} else {
		t, err := s.validToken(importKind, b.ImportToken, MaterialTR34)
		if err != nil {
			return nil, err
		}
		if krdCert, err = x509.ParseCertificate(t.Cert); err != nil {
			return nil, fault.Internalf("token certificate", err)
		}
		krdAlg = t.Algorithm
		openKRD = func() (*rsa.PrivateKey, error) { return s.tokenKey(importKind, t) }
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
	if krdID, err := tr34.Identity(krdCert); err != nil || string(krdID) != string(tok.KRD) {
		return nil, fault.About(fault.SubjectWrappedKey, "the token is not encrypted to this wrapping key's certificate")
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
	krd, err := openKRD()
	if err != nil {
		return nil, err
	}
	key, err := tok.Open(krd)
	if err != nil {
		return nil, invalidBecause(fault.SubjectWrappedKey, "the key block does not open under the wrapping key", err)
	}
	defer clear(key)
	a, exportable, err := attributesFromHeader(h, len(key))
	if err != nil {
		return nil, err
	}
	if err := keyspec.ValidateImport(a, ""); err != nil {
		return nil, err
	}
	if !keyspec.AtLeastAsStrong(krdAlg, a.Algorithm) {
		return nil, fault.Validationf("a %s wrapping key is weaker than the %s key it would protect", krdAlg, a.Algorithm)
	}
	return s.storeKey(in, a, "", exportable, key)
}

// exportTR34 builds a TR-34 token for the KRD certificate, signed with the
// export token's key or the customer's own S0 key pair.
func (s *Service) exportTR34(e *exportable, x *ExportTr34) (*WrappedKey, error) {
	if err := tr34Side(x.ExportToken, x.SigningKeyIdentifier, x.SigningKeyCertificate, "an export token from GetParametersForExport", fault.SubjectSigningKey,
		"TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE signing key pair"); err != nil {
		return nil, err
	}
	var t *importToken
	if x.ExportToken != "" {
		var err error
		if t, err = s.validToken(exportKind, x.ExportToken, MaterialTR34); err != nil {
			return nil, err
		}
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
	// The KDH: an export token's key pair, or the customer's S0 key pair,
	// which must be as strong as the key it vouches for (the guide: "When
	// exporting AES-128, make sure that all keys are RSA-3072 or RSA-4096").
	var (
		kdhCert *x509.Certificate
		kdhKey  crypto.Signer
	)
	if t == nil {
		own, err := s.ownRSAPair(x.SigningKeyIdentifier, fault.SubjectSigningKey, keyspec.S0,
			func(m keyspec.ModesOfUse) bool { return m.Sign }, "sign", x.SigningKeyCertificate, x509.KeyUsageDigitalSignature)
		if err != nil {
			return nil, err
		}
		if !keyspec.AtLeastAsStrong(own.alg, e.attrs.Algorithm) {
			return nil, keyRuleAbout(fault.ViolationWrappingKey, fault.SubjectSigningKey, "a %s signing key is weaker than the %s key it would sign for", own.alg, e.attrs.Algorithm)
		}
		kdhCert, kdhKey = own.cert, own.key
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
	if t != nil {
		if kdhCert, err = x509.ParseCertificate(t.Cert); err != nil {
			return nil, fault.Internalf("token certificate", err)
		}
		if kdhKey, err = s.tokenKey(exportKind, t); err != nil {
			return nil, err
		}
	}
	der, err := tr34.Build(tr34.BuildInput{Key: e.key, Header: header, Nonce: nonce, KDH: kdhCert, KDHKey: kdhKey,
		KRD: krdCert, UseAES: e.attrs.Algorithm.IsAES()})
	if err != nil {
		return nil, fault.Internalf("build TR-34 token", err)
	}
	return &WrappedKey{WrappingKeyARN: s.keyARN(caKey.ID), Format: FormatTR34, Cryptogram: der}, nil
}
