package tr34

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"math/big"
	"testing"
	"time"

	"payhsm/hsm/tr31"
	"payhsm/internal/testkeys"
)

// The partner below encodes and decodes tokens with encoding/asn1 (Go's
// standard library), independently of this package's DER code, in the layout
// of the AWS Payment Cryptography TR-34 samples (aws-samples/
// samples-for-payment-cryptography-service, key-import-export TR-34 import and
// export scripts): envelope without its SEQUENCE, untagged OAEP parameters,
// signed attributes contentType, randomNonce, key block header (id-data) and
// messageDigest.

var (
	pOIDData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	pOIDSignedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	pOIDEnvelopedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}
	pOIDRSA           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	pOIDOAEP          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}
	pOIDMGF1          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	pOIDPSpecified    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 9}
	pOIDContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	pOIDMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	pOIDRandomNonce   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 25, 3}
	pOIDSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	pOIDDESEDE3CBC    = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
	pOIDAES128CBC     = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
)

type pAlg struct {
	Algorithm asn1.ObjectIdentifier
	Params    asn1.RawValue `asn1:"optional"`
}
type pIssuerSerial struct {
	Issuer asn1.RawValue
	Serial *big.Int
}
type pOAEPParams struct {
	Hash pAlg
	MGF  struct {
		Algorithm asn1.ObjectIdentifier
		Hash      struct{ Algorithm asn1.ObjectIdentifier }
	}
	PSource struct {
		Algorithm asn1.ObjectIdentifier
		Label     []byte
	}
}
type pKTRI struct {
	Version int
	RID     pIssuerSerial
	Alg     struct {
		Algorithm asn1.ObjectIdentifier
		Params    pOAEPParams
	}
	EncryptedKey []byte
}
type pECI struct {
	Type asn1.ObjectIdentifier
	Alg  struct {
		Algorithm asn1.ObjectIdentifier
		IV        []byte
	}
	Content asn1.RawValue
}
type pAttr struct {
	Type   asn1.ObjectIdentifier
	Values []asn1.RawValue `asn1:"set"`
}
type pSignerInfo struct {
	Version   int
	SID       pIssuerSerial
	DigestAlg struct{ Algorithm asn1.ObjectIdentifier }
	Attrs     asn1.RawValue
	SigAlg    pAlg
	Signature []byte
}
type pSignedData struct {
	Version    int
	DigestAlgs []struct{ Algorithm asn1.ObjectIdentifier } `asn1:"set"`
	ECI        struct {
		Type    asn1.ObjectIdentifier
		Content []byte `asn1:"explicit,tag:0"`
	}
	Signers []pSignerInfo `asn1:"set"`
}
type pContentInfo struct {
	Type    asn1.ObjectIdentifier
	Content pSignedData `asn1:"explicit,tag:0"`
}
type pKeyBlock struct {
	Version int
	KDH     pIssuerSerial
	Key     []byte
	Header  struct {
		Type   asn1.ObjectIdentifier
		Values [][]byte `asn1:"set"`
	}
}

// must is for test setup only: a failure there is a bug in the test.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func octet(b []byte) asn1.RawValue { return asn1.RawValue{Tag: asn1.TagOctetString, Bytes: b} }

func partnerID(c *x509.Certificate) pIssuerSerial {
	return pIssuerSerial{Issuer: asn1.RawValue{FullBytes: c.RawIssuer}, Serial: c.SerialNumber}
}

