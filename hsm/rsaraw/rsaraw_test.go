package rsaraw

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"testing"
)

func testKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	raw, err := os.ReadFile("testdata/rsa-2048.pem")
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(raw)
	if blk == nil {
		t.Fatal("no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*rsa.PrivateKey)
}

// knownM is 00 ‖ "payhsm raw RSA known answer" ‖ 0x5A × 228 (256 bytes).
func knownM() []byte {
	return append(append([]byte{0}, "payhsm raw RSA known answer"...), bytes.Repeat([]byte{0x5A}, 228)...)
}

// Known answer from an independent implementation: OpenSSL 3
// `openssl pkeyutl -encrypt -pkeyopt rsa_padding_mode:none -inkey testdata/rsa-2048.pem`
// over knownM (and `-decrypt` with the same options gives knownM back).
const knownC = "4b8575640fdfdd2110b82958af4401022367c7b147779a9ee17d004d0d6ec981b9549ac82ca9ec4bb1e91d8b47500ffa2520f3c5d32fd59f5e5c2b96762c946a4e" +
	"201ab5ecee172140a9f62413ac391e2a8149b4fdc8698a30f4e31257d15f45c7dbe7c4beda9ca674219af6326c612d2c2231e011d84fdd557876f1f25b533069ae" +
	"2fa0fd4551af598f29157613a3dd6f1b2e78878cd8d70164fca1cf49e20e21cc17c4cd06b6cfc2c488c166d68fe35dfe357f39ac8bf2d6981779452a39bcfcda6e" +
	"21338adf01c386043ebcc2e007a86254b8627046b489a1c4457c9c391b0397beb4dcb37540aac820c65b0abcd98d53bb71e9aff1f3b2f0fc3967295e22"

func TestOpenSSLKnownAnswer(t *testing.T) {
	t.Parallel()
	k := testKey(t)
	c, err := Encrypt(&k.PublicKey, knownM())
	if err != nil || hex.EncodeToString(c) != knownC {
		t.Fatalf("Encrypt = %x, %v", c, err)
	}
	want, _ := hex.DecodeString(knownC)
	m, err := Decrypt(k, want)
	if err != nil || !bytes.Equal(m, knownM()) {
		t.Fatalf("Decrypt = %x, %v", m, err)
	}
	// Without the CRT values the private operation is c^d mod n: same answer.
	plain := *k
	plain.Precomputed = rsa.PrecomputedValues{}
	if m, err := Decrypt(&plain, want); err != nil || !bytes.Equal(m, knownM()) {
		t.Fatalf("Decrypt without CRT = %x, %v", m, err)
	}
}

// Cross-check with crypto/rsa: the raw private operation on an
// EMSA-PKCS1-v1_5 encoding is the PKCS #1 v1.5 signature (RFC 8017 8.2.1),
// and crypto/rsa's PKCS #1 v1.5 decryption unpads what the raw public
// operation enciphered (RFC 8017 7.2.1: 00 02 ‖ nonzero PS ‖ 00 ‖ M).
func TestAgainstCryptoRSA(t *testing.T) {
	t.Parallel()
	k := testKey(t)
	size := Size(&k.PublicKey)
	for i := 0; i < 8; i++ {
		msg := []byte{byte(i), 'p', 'a', 'y', 'h', 's', 'm'}
		h := sha256.Sum256(msg)
		prefix, _ := hex.DecodeString("3031300d060960864801650304020105000420") // DigestInfo SHA-256, RFC 8017 9.2 note 1
		t1 := append(prefix, h[:]...)
		em := append(append([]byte{0, 1}, bytes.Repeat([]byte{0xFF}, size-len(t1)-3)...), 0)
		em = append(em, t1...)
		sig, err := Decrypt(k, em)
		if err != nil {
			t.Fatal(err)
		}
		want, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, h[:])
		if err != nil || !bytes.Equal(sig, want) {
			t.Fatalf("raw private operation differs from SignPKCS1v15 (%v)", err)
		}

		ps := make([]byte, size-len(msg)-3)
		for j := range ps {
			ps[j] = byte(1 + (i+j)%255)
		}
		blk := append(append(append([]byte{0, 2}, ps...), 0), msg...)
		c, err := Encrypt(&k.PublicKey, blk)
		if err != nil {
			t.Fatal(err)
		}
		got, err := rsa.DecryptPKCS1v15(nil, k, c) //nolint:staticcheck // SA1019: the cross-check needs the PKCS #1 v1.5 unpadding
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("crypto/rsa could not unpad the raw encryption: %q %v", got, err)
		}
	}
}

func TestRandomRoundTrips(t *testing.T) {
	t.Parallel()
	k := testKey(t)
	m := make([]byte, Size(&k.PublicKey))
	for i := 0; i < 20; i++ {
		if _, err := rand.Read(m[1:]); err != nil {
			t.Fatal(err)
		}
		c, err := Encrypt(&k.PublicKey, m)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decrypt(k, c)
		if err != nil || !bytes.Equal(back, m) {
			t.Fatalf("round trip %d: %v", i, err)
		}
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	k := testKey(t)
	size := Size(&k.PublicKey)
	n := k.N.FillBytes(make([]byte, size))
	for _, c := range []struct {
		name string
		in   []byte
		want error
	}{
		{"short", make([]byte, size-1), ErrLength},
		{"long", make([]byte, size+1), ErrLength},
		{"equal to the modulus", n, ErrRange},
		{"all ones", bytes.Repeat([]byte{0xFF}, size), ErrRange},
	} {
		if _, err := Encrypt(&k.PublicKey, c.in); !errors.Is(err, c.want) {
			t.Errorf("Encrypt %s: %v", c.name, err)
		}
		if _, err := Decrypt(k, c.in); !errors.Is(err, c.want) {
			t.Errorf("Decrypt %s: %v", c.name, err)
		}
	}
	even := &rsa.PublicKey{N: big.NewInt(100), E: 3}
	if _, err := Encrypt(even, []byte{1}); !errors.Is(err, ErrKey) {
		t.Errorf("even modulus: %v", err)
	}
	if _, err := Encrypt(nil, nil); !errors.Is(err, ErrKey) {
		t.Errorf("nil key: %v", err)
	}
	// A wrong CRT value is caught by the check, not returned.
	bad := *k
	bad.Precomputed.Dp = new(big.Int).Add(k.Precomputed.Dp, big.NewInt(2))
	c, _ := hex.DecodeString(knownC)
	if _, err := Decrypt(&bad, c); !errors.Is(err, ErrFault) {
		t.Errorf("faulty CRT value: %v", err)
	}
}

func BenchmarkDecrypt2048(b *testing.B) {
	k := testKey(b)
	c, _ := hex.DecodeString(knownC)
	for b.Loop() {
		if _, err := Decrypt(k, c); err != nil {
			b.Fatal(err)
		}
	}
}
