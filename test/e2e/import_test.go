package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"hash"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
)

// Known keys and their published check values.
const (
	// The classic TDES test key; KCV 08D7B4 is published with it in payment
	// HSM documentation and cross-checked below with OpenSSL.
	tdesKey    = "0123456789ABCDEFFEDCBA9876543210"
	tdesKeyKCV = "08D7B4"
	// ANSI X9 TR-31:2018 Annex A.7.2.2: KBPK (TDES 2-key) and the version B
	// block it protects, carrying a TDES key with KCV 57C409 (KCV as published
	// with the example in openemv/tr31 test/tr31_decrypt_test.c).
	a722KBPK  = "DD7515F2BFC17F85CE48F3CA25CB21F6"
	a722Block = "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E"
	a722Key   = "3F419E1CB7079442AA37474C2EFBF8B8"
	a722KCV   = "57C409"
	// The same 16 bytes as an AES-128 key (TR-31:2018 A.7.4): CMAC KCV 08793E.
	aesKey    = "3F419E1CB7079442AA37474C2EFBF8B8"
	aesKeyKCV = "08793E"
)

// opensslTDESKCV computes an X9.24 KCV with OpenSSL, an independent implementation.
func opensslTDESKCV(t *testing.T, keyHex string) string {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	cmd := exec.Command("openssl", "enc", "-des-ede", "-K", keyHex, "-nopad", "-provider", "legacy", "-provider", "default")
	cmd.Stdin = bytes.NewReader(make([]byte, 8))
	out, err := cmd.Output()
	if err != nil {
		cmd = exec.Command("openssl", "enc", "-des-ede", "-K", keyHex, "-nopad")
		cmd.Stdin = bytes.NewReader(make([]byte, 8))
		if out, err = cmd.Output(); err != nil {
			t.Fatalf("openssl: %v", err)
		}
	}
	return strings.ToUpper(hex.EncodeToString(out[:3]))
}

func importParams(t *testing.T, c *pc.Client, alg types.KeyAlgorithm) (*rsa.PublicKey, string) {
	t.Helper()
	p, err := c.GetParametersForImport(context.Background(), &pc.GetParametersForImportInput{
		KeyMaterialType: types.KeyMaterialTypeKeyCryptogram, WrappingKeyAlgorithm: alg})
	if err != nil {
		t.Fatalf("GetParametersForImport: %v", err)
	}
	if p.WrappingKeyAlgorithm != alg || !strings.HasPrefix(*p.ImportToken, "import-token-") {
		t.Fatalf("parameters %+v", p)
	}
	leaf := verifyChain(t, *p.WrappingKeyCertificate, *p.WrappingKeyCertificateChain)
	pub, ok := leaf.PublicKey.(*rsa.PublicKey)
	if !ok || pub.N.BitLen() != map[types.KeyAlgorithm]int{"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}[alg] {
		t.Fatalf("wrapping key is not %s", alg)
	}
	if days := p.ParametersValidUntilTimestamp.Sub(leaf.NotBefore).Hours() / 24; days < 29.9 || days > 30.1 {
		t.Errorf("token valid %.1f days, want 30", days)
	}
	return pub, *p.ImportToken
}

