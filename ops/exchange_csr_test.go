package ops_test

import (
	"crypto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// TestCertificateSigningRequest checks every key pair type and hash with
// OpenSSL (`openssl req -verify`), which checks the self-signature and prints
// the subject, independently of crypto/x509.
func TestCertificateSigningRequest(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	svc := opstest.New(t)
	pair := func(u keyspec.KeyUsage, a keyspec.Algorithm, m keyspec.ModesOfUse, derive keyspec.KeyUsage) string {
		k, err := svc.CreateKey(ops.CreateKeyInput{Attributes: keyspec.Attributes{Usage: u, Class: keyspec.AsymmetricPair, Algorithm: a, Modes: m}, DeriveKeyUsage: derive})
		if err != nil {
			t.Fatal(err)
		}
		return k.ARN
	}
	rsaSign := pair(keyspec.S0, keyspec.RSA2048, keyspec.ModesOfUse{Sign: true}, "")
	ecSign := pair(keyspec.K3, keyspec.ECCP384, keyspec.ModesOfUse{DeriveKey: true}, keyspec.K0)
	ecdh := pair(keyspec.K3, keyspec.ECCP256, keyspec.ModesOfUse{DeriveKey: true}, keyspec.K1)
	sub := ops.CertificateSubject{CommonName: "payhsm test", OrganizationUnit: "Payments", Organization: "Example Bank", City: "Sydney",
		Country: "AU", StateOrProvince: "NSW", EmailAddress: "keys@example.com"}
	dir := t.TempDir()
	for _, key := range []string{rsaSign, ecSign, ecdh} {
		isRSA := key == rsaSign
		for _, alg := range []string{"SHA224", "SHA256", "SHA384", "SHA512"} {
			der, err := svc.GetCertificateSigningRequest(key, csrHashes[alg], sub)
			if err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(dir, "req.der")
			if err := os.WriteFile(f, der, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("openssl", "req", "-inform", "DER", "-in", f, "-verify", "-noout", "-subject", "-text").CombinedOutput()
			s := string(out)
			if err != nil || !strings.Contains(s, "verify OK") {
				t.Fatalf("%s: openssl: %v\n%s", alg, err, s)
			}
			sigAlg := "Signature Algorithm: ecdsa-with-" + alg
			if isRSA {
				sigAlg = "Signature Algorithm: " + strings.ToLower(alg) + "WithRSAEncryption"
			}
			for _, want := range []string{"CN=payhsm test", "OU=Payments", "O=Example Bank", "L=Sydney", "C=AU", "ST=NSW", "emailAddress=keys@example.com", sigAlg} {
				if !strings.Contains(strings.ReplaceAll(s, " = ", "="), want) {
					t.Errorf("%s: %q missing from\n%s", alg, want, s)
				}
			}
		}
	}
	sym := opstest.Import(t, svc, xSym(keyspec.K0, keyspec.AES128, xMEDWU), xAes128)
	for _, tc := range []struct {
		key  string
		alg  crypto.Hash
		sub  ops.CertificateSubject
		kind fault.Kind
	}{
		{rsaSign, crypto.MD5, sub, fault.Validation},
		{rsaSign, crypto.SHA1, sub, fault.Validation},
		{rsaSign, crypto.SHA256, ops.CertificateSubject{}, fault.Validation},
		{rsaSign, crypto.SHA256, ops.CertificateSubject{CommonName: "x", Country: "AUS"}, fault.Validation},
		{sym, crypto.SHA256, sub, fault.Validation},
		{"alias/none", crypto.SHA256, sub, fault.NotFound},
	} {
		_, err := svc.GetCertificateSigningRequest(tc.key, tc.alg, tc.sub)
		xWantKind(t, err, tc.kind)
	}
}

// csrHashes are the signature hashes by the names OpenSSL prints them under.
var csrHashes = map[string]crypto.Hash{"SHA224": crypto.SHA224, "SHA256": crypto.SHA256, "SHA384": crypto.SHA384, "SHA512": crypto.SHA512}
