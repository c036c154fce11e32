package ops_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"
	"time"

	"payhsm/fault"
	"payhsm/hsm/custody"
	"payhsm/hsm/kdf"
	"payhsm/hsm/tr31"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// TranslateKeyMaterial. The partner (OpenSSL, ecdhPartner) agrees the KBPK
// with our K3 key pair and wraps a known key in a TR-31 block; the service
// re-wraps it under a stored KEK. Known answers:
//   - xTdes2 (0123456789ABCDEFFEDCBA9876543210) has the published ANSI X9.24
//     check value 08D7B4; its CMAC check value is computed by OpenSSL.
//   - NIST SP 800-38A F.2.5 CBC-AES256.Encrypt: key 603DEB10...0914DFF4,
//     IV 000102...0F, first block 6BC1BEE2...7393172A -> F58C4C04...5F7BFBD6;
//     the translated AES-256 key, used as a dynamic key under its new KEK,
//     must give that ciphertext.
const (
	sp80038AKey256 = "603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4"
	sp80038APT     = "6BC1BEE22E409F96E93D7E117393172A"
	sp80038ACBC256 = "F58C4C04D6E5F1BA779EABFB5F7BFBD6"
	sp80038AIV     = "000102030405060708090A0B0C0D0E0F"
)

func (e *dhEnv) tkm(k3 *dhK3, p *ecdhPartner, alg keyspec.Algorithm, kdfName, hash, info, block string) ops.ImportDiffieHellmanTr31 {
	return ops.ImportDiffieHellmanTr31{KeyBlock: block, DiffieHellman: ops.DiffieHellman{PrivateKeyIdentifier: k3.arn, CAIdentifier: e.ca,
		Certificate: p.cert.Raw, DeriveKeyAlgorithm: alg, KDF: dhKDFOf(kdfName), Hash: dhHashOf(hash), SharedInformation: hb(info)}}
}

// partnerBlock is the partner's key block: keyHex under the KBPK it derives
// for (k3, kdf, hash, info, alg), version D under AES, B under TDES.
func partnerBlock(t *testing.T, p *ecdhPartner, k3 *dhK3, alg keyspec.Algorithm, kdfName, hash, info string, h tr31.Header, keyHex string) string {
	t.Helper()
	kbpk := p.kbpk(t, k3.cert, dhKDFName[kdfName], dhDigest[hash], info, alg.KeyLen())
	h.Version = 'B'
	if alg.IsAES() {
		h.Version = 'D'
	}
	blk, err := tr31.Wrap(kbpk, h, xUnhex(t, keyHex))
	if err != nil {
		t.Fatal(err)
	}
	return blk
}

// opensslTDESCMACKCV is the CMAC check value of a TDES key (first 3 bytes of
// the CMAC of 8 zero bytes), computed by OpenSSL.
func opensslTDESCMACKCV(t *testing.T, keyHex string) string {
	t.Helper()
	if len(keyHex) == 32 {
		keyHex += keyHex[:16]
	}
	cmd := exec.Command("openssl", "mac", "-cipher", "DES-EDE3-CBC", "-macopt", "hexkey:"+keyHex, "-binary", "CMAC")
	cmd.Stdin = bytes.NewReader(make([]byte, 8))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl mac: %v", err)
	}
	return strings.ToUpper(hex.EncodeToString(out[:3]))
}

