package kcv

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"hash"
	"os/exec"
	"strings"
	"testing"

	"payhsm/hsm/cmac"
	"payhsm/hsm/tdes"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func block(t testing.TB, alg string, key []byte) cipher.Block {
	t.Helper()
	var (
		b   cipher.Block
		err error
	)
	if alg == "tdes" {
		b, err = tdes.NewCipher(key)
	} else {
		b, err = aes.NewCipher(key)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestANSIX924 uses TDES keys whose KCVs are published next to them in the
// openemv/tr31 test suite (test/tr31_decrypt_test.c, *_tr31_kcv_verify); the
// keys are the wrapped keys of the ANSI TR-31:2018 Annex A.7 examples and of
// two Thales payShield 10k examples.
func TestANSIX924(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ src, key, kcv string }{
		{"payShield 10k example (openemv test1)", "5DB50B454F8389ADCE573BE50861F2BF", "5C9405"},
		{"TR-31:2018 A.7.2.1", "F039121BEC83D26B169BDCD5B22AAF8F", "CB9DEA"},
		{"TR-31:2018 A.7.2.2", "3F419E1CB7079442AA37474C2EFBF8B8", "57C409"},
		{"TR-31:2018 A.7.3.1", "EDB380DD340BC2620247D445F5B8D678", "F4B08D"},
		{"TR-31:2018 A.7.3.2", "E8BC63E5479455E26577F715D587FE68", "9A4212"},
		{"payShield 10k TDES key in a D block (openemv test7)", "1FA1F7CEC798D91545DA8AE0C7796BD9", "FF5087"},
	} {
		got := ANSIX924(block(t, "tdes", unhex(t, tc.key)))
		if g := strings.ToUpper(hex.EncodeToString(got)); g != tc.kcv {
			t.Errorf("%s: KCV = %s, want %s", tc.src, g, tc.kcv)
		}
	}
}

// TestCMAC uses AES keys with published CMAC KCVs:
//   - the KP optional blocks (KCV of the KBPK, algorithm 01 = CMAC, 5 bytes)
//     of ANSI X9.143:2021 examples 8.5 and 8.6, as reproduced in
//     openemv/tr31 test/tr31_decrypt_test.c (test17/test18);
//   - the KCVs next to the wrapped AES keys of TR-31:2018 A.7.4 and of a
//     Thales payShield 10k example in the same file (test6/test11, test8).
func TestCMAC(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ src, key, kcv string }{
		{"X9.143:2021 8.5 KP block", "FA36E44278DB3AB5F298F9F7DA8F1F88", "D77F007724"},
		{"X9.143:2021 8.6 KP block", "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6", "2331550BC9"},
		{"TR-31:2018 A.7.4 key", "3F419E1CB7079442AA37474C2EFBF8B8", "08793E25AB"},
		{"payShield 10k AES-256 (openemv test8)", "BE19E6A07A760F10EF8E83A226B63AAD141F463FDDD4F47DB244B4023EC3CACC", "0A00E3"},
	} {
		b := block(t, "aes", unhex(t, tc.key))
		got := CMAC(b)
		if g := strings.ToUpper(hex.EncodeToString(got)); g != tc.kcv[:6] {
			t.Errorf("%s: KCV = %s, want %s", tc.src, g, tc.kcv[:6])
		}
		// The 5-byte X9.143 form is the same CMAC, truncated later.
		full := cmac.Sum(b, make([]byte, 16))
		if g := strings.ToUpper(hex.EncodeToString(full[:len(tc.kcv)/2])); g != tc.kcv {
			t.Errorf("%s: long KCV = %s, want %s", tc.src, g, tc.kcv)
		}
	}
}

func openssl(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %v: %v", args, err)
	}
	return out
}

// TestAgainstOpenSSL recomputes every KCV method for random keys with the
// openssl command line: `enc -nopad` on a zero block, `mac CMAC` on a zero
// block and `mac HMAC` on empty input.
func TestAgainstOpenSSL(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	for _, tc := range []struct {
		alg       string
		keyLen    int
		enc, cmac string
	}{
		{"tdes", 16, "des-ede", ""},
		{"tdes", 24, "des-ede3", "DES-EDE3-CBC"},
		{"aes", 16, "aes-128-ecb", "AES-128-CBC"},
		{"aes", 24, "aes-192-ecb", "AES-192-CBC"},
		{"aes", 32, "aes-256-ecb", "AES-256-CBC"},
	} {
		for range 4 {
			key := make([]byte, tc.keyLen)
			rand.Read(key)
			b := block(t, tc.alg, key)
			zero := make([]byte, b.BlockSize())
			want := openssl(t, zero, "enc", "-"+tc.enc, "-K", hex.EncodeToString(key), "-nopad", "-nosalt")[:Len]
			if got := ANSIX924(b); !bytes.Equal(got, want) {
				t.Fatalf("%s-%d ANSIX924 = %X, openssl %X", tc.alg, tc.keyLen, got, want)
			}
			if tc.cmac == "" {
				continue
			}
			out := strings.TrimSpace(string(openssl(t, zero, "mac", "-cipher", tc.cmac, "-macopt", "hexkey:"+hex.EncodeToString(key), "CMAC")))
			if got := CMAC(b); !bytes.Equal(got, unhex(t, out)[:Len]) {
				t.Fatalf("%s-%d CMAC = %X, openssl %s", tc.alg, tc.keyLen, got, out)
			}
		}
	}
	for _, h := range []struct {
		name string
		new  func() hash.Hash
	}{{"SHA1", sha1.New}, {"SHA224", sha256.New224}, {"SHA256", sha256.New}, {"SHA384", sha512.New384}, {"SHA512", sha512.New}} {
		for _, n := range []int{16, 32, 64, 100} {
			key := make([]byte, n)
			rand.Read(key)
			out := strings.TrimSpace(string(openssl(t, nil, "mac", "-digest", h.name, "-macopt", "hexkey:"+hex.EncodeToString(key), "HMAC")))
			if got := HMAC(h.new, key); !bytes.Equal(got, unhex(t, out)[:Len]) {
				t.Fatalf("HMAC-%s KCV = %X, openssl %s", h.name, HMAC(h.new, key), out)
			}
		}
	}
}

// TestHMACIsZeroLengthMessage pins the interpretation: HMAC over the empty
// message, not over a zero block.
func TestHMACIsZeroLengthMessage(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef0123456789abcdef")
	got := HMAC(sha256.New, key)
	m := hmac.New(sha256.New, key)
	if want := m.Sum(nil)[:Len]; !bytes.Equal(got, want) {
		t.Fatalf("HMAC KCV %X != HMAC(key, \"\")[:3] %X", got, want)
	}
	m.Write(make([]byte, 16))
	if other := m.Sum(nil)[:Len]; bytes.Equal(got, other) {
		t.Fatal("HMAC KCV equals HMAC over a zero block")
	}
}

type oddBlock struct{ cipher.Block }

func (oddBlock) BlockSize() int { return 32 }

func TestCMACPanicsOnUnsupportedBlockSize(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("CMAC(32-byte block) did not panic")
		}
	}()
	CMAC(oddBlock{})
}

func TestLength(t *testing.T) {
	t.Parallel()
	b := block(t, "aes", make([]byte, 16))
	for name, v := range map[string][]byte{
		"ANSIX924": ANSIX924(b),
		"CMAC":     CMAC(b),
		"HMAC":     HMAC(sha256.New, []byte("k")),
	} {
		if len(v) != Len || cap(v) != Len {
			t.Errorf("%s: len %d cap %d, want %d", name, len(v), cap(v), Len)
		}
	}
}
