package pinblock

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"payhsm/hsm/tdes"
)

func h(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// constReader returns the same byte forever (a deterministic "random" fill).
type constReader byte

func (c constReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}

// Source of the vectors marked psec: knovichikhin/psec, tests/test_pinblock.py
// (test_encode_pinblock_iso_0, test_decode_pinblock_iso_0,
// test_decode_pinblock_iso_3, test_encode_pin_field_iso_4,
// test_encode_pan_field_iso_4, test_encipher_pinblock_iso_4_det,
// test_decipher_pinblock_iso_4 and their _exception variants).

func TestEncodeKAT(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		f      Format
		pin    string
		pan    string
		prefix string // expected plaintext (prefix when the fill is random)
	}{
		{"psec iso0 4 digits", ISO0, "1234", "5555555551234567", "041261AAAAEDCBA9"},
		{"psec iso0 12 digits", ISO0, "123456789012", "5555555551234567", "0C1261032D8226A9"},
		{"psec iso3 4 digits", ISO3, "1234", "5555555551234567", "341261"},
		{"psec iso3 12 digits", ISO3, "123456789012", "5555555551234567", "3C1261032D8226"},
		{"psec iso4 pin field", ISO4, "1234", "", "441234AAAAAAAAAA"},
		{"iso1 structure", ISO1, "1234", "", "141234"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Encode(tc.f, []byte(tc.pin), tc.pan, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.ToUpper(hex.EncodeToString(p)); !strings.HasPrefix(got, tc.prefix) {
				t.Fatalf("Encode = %s, want prefix %s", got, tc.prefix)
			}
			if len(p) != tc.f.BlockSize() {
				t.Fatalf("len = %d", len(p))
			}
			pin, err := Decode(tc.f, p, tc.pan)
			if err != nil || string(pin) != tc.pin {
				t.Fatalf("Decode(Encode) = %q, %v", pin, err)
			}
		})
	}
}

func TestDecodeKAT(t *testing.T) {
	t.Parallel()
	const pan = "5555555551234567"
	for _, tc := range []struct {
		f     Format
		block string
		pin   string
		err   error
	}{
		{ISO0, "041261AAAAEDCBA9", "1234", nil},
		{ISO0, "091261032D8DCBA9", "123456789", nil},
		{ISO0, "0A1261032D82CBA9", "1234567890", nil},
		{ISO0, "0C1261032D8226A9", "123456789012", nil},
		{ISO3, "341261AAAAEDCBA9", "1234", nil},
		{ISO3, "391261032D8DCBA9", "123456789", nil},
		{ISO3, "3A1261032D82CBA9", "1234567890", nil},
		{ISO3, "3C1261032D8226A9", "123456789012", nil},
		{ISO4, "441234AAAAAAAAAA548ED7FD65495950", "1234", nil},
		// psec _exception vectors
		{ISO0, "241261AAAAEDCBA9", "", ErrInvalid}, // control field 2
		{ISO0, "041261AAAAEDCB", "", ErrLength},
		{ISO0, "0F1261AAAAEDCBA9", "", ErrInvalid}, // length 15
		{ISO0, "021261AAAAEDCBA9", "", ErrInvalid}, // length 2
		{ISO0, "041261AAAAEDCBAA", "", ErrInvalid}, // filler
		{ISO0, "051261AAAAEDCBA9", "", ErrInvalid}, // PIN not numeric
		{ISO3, "241261AAAAEDCBA9", "", ErrInvalid},
		{ISO3, "3F1261AAAAEDCBA9", "", ErrInvalid},
		{ISO3, "341261AAAAEDCBA2", "", ErrInvalid}, // fill nibble 4 is not A–F
		{ISO3, "351261AAAAEDCBA9", "", ErrInvalid},
		{ISO4, "541234AAAAAAAAAA548ED7FD65495950", "", ErrInvalid},
		{ISO4, "43123AAAAAAAAAAA548ED7FD65495950", "", ErrInvalid},
		{ISO4, "441234ABCDEFABCD548ED7FD65495950", "", ErrInvalid},
		{ISO4, "4412D4AAAAAAAAAA548ED7FD65495950", "", ErrInvalid},
		{ISO4, "441234AAAAAAAAAA548ED7FD6549595000", "", ErrLength},
		// ISO 9564-1 format 1: control 1, any fill; a zero fill and a 13-digit length are checked.
		{ISO1, "14123401234567AB", "1234", nil},
		{ISO1, "1D12340123456789", "", ErrInvalid},
	} {
		pin, err := Decode(tc.f, h(t, tc.block), pan)
		if !errors.Is(err, tc.err) || string(pin) != tc.pin {
			t.Errorf("Decode(%v, %s) = %q, %v; want %q, %v", tc.f, tc.block, pin, err, tc.pin, tc.err)
		}
	}
}