func TestTranslateKeyMaterial(t *testing.T) {
	e := newDHEnv(t)
	svc := e.f.svc
	k3p521 := newDHK3(t, svc, keyspec.ECCP521, keyspec.K1)
	before := xKeyCount(t, svc)

	t.Run("TDES PEK from an AES-128 KBPK to a TDES KEK", func(t *testing.T) {
		const info = "0123456789ABCDEF"
		blk := partnerBlock(t, e.p256, e.k3K1, keyspec.AES128, "NIST_SP800", "SHA_256", info,
			tr31.Header{KeyUsage: "P0", Algorithm: 'T', ModeOfUse: 'B', KeyVersion: "07", Exportability: 'E',
				Blocks: []tr31.OptionalBlock{{ID: "TS", Data: "20250101120000Z"}}}, xTdes2)
		out, err := svc.TranslateKeyMaterial(ops.TranslateKeyMaterialInput{Incoming: e.tkm(e.k3K1, e.p256, keyspec.AES128, "NIST_SP800", "SHA_256", info, blk),
			OutgoingWrappingKeyIdentifier: e.f.kekTDES3})
		if err != nil {
			t.Fatal(err)
		}
		if out.Format != ops.FormatTR31 || out.KCV != xTdes2KCV {
			t.Errorf("format %s, KCV %s, want %s", out.Format, out.KCV, xTdes2KCV)
		}
		h, key, err := tr31.Unwrap(xUnhex(t, xTdes3), out.KeyMaterial)
		if err != nil {
			t.Fatal(err)
		}
		ts, _ := blockDataOf(h, "TS")
		if !bytes.Equal(key, xUnhex(t, xTdes2)) || h.Version != 'B' || h.KeyUsage != "P0" || h.Algorithm != 'T' || h.ModeOfUse != 'B' ||
			h.KeyVersion != "07" || h.Exportability != 'E' || ts != "20250101120000Z" {
			t.Errorf("translated block %s: key %X, header %+v", out.KeyMaterial[:16], key, h)
		}
		// The CMAC check value on request, against OpenSSL's.
		out, err = svc.TranslateKeyMaterial(ops.TranslateKeyMaterialInput{Incoming: e.tkm(e.k3K1, e.p256, keyspec.AES128, "NIST_SP800", "SHA_256", info, blk),
			OutgoingWrappingKeyIdentifier: e.f.kekTDES3, KCVAlgorithm: keyspec.KCVCMAC})
		if err != nil || out.KCV != opensslTDESCMACKCV(t, xTdes2) {
			t.Errorf("CMAC KCV %v %v, OpenSSL %s", err, out, opensslTDESCMACKCV(t, xTdes2))
		}
	})

	t.Run("AES-256 DEK from a P-521 AES-256 KBPK to an AES-256 KEK", func(t *testing.T) {
		const info = "ABCDEF"
		blk := partnerBlock(t, e.p521, k3p521, keyspec.AES256, "ANSI_X963", "SHA_512", info,
			tr31.Header{KeyUsage: "D0", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'S'}, sp80038AKey256)
		out, err := svc.TranslateKeyMaterial(ops.TranslateKeyMaterialInput{Incoming: e.tkm(k3p521, e.p521, keyspec.AES256, "ANSI_X963", "SHA_512", info, blk),
			OutgoingWrappingKeyIdentifier: e.f.kekAES256})
		if err != nil {
			t.Fatal(err)
		}
		if want := xOpensslKCV(t, keyspec.AES256, sp80038AKey256); out.KCV != want || out.KeyMaterial[0] != 'D' {
			t.Errorf("KCV %s, OpenSSL %s; block %.16s", out.KCV, want, out.KeyMaterial)
		}
		// Used as a dynamic key under its new KEK, it is the SP 800-38A key.
		ct, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: e.f.kekAES256, PlainText: hb(sp80038APT),
			Attributes: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC, IV: hb(sp80038AIV)}}, WrappedKey: &ops.DynamicKey{Tr31KeyBlock: out.KeyMaterial}})
		if err != nil || hx(ct.Data) != sp80038ACBC256 {
			t.Errorf("EncryptData with the translated key: %v %+v, want %s", err, ct, sp80038ACBC256)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		const info = "01"
		good := func(h tr31.Header, keyHex string, kbpkAlg keyspec.Algorithm) ops.ImportDiffieHellmanTr31 {
			return e.tkm(e.k3K1, e.p256, kbpkAlg, "NIST_SP800", "SHA_256", info, partnerBlock(t, e.p256, e.k3K1, kbpkAlg, "NIST_SP800", "SHA_256", info, h, keyHex))
		}
		pek := tr31.Header{KeyUsage: "P0", Algorithm: 'T', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'E'}
		dek := tr31.Header{KeyUsage: "D0", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'E'}
		nonExp := pek
		nonExp.Exportability = 'N'
		tampered := good(pek, xTdes2, keyspec.AES128)
		tampered.KeyBlock = tampered.KeyBlock[:len(tampered.KeyBlock)-1] + map[bool]string{true: "0", false: "1"}[strings.HasSuffix(tampered.KeyBlock, "1")]
		wrongInfo := good(pek, xTdes2, keyspec.AES128)
		wrongInfo.SharedInformation = hb("02")
		d0Pair := good(pek, xTdes2, keyspec.AES128)
		d0Pair.PrivateKeyIdentifier = e.k3D0.arn
		block := at{fault.SubjectWrappedKey, fault.SideIncoming}
		for _, tc := range []struct {
			name string
			in   ops.ImportDiffieHellmanTr31
			kek  string
			kcv  keyspec.KCVAlgorithm
			kind fault.Kind
			at   at
		}{
			{"non-exportable key", good(nonExp, xTdes2, keyspec.AES128), e.f.kekTDES3, "", fault.Validation, block},
			{"outgoing KEK weaker than the key", good(dek, xAes128, keyspec.AES128), e.f.kekTDES2, "", fault.Validation, at{}},
			{"outgoing key is not a KEK", good(pek, xTdes2, keyspec.AES128), e.f.dekAES128, "", fault.Validation, at{fault.SubjectWrappingKey, fault.SideOutgoing}},
			{"outgoing key unknown", good(pek, xTdes2, keyspec.AES128), "alias/none", "", fault.NotFound, at{}},
			{"key pair derives data keys", d0Pair, e.f.kekTDES3, "", fault.Validation, at{fault.SubjectAgreementKey, fault.SideIncoming}},
			{"tampered block", tampered, e.f.kekTDES3, "", fault.Validation, block},
			{"other shared information", wrongInfo, e.f.kekTDES3, "", fault.Validation, block},
			{"HMAC check value of a TDES key", good(pek, xTdes2, keyspec.AES128), e.f.kekTDES3, keyspec.KCVHMAC, fault.Validation, at{fault.SubjectKeyCheckValueAlgorithm, fault.SideNone}},
			{"unknown check value algorithm", good(pek, xTdes2, keyspec.AES128), e.f.kekTDES3, "CRC", fault.Validation, at{fault.SubjectKeyCheckValueAlgorithm, fault.SideNone}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := svc.TranslateKeyMaterial(ops.TranslateKeyMaterialInput{Incoming: tc.in, OutgoingWrappingKeyIdentifier: tc.kek, KCVAlgorithm: tc.kcv})
				xWantKind(t, err, tc.kind)
				if tc.kind == fault.Validation && !isAbout(err, tc.at) {
					t.Errorf("%s, want about %+v", aboutOf(err), tc.at)
				}
				// The edges name the inputs: no message spells a request member.
				if m := fault.As(err).Message; strings.Contains(m, "KeyMaterial") || strings.Contains(m, "Identifier") {
					t.Errorf("message %q names a request member", m)
				}
			})
		}
	})
	if n := xKeyCount(t, svc); n != before {
		t.Errorf("%d keys after TranslateKeyMaterial, want %d: nothing is stored", n, before)
	}
}

