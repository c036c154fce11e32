package main

import (
	"fmt"
	"regexp/syntax"
	"strconv"
	"strings"
)

// seqItem is one element of a seqPattern alternative at generation time:
// an anchor (^ or $), or a run of one class of ASCII characters between
// min and max long (max -1: no bound). A literal character is a run of a
// one-character class, exactly 1 long.
type seqItem struct {
	anchor   syntax.Op // syntax.OpBeginText or syntax.OpEndText; 0 for a run
	set      [2]uint64
	min, max int
}

func (it seqItem) single() (byte, bool) {
	if it.anchor != 0 || it.min != 1 || it.max != 1 {
		return 0, false
	}
	var c byte
	n := 0
	for b := range 128 {
		if it.set[b>>6]&(1<<(b&63)) != 0 {
			c, n = byte(b), n+1
		}
	}
	return c, n == 1
}

// maxSeqAlts bounds the alternatives a pattern may expand to.
const maxSeqAlts = 8

// seqPatternOf returns the alts field of a seqPattern equal to the RE2
// pattern re, or "" when re is not of the form it covers: alternatives of
// ASCII literals and runs of ASCII classes (no case folding), each anchored
// at both ends, where matching every run greedily is exact. That holds when
// each run of variable length is last, or followed by a literal or a run of
// at least one character whose first character cannot continue the run:
// then no shorter run can lead to a match that the greedy one missed.
func seqPatternOf(re string) string {
	r, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return ""
	}
	alts, ok := expandSeq(r)
	if !ok || len(alts) == 0 {
		return ""
	}
	var out []string
	for _, alt := range alts {
		items, ok := anchoredRuns(alt)
		if !ok || !greedyExact(items) {
			return ""
		}
		out = append(out, "{"+strings.Join(seqLiterals(items), ", ")+"}")
	}
	return "alts: [][]seqItem{" + strings.Join(out, ", ") + "}"
}

// expandSeq turns r into the list of its alternatives, each a sequence of
// items, distributing concatenation over alternation.
func expandSeq(r *syntax.Regexp) ([][]seqItem, bool) {
	switch r.Op {
	case syntax.OpEmptyMatch:
		return [][]seqItem{{}}, true
	case syntax.OpBeginText, syntax.OpEndText:
		return [][]seqItem{{{anchor: r.Op}}}, true
	case syntax.OpCapture:
		return expandSeq(r.Sub[0])
	case syntax.OpLiteral:
		if r.Flags&syntax.FoldCase != 0 {
			return nil, false
		}
		var seq []seqItem
		for _, c := range r.Rune {
			if c >= 0x80 {
				return nil, false
			}
			var it seqItem
			it.set[c>>6] |= 1 << (c & 63)
			it.min, it.max = 1, 1
			seq = append(seq, it)
		}
		return [][]seqItem{seq}, true
	case syntax.OpCharClass:
		set, ok := asciiSet(r)
		if !ok {
			return nil, false
		}
		return [][]seqItem{{{set: set, min: 1, max: 1}}}, true
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		set, ok := asciiSet(r.Sub[0])
		if !ok {
			return nil, false
		}
		it := seqItem{set: set}
		switch r.Op {
		case syntax.OpStar:
			it.min, it.max = 0, -1
		case syntax.OpPlus:
			it.min, it.max = 1, -1
		case syntax.OpQuest:
			it.min, it.max = 0, 1
		default:
			it.min, it.max = r.Min, r.Max
		}
		return [][]seqItem{{it}}, true
	case syntax.OpConcat:
		acc := [][]seqItem{{}}
		for _, sub := range r.Sub {
			alts, ok := expandSeq(sub)
			if !ok || len(acc)*len(alts) > maxSeqAlts {
				return nil, false
			}
			var next [][]seqItem
			for _, a := range acc {
				for _, b := range alts {
					next = append(next, append(append([]seqItem(nil), a...), b...))
				}
			}
			acc = next
		}
		return acc, true
	case syntax.OpAlternate:
		var acc [][]seqItem
		for _, sub := range r.Sub {
			alts, ok := expandSeq(sub)
			if !ok || len(acc)+len(alts) > maxSeqAlts {
				return nil, false
			}
			acc = append(acc, alts...)
		}
		return acc, true
	}
	return nil, false
}

// asciiSet is the set of characters r matches when r is a single ASCII
// character or class of them without case folding.
func asciiSet(r *syntax.Regexp) (set [2]uint64, ok bool) {
	switch {
	case r.Op == syntax.OpLiteral && len(r.Rune) == 1 && r.Flags&syntax.FoldCase == 0 && r.Rune[0] < 0x80:
		c := r.Rune[0]
		set[c>>6] |= 1 << (c & 63)
		return set, true
	case r.Op == syntax.OpCharClass:
		for i := 0; i+1 < len(r.Rune); i += 2 {
			if r.Rune[i+1] >= 0x80 {
				return set, false
			}
			for c := r.Rune[i]; c <= r.Rune[i+1]; c++ {
				set[c>>6] |= 1 << (c & 63)
			}
		}
		return set, len(r.Rune) > 0
	}
	return set, false
}

// anchoredRuns strips an alternative's anchors: it must begin with ^ and
// end with $ (repeated anchors are one), with none between its runs.
func anchoredRuns(alt []seqItem) ([]seqItem, bool) {
	i, j := 0, len(alt)
	for i < j && alt[i].anchor == syntax.OpBeginText {
		i++
	}
	for j > i && alt[j-1].anchor == syntax.OpEndText {
		j--
	}
	if i == 0 || j == len(alt) {
		return nil, false
	}
	for _, it := range alt[i:j] {
		if it.anchor != 0 {
			return nil, false
		}
	}
	return alt[i:j], true
}

// greedyExact reports whether matching items' runs greedily is exact.
func greedyExact(items []seqItem) bool {
	for k, it := range items {
		if it.max >= 0 && it.max < it.min || it.max == 0 {
			return false
		}
		if it.min == it.max || k == len(items)-1 {
			continue
		}
		next := items[k+1]
		if next.min < 1 || next.set[0]&it.set[0] != 0 || next.set[1]&it.set[1] != 0 {
			return false
		}
	}
	return true
}

// seqLiterals renders items as seqItem literals of the generated code,
// merging runs of single characters into literals.
func seqLiterals(items []seqItem) []string {
	var out []string
	var lit []byte
	flush := func() {
		if len(lit) > 0 {
			out = append(out, "{lit: "+strconv.Quote(string(lit))+"}")
			lit = nil
		}
	}
	for _, it := range items {
		if c, ok := it.single(); ok {
			lit = append(lit, c)
			continue
		}
		flush()
		out = append(out, fmt.Sprintf("{set: [2]uint64{%#x, %#x}, min: %d, max: %d}", it.set[0], it.set[1], it.min, it.max))
	}
	flush()
	return out
}
