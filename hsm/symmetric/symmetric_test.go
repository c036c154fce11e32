package symmetric

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"strings"
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

// NIST SP 800-38A Appendix F, AES-128 (F.1.1, F.2.1, F.3.1, F.3.7, F.3.13, F.4.1).
const (
	sp38aKey = "2b7e151628aed2a6abf7158809cf4f3c"
	sp38aIV  = "000102030405060708090a0b0c0d0e0f"
	sp38aPT  = "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51 30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710"
)

func TestSP80038AVectors(t *testing.T) {
	t.Parallel()
	b, _ := aes.NewCipher(unhex(t, sp38aKey))
	pt := unhex(t, sp38aPT)
	for _, tc := range []struct {
		name string
		m    Mode
		iv   string
		pt   []byte
		ct   string
	}{
		{"F.1.1 ECB-AES128", ECB, "", pt, "3ad77bb40d7a3660a89ecaf32466ef97 f5d3d58503b9699de785895a96fdbaaf 43b1cd7f598ece23881b00e3ed030688 7b0c785e27e8ad3f8223207104725dd4"},
		{"F.2.1 CBC-AES128", CBC, sp38aIV, pt, "7649abac8119b246cee98e9b12e9197d 5086cb9b507219ee95db113a917678b2 73bed6b8e3c1743b7116e69e22229516 3ff1caa1681fac09120eca307586e1a7"},
		{"F.3.1 CFB1-AES128", CFB1, sp38aIV, pt[:2], "68b3"},
		{"F.3.7 CFB8-AES128", CFB8, sp38aIV, pt[:18], "3b79424c9c0dd436bace9e0ed4586a4f32b9"},
		{"F.3.13 CFB128-AES128", CFB128, sp38aIV, pt, "3b3fd92eb72dad20333449f8e83cfb4a c8a64537a0b3a93fcde3cdad9f1ce58b 26751f67a3cbb140b1808cf187a4f4df c04b05357c5d1c0eeac4c66f9ff7f2e6"},
		{"F.3.13 CFB (full block) AES128", CFB, sp38aIV, pt, "3b3fd92eb72dad20333449f8e83cfb4a c8a64537a0b3a93fcde3cdad9f1ce58b 26751f67a3cbb140b1808cf187a4f4df c04b05357c5d1c0eeac4c66f9ff7f2e6"},
		{"F.4.1 OFB-AES128", OFB, sp38aIV, pt, "3b3fd92eb72dad20333449f8e83cfb4a 7789508d16918f03f53c52dac54ed825 9740051e9c5fecf64344f7a82260edcc 304c6528f659c77866a510d9c1d6ae5e"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iv := unhex(t, tc.iv)
			ct, err := Encrypt(b, tc.m, iv, tc.pt)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ct, unhex(t, tc.ct)) {
				t.Fatalf("ciphertext %x, want %s", ct, tc.ct)
			}
			back, err := Decrypt(b, tc.m, iv, ct)
			if err != nil || !bytes.Equal(back, tc.pt) {
				t.Fatalf("decrypt = %x, %v", back, err)
			}
		})
	}
}

// TestOpenSSLCrossCheck compares every mode OpenSSL implements, for TDES
// (2- and 3-key) and AES, over random keys, IVs and data.
func TestOpenSSLCrossCheck(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	type alg struct {
		name   string
		keyLen int
		ossl   string // OpenSSL cipher prefix
	}
	for _, a := range []alg{{"TDES2", 16, "des-ede"}, {"TDES3", 24, "des-ede3"}, {"AES128", 16, "aes-128"}, {"AES256", 32, "aes-256"}} {
		key := make([]byte, a.keyLen)
		rand.Read(key)
		var b cipher.Block
		var err error
		if strings.HasPrefix(a.name, "TDES") {
			b, err = tdes.NewCipher(key)
		} else {
			b, err = aes.NewCipher(key)
		}
		if err != nil {
			t.Fatal(err)
		}
		bs := b.BlockSize()
		iv := make([]byte, bs)
		rand.Read(iv)
		data := make([]byte, 4*bs)
		rand.Read(data)
		modes := map[Mode]string{ECB: "ecb", CBC: "cbc", CFB: "cfb", CFB1: "cfb1", CFB8: "cfb8", OFB: "ofb"}
		if a.ossl == "des-ede" {
			// OpenSSL has no 2-key EDE CFB1/CFB8.
			delete(modes, CFB1)
			delete(modes, CFB8)
		}
		for m, suffix := range modes {
			ossl := a.ossl + "-" + suffix
			if a.ossl == "des-ede" && m == ECB {
				ossl = "des-ede"
			}
			args := []string{"enc", "-" + ossl, "-nopad", "-K", hex.EncodeToString(key)}
			useIV := iv
			if m == ECB {
				useIV = nil
			} else {
				args = append(args, "-iv", hex.EncodeToString(iv))
			}
			cmd := exec.Command("openssl", args...)
			cmd.Stdin = bytes.NewReader(data)
			want, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: openssl %v: %v", a.name, ossl, err)
			}
			got, err := Encrypt(b, m, useIV, data)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s %v: %x, openssl %s gives %x", a.name, m, got, ossl, want)
			}
		}
	}
}

