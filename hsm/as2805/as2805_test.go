package as2805

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// No published AS2805 worked example with a known key exists: the user
// guide's examples show only ciphertexts and check values. The expected values
// below are therefore computed by an independent implementation, the OpenSSL
// command line (openssl enc -des-ede-cbc -nopad, OpenSSL 3.0), applied to the
// constructions the public sources define (package comment); the script that
// produces them is testdata/openssl_kat.sh. TestOpenSSLCrossCheck repeats the
// comparison on random inputs at test time.

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const (
	katKEK = "0123456789ABCDEF FEDCBA9876543210"
	katKey = "A8B5F2C4D3E6B5A1 9DF0BCD62A8C4B7F"
)

// Masks as as2805_2_1_Working_Key_Exchange.py defines them: bytes.fromhex('28C0') * 8, etc.
func TestVariantMasks(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		v    KeyVariant
		want string
	}{
		{VariantPIN, "28C028C028C028C028C028C028C028C0"},
		{VariantMAC, "24C024C024C024C024C024C024C024C0"},
		{VariantData, "22C022C022C022C022C022C022C022C0"},
	} {
		m, err := c.v.Mask()
		if err != nil || !bytes.Equal(m, unhex(t, c.want)) {
			t.Errorf("variant %02X: mask %X, %v; want %s", byte(c.v), m, err, c.want)
		}
	}
	for _, v := range []KeyVariant{0x00, 0x82, 0x84, 0xFF} {
		if _, err := v.Mask(); !errors.Is(err, ErrVariant) {
			t.Errorf("variant %02X: err %v, want ErrVariant", byte(v), err)
		}
	}
}

func TestWrapKeyKAT(t *testing.T) {
	t.Parallel()
	kek := unhex(t, katKEK)
	for _, c := range []struct {
		name    string
		v       KeyVariant
		key     string
		wrapped string // OpenSSL: des-ede-cbc, key KEK XOR mask, IV 0
	}{
		{"PIN 28", VariantPIN, katKey, "D3F307F15FA89F1F420E58F063693023"},
		{"MAC 24", VariantMAC, katKey, "3C726BEF38C8A97F4CA491DA17EC01D9"},
		{"DATA 22", VariantData, katKey, "9896D9DD2AB3B251B0B56F5D9B52531B"},
		{"PIN 28, 24-byte key", VariantPIN, katKey + "0123456789ABCDEF", "D3F307F15FA89F1F420E58F06369302310F274D4DED6F4B2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			key := unhex(t, c.key)
			got, err := WrapKey(kek, c.v, key)
			if err != nil || !bytes.Equal(got, unhex(t, c.wrapped)) {
				t.Fatalf("WrapKey = %X, %v; want %s", got, err, c.wrapped)
			}
			back, err := UnwrapKey(kek, c.v, got)
			if err != nil || !bytes.Equal(back, key) {
				t.Fatalf("UnwrapKey = %X, %v", back, err)
			}
			// Variants separate: another variant does not recover the key.
			for _, o := range []KeyVariant{VariantPIN, VariantMAC, VariantData} {
				if o == c.v {
					continue
				}
				if k, _ := UnwrapKey(kek, o, got); bytes.Equal(k, key) {
					t.Errorf("variant %02X also unwraps a %02X cryptogram", byte(o), byte(c.v))
				}
			}
		})
	}
}

func TestKEKValidationKAT(t *testing.T) {
	t.Parallel()
	kek := unhex(t, katKEK)
	for _, c := range []struct {
		name, rnd, krs, krr string // OpenSSL: KRs under KEK⊕82…, KRr under KEK⊕84… of ~rnd with odd parity
	}{
		{"16-byte random key", "0123456789ABCDEF1011121314151617", "243B0AA2B8BA6F80C5DA2D88331131C7", "44F8078074141B9CF30FC8A34ABBF403"},
		{"8-byte random key", "0123456789ABCDEF", "243B0AA2B8BA6F80", "44F8078074141B9C"},
	} {
		t.Run(c.name, func(t *testing.T) {
			krs, krr, err := KEKValidationRequest(kek, unhex(t, c.rnd))
			if err != nil || !bytes.Equal(krs, unhex(t, c.krs)) || !bytes.Equal(krr, unhex(t, c.krr)) {
				t.Fatalf("request = %X, %X, %v; want %s, %s", krs, krr, err, c.krs, c.krr)
			}
			// The partner holding the same KEK answers KRs with the expected KRr.
			resp, err := KEKValidationResponse(kek, krs)
			if err != nil || !bytes.Equal(resp, krr) {
				t.Fatalf("response = %X, %v; want %X", resp, err, krr)
			}
		})
	}
	// A partner with another KEK answers something else.
	other := unhex(t, katKey)
	krs, krr, _ := KEKValidationRequest(kek, unhex(t, "0123456789ABCDEF1011121314151617"))
	if resp, _ := KEKValidationResponse(other, krs); bytes.Equal(resp, krr) {
		t.Error("a different KEK validated")
	}
}

