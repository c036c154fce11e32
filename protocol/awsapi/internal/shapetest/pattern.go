package shapetest

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// SeqItem mirrors the generated seqItem: a literal (Lit set) or a run of
// Set's ASCII characters between Min and Max long (Max -1: no bound).
type SeqItem struct {
	Lit      string
	Set      [2]uint64
	Min, Max int
}

// SeqPattern describes a generated seqPattern: its regexp, its
// alternatives and its matcher.
type SeqPattern struct {
	Re    string
	Alts  [][]SeqItem
	Match func(string) bool
}

// CheckSeqPatterns checks every pattern with checkSeqPattern; there must be
// at least one.
func CheckSeqPatterns(t *testing.T, patterns []SeqPattern) {
	t.Helper()
	if len(patterns) == 0 {
		t.Fatal("no sequence patterns")
	}
	r := rand.New(rand.NewPCG(20, 7)) //nolint:gosec // G404: test inputs, seeded to repeat
	for _, p := range patterns {
		checkSeqPattern(t, r, p.Re, p.Alts, p.Match)
	}
}

// FuzzSeqPatterns compares every pattern's matcher with regexp on
// arbitrary strings.
func FuzzSeqPatterns(f *testing.F, patterns []SeqPattern) {
	for _, s := range []string{"alias/a", "arn:aws:payment-cryptography:us-east-1:111122223333:key/abcdefghijklmnop",
		"arn:aws:payment-cryptography:us-east-1:111122223333:alias/x", "arn:aws:payment-cryptography:us--1:1:key/", ""} {
		f.Add(s)
	}
	res := make([]*regexp.Regexp, len(patterns))
	for i, p := range patterns {
		res[i] = regexp.MustCompile(p.Re)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for i, p := range patterns {
			if got, want := p.Match(s), res[i].MatchString(s); got != want {
				t.Fatalf("%s: MatchString(%q) = %v, regexp says %v", p.Re, s, got, want)
			}
		}
	})
}

// checkSeqPattern compares match, a generated matcher of the pattern re
// described by alts, with regexp on strings built near the pattern's
// language: every alternative with runs at, inside and just outside their
// length bounds, characters from outside a run's class, literals cut or
// changed, alternatives spliced together, and tails added.
func checkSeqPattern(t *testing.T, r *rand.Rand, re string, alts [][]SeqItem, match func(string) bool) {
	t.Helper()
	want := regexp.MustCompile(re)
	outside := []string{"g", "G", " ", "-", ":", "/", "_", "\x00", "\x7f", "é", "\xff", "Z", "z", "0", "9", "a", "A"}
	build := func(alt []SeqItem) string {
		var b strings.Builder
		for _, it := range alt {
			if it.Lit != "" {
				lit := it.Lit
				if r.IntN(20) == 0 {
					k := r.IntN(len(lit))
					lit = lit[:k] + outside[r.IntN(len(outside))] + lit[k+1:]
				}
				b.WriteString(lit)
				continue
			}
			hi := it.Max
			if hi < 0 {
				hi = it.Min + 70
			}
			n := it.Min + r.IntN(hi-it.Min+1)
			switch r.IntN(8) {
			case 0:
				n = max(it.Min-1, 0)
			case 1:
				n = hi + 1
			case 2:
				n = hi
			case 3:
				n = it.Min
			}
			var in []byte
			for c := range 128 {
				if it.Set[c>>6]&(1<<(c&63)) != 0 {
					in = append(in, byte(c))
				}
			}
			for range n {
				if r.IntN(60) == 0 {
					b.WriteString(outside[r.IntN(len(outside))])
				} else {
					b.WriteByte(in[r.IntN(len(in))])
				}
			}
		}
		return b.String()
	}
	for i := range 6000 {
		s := build(alts[i%len(alts)])
		switch r.IntN(10) {
		case 0:
			other := build(alts[r.IntN(len(alts))])
			s = s[:r.IntN(len(s)+1)] + other[r.IntN(len(other)+1):]
		case 1:
			s += outside[r.IntN(len(outside))]
		case 2:
			if s != "" {
				s = s[:len(s)-1]
			}
		}
		if got, exp := match(s), want.MatchString(s); got != exp {
			t.Fatalf("%s: MatchString(%q) = %v, regexp says %v", re, s, got, exp)
		}
	}
}
