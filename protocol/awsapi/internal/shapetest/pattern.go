package shapetest

import (
	"math/rand/v2"
	"regexp"
	"regexp/syntax"
	"strings"
	"testing"
)

// Pattern is a model pattern (Re, RE2 syntax) and a matcher generated for
// it without the regexp package.
type Pattern struct {
	Re    string
	Match func(string) bool
}

// CheckPatterns compares every pattern's matcher with regexp on strings
// built from the pattern's own syntax tree, near its language (Near);
// there must be at least one pattern.
func CheckPatterns(t *testing.T, patterns []Pattern) {
	t.Helper()
	if len(patterns) == 0 {
		t.Fatal("no patterns")
	}
	r := rand.New(rand.NewPCG(20, 7)) //nolint:gosec // G404: test inputs, seeded to repeat
	for _, p := range patterns {
		want := regexp.MustCompile(p.Re)
		tree, err := syntax.Parse(p.Re, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		for range 6000 {
			s := Near(r, tree)
			if got, exp := p.Match(s), want.MatchString(s); got != exp {
				t.Fatalf("%s: MatchString(%q) = %v, regexp says %v", p.Re, s, got, exp)
			}
		}
	}
}

// FuzzPatterns compares every pattern's matcher with regexp on arbitrary
// strings.
func FuzzPatterns(f *testing.F, patterns []Pattern) {
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

// outside are characters that model patterns' classes often leave out.
var outside = []string{"g", "G", " ", "-", ":", "/", "_", "\x00", "\x7f", "é", "\xff", "Z", "z", "0", "9", "a", "A"}

// Near returns a string built by walking re's syntax tree: mostly one of
// its language, with repetitions at, inside and just beyond their bounds,
// now and then a character from outside a class, a literal changed, and
// the whole cut, spliced with another walk or extended.
func Near(r *rand.Rand, re *syntax.Regexp) string {
	var b strings.Builder
	walk(r, re, &b)
	s := b.String()
	switch r.IntN(10) {
	case 0:
		var o strings.Builder
		walk(r, re, &o)
		other := o.String()
		s = s[:r.IntN(len(s)+1)] + other[r.IntN(len(other)+1):]
	case 1:
		s += outside[r.IntN(len(outside))]
	case 2:
		if s != "" {
			s = s[:len(s)-1]
		}
	}
	return s
}

func walk(r *rand.Rand, re *syntax.Regexp, b *strings.Builder) {
	switch re.Op {
	case syntax.OpLiteral:
		for _, c := range re.Rune {
			if r.IntN(40) == 0 {
				b.WriteString(outside[r.IntN(len(outside))])
			} else {
				b.WriteRune(c)
			}
		}
	case syntax.OpCharClass:
		if r.IntN(60) == 0 || len(re.Rune) == 0 {
			b.WriteString(outside[r.IntN(len(outside))])
			return
		}
		i := 2 * r.IntN(len(re.Rune)/2)
		lo, hi := re.Rune[i], re.Rune[i+1]
		hi = min(hi, lo+200) // classes reaching to U+10FFFF: their first runes
		b.WriteRune(lo + r.Int32N(hi-lo+1))
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		b.WriteRune(' ' + r.Int32N(95))
	case syntax.OpCapture:
		walk(r, re.Sub[0], b)
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			walk(r, sub, b)
		}
	case syntax.OpAlternate:
		walk(r, re.Sub[r.IntN(len(re.Sub))], b)
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		lo, hi := re.Min, re.Max
		switch re.Op {
		case syntax.OpStar:
			lo, hi = 0, -1
		case syntax.OpPlus:
			lo, hi = 1, -1
		case syntax.OpQuest:
			lo, hi = 0, 1
		}
		if hi < 0 {
			hi = lo + 70
		}
		n := lo + r.IntN(hi-lo+1)
		switch r.IntN(8) {
		case 0:
			n = max(lo-1, 0)
		case 1:
			n = hi + 1
		case 2:
			n = hi
		case 3:
			n = lo
		}
		for range n {
			walk(r, re.Sub[0], b)
		}
	}
}
