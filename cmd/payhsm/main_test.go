package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestHelpAndVersion: every way of asking for help or the version prints to
// standard output and exits 0; a mistake prints to standard error and exits 2.
func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args   []string
		code   int
		stdout string // a substring of standard output; "" for none
		stderr string // a substring of standard error; "" for none
	}{
		{[]string{"help"}, 0, "commands:", ""},
		{[]string{"-h"}, 0, "commands:", ""},
		{[]string{"--help"}, 0, "commands:", ""},
		{[]string{"help", "version"}, 0, "commands:", ""},
		{[]string{"help", "serve"}, 0, "usage: payhsm serve", ""},
		{[]string{"serve", "-h"}, 0, "-config string", ""},
		{[]string{"serve", "--help"}, 0, "admin socket", ""},
		{[]string{"help", "ceremony"}, 0, "usage: payhsm ceremony", ""},
		{[]string{"ceremony", "-h"}, 0, "backup-components", ""},
		{[]string{"ceremony", "--help"}, 0, "-from-admin string", ""},
		{[]string{"ceremony", "help"}, 0, "sync", ""},
		{[]string{"ceremony", "rotate", "-h"}, 0, "usage: payhsm ceremony", ""},
		{[]string{"help", "keystore"}, 0, "usage: payhsm keystore verify", ""},
		{[]string{"keystore", "verify", "-h"}, 0, "-data-dir string", ""},
		{[]string{"keystore"}, 2, "", "usage: payhsm keystore"},
		{[]string{"keystore", "frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"keystore", "verify", "stray", "--dev"}, 2, "", "unexpected arguments"},
		{[]string{"keystore", "verify"}, 2, "", "needs --config FILE, or --dev"},
		{[]string{"help", "client"}, 0, "usage: payhsm client", ""},
		{[]string{"client", "-h"}, 0, "-addr string", ""},
		{[]string{"help", "bench"}, 0, "usage: payhsm bench", ""},
		{[]string{"bench", "--help"}, 0, "-mix string", ""},
		{[]string{"version"}, 0, "payhsm ", ""},
		{[]string{"--version"}, 0, "payhsm ", ""},
		{nil, 2, "", "usage: payhsm"},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"help", "frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"serve", "--no-such-flag"}, 2, "", "flag provided but not defined"},
		{[]string{"serve", "stray"}, 2, "", "unexpected arguments"},
		{[]string{"ceremony"}, 2, "", "usage: payhsm ceremony"},
		{[]string{"ceremony", "frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"ceremony", "status", "--no-such-flag"}, 2, "", "flag provided but not defined"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, strings.NewReader(""), &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, &stdout, &stderr)
			}
			check := func(name, got, want string) {
				if want == "" && got != "" || !strings.Contains(got, want) {
					t.Errorf("%s = %q, want it to contain %q", name, got, want)
				}
			}
			check("stdout", stdout.String(), tc.stdout)
			check("stderr", stderr.String(), tc.stderr)
		})
	}
}

// brokenWriter fails every write, like a closed pipe or a full disk.
type brokenWriter struct{}

func (brokenWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// TestOutputFailure: help or version that cannot be written to standard
// output is a failure (exit 1), reported on standard error.
func TestOutputFailure(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"help"}, {"serve", "-h"}, {"ceremony", "help"}, {"ceremony", "rotate", "-h"}, {"client", "-h"}, {"bench", "-h"}, {"keystore", "help"}, {"keystore", "verify", "-h"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(args, strings.NewReader(""), brokenWriter{}, &stderr); code != 1 || !strings.Contains(stderr.String(), "broken pipe") {
				t.Errorf("exit %d, want 1; stderr %q", code, &stderr)
			}
		})
	}
}
