package ops_test

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"

	"payhsm/fault"
	"payhsm/hsm/custody"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// DiffieHellmanSymmetricKey dynamic keys. The partner HSM is OpenSSL
// (ecdhPartner: `openssl pkeyutl -derive` for Z, then `openssl kdf SSKDF` or
// `X963KDF`); it enciphers with `openssl enc` under the key it derived, and
// the service must give the same answer. The PIN case ends on a published
// block: ANSI X9.24-1-2009 Annex A.4's ISO 0 block (PIN 1234, PAN
// 4012345678909) under 0123456789ABCDEFFEDCBA9876543210 is x924Out.

// dhEnv is a service with an imported partner CA, K3 key pairs and partners.
type dhEnv struct {
	f                   *xExchangeFixture
	ca                  string
	p256, p521          *ecdhPartner
	stranger            *ecdhPartner // certified by a CA the service does not trust
	k3D0, k3D0p521, k3P *dhK3        // derive D0 (P-256 and P-521) and P0 (P-256) keys
	k3K1                *dhK3        // derives K1 keys (P-256)
}

type dhK3 struct {
	arn  string
	cert []byte // DER, from GetPublicKeyCertificate
}

func newDHK3(t testing.TB, svc *ops.Service, alg keyspec.Algorithm, derive keyspec.KeyUsage) *dhK3 {
	t.Helper()
	k, err := svc.CreateKey(ops.CreateKeyInput{Attributes: keyspec.Attributes{Usage: keyspec.K3, Class: keyspec.AsymmetricPair, Algorithm: alg,
		Modes: keyspec.ModesOfUse{DeriveKey: true}}, DeriveKeyUsage: derive})
	if err != nil {
		t.Fatal(err)
	}
	c, err := svc.GetPublicKeyCertificate(k.ARN)
	if err != nil {
		t.Fatal(err)
	}
	return &dhK3{arn: k.ARN, cert: c.Certificate}
}

func newDHEnv(t *testing.T) *dhEnv {
	f := xNewExchange(t)
	ca := xNewTestCA(t, nil)
	caKey, err := f.svc.ImportCertificate(ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: ca.cert.Raw})
	if err != nil {
		t.Fatal(err)
	}
	return &dhEnv{f: f, ca: caKey.ARN,
		p256: newECDHPartner(t, "P-256", ca), p521: newECDHPartner(t, "P-521", ca), stranger: newECDHPartner(t, "P-256", xNewTestCA(t, nil)),
		k3D0: newDHK3(t, f.svc, keyspec.ECCP256, keyspec.D0), k3D0p521: newDHK3(t, f.svc, keyspec.ECCP521, keyspec.D0),
		k3P: newDHK3(t, f.svc, keyspec.ECCP256, keyspec.P0), k3K1: newDHK3(t, f.svc, keyspec.ECCP256, keyspec.K1)}
}

// dhKDF and dhHash map the API's names, which the tables here use, onto the
// operations layer's (an unknown name is an unknown value).
var (
	dhKDF  = map[string]ops.KDF{"NIST_SP800": ops.KDFNistSP800, "ANSI_X963": ops.KDFAnsiX963}
	dhHash = map[string]ops.KDFHash{"SHA_256": ops.KDFSHA256, "SHA_384": ops.KDFSHA384, "SHA_512": ops.KDFSHA512}
)

func dhKDFOf(name string) ops.KDF {
	if k, ok := dhKDF[name]; ok {
		return k
	}
	return 99
}

func dhHashOf(name string) ops.KDFHash {
	if h, ok := dhHash[name]; ok {
		return h
	}
	return 99
}

func (e *dhEnv) dh(p *ecdhPartner, alg keyspec.Algorithm, kdf, hash, info string) *ops.DynamicKey {
	return &ops.DynamicKey{DiffieHellman: &ops.EcdhDerivation{CAIdentifier: e.ca, Certificate: p.cert.Raw, KeyAlgorithm: alg,
		KDF: dhKDFOf(kdf), Hash: dhHashOf(hash), SharedInformation: hb(info)}}
}

// dhOpensslEnc enciphers dataHex with `openssl enc -<cipher> -nopad`.
func dhOpensslEnc(t *testing.T, cipher, keyHex, ivHex, dataHex string) string {
	t.Helper()
	args := []string{"enc", "-" + cipher, "-K", keyHex, "-nopad"}
	if ivHex != "" {
		args = append(args, "-iv", ivHex)
	}
	cmd := exec.Command("openssl", args...)
	cmd.Stdin = bytes.NewReader(xUnhex(t, dataHex))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl enc: %v", err)
	}
	return strings.ToUpper(hex.EncodeToString(out))
}

