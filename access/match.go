package access

import "strings"

// glob reports whether s matches pattern, where '*' matches any run of
// characters (also none) and '?' any one character, as IAM's Action and
// Resource wildcards do. It allocates nothing and runs in O(len·len) at worst
// (the classic single-backtrack algorithm). A pattern without '?' — every
// ARN pattern in practice — is matched segment by segment instead: its
// literal runs between the stars found with strings.Index, leftmost first
// (which is exact for '*' alone), so "arn:aws:payment-cryptography:*:<acct>:key/*"
// costs a few comparisons rather than a backtrack over the ARN.
func glob(pattern, s string) bool {
	if strings.IndexByte(pattern, '?') < 0 {
		return globStars(pattern, s)
	}
	return globBacktrack(pattern, s)
}

// globStars is glob for a pattern whose only wildcard is '*'.
func globStars(pattern, s string) bool {
	i := strings.IndexByte(pattern, '*')
	if i < 0 {
		return pattern == s
	}
	if !strings.HasPrefix(s, pattern[:i]) {
		return false
	}
	s, pattern = s[i:], pattern[i+1:]
	for {
		j := strings.IndexByte(pattern, '*')
		if j < 0 { // the last run ends the string
			return strings.HasSuffix(s, pattern)
		}
		k := strings.Index(s, pattern[:j])
		if k < 0 {
			return false
		}
		s, pattern = s[k+j:], pattern[j+1:]
	}
}

// globBacktrack is glob by single backtracking, for patterns with '?'.
func globBacktrack(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// globFold is glob for a pattern and a string both already lower-case.
func globFold(pattern, s string) bool { return glob(pattern, s) }