// partnerBuild builds a token as a partner KDH would, with encoding/asn1.
func partnerBuild(t testing.TB, key []byte, header string, nonce []byte, kdh *x509.Certificate, kdhKey *rsa.PrivateKey, krd *x509.Certificate) []byte {
	var kb pKeyBlock
	kb.Version, kb.KDH, kb.Key = 1, partnerID(kdh), key
	kb.Header.Type, kb.Header.Values = pOIDData, [][]byte{[]byte(header)}
	plain := must(asn1.Marshal(kb))
	for len(plain)%8 != 0 {
		plain = append(plain, 0)
	}
	cek, iv := make([]byte, 24), make([]byte, 8)
	rand.Read(cek)
	rand.Read(iv)
	b := must(des.NewTripleDESCipher(cek))
	ct := make([]byte, len(plain))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(ct, plain)
	var ri pKTRI
	ri.RID = partnerID(krd)
	ri.Alg.Algorithm = pOIDOAEP
	ri.Alg.Params.Hash = pAlg{Algorithm: pOIDSHA256, Params: asn1.NullRawValue}
	ri.Alg.Params.MGF.Algorithm, ri.Alg.Params.MGF.Hash.Algorithm = pOIDMGF1, pOIDSHA256
	ri.Alg.Params.PSource.Algorithm, ri.Alg.Params.PSource.Label = pOIDPSpecified, []byte{}
	ri.EncryptedKey = must(rsa.EncryptOAEP(sha256.New(), rand.Reader, krd.PublicKey.(*rsa.PublicKey), cek, nil))
	var eci pECI
	eci.Type, eci.Alg.Algorithm, eci.Alg.IV = pOIDData, pOIDDESEDE3CBC, iv
	eci.Content = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: ct}
	env := append(must(asn1.Marshal(0)), must(asn1.MarshalWithParams([]pKTRI{ri}, "set"))...)
	env = append(env, must(asn1.Marshal(eci))...)
	digest := sha256.Sum256(env)
	attrs := []pAttr{
		{pOIDContentType, []asn1.RawValue{{FullBytes: must(asn1.Marshal(pOIDEnvelopedData))}}},
		{pOIDRandomNonce, []asn1.RawValue{octet(nonce)}},
		{pOIDData, []asn1.RawValue{octet([]byte(header))}},
		{pOIDMessageDigest, []asn1.RawValue{octet(digest[:])}},
	}
	set := must(asn1.MarshalWithParams(attrs, "set"))
	var setBody asn1.RawValue
	must(asn1.Unmarshal(set, &setBody))
	sum := sha256.Sum256(set)
	sig := must(rsa.SignPKCS1v15(rand.Reader, kdhKey, crypto.SHA256, sum[:]))
	si := pSignerInfo{Version: 1, SID: partnerID(kdh), Attrs: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: setBody.Bytes},
		SigAlg: pAlg{Algorithm: pOIDRSA, Params: asn1.NullRawValue}, Signature: sig}
	si.DigestAlg.Algorithm = pOIDSHA256
	var sd pSignedData
	sd.Version = 1
	sd.DigestAlgs = []struct{ Algorithm asn1.ObjectIdentifier }{{pOIDSHA256}}
	sd.ECI.Type, sd.ECI.Content = pOIDEnvelopedData, env
	sd.Signers = []pSignerInfo{si}
	return must(asn1.Marshal(pContentInfo{Type: pOIDSignedData, Content: sd}))
}

// partnerOpen opens a token as a partner KRD would, with encoding/asn1.
func partnerOpen(t testing.TB, der []byte, kdh *x509.Certificate, krdKey *rsa.PrivateKey) (key []byte, header string, nonce []byte) {
	t.Helper()
	var ci pContentInfo
	if rest := must(asn1.Unmarshal(der, &ci)); len(rest) != 0 || !ci.Type.Equal(pOIDSignedData) {
		t.Fatal("partner: not a SignedData")
	}
	si := ci.Content.Signers[0]
	set := append([]byte{0x31}, si.Attrs.FullBytes[1:]...)
	sum := sha256.Sum256(set)
	if err := rsa.VerifyPKCS1v15(kdh.PublicKey.(*rsa.PublicKey), crypto.SHA256, sum[:], si.Signature); err != nil {
		t.Fatalf("partner: signature: %v", err)
	}
	var attrs []pAttr
	must(asn1.UnmarshalWithParams(set, &attrs, "set"))
	var digest []byte
	for _, a := range attrs {
		switch {
		case a.Type.Equal(pOIDRandomNonce):
			nonce = a.Values[0].Bytes
		case a.Type.Equal(pOIDData):
			header = string(a.Values[0].Bytes)
		case a.Type.Equal(pOIDMessageDigest):
			digest = a.Values[0].Bytes
		}
	}
	env := ci.Content.ECI.Content
	if d := sha256.Sum256(env); !bytes.Equal(d[:], digest) {
		t.Fatal("partner: envelope digest")
	}
	var version int
	rest := must(asn1.Unmarshal(env, &version))
	var ris []pKTRI
	rest = must(asn1.UnmarshalWithParams(rest, &ris, "set"))
	var eci pECI
	if rest = must(asn1.Unmarshal(rest, &eci)); len(rest) != 0 {
		t.Fatal("partner: trailing envelope data")
	}
	cek := must(rsa.DecryptOAEP(sha256.New(), nil, krdKey, ris[0].EncryptedKey, nil))
	var b cipher.Block
	switch {
	case eci.Alg.Algorithm.Equal(pOIDDESEDE3CBC):
		b = must(des.NewTripleDESCipher(cek))
	case eci.Alg.Algorithm.Equal(pOIDAES128CBC):
		b = must(newAES(cek))
	default:
		t.Fatalf("partner: content algorithm %v", eci.Alg.Algorithm)
	}
	plain := make([]byte, len(eci.Content.Bytes))
	cipher.NewCBCDecrypter(b, eci.Alg.IV).CryptBlocks(plain, eci.Content.Bytes)
	var kb pKeyBlock
	must(asn1.Unmarshal(plain, &kb))
	if string(kb.Header.Values[0]) != header || kb.KDH.Serial.Cmp(kdh.SerialNumber) != 0 {
		t.Fatal("partner: inner key block does not match")
	}
	return kb.Key, header, nonce
}

