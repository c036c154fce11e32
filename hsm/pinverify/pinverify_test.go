package pinverify

import (
	"crypto/cipher"
	"encoding/hex"
	"errors"
	"testing"

	"payhsm/hsm/tdes"
)

// All vectors below are from knovichikhin/psec, tests/test_pin.py
// (test_generate_visa_pvv, test_generate_ibm3624_pin,
// test_generate_ibm3624_offset), PVK 0123456789ABCDEFFEDCBA9876543210. psec's
// (pan, pan_verify_offset, pan_verify_length) select the validation data:
// here that substring is given directly, as the AWS API does.

const pvkHex = "0123456789ABCDEFFEDCBA9876543210"

func pvk(t testing.TB) cipher.Block {
	t.Helper()
	k, _ := hex.DecodeString(pvkHex)
	b, err := tdes.NewCipher(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVisaPVVKAT(t *testing.T) {
	t.Parallel()
	k := pvk(t)
	for _, tc := range []struct {
		pvki     int
		pin, pan string
		pvv      string
	}{
		{1, "4524", "1122334455667788", "8523"},
		{2, "1912", "1122334455667788", "3244"},
		{1, "0570", "1122334455667718", "3144"},
		{1, "8299", "1122334455667708", "4422"},
	} {
		got, err := VisaPVV(k, tc.pan, tc.pvki, []byte(tc.pin))
		if err != nil || string(got) != tc.pvv {
			t.Errorf("VisaPVV(pvki %d) = %s, %v; want %s", tc.pvki, got, err, tc.pvv)
		}
		ok, err := VerifyVisaPVV(k, tc.pan, tc.pvki, []byte(tc.pin), []byte(tc.pvv))
		if !ok || err != nil {
			t.Errorf("VerifyVisaPVV = %v, %v", ok, err)
		}
		// Any other PIN fails (its PVV differs).
		wrong := []byte(tc.pin)
		wrong[3] = '0' + (wrong[3]-'0'+1)%10
		if ok, _ := VerifyVisaPVV(k, tc.pan, tc.pvki, wrong, []byte(tc.pvv)); ok {
			t.Errorf("a wrong PIN verified")
		}
	}
	// A longer PIN uses its 4 leftmost digits.
	got, _ := VisaPVV(k, "1122334455667788", 1, []byte("452499"))
	if string(got) != "8523" {
		t.Errorf("6-digit PIN PVV = %s", got)
	}
}

func TestVisaPVVErrors(t *testing.T) {
	t.Parallel()
	k := pvk(t)
	for _, tc := range []struct {
		pan  string
		pvki int
		pin  string
		err  error
	}{
		{"11223344556", 1, "0000", ErrPAN},
		{"1122334455A", 1, "0000", ErrPAN},
		{"11223344556677889900", 1, "0000", ErrPAN},
		{"1122334455667788", 10, "0000", ErrPVKI},
		{"1122334455667788", -1, "0000", ErrPVKI},
		{"1122334455667788", 1, "000", ErrPIN},
		{"1122334455667788", 1, "A000", ErrPIN},
	} {
		if _, err := VisaPVV(k, tc.pan, tc.pvki, []byte(tc.pin)); !errors.Is(err, tc.err) {
			t.Errorf("VisaPVV(%d-digit PAN, %d, %d-digit PIN) err = %v, want %v", len(tc.pan), tc.pvki, len(tc.pin), err, tc.err)
		}
	}
	if _, err := VisaPVV(nil, "1122334455667788", 1, []byte("1234")); !errors.Is(err, ErrKey) {
		t.Errorf("nil key: %v", err)
	}
}

func TestIBM3624KAT(t *testing.T) {
	t.Parallel()
	k := pvk(t)
	const table = "1234567890123456"
	for _, tc := range []struct {
		vd     string
		pad    byte
		offset string
		pin    string
	}{
		{"1122334455667788", 'F', "0000", "4524"},
		{"1122334455667788", 'f', "0000", "4524"},
		{"1122334455667788", 'F', "1111", "5635"},
		{"1122334455667788", 'F', "6586", "0000"},
		{"1122334455667788", 'F', "7697", "1111"},
		{"1122334455667788", 'F', "7710", "1234"},
		{"11223344556677", 'F', "0000", "5518"},
		{"11223344556677", 'f', "0000", "5518"},
		{"12233445566778", '1', "0000", "3675"},
		{"22334455667788", '1', "0000", "5550"},
	} {
		p := IBM3624{DecTable: table, ValidationData: tc.vd, Pad: tc.pad}
		pin, err := p.PINFromOffset(k, []byte(tc.offset))
		if err != nil || string(pin) != tc.pin {
			t.Errorf("PINFromOffset(%s) = %s, %v; want %s", tc.offset, pin, err, tc.pin)
		}
		off, err := p.Offset(k, []byte(tc.pin))
		if err != nil || string(off) != tc.offset {
			t.Errorf("Offset(%s) = %s, %v; want %s", tc.pin, off, err, tc.offset)
		}
		if tc.offset == "0000" {
			nat, _ := p.Natural(k, 4)
			if string(nat) != tc.pin {
				t.Errorf("Natural = %s, want %s", nat, tc.pin)
			}
		}
		if ok, err := p.Verify(k, []byte(tc.pin), []byte(tc.offset)); !ok || err != nil {
			t.Errorf("Verify = %v, %v", ok, err)
		}
		wrong := []byte(tc.pin)
		wrong[0] = '0' + (wrong[0]-'0'+1)%10
		if ok, _ := p.Verify(k, wrong, []byte(tc.offset)); ok {
			t.Errorf("a wrong PIN verified")
		}
	}
}

// Offsets of every length 4–12 invert PINFromOffset (generate -> verify).
func TestIBM3624Lengths(t *testing.T) {
	t.Parallel()
	k := pvk(t)
	p := IBM3624{DecTable: "0123456789012345", ValidationData: "4000001234", Pad: 'D'}
	for n := 4; n <= 12; n++ {
		pin := []byte("987654321098"[:n])
		off, err := p.Offset(k, pin)
		if err != nil || len(off) != n {
			t.Fatalf("Offset len %d: %s, %v", n, off, err)
		}
		if ok, _ := p.Verify(k, pin, off); !ok {
			t.Fatalf("len %d does not verify", n)
		}
		if ok, _ := p.Verify(k, pin[:n-1], off); ok {
			t.Fatalf("a shorter PIN verified")
		}
	}
}

func TestIBM3624Errors(t *testing.T) {
	t.Parallel()
	k := pvk(t)
	ok := IBM3624{DecTable: "1234567890123456", ValidationData: "1122334455667788", Pad: 'F'}
	for _, tc := range []struct {
		p   IBM3624
		err error
	}{
		{IBM3624{"123456789012345", ok.ValidationData, 'F'}, ErrDecTable},
		{IBM3624{"123456789012345A", ok.ValidationData, 'F'}, ErrDecTable},
		{IBM3624{ok.DecTable, "112", 'F'}, ErrValidation},
		{IBM3624{ok.DecTable, "11223344556677889", 'F'}, ErrValidation},
		{IBM3624{ok.DecTable, "1122", 'X'}, ErrPad},
	} {
		if _, err := tc.p.Natural(k, 4); !errors.Is(err, tc.err) {
			t.Errorf("Natural err = %v, want %v", err, tc.err)
		}
	}
	if _, err := ok.PINFromOffset(k, []byte("000")); !errors.Is(err, ErrOffset) {
		t.Errorf("3-digit offset: %v", err)
	}
	if _, err := ok.Offset(k, []byte("0000000000000")); !errors.Is(err, ErrPIN) {
		t.Errorf("13-digit PIN: %v", err)
	}
}

func BenchmarkVerifyVisaPVV(b *testing.B) {
	k := pvk(b)
	pin, pvv := []byte("4524"), []byte("8523")
	for b.Loop() {
		if ok, _ := VerifyVisaPVV(k, "1122334455667788", 1, pin, pvv); !ok {
			b.Fatal("no match")
		}
	}
}