var (
	dhKDFName = map[string]string{"NIST_SP800": "SSKDF", "ANSI_X963": "X963KDF"}
	dhDigest  = map[string]string{"SHA_256": "SHA256", "SHA_384": "SHA384", "SHA_512": "SHA512"}
)

// TestDiffieHellmanDynamicDataKeys: EncryptData, DecryptData and
// ReEncryptData with a key agreed between a K3 key pair deriving D0 keys and
// the OpenSSL partner; the ciphertext equals OpenSSL's under the partner's
// derived key and the KCV equals OpenSSL's check value of that key.
func TestDiffieHellmanDynamicDataKeys(t *testing.T) {
	e := newDHEnv(t)
	const pt = "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51" // NIST SP 800-38A F.1 plaintext
	const iv = "000102030405060708090A0B0C0D0E0F"
	for _, tc := range []struct {
		name      string
		k3        *dhK3
		p         *ecdhPartner
		alg       keyspec.Algorithm
		kdf, hash string
		mode      string
		cipher    string // openssl enc cipher
		iv        string
	}{
		{"P-256 NIST_SP800 SHA-256 AES_128 CBC", e.k3D0, e.p256, keyspec.AES128, "NIST_SP800", "SHA_256", "CBC", "aes-128-cbc", iv},
		{"P-256 ANSI_X963 SHA-512 TDES_3KEY ECB", e.k3D0, e.p256, keyspec.TDES3Key, "ANSI_X963", "SHA_512", "ECB", "des-ede3", ""},
		{"P-256 ANSI_X963 SHA-256 TDES_2KEY CBC", e.k3D0, e.p256, keyspec.TDES2Key, "ANSI_X963", "SHA_256", "CBC", "des-ede3-cbc", iv[:16]},
		{"P-521 NIST_SP800 SHA-384 AES_256 CBC", e.k3D0p521, e.p521, keyspec.AES256, "NIST_SP800", "SHA_384", "CBC", "aes-256-cbc", iv},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const info = "0A0B0C0D0E0F1011"
			key := tc.p.kbpk(t, tc.k3.cert, dhKDFName[tc.kdf], dhDigest[tc.hash], info, tc.alg.KeyLen())
			keyHex := strings.ToUpper(hex.EncodeToString(key))
			osslKey := keyHex
			if tc.alg == keyspec.TDES2Key {
				osslKey += keyHex[:16] // K1 K2 K1
			}
			want := dhOpensslEnc(t, tc.cipher, osslKey, tc.iv, pt)
			wk := e.dh(tc.p, tc.alg, tc.kdf, tc.hash, info)
			attrs := ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: map[string]ops.CipherMode{"CBC": ops.ModeCBC, "ECB": ops.ModeECB}[tc.mode], IV: hb(tc.iv)}}
			out, err := e.f.svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: tc.k3.arn, PlainText: hb(pt), Attributes: attrs, WrappedKey: wk})
			if err != nil {
				t.Fatal(err)
			}
			if hx(out.Data) != want || out.KeyARN != tc.k3.arn || out.KCV != xOpensslKCV(t, tc.alg, keyHex) {
				t.Errorf("EncryptData %s (KCV %s, ARN %s), OpenSSL %s (KCV %s)", out.Data, out.KCV, out.KeyARN, want, xOpensslKCV(t, tc.alg, keyHex))
			}
			back, err := e.f.svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: tc.k3.arn, CipherText: hb(want), Attributes: attrs, WrappedKey: wk})
			if err != nil || hx(back.Data) != pt {
				t.Fatalf("DecryptData: %v %+v", err, back)
			}
			// Other shared information derives another key (the KDF binds it).
			other := e.dh(tc.p, tc.alg, tc.kdf, tc.hash, info+"00")
			if o, err := e.f.svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: tc.k3.arn, PlainText: hb(pt), Attributes: attrs, WrappedKey: other}); err != nil || hx(o.Data) == want {
				t.Errorf("different SharedInformation: %v, same ciphertext %t", err, o != nil && hx(o.Data) == want)
			}
		})
	}

	// ReEncryptData from the agreed key to the stored D0 AES-128 key (NIST SP
	// 800-38A F.1.1 ECB-AES128.Encrypt: key 2B7E1516..., so the output is
	// the published ciphertext).
	t.Run("ReEncryptData agreed to stored", func(t *testing.T) {
		svc := e.f.svc
		stored := opstest.Import(t, svc, xSym(keyspec.D0, keyspec.AES128, xMEDWU), sp80038A)
		key := e.p256.kbpk(t, e.k3D0.cert, "SSKDF", "SHA256", "ABCDEF", 16)
		ct := dhOpensslEnc(t, "aes-128-cbc", hex.EncodeToString(key), iv, pt)
		out, err := svc.ReEncryptData(ops.ReEncryptDataInput{IncomingKeyIdentifier: e.k3D0.arn, OutgoingKeyIdentifier: stored, CipherText: hb(ct),
			Incoming: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC, IV: hb(iv)}}, Outgoing: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeECB}},
			IncomingWrappedKey: e.dh(e.p256, keyspec.AES128, "NIST_SP800", "SHA_256", "ABCDEF")})
		if err != nil {
			t.Fatal(err)
		}
		if hx(out.Data) != "3AD77BB40D7A3660A89ECAF32466EF97F5D3D58503B9699DE785895A96FDBAAF" {
			t.Errorf("ReEncryptData %s", out.Data)
		}
	})
}