type party struct {
	cert *x509.Certificate
	key  *rsa.PrivateKey
}

func newParty(t testing.TB, cn string, bits int, usage x509.KeyUsage) party {
	k := testkeys.RSA(t, bits)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: usage}
	der := must(x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k))
	return party{cert: must(x509.ParseCertificate(der)), key: k}
}

var (
	tdesKey = []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10, 0x89, 0xe8, 0x8c, 0xf7, 0x93, 0x14, 0x44, 0xf3}
	nonce   = []byte{1, 2, 3, 4, 5, 6, 7, 8}
)

func TestPartnerTokenOpens(t *testing.T) {
	t.Parallel()
	kdh, krd := newParty(t, "KDH", 2048, x509.KeyUsageDigitalSignature), newParty(t, "KRD", 2048, x509.KeyUsageKeyEncipherment)
	const header = "D9999K1TB00E0000"
	tok := partnerBuild(t, tdesKey, header, nonce, kdh.cert, kdh.key, krd.cert)
	p, err := Parse(tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Header != header || !bytes.Equal(p.Nonce, nonce) {
		t.Errorf("header %q nonce %x", p.Header, p.Nonce)
	}
	if id := must(Identity(kdh.cert)); !bytes.Equal(id, p.KDH) {
		t.Errorf("KDH identity differs")
	}
	if id := must(Identity(krd.cert)); !bytes.Equal(id, p.KRD) {
		t.Errorf("KRD identity differs")
	}
	if err := p.Verify(&kdh.key.PublicKey); err != nil {
		t.Fatal(err)
	}
	key, err := p.Open(krd.key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key, tdesKey) {
		t.Errorf("key differs")
	}
}

func TestBuildOpensAtPartner(t *testing.T) {
	t.Parallel()
	kdh, krd := newParty(t, "KDH", 2048, x509.KeyUsageDigitalSignature), newParty(t, "KRD", 3072, x509.KeyUsageKeyEncipherment)
	for _, tc := range []struct {
		name   string
		key    []byte
		useAES bool
	}{
		{"TDES key, TDES content encryption", tdesKey, false},
		{"AES-128 key, AES content encryption", tdesKey[:16], true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := must(EncodeHeader(tr31.Header{Version: 'D', KeyUsage: "K0", Algorithm: 'T', ModeOfUse: 'B', Exportability: 'E',
				Blocks: []tr31.OptionalBlock{{ID: "KV", Data: "00"}}}))
			tok, err := Build(BuildInput{Key: tc.key, Header: h, Nonce: nonce, KDH: kdh.cert, KDHKey: kdh.key, KRD: krd.cert, UseAES: tc.useAES})
			if err != nil {
				t.Fatal(err)
			}
			key, header, n := partnerOpen(t, tok, kdh.cert, krd.key)
			if !bytes.Equal(key, tc.key) || header != h || !bytes.Equal(n, nonce) {
				t.Errorf("partner got header %q nonce %x", header, n)
			}
			// And this package reads its own tokens.
			p := must(Parse(tok))
			if err := p.Verify(&kdh.key.PublicKey); err != nil {
				t.Fatal(err)
			}
			if k := must(p.Open(krd.key)); !bytes.Equal(k, tc.key) {
				t.Errorf("round trip key differs")
			}
		})
	}
}

