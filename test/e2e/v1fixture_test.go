package e2e

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"

	"payhsm/internal/testkeys"
)

// The format-1 data directory fixture (testdata/keystore-v1/) is a --dev
// appliance made by the release whose keystore wrote format 1 (before issue
// #14): a SoftHSM2 token, credentials and a Pebble key store holding one of
// every kind of record, plus the check values and cryptographic outputs that
// release gave (expect.json). TestUpgradeKeepsKeysAndTightensModes and
// TestMigrationSurvivesSIGKILL upgrade a copy and check that every key gives
// the same answers.
//
// It was written by running, at the commit that added it,
//
//	PAYHSM_WRITE_V1_FIXTURE=1 go test ./test/e2e -run TestWriteV1Fixture
//
// Running it again with a later build writes that build's format instead,
// which is not what the upgrade test is for: leave the committed one alone.

const v1FixtureDir = "testdata/keystore-v1"

// v1Fixture is expect.json: the keys by role and what they answered.
type v1Fixture struct {
	Keys    map[string]string `json:"keys"`    // role → key ARN
	KCVs    map[string]string `json:"kcvs"`    // role → KeyCheckValue
	Outputs map[string]string `json:"outputs"` // observation → value (see v1Observe)
	// BulkKeys are keys with many tags each: the bulk of the records the
	// migration rewrites (enough for the SIGKILL test to land mid-way).
	BulkKeys []string `json:"bulkKeys"`
	BulkTags int      `json:"bulkTags"` // tags on each bulk key
}

// v1Observe computes the deterministic outputs of the fixture's keys through
// both front ends.
func v1Observe(t *testing.T, d *daemon, fx *v1Fixture) map[string]string {
	t.Helper()
	out := map[string]string{}
	keyPath := func(arn, verb string) string { return "/keys/" + url.PathEscape(arn) + "/" + verb }
	must := func(what string, st int, body map[string]any, member string) string {
		t.Helper()
		v, _ := body[member].(string)
		if st != 200 || v == "" {
			t.Fatalf("%s: status %d %v", what, st, body)
		}
		return v
	}
	st, body, _ := d.dataCall(t, "/cardvalidationdata/generate", map[string]any{
		"KeyIdentifier": fx.Keys["cvk"], "PrimaryAccountNumber": "4123456789012345",
		"GenerationAttributes": map[string]any{"CardVerificationValue2": map[string]any{"CardExpiryDate": "1226"}}})
	out["cvv2"] = must("CVV2", st, body, "ValidationData")
	st, body, _ = d.dataCall(t, "/cardvalidationdata/generate", map[string]any{
		"KeyIdentifier": "alias/v1-cvk", "PrimaryAccountNumber": "4123456789012345",
		"GenerationAttributes": map[string]any{"CardVerificationValue2": map[string]any{"CardExpiryDate": "0130"}}})
	out["cvv2-by-alias"] = must("CVV2 by alias", st, body, "ValidationData")
	call := d.hostCaller(t)
	if r := call("CW", "@alias/v1-cvk;4123456789012345;8701101"); r.Error != "00" {
		t.Fatalf("CW: %s", r.Error)
	} else {
		out["host-cw"] = string(r.Fields)
	}
	st, body, _ = d.dataCall(t, "/mac/generate", map[string]any{"KeyIdentifier": fx.Keys["mac"],
		"MessageData": hex.EncodeToString([]byte("payhsm v1 fixture")), "GenerationAttributes": map[string]any{"Algorithm": "ISO9797_ALGORITHM3"}})
	out["mac"] = must("MAC", st, body, "Mac")
	st, body, _ = d.dataCall(t, "/mac/generate", map[string]any{"KeyIdentifier": fx.Keys["hmac"],
		"MessageData": hex.EncodeToString([]byte("payhsm v1 fixture")), "GenerationAttributes": map[string]any{"Algorithm": "HMAC_SHA256"}})
	out["hmac"] = must("HMAC", st, body, "Mac")
	st, body, _ = d.dataCall(t, keyPath(fx.Keys["aes"], "encrypt"), map[string]any{
		"PlainText":            "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51",
		"EncryptionAttributes": map[string]any{"Symmetric": map[string]any{"Mode": "CBC", "InitializationVector": "000102030405060708090A0B0C0D0E0F"}}})
	out["aes-cbc"] = must("EncryptData", st, body, "CipherText")
	return out
}

