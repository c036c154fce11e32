package ops

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"

	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/keystore"
)

// Trust: RootCertificatePublicKey imports a self-signed CA certificate as a
// PUBLIC_KEY key; TrustedCertificatePublicKey imports a certificate (an
// intermediate CA or a partner's leaf) that must chain to an already imported
// CA key. The issuing key of every trusted certificate is recorded in the
// metadata ("cert-issuer/<id>"), so that using a certificate re-checks the
// whole path up to its root: every CA on it must still exist, be enabled and
// be within its validity period.

// maxCertificateLen bounds a certificate (the AWS model's CertificateType
// max, in characters of its wire form, bounds its DER too).
const maxCertificateLen = 32768

// ImportCertificateInput imports a root (CAIdentifier == "") or trusted certificate.
type ImportCertificateInput struct {
	Attributes   keyspec.Attributes
	Certificate  []byte // DER
	CAIdentifier string // the issuing CA key (trusted certificates only)
	KCVAlgorithm keyspec.KCVAlgorithm
	Enabled      *bool
	Tags         []Tag
	// RequesterComment is shown to the approvers when a root certificate
	// import needs Multi-Party Approval (then it is required).
	RequesterComment string
	// Caller is who sent the request, named in the audit entries of its
	// Multi-Party Approval decision.
	Caller Caller
	// ReplicationRegions as ImportKeyInput's: a certificate (a public key)
	// cannot be replicated, so any region is refused.
	ReplicationRegions []string
}

func issuerMeta(id string) string { return "cert-issuer/" + id }

// parseCertificate parses a certificate the request carries (DER). Its
// faults are about SubjectCertificate and never echo the input.
func parseCertificate(der []byte) (*x509.Certificate, error) {
	if len(der) == 0 || len(der) > maxCertificateLen {
		return nil, fault.About(fault.SubjectCertificate, "must be a certificate of 1 to %d bytes", maxCertificateLen)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, invalidBecause(fault.SubjectCertificate, "not a valid X.509 certificate", err)
	}
	return c, nil
}

// certAlgorithm is the KeyAlgorithm of a certificate's public key.
func certAlgorithm(c *x509.Certificate) (keyspec.Algorithm, bool) {
	switch pk := c.PublicKey.(type) {
	case *rsa.PublicKey:
		switch pk.N.BitLen() {
		case 2048:
			return keyspec.RSA2048, true
		case 3072:
			return keyspec.RSA3072, true
		case 4096:
			return keyspec.RSA4096, true
		}
	case *ecdsa.PublicKey:
		switch pk.Curve {
		case elliptic.P256():
			return keyspec.ECCP256, true
		case elliptic.P384():
			return keyspec.ECCP384, true
		case elliptic.P521():
			return keyspec.ECCP521, true
		}
	}
	return "", false
}

// verifyUnder checks that c is signed by anchor and that both are within their
// validity at the service's current time (x509 path validation with anchor as
// the only trust anchor: signature, validity, basic constraints, path length).
// Its fault is about subject (the certificate under check).
func (s *Service) verifyUnder(subject fault.Subject, c, anchor *x509.Certificate) error {
	roots := x509.NewCertPool()
	roots.AddCert(anchor)
	_, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: s.now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return invalidBecause(subject, "the certificate does not chain to the certificate authority, or it or the authority is expired or not yet valid", err)
	}
	return nil
}

// trustAnchor resolves a CertificateAuthorityPublicKeyIdentifier: an imported
// CA certificate (root or trusted intermediate) whose whole path to its root is
// still usable and within validity. It returns the CA key and its
// certificate; its faults are about SubjectCertificateAuthority.
func (s *Service) trustAnchor(ident string) (*keystore.Key, *x509.Certificate, error) {
	k, err := s.resolve(ident)
	if err != nil {
		return nil, nil, err
	}
	ca, err := s.caCert(k, ident)
	if err != nil {
		return nil, nil, err
	}
	cur, cert := k, ca
	for depth := 0; ; depth++ {
		if depth > 8 {
			return nil, nil, fault.About(fault.SubjectCertificateAuthority, "the certificate authority's chain is too long")
		}
		parentID, err := s.store.GetMeta(issuerMeta(cur.ID))
		if errors.Is(err, keystore.ErrNotFound) {
			break // a root
		} else if err != nil {
			return nil, nil, fault.Internalf("read certificate issuer", err)
		}
		parent, err := s.store.GetKey(string(parentID))
		if err != nil || parent.State != StateCreateComplete {
			return nil, nil, fault.About(fault.SubjectCertificateAuthority, "the certificate authority's issuer no longer exists")
		}
		pc, err := s.caCert(parent, s.keyARN(parent.ID))
		if err != nil {
			return nil, nil, err
		}
		if err := s.verifyUnder(fault.SubjectCertificateAuthority, cert, pc); err != nil {
			return nil, nil, err
		}
		cur, cert = parent, pc
	}
	return k, ca, nil
}

// caCert checks that k is a usable imported CA certificate and returns it.
func (s *Service) caCert(k *keystore.Key, ident string) (*x509.Certificate, error) {
	if err := s.usable(k, ident); err != nil {
		return nil, err
	}
	if k.Attributes.Class != keyspec.PublicKey || k.Attributes.Usage != keyspec.S0 || len(k.Certificate) == 0 {
		return nil, fault.About(fault.SubjectCertificateAuthority, "must name an imported certificate authority (a TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE public key certificate)")
	}
	c, err := x509.ParseCertificate(k.Certificate)
	if err != nil {
		return nil, fault.Internalf("stored certificate", err)
	}
	if !c.IsCA || !c.BasicConstraintsValid {
		return nil, fault.About(fault.SubjectCertificateAuthority, "the named certificate is not a certificate authority")
	}
	now := s.now()
	if now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return nil, fault.About(fault.SubjectCertificateAuthority, "the certificate authority's certificate is expired or not yet valid")
	}
	return c, nil
}

