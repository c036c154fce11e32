package e2e

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"payhsm/tools/hostclient"
)

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// parseB64PEM decodes a base64-encoded PEM certificate, as the API returns them.
func parseB64PEM(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("certificate is not base64: %v", err)
	}
	blk, _ := pem.Decode(raw)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("certificate is not PEM")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// verifyChain checks that leaf is signed by root and root is a CA.
func verifyChain(t *testing.T, leafB64, rootB64 string) *x509.Certificate {
	t.Helper()
	leaf, root := parseB64PEM(t, leafB64), parseB64PEM(t, rootB64)
	if !root.IsCA {
		t.Errorf("chain certificate is not a CA")
	}
	if err := leaf.CheckSignatureFrom(root); err != nil {
		t.Errorf("leaf not signed by chain: %v", err)
	}
	return leaf
}

func ioNopCloser(r io.Reader) io.ReadCloser { return io.NopCloser(r) }

func staticCreds(id, secret string) aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(id, secret, "")
}

// ncKCV asks the host port for the default profile main key's check value (NC).
func ncKCV(t testing.TB, d *daemon) (string, string) {
	t.Helper()
	return ncRaw(t, d, "0000NC")
}

// ncLMK asks the host port for the check value of the profile LMK identifier id selects.
func ncLMK(t testing.TB, d *daemon, id string) string {
	t.Helper()
	_, kcv := ncRaw(t, d, "0000NC%"+id)
	return kcv
}

func ncRaw(t testing.TB, d *daemon, msg string) (string, string) {
	t.Helper()
	c, err := net.Dial("tcp", d.hostAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, c)
	check(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	writeAll(t, c, append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...))
	var lb [2]byte
	if _, err := io.ReadFull(c, lb[:]); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, binary.BigEndian.Uint16(lb[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if !strings.HasPrefix(s, "0000ND00") || len(s) < 14 {
		t.Fatalf("NC answered %q", s)
	}
	return s, s[8:14]
}

// hostSend sends one host command over a new connection and returns the answer (without its length prefix).
func hostSend(t testing.TB, addr, msg string) string {
	t.Helper()
	s, err := hostDo(addr, msg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// hostCaller connects a host-protocol client (4-byte header) to the daemon's
// host port for the test and returns a function that sends one command.
func (d *daemon) hostCaller(t *testing.T) func(code, fields string) *hostclient.Response {
	h, err := hostclient.Dial(d.hostAddr, nil, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeT(t, h) })
	return func(code, fields string) *hostclient.Response {
		t.Helper()
		r, err := h.Call(code, []byte(fields))
		if err != nil {
			t.Fatalf("%s: %v", code, err)
		}
		return r
	}
}

// check fails the test at once when a step the rest of it depends on fails:
// writing a fixture, setting a deadline, closing what must close cleanly.
func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// writeAll writes b to w in full, or fails the test.
func writeAll(t testing.TB, w io.Writer, b []byte) {
	t.Helper()
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
}

// closeT closes c, failing the test when that fails; for defer.
func closeT(t testing.TB, c io.Closer) {
	t.Helper()
	if err := c.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}