func TestPANRules(t *testing.T) {
	t.Parallel()
	// psec test_encode_pan_field_iso_4
	a, err := PANField4("112233445566778899")
	if err != nil || strings.ToUpper(hex.EncodeToString(a)) != "61122334455667788990000000000000" {
		t.Fatalf("PANField4 = %X, %v", a, err)
	}
	// ISO 9564-1 9.4.2: a PAN shorter than 12 digits is left-padded with zeros and M = 0.
	a, _ = PANField4("1")
	if hex.EncodeToString(a) != "00000000000010000000000000000000" {
		t.Fatalf("PANField4(1) = %x", a)
	}
	for _, pan := range []string{"", "12345678901234567890", "5555555555555A"} {
		if _, err := PANField4(pan); !errors.Is(err, ErrPAN) {
			t.Errorf("PANField4(len %d) err = %v", len(pan), err)
		}
	}
	// Format 0: 12-digit PAN -> 11 digits excluding the check digit, left-padded.
	p, err := Encode(ISO0, []byte("1234"), "400000000001", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.ToUpper(hex.EncodeToString(p)); got != "041230FFFFFFFFFF" {
		t.Fatalf("12-digit PAN block = %s", got) // 041234FFFFFFFFFF XOR 0000040000000000
	}
	for _, pan := range []string{"", "12345678901", "12345678901234567890", "5555555555555A"} {
		if _, err := Encode(ISO0, []byte("1234"), pan, nil); !errors.Is(err, ErrPAN) {
			t.Errorf("Encode ISO0 PAN len %d err = %v", len(pan), err)
		}
	}
	// Format 1 ignores the PAN.
	if _, err := Encode(ISO1, []byte("1234"), "", nil); err != nil {
		t.Fatal(err)
	}
}

func TestPINLength(t *testing.T) {
	t.Parallel()
	for _, pin := range []string{"", "123", "1234567890123", "123A", "12 4"} {
		for _, f := range []Format{ISO0, ISO1, ISO3, ISO4} {
			if _, err := Encode(f, []byte(pin), "5555555551234567", nil); !errors.Is(err, ErrPINLength) {
				t.Errorf("Encode(%v, len %d) err = %v", f, len(pin), err)
			}
		}
	}
	if _, err := Encode(Format(2), []byte("1234"), "", nil); !errors.Is(err, ErrFormat) {
		t.Errorf("format 2: %v", err)
	}
}

func TestEncipherKAT(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, key, pin, pan, block string
		f                          Format
		fill                       byte
	}{
		// psec test_encipher_pinblock_iso_4_det (random fill FF..); also checked
		// with `openssl enc -aes-128-ecb -nopad` applied twice around the PAN-field XOR.
		{"psec iso4", "00112233445566778899AABBCCDDEEFF", "1234", "1234567890123456789", "28B41FDDD29B743E93124BD8E32D921E", ISO4, 0xff},
		// ISO 0 clear block 041261AAAAEDCBA9 (psec) enciphered with
		// `openssl enc -des-ede-ecb -nopad -K 0123456789ABCDEFFEDCBA9876543210`.
		{"openssl iso0 tdes", "0123456789ABCDEFFEDCBA9876543210", "1234", "5555555551234567", "230B4C43B8BA2C5C", ISO0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBlock(t, tc.f, tc.key)
			c, err := Encrypt(b, tc.f, []byte(tc.pin), tc.pan, constReader(tc.fill))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.ToUpper(hex.EncodeToString(c)); got != tc.block {
				t.Fatalf("Encrypt = %s, want %s", got, tc.block)
			}
			pin, err := Decrypt(b, tc.f, c, tc.pan)
			if err != nil || string(pin) != tc.pin {
				t.Fatalf("Decrypt = %q, %v", pin, err)
			}
		})
	}
}

