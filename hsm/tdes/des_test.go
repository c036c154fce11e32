package tdes

import (
	"bytes"
	"crypto/cipher"
	"crypto/des"
	"math/rand/v2"
	"testing"
)

// TestDESKnownAnswers checks single DES (the left-half cipher of
// NewCipherLeft, with K1 = K2 so that TDEA is single DES too) on published
// vectors: FIPS 81 (1980) Appendix B, ECB mode, "Now is t"; the worked
// example of J. Orlin Grabbe, "The DES Algorithm Illustrated"; and the
// first entries of NIST SP 800-17 (1998) Table A.1, the variable-plaintext
// known-answer test under key 0101010101010101.
func TestDESKnownAnswers(t *testing.T) {
	t.Parallel()
	for _, v := range []struct{ key, pt, ct string }{
		{"0123456789ABCDEF", "4E6F772069732074", "3FA40E8A984D4815"},
		{"133457799BBCDFF1", "0123456789ABCDEF", "85E813540F0AB405"},
		{"0101010101010101", "8000000000000000", "95F8A5E5DD31D900"},
		{"0101010101010101", "4000000000000000", "DD7F121CA5015619"},
		{"0101010101010101", "2000000000000000", "2E8653104F3834EA"},
		{"0101010101010101", "0000000000000001", "166B40B44ABA4BD6"},
	} {
		key, pt, ct := unhex(t, v.key), unhex(t, v.pt), unhex(t, v.ct)
		tdea, left, err := NewCipherLeft(append(append([]byte{}, key...), key...))
		if err != nil {
			t.Fatal(err)
		}
		for name, b := range map[string]cipher.Block{"left": left, "K1K1K1": tdea} {
			got := make([]byte, 8)
			b.Encrypt(got, pt)
			if !bytes.Equal(got, ct) {
				t.Errorf("%s %s: E(%s) = %X, want %s", name, v.key, v.pt, got, v.ct)
			}
			b.Decrypt(got, ct)
			if !bytes.Equal(got, pt) {
				t.Errorf("%s %s: D(%s) = %X, want %s", name, v.key, v.ct, got, v.pt)
			}
		}
	}
}

// checkAgainstStdlib compares NewCipher, NewCipherLeft's left cipher and the
// single-DES schedule with crypto/des on key (24 bytes: both lengths are
// tried) and one block, in place and not.
func checkAgainstStdlib(t *testing.T, key, block []byte) {
	t.Helper()
	k16 := append(append(make([]byte, 0, 24), key[:16]...), key[:8]...)
	for _, k := range [][]byte{key[:16], key[:24]} {
		want, err := des.NewTripleDESCipher(map[int][]byte{16: k16, 24: k}[len(k)])
		if err != nil {
			t.Fatal(err)
		}
		got, left, err := NewCipherLeft(k)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := NewCipher(k)
		if err != nil {
			t.Fatal(err)
		}
		wantLeft, _ := des.NewCipher(k[:8])
		for _, p := range []struct {
			name      string
			got, want cipher.Block
		}{{"TDEA", got, want}, {"NewCipher", plain, want}, {"left", left, wantLeft}} {
			var w, g [8]byte
			p.want.Encrypt(w[:], block)
			p.got.Encrypt(g[:], block)
			if w != g {
				t.Fatalf("%s %d-byte key %X: E(%X) = %X, want %X", p.name, len(k), k, block, g, w)
			}
			p.want.Decrypt(w[:], block)
			copy(g[:], block)
			p.got.Decrypt(g[:], g[:]) // in place
			if w != g {
				t.Fatalf("%s %d-byte key %X: D(%X) = %X, want %X", p.name, len(k), k, block, g, w)
			}
		}
	}
}

// TestDESMatchesStdlib compares with crypto/des on random keys and blocks
// (the schedule's table lookups cover every byte value of every position
// many times over) and on the weak and all-zero/all-one keys.
func TestDESMatchesStdlib(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	key, block := make([]byte, 24), make([]byte, 8)
	for range 20000 {
		for i := range key {
			key[i] = byte(r.Uint32())
		}
		for i := range block {
			block[i] = byte(r.Uint32())
		}
		checkAgainstStdlib(t, key, block)
	}
	for _, k := range []string{"0101010101010101", "FEFEFEFEFEFEFEFE", "E0E0E0E0F1F1F1F1", "1F1F1F1F0E0E0E0E", "0000000000000000", "FFFFFFFFFFFFFFFF"} {
		kb := unhex(t, k+k+k)
		checkAgainstStdlib(t, kb, unhex(t, "0123456789ABCDEF"))
	}
}

func FuzzDES(f *testing.F) {
	f.Add(bytes.Repeat([]byte{0x01}, 24), []byte("Now is t"))
	f.Add([]byte("0123456789ABCDEF01234567"), []byte{0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, key, block []byte) {
		if len(key) < 24 || len(block) < 8 {
			return
		}
		checkAgainstStdlib(t, key[:24], block[:8])
	})
}

func TestShortBlocksPanic(t *testing.T) {
	t.Parallel()
	b, l, err := NewCipherLeft(make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []cipher.Block{b, l} {
		for _, f := range []func(dst, src []byte){c.Encrypt, c.Decrypt} {
			for _, dst := range [][]byte{make([]byte, 7), make([]byte, 8)} {
				src := make([]byte, 15-len(dst)) // one of the two short
				func() {
					defer func() {
						if recover() == nil {
							t.Errorf("dst %d, src %d bytes: no panic", len(dst), len(src))
						}
					}()
					f(dst, src)
				}()
			}
		}
	}
	if _, _, err := NewCipherLeft(make([]byte, 8)); err == nil {
		t.Error("an 8-byte key accepted")
	}
}

// BenchmarkSchedule compares what a working key's miss schedules for a
// double-length key: the TDEA cipher and its left half, with crypto/des
// (three schedules and a fourth) and with NewCipherLeft (two).
func BenchmarkSchedule(b *testing.B) {
	key := unhex(b, "0123456789ABCDEFFEDCBA9876543210")
	b.Run("crypto-des", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			k := append(append(make([]byte, 0, 24), key...), key[:8]...)
			if _, err := des.NewTripleDESCipher(k); err != nil {
				b.Fatal(err)
			}
			if _, err := des.NewCipher(key[:8]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("NewCipherLeft", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := NewCipherLeft(key); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEncrypt compares one TDEA block with crypto/des's.
func BenchmarkEncrypt(b *testing.B) {
	key := unhex(b, "0123456789ABCDEFFEDCBA9876543210")
	std, _ := des.NewTripleDESCipher(append(append([]byte{}, key...), key[:8]...))
	ours, _ := NewCipher(key)
	for name, c := range map[string]cipher.Block{"crypto-des": std, "tdes": ours} {
		b.Run(name, func(b *testing.B) {
			var blk [8]byte
			for b.Loop() {
				c.Encrypt(blk[:], blk[:])
			}
		})
	}
}