func wrapOAEP(t testing.TB, pub *rsa.PublicKey, h hash.Hash, keyHex string) string {
	t.Helper()
	k, _ := hex.DecodeString(keyHex)
	ct, err := rsa.EncryptOAEP(h, rand.Reader, pub, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ToUpper(hex.EncodeToString(ct))
}

func attrs(usage types.KeyUsage, alg types.KeyAlgorithm, modes types.KeyModesOfUse) *types.KeyAttributes {
	return &types.KeyAttributes{KeyUsage: usage, KeyClass: types.KeyClassSymmetricKey, KeyAlgorithm: alg, KeyModesOfUse: &modes}
}

func TestImportKnownKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	d := startDaemon(t, dir)
	c := d.client()
	ctx := context.Background()

	if got := opensslTDESKCV(t, tdesKey); got != tdesKeyKCV {
		t.Fatalf("OpenSSL gives KCV %s for the test key, published %s", got, tdesKeyKCV)
	}
	if got := opensslTDESKCV(t, a722Key); got != a722KCV {
		t.Fatalf("OpenSSL gives KCV %s for the A.7.2.2 key, published %s", got, a722KCV)
	}

	pub2048, tok2048 := importParams(t, c, types.KeyAlgorithmRsa2048)

	// ReuseLastGeneratedToken returns the same token while it has >= 7 days left.
	again, err := c.GetParametersForImport(ctx, &pc.GetParametersForImportInput{KeyMaterialType: types.KeyMaterialTypeKeyCryptogram,
		WrappingKeyAlgorithm: types.KeyAlgorithmRsa2048, ReuseLastGeneratedToken: aws.Bool(true)})
	if err != nil || *again.ImportToken != tok2048 {
		t.Fatalf("reuse: %v", err)
	}
	if _, err := c.GetParametersForImport(ctx, &pc.GetParametersForImportInput{KeyMaterialType: types.KeyMaterialTypeTr31KeyBlock,
		WrappingKeyAlgorithm: types.KeyAlgorithmRsa2048}); !isErr[*types.ValidationException](err) {
		t.Errorf("GetParametersForImport TR31_KEY_BLOCK: %v", err)
	}

	// 1. A TDES key as an RSA-OAEP (SHA-256) key cryptogram: the published KCV.
	imp, err := c.ImportKey(ctx, &pc.ImportKeyInput{KeyMaterial: &types.ImportKeyMaterialMemberKeyCryptogram{Value: types.ImportKeyCryptogram{
		KeyAttributes: attrs(types.KeyUsageTr31P0PinEncryptionKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}),
		Exportable:    aws.Bool(true), ImportToken: aws.String(tok2048),
		WrappedKeyCryptogram: aws.String(wrapOAEP(t, pub2048, sha256.New(), tdesKey)), WrappingSpec: types.WrappingKeySpecRsaOaepSha256}}})
	if err != nil {
		t.Fatalf("ImportKey cryptogram: %v", err)
	}
	if *imp.Key.KeyCheckValue != tdesKeyKCV || imp.Key.KeyOrigin != types.KeyOriginExternal || imp.Key.KeyCheckValueAlgorithm != types.KeyCheckValueAlgorithmAnsiX924 {
		t.Errorf("imported TDES key: KCV %s origin %s", *imp.Key.KeyCheckValue, imp.Key.KeyOrigin)
	}

	// 2. The TR-31:2018 A.7.2.2 KBPK as a K0, then its published version B block under it.
	kek, err := c.ImportKey(ctx, &pc.ImportKeyInput{KeyMaterial: &types.ImportKeyMaterialMemberKeyCryptogram{Value: types.ImportKeyCryptogram{
		KeyAttributes: attrs(types.KeyUsageTr31K0KeyEncryptionKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{Decrypt: true, Unwrap: true}),
		Exportable:    aws.Bool(true), ImportToken: aws.String(tok2048),
		WrappedKeyCryptogram: aws.String(wrapOAEP(t, pub2048, sha256.New(), a722KBPK))}}})
	if err != nil {
		t.Fatalf("ImportKey KEK: %v", err)
	}
	if want := opensslTDESKCV(t, a722KBPK); *kek.Key.KeyCheckValue != want {
		t.Errorf("KEK KCV %s, OpenSSL says %s", *kek.Key.KeyCheckValue, want)
	}
	tr31, err := c.ImportKey(ctx, &pc.ImportKeyInput{KeyMaterial: &types.ImportKeyMaterialMemberTr31KeyBlock{Value: types.ImportTr31KeyBlock{
		WrappingKeyIdentifier: kek.Key.KeyArn, WrappedKeyBlock: aws.String(a722Block)}}})
	if err != nil {
		t.Fatalf("ImportKey TR-31: %v", err)
	}
	k := tr31.Key
	if *k.KeyCheckValue != a722KCV || k.KeyAttributes.KeyUsage != types.KeyUsageTr31P0PinEncryptionKey ||
		k.KeyAttributes.KeyAlgorithm != types.KeyAlgorithmTdes2key || *k.KeyAttributes.KeyModesOfUse != (types.KeyModesOfUse{Encrypt: true, Wrap: true}) || !*k.Exportable {
		t.Errorf("TR-31 import: %+v KCV %s", *k.KeyAttributes, *k.KeyCheckValue)
	}
	// A tampered block, and a block under a key that is not a KEK, are refused.
	bad := a722Block[:len(a722Block)-1] + "0"
	if _, err := c.ImportKey(ctx, &pc.ImportKeyInput{KeyMaterial: &types.ImportKeyMaterialMemberTr31KeyBlock{Value: types.ImportTr31KeyBlock{
		WrappingKeyIdentifier: kek.Key.KeyArn, WrappedKeyBlock: aws.String(bad)}}}); !isErr[*types.ValidationException](err) {
		t.Errorf("tampered TR-31 block: %v", err)
	}
	if _, err := c.ImportKey(ctx, &pc.ImportKeyInput{KeyMaterial: &types.ImportKeyMaterialMemberTr31KeyBlock{Value: types.ImportTr31KeyBlock{
		WrappingKeyIdentifier: imp.Key.KeyArn, WrappedKeyBlock: aws.String(a722Block)}}}); !isErr[*types.ValidationException](err) {
		t.Errorf("TR-31 block under a PIN key: %v", err)
	}

	// 3. An AES-128 key under RSA-3072 with OAEP SHA-512: the published CMAC KCV.
	pub3072, tok3072 := importParams(t, c, types.KeyAlgorithmRsa3072)
	aes, err := c.ImportKey(ctx, &pc.ImportKeyInput{KeyMaterial: &types.ImportKeyMaterialMemberKeyCryptogram{Value: types.ImportKeyCryptogram{
		KeyAttributes: attrs(types.KeyUsageTr31D0SymmetricDataEncryptionKey, types.KeyAlgorithmAes128, types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}),
		Exportable:    aws.Bool(false), ImportToken: aws.String(tok3072), WrappingSpec: types.WrappingKeySpecRsaOaepSha512,
		WrappedKeyCryptogram: aws.String(wrapOAEP(t, pub3072, sha512.New(), aesKey))}}})
	if err != nil {
		t.Fatalf("ImportKey AES: %v", err)
	}
	if *aes.Key.KeyCheckValue != aesKeyKCV || aes.Key.KeyCheckValueAlgorithm != types.KeyCheckValueAlgorithmCmac || *aes.Key.Exportable {
		t.Errorf("AES import: KCV %s (%s)", *aes.Key.KeyCheckValue, aes.Key.KeyCheckValueAlgorithm)
	}

	// Refusals: a wrapping key weaker than the key (RSA-2048 < AES-128), a wrong
	// OAEP hash, an unknown token; none of them stores anything.
	before, _ := c.ListKeys(ctx, &pc.ListKeysInput{})
	for name, in := range map[string]types.ImportKeyCryptogram{
		"weak wrapping key": {KeyAttributes: attrs(types.KeyUsageTr31D0SymmetricDataEncryptionKey, types.KeyAlgorithmAes128, types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}),
			Exportable: aws.Bool(true), ImportToken: aws.String(tok2048), WrappedKeyCryptogram: aws.String(wrapOAEP(t, pub2048, sha256.New(), aesKey))},
		"wrong OAEP hash": {KeyAttributes: attrs(types.KeyUsageTr31P0PinEncryptionKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}),
			Exportable: aws.Bool(true), ImportToken: aws.String(tok2048), WrappingSpec: types.WrappingKeySpecRsaOaepSha512,
			WrappedKeyCryptogram: aws.String(wrapOAEP(t, pub2048, sha256.New(), tdesKey))},
		"unknown token": {KeyAttributes: attrs(types.KeyUsageTr31P0PinEncryptionKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}),
			Exportable: aws.Bool(true), ImportToken: aws.String("import-token-0000000000000000"),
			WrappedKeyCryptogram: aws.String(wrapOAEP(t, pub2048, sha256.New(), tdesKey))},
		"wrong key length": {KeyAttributes: attrs(types.KeyUsageTr31P0PinEncryptionKey, types.KeyAlgorithmTdes3key, types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}),
			Exportable: aws.Bool(true), ImportToken: aws.String(tok2048), WrappedKeyCryptogram: aws.String(wrapOAEP(t, pub2048, sha256.New(), tdesKey))},
	} {
		if _, err := c.ImportKey(ctx, &pc.ImportKeyInput{KeyMaterial: &types.ImportKeyMaterialMemberKeyCryptogram{Value: in}}); !isErr[*types.ValidationException](err) {
			t.Errorf("%s: %v", name, err)
		}
	}
	after, _ := c.ListKeys(ctx, &pc.ListKeysInput{})
	if len(after.Keys) != len(before.Keys) {
		t.Errorf("refused imports stored keys: %d → %d", len(before.Keys), len(after.Keys))
	}

	// No clear key reaches the disk or the logs, as hex (either case) or raw bytes.
	d.stop()
	secrets := [][]byte{}
	for _, h := range []string{tdesKey, a722KBPK, a722Key} {
		raw, _ := hex.DecodeString(h)
		secrets = append(secrets, []byte(h), []byte(strings.ToLower(h)), raw)
	}
	logs := []byte(d.logs.String())
	for _, s := range secrets {
		if bytes.Contains(logs, s) {
			t.Errorf("a clear key appears in the logs")
		}
	}
	check(t, filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if bytes.Contains(b, s) {
				t.Errorf("a clear key appears in %s", path)
			}
		}
		return nil
	}))
}

