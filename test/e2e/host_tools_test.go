package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostClientAndBench runs the real `payhsm client` and `payhsm bench`
// subcommands against the real daemon.
func TestHostClientAndBench(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	run := func(args ...string) (string, int) {
		var out bytes.Buffer
		cmd := exec.Command(binPath, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), code
	}
	out, code := run("client", "-addr", d.hostAddr, "NC")
	if code != 0 || !strings.Contains(out, "response ND") || !strings.Contains(out, "error    00") {
		t.Errorf("client NC: %d %s", code, out)
	}
	out, code = run("client", "-addr", d.hostAddr, "B2", "0004", "{50494E47}")
	if code != 0 || !strings.Contains(out, "fields   PING") {
		t.Errorf("client B2: %d %s", code, out)
	}
	// -file: the command-line syntax, one command a line.
	file := filepath.Join(t.TempDir(), "commands")
	check(t, os.WriteFile(file, []byte("# a comment\nNC\n\nB2 0004 {50494E47}\nB2 0005 'A B C'\n"), 0o600))
	out, code = run("client", "-addr", d.hostAddr, "-file", file)
	if code != 0 || strings.Count(out, "response ND") != 1 || !strings.Contains(out, "fields   PING") || !strings.Contains(out, "fields   A B C") {
		t.Errorf("client -file: %d %s", code, out)
	}
	out, code = run("client", "-addr", d.hostAddr, "ZZ")
	if code != 3 || !strings.Contains(out, "error    68 (command disabled)") {
		t.Errorf("client unknown command: %d %s", code, out)
	}
	out, code = run("bench", "-addr", d.hostAddr, "-conns", "4", "-duration", "1s", "-warmup", "200ms", "-mix", "CC=2,CY=1,M8=1,CW=1,M6=1")
	if code != 0 || !strings.Contains(out, "throughput") {
		t.Fatalf("bench: %d %s", code, out)
	}
	for _, c := range []string{"CC ", "CY ", "M8 ", "all "} {
		if !strings.Contains(out, "\n"+c) {
			t.Errorf("bench output lacks %q:\n%s", c, out)
		}
	}
}