// TestDiffieHellmanDynamicPinKey: TranslatePin from a PEK agreed with a K3
// key pair deriving P0 keys to a stored PEK; the partner enciphers the
// X9.24-1 A.4 clear block under its derived key with OpenSSL, and the
// translated block is the published one under the stored key.
func TestDiffieHellmanDynamicPinKey(t *testing.T) {
	e := newDHEnv(t)
	const clearBlock = "041274EDCBA9876F" // ANSI X9.24-1-2009 A.4: PIN 1234, PAN 4012345678909, ISO 0
	for _, alg := range []keyspec.Algorithm{keyspec.TDES2Key, keyspec.TDES3Key} {
		t.Run(string(alg), func(t *testing.T) {
			key := hex.EncodeToString(e.p256.kbpk(t, e.k3P.cert, "X963KDF", "SHA256", "1234", alg.KeyLen()))
			if alg == keyspec.TDES2Key {
				key += key[:16]
			}
			in := dhOpensslEnc(t, "des-ede3", key, "", clearBlock)
			out, err := e.f.svc.TranslatePin(ops.TranslatePinInput{IncomingKey: e.k3P.arn, OutgoingKey: e.f.pekTDES2,
				Incoming: pinSpec(ops.PinFormatISO0, x924PAN), Outgoing: pinSpec(ops.PinFormatISO0, x924PAN), EncryptedPinBlock: hb(in),
				IncomingWrapped: e.dh(e.p256, alg, "ANSI_X963", "SHA_256", "1234")})
			if err != nil {
				t.Fatal(err)
			}
			if hx(out.PinBlock) != x924Out || out.KeyARN != e.f.pekTDES2 {
				t.Errorf("TranslatePin %s (key %s), want %s", out.PinBlock, out.KeyARN, x924Out)
			}
		})
	}
	// Outgoing side: from the stored PEK to an agreed TDES_3KEY PEK.
	t.Run("outgoing agreed", func(t *testing.T) {
		key := hex.EncodeToString(e.p256.kbpk(t, e.k3P.cert, "SSKDF", "SHA512", "5678", 24))
		out, err := e.f.svc.TranslatePin(ops.TranslatePinInput{IncomingKey: e.f.pekTDES2, OutgoingKey: e.k3P.arn,
			Incoming: pinSpec(ops.PinFormatISO0, x924PAN), Outgoing: pinSpec(ops.PinFormatISO0, x924PAN), EncryptedPinBlock: hb(x924Out),
			OutgoingWrapped: e.dh(e.p256, keyspec.TDES3Key, "NIST_SP800", "SHA_512", "5678")})
		if err != nil {
			t.Fatal(err)
		}
		if want := dhOpensslEnc(t, "des-ede3", key, "", clearBlock); hx(out.PinBlock) != want || out.KeyARN != e.k3P.arn {
			t.Errorf("TranslatePin %s, OpenSSL %s", out.PinBlock, want)
		}
	})
}

