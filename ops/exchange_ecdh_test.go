package ops_test

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"payhsm/fault"
	"payhsm/hsm/tr31"
	"payhsm/keyspec"
	"payhsm/ops"
)

// ecdhPartner is the partner HSM, played by OpenSSL: its key pair, its
// certificate (issued by a test CA with crypto/x509) and its half of the
// agreement (openssl pkeyutl -derive, then openssl kdf).
type ecdhPartner struct {
	dir, keyFile string
	cert         *x509.Certificate
}

func xOpenssl(t *testing.T, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	out, err := exec.Command("openssl", args...).Output()
	if err != nil {
		t.Fatalf("openssl %s: %v", args[0], err)
	}
	return out
}

func newECDHPartner(t *testing.T, curve string, ca *xTestCA) *ecdhPartner {
	dir := t.TempDir()
	p := &ecdhPartner{dir: dir, keyFile: filepath.Join(dir, "partner.pem")}
	xOpenssl(t, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:"+curve, "-out", p.keyFile)
	pubPEM := xOpenssl(t, "pkey", "-in", p.keyFile, "-pubout")
	b, _ := pem.Decode(pubPEM)
	pub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	p.cert = xNewCert(t, ca, pub, nil, false, x509.KeyUsageKeyAgreement, now.Add(-time.Hour), now.Add(24*time.Hour))
	return p
}

// kbpk derives the KBPK from our certificate (PEM) as the partner.
func (p *ecdhPartner) kbpk(t *testing.T, ourCert []byte, kdf, digest, info string, n int) []byte {
	t.Helper()
	c := xParseCert(t, ourCert)
	peer := filepath.Join(p.dir, "peer.pem")
	if err := os.WriteFile(peer, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: c.RawSubjectPublicKeyInfo}), 0o600); err != nil {
		t.Fatal(err)
	}
	z := xOpenssl(t, "pkeyutl", "-derive", "-inkey", p.keyFile, "-peerkey", peer)
	args := []string{"kdf", "-keylen", strconv.Itoa(n), "-kdfopt", "digest:" + digest, "-kdfopt", "hexsecret:" + hex.EncodeToString(z)}
	if info != "" {
		args = append(args, "-kdfopt", "hexinfo:"+info)
	}
	out := xOpenssl(t, append(args, kdf)...)
	return xUnhex(t, strings.ReplaceAll(strings.TrimSpace(string(out)), ":", ""))
}

