package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"payhsm/audit"
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
		{[]string{"help", "audit"}, 0, "usage: payhsm audit verify", ""},
		{[]string{"audit", "verify", "-h"}, 0, "-chain-only", ""},
		{[]string{"audit"}, 2, "", "usage: payhsm audit"},
		{[]string{"audit", "frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"audit", "verify"}, 2, "", "needs --config FILE, or --dev"},
		{[]string{"audit", "verify", "--chain-only", "/nonexistent/audit.log"}, 1, "", "no such file"},
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
	for _, args := range [][]string{{"version"}, {"help"}, {"serve", "-h"}, {"ceremony", "help"}, {"ceremony", "rotate", "-h"}, {"client", "-h"}, {"bench", "-h"}, {"keystore", "help"}, {"keystore", "verify", "-h"}, {"audit", "help"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(args, strings.NewReader(""), brokenWriter{}, &stderr); code != 1 || !strings.Contains(stderr.String(), "broken pipe") {
				t.Errorf("exit %d, want 1; stderr %q", code, &stderr)
			}
		})
	}
}

// TestAuditVerifyChainOnly: payhsm audit verify --chain-only checks a copy of
// a trail without the appliance, and fails with the place of an edit.
func TestAuditVerifyChainOnly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	trail, err := audit.Open(audit.Config{Dir: dir, Key: bytes.Repeat([]byte{1}, audit.RootKeySize)})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := trail.Record(audit.KindControl, audit.Event{Operation: "CreateKey", Principal: "AKPHTEST", Outcome: audit.OK}); err != nil {
			t.Fatal(err)
		}
	}
	if err := trail.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, audit.ActiveName)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"audit", "verify", "--chain-only", path}, strings.NewReader(""), &stdout, &stderr); code != 0 ||
		!strings.Contains(stderr.String(), "5 entries") || !strings.Contains(stderr.String(), "intact") || !strings.Contains(stdout.String(), "seals not checked") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, &stdout, &stderr)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.Replace(b, []byte("AKPHTEST"), []byte("AKPHTESU"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"audit", "verify", "--chain-only", path}, strings.NewReader(""), &stdout, &stderr); code != 1 ||
		!strings.Contains(stdout.String(), "ERROR "+path+":2 (seq 2): entry altered") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, &stdout, &stderr)
	}
}