// TestDiffieHellmanDynamicKeyRefusals: key separation and the strength
// rules apply to agreed keys exactly as to stored and TR-31 dynamic keys.
func TestDiffieHellmanDynamicKeyRefusals(t *testing.T) {
	e := newDHEnv(t)
	const pt = "00112233445566778899AABBCCDDEEFF"
	ecb := ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeECB}}
	dh := at{fault.SubjectWrappedKey, fault.SideNone}
	key := at{fault.SubjectKey, fault.SideNone}
	about := func(s fault.Subject) at { return at{s, fault.SideNone} }
	ok := e.dh(e.p256, keyspec.AES128, "NIST_SP800", "SHA_256", "01")
	both := *ok
	both.Tr31KeyBlock = "D0016D0AB00N0000"
	for _, tc := range []struct {
		name  string
		ident string
		wk    *ops.DynamicKey
		kind  fault.Kind
		field at
	}{
		{"key pair derives PIN keys", e.k3P.arn, ok, fault.Validation, dh},
		{"key pair derives KBPKs", e.k3K1.arn, ok, fault.Validation, dh},
		{"P-256 cannot derive AES_256", e.k3D0.arn, e.dh(e.p256, keyspec.AES256, "NIST_SP800", "SHA_256", "01"), fault.Validation, at{}},
		{"D0 cannot be HMAC", e.k3D0.arn, e.dh(e.p256, keyspec.HMACSHA256, "NIST_SP800", "SHA_256", "01"), fault.Validation, about(fault.SubjectDerivedKeyAlgorithm)},
		{"unknown algorithm", e.k3D0.arn, e.dh(e.p256, "DES", "NIST_SP800", "SHA_256", "01"), fault.Validation, about(fault.SubjectDerivedKeyAlgorithm)},
		{"KEK is not a key pair", e.f.kekAES128, ok, fault.Validation, key},
		{"D0 key is not a key pair", e.f.dekAES128, ok, fault.Validation, key},
		{"curve mismatch", e.k3D0.arn, e.dh(e.p521, keyspec.AES128, "NIST_SP800", "SHA_256", "01"), fault.Validation, about(fault.SubjectCertificate)},
		{"partner from another CA", e.k3D0.arn, e.dh(e.stranger, keyspec.AES128, "NIST_SP800", "SHA_256", "01"), fault.Validation, about(fault.SubjectCertificate)},
		{"CA is not a CA", e.k3D0.arn, &ops.DynamicKey{DiffieHellman: &ops.EcdhDerivation{CAIdentifier: e.f.kekAES128, Certificate: e.p256.cert.Raw,
			KeyAlgorithm: keyspec.AES128, KDF: ops.KDFNistSP800, Hash: ops.KDFSHA256, SharedInformation: hb("01")}}, fault.Validation, about(fault.SubjectCertificateAuthority)},
		{"unknown KDF", e.k3D0.arn, e.dh(e.p256, keyspec.AES128, "HKDF", "SHA_256", "01"), fault.Validation, about(fault.SubjectKDF)},
		{"unknown hash", e.k3D0.arn, e.dh(e.p256, keyspec.AES128, "NIST_SP800", "SHA_1", "01"), fault.Validation, about(fault.SubjectKDFHash)},
		{"both forms", e.k3D0.arn, &both, fault.Validation, dh},
		{"TR-31 form under a key pair", e.k3D0.arn, &ops.DynamicKey{Tr31KeyBlock: "D0016D0AB00N0000"}, fault.Validation, key},
		{"unknown key pair", "alias/none", ok, fault.NotFound, at{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.f.svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: tc.ident, PlainText: hb(pt), Attributes: ecb, WrappedKey: tc.wk})
			xWantKind(t, err, tc.kind)
			if tc.kind == fault.Validation && !isAbout(err, tc.field) {
				t.Errorf("%s, want about %+v", aboutOf(err), tc.field)
			}
		})
	}
	// The strength refusal names the curve that would do.
	if _, err := e.f.svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: e.k3D0.arn, PlainText: hb(pt), Attributes: ecb,
		WrappedKey: e.dh(e.p256, keyspec.AES256, "NIST_SP800", "SHA_256", "01")}); !strings.Contains(fault.ClientMessage(err), "use an ECC_NIST_P521 key pair") {
		t.Errorf("P-256 deriving AES_256: %v", err)
	}
	// A P0 key agreed for TranslatePin cannot encrypt data, and a D0 key
	// cannot carry a PIN.
	_, err := e.f.svc.TranslatePin(ops.TranslatePinInput{IncomingKey: e.k3D0.arn, OutgoingKey: e.f.pekTDES2,
		Incoming: pinSpec(ops.PinFormatISO0, x924PAN), Outgoing: pinSpec(ops.PinFormatISO0, x924PAN), EncryptedPinBlock: hb(x924Out),
		IncomingWrapped: e.dh(e.p256, keyspec.TDES2Key, "NIST_SP800", "SHA_256", "01")})
	if !isAbout(err, at{fault.SubjectWrappedKey, fault.SideIncoming}) {
		t.Errorf("D0 agreed key for a PIN: %s", aboutOf(err))
	}
	// A certificate the KeyUsage of which forbids key agreement.
	ca := xNewTestCA(t, nil)
	caKey, err := e.f.svc.ImportCertificate(ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: ca.cert.Raw})
	if err != nil {
		t.Fatal(err)
	}
	signer := newECDHPartner(t, "P-256", ca)
	signer.cert = xNewCert(t, ca, signer.cert.PublicKey, nil, false, x509.KeyUsageDigitalSignature, signer.cert.NotBefore, signer.cert.NotAfter)
	_, err = e.f.svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: e.k3D0.arn, PlainText: hb(pt), Attributes: ecb,
		WrappedKey: &ops.DynamicKey{DiffieHellman: &ops.EcdhDerivation{CAIdentifier: caKey.ARN, Certificate: signer.cert.Raw,
			KeyAlgorithm: keyspec.AES128, KDF: ops.KDFNistSP800, Hash: ops.KDFSHA256, SharedInformation: hb("01")}}})
	if !isAbout(err, at{fault.SubjectCertificate, fault.SideNone}) {
		t.Errorf("signature-only certificate: %s", aboutOf(err))
	}
}