func newBlock(t testing.TB, f Format, keyHex string) cipher.Block {
	t.Helper()
	var (
		b   cipher.Block
		err error
	)
	if f == ISO4 {
		b, err = aes.NewCipher(h(t, keyHex))
	} else {
		b, err = tdes.NewCipher(h(t, keyHex))
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecipherISO4KAT(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, key, block, pan, pin string
		err                        error
	}{
		// psec: "Test vector from ep2 - eft/pos 2000 Security Specification, Version 8.0.0, 8.4: PIN Encryption"
		{"ep2 8.4", "C1D0F8FB4958670DBA40AB1F3752EF0D", "CC17F65586BFD0953010226C4FC5B3CA", "432198765432109870", "1234", nil},
		{"psec short PAN", "00112233445566778899AABBCCDDEEFF", "39B69B1B91FE05D48F7EF0D68EB2CBD6", "1", "123456", nil},
		{"psec control 3", "E60B15B90ABDF14CEE337C97440F0D6E", "7D5AF4C33667A2098626027FB7A9A1B7", "4266229809609384667", "", ErrInvalid},
		{"psec not numeric", "C7BBEBA16C5AD97D5866450718C03750", "2F9C910447F17293EC95DEDE1E3CA201", "8220499325458689523", "", ErrInvalid},
		{"psec filler", "820F6C7C12355BDFF1AB6CE12E8EED89", "CCF310A8300B46C925A86B1098089301", "939589847393485609", "", ErrInvalid},
		{"psec length 3 (AES-192)", "4FE3F0311936FBCE44F17159F1659CF09B2BF8913BB514A1", "51334B00A6CBA3EC7B1C6F871F060AFC", "2129100799029059903", "", ErrInvalid},
		{"psec PAN too long", "C1D0F8FB4958670DBA40AB1F3752EF0D", "CC17F65586BFD0953010226C4FC5B3CA", "43219876543210987099", "", ErrPAN},
		{"ep2 wrong PAN", "C1D0F8FB4958670DBA40AB1F3752EF0D", "CC17F65586BFD0953010226C4FC5B3CA", "432198765432109871", "", ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := aes.NewCipher(h(t, tc.key))
			if err != nil {
				t.Fatal(err)
			}
			pin, err := Decrypt(b, ISO4, h(t, tc.block), tc.pan)
			if !errors.Is(err, tc.err) || string(pin) != tc.pin {
				t.Fatalf("Decrypt = %q, %v; want %q, %v", pin, err, tc.pin, tc.err)
			}
		})
	}
}

func TestCipherFormatMismatch(t *testing.T) {
	t.Parallel()
	a, _ := aes.NewCipher(make([]byte, 16))
	d, _ := tdes.NewCipher(h(t, "0123456789ABCDEFFEDCBA9876543210"))
	if _, err := Encrypt(a, ISO0, []byte("1234"), "5555555551234567", nil); !errors.Is(err, ErrCipher) {
		t.Errorf("AES key, format 0: %v", err)
	}
	if _, err := Encrypt(d, ISO4, []byte("1234"), "5555555551234567", nil); !errors.Is(err, ErrCipher) {
		t.Errorf("TDES key, format 4: %v", err)
	}
	if _, err := Decrypt(d, ISO0, make([]byte, 16), "5555555551234567"); !errors.Is(err, ErrLength) {
		t.Errorf("16-byte block, format 0: %v", err)
	}
}