// The complement keeps the byte's high seven bits and restores odd parity:
// as2805_1_5_KEK_Validation.py ("bitwise NOT with odd parity adjustment").
func TestInvert(t *testing.T) {
	t.Parallel()
	got := invert(unhex(t, "0123456789ABCDEF1011121314151617"))
	if want := unhex(t, "FEDCBA9876543210EFEFECECEAEAE9E9"); !bytes.Equal(got, want) {
		t.Errorf("invert = %X, want %X", got, want)
	}
}

func TestDerivationData(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		stan, amount, want string
		err                error
	}{
		// The user guide's "Pin Translation" example values.
		{"000348", "000000000328", "00034800000000000000000000000328", nil},
		{"999999", "123456789012", "99999900000000000000123456789012", nil},
		{"00348", "000000000328", "", ErrSTAN},
		{"0003480", "000000000328", "", ErrSTAN},
		{"00034A", "000000000328", "", ErrSTAN},
		{"000348", "00000000328", "", ErrAmount},
		{"000348", "-00000000328", "", ErrAmount},
		{"000348", "0000000003280", "", ErrAmount},
	} {
		d, err := DerivationData(c.stan, c.amount)
		if !errors.Is(err, c.err) || (c.err == nil && !bytes.Equal(d, unhex(t, c.want))) {
			t.Errorf("DerivationData(%q, %q) = %X, %v; want %s, %v", c.stan, c.amount, d, err, c.want, c.err)
		}
	}
}

func TestSessionPINKeyKAT(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		kpp, stan, amount, kpe string // OpenSSL: MAC = last block of CBC(D, IV 0); KPE = CBC(D, IV MAC) XOR D
	}{
		{katKey, "000348", "000000000328", "3EFDE74E8FA9FA29A4ADBED43D96FF4E"},
		{katKEK, "123456", "999999999999", "D6A39903803F8149432837AC0D9708BB"},
	} {
		got, err := SessionPINKey(unhex(t, c.kpp), c.stan, c.amount)
		if err != nil || !bytes.Equal(got, unhex(t, c.kpe)) {
			t.Errorf("SessionPINKey(%s, %s) = %X, %v; want %s", c.stan, c.amount, got, err, c.kpe)
		}
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	kek := unhex(t, katKEK)
	k24 := make([]byte, 24)
	for name, err := range map[string]error{
		"wrap 24-byte KEK":    second(WrapKey(k24, VariantPIN, kek)),
		"wrap 15-byte key":    second(WrapKey(kek, VariantPIN, kek[:15])),
		"wrap 32-byte key":    second(WrapKey(kek, VariantPIN, append(kek, kek...))),
		"unwrap variant 00":   second(UnwrapKey(kek, 0x00, kek)),
		"request 0-byte rnd":  third(KEKValidationRequest(kek, nil)),
		"request 24-byte KEK": third(KEKValidationRequest(k24, kek)),
		"response 12 bytes":   second(KEKValidationResponse(kek, kek[:12])),
		"OWF 8-byte key":      second(OWF(kek[:8], kek)),
		"OWF 7-byte data":     second(OWF(kek, kek[:7])),
		"OWF empty data":      second(OWF(kek, nil)),
		"KPE 24-byte KPP":     second(SessionPINKey(k24, "000001", "000000000001")),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		} else if strings.Contains(strings.ToUpper(err.Error()), "0123456789ABCDEF") {
			t.Errorf("%s: error shows key material: %v", name, err)
		}
	}
}