// TestRoundTrip checks decrypt(encrypt(x)) = x for every mode, random data
// of every allowed length up to four blocks, TDES and AES.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	k := make([]byte, 24)
	rand.Read(k)
	tb, _ := tdes.NewCipher(k)
	ab, _ := aes.NewCipher(k)
	for _, b := range []cipher.Block{tb, ab} {
		bs := b.BlockSize()
		for m := range modeNames {
			if m.segmentBits(bs) > 8*bs {
				if _, err := Encrypt(b, m, make([]byte, bs), make([]byte, 16)); !errors.Is(err, ErrMode) {
					t.Errorf("%v with %d-byte block: %v", m, bs, err)
				}
				continue
			}
			var iv []byte
			if m.NeedsIV() {
				iv = make([]byte, bs)
				rand.Read(iv)
			}
			for n := 0; n <= 4*bs; n += m.Unit(bs) {
				p := make([]byte, n)
				rand.Read(p)
				c, err := Encrypt(b, m, iv, p)
				if err != nil {
					t.Fatalf("%v %d: %v", m, n, err)
				}
				q, err := Decrypt(b, m, iv, c)
				if err != nil || !bytes.Equal(p, q) {
					t.Fatalf("%v %d: round trip failed: %v", m, n, err)
				}
				// (Not for shorter data: a 1-byte stream-mode ciphertext
				// equals its plaintext once in 256 runs.)
				if n >= 8 && bytes.Equal(p, c) {
					t.Fatalf("%v %d: ciphertext equals plaintext", m, n)
				}
			}
		}
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	b, _ := aes.NewCipher(make([]byte, 16))
	for _, tc := range []struct {
		m    Mode
		iv   []byte
		data []byte
		want error
	}{
		{CBC, nil, make([]byte, 16), ErrIV},
		{CBC, make([]byte, 8), make([]byte, 16), ErrIV},
		{ECB, make([]byte, 16), make([]byte, 16), ErrIV},
		{ECB, nil, make([]byte, 15), ErrLength},
		{CFB64, make([]byte, 16), make([]byte, 12), ErrLength},
		{Mode(99), nil, nil, ErrMode},
	} {
		if _, err := Encrypt(b, tc.m, tc.iv, tc.data); !errors.Is(err, tc.want) {
			t.Errorf("%v: %v, want %v", tc.m, err, tc.want)
		}
	}
}

// AES-CFB64 has no published vector; its first segment must equal the first
// eight bytes of CFB128 (both XOR the leading keystream bits of E(IV)).
func TestCFB64FirstSegment(t *testing.T) {
	t.Parallel()
	b, _ := aes.NewCipher(unhex(t, sp38aKey))
	pt := unhex(t, sp38aPT)
	c64, _ := Encrypt(b, CFB64, unhex(t, sp38aIV), pt[:16])
	c128, _ := Encrypt(b, CFB128, unhex(t, sp38aIV), pt[:16])
	if !bytes.Equal(c64[:8], c128[:8]) || bytes.Equal(c64[8:], c128[8:]) {
		t.Fatalf("CFB64 %x vs CFB128 %x", c64, c128)
	}
}

