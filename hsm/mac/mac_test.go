package mac

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"payhsm/hsm/tdes"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Source: knovichikhin/pyemv tests/test_mac.py test_mac_iso9797_3
// (K = AAAAAAAAAAAAAAAA, K' = BBBBBBBBBBBBBBBB, data "hello world").
func TestAlgorithm3Vectors(t *testing.T) {
	t.Parallel()
	key := unhex(t, "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
	b, _ := tdes.NewCipher(key)
	for _, tc := range []struct {
		p    Padding
		want string
	}{{Method1, "78DA3D3DEB48FD4D"}, {Method2, "2BC2D9EDE0CF31F6"}} {
		got, err := Algorithm3(key, b, []byte("hello world"), tc.p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, unhex(t, tc.want)) {
			t.Errorf("padding %d: %X, want %s", tc.p, got, tc.want)
		}
	}
}

// Source: pyemv tests/test_mac.py test_pad_iso9797_1 / test_pad_iso9797_2.
func TestPad(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		p    Padding
		want string
	}{
		{"", Method1, "0000000000000000"},
		{"", Method2, "8000000000000000"},
		{"46", Method1, "4600000000000000"},
		{"46", Method2, "4680000000000000"},
		{"4646464646464646", Method1, "4646464646464646"},
		{"4646464646464646", Method2, "46464646464646468000000000000000"},
	} {
		got, err := Pad(unhex(t, tc.in), 8, tc.p)
		if err != nil || !bytes.Equal(got, unhex(t, tc.want)) {
			t.Errorf("Pad(%s, %d) = %X, %v", tc.in, tc.p, got, err)
		}
	}
	if _, err := Pad(nil, 8, 3); err == nil {
		t.Error("padding method 3 accepted")
	}
}

// RFC 4231 test cases 1 and 2.
func TestHMACRFC4231(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		key, data string
		h         Hash
		want      string
	}{
		{strings.Repeat("0b", 20), "4869205468657265", SHA224, "896fb1128abbdf196832107cd49df33f47b4b1169912ba4f53684b22"},
		{strings.Repeat("0b", 20), "4869205468657265", SHA256, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
		{strings.Repeat("0b", 20), "4869205468657265", SHA384, "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6"},
		{strings.Repeat("0b", 20), "4869205468657265", SHA512, "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"},
		{"4a656665", hex.EncodeToString([]byte("what do ya want for nothing?")), SHA224, "a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44"},
		{"4a656665", hex.EncodeToString([]byte("what do ya want for nothing?")), SHA256, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{"4a656665", hex.EncodeToString([]byte("what do ya want for nothing?")), SHA384, "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"},
		{"4a656665", hex.EncodeToString([]byte("what do ya want for nothing?")), SHA512, "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"},
	} {
		got, err := HMAC(tc.h, unhex(t, tc.key), unhex(t, tc.data))
		if err != nil || !bytes.Equal(got, unhex(t, tc.want)) {
			t.Errorf("HMAC %d: %x, %v", tc.h, got, err)
		}
	}
	if _, err := HMAC(Hash(9), nil, nil); err == nil {
		t.Error("unknown hash accepted")
	}
}

// Algorithm 1 and AS2805.4.1 are the last block of a zero-IV TDES-CBC
// encryption of the padded data; algorithm 3 equals single-DES CBC under K1
// up to the last block, then TDES. Both are checked against OpenSSL.
func TestOpenSSLCrossCheck(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	ossl := func(cipherName string, key, data []byte) []byte {
		t.Helper()
		cmd := exec.Command("openssl", "enc", "-"+cipherName, "-nopad", "-K", hex.EncodeToString(key), "-iv", "0000000000000000")
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("openssl %s: %v", cipherName, err)
		}
		return out
	}
	for _, kl := range []int{16, 24} {
		for n := 0; n < 30; n += 7 {
			key := make([]byte, kl)
			rand.Read(key)
			data := make([]byte, n)
			rand.Read(data)
			b, _ := tdes.NewCipher(key)
			name := "des-ede-cbc"
			if kl == 24 {
				name = "des-ede3-cbc"
			}
			for _, p := range []Padding{Method1, Method2} {
				padded, _ := Pad(data, 8, p)
				ct := ossl(name, key, padded)
				got, _ := Algorithm1(b, data, p)
				if !bytes.Equal(got, ct[len(ct)-8:]) {
					t.Errorf("alg1 key %d data %d pad %d: %X vs openssl %X", kl, n, p, got, ct[len(ct)-8:])
				}
				if p == Method1 {
					as, _ := AS2805(b, data)
					if !bytes.Equal(as, got) {
						t.Error("AS2805 differs from algorithm 1 padding 1")
					}
				}
				// Retail MAC: single-DES CBC (OpenSSL des-cbc needs the legacy
				// provider), so compute the chain with TDES K1K1 instead, which
				// is single DES, and finish with full TDES.
				k1 := append(append([]byte{}, key[:8]...), key[:8]...)
				var h []byte
				if len(padded) > 8 {
					c := ossl("des-ede-cbc", k1, padded[:len(padded)-8])
					h = c[len(c)-8:]
				} else {
					h = make([]byte, 8)
				}
				last := make([]byte, 8)
				for j := range last {
					last[j] = h[j] ^ padded[len(padded)-8+j]
				}
				want := ossl(name, key, last)
				got3, _ := Algorithm3(key, b, data, p)
				if !bytes.Equal(got3, want) {
					t.Errorf("alg3 key %d data %d pad %d: %X vs %X", kl, n, p, got3, want)
				}
			}
		}
	}
}

