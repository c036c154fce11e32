package cli

import (
	"bytes"
	"flag"
	"fmt"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args           []string
		code           int
		ok             bool
		stdout, stderr string // substrings; "" means empty
		wantN          int
	}{
		{[]string{"-n", "3"}, 0, true, "", "", 3},
		{[]string{"-h"}, 0, false, "usage: demo", "", 0},
		{[]string{"--help"}, 0, false, "-n int", "", 0},
		{[]string{"-help"}, 0, false, "usage: demo", "", 0},
		{[]string{"-x"}, 2, false, "", "demo: flag provided but not defined: -x", 0},
		{[]string{"-n", "three"}, 2, false, "", "usage: demo", 0},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			fs := flag.NewFlagSet("demo", flag.ContinueOnError)
			n := fs.Int("n", 0, "a number")
			fs.Usage = func() { fmt.Fprintln(fs.Output(), "usage: demo [-n N]"); fs.PrintDefaults() }
			var stdout, stderr bytes.Buffer
			code, ok := Parse(fs, tc.args, &stdout, &stderr)
			if code != tc.code || ok != tc.ok || *n != tc.wantN {
				t.Errorf("Parse = %d, %v (n=%d); want %d, %v (n=%d)", code, ok, *n, tc.code, tc.ok, tc.wantN)
			}
			for _, c := range []struct{ name, got, want string }{{"stdout", stdout.String(), tc.stdout}, {"stderr", stderr.String(), tc.stderr}} {
				if c.want == "" && c.got != "" || !strings.Contains(c.got, c.want) {
					t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
				}
			}
		})
	}
}
