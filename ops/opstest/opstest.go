// Package opstest builds a real operations layer for tests and benchmarks of
// one layer: a SoftHSM2 token provisioned in a temporary directory, a Pebble
// keystore on disk, main-key custody and an ops.Service — no fakes.
package opstest

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"os"
	"testing"

	"crypto/rand"

	"go.uber.org/zap"

	"payhsm/hsm/custody"
	"payhsm/hsm/softhsm"
	"payhsm/keyspec"
	"payhsm/keystore"
	"payhsm/ops"
)

// New returns a Service on a fresh appliance under tb.TempDir(). It skips the
// test when SoftHSM2 is not installed.
func New(tb testing.TB) *ops.Service {
	tb.Helper()
	if _, err := os.Stat(softhsm.DefaultModule); err != nil {
		tb.Skip("SoftHSM2 is not installed (make test installs it)")
	}
	dir := tb.TempDir()
	tok, err := softhsm.Provision(dir, "", "payhsm-test")
	if err != nil {
		tb.Fatal(err)
	}
	log := zap.NewNop()
	store, err := keystore.Open(dir+"/keystore", log)
	if err != nil {
		tb.Fatal(err)
	}
	cust, err := custody.Open(custody.Config{ModulePath: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN,
		Initialize: true, NotFound: keystore.ErrNotFound}, store, log)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := cust.CreateProfile("default"); err != nil {
		tb.Fatal(err)
	}
	svc, err := ops.New(ops.Config{Region: "us-east-1", Account: "000000000000"}, store, cust, log)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cust.Close()
		store.Close()
	})
	return svc
}

// Import imports a known clear key (hex) with the given attributes through
// the public path (GetParametersForImport + an RSA-OAEP key cryptogram) and
// returns its ARN.
func Import(tb testing.TB, svc *ops.Service, a keyspec.Attributes, keyHex string) string {
	tb.Helper()
	p, err := svc.GetParametersForImport(ops.MaterialKeyCryptogram, keyspec.RSA3072, true)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(p.Certificate)
	if err != nil {
		tb.Fatal(err)
	}
	key, err := hex.DecodeString(keyHex)
	if err != nil {
		tb.Fatal(err)
	}
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, cert.PublicKey.(*rsa.PublicKey), key, nil)
	if err != nil {
		tb.Fatal(err)
	}
	k, err := svc.ImportKey(ops.ImportKeyInput{KeyCryptogram: &ops.ImportKeyCryptogram{
		Attributes: a, Exportable: true, ImportToken: p.Token, Cryptogram: ct}})
	if err != nil {
		tb.Fatalf("import: %v", err)
	}
	return k.ARN
}

// B64PEM is how the AWS API carries certificates (base64 of PEM).
func B64PEM(pemBytes []byte) string { return base64.StdEncoding.EncodeToString(pemBytes) }