// TestDiffieHellmanDynamicKeyNoTokenCalls: the key pair comes from the
// working-key cache and the agreement runs in process: no PKCS#11 call per
// operation.
func TestDiffieHellmanDynamicKeyNoTokenCalls(t *testing.T) {
	e := newDHEnv(t)
	wk := e.dh(e.p256, keyspec.AES128, "NIST_SP800", "SHA_256", "01")
	run := func() {
		if _, err := e.f.svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: e.k3D0.arn, PlainText: hb(strings.Repeat("00", 16)),
			Attributes: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeECB}}, WrappedKey: wk}); err != nil {
			t.Fatal(err)
		}
	}
	run()
	before := custody.TokenOperations()
	for range 50 {
		run()
	}
	if n := custody.TokenOperations() - before; n != 0 {
		t.Fatalf("%d PKCS#11 calls for 50 operations", n)
	}
}

// FuzzDiffieHellmanDynamicKey: any EcdhDerivationAttributes give a result or
// a fault, never a panic, and never a key from a certificate that does not
// chain to the CA.
func FuzzDiffieHellmanDynamicKey(f *testing.F) {
	f.Add([]byte(nil), "AES_128", uint8(ops.KDFNistSP800), uint8(ops.KDFSHA256), []byte{1})
	f.Add([]byte{0x30, 0x82, 0x01, 0x0A, 0x02}, "TDES_2KEY", uint8(ops.KDFAnsiX963), uint8(ops.KDFSHA512), []byte(nil))
	f.Add([]byte("MIIB"), "HMAC_SHA256", uint8(9), uint8(ops.KDFSHA384), []byte("zz"))
	svc := opstest.New(f)
	ca := xNewTestCA(f, nil)
	caKey, err := svc.ImportCertificate(ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: ca.cert.Raw})
	if err != nil {
		f.Fatal(err)
	}
	k3 := newDHK3(f, svc, keyspec.ECCP256, keyspec.D0)
	f.Fuzz(func(t *testing.T, cert []byte, alg string, kdf, hash uint8, info []byte) {
		wk := &ops.DynamicKey{DiffieHellman: &ops.EcdhDerivation{CAIdentifier: caKey.ARN, Certificate: cert, KeyAlgorithm: keyspec.Algorithm(alg),
			KDF: ops.KDF(kdf), Hash: ops.KDFHash(hash), SharedInformation: info}}
		out, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: k3.arn, PlainText: hb("00112233445566778899AABBCCDDEEFF"),
			Attributes: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeECB}}, WrappedKey: wk})
		if err == nil {
			t.Fatalf("a certificate the CA never issued was accepted: %+v", out)
		}
		if fault.As(err) == nil {
			t.Fatalf("not a fault: %v", err)
		}
	})
}