func blockDataOf(h tr31.Header, id string) (string, bool) {
	for _, b := range h.Blocks {
		if b.ID == id {
			return b.Data, true
		}
	}
	return "", false
}

// benchDH is a service with a K3 key pair and a partner made with the
// standard library (no OpenSSL in the timed loop or its setup).
type benchDH struct {
	svc       *ops.Service
	ca        string
	k3        *dhK3
	cert      []byte // DER
	kbpk      []byte // the KBPK the partner derives (SP 800-56C, SHA-256, info 01)
	kekAES128 string
}

func newBenchDH(b testing.TB, derive keyspec.KeyUsage) *benchDH {
	svc := opstest.New(b)
	ca := xNewTestCA(b, nil)
	caKey, err := svc.ImportCertificate(ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: ca.cert.Raw})
	if err != nil {
		b.Fatal(err)
	}
	k3 := newDHK3(b, svc, keyspec.ECCP256, derive)
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	cert := xNewCert(b, ca, &priv.PublicKey, nil, false, x509.KeyUsageKeyAgreement, now.Add(-time.Hour), now.Add(time.Hour))
	ours, err := x509.ParseCertificate(k3.cert)
	if err != nil {
		b.Fatal(err)
	}
	ep, _ := priv.ECDH()
	pp, _ := ours.PublicKey.(*ecdsa.PublicKey).ECDH()
	z, err := ep.ECDH(pp)
	if err != nil {
		b.Fatal(err)
	}
	kbpk, _ := kdf.OneStep(sha256.New, z, []byte{1}, 16)
	return &benchDH{svc: svc, ca: caKey.ARN, k3: k3, cert: cert.Raw, kbpk: kbpk,
		kekAES128: opstest.Import(b, svc, xSym(keyspec.K1, keyspec.AES128, xMEDWU), xAes128)}
}

