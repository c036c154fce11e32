package ceremony

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// failAfter accepts the first ok bytes, then fails every write.
type failAfter struct {
	ok  int
	buf bytes.Buffer
}

var errBroken = errors.New("console unplugged")

func (f *failAfter) Write(p []byte) (int, error) {
	if f.buf.Len()+len(p) > f.ok {
		return 0, errBroken
	}
	return f.buf.Write(p)
}

// TestConsolePromptFails: a prompt the operators cannot have seen (nor
// what was printed before it) fails its step before any input is read.
func TestConsolePromptFails(t *testing.T) {
	t.Parallel()
	ask := func(c *Console) error { _, err := c.Ask("Name: "); return err }
	secret := func(c *Console) error { _, err := c.Secret("Passphrase: "); return err }
	confirm := func(c *Console) error { _, err := c.Confirm("Recorded?"); return err }
	tests := []struct {
		name   string
		ok     int    // bytes the console takes before failing
		before string // printed before the prompt
		prompt func(*Console) error
		want   error
	}{
		{"ask", 100, "", ask, nil},
		{"ask fails", 0, "", ask, errBroken},
		{"secret fails", 0, "", secret, errBroken},
		{"confirm fails", 0, "", confirm, errBroken},
		{"earlier output failed", 5, "Component 1: 0123456789ABCDEF\n", confirm, errBroken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := strings.NewReader("alice\n")
			c := NewConsole(in, &failAfter{ok: tc.ok})
			c.Printf("%s", tc.before)
			err := tc.prompt(c)
			if !errors.Is(err, tc.want) {
				t.Fatalf("prompt: %v, want %v", err, tc.want)
			}
			if !errors.Is(c.Err(), tc.want) {
				t.Errorf("Err = %v, want %v", c.Err(), tc.want)
			}
			if tc.want != nil && in.Len() != len("alice\n") {
				t.Errorf("input was read after a failed prompt")
			}
		})
	}
}
