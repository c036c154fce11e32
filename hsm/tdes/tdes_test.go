package tdes

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func ecbEncrypt(t *testing.T, key, pt []byte) []byte {
	t.Helper()
	b, err := NewCipher(key)
	if err != nil {
		t.Fatalf("NewCipher: %v", err)
	}
	out := make([]byte, len(pt))
	for i := 0; i < len(pt); i += BlockSize {
		b.Encrypt(out[i:i+BlockSize], pt[i:i+BlockSize])
	}
	return out
}

// TestKnownAnswer uses the TDEA example of NIST SP 800-67 Rev. 1 (draft,
// 2011) Appendix B.1: three keys over "The qufck brown fox jump" in ECB mode.
func TestKnownAnswer(t *testing.T) {
	t.Parallel()
	key := unhex(t, "0123456789ABCDEF 23456789ABCDEF01 456789ABCDEF0123")
	pt := []byte("The qufck brown fox jump")
	want := unhex(t, "A826FD8CE53B855F CCE21C8112256FE6 68D5C05DD9B6B900")
	if got := ecbEncrypt(t, key, pt); !bytes.Equal(got, want) {
		t.Fatalf("ciphertext = %X, want %X", got, want)
	}
	b, _ := NewCipher(key)
	back := make([]byte, len(want))
	for i := 0; i < len(want); i += BlockSize {
		b.Decrypt(back[i:i+BlockSize], want[i:i+BlockSize])
	}
	if !bytes.Equal(back, pt) {
		t.Fatalf("decrypt = %q, want %q", back, pt)
	}
}

// TestDoubleLengthIsK1K2K1 checks that a 16-byte key behaves exactly like
// the 24-byte key K1||K2||K1.
func TestDoubleLengthIsK1K2K1(t *testing.T) {
	t.Parallel()
	for range 32 {
		k := make([]byte, 16)
		rand.Read(k)
		pt := make([]byte, 32)
		rand.Read(pt)
		k3 := append(append([]byte{}, k...), k[:8]...)
		if a, b := ecbEncrypt(t, k, pt), ecbEncrypt(t, k3, pt); !bytes.Equal(a, b) {
			t.Fatalf("key %X: double-length %X != K1K2K1 %X", k, a, b)
		}
	}
}

// TestAgainstOpenSSL cross-checks ECB encryption against openssl's des-ede
// (two-key) and des-ede3 (three-key) ciphers.
func TestAgainstOpenSSL(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	for _, tc := range []struct {
		keyLen int
		cipher string
	}{{16, "des-ede"}, {24, "des-ede3"}} {
		for range 8 {
			k := make([]byte, tc.keyLen)
			rand.Read(k)
			pt := make([]byte, 24)
			rand.Read(pt)
			cmd := exec.Command("openssl", "enc", "-"+tc.cipher, "-K", hex.EncodeToString(k), "-nopad", "-nosalt")
			cmd.Stdin = bytes.NewReader(pt)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("openssl %s: %v", tc.cipher, err)
			}
			if got := ecbEncrypt(t, k, pt); !bytes.Equal(got, out) {
				t.Fatalf("%s key %X: got %X, openssl %X", tc.cipher, k, got, out)
			}
		}
	}
}

func TestNewCipherRejectsBadLengths(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 7, 8, 15, 17, 23, 25, 32} {
		key := bytes.Repeat([]byte{0xA5}, n)
		b, err := NewCipher(key)
		if err == nil || b != nil {
			t.Fatalf("len %d: want error, got %v", n, err)
		}
		if !errors.Is(err, ErrKeySize) {
			t.Fatalf("len %d: error %v is not ErrKeySize", n, err)
		}
		if strings.Contains(strings.ToUpper(err.Error()), "A5A5") {
			t.Fatalf("error leaks key bytes: %v", err)
		}
	}
}

// TestParity uses the DES weak keys of NIST SP 800-67 Rev. 2, section 3.3.2,
// which are published with odd parity: fixing the parity of their even
// counterparts must give exactly the published values.
func TestParity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"0000000000000000", "0101010101010101"},
		{"FFFFFFFFFFFFFFFF", "FEFEFEFEFEFEFEFE"},
		{"E0E0E0E0F0F0F0F0", "E0E0E0E0F1F1F1F1"},
		{"1E1E1E1E0E0E0E0E", "1F1F1F1F0E0E0E0E"},
		// SP 800-67 Rev. 1 B.1 key: already odd parity, must be unchanged.
		{"0123456789ABCDEF23456789ABCDEF01", "0123456789ABCDEF23456789ABCDEF01"},
	} {
		k := unhex(t, tc.in)
		FixParity(k)
		if got := strings.ToUpper(hex.EncodeToString(k)); got != tc.want {
			t.Errorf("FixParity(%s) = %s, want %s", tc.in, got, tc.want)
		}
		if !CheckParity(k) {
			t.Errorf("CheckParity(%s) = false after FixParity", tc.want)
		}
	}
	if CheckParity(unhex(t, "0000000000000000")) {
		t.Error("CheckParity(all zero) = true")
	}
	if CheckParity(unhex(t, "0101010101010100")) {
		t.Error("CheckParity with one even byte = true")
	}
	if CheckParity(nil) {
		t.Error("CheckParity(nil) = true")
	}
	// Property: FixParity only ever touches the least significant bit.
	for range 100 {
		k := make([]byte, 24)
		rand.Read(k)
		orig := append([]byte{}, k...)
		FixParity(k)
		for i := range k {
			if k[i]&^1 != orig[i]&^1 {
				t.Fatalf("FixParity changed a key bit: %X -> %X", orig, k)
			}
		}
		if !CheckParity(k) {
			t.Fatalf("CheckParity false after FixParity(%X)", orig)
		}
	}
}