func TestAlgorithm3BadKey(t *testing.T) {
	t.Parallel()
	b, _ := tdes.NewCipher(make([]byte, 16))
	if _, err := Algorithm3(make([]byte, 8), b, nil, Method1); err == nil {
		t.Error("single-length key accepted")
	}
}

func BenchmarkAlgorithm3(b *testing.B) {
	key := make([]byte, 16)
	rand.Read(key)
	c, _ := tdes.NewCipher(key)
	data := make([]byte, 64)
	for b.Loop() {
		if _, err := Algorithm3(key, c, data, Method1); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHMACKey checks that HMACKey gives HMAC's results (RFC 4231 test
// cases 1 and 2 through HMAC above) for every hash, on a reused state, from
// concurrent users, and refuses after Clear.
func TestHMACKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		key, data, want string
		h               Hash
	}{
		{strings.Repeat("0b", 20), "4869205468657265", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", SHA256},
		{"4a656665", hex.EncodeToString([]byte("what do ya want for nothing?")), "a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44", SHA224},
		{"4a656665", hex.EncodeToString([]byte("what do ya want for nothing?")), "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649", SHA384},
		{"4a656665", hex.EncodeToString([]byte("what do ya want for nothing?")), "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737", SHA512},
	} {
		k, err := NewHMACKey(tc.h, unhex(t, tc.key))
		if err != nil {
			t.Fatal(err)
		}
		data, want := unhex(t, tc.data), unhex(t, tc.want)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 50 {
					got, err := k.Sum([]byte{0xAA}, data)
					if err != nil || len(got) == 0 || got[0] != 0xAA || !bytes.Equal(got[1:], want) {
						t.Errorf("HMACKey %d: %x, %v", tc.h, got, err)
						return
					}
				}
			})
		}
		wg.Wait()
		k.Clear()
		if _, err := k.Sum(nil, nil); !errors.Is(err, ErrCleared) {
			t.Errorf("Sum after Clear: %v", err)
		}
	}
	if _, err := NewHMACKey(Hash(9), nil); err == nil {
		t.Error("unknown hash accepted")
	}
}

// padRef is algorithms 1 and 3 as they were written before they read the
// message in place (Pad's copy, then the chain): the reference of
// TestInPlaceMatchesPad and FuzzAlgorithms.
func padRef(k, final cipher.Block, data []byte, p Padding) ([]byte, error) {
	d, err := Pad(data, k.BlockSize(), p)
	if err != nil {
		return nil, err
	}
	h := make([]byte, k.BlockSize())
	last := len(d) - len(h)
	chain(k, h, d[:last])
	for j := range h {
		h[j] ^= d[last+j]
	}
	final.Encrypt(h, h)
	return h, nil
}

// checkInPlace compares algorithm 1 (TDES and AES) and algorithm 3 with
// padRef on data, also appended to a non-empty dst.
func checkInPlace(t *testing.T, key, data []byte, p Padding) {
	t.Helper()
	tb, _ := tdes.NewCipher(key[:16])
	k1, _ := des.NewCipher(key[:8])
	ab, _ := aes.NewCipher(key[:16])
	prefix := []byte{0xAB, 0xCD}
	for _, tc := range []struct {
		name     string
		k, final cipher.Block
		got      func(dst []byte) ([]byte, error)
	}{
		{"algorithm 1 TDES", tb, tb, func(dst []byte) ([]byte, error) { return AppendAlgorithm1(dst, tb, data, p) }},
		{"algorithm 1 AES", ab, ab, func(dst []byte) ([]byte, error) { return AppendAlgorithm1(dst, ab, data, p) }},
		{"algorithm 3", k1, tb, func(dst []byte) ([]byte, error) { return AppendAlgorithm3(dst, k1, tb, data, p) }},
	} {
		want, werr := padRef(tc.k, tc.final, data, p)
		got, err := tc.got(nil)
		if (err != nil) != (werr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("%s, %d bytes, padding %d: %X, %v; want %X, %v", tc.name, len(data), p, got, err, want, werr)
		}
		if werr != nil {
			continue
		}
		got, err = tc.got(bytes.Clone(prefix))
		if err != nil || !bytes.Equal(got, append(bytes.Clone(prefix), want...)) {
			t.Fatalf("%s appended: %X, %v", tc.name, got, err)
		}
	}
}

// TestInPlaceMatchesPad: every length around the block boundaries, both
// padding methods and an unknown one.
func TestInPlaceMatchesPad(t *testing.T) {
	t.Parallel()
	key := make([]byte, 16)
	rand.Read(key)
	data := make([]byte, 50)
	rand.Read(data)
	for n := range len(data) + 1 {
		for _, p := range []Padding{Method1, Method2, 3} {
			checkInPlace(t, key, data[:n], p)
		}
	}
}

func FuzzAlgorithms(f *testing.F) {
	f.Add(bytes.Repeat([]byte{0xAA}, 16), []byte("hello world"), uint8(1))
	f.Add(bytes.Repeat([]byte{0x01}, 16), []byte{}, uint8(2))
	f.Fuzz(func(t *testing.T, key, data []byte, p uint8) {
		if len(key) < 16 {
			return
		}
		checkInPlace(t, key, data, Padding(p%4))
	})
}
