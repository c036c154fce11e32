package access

// glob reports whether s matches pattern, where '*' matches any run of
// characters (also none) and '?' any one character, as IAM's Action and
// Resource wildcards do. It allocates nothing and runs in O(len·len) at worst
// (the classic single-backtrack algorithm).
func glob(pattern, s string) bool {
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