// The random fills: format 3 uses only A–F and all of them; formats 1 and 4
// vary between encodings of the same PIN.
func TestRandomFill(t *testing.T) {
	t.Parallel()
	seen := map[byte]bool{}
	for range 200 {
		p, err := Encode(ISO3, []byte("1234"), "5555555551234567", nil)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := panField03("5555555551234567")
		for i := range p {
			p[i] ^= a[i]
		}
		for i := 6; i < 16; i++ {
			v := nibble(p, i)
			if v < 0xa {
				t.Fatalf("format 3 fill nibble %X", v)
			}
			seen[v] = true
		}
	}
	if len(seen) != 6 {
		t.Fatalf("format 3 fill used %d of the 6 values", len(seen))
	}
	for _, f := range []Format{ISO1, ISO3, ISO4} {
		x, _ := Encode(f, []byte("1234"), "5555555551234567", nil)
		y, _ := Encode(f, []byte("1234"), "5555555551234567", nil)
		if bytes.Equal(x, y) {
			t.Errorf("%v: two encodings are equal", f)
		}
	}
}

// Translation between every pair of formats and back returns the PIN; a
// deterministic format (0) round-trips to the identical block.
func TestTranslateRoundTrip(t *testing.T) {
	t.Parallel()
	d, _ := tdes.NewCipher(h(t, "0123456789ABCDEFFEDCBA9876543210"))
	d2, _ := tdes.NewCipher(h(t, "89ABCDEF0123456776543210FEDCBA98"))
	a, _ := aes.NewCipher(h(t, "00112233445566778899AABBCCDDEEFF"))
	key := func(f Format) cipher.Block {
		if f == ISO4 {
			return a
		}
		return d2
	}
	const pan = "4111111111111111"
	for _, pin := range []string{"0000", "1234", "987654", "123456789012"} {
		orig, err := Encrypt(d, ISO0, []byte(pin), pan, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []Format{ISO0, ISO1, ISO3, ISO4} {
			mid, _, err := Translate(d, ISO0, orig, pan, key(f), f, pan, nil)
			if err != nil {
				t.Fatalf("%s -> %v: %v", pin, f, err)
			}
			back, n, err := Translate(key(f), f, mid, pan, d, ISO0, pan, nil)
			if err != nil || !bytes.Equal(back, orig) || n != len(pin) {
				t.Fatalf("%s -> %v -> ISO0: %X (PIN length %d), %v; want %X", pin, f, back, n, err, orig)
			}
		}
	}
}

func BenchmarkTranslateISO0TDES(b *testing.B) {
	d, _ := tdes.NewCipher(h(b, "0123456789ABCDEFFEDCBA9876543210"))
	d2, _ := tdes.NewCipher(h(b, "89ABCDEF0123456776543210FEDCBA98"))
	blk, _ := Encrypt(d, ISO0, []byte("1234"), "4111111111111111", nil)
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := Translate(d, ISO0, blk, "4111111111111111", d2, ISO0, "4111111111111111", nil); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRandomPIN(t *testing.T) {
	t.Parallel()
	var counts [10]int
	for range 500 {
		p, err := RandomPIN(12, nil)
		if err != nil || len(p) != 12 {
			t.Fatal(p, err)
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				t.Fatalf("digit %q", c)
			}
			counts[c-'0']++
		}
	}
	for d, n := range counts { // 6000 digits, 600 expected each; 450 is > 6 sigma below
		if n < 450 {
			t.Errorf("digit %d drawn %d times of 6000", d, n)
		}
	}
	for _, n := range []int{3, 13} {
		if _, err := RandomPIN(n, nil); !errors.Is(err, ErrPINLength) {
			t.Errorf("RandomPIN(%d) err = %v", n, err)
		}
	}
}

// TestTranslateISO0 compares translateISO0 with Decrypt then Encrypt
// (format 0 to format 0, the same PAN: Translate's general path) on every
// PIN length, PANs of 12 to 19 digits,
// the known-answer block above, and blocks that fail: a wrong key, a wrong
// PAN, each nibble of a valid clear block changed to each other value
// (control, length, digit, fill), bad PANs, lengths and ciphers.
func TestTranslateISO0(t *testing.T) {
	t.Parallel()
	d, _ := tdes.NewCipher(h(t, "0123456789ABCDEFFEDCBA9876543210"))
	d2, _ := tdes.NewCipher(h(t, "89ABCDEF0123456776543210FEDCBA98"))
	a, _ := aes.NewCipher(h(t, "00112233445566778899AABBCCDDEEFF"))
	check := func(name string, from cipher.Block, block []byte, pan string, to cipher.Block) {
		t.Helper()
		want, werr := decryptEncryptISO0(from, block, pan, to)
		dst := bytes.Repeat([]byte{0xee}, 8)
		n, err := translateISO0(from, block, pan, to, dst)
		if tb, tn, terr := Translate(from, ISO0, block, pan, to, ISO0, pan, nil); !errors.Is(terr, err) || (terr == nil) != (err == nil) ||
			tn != n || (err == nil && !bytes.Equal(tb, dst)) {
			t.Fatalf("%s: Translate %X (%d), %v; translateISO0 %X (%d), %v", name, tb, tn, terr, dst, n, err)
		}
		if !errors.Is(err, werr) || (werr == nil) != (err == nil) {
			t.Fatalf("%s: error %v, the general path's %v", name, err, werr)
		}
		if werr != nil {
			if n != 0 || !bytes.Equal(dst, bytes.Repeat([]byte{0xee}, 8)) {
				t.Fatalf("%s: failed with n=%d and dst %X written", name, n, dst)
			}
			return
		}
		pin, err := Decrypt(from, ISO0, block, pan)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dst, want) || n != len(pin) {
			t.Fatalf("%s: %X (PIN length %d), the general path %X (%d)", name, dst, n, want, len(pin))
		}
	}
	// The known-answer block (TestEncipherKAT): PIN 1234 under d.
	check("kat", d, h(t, "230B4C43B8BA2C5C"), "5555555551234567", d2)
	pans := []string{"555555555123", "4111111111111111", "1234567890123456789", "0000000000000"}
	for _, pan := range pans {
		for n := MinPIN; n <= MaxPIN; n++ {
			pin := []byte("987654321098"[:n])
			blk, err := Encrypt(d, ISO0, pin, pan, nil)
			if err != nil {
				t.Fatal(err)
			}
			check("valid", d, blk, pan, d2)
			check("same key", d, blk, pan, d)
			check("wrong key", d2, blk, pan, d)
			check("wrong PAN", d, blk, "4000000000000002", d2)
			// Every nibble of the clear block set to every value, re-enciphered.
			clearBlk, _ := Encode(ISO0, pin, pan, nil)
			for i := range 16 {
				for v := range byte(16) {
					p := bytes.Clone(clearBlk)
					setNibble(p, i, v)
					c := make([]byte, 8)
					d.Encrypt(c, p)
					check("nibble", d, c, pan, d2)
				}
			}
		}
	}
	blk, _ := Encrypt(d, ISO0, []byte("1234"), "4111111111111111", nil)
	for _, pan := range []string{"", "41111111111", "41111111111111111111", "411111111111111x"} {
		check("bad PAN "+pan, d, blk, pan, d2)
	}
	check("short block", d, blk[:7], "4111111111111111", d2)
	check("long block", d, append(bytes.Clone(blk), 0), "4111111111111111", d2)
	check("AES from", a, blk, "4111111111111111", d2)
	check("AES to", d, blk, "4111111111111111", a)
	check("nil to", d, blk, "4111111111111111", nil)
	if _, err := translateISO0(d, blk, "4111111111111111", d2, make([]byte, 7)); !errors.Is(err, ErrLength) {
		t.Fatalf("short dst: %v", err)
	}
}

func BenchmarkTranslateISO0Direct(b *testing.B) {
	d, _ := tdes.NewCipher(h(b, "0123456789ABCDEFFEDCBA9876543210"))
	d2, _ := tdes.NewCipher(h(b, "89ABCDEF0123456776543210FEDCBA98"))
	blk, _ := Encrypt(d, ISO0, []byte("1234"), "4111111111111111", nil)
	var dst [8]byte
	b.ReportAllocs()
	for b.Loop() {
		if _, err := translateISO0(d, blk, "4111111111111111", d2, dst[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// decryptEncryptISO0 is Translate's general path from format 0 to format
// 0 under one PAN, the reference translateISO0 is compared with.
func decryptEncryptISO0(from cipher.Block, block []byte, pan string, to cipher.Block) ([]byte, error) {
	pin, err := Decrypt(from, ISO0, block, pan)
	if err != nil {
		return nil, err
	}
	defer clear(pin)
	return Encrypt(to, ISO0, pin, pan, nil)
}