func TestDiffieHellmanTR31(t *testing.T) {
	f := xNewExchange(t)
	ca := xNewTestCA(t, nil)
	caKey, err := f.svc.ImportCertificate(ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: ca.cert.Raw})
	if err != nil {
		t.Fatal(err)
	}
	k3 := func(alg keyspec.Algorithm, derive keyspec.KeyUsage) (string, []byte) {
		k, err := f.svc.CreateKey(ops.CreateKeyInput{Attributes: keyspec.Attributes{Usage: keyspec.K3, Class: keyspec.AsymmetricPair, Algorithm: alg,
			Modes: keyspec.ModesOfUse{DeriveKey: true}}, DeriveKeyUsage: derive})
		if err != nil {
			t.Fatal(err)
		}
		c, err := f.svc.GetPublicKeyCertificate(k.ARN)
		if err != nil {
			t.Fatal(err)
		}
		return k.ARN, c.Certificate
	}
	p256, p256Cert := k3(keyspec.ECCP256, keyspec.K1)
	p521, p521Cert := k3(keyspec.ECCP521, keyspec.K1)
	partner256 := newECDHPartner(t, "P-256", ca)
	partner521 := newECDHPartner(t, "P-521", ca)
	dh := func(priv string, p *ecdhPartner, alg keyspec.Algorithm, kdf, hash, info string) ops.DiffieHellman {
		return ops.DiffieHellman{PrivateKeyIdentifier: priv, CAIdentifier: caKey.ARN, Certificate: p.cert.Raw, DeriveKeyAlgorithm: alg,
			KDF: dhKDFOf(kdf), Hash: dhHashOf(hash), SharedInformation: hb(info)}
	}
	kdfName := map[string]string{"NIST_SP800": "SSKDF", "ANSI_X963": "X963KDF"}
	digest := map[string]string{"SHA_256": "SHA256", "SHA_384": "SHA384", "SHA_512": "SHA512"}

	// Import: the partner wraps a known TDES_3KEY KEK under its derived KBPK.
	for _, tc := range []struct {
		name      string
		priv      string
		ourCert   []byte
		p         *ecdhPartner
		alg       keyspec.Algorithm
		kdf, hash string
		version   byte
	}{
		{"P-256, NIST_SP800 SHA-256, AES_128 KBPK", p256, p256Cert, partner256, keyspec.AES128, "NIST_SP800", "SHA_256", 'D'},
		{"P-256, ANSI_X963 SHA-512, TDES_3KEY KBPK", p256, p256Cert, partner256, keyspec.TDES3Key, "ANSI_X963", "SHA_512", 'B'},
		{"P-521, NIST_SP800 SHA-384, AES_256 KBPK", p521, p521Cert, partner521, keyspec.AES256, "NIST_SP800", "SHA_384", 'D'},
	} {
		t.Run("import "+tc.name, func(t *testing.T) {
			const info = "1234567890"
			kbpk := tc.p.kbpk(t, tc.ourCert, kdfName[tc.kdf], digest[tc.hash], info, tc.alg.KeyLen())
			block, err := tr31.Wrap(kbpk, tr31.Header{Version: tc.version, KeyUsage: "K0", Algorithm: 'T', ModeOfUse: 'B', Exportability: 'E'}, xUnhex(t, xTdes3))
			if err != nil {
				t.Fatal(err)
			}
			k, err := f.svc.ImportKeyDiffieHellman(ops.ImportKeyInput{}, ops.ImportDiffieHellmanTr31{KeyBlock: block, DiffieHellman: dh(tc.priv, tc.p, tc.alg, tc.kdf, tc.hash, info)})
			if err != nil {
				t.Fatal(err)
			}
			if want := xOpensslKCV(t, keyspec.TDES3Key, xTdes3); k.KCV != want || k.Attributes.Usage != keyspec.K0 {
				t.Errorf("imported %s KCV %s, OpenSSL %s", k.Attributes.Usage, k.KCV, want)
			}
			// The same block with different shared information derives another key.
			_, err = f.svc.ImportKeyDiffieHellman(ops.ImportKeyInput{}, ops.ImportDiffieHellmanTr31{KeyBlock: block, DiffieHellman: dh(tc.priv, tc.p, tc.alg, tc.kdf, tc.hash, "1234567891")})
			xWantKind(t, err, fault.Validation)
		})
	}

	// Export: a created AES-256 key under a P-521 / AES_256 derived KBPK, opened
	// by the partner; its KCV by OpenSSL matches the service's.
	t.Run("export AES-256 key", func(t *testing.T) {
		w, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: f.dekAES256, DiffieHellman: &ops.ExportDiffieHellmanTr31{
			DiffieHellman: dh(p521, partner521, keyspec.AES256, "ANSI_X963", "SHA_256", "ADEF567890")}})
		if err != nil {
			t.Fatal(err)
		}
		kbpk := partner521.kbpk(t, p521Cert, "X963KDF", "SHA256", "ADEF567890", 32)
		h, key, err := tr31.Unwrap(kbpk, w.KeyMaterial)
		if err != nil {
			t.Fatal(err)
		}
		orig, _ := f.svc.GetKey(f.dekAES256)
		if want := xOpensslKCV(t, keyspec.AES256, strings.ToUpper(hex.EncodeToString(key))); want != orig.KCV || want != w.KCV || h.Version != 'D' || w.WrappingKeyARN != p521 {
			t.Errorf("OpenSSL KCV %s, key %s, export %s, version %c", want, orig.KCV, w.KCV, h.Version)
		}
	})
	t.Run("export TDES key", func(t *testing.T) {
		w, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: f.pekTDES2, DiffieHellman: &ops.ExportDiffieHellmanTr31{
			DiffieHellman: dh(p256, partner256, keyspec.TDES3Key, "NIST_SP800", "SHA_256", "")}})
		if err != nil {
			t.Fatal(err)
		}
		_, key, err := tr31.Unwrap(partner256.kbpk(t, p256Cert, "SSKDF", "SHA256", "", 24), w.KeyMaterial)
		if err != nil || !bytes.Equal(key, xUnhex(t, xTdes2)) {
			t.Fatalf("partner could not open the block: %v", err)
		}
	})

	// The user guide's ECDH examples as printed: an ECC_NIST_P256 key pair
	// derives an AES_256 KBPK (NIST_SP800, SHA_256) that carries a TDES_3KEY
	// key, imported ("Import keys using asymmetric techniques (ECDH)",
	// SharedInformation 1234567890) and exported ("Export keys ...",
	// ADEF567890). The agreement's 128-bit strength covers the TDES key's
	// 112 bits; OpenSSL, as the partner, derives the same KBPK.
	t.Run("guide import: P-256 derives AES_256 KBPK for a TDES_3KEY key", func(t *testing.T) {
		kbpk := partner256.kbpk(t, p256Cert, "SSKDF", "SHA256", "1234567890", 32)
		block, err := tr31.Wrap(kbpk, tr31.Header{Version: 'D', KeyUsage: "K1", Algorithm: 'T', ModeOfUse: 'B', Exportability: 'E'}, xUnhex(t, xTdes3))
		if err != nil {
			t.Fatal(err)
		}
		k, err := f.svc.ImportKeyDiffieHellman(ops.ImportKeyInput{}, ops.ImportDiffieHellmanTr31{KeyBlock: block,
			DiffieHellman: dh(p256, partner256, keyspec.AES256, "NIST_SP800", "SHA_256", "1234567890")})
		if err != nil {
			t.Fatal(err)
		}
		if k.Attributes.Algorithm != keyspec.TDES3Key || k.KCV != xOpensslKCV(t, keyspec.TDES3Key, xTdes3) {
			t.Errorf("imported %s KCV %s", k.Attributes.Algorithm, k.KCV)
		}
	})
	t.Run("guide export: P-256 derives AES_256 KBPK for a TDES key", func(t *testing.T) {
		w, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: f.kekTDES3, DiffieHellman: &ops.ExportDiffieHellmanTr31{
			DiffieHellman: dh(p256, partner256, keyspec.AES256, "NIST_SP800", "SHA_256", "ADEF567890")}})
		if err != nil {
			t.Fatal(err)
		}
		h, key, err := tr31.Unwrap(partner256.kbpk(t, p256Cert, "SSKDF", "SHA256", "ADEF567890", 32), w.KeyMaterial)
		if err != nil || !bytes.Equal(key, xUnhex(t, xTdes3)) || h.Version != 'D' || h.Algorithm != 'T' {
			t.Fatalf("partner could not open the block (%v), header %+v", err, h)
		}
	})

	// The guide's strength table: no curve below P-384 protects an AES_192
	// key and none below P-521 an AES_256 key, whatever KBPK it derives; the
	// refusal names the curves that would do and stores nothing.
	p384, p384Cert := k3(keyspec.ECCP384, keyspec.K1)
	partner384 := newECDHPartner(t, "P-384", ca)
	dekAES192 := xCreate(t, f.svc, xSym(keyspec.D0, keyspec.AES192, xMEDWU))
	t.Run("P-384 derives AES_256 KBPK for an AES_192 key", func(t *testing.T) {
		w, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: dekAES192, DiffieHellman: &ops.ExportDiffieHellmanTr31{
			DiffieHellman: dh(p384, partner384, keyspec.AES256, "ANSI_X963", "SHA_384", "")}})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := tr31.Unwrap(partner384.kbpk(t, p384Cert, "X963KDF", "SHA384", "", 32), w.KeyMaterial); err != nil {
			t.Fatal(err)
		}
	})
	before := xKeyCount(t, f.svc)
	for _, tc := range []struct {
		name  string
		key   string
		dh    ops.DiffieHellman
		curve string
	}{
		{"P-256 for an AES_256 key", f.dekAES256, dh(p256, partner256, keyspec.AES256, "NIST_SP800", "SHA_256", ""), "use an ECC_NIST_P521 key pair"},
		{"P-384 for an AES_256 key", f.dekAES256, dh(p384, partner384, keyspec.AES256, "NIST_SP800", "SHA_256", ""), "use an ECC_NIST_P521 key pair"},
		{"P-256 for an AES_192 key", dekAES192, dh(p256, partner256, keyspec.AES256, "NIST_SP800", "SHA_256", ""), "use an ECC_NIST_P384 or ECC_NIST_P521 key pair"},
	} {
		t.Run("export refused: "+tc.name, func(t *testing.T) {
			_, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: tc.key, DiffieHellman: &ops.ExportDiffieHellmanTr31{DiffieHellman: tc.dh}})
			xWantKind(t, err, fault.Validation)
			if !isAbout(err, at{fault.SubjectAgreementKey, fault.SideNone}) || !strings.Contains(fault.ClientMessage(err), tc.curve) {
				t.Errorf("%s (%s), want about the key pair naming %q", fault.ClientMessage(err), aboutOf(err), tc.curve)
			}
		})
	}
	t.Run("import refused: P-256 for an AES_256 key", func(t *testing.T) {
		kbpk := partner256.kbpk(t, p256Cert, "SSKDF", "SHA256", "", 32)
		block, err := tr31.Wrap(kbpk, tr31.Header{Version: 'D', KeyUsage: "D0", Algorithm: 'A', ModeOfUse: 'B', Exportability: 'E'}, xUnhex(t, xAes128+xAes128))
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.svc.ImportKeyDiffieHellman(ops.ImportKeyInput{}, ops.ImportDiffieHellmanTr31{KeyBlock: block,
			DiffieHellman: dh(p256, partner256, keyspec.AES256, "NIST_SP800", "SHA_256", "")})
		xWantKind(t, err, fault.Validation)
		if msg := fault.ClientMessage(err); !strings.Contains(msg, "ECC_NIST_P521") || !strings.Contains(msg, "AES_256") {
			t.Errorf("refusal %q does not name the key and the curve that would do", msg)
		}
	})
	if n := xKeyCount(t, f.svc); n != before {
		t.Errorf("%d keys after refused agreements, want %d", n, before)
	}

	// Refusals.
	pek, _ := k3(keyspec.ECCP256, keyspec.P0)
	other := xNewTestCA(t, nil)
	stranger := newECDHPartner(t, "P-256", other)
	before = xKeyCount(t, f.svc)
	pair := at{fault.SubjectAgreementKey, fault.SideNone}
	about := func(s fault.Subject) at { return at{s, fault.SideNone} }
	for _, tc := range []struct {
		name string
		dh   ops.DiffieHellman
		kind fault.Kind
		at   at
	}{
		{"key pair derives PIN keys", dh(pek, partner256, keyspec.AES128, "NIST_SP800", "SHA_256", ""), fault.Validation, pair},
		{"curve mismatch", dh(p256, partner521, keyspec.AES128, "NIST_SP800", "SHA_256", ""), fault.Validation, about(fault.SubjectCertificate)},
		{"partner from another CA", dh(p256, stranger, keyspec.AES128, "NIST_SP800", "SHA_256", ""), fault.Validation, about(fault.SubjectCertificate)},
		{"not a K3 key", dh(f.kekAES128, partner256, keyspec.AES128, "NIST_SP800", "SHA_256", ""), fault.Validation, pair},
		{"HMAC KBPK", dh(p256, partner256, keyspec.HMACSHA256, "NIST_SP800", "SHA_256", ""), fault.Validation, about(fault.SubjectDerivedKeyAlgorithm)},
		{"unknown KDF", dh(p256, partner256, keyspec.AES128, "HKDF", "SHA_256", ""), fault.Validation, about(fault.SubjectKDF)},
		{"unknown hash", dh(p256, partner256, keyspec.AES128, "NIST_SP800", "SHA_1", ""), fault.Validation, about(fault.SubjectKDFHash)},
		{"CA is not a CA", func() ops.DiffieHellman {
			d := dh(p256, partner256, keyspec.AES128, "NIST_SP800", "SHA_256", "")
			d.CAIdentifier = f.kekAES128
			return d
		}(), fault.Validation, about(fault.SubjectCertificateAuthority)},
		{"unknown key", dh("alias/none", partner256, keyspec.AES128, "NIST_SP800", "SHA_256", ""), fault.NotFound, at{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.svc.ImportKeyDiffieHellman(ops.ImportKeyInput{}, ops.ImportDiffieHellmanTr31{KeyBlock: "D0000", DiffieHellman: tc.dh})
			xWantKind(t, err, tc.kind)
			if tc.kind == fault.Validation && !isAbout(err, tc.at) {
				t.Errorf("import: %s, want about %+v", aboutOf(err), tc.at)
			}
			_, err = f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: f.dekAES128, DiffieHellman: &ops.ExportDiffieHellmanTr31{DiffieHellman: tc.dh}})
			xWantKind(t, err, tc.kind)
			if tc.kind == fault.Validation && !isAbout(err, tc.at) {
				t.Errorf("export: %s, want about %+v", aboutOf(err), tc.at)
			}
		})
	}
	if n := xKeyCount(t, f.svc); n != before {
		t.Errorf("%d keys after refusals, want %d", n, before)
	}
}

