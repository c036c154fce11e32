package custodian

import (
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	t.Parallel()
	for name, ok := range map[string]bool{
		"alice": true, "a": true, "bob_2": true, "c-d": true, strings.Repeat("a", 32): true,
		"": false, "Alice": false, "2bob": false, "_x": false, "-x": false, "a b": false, "é": false, strings.Repeat("a", 33): false,
	} {
		if err := CheckName(name); (err == nil) != ok {
			t.Errorf("CheckName(%q) = %v", name, err)
		}
	}
}