func second[T any](_ T, err error) error        { return err }
func third[T, U any](_ T, _ U, err error) error { return err }

// TestOpenSSLCrossCheck compares every construction with the OpenSSL command
// line on random keys and data.
func TestOpenSSLCrossCheck(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	enc := func(key, iv, data []byte) []byte {
		cmd := exec.Command("openssl", "enc", "-des-ede-cbc", "-nopad", "-K", hex.EncodeToString(key), "-iv", hex.EncodeToString(iv))
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("openssl: %v", err)
		}
		return out
	}
	xor := func(a []byte, pattern ...byte) []byte {
		o := make([]byte, len(a))
		for i := range a {
			o[i] = a[i] ^ pattern[i%len(pattern)]
		}
		return o
	}
	zero := make([]byte, 8)
	for i := 0; i < 8; i++ {
		kek, key, rnd := make([]byte, 16), make([]byte, 8*(1+i%3)), make([]byte, 16)
		rand.Read(kek)
		rand.Read(key)
		rand.Read(rnd)
		for _, v := range []KeyVariant{VariantPIN, VariantMAC, VariantData} {
			got, _ := WrapKey(kek, v, key)
			if want := enc(xor(kek, byte(v), 0xC0), zero, key); !bytes.Equal(got, want) {
				t.Fatalf("WrapKey variant %02X = %X, openssl %X", byte(v), got, want)
			}
		}
		krs, krr, _ := KEKValidationRequest(kek, rnd)
		if want := enc(xor(kek, 0x82), zero, rnd); !bytes.Equal(krs, want) {
			t.Fatalf("KRs = %X, openssl %X", krs, want)
		}
		if want := enc(xor(kek, 0x84), zero, invert(rnd)); !bytes.Equal(krr, want) {
			t.Fatalf("KRr = %X, openssl %X", krr, want)
		}
		d := make([]byte, 16)
		rand.Read(d)
		got, _ := OWF(kek, d)
		first := enc(kek, zero, d)
		if want := xor(enc(kek, first[8:], d), d...); !bytes.Equal(got, want) {
			t.Fatalf("OWF = %X, openssl %X", got, want)
		}
	}
}

func FuzzDerivationData(f *testing.F) {
	f.Add("000348", "000000000328")
	f.Add("12345", "1234567890123")
	f.Add("\xff\x00", "")
	f.Fuzz(func(t *testing.T, stan, amount string) {
		d, err := DerivationData(stan, amount)
		if err != nil {
			return
		}
		if len(d) != 16 || !strings.HasPrefix(strings.ToUpper(hex.EncodeToString(d)), stan) || !strings.HasSuffix(hex.EncodeToString(d), amount) {
			t.Fatalf("DerivationData(%q, %q) = %X", stan, amount, d)
		}
	})
}

func FuzzKEKValidationResponse(f *testing.F) {
	f.Add(unhex(f, katKEK), unhex(f, "243B0AA2B8BA6F80C5DA2D88331131C7"))
	f.Add([]byte{1}, []byte{2, 3})
	f.Fuzz(func(t *testing.T, kek, krs []byte) {
		krr, err := KEKValidationResponse(kek, krs)
		if err == nil && len(krr) != len(krs) {
			t.Fatalf("KRr is %d bytes for a %d-byte KRs", len(krr), len(krs))
		}
	})
}

func FuzzUnwrapKey(f *testing.F) {
	f.Add(unhex(f, katKEK), byte(0x28), unhex(f, "D3F307F15FA89F1F420E58F063693023"))
	f.Add([]byte{}, byte(0), []byte{})
	f.Fuzz(func(t *testing.T, kek []byte, v byte, ct []byte) {
		key, err := UnwrapKey(kek, KeyVariant(v), ct)
		if err != nil {
			return
		}
		back, err := WrapKey(kek, KeyVariant(v), key)
		if err != nil || !bytes.Equal(back, ct) {
			t.Fatalf("round trip failed: %v", err)
		}
	})
}

func BenchmarkSessionPINKey(b *testing.B) {
	kpp := unhex(b, katKey)
	for b.Loop() {
		k, err := SessionPINKey(kpp, "000348", "000000000328")
		if err != nil {
			b.Fatal(err)
		}
		clear(k)
	}
}
