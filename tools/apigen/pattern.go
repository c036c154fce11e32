package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// translatePattern rewrites a model pattern into Go RE2 syntax that must match
// the whole value, and returns the rewrites it made so they can be reported.
//
// Smithy says patterns are ECMA-262 regular expressions and are not anchored
// (Smithy 2.0 spec, constraint-traits.rst, "pattern trait"), but AWS services
// evaluate these models' patterns as full matches, so the result is
// "^(?:p)$". Constructs whose meaning differs between ECMA-262 (or Java's
// java.util.regex, which AWS services run and which accepts possessive
// quantifiers) and RE2 are translated when an exact equivalent exists and
// rejected otherwise, so a model change can never silently weaken validation.
func translatePattern(p string) (string, []string, error) {
	t := &translator{src: []rune(p)}
	if err := t.run(); err != nil {
		return "", nil, fmt.Errorf("pattern %q: %w", p, err)
	}
	full := "^(?:" + t.out.String() + ")$"
	if _, err := regexp.Compile(full); err != nil {
		return "", nil, fmt.Errorf("pattern %q: translated form %q does not compile: %w", p, full, err)
	}
	return full, t.notes, nil
}

type atomKind int

const (
	atomNone   atomKind = iota // nothing quantifiable yet (start, '|', '(' or an anchor)
	atomSingle                 // one character, escape or character class
	atomGroup                  // a parenthesised group
)

type translator struct {
	src   []rune
	i     int
	out   strings.Builder
	notes []string
	last  atomKind // kind of the last atom written
	depth int      // open groups
	// Set right after a quantifier: whether it was an exact {n} applied to a single-character atom.
	afterQuant    bool
	exactOnSingle bool
}

func (t *translator) note(s string) {
	for _, n := range t.notes {
		if n == s {
			return
		}
	}
	t.notes = append(t.notes, s)
}

func (t *translator) peek(k int) rune {
	if t.i+k < len(t.src) {
		return t.src[t.i+k]
	}
	return -1
}

func (t *translator) run() error {
	for t.i < len(t.src) {
		c := t.src[t.i]
		wasQuant := t.afterQuant
		t.afterQuant = false
		switch c {
		case '\\':
			k, err := t.escape(false)
			if err != nil {
				return err
			}
			t.last = k
		case '[':
			if err := t.class(); err != nil {
				return err
			}
			t.last = atomSingle
			continue
		case '(':
			if t.peek(1) == '?' {
				switch {
				case t.peek(2) == ':':
				case t.peek(2) == '<' && t.peek(3) != '=' && t.peek(3) != '!':
					// Named group: RE2 accepts (?<name>...) as ECMA does.
				default:
					return fmt.Errorf("lookaround or inline flags at offset %d are not supported by RE2", t.i)
				}
			}
			t.last = atomNone
			t.depth++
			if t.peek(1) == '?' {
				t.out.WriteString("(?")
				t.i += 2
				continue
			}
			t.out.WriteRune(c)
		case ')':
			// An unbalanced ')' would close the anchoring group early.
			if t.depth--; t.depth < 0 {
				return fmt.Errorf("unbalanced ')' at offset %d", t.i)
			}
			t.out.WriteRune(c)
			t.last = atomGroup
		case '*', '+', '?':
			if wasQuant {
				switch {
				case c == '?':
					t.out.WriteRune(c) // lazy: same full-match result
				case c == '+' && t.exactOnSingle:
					// Java possessive exact count X{n}+ on a single-character atom has
					// one way to match, so it equals X{n}. (ECMA-262 rejects it.)
					t.note("possessive X{n}+ rewritten as X{n} (java.util.regex semantics; RE2 has no possessive quantifiers)")
				case c == '+':
					return fmt.Errorf("possessive quantifier at offset %d has no RE2 equivalent", t.i)
				default:
					return fmt.Errorf("nested quantifier at offset %d", t.i)
				}
				t.i++
				continue
			}
			t.quant(string(c), false)
		case '{':
			if q, ok := t.repeat(); ok {
				t.quant(q, !strings.Contains(q, ","))
				continue
			}
			t.out.WriteString(`\{`) // a literal brace (ECMA-262 Annex B)
			t.last = atomSingle
		case '.':
			// ECMA-262 '.' excludes every line terminator; RE2's only excludes \n.
			t.out.WriteString(`[^\n\r\x{2028}\x{2029}]`)
			t.note(`'.' rewritten as [^\n\r\x{2028}\x{2029}] (ECMA-262 line terminators)`)
			t.last = atomSingle
		case '^', '$', '|':
			t.out.WriteRune(c)
			t.last = atomNone
		default:
			t.out.WriteString(regexp.QuoteMeta(string(c)))
			t.last = atomSingle
		}
		t.i++
	}
	if t.depth != 0 {
		return fmt.Errorf("unbalanced '('")
	}
	return nil
}

// quant writes the quantifier q that was just read.
func (t *translator) quant(q string, exact bool) {
	t.out.WriteString(q)
	t.afterQuant = true
	t.exactOnSingle = exact && t.last == atomSingle
}

