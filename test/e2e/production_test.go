package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
)

// TestProductionMode runs the appliance as an operator would: a token made
// with softhsm2-util, a configuration file (PIN from a file, credentials file,
// TLS), `payhsm ceremony init`, then `payhsm serve --config`, driven over HTTPS
// by the AWS SDK.
func TestProductionMode(t *testing.T) {
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		t.Skip("softhsm2-util not installed")
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	check(t, os.MkdirAll(tokens, 0o700))
	conf := filepath.Join(dir, "softhsm2.conf")
	check(t, os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\n"), 0o600))
	t.Setenv("SOFTHSM2_CONF", conf)
	if out, err := exec.Command(util, "--init-token", "--free", "--label", "prod", "--pin", "87654321", "--so-pin", "12345678").CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util: %v\n%s", err, out)
	}
	pinFile := filepath.Join(dir, "pin")
	check(t, os.WriteFile(pinFile, []byte("87654321\n"), 0o600))
	credFile := filepath.Join(dir, "credentials")
	check(t, os.WriteFile(credFile, []byte("[ops]\naws_access_key_id = AKPHPRODUCTION01\naws_secret_access_key = prod-secret-value-0123456789\n"), 0o600))
	certFile, keyFile, pool := selfSigned(t, dir)
	caFile, caCert, caKey := clientCA(t, dir)
	alice := clientCert(t, caCert, caKey, "switch-alice")
	mallory := clientCert(t, caCert, caKey, "switch-mallory")
	cfg := filepath.Join(dir, "payhsm.json")
	check(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`{
		"dataDir": %q,
		"pkcs11": {"module": "/usr/lib/softhsm/libsofthsm2.so", "tokenLabel": "prod", "pinFile": %q},
		"http": {"addr": "127.0.0.1:0", "tlsCert": %q, "tlsKey": %q},
		"host": {"addr": "127.0.0.1:0", "tlsCert": %q, "tlsKey": %q, "clientCA": %q, "allowedClients": ["switch-alice"]},
		"credentialsFile": %q,
		"region": "eu-west-2", "account": "123456789012"}`, filepath.Join(dir, "data"), pinFile, certFile, keyFile, certFile, keyFile, caFile, credFile)), 0o600))

	// Serving before the ceremony is refused with a clear message.
	out, err := exec.Command(binPath, "serve", "--config", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "ceremony init") {
		t.Fatalf("serve before init: %v\n%s", err, out)
	}
	spec := filepath.Join(dir, "ceremony.json")
	check(t, os.WriteFile(spec, []byte(`{"custodians":["alice","bob"],"profiles":[{"name":"default"}]}`), 0o600))
	init := exec.Command(binPath, "ceremony", "init", "--config", cfg, "--ceremony", spec)
	init.Stdin = strings.NewReader("alice-passphrase\nalice-passphrase\nbob-passphrase!\nbob-passphrase!\n")
	if out, err := init.CombinedOutput(); err != nil || !strings.Contains(string(out), "Profile default: main key generated") {
		t.Fatalf("ceremony init: %v\n%s", err, out)
	}

	d := startDaemonArgs(t, "serve", "--config", cfg)
	if !strings.HasPrefix(d.httpURL, "https://") {
		t.Fatalf("not serving TLS: %s", d.httpURL)
	}
	client := pc.New(pc.Options{Region: "eu-west-2", BaseEndpoint: aws.String(d.httpURL), RetryMaxAttempts: 1,
		Credentials: staticCreds("AKPHPRODUCTION01", "prod-secret-value-0123456789"),
		HTTPClient:  &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}})
	k, err := client.CreateKey(context.Background(), &pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: &types.KeyAttributes{
		KeyUsage: types.KeyUsageTr31P0PinEncryptionKey, KeyClass: types.KeyClassSymmetricKey, KeyAlgorithm: types.KeyAlgorithmAes128,
		KeyModesOfUse: &types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}})
	if err != nil {
		t.Fatalf("CreateKey over TLS: %v", err)
	}
	if !strings.HasPrefix(*k.Key.KeyArn, "arn:aws:payment-cryptography:eu-west-2:123456789012:key/") {
		t.Errorf("ARN %s", *k.Key.KeyArn)
	}
	// Plain HTTP to the TLS port fails; so does a client that does not trust the certificate.
	insecure := pc.New(pc.Options{Region: "eu-west-2", BaseEndpoint: aws.String(d.httpURL), RetryMaxAttempts: 1,
		Credentials: staticCreds("AKPHPRODUCTION01", "prod-secret-value-0123456789")})
	if _, err := insecure.ListKeys(context.Background(), &pc.ListKeysInput{}); err == nil {
		t.Errorf("an untrusted TLS connection succeeded")
	}

	// The host port is mutual TLS: an allowed client gets answers; a client
	// without a certificate, or whose certificate is not on the allow-list, gets none.
	hostCall := func(cert *tls.Certificate) (string, error) {
		cfg := &tls.Config{RootCAs: pool}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		c, err := tls.Dial("tcp", d.hostAddr, cfg)
		if err != nil {
			return "", err
		}
		// The server drops a refused client, so sending close_notify may
		// fail: what matters is the answer, or the lack of one.
		defer func() { _ = c.Close() }()
		check(t, c.SetDeadline(time.Now().Add(5*time.Second)))
		msg := "0000NC"
		if _, err := c.Write(append([]byte{0, byte(len(msg))}, msg...)); err != nil {
			return "", err
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil {
			return "", err
		}
		return string(buf[2:n]), nil
	}
	if got, err := hostCall(&alice); err != nil || !strings.HasPrefix(got, "0000ND00") {
		t.Errorf("allowed mTLS client: %q %v", got, err)
	}
	if got, err := hostCall(nil); err == nil {
		t.Errorf("client without a certificate was answered: %q", got)
	}
	if got, err := hostCall(&mallory); err == nil {
		t.Errorf("client outside the allow-list was answered: %q", got)
	}
}

func clientCA(t *testing.T, dir string) (string, *x509.Certificate, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "switch CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "client-ca.pem")
	check(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	c, _ := x509.ParseCertificate(der)
	return path, c, key
}

func clientCert(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "payhsm test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	check(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	p8, _ := x509.MarshalPKCS8PrivateKey(key)
	check(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600))
	pool = x509.NewCertPool()
	c, _ := x509.ParseCertificate(der)
	pool.AddCert(c)
	return certFile, keyFile, pool
}