// TestWriteV1Fixture writes the fixture (see above); it runs only when asked.
func TestWriteV1Fixture(t *testing.T) {
	if os.Getenv("PAYHSM_WRITE_V1_FIXTURE") == "" {
		t.Skip("writes testdata/keystore-v1 only with PAYHSM_WRITE_V1_FIXTURE=1")
	}
	dir := t.TempDir()
	d := startDaemon(t, dir)
	c := d.client()
	ctx := context.Background()
	fx := &v1Fixture{Keys: map[string]string{}, KCVs: map[string]string{}, BulkTags: 50}
	create := func(role string, exportable bool, a *types.KeyAttributes) string {
		t.Helper()
		k, err := c.CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(exportable), KeyAttributes: a})
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		if role != "" {
			fx.Keys[role], fx.KCVs[role] = *k.Key.KeyArn, *k.Key.KeyCheckValue
		}
		return *k.Key.KeyArn
	}
	gv := &types.KeyModesOfUse{Generate: true, Verify: true}
	cvk := create("cvk", true, &types.KeyAttributes{KeyUsage: types.KeyUsageTr31C0CardVerificationKey, KeyClass: types.KeyClassSymmetricKey,
		KeyAlgorithm: types.KeyAlgorithmTdes2key, KeyModesOfUse: gv})
	create("mac", false, &types.KeyAttributes{KeyUsage: types.KeyUsageTr31M3Iso97973MacKey, KeyClass: types.KeyClassSymmetricKey,
		KeyAlgorithm: types.KeyAlgorithmTdes2key, KeyModesOfUse: gv})
	create("hmac", false, &types.KeyAttributes{KeyUsage: types.KeyUsageTr31M7HmacKey, KeyClass: types.KeyClassSymmetricKey,
		KeyAlgorithm: types.KeyAlgorithmHmacSha256, KeyModesOfUse: gv})
	create("aes", false, &types.KeyAttributes{KeyUsage: types.KeyUsageTr31D0SymmetricDataEncryptionKey, KeyClass: types.KeyClassSymmetricKey,
		KeyAlgorithm: types.KeyAlgorithmAes128, KeyModesOfUse: &types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}})
	create("kek", true, &types.KeyAttributes{KeyUsage: types.KeyUsageTr31K0KeyEncryptionKey, KeyClass: types.KeyClassSymmetricKey,
		KeyAlgorithm: types.KeyAlgorithmAes256, KeyModesOfUse: &types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}})
	stopped := create("stopped", true, &types.KeyAttributes{KeyUsage: types.KeyUsageTr31C0CardVerificationKey, KeyClass: types.KeyClassSymmetricKey,
		KeyAlgorithm: types.KeyAlgorithmTdes2key, KeyModesOfUse: gv})
	deleted := create("deleted", true, &types.KeyAttributes{KeyUsage: types.KeyUsageTr31C0CardVerificationKey, KeyClass: types.KeyClassSymmetricKey,
		KeyAlgorithm: types.KeyAlgorithmTdes2key, KeyModesOfUse: gv})
	create("rsa", false, &types.KeyAttributes{KeyUsage: types.KeyUsageTr31D1AsymmetricKeyForDataEncryption, KeyClass: types.KeyClassAsymmetricKeyPair,
		KeyAlgorithm: types.KeyAlgorithmRsa2048, KeyModesOfUse: &types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}})

	if _, err := c.CreateAlias(ctx, &pc.CreateAliasInput{AliasName: aws.String("alias/v1-cvk"), KeyArn: aws.String(cvk)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx, &pc.CreateAliasInput{AliasName: aws.String("alias/v1-unassociated")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TagResource(ctx, &pc.TagResourceInput{ResourceArn: aws.String(cvk), Tags: []types.Tag{
		{Key: aws.String("team"), Value: aws.String("cards")}, {Key: aws.String("env"), Value: aws.String("fixture")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StopKeyUsage(ctx, &pc.StopKeyUsageInput{KeyIdentifier: aws.String(stopped)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteKey(ctx, &pc.DeleteKeyInput{KeyIdentifier: aws.String(deleted), DeleteKeyInDays: aws.Int32(180)}); err != nil {
		t.Fatal(err)
	}

	// A trusted root and a certificate chained to it (a "cert-issuer/" record), valid for decades.
	rootKey, leafKey := testkeys.RSA(t, 2048), testkeys.RSA(t, 2048)
	now := time.Now()
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "v1 fixture root"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(40 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "v1 fixture signer"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(39 * 365 * 24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, root, leafKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	fx.Keys["root"] = importRoot(t, c, certB64(root), types.KeyAlgorithmRsa2048)
	tk, err := c.ImportKey(ctx, &pc.ImportKeyInput{KeyMaterial: &types.ImportKeyMaterialMemberTrustedCertificatePublicKey{Value: types.TrustedCertificatePublicKey{
		CertificateAuthorityPublicKeyIdentifier: aws.String(fx.Keys["root"]), PublicKeyCertificate: aws.String(certB64(leaf)),
		KeyAttributes: &types.KeyAttributes{KeyAlgorithm: types.KeyAlgorithmRsa2048, KeyClass: types.KeyClassPublicKey,
			KeyModesOfUse: &types.KeyModesOfUse{Verify: true}, KeyUsage: types.KeyUsageTr31S0AsymmetricKeyForDigitalSignature}}}})
	if err != nil {
		t.Fatalf("import trusted certificate: %v", err)
	}
	fx.Keys["trusted"] = *tk.Key.KeyArn
	for _, role := range []string{"root", "trusted"} {
		g, err := c.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(fx.Keys[role])})
		if err != nil {
			t.Fatal(err)
		}
		fx.KCVs[role] = *g.Key.KeyCheckValue
	}
	// An import token (an "import-token/" record under the profile CA, "ca/default").
	if _, err := c.GetParametersForImport(ctx, &pc.GetParametersForImportInput{KeyMaterialType: types.KeyMaterialTypeKeyCryptogram,
		WrappingKeyAlgorithm: types.KeyAlgorithmRsa2048}); err != nil {
		t.Fatal(err)
	}

	// Bulk: keys with many tags each.
	for i := 0; i < 40; i++ {
		arn := create("", true, &types.KeyAttributes{KeyUsage: types.KeyUsageTr31C0CardVerificationKey, KeyClass: types.KeyClassSymmetricKey,
			KeyAlgorithm: types.KeyAlgorithmTdes2key, KeyModesOfUse: gv})
		tags := make([]types.Tag, fx.BulkTags)
		for j := range tags {
			tags[j] = types.Tag{Key: aws.String(fmt.Sprintf("bulk-%02d", j)), Value: aws.String(fmt.Sprintf("key %d tag %d", i, j))}
		}
		if _, err := c.TagResource(ctx, &pc.TagResourceInput{ResourceArn: aws.String(arn), Tags: tags}); err != nil {
			t.Fatal(err)
		}
		fx.BulkKeys = append(fx.BulkKeys, arn)
	}
	fx.Outputs = v1Observe(t, d, fx)
	d.stop()

	out := filepath.Join(v1FixtureDir)
	if err := os.MkdirAll(out, 0o755); err != nil { //nolint:gosec // a testdata directory of the source tree, committed with the files beside it (0644): readable like the rest of the checkout
		t.Fatal(err)
	}
	if err := writeTarGz(filepath.Join(out, "datadir.tar.gz"), dir); err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(fx, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "expect.json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", out)
}

// writeTarGz archives the regular files and directories under dir (not
// sockets), with paths relative to dir, in a stable order.
func writeTarGz(path, dir string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	var names []string
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		if e.IsDir() || e.Type().IsRegular() {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, p := range names {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(strings.TrimPrefix(p, dir+string(filepath.Separator)))
		h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname = time.Unix(0, 0), 0, 0, "", ""
		if fi.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, src)
			if err := errors.Join(err, src.Close()); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// maxFixtureFile bounds each file extractTarGz unpacks: the archive is a
// committed fixture whose largest file is about 130 KiB, so anything near
// this is a damaged or wrong archive, not one to inflate.
const maxFixtureFile = 16 << 20

// extractTarGz unpacks an archive written by writeTarGz into dir, keeping
// the archived permission bits.
func extractTarGz(path, dir string) (err error) {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(name, filepath.Clean(dir)+string(filepath.Separator)) {
			return fmt.Errorf("archive entry %q leaves the directory", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(name, fs.FileMode(h.Mode).Perm()); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
				return err
			}
			if h.Size > maxFixtureFile {
				return fmt.Errorf("archive entry %q: %d bytes, more than the %d a fixture file may have", h.Name, h.Size, maxFixtureFile)
			}
			out, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fs.FileMode(h.Mode).Perm())
			if err != nil {
				return err
			}
			_, err = io.CopyN(out, tr, h.Size)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("archive entry %q: unsupported type %c", h.Name, h.Typeflag)
		}
	}
}

// loadV1Fixture unpacks a copy of the format-1 data directory and reads its expectations.
func loadV1Fixture(t *testing.T) (string, *v1Fixture) {
	t.Helper()
	dir := t.TempDir()
	if err := extractTarGz(filepath.Join(v1FixtureDir, "datadir.tar.gz"), dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(v1FixtureDir, "expect.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx v1Fixture
	if err := json.Unmarshal(b, &fx); err != nil {
		t.Fatal(err)
	}
	return dir, &fx
}

// checkV1Fixture checks that the daemon d, serving the fixture, gives every
// key the fixture's check value and outputs, and keeps its state.
func checkV1Fixture(t *testing.T, d *daemon, fx *v1Fixture) {
	t.Helper()
	c := d.client()
	ctx := context.Background()
	for role, arn := range fx.Keys {
		g, err := c.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(arn)})
		if err != nil {
			t.Errorf("%s: GetKey: %v", role, err)
			continue
		}
		if *g.Key.KeyCheckValue != fx.KCVs[role] {
			t.Errorf("%s: KCV %s, want %s", role, *g.Key.KeyCheckValue, fx.KCVs[role])
		}
		switch role {
		case "stopped":
			if *g.Key.Enabled {
				t.Errorf("the stopped key is enabled")
			}
		case "deleted":
			if g.Key.KeyState != types.KeyStateDeletePending {
				t.Errorf("the deleted key is %s", g.Key.KeyState)
			}
		case "mac", "hmac", "aes", "rsa":
			if *g.Key.Exportable {
				t.Errorf("%s: non-exportable key became exportable", role)
			}
		}
	}
	got := v1Observe(t, d, fx)
	for name, want := range fx.Outputs {
		if got[name] != want {
			t.Errorf("%s: %q, want %q", name, got[name], want)
		}
	}
	tags, err := c.ListTagsForResource(ctx, &pc.ListTagsForResourceInput{ResourceArn: aws.String(fx.BulkKeys[len(fx.BulkKeys)-1])})
	if err != nil || len(tags.Tags) != fx.BulkTags {
		t.Errorf("tags of a bulk key: %d, %v", len(tags.Tags), err)
	}
	al, err := c.GetAlias(ctx, &pc.GetAliasInput{AliasName: aws.String("alias/v1-unassociated")})
	if err != nil || al.Alias.KeyArn != nil {
		t.Errorf("unassociated alias: %+v %v", al, err)
	}
	// The profile CA and the import token records survived (the token is reused).
	if _, err := c.GetParametersForImport(ctx, &pc.GetParametersForImportInput{KeyMaterialType: types.KeyMaterialTypeKeyCryptogram,
		WrappingKeyAlgorithm: types.KeyAlgorithmRsa2048}); err != nil {
		t.Errorf("GetParametersForImport: %v", err)
	}
}