// verifyPartner parses a partner certificate (DER) and validates it against
// the CA key named by caIdent; it returns the certificate and the CA key.
func (s *Service) verifyPartner(caIdent string, der []byte) (*x509.Certificate, *keystore.Key, error) {
	c, err := parseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	caKey, ca, err := s.trustAnchor(caIdent)
	if err != nil {
		return nil, nil, err
	}
	if err := s.verifyUnder(fault.SubjectCertificate, c, ca); err != nil {
		return nil, nil, err
	}
	return c, caKey, nil
}

// ImportCertificate imports a root certificate (CAIdentifier == "") or a
// trusted certificate. Nothing is stored unless every check passes.
func (s *Service) ImportCertificate(in ImportCertificateInput) (*Key, error) {
	if err := s.precheckRegions(in.ReplicationRegions); err != nil {
		return nil, err
	}
	a := in.Attributes
	if err := keyspec.ValidateImport(a, ""); err != nil {
		return nil, err
	}
	if a.Class != keyspec.PublicKey {
		return nil, fault.About(fault.SubjectKeyClass, "certificates are imported as PUBLIC_KEY")
	}
	if in.KCVAlgorithm != "" && in.KCVAlgorithm != keyspec.KCVSHA1 {
		return nil, fault.About(fault.SubjectKeyCheckValueAlgorithm, "public keys use the SHA_1 check value")
	}
	c, err := parseCertificate(in.Certificate)
	if err != nil {
		return nil, err
	}
	if alg, ok := certAlgorithm(c); !ok || alg != a.Algorithm {
		return nil, fault.About(fault.SubjectKeyAlgorithm, "does not match the certificate's public key")
	}
	var parent *keystore.Key
	if in.CAIdentifier == "" {
		if a.Usage != keyspec.S0 {
			return nil, fault.About(fault.SubjectKeyUsage, "a root certificate is imported as TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE")
		}
		if !c.IsCA || !c.BasicConstraintsValid {
			return nil, fault.About(fault.SubjectCertificate, "a root certificate must be a CA certificate (basic constraints cA=TRUE)")
		}
		if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
			return nil, fault.About(fault.SubjectCertificate, "the root certificate's key usage does not allow certificate signing")
		}
		if err := c.CheckSignatureFrom(c); err != nil {
			return nil, invalidBecause(fault.SubjectCertificate, "a root certificate must be self-signed", err)
		}
		if now := s.now(); now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return nil, fault.About(fault.SubjectCertificate, "the certificate is expired or not yet valid")
		}
	} else {
		var ca *x509.Certificate
		if parent, ca, err = s.trustAnchor(in.CAIdentifier); err != nil {
			return nil, err
		}
		if err := s.verifyUnder(fault.SubjectCertificate, c, ca); err != nil {
			return nil, err
		}
		if err := leafUsageFits(a.Usage, c); err != nil {
			return nil, fault.About(fault.SubjectCertificate, "%v", err)
		}
	}
	// A root certificate import asks Multi-Party Approval last, once the
	// request is otherwise valid: an approved session is bound to the
	// certificate, and is consumed here (given back if the import fails).
	var mpa *MpaStatus
	release := func() {}
	if in.CAIdentifier == "" {
		if mpa, release, err = s.authorizeMpa(MpaImportRootCertificate, c.Raw, in.RequesterComment, in.Caller); err != nil {
			return nil, err
		}
	}
	id, err := newKeyID()
	if err != nil {
		release()
		return nil, fault.Internalf("key id", err)
	}
	rec := &keystore.Key{ID: id, Profile: s.cfg.Profile, Attributes: a, Origin: OriginExternal,
		PublicKey: c.RawSubjectPublicKeyInfo, Certificate: c.Raw, KCV: publicKCV(c.RawSubjectPublicKeyInfo), KCVAlgorithm: keyspec.KCVSHA1}
	if mpa != nil {
		// Recorded before the key: GetKey shows the session the key was approved under.
		if err := s.keepMpaStatus(id, mpa); err != nil {
			release()
			return nil, fault.Internalf("store the approval status", err)
		}
		k, err := s.finishCreate(rec, in.Enabled, in.Tags, in.ReplicationRegions, nil)
		if err != nil {
			release()
			return nil, err
		}
		k.Mpa = mpa
		return k, nil
	}
	if parent != nil {
		if err := s.store.PutMeta(issuerMeta(id), []byte(parent.ID)); err != nil {
			return nil, fault.Internalf("store certificate issuer", err)
		}
	}
	// The issuer is recorded first: a record without its issuer would be
	// taken for a root. An issuer left behind by a failed create names an id
	// no key has.
	return s.finishCreate(rec, in.Enabled, in.Tags, in.ReplicationRegions, nil)
}

// leafUsageFits checks a certificate's X.509 key usage against the key usage
// it is imported for (when the certificate restricts its usage at all).
func leafUsageFits(u keyspec.KeyUsage, c *x509.Certificate) error {
	if c.KeyUsage == 0 {
		return nil
	}
	var need x509.KeyUsage
	switch u {
	case keyspec.S0:
		need = x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign
	case keyspec.D1, keyspec.K2:
		need = x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment
	case keyspec.K3:
		need = x509.KeyUsageKeyAgreement
	}
	if c.KeyUsage&need == 0 {
		return errors.New("the certificate's key usage does not allow this key usage")
	}
	return nil
}
