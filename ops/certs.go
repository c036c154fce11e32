package ops

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"payhsm/fault"
	"payhsm/hsm/tr31"
	"payhsm/keyspec"
	"payhsm/keystore"
)

// authority is a profile's certificate authority: it certifies the public
// keys the appliance hands out (key pairs, import wrapping keys). Its private
// key is stored as an X9.143 block under the profile main key.
type authority struct {
	cert   *x509.Certificate
	signer crypto.Signer
}

type authorityRecord struct {
	Version  int    `json:"v"`
	Cert     []byte `json:"cert"`
	KeyBlock string `json:"keyBlock"`
}

const (
	caValidity   = 20 * 365 * 24 * time.Hour
	leafValidity = 90 * 24 * time.Hour
	leafMinLeft  = 30 * 24 * time.Hour
)

// authority returns the profile's CA, creating it on first use.
func (s *Service) authority(profile string) (*authority, error) {
	s.caMu.Lock()
	defer s.caMu.Unlock()
	if ca := s.cas[profile]; ca != nil {
		return ca, nil
	}
	name := "ca/" + profile
	p, err := s.cust.Profile(profile)
	if err != nil {
		return nil, fault.Internalf("profile main key", err)
	}
	raw, err := s.store.GetMeta(name)
	if errors.Is(err, keystore.ErrNotFound) {
		raw, err = s.newAuthority(profile, name)
	}
	if err != nil {
		return nil, fault.Internalf("certificate authority", err)
	}
	var rec authorityRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fault.Internalf("certificate authority record", err)
	}
	cert, err := x509.ParseCertificate(rec.Cert)
	if err != nil {
		return nil, fault.Internalf("certificate authority certificate", err)
	}
	h, der, err := p.Unwrap(rec.KeyBlock)
	if err != nil {
		return nil, fault.Internalf("certificate authority key", err)
	}
	defer clear(der)
	if err := checkBinding(h, name); err != nil {
		return nil, fault.Internalf("certificate authority key", err)
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fault.Internalf("certificate authority key", err)
	}
	ca := &authority{cert: cert, signer: key.(crypto.Signer)}
	s.cas[profile] = ca
	return ca, nil
}

func (s *Service) newAuthority(profile, name string) ([]byte, error) {
	key, err := s.cfg.NewRSAKey(3072)
	if err != nil {
		return nil, err
	}
	now := s.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"payhsm"}, OrganizationalUnit: []string{profile}, CommonName: "payhsm " + s.cfg.Region + " " + profile + " CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	defer clear(p8)
	p, err := s.cust.Profile(profile)
	if err != nil {
		return nil, err
	}
	block, err := p.Wrap(bindingHeader("S0", 'R', 'S', name), p8)
	if err != nil {
		return nil, err
	}
	raw, _ := json.Marshal(authorityRecord{Version: 1, Cert: der, KeyBlock: block})
	if err := s.store.PutMetaIfAbsent(name, raw); err != nil {
		return nil, err
	}
	s.log.Sugar().Infow("created certificate authority", "profile", profile)
	return raw, nil
}

// issue certifies pub (SPKI DER) for validity.
func (ca *authority) issue(pub []byte, cn string, arn string, usage x509.KeyUsage, notBefore time.Time, validity time.Duration) ([]byte, error) {
	pk, err := x509.ParsePKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"payhsm"}, CommonName: cn},
		NotBefore:    notBefore.Add(-5 * time.Minute),
		NotAfter:     notBefore.Add(validity),
		KeyUsage:     usage,
	}
	if arn != "" {
		if u, err := url.Parse(arn); err == nil {
			tmpl.URIs = []*url.URL{u}
		}
	}
	return x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pk, ca.signer)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}

func certKeyUsage(u keyspec.KeyUsage) x509.KeyUsage {
	switch u {
	case keyspec.S0:
		return x509.KeyUsageDigitalSignature
	case keyspec.K3:
		return x509.KeyUsageKeyAgreement
	default: // D1, K2
		return x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment
	}
}

// GetPublicKeyCertificate returns a certificate for an asymmetric key pair's
// public key, signed by the profile CA: a cached one while it has at least 30
// days left, else a fresh 90-day certificate.
func (s *Service) GetPublicKeyCertificate(ident string) (*PublicKeyCertificate, error) {
	k, err := s.resolve(ident)
	if err != nil {
		return nil, err
	}
	if k.Attributes.Class != keyspec.AsymmetricPair || len(k.PublicKey) == 0 {
		return nil, fault.Validationf("key %s is not an asymmetric key pair", ident)
	}
	ca, err := s.authority(k.Profile)
	if err != nil {
		return nil, err
	}
	now := s.now()
	if len(k.Certificate) > 0 {
		if c, err := x509.ParseCertificate(k.Certificate); err == nil && c.NotAfter.Sub(now) >= leafMinLeft && c.CheckSignatureFrom(ca.cert) == nil {
			return &PublicKeyCertificate{Certificate: k.Certificate, Chain: ca.cert.Raw}, nil
		}
	}
	der, err := ca.issue(k.PublicKey, k.ID, s.keyARN(k.ID), certKeyUsage(k.Attributes.Usage), now, leafValidity)
	if err != nil {
		return nil, fault.Internalf("issue certificate", err)
	}
	if _, err := s.store.UpdateKey(k.ID, func(r *keystore.Key) error { r.Certificate = der; return nil }); err != nil {
		return nil, storeErr("store certificate", err, ident)
	}
	return &PublicKeyCertificate{Certificate: der, Chain: ca.cert.Raw}, nil
}

func checkBinding(h tr31.Header, want string) error {
	got, ok := blockData(h, bindingBlock)
	if !ok || got != want {
		return fmt.Errorf("key block is bound to %q, not %q", got, want)
	}
	return nil
}