func TestPKCS7(t *testing.T) {
	t.Parallel()
	for n := 0; n < 40; n++ {
		p := bytes.Repeat([]byte{0xAB}, n)
		padded := PadPKCS7(p, 16)
		if len(padded)%16 != 0 || len(padded) <= n {
			t.Fatalf("%d: padded length %d", n, len(padded))
		}
		q, err := UnpadPKCS7(padded, 16)
		if err != nil || !bytes.Equal(p, q) {
			t.Fatalf("%d: %v", n, err)
		}
		// RFC 5652 6.3: n bytes of value n, here after a prefix kept as it was.
		app := AppendPadPKCS7([]byte("prefix"), p, 16)
		k := 16 - n%16
		want := append(append([]byte("prefix"), p...), bytes.Repeat([]byte{byte(k)}, k)...)
		if !bytes.Equal(app, want) || !bytes.Equal(padded, want[6:]) {
			t.Fatalf("%d: AppendPadPKCS7 %x, PadPKCS7 %x, want %x", n, app, padded, want)
		}
	}
	for _, bad := range []string{"", "00", "0000000000000000", "0102030405060709", "0000000000000009", "0000000000000302"} {
		if _, err := UnpadPKCS7(unhex(t, bad), 8); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func FuzzUnpadPKCS7(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		if q, err := UnpadPKCS7(b, 8); err == nil {
			if !bytes.Equal(PadPKCS7(q, 8), b) {
				t.Fatal("unpad accepted non-canonical padding")
			}
		}
	})
}

func BenchmarkCBC256Bytes(b *testing.B) {
	blk, _ := aes.NewCipher(make([]byte, 16))
	data, iv := make([]byte, 256), make([]byte, 16)
	for b.Loop() {
		if _, err := Encrypt(blk, CBC, iv, data); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzCBC compares CBC with crypto/cipher's CBC modes (the reference it
// replaced) on AES and TDES keys, IVs and data from the fuzzer, and checks
// that no mode writes to the caller's IV (ops passes a shared zero IV).
func FuzzCBC(f *testing.F) {
	f.Add(bytes.Repeat([]byte{1}, 24), bytes.Repeat([]byte{2}, 16), bytes.Repeat([]byte{3}, 64), true)
	f.Add(bytes.Repeat([]byte{4}, 24), bytes.Repeat([]byte{5}, 16), []byte{}, false)
	f.Fuzz(func(t *testing.T, key, iv, data []byte, useAES bool) {
		if len(key) < 24 || len(iv) < 16 {
			return
		}
		var b cipher.Block
		var err error
		if useAES {
			b, err = aes.NewCipher(key[:16])
		} else {
			b, err = tdes.NewCipher(key[:24])
		}
		if err != nil {
			t.Fatal(err)
		}
		bs := b.BlockSize()
		iv12 := bytes.Clone(iv[:12])
		iv = iv[:bs]
		data = data[:len(data)/bs*bs]
		ivCopy := bytes.Clone(iv)
		want := make([]byte, len(data))
		cipher.NewCBCEncrypter(b, iv).CryptBlocks(want, data)
		got, err := Encrypt(b, CBC, iv, data)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Encrypt = %x, %v; crypto/cipher %x", got, err, want)
		}
		cipher.NewCBCDecrypter(b, iv).CryptBlocks(want, data)
		if got, err = Decrypt(b, CBC, iv, data); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Decrypt = %x, %v; crypto/cipher %x", got, err, want)
		}
		if k, ok := NewBlock16(b); ok != useAES {
			t.Fatalf("NewBlock16 of a %d-byte block cipher: %v", bs, ok)
		} else if ok {
			checkBlock16(t, k, b, iv, data)
		}
		for m := range modeNames {
			if m.NeedsIV() && m.segmentBits(bs) <= 8*bs && len(data)%m.Unit(bs) == 0 {
				ct, err1 := Encrypt(b, m, iv, data)
				pt, err2 := Decrypt(b, m, iv, data)
				if err1 != nil || err2 != nil {
					t.Fatalf("%v: %v, %v", m, err1, err2)
				}
				checkTo(t, b, m, iv, data, ct, pt)
			}
		}
		if !bytes.Equal(iv, ivCopy) {
			t.Fatalf("the IV changed: %x, was %x", iv, ivCopy)
		}
		// A block size neither 8 nor 16 takes the byte-wise loop.
		odd := toyBlock(key[:12])
		data = data[:len(data)/12*12]
		want = make([]byte, len(data))
		cipher.NewCBCEncrypter(odd, iv12).CryptBlocks(want, data)
		if got, err := Encrypt(odd, CBC, iv12, data); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("12-byte block: Encrypt = %x, %v; crypto/cipher %x", got, err, want)
		}
		cipher.NewCBCDecrypter(odd, iv12).CryptBlocks(want, data)
		if got, err := Decrypt(odd, CBC, iv12, data); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("12-byte block: Decrypt = %x, %v; crypto/cipher %x", got, err, want)
		}
	})
}

// toyBlock is a keyed permutation of 12-byte blocks (rotate by one byte,
// add the key): no cipher, only a block size that is neither 8 nor 16.
type toyBlock []byte

