package ops

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"

	"payhsm/fault"
	"payhsm/keyspec"
)

// CertificateSubject is the subject of a certificate signing request.
type CertificateSubject struct {
	CommonName, OrganizationUnit, Organization, City, Country, StateOrProvince, EmailAddress string
}

var (
	oidEmailAddress = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
	// PKCS #1 v2.2 (RFC 8017) Appendix A.2.4 and RFC 5758 section 3.2.
	csrSigAlgs = map[crypto.Hash]struct {
		rsa, ecc asn1.ObjectIdentifier
	}{
		crypto.SHA224: {asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 14}, asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 1}},
		crypto.SHA256: {asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}},
		crypto.SHA384: {asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}, asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}},
		crypto.SHA512: {asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}, asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}},
	}
)

// PKCS #10 (RFC 2986) structures.
type csrInfo struct {
	Version    int
	Subject    asn1.RawValue
	PublicKey  asn1.RawValue
	Attributes asn1.RawValue `asn1:"tag:0"`
}

type csr struct {
	Info      asn1.RawValue
	Algorithm pkix.AlgorithmIdentifier
	Signature asn1.BitString
}

// GetCertificateSigningRequest returns a PKCS #10 request (DER) for an
// asymmetric key pair's public key, signed with its private key and
// SHA-224, SHA-256, SHA-384 or SHA-512 (hash; RSA PKCS #1 v1.5 or ECDSA).
func (s *Service) GetCertificateSigningRequest(ident string, hash crypto.Hash, sub CertificateSubject) ([]byte, error) {
	alg, ok := csrSigAlgs[hash]
	if !ok {
		return nil, fault.About(fault.SubjectSigningAlgorithm, "must be SHA-224, SHA-256, SHA-384 or SHA-512")
	}
	if sub.CommonName == "" {
		return nil, fault.About(fault.SubjectCommonName, "is required")
	}
	if sub.Country != "" && len(sub.Country) != 2 {
		return nil, fault.About(fault.SubjectCountry, "must be a two-letter ISO 3166 country code")
	}
	k, err := s.resolve(ident)
	if err != nil {
		return nil, err
	}
	if err := s.usable(k, ident); err != nil {
		return nil, err
	}
	if k.Attributes.Class != keyspec.AsymmetricPair || len(k.PublicKey) == 0 {
		return nil, fault.About(fault.SubjectKey, "must name an asymmetric key pair")
	}
	name := pkix.Name{CommonName: sub.CommonName}
	for _, f := range []struct {
		dst *[]string
		v   string
	}{{&name.OrganizationalUnit, sub.OrganizationUnit}, {&name.Organization, sub.Organization}, {&name.Locality, sub.City},
		{&name.Country, sub.Country}, {&name.Province, sub.StateOrProvince}} {
		if f.v != "" {
			*f.dst = []string{f.v}
		}
	}
	if sub.EmailAddress != "" {
		name.ExtraNames = []pkix.AttributeTypeAndValue{{Type: oidEmailAddress, Value: asn1.RawValue{Tag: asn1.TagIA5String, Bytes: []byte(sub.EmailAddress)}}}
	}
	subject, err := asn1.Marshal(name.ToRDNSequence())
	if err != nil {
		return nil, fault.About(fault.SubjectCertificateSubject, "cannot be encoded")
	}
	info, err := asn1.Marshal(csrInfo{Subject: asn1.RawValue{FullBytes: subject}, PublicKey: asn1.RawValue{FullBytes: k.PublicKey},
		Attributes: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true}})
	if err != nil {
		return nil, fault.Internalf("encode CSR", err)
	}
	_, der, err := s.loadMaterial(k)
	if err != nil {
		return nil, err
	}
	pk, err := x509.ParsePKCS8PrivateKey(der)
	clear(der)
	if err != nil {
		return nil, fault.Internalf("parse private key", err)
	}
	h := hash.New()
	h.Write(info)
	digest := h.Sum(nil)
	var sig []byte
	var algID pkix.AlgorithmIdentifier
	switch key := pk.(type) {
	case *rsa.PrivateKey:
		algID = pkix.AlgorithmIdentifier{Algorithm: alg.rsa, Parameters: asn1.NullRawValue}
		sig, err = rsa.SignPKCS1v15(rand.Reader, key, hash, digest)
	case *ecdsa.PrivateKey:
		algID = pkix.AlgorithmIdentifier{Algorithm: alg.ecc}
		sig, err = ecdsa.SignASN1(rand.Reader, key, digest)
	default:
		err = errors.New("unsupported private key type")
	}
	if err != nil {
		return nil, fault.Internalf("sign CSR", err)
	}
	out, err := asn1.Marshal(csr{Info: asn1.RawValue{FullBytes: info}, Algorithm: algID, Signature: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	if err != nil {
		return nil, fault.Internalf("encode CSR", err)
	}
	return out, nil
}