func TestTamperedTokens(t *testing.T) {
	t.Parallel()
	kdh, krd := newParty(t, "KDH", 2048, 0), newParty(t, "KRD", 2048, 0)
	other := newParty(t, "other", 2048, 0)
	tok := partnerBuild(t, tdesKey, "D9999K1TB00E0000", nonce, kdh.cert, kdh.key, krd.cert)
	p := must(Parse(tok))
	if err := p.Verify(&other.key.PublicKey); !errors.Is(err, ErrVerify) {
		t.Errorf("wrong KDH key: %v", err)
	}
	if _, err := p.Open(other.key); !errors.Is(err, ErrVerify) {
		t.Errorf("wrong KRD key: %v", err)
	}
	// Flip every byte in turn: the token must fail to parse, verify or open,
	// or (for bytes outside what is signed, such as the signature's own
	// algorithm identifier) still yield exactly the original key.
	for i := range tok {
		bad := bytes.Clone(tok)
		bad[i] ^= 0x01
		q, err := Parse(bad)
		if err != nil {
			continue
		}
		if err := q.Verify(&kdh.key.PublicKey); err != nil {
			if !errors.Is(err, ErrVerify) {
				t.Fatalf("byte %d: %v", i, err)
			}
			continue
		}
		k, err := q.Open(krd.key)
		if err == nil && !bytes.Equal(k, tdesKey) {
			t.Fatalf("byte %d: a tampered token opened to a different key", i)
		}
	}
}

func TestHeaderCodec(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		ok   bool
		want tr31.Header
	}{
		{"D9999K1TB00E0000", true, tr31.Header{Version: 'D', KeyUsage: "K1", Algorithm: 'T', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'E', KeyContext: '0'}},
		{"D0000B0TX02N0200BI1000ABCDEFABCDKV0600", true, tr31.Header{Version: 'D', KeyUsage: "B0", Algorithm: 'T', ModeOfUse: 'X', KeyVersion: "02", Exportability: 'N', KeyContext: '0',
			Blocks: []tr31.OptionalBlock{{ID: "BI", Data: "00ABCDEFABCD"}, {ID: "KV", Data: "00"}}}},
		{"D0000K0AB00E0100PB0600", true, tr31.Header{Version: 'D', KeyUsage: "K0", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'E', KeyContext: '0'}},
		{"D9999K1TB00E000", false, tr31.Header{}},
		{"D9999K1TB00E0100", false, tr31.Header{}},
		{"D9999K1TB00E0100KV0300", false, tr31.Header{}},
		{"D9999K1TB00E0000X", false, tr31.Header{}},
		{"D9999K1TB00E-100", false, tr31.Header{}},
	} {
		h, err := ParseHeader(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%q: error %v", tc.in, err)
			continue
		}
		if !tc.ok {
			continue
		}
		if h.Version != tc.want.Version || h.KeyUsage != tc.want.KeyUsage || h.Algorithm != tc.want.Algorithm || h.ModeOfUse != tc.want.ModeOfUse ||
			h.KeyVersion != tc.want.KeyVersion || h.Exportability != tc.want.Exportability || len(h.Blocks) != len(tc.want.Blocks) {
			t.Errorf("%q: %+v", tc.in, h)
			continue
		}
		for i := range h.Blocks {
			if h.Blocks[i] != tc.want.Blocks[i] {
				t.Errorf("%q: block %d %v", tc.in, i, h.Blocks[i])
			}
		}
	}
	h := tr31.Header{Version: 'D', KeyUsage: "B0", Algorithm: 'T', ModeOfUse: 'X', KeyVersion: "02", Exportability: 'N', Blocks: []tr31.OptionalBlock{{ID: "BI", Data: "00ABCDEFABCD"}}}
	s := must(EncodeHeader(h))
	if s != "D0000B0TX02N0100BI1000ABCDEFABCD" {
		t.Errorf("encoded %q", s)
	}
}

func FuzzParse(f *testing.F) {
	kdh, krd := newParty(f, "KDH", 2048, 0), newParty(f, "KRD", 2048, 0)
	f.Add(partnerBuild(f, tdesKey, "D9999K1TB00E0000", nonce, kdh.cert, kdh.key, krd.cert))
	f.Add([]byte{0x30, 0x80})
	f.Add(must(hex.DecodeString("308205A106092A864886F70D010702A082059230")))
	f.Fuzz(func(t *testing.T, der []byte) {
		p, err := Parse(der)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		if err := p.Verify(&kdh.key.PublicKey); err == nil {
			_, _ = p.Open(krd.key)
		}
	})
}

func FuzzParseHeader(f *testing.F) {
	for _, s := range []string{"D9999K1TB00E0000", "D0000B0TX02N0200BI1000ABCDEFABCDKV0600", "D0000K0AB00E0100PB0600"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHeader(s)
		if err != nil {
			return
		}
		if _, err := EncodeHeader(h); err != nil && len(h.KeyVersion) == 2 && len(h.KeyUsage) == 2 {
			for _, b := range h.Blocks {
				if len(b.ID) != 2 || len(b.Data) > 251 {
					return
				}
			}
			t.Fatalf("parsed header does not encode: %v", err)
		}
	})
}

func newAES(k []byte) (cipher.Block, error) { return aes.NewCipher(k) }
