package cmac

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"math/big"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"payhsm/hsm/tdes"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// Messages of NIST SP 800-38B Appendix D (the same for all examples).
const (
	m128 = "6bc1bee22e409f96e93d7e117393172a"
	m320 = m128 + "ae2d8a571e03ac9c9eb76fac45af8e51" + "30c81c46a35ce411"
	m512 = m128 + "ae2d8a571e03ac9c9eb76fac45af8e51" + "30c81c46a35ce411e5fbc1191a0a52ef" + "f69f2445df4f9b17ad2b417be66c3710"

	m64  = "6bc1bee22e409f96"
	m160 = "6bc1bee22e409f96e93d7e117393172aae2d8a57"
	m256 = "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
)

// TestNIST uses the examples of NIST SP 800-38B Appendix D (with the
// corrections of "Updated_CMAC_Examples.pdf" for D.4/D.5), as reproduced in
// Legrandin/pycryptodome lib/Crypto/SelfTest/Hash/test_CMAC.py.
func TestNIST(t *testing.T) {
	t.Parallel()
	const (
		aes128 = "2b7e151628aed2a6abf7158809cf4f3c"
		aes192 = "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b"
		aes256 = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"
		tdea3  = "8aa83bf8cbda1062" + "0bc1bf19fbb6cd58" + "bc313d4a371ca8b5"
		tdea2  = "4cf15134a2850dd5" + "8a3d10ba80570d38"
	)
	tests := []struct {
		name, cipher, key, msg, tag string
	}{
		{"D.1 Example 1", "aes", aes128, "", "bb1d6929e95937287fa37d129b756746"},
		{"D.1 Example 2", "aes", aes128, m128, "070a16b46b4d4144f79bdd9dd04a287c"},
		{"D.1 Example 3", "aes", aes128, m320, "dfa66747de9ae63030ca32611497c827"},
		{"D.1 Example 4", "aes", aes128, m512, "51f0bebf7e3b9d92fc49741779363cfe"},
		{"D.2 Example 5", "aes", aes192, "", "d17ddf46adaacde531cac483de7a9367"},
		{"D.2 Example 6", "aes", aes192, m128, "9e99a7bf31e710900662f65e617c5184"},
		{"D.2 Example 7", "aes", aes192, m320, "8a1de5be2eb31aad089a82e6ee908b0e"},
		{"D.2 Example 8", "aes", aes192, m512, "a1d5df0eed790f794d77589659f39a11"},
		{"D.3 Example 9", "aes", aes256, "", "028962f61b7bf89efc6b551f4667d983"},
		{"D.3 Example 10", "aes", aes256, m128, "28a7023f452e8f82bd4bf28d8c37c35c"},
		{"D.3 Example 11", "aes", aes256, m320, "aaf3d8f1de5640c232f5b169b9c911e6"},
		{"D.3 Example 12", "aes", aes256, m512, "e1992190549f6ed5696a2c056c315410"},
		{"D.4 Example 13 (three-key TDEA)", "tdes", tdea3, "", "b7a688e122ffaf95"},
		{"D.4 Example 14 (three-key TDEA)", "tdes", tdea3, m64, "8e8f293136283797"},
		{"D.4 Example 15 (three-key TDEA)", "tdes", tdea3, m160, "743ddbe0ce2dc2ed"},
		{"D.4 Example 16 (three-key TDEA)", "tdes", tdea3, m256, "33e6b1092400eae5"},
		{"D.5 Example 17 (two-key TDEA)", "tdes", tdea2, "", "bd2ebf9a3ba00361"},
		{"D.5 Example 18 (two-key TDEA)", "tdes", tdea2, m64, "4ff2ab813c53ce83"},
		{"D.5 Example 19 (two-key TDEA)", "tdes", tdea2, m160, "62dd1b471902bd4e"},
		{"D.5 Example 20 (two-key TDEA)", "tdes", tdea2, m256, "31b1e431dabc4eb8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBlock(t, tc.cipher, unhex(t, tc.key))
			msg, want := unhex(t, tc.msg), unhex(t, tc.tag)
			if got := Sum(b, msg); !bytes.Equal(got, want) {
				t.Fatalf("Sum = %x, want %x", got, want)
			}
			// Streaming, byte by byte, must agree and Sum must not
			// disturb the state.
			m, err := New(b)
			if err != nil {
				t.Fatal(err)
			}
			for i := range msg {
				m.Write(msg[i : i+1])
				_ = m.Sum(nil)
			}
			if got := m.Sum([]byte{0xEE}); !bytes.Equal(got[1:], want) || got[0] != 0xEE {
				t.Fatalf("streaming Sum = %x, want ee%x", got, want)
			}
			m.Reset()
			m.Write(msg)
			if got := m.Sum(nil); !bytes.Equal(got, want) {
				t.Fatalf("after Reset Sum = %x, want %x", got, want)
			}
		})
	}
}