func (k toyBlock) BlockSize() int { return len(k) }

func (k toyBlock) Encrypt(dst, src []byte) {
	var t [12]byte
	for i := range k {
		t[i] = src[(i+1)%len(k)] + k[i]
	}
	copy(dst, t[:len(k)])
}

func (k toyBlock) Decrypt(dst, src []byte) {
	var t [12]byte
	for i := range k {
		t[(i+1)%len(k)] = src[i] - k[i]
	}
	copy(dst, t[:len(k)])
}

// checkTo checks EncryptTo and DecryptTo of data against ct and pt, the
// results of Encrypt and Decrypt: into a separate buffer, encryption in
// place, and the overlaps they refuse.
func checkTo(t *testing.T, b cipher.Block, m Mode, iv, data, ct, pt []byte) {
	t.Helper()
	out := make([]byte, len(data))
	if err := EncryptTo(b, m, iv, out, data); err != nil || !bytes.Equal(out, ct) {
		t.Fatalf("%v: EncryptTo = %x, %v; Encrypt %x", m, out, err, ct)
	}
	if err := DecryptTo(b, m, iv, out, data); err != nil || !bytes.Equal(out, pt) {
		t.Fatalf("%v: DecryptTo = %x, %v; Decrypt %x", m, out, err, pt)
	}
	copy(out, data)
	if err := EncryptTo(b, m, iv, out, out); err != nil || !bytes.Equal(out, ct) {
		t.Fatalf("%v: EncryptTo in place = %x, %v; Encrypt %x", m, out, err, ct)
	}
	if len(data) == 0 {
		return
	}
	if err := DecryptTo(b, m, iv, out, out); !errors.Is(err, ErrOverlap) {
		t.Fatalf("%v: DecryptTo in place: %v, want ErrOverlap", m, err)
	}
	if len(data) < 2 {
		return
	}
	// Output that starts inside the input (or the other way round).
	buf := make([]byte, len(data)+1)
	if err := EncryptTo(b, m, iv, buf[1:], buf[:len(data)]); !errors.Is(err, ErrOverlap) {
		t.Fatalf("%v: EncryptTo shifted: %v, want ErrOverlap", m, err)
	}
	if err := DecryptTo(b, m, iv, buf[:len(data)], buf[1:]); !errors.Is(err, ErrOverlap) {
		t.Fatalf("%v: DecryptTo shifted: %v, want ErrOverlap", m, err)
	}
}

