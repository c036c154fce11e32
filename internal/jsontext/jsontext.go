// Package jsontext holds what the hand-written JSON encoders (the key
// store's records, the audit trail's entries) share with encoding/json.
package jsontext

// Plain reports whether s is printable ASCII other than the quote, the
// backslash and the characters encoding/json escapes for HTML (<, >, &):
// such a string Marshal writes as it is between quotes, so an encoder may
// copy it. It is false for some strings Marshal also leaves alone (DEL,
// other UTF-8), which the encoders then hand to encoding/json.
func Plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}