func newBlock(t testing.TB, kind string, key []byte) cipher.Block {
	t.Helper()
	var (
		b   cipher.Block
		err error
	)
	switch kind {
	case "aes":
		b, err = aes.NewCipher(key)
	case "tdes":
		b, err = tdes.NewCipher(key)
	default:
		t.Fatalf("unknown cipher %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSubkeys checks the subkeys K1/K2 printed with each key in NIST
// SP 800-38B Appendix D.1 to D.5.
func TestSubkeys(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ kind, key, k1, k2 string }{
		{"aes", "2b7e151628aed2a6abf7158809cf4f3c", "fbeed618357133667c85e08f7236a8de", "f7ddac306ae266ccf90bc11ee46d513b"},
		{"aes", "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b", "448a5b1c93514b273ee6439dd4daa296", "8914b63926a2964e7dcc873ba9b5452c"},
		{"aes", "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", "cad1ed03299eedac2e9a99808621502f", "95a3da06533ddb585d3533010c42a0d9"},
		{"tdes", "8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5", "9198e9d314e6535f", "2331d3a629cca6a5"},
		{"tdes", "4cf15134a2850dd58a3d10ba80570d38", "8ecf373ed71afaef", "1d9e6e7dae35f5c5"},
	} {
		m, err := New(newBlock(t, tc.kind, unhex(t, tc.key)))
		if err != nil {
			t.Fatal(err)
		}
		if k1 := hex.EncodeToString(m.k1); k1 != tc.k1 {
			t.Errorf("%s K1 = %s, want %s", tc.kind, k1, tc.k1)
		}
		if k2 := hex.EncodeToString(m.k2); k2 != tc.k2 {
			t.Errorf("%s K2 = %s, want %s", tc.kind, k2, tc.k2)
		}
	}
}

// TestAgainstOpenSSL cross-checks random keys and messages of every length
// from 0 to 40 bytes, and of lengths around larger block multiples, against
// `openssl mac ... CMAC`.
func TestAgainstOpenSSL(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	for _, tc := range []struct {
		sslCipher string
		kind      string
		keyLen    int
	}{
		{"AES-128-CBC", "aes", 16},
		{"AES-192-CBC", "aes", 24},
		{"AES-256-CBC", "aes", 32},
		{"DES-EDE3-CBC", "tdes", 24},
	} {
		t.Run(tc.sslCipher, func(t *testing.T) {
			key := make([]byte, tc.keyLen)
			rand.Read(key)
			b := newBlock(t, tc.kind, key)
			lengths := []int{63, 64, 65, 127, 128, 129, 1000}
			for n := 0; n <= 40; n++ {
				lengths = append(lengths, n)
			}
			for _, n := range lengths {
				msg := make([]byte, n)
				rand.Read(msg)
				cmd := exec.Command("openssl", "mac", "-cipher", tc.sslCipher, "-macopt", "hexkey:"+hex.EncodeToString(key), "CMAC")
				cmd.Stdin = bytes.NewReader(msg)
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("openssl mac: %v", err)
				}
				want := unhex(t, strings.TrimSpace(string(out)))
				if got := Sum(b, msg); !bytes.Equal(got, want) {
					t.Fatalf("len %d: got %X, openssl %X", n, got, want)
				}
			}
		})
	}
}

// TestSplitWrites checks that arbitrary chunking of the input never changes
// the tag.
func TestSplitWrites(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"aes", "tdes"} {
		key := make([]byte, 24)
		rand.Read(key)
		b := newBlock(t, kind, key)
		for n := 0; n < 100; n++ {
			msg := make([]byte, n)
			rand.Read(msg)
			want := Sum(b, msg)
			m, _ := New(b)
			rest := msg
			for len(rest) > 0 {
				k, _ := rand.Int(rand.Reader, big.NewInt(int64(len(rest)+1)))
				m.Write(rest[:k.Int64()])
				rest = rest[k.Int64():]
			}
			if got := m.Sum(nil); !bytes.Equal(got, want) {
				t.Fatalf("%s len %d: chunked %x != one-shot %x", kind, n, got, want)
			}
		}
	}
}

type oddBlock struct{ cipher.Block }

func (oddBlock) BlockSize() int { return 32 }

func TestRejectsUnsupportedBlockSize(t *testing.T) {
	t.Parallel()
	if _, err := New(oddBlock{}); !errors.Is(err, ErrBlockSize) {
		t.Fatalf("New(32-byte block) error = %v, want ErrBlockSize", err)
	}
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Fatal("Sum(32-byte block) did not panic")
			} else if err, ok := r.(error); !ok || !errors.Is(err, ErrBlockSize) {
				t.Fatalf("Sum(32-byte block) panicked with %v, want ErrBlockSize", r)
			}
		}()
		Sum(oddBlock{}, nil)
	}()
	if _, err := New(nil); err == nil {
		t.Fatal("New(nil) succeeded")
	}
	// Single DES is accepted by CMAC itself (block size 8); key-size policy
	// belongs to the caller.
	d, _ := des.NewCipher(make([]byte, 8))
	if _, err := New(d); err != nil {
		t.Fatalf("New(DES) = %v", err)
	}
}