// TestCryptTo runs checkTo on every mode of AES and TDES (the SP 800-38A
// vectors check Encrypt and Decrypt themselves), and checks that an
// output of the wrong length is refused.
func TestCryptTo(t *testing.T) {
	t.Parallel()
	aesB, _ := aes.NewCipher(unhex(t, "2b7e151628aed2a6abf7158809cf4f3c"))
	tdesB, _ := tdes.NewCipher(unhex(t, "0123456789abcdef23456789abcdef01456789abcdef0123"))
	data := unhex(t, "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
	for _, b := range []cipher.Block{aesB, tdesB} {
		bs := b.BlockSize()
		for m := range modeNames {
			if m.segmentBits(bs) > 8*bs {
				continue
			}
			var iv []byte
			if m.NeedsIV() {
				iv = data[:bs]
			}
			ct, err1 := Encrypt(b, m, iv, data)
			pt, err2 := Decrypt(b, m, iv, data)
			if err1 != nil || err2 != nil {
				t.Fatalf("%v: %v, %v", m, err1, err2)
			}
			checkTo(t, b, m, iv, data, ct, pt)
			if err := EncryptTo(b, m, iv, make([]byte, len(data)+bs), data); !errors.Is(err, ErrLength) {
				t.Errorf("%v: long output: %v, want ErrLength", m, err)
			}
		}
	}
}

// TestMultipleOf compares MultipleOf with the remainder, for powers of two
// (the mask) and other units.
func TestMultipleOf(t *testing.T) {
	for u := 1; u <= 33; u++ {
		for n := 0; n <= 200; n++ {
			if got, want := MultipleOf(n, u), n%u == 0; got != want {
				t.Fatalf("MultipleOf(%d, %d) = %v, want %v", n, u, got, want)
			}
		}
	}
}

// checkBlock16 checks k's CBC (k is b as a Block16) against EncryptTo and
// DecryptTo on b: the same output into a separate buffer and in place, and
// the same error for each argument EncryptTo refuses (an IV or output of
// another length, data not a whole number of blocks, overlapping buffers).
func checkBlock16(t *testing.T, k Block16, b cipher.Block, iv, data []byte) {
	t.Helper()
	same := func(what string, f func(iv, dst, src []byte) error, g func(cipher.Block, Mode, []byte, []byte, []byte) error, iv, dst, src []byte) {
		t.Helper()
		want := make([]byte, len(dst))
		copy(want, dst)
		errWant := g(b, CBC, iv, want, src)
		got := make([]byte, len(dst))
		copy(got, dst)
		err := f(iv, got, src)
		if fmt.Sprint(err) != fmt.Sprint(errWant) || !bytes.Equal(got, want) {
			t.Fatalf("Block16 %s(iv %d, dst %d, src %d) = %x, %v; symmetric %x, %v", what, len(iv), len(dst), len(src), got, err, want, errWant)
		}
	}
	for _, c := range []struct{ iv, dst, src []byte }{
		{iv, make([]byte, len(data)), data},
		{iv[:15], make([]byte, len(data)), data},
		{nil, make([]byte, len(data)), data},
		{iv, make([]byte, len(data)+16), data},
		{iv, make([]byte, len(data)+1), append(bytes.Clone(data), 1)},
	} {
		same("EncryptCBC", k.EncryptCBC, EncryptTo, c.iv, c.dst, c.src)
		same("DecryptCBC", k.DecryptCBC, DecryptTo, c.iv, c.dst, c.src)
	}
	// In place: encryption allowed, decryption refused; shifted: both refused.
	for _, shift := range []int{0, 1, 16} {
		if len(data) == 0 {
			break
		}
		buf := make([]byte, len(data)+shift)
		want := make([]byte, len(data)+shift)
		for _, enc := range []bool{true, false} {
			copy(buf, data)
			copy(want, data)
			var err, errWant error
			if enc {
				err, errWant = k.EncryptCBC(iv, buf[shift:], buf[:len(data)]), EncryptTo(b, CBC, iv, want[shift:], want[:len(data)])
			} else {
				err, errWant = k.DecryptCBC(iv, buf[shift:], buf[:len(data)]), DecryptTo(b, CBC, iv, want[shift:], want[:len(data)])
			}
			if fmt.Sprint(err) != fmt.Sprint(errWant) || !bytes.Equal(buf, want) {
				t.Fatalf("Block16 (encrypt %v) with the output %d bytes into the input: %x, %v; symmetric %x, %v", enc, shift, buf, err, want, errWant)
			}
		}
	}
}

// TestBlock16 checks NewBlock16 (AES only) and Block16's CBC on SP 800-38A
// F.2.1 and F.2.2 and against EncryptTo and DecryptTo (checkBlock16).
func TestBlock16(t *testing.T) {
	t.Parallel()
	aesB, _ := aes.NewCipher(unhex(t, sp38aKey))
	tdesB, _ := tdes.NewCipher(unhex(t, "0123456789abcdef23456789abcdef01456789abcdef0123"))
	for _, b := range []cipher.Block{nil, tdesB, toyBlock(make([]byte, 12))} {
		if _, ok := NewBlock16(b); ok {
			t.Fatalf("NewBlock16(%T) accepted", b)
		}
	}
	k, ok := NewBlock16(aesB)
	if !ok {
		t.Fatal("NewBlock16(AES) refused")
	}
	iv, pt := unhex(t, sp38aIV), unhex(t, sp38aPT)
	ct := unhex(t, "7649abac8119b246cee98e9b12e9197d 5086cb9b507219ee95db113a917678b2 73bed6b8e3c1743b7116e69e22229516 3ff1caa1681fac09120eca307586e1a7")
	out := make([]byte, len(pt))
	if err := k.EncryptCBC(iv, out, pt); err != nil || !bytes.Equal(out, ct) {
		t.Fatalf("F.2.1 CBC-AES128.Encrypt: %x, %v", out, err)
	}
	if err := k.DecryptCBC(iv, out, ct); err != nil || !bytes.Equal(out, pt) {
		t.Fatalf("F.2.2 CBC-AES128.Decrypt: %x, %v", out, err)
	}
	if !bytes.Equal(iv, unhex(t, sp38aIV)) {
		t.Fatal("the IV changed")
	}
	for _, n := range []int{0, 16, 64} {
		checkBlock16(t, k, aesB, iv, pt[:n])
	}
	if err := (Block16{}).EncryptCBC(iv, out, pt); err == nil {
		t.Fatal("the zero Block16 encrypted")
	}
}
