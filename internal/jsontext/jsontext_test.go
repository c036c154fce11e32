package jsontext

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestPlain: what Plain accepts, encoding/json writes as it is; Plain
// accepts every printable ASCII byte but the six it must not.
func TestPlain(t *testing.T) {
	cases := []string{"", "AKPH 127.0.0.1:5555", "arn:aws:payment-cryptography:us-east-1:000000000000:key/k1", "a\u00e9", "\u2028"}
	for c := 0; c < 256; c++ {
		cases = append(cases, string([]byte{byte(c)}), "x"+string([]byte{byte(c)})+"y")
	}
	for _, s := range cases {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if Plain(s) && string(b) != `"`+s+`"` {
			t.Errorf("Plain(%q), but Marshal writes %s", s, b)
		}
	}
	for c := byte(0x20); c < 0x7f; c++ {
		if want := !strings.ContainsRune(`"\<>&`, rune(c)); Plain(string([]byte{c})) != want {
			t.Errorf("Plain(%q) = %v, want %v", c, !want, want)
		}
	}
}
