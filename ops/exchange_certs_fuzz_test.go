package ops_test

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"testing"

	"payhsm/fault"
	"payhsm/ops"
)

// FuzzParseCertificate: the certificate member parser never panics, and it
// either returns a certificate or a Validation fault.
func FuzzParseCertificate(f *testing.F) {
	ca := xNewTestCA(f, nil)
	p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
	f.Add(base64.StdEncoding.EncodeToString(p))
	f.Add(string(p))
	f.Add(base64.StdEncoding.EncodeToString(ca.cert.Raw))
	f.Add(base64.StdEncoding.EncodeToString(append(p, p...)))
	f.Add("")
	f.Add("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ops.ParseCertificate("Cert", s)
		if err != nil {
			if fault.KindOf(err) != fault.Validation {
				t.Fatalf("error kind %v", fault.KindOf(err))
			}
			return
		}
		if _, err := x509.ParseCertificate(c.Raw); err != nil {
			t.Fatalf("returned an unparsable certificate")
		}
	})
}