// repeat parses {n}, {n,} or {n,m} at the current position and advances past it.
func (t *translator) repeat() (string, bool) {
	j := t.i + 1
	digits := func() string {
		s := j
		for j < len(t.src) && t.src[j] >= '0' && t.src[j] <= '9' {
			j++
		}
		return string(t.src[s:j])
	}
	n := digits()
	if n == "" {
		return "", false
	}
	q := "{" + n
	if j < len(t.src) && t.src[j] == ',' {
		j++
		q += "," + digits()
	}
	if j >= len(t.src) || t.src[j] != '}' {
		return "", false
	}
	t.i = j + 1
	return q + "}", true
}

// class copies a character class, translating escapes inside it.
func (t *translator) class() error {
	start := t.i
	t.out.WriteRune('[')
	t.i++
	if t.peek(0) == '^' {
		t.out.WriteRune('^')
		t.i++
	}
	if t.peek(0) == ']' {
		// ECMA-262: [] matches nothing and [^] anything; RE2 reads ']' as a literal.
		return fmt.Errorf("class at offset %d starts with ']', which ECMA-262 and RE2 read differently", start)
	}
	for t.i < len(t.src) {
		c := t.src[t.i]
		switch {
		case c == ']':
			t.out.WriteRune(c)
			t.i++
			return nil
		case c == '\\':
			if _, err := t.escape(true); err != nil {
				return err
			}
		case c == '[' && t.peek(1) == ':':
			return fmt.Errorf("'[:' at offset %d would be a POSIX class in RE2", t.i)
		default:
			t.out.WriteRune(c)
		}
		t.i++
	}
	return fmt.Errorf("unterminated class at offset %d", start)
}

// escape translates the escape sequence at t.i (a backslash) and leaves t.i on
// its last character.
func (t *translator) escape(inClass bool) (atomKind, error) {
	at := t.i
	t.i++
	if t.i >= len(t.src) {
		return 0, fmt.Errorf("trailing backslash")
	}
	c := t.src[t.i]
	switch {
	case c == 'u':
		hex := ""
		if t.peek(1) == '{' {
			end := -1
			for k := t.i; k < len(t.src); k++ {
				if t.src[k] == '}' {
					end = k
					break
				}
			}
			if end < 0 {
				return 0, fmt.Errorf("bad \\u{...} escape at offset %d", at)
			}
			hex = string(t.src[t.i+2 : end])
			t.i = end
		} else {
			if t.i+5 > len(t.src) {
				return 0, fmt.Errorf("short \\u escape at offset %d", at)
			}
			hex = string(t.src[t.i+1 : t.i+5])
			t.i += 4
		}
		v, err := strconv.ParseUint(hex, 16, 32)
		if err != nil || v > 0x10FFFF {
			return 0, fmt.Errorf("bad \\u escape at offset %d", at)
		}
		if v >= 0xD800 && v <= 0xDFFF {
			return 0, fmt.Errorf("surrogate \\u escape at offset %d cannot be matched in UTF-8", at)
		}
		fmt.Fprintf(&t.out, `\x{%04X}`, v)
		t.note(`\uXXXX rewritten as \x{XXXX}`)
		return atomSingle, nil
	case c == 'x':
		if !isHex(t.peek(1)) || !isHex(t.peek(2)) {
			return 0, fmt.Errorf("bad \\x escape at offset %d", at)
		}
		t.out.WriteString(string(t.src[at : t.i+3]))
		t.i += 2
		return atomSingle, nil
	case c == 'b' && inClass:
		t.out.WriteString(`\x08`) // ECMA-262: backspace inside a class
		return atomSingle, nil
	case (c == 'b' || c == 'B') && !inClass:
		t.out.WriteString(`\` + string(c)) // ASCII word boundary in both
		return atomNone, nil
	case strings.ContainsRune("dDwWtnrfv", c):
		// ASCII-only classes and control escapes mean the same in both.
		t.out.WriteString(`\` + string(c))
		return atomSingle, nil
	case c == '0' && !isDigit(t.peek(1)):
		t.out.WriteString(`\x00`)
		return atomSingle, nil
	case c == 's' || c == 'S':
		return 0, fmt.Errorf("\\%c at offset %d: ECMA-262 whitespace is Unicode-wide, RE2's is ASCII", c, at)
	case isDigit(c):
		return 0, fmt.Errorf("backreference or octal escape at offset %d is not supported by RE2", at)
	case c < 0x80 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'):
		return 0, fmt.Errorf("escape \\%c at offset %d is not supported", c, at)
	default:
		// Identity escape of punctuation or a non-ASCII character.
		if c < 0x80 {
			t.out.WriteString(`\` + string(c))
		} else {
			t.out.WriteString(regexp.QuoteMeta(string(c)))
		}
		return atomSingle, nil
	}
}

func isHex(r rune) bool {
	return isDigit(r) || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F'
}

func isDigit(r rune) bool { return r >= '0' && r <= '9' }
