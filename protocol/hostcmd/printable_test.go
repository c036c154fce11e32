package hostcmd

import (
	"bytes"
	"testing"
)

// printableBytes is printable's reference: one byte at a time.
func printableBytes(b []byte) bool {
	for _, v := range b {
		if v < 0x21 || v > 0x7e {
			return false
		}
	}
	return true
}

// TestPrintable sets every byte value at every position of printable
// strings of every length up to 24 (three words and a tail) and compares
// printable with the byte-at-a-time reference; the values next to the
// bounds are also put next to each other, where a borrow or carry could
// cross between bytes.
func TestPrintable(t *testing.T) {
	for n := 0; n <= 24; n++ {
		base := bytes.Repeat([]byte{'A'}, n)
		if !printable(base) {
			t.Fatalf("length %d: all 'A' refused", n)
		}
		for i := range n {
			for v := range 256 {
				b := bytes.Clone(base)
				b[i] = byte(v)
				if got, want := printable(b), printableBytes(b); got != want {
					t.Fatalf("length %d, byte %d = %#x: printable %v, want %v", n, i, v, got, want)
				}
			}
		}
	}
	edges := []byte{0x00, 0x20, 0x21, 0x22, 0x7d, 0x7e, 0x7f, 0x80, 0xfe, 0xff}
	for _, a := range edges {
		for _, c := range edges {
			for i := range 7 {
				b := bytes.Repeat([]byte{'~'}, 16)
				b[i], b[i+1] = a, c
				if got, want := printable(b), printableBytes(b); got != want {
					t.Fatalf("%#x %#x at %d: printable %v, want %v", a, c, i, got, want)
				}
			}
		}
	}
}

// FuzzPrintable: printable agrees with the byte-at-a-time reference.
func FuzzPrintable(f *testing.F) {
	for _, s := range []string{"", "!", "~~~~~~~~~", "0112P0TN00N0000", "AAAA AAAA", "AAAAAAA\x7f", "\x80AAAAAAAAAAAAAA"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := printable(b), printableBytes(b); got != want {
			t.Fatalf("%q: printable %v, want %v", b, got, want)
		}
	})
}

// BenchmarkPrintable: a 112-byte key block (a CC checks two), eight bytes
// at a time (words) and one at a time (bytes, the check before printable).
func BenchmarkPrintable(b *testing.B) {
	blk := []byte("0112P0TE00N0000" + string(bytes.Repeat([]byte("0123456789ABCDEF"), 6)) + "0")
	if len(blk) != 112 {
		b.Fatal(len(blk))
	}
	for _, v := range []struct {
		name string
		f    func([]byte) bool
	}{{"words", printable}, {"bytes", printableBytes}} {
		b.Run(v.name, func(b *testing.B) {
			for b.Loop() {
				if !v.f(blk) {
					b.Fatal("refused")
				}
			}
		})
	}
}
