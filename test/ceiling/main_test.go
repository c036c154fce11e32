package main

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	pctypes "github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
	"github.com/aws/smithy-go"

	"payhsm/hsm/kcv"
	"payhsm/hsm/tr31"
)

// TestMinimalCreateKey drives the ceiling with the AWS SDK for Go, an
// independent SigV4 signer and JSON decoder: the key it answers with must be
// the one its durable record holds (the block unwraps to a key whose CMAC KCV
// is the answer's, the record's MAC verifies), and a request signed with
// another secret must be refused and write nothing.
func TestMinimalCreateKey(t *testing.T) {
	dir := t.TempDir()
	s, err := newServer(config{dir: dir, work: "minimal", sync: true, creds: map[string]string{"AKIDCEILING": "ceiling-secret"},
		region: "us-east-1", service: "payment-cryptography"})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		hs.Close()
		if err := s.close(); err != nil {
			t.Error(err)
		}
	})
	client := func(secret string) *pc.Client {
		return pc.New(pc.Options{Region: "us-east-1", BaseEndpoint: aws.String(hs.URL),
			Credentials: credentials.NewStaticCredentialsProvider("AKIDCEILING", secret, ""), RetryMaxAttempts: 1})
	}
	in := &pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: &pctypes.KeyAttributes{
		KeyAlgorithm: pctypes.KeyAlgorithmAes128, KeyClass: pctypes.KeyClassSymmetricKey,
		KeyUsage:      pctypes.KeyUsageTr31D0SymmetricDataEncryptionKey,
		KeyModesOfUse: &pctypes.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}}
	out, err := client("ceiling-secret").CreateKey(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if out.Key == nil || !strings.HasPrefix(aws.ToString(out.Key.KeyArn), "arn:aws:payment-cryptography:us-east-1:") {
		t.Fatalf("answer %+v", out.Key)
	}

	recs, err := os.ReadFile(filepath.Join(dir, "records"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(recs, []byte("\n")); n != 1 {
		t.Fatalf("%d records after one create", n)
	}
	var rec struct{ ID, Block, KCV, CreatedBy, MAC string }
	if err := json.Unmarshal(recs, &rec); err != nil {
		t.Fatalf("record %q: %v", recs, err)
	}
	if !strings.HasSuffix(aws.ToString(out.Key.KeyArn), "/"+rec.ID) || rec.CreatedBy != "AKIDCEILING" {
		t.Errorf("record %+v for %s", rec, aws.ToString(out.Key.KeyArn))
	}
	sealed := recs[:bytes.LastIndex(recs, []byte(`,"mac":`))]
	m := hmac.New(sha256.New, s.seal)
	m.Write(sealed)
	if got := hex.EncodeToString(m.Sum(nil)); got != rec.MAC {
		t.Errorf("record MAC %s, want %s", rec.MAC, got)
	}
	h, key, err := tr31.UnwrapWith(s.keys, rec.Block)
	if err != nil {
		t.Fatal(err)
	}
	c, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.ToUpper(hex.EncodeToString(kcv.CMAC(c))); h.Algorithm != 'A' || !strings.EqualFold(aws.ToString(out.Key.KeyCheckValue), want) || !strings.EqualFold(rec.KCV, want) {
		t.Errorf("block %c, KCV answered %s, recorded %s, of the wrapped key %s", h.Algorithm, aws.ToString(out.Key.KeyCheckValue), rec.KCV, want)
	}

	_, err = client("another-secret").CreateKey(context.Background(), in)
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("a create signed with another secret: %v", err)
	}
	if after, err := os.ReadFile(filepath.Join(dir, "records")); err != nil || !bytes.Equal(after, recs) {
		t.Errorf("a refused create changed the records (%v)", err)
	}
}

// TestWorkNone is the bare bound: every request appends one record.
func TestWorkNone(t *testing.T) {
	dir := t.TempDir()
	s, err := newServer(config{dir: dir, work: "none", sync: true})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	for range 3 {
		resp, err := hs.Client().Post(hs.URL, "application/x-amz-json-1.0", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	hs.Close()
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "records")); err != nil || fi.Size() != 3*recordSize {
		t.Fatalf("records file: %v, %v", fi, err)
	}
	if _, err := newServer(config{dir: dir, work: "more"}); err == nil {
		t.Error("-work more accepted")
	}
}
