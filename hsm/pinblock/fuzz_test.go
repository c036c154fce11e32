package pinblock

import (
	"bytes"
	"errors"
	"testing"

	"payhsm/hsm/tdes"
)

// FuzzDecode: Decode never panics on any block, PAN or format, returns a
// 4–12 digit PIN when it succeeds, and a decoded format 0 block re-encodes
// to the identical block (format 0 is deterministic).
func FuzzDecode(f *testing.F) {
	f.Add(uint8(0), h(f, "041261AAAAEDCBA9"), "5555555551234567")
	f.Add(uint8(3), h(f, "3C1261032D8226A9"), "5555555551234567")
	f.Add(uint8(1), h(f, "14123401234567AB"), "")
	f.Add(uint8(4), h(f, "441234AAAAAAAAAA548ED7FD65495950"), "1")
	f.Add(uint8(2), []byte{}, "x")
	f.Fuzz(func(t *testing.T, fm uint8, block []byte, pan string) {
		pin, err := Decode(Format(fm), block, pan)
		if err != nil {
			if pin != nil {
				t.Fatal("PIN returned with an error")
			}
			return
		}
		if len(pin) < MinPIN || len(pin) > MaxPIN {
			t.Fatalf("PIN length %d", len(pin))
		}
		for _, c := range pin {
			if c < '0' || c > '9' {
				t.Fatal("non-digit PIN")
			}
		}
		if Format(fm) == ISO0 {
			again, err := Encode(ISO0, pin, pan, nil)
			if err != nil || !bytes.Equal(again, block) {
				t.Fatalf("re-encode = %X, %v; want %X", again, err, block)
			}
		}
	})
}

// FuzzTranslateISO0: translateISO0 answers as Decrypt then Encrypt (format
// 0 to 0, the same PAN) for any block and PAN: the same block or the same
// error.
func FuzzTranslateISO0(f *testing.F) {
	f.Add(h(f, "230B4C43B8BA2C5C"), "5555555551234567")
	f.Add(h(f, "041261AAAAEDCBA9"), "5555555551234567")
	f.Add([]byte{1, 2, 3}, "x")
	d, _ := tdes.NewCipher(h(f, "0123456789ABCDEFFEDCBA9876543210"))
	d2, _ := tdes.NewCipher(h(f, "89ABCDEF0123456776543210FEDCBA98"))
	f.Fuzz(func(t *testing.T, block []byte, pan string) {
		want, werr := decryptEncryptISO0(d, block, pan, d2)
		var dst [8]byte
		_, err := translateISO0(d, block, pan, d2, dst[:])
		if !errors.Is(err, werr) || (err == nil) != (werr == nil) {
			t.Fatalf("error %v, the general path's %v", err, werr)
		}
		if err == nil && !bytes.Equal(dst[:], want) {
			t.Fatalf("%X, the general path %X", dst, want)
		}
	})
}