func BenchmarkAES128(b *testing.B) {
	blk, _ := aes.NewCipher(make([]byte, 16))
	for _, n := range []int{16, 1024} {
		msg := make([]byte, n)
		b.Run("bytes="+strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			m, _ := New(blk)
			out := make([]byte, 0, 16)
			for b.Loop() {
				m.Reset()
				m.Write(msg)
				out = m.Sum(out[:0])
			}
		})
	}
}

// TestKeyMatchesMAC: the precomputed Key gives the streaming MAC's tags for
// every message length around the block boundaries, for TDEA and AES, and
// allocates nothing beyond the tag.
func TestKeyMatchesMAC(t *testing.T) {
	msg := make([]byte, 70)
	if _, err := rand.Read(msg); err != nil {
		t.Fatal(err)
	}
	for _, b := range sp38bBlocks(t) {
		k, err := NewKey(b)
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n <= len(msg); n++ {
			m, _ := New(b)
			m.Write(msg[:n])
			want := m.Sum(nil)
			if got, err := k.Sum(nil, msg[:n]); err != nil || !bytes.Equal(got, want) || !bytes.Equal(Sum(b, msg[:n]), want) {
				t.Fatalf("block size %d, %d bytes: Key.Sum %x, %v; MAC %x", b.BlockSize(), n, got, err, want)
			}
		}
		buf := make([]byte, 0, 32)
		if a := testing.AllocsPerRun(50, func() { buf, _ = k.Sum(buf[:0], msg) }); a != 0 {
			t.Errorf("Key.Sum allocates %.0f times", a)
		}
	}
	if _, err := NewKey(nil); err == nil {
		t.Error("NewKey(nil) accepted")
	}
}

// BenchmarkKeyAES128 is CMAC's cost with the subkeys derived once (the
// ceiling the operations layer's cached keys are measured against).
func BenchmarkKeyAES128(b *testing.B) {
	blk, _ := aes.NewCipher(make([]byte, 16))
	k, err := NewKey(blk)
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 64)
	buf := make([]byte, 0, 32)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		buf, _ = k.Sum(buf[:0], msg)
	}
}

// TestKeyClear: after Clear, Sum returns ErrCleared and dst as it was, and
// the subkeys are zero; a Sum that overlaps a Clear returns either the
// right tag or ErrCleared, never another tag (run with -race: every access
// to the subkeys is atomic).
func TestKeyClear(t *testing.T) {
	for _, b := range sp38bBlocks(t) {
		for _, n := range []int{0, 7, 8, 16, 40, 64} {
			msg := bytes.Repeat([]byte{0x5A}, n)
			want := Sum(b, msg)
			for range 200 {
				k, err := NewKey(b)
				if err != nil {
					t.Fatal(err)
				}
				done := make(chan struct{})
				go func() { k.Clear(); close(done) }()
				prefix := []byte{1, 2, 3}
				got, err := k.Sum(prefix, msg)
				switch {
				case errors.Is(err, ErrCleared):
					if !bytes.Equal(got, prefix) {
						t.Fatalf("block size %d, %d bytes: ErrCleared with dst %x", b.BlockSize(), n, got)
					}
				case err != nil || !bytes.Equal(got[3:], want) || !bytes.Equal(got[:3], prefix):
					t.Fatalf("block size %d, %d bytes: Sum overlapping Clear = %x, %v; want %x or ErrCleared", b.BlockSize(), n, got, err, want)
				}
				<-done
				if got, err := k.Sum(nil, msg); !errors.Is(err, ErrCleared) || got != nil {
					t.Fatalf("Sum after Clear = %x, %v", got, err)
				}
				for i := range k.k1 {
					if k.k1[i].Load() != 0 || k.k2[i].Load() != 0 {
						t.Fatal("Clear left a subkey word")
					}
				}
			}
		}
	}
}

// sp38bBlocks are the AES-128 and TDEA ciphers under SP 800-38B's example
// keys (D.1 and D.4).
func sp38bBlocks(t *testing.T) []cipher.Block {
	t.Helper()
	aesBlock, err := aes.NewCipher(unhex(t, "2b7e151628aed2a6abf7158809cf4f3c"))
	if err != nil {
		t.Fatal(err)
	}
	tdeaBlock, err := des.NewTripleDESCipher(unhex(t, "8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5"))
	if err != nil {
		t.Fatal(err)
	}
	return []cipher.Block{aesBlock, tdeaBlock}
}