// TestCreateK3WithoutDeriveKeyUsage: the guide's "Creating an asymmetric ECC
// key" example creates a K3 key pair without DeriveKeyUsage; it derives
// TR31_K1 key block protection keys (keyspec.DefaultDeriveKeyUsage), which
// GetKey shows, and serves the guide's ECDH key exchange with OpenSSL as the
// partner.
func TestCreateK3WithoutDeriveKeyUsage(t *testing.T) {
	f := xNewExchange(t)
	ca := xNewTestCA(t, nil)
	caKey, err := f.svc.ImportCertificate(ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: ca.cert.Raw})
	if err != nil {
		t.Fatal(err)
	}
	k, err := f.svc.CreateKey(ops.CreateKeyInput{Exportable: true, Attributes: keyspec.Attributes{Usage: keyspec.K3, Class: keyspec.AsymmetricPair,
		Algorithm: keyspec.ECCP256, Modes: keyspec.ModesOfUse{DeriveKey: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if k.DeriveKeyUsage != keyspec.K1 {
		t.Errorf("created with DeriveKeyUsage %q, want %s", k.DeriveKeyUsage, keyspec.K1)
	}
	if g, err := f.svc.GetKey(k.ARN); err != nil || g.DeriveKeyUsage != keyspec.K1 {
		t.Errorf("GetKey: DeriveKeyUsage %q, %v", g.DeriveKeyUsage, err)
	}
	c, err := f.svc.GetPublicKeyCertificate(k.ARN)
	if err != nil {
		t.Fatal(err)
	}
	partner := newECDHPartner(t, "P-256", ca)
	w, err := f.svc.ExportKey(ops.ExportKeyInput{KeyIdentifier: f.pekTDES2, DiffieHellman: &ops.ExportDiffieHellmanTr31{DiffieHellman: ops.DiffieHellman{
		PrivateKeyIdentifier: k.ARN, CAIdentifier: caKey.ARN, Certificate: partner.cert.Raw, DeriveKeyAlgorithm: keyspec.AES128,
		KDF: ops.KDFNistSP800, Hash: ops.KDFSHA256, SharedInformation: hb("ADEF567890")}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, key, err := tr31.Unwrap(partner.kbpk(t, c.Certificate, "SSKDF", "SHA256", "ADEF567890", 16), w.KeyMaterial); err != nil || !bytes.Equal(key, xUnhex(t, xTdes2)) {
		t.Fatalf("partner could not open the block: %v", err)
	}
}
