package tr31

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// fuzzKBPK is the KBPK FuzzUnwrap uses for each version.
var fuzzKBPK = map[byte][]byte{
	'A': bytes.Repeat([]byte{0x13}, 16),
	'B': bytes.Repeat([]byte{0x57}, 24),
	'C': bytes.Repeat([]byte{0x9B}, 16),
	'D': bytes.Repeat([]byte{0xDF}, 32),
}

func fuzzSeeds(f *testing.F) []string {
	var seeds []string
	for _, k := range knownBlocks {
		seeds = append(seeds, k.block)
	}
	seeds = append(seeds, x9143ECCBlock,
		mkBlock("B0000P0TE00N0400KS1800604B120F9292800000T104T20600PB0600", 'B'),
		mkBlock("B0000P0TE00N0200KS0002010A"+strings.Repeat("P", 256)+"PB0600", 'B'))
	// Valid blocks under the fuzz KBPKs, so that mutations start from
	// blocks whose authenticator verifies.
	for v, kbpk := range fuzzKBPK {
		for _, blocks := range [][]OptionalBlock{nil, {{"KS", "00604B120F9292800000"}}, {{"HM", "21"}, {"LB", strings.Repeat("z", 260)}}} {
			h := Header{Version: v, KeyUsage: "K0", Algorithm: 'T', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'E', KeyContext: '0', Blocks: blocks}
			pad := make([]byte, 6)
			if v == 'D' {
				pad = make([]byte, 14)
			}
			b, err := wrap(kbpk, h, bytes.Repeat([]byte{0x42}, 16), pad)
			if err != nil {
				f.Fatal(err)
			}
			seeds = append(seeds, b)
		}
	}
	return seeds
}

// FuzzParseHeader checks that ParseHeader never panics, fails only with
// ErrFormat, returns headers that satisfy the syntax rules, and that
// re-encoding a parsed header gives a block with the same header.
func FuzzParseHeader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHeader(s)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		if !strings.ContainsRune("ABCD", rune(h.Version)) || len(h.KeyUsage) != 2 || len(h.KeyVersion) != 2 {
			t.Fatalf("invalid header accepted: %+v", h)
		}
		seen := map[string]bool{}
		for _, b := range h.Blocks {
			if b.ID == padBlockID || seen[b.ID] || len(b.ID) != 2 {
				t.Fatalf("bad optional block list %q", h.Blocks)
			}
			seen[b.ID] = true
		}
		kb, err := parse(s)
		if err != nil {
			t.Fatal(err)
		}
		bs, _, _ := versionParams(h.Version)
		enc, err := encodeHeader(h, bs, len(s)-len(kb.header))
		if err != nil {
			return // e.g. a canonical re-encoding needing a 100th (PB) block
		}
		h2, err := ParseHeader(enc + s[len(kb.header):])
		if err != nil {
			t.Fatalf("re-encoded header %q does not parse: %v", enc, err)
		}
		if !reflect.DeepEqual(h, h2) {
			t.Fatalf("re-encoded header differs:\n%+v\n%+v", h, h2)
		}
	})
}

// FuzzUnwrap checks that Unwrap never panics, agrees with ParseHeader on
// what is well formed, fails only with the package's sentinel errors, and
// that whatever it accepts survives a Wrap/Unwrap round trip.
func FuzzUnwrap(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		kbpk := fuzzKBPK['D']
		if len(s) > 0 && fuzzKBPK[s[0]] != nil {
			kbpk = fuzzKBPK[s[0]]
		}
		h, key, err := Unwrap(kbpk, s)
		ph, perr := ParseHeader(s)
		if perr != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("ParseHeader failed (%v) but Unwrap returned %v", perr, err)
			}
			return
		}
		if err != nil {
			if !errors.Is(err, ErrIntegrity) && !errors.Is(err, ErrFormat) {
				t.Fatalf("unexpected error %v", err)
			}
			if key != nil {
				t.Fatal("key returned with an error")
			}
			return
		}
		if !reflect.DeepEqual(h, ph) {
			t.Fatalf("Unwrap header %+v != ParseHeader %+v", h, ph)
		}
		if len(key) == 0 {
			t.Fatal("empty key accepted")
		}
		if h.Version != 'B' && h.Version != 'D' {
			return
		}
		b2, err := Wrap(kbpk, h, key)
		if err != nil {
			return // Wrap is stricter (strength, DES keys)
		}
		h3, key3, err := Unwrap(kbpk, b2)
		if err != nil || !bytes.Equal(key3, key) || !reflect.DeepEqual(h3, h) {
			t.Fatalf("rewrap round trip failed: %v", err)
		}
	})
}

func benchmarkUnwrap(b *testing.B, alg byte, keyLen int) {
	kbpk := bytes.Repeat([]byte{0x5A}, 32)
	h := Header{Version: 'D', KeyUsage: "D0", Algorithm: alg, ModeOfUse: 'B', KeyVersion: "00", Exportability: 'E'}
	block, err := Wrap(kbpk, h, bytes.Repeat([]byte{0x01}, keyLen))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Unwrap(kbpk, block); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnwrap(b *testing.B) {
	b.Run("D-AES256", func(b *testing.B) { benchmarkUnwrap(b, 'A', 32) })
	b.Run("D-TDES", func(b *testing.B) { benchmarkUnwrap(b, 'T', 24) })
}

func BenchmarkWrap(b *testing.B) {
	kbpk := bytes.Repeat([]byte{0x5A}, 32)
	key := bytes.Repeat([]byte{0x01}, 32)
	h := Header{Version: 'D', KeyUsage: "D0", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'E'}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Wrap(kbpk, h, key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnwrapWith is BenchmarkUnwrap with the block keys derived once.
func BenchmarkUnwrapWith(b *testing.B) {
	kbpk := bytes.Repeat([]byte{0x5A}, 32)
	h := Header{Version: 'D', KeyUsage: "D0", Algorithm: 'T', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'E'}
	block, err := Wrap(kbpk, h, bytes.Repeat([]byte{0x01}, 24))
	if err != nil {
		b.Fatal(err)
	}
	bk, err := DeriveBlockKeys('D', kbpk)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := UnwrapWith(bk, block); err != nil {
			b.Fatal(err)
		}
	}
}
