// Package openssltest runs the openssl command line as an independent
// implementation for cross-checks in tests: bytes in on standard input,
// bytes out, no shell and no other tool (a bare machine has openssl, which
// make deps installs, but not necessarily xxd).
package openssltest

import (
	"bytes"
	"os/exec"
	"testing"
)

// Enc runs `openssl enc -<cipher> -nopad -K <keyHex> [args...]` on in and
// returns what it writes. The test is skipped when openssl is not
// installed, and fails when openssl refuses (a cipher this build lacks, a
// bad key) or writes nothing, so a cross-check never passes by comparing
// with an empty answer.
func Enc(tb testing.TB, cipher, keyHex string, in []byte, args ...string) []byte {
	tb.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		tb.Skip("openssl not installed")
	}
	cmd := exec.Command("openssl", append([]string{"enc", "-" + cipher, "-nopad", "-K", keyHex}, args...)...) //nolint:gosec // tests only: the arguments are the tests' own constants
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || len(out) == 0 {
		tb.Fatalf("openssl enc -%s: %v (%d bytes out) %s", cipher, err, len(out), stderr.String())
	}
	return out
}