// BenchmarkTranslateKeyMaterial: one ECDH P-256 agreement, KDF, TR-31 unwrap
// and TR-31 wrap per operation; no PKCS#11 call.
func BenchmarkTranslateKeyMaterial(b *testing.B) {
	e := newBenchDH(b, keyspec.K1)
	blk, err := tr31.Wrap(e.kbpk, tr31.Header{Version: 'D', KeyUsage: "P0", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'E'}, xUnhex(b, xAes128))
	if err != nil {
		b.Fatal(err)
	}
	in := ops.TranslateKeyMaterialInput{Incoming: ops.ImportDiffieHellmanTr31{KeyBlock: blk, DiffieHellman: ops.DiffieHellman{PrivateKeyIdentifier: e.k3.arn,
		CAIdentifier: e.ca, Certificate: e.cert, DeriveKeyAlgorithm: keyspec.AES128, KDF: ops.KDFNistSP800, Hash: ops.KDFSHA256, SharedInformation: hb("01")}},
		OutgoingWrappingKeyIdentifier: e.kekAES128}
	if _, err := e.svc.TranslateKeyMaterial(in); err != nil {
		b.Fatal(err)
	}
	tokens := custody.TokenOperations()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := e.svc.TranslateKeyMaterial(in); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := custody.TokenOperations() - tokens; n != 0 {
		b.Fatalf("%d PKCS#11 calls", n)
	}
}

// BenchmarkEncryptDataDiffieHellman: EncryptData (AES-128 CBC, 64 bytes)
// with a DiffieHellmanSymmetricKey agreed on P-256 per operation.
func BenchmarkEncryptDataDiffieHellman(b *testing.B) {
	e := newBenchDH(b, keyspec.D0)
	in := ops.EncryptDataInput{KeyIdentifier: e.k3.arn, PlainText: hb(strings.Repeat("00", 64)),
		Attributes: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC}}, WrappedKey: &ops.DynamicKey{DiffieHellman: &ops.EcdhDerivation{
			CAIdentifier: e.ca, Certificate: e.cert, KeyAlgorithm: keyspec.AES128, KDF: ops.KDFNistSP800, Hash: ops.KDFSHA256, SharedInformation: hb("01")}}}
	if _, err := e.svc.EncryptData(in); err != nil {
		b.Fatal(err)
	}
	tokens := custody.TokenOperations()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := e.svc.EncryptData(in); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := custody.TokenOperations() - tokens; n != 0 {
		b.Fatalf("%d PKCS#11 calls", n)
	}
}

// FuzzTranslateKeyMaterialBlock: any incoming key block, opened under a
// correctly agreed KBPK, gives a translated block or a fault, never a panic;
// a block that is not a TR-31 block under that KBPK is never translated.
func FuzzTranslateKeyMaterialBlock(f *testing.F) {
	e := newBenchDH(f, keyspec.K1)
	good, err := tr31.Wrap(e.kbpk, tr31.Header{Version: 'D', KeyUsage: "P0", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'E'}, xUnhex(f, xAes128))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:16])
	f.Add("D0016D0AB00N0000")
	f.Add("B0000")
	f.Fuzz(func(t *testing.T, blk string) {
		out, err := e.svc.TranslateKeyMaterial(ops.TranslateKeyMaterialInput{Incoming: ops.ImportDiffieHellmanTr31{KeyBlock: blk,
			DiffieHellman: ops.DiffieHellman{PrivateKeyIdentifier: e.k3.arn, CAIdentifier: e.ca, Certificate: e.cert,
				DeriveKeyAlgorithm: keyspec.AES128, KDF: ops.KDFNistSP800, Hash: ops.KDFSHA256, SharedInformation: hb("01")}},
			OutgoingWrappingKeyIdentifier: e.kekAES128})
		if err != nil {
			if fault.As(err) == nil {
				t.Fatalf("not a fault: %v", err)
			}
			return
		}
		if _, _, err := tr31.Unwrap(e.kbpk, blk); err != nil {
			t.Fatalf("translated a block that does not open under the KBPK: %+v", out)
		}
	})
}