// knownKeys imports known clear keys through the public path: RSA-OAEP
// (SHA-256) key cryptograms under one RSA-3072 import token, via the SDK.
type knownKeys struct {
	t   testing.TB
	c   *pc.Client
	pub *rsa.PublicKey
	tok string
}

func newKnownKeys(t *testing.T, c *pc.Client) *knownKeys {
	t.Helper()
	pub, tok := importParams(t, c, types.KeyAlgorithmRsa3072)
	return &knownKeys{t: t, c: c, pub: pub, tok: tok}
}

// key imports keyHex with the given attributes (exportable) and returns the key.
func (k *knownKeys) key(a *types.KeyAttributes, keyHex string) *types.Key {
	k.t.Helper()
	out, err := k.c.ImportKey(context.Background(), &pc.ImportKeyInput{KeyMaterial: &types.ImportKeyMaterialMemberKeyCryptogram{Value: types.ImportKeyCryptogram{
		KeyAttributes: a, Exportable: aws.Bool(true), ImportToken: aws.String(k.tok),
		WrappedKeyCryptogram: aws.String(wrapOAEP(k.t, k.pub, sha256.New(), keyHex)), WrappingSpec: types.WrappingKeySpecRsaOaepSha256}}})
	if err != nil {
		k.t.Fatalf("ImportKey %s: %v", a.KeyUsage, err)
	}
	return out.Key
}

// arn imports a symmetric key and returns its ARN.
func (k *knownKeys) arn(usage types.KeyUsage, alg types.KeyAlgorithm, modes types.KeyModesOfUse, keyHex string) string {
	k.t.Helper()
	return *k.key(attrs(usage, alg, modes), keyHex).KeyArn
}
