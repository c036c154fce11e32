// Package transcript replays host-command transcripts (the files in
// protocol/hostcmd/testdata) for tests: against an in-process server in
// package hostcmd, and against the real daemon in test/e2e. A transcript is a
// sequence of lines:
//
//	# comment (each vector names its source here)
//	key NAME USAGE ALGORITHM MODE HEX   import a known key (TR-31 usage and mode of use)
//	> REQUEST                           send one message (header included)
//	< RESPONSE                          expect exactly this response
//	~ REGEXP                            expect a response matching REGEXP
//
// In requests and responses, {HEX} stands for the bytes HEX (binary fields).
// Key NAME is imported as alias/FILE-NAME (FILE = the file name with "." as
// "-"), and "@alias/" in requests is rewritten to match.
package transcript

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Key is a transcript's "key" line.
type Key struct {
	Alias     string // alias/FILE-NAME
	Usage     string // TR-31 key usage, e.g. P0
	Algorithm string // AWS KeyAlgorithm, e.g. TDES_2KEY
	Mode      byte   // TR-31 mode of use
	Hex       string // the clear key
}

var hexSegment = regexp.MustCompile(`\{([0-9A-Fa-f]*)\}`)

// Unbrace replaces every {HEX} segment of s by the bytes it stands for.
func Unbrace(s string) (string, error) {
	var bad error
	out := hexSegment.ReplaceAllStringFunc(s, func(m string) string {
		b, err := hex.DecodeString(m[1 : len(m)-1])
		if err != nil {
			bad = fmt.Errorf("bad hex segment %s", m)
		}
		return string(b)
	})
	return out, bad
}

// Requests returns the requests (unbraced) of every transcript matching
// glob. No match, or a file that cannot be read, is a test failure.
func Requests(t testing.TB, glob string) []string {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no transcript matches %s", glob)
	}
	var out []string
	for _, file := range files {
		b, err := os.ReadFile(file) //nolint:gosec // G304: test support: file is a transcript the calling test names.
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if msg, err := Unbrace(strings.TrimPrefix(l, "> ")); strings.HasPrefix(l, "> ") && err == nil {
				out = append(out, msg)
			}
		}
	}
	return out
}

// Replay runs the transcript at path: importKey brings in each key, call
// sends a request and returns the response. Mismatches are test errors.
func Replay(t testing.TB, path string, importKey func(Key), call func(msg string) string) {
	t.Helper()
	b, err := os.ReadFile(path) //nolint:gosec // G304: test support: path is a transcript the calling test names.
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Base(path)
	prefix := "alias/" + strings.ReplaceAll(base, ".", "-") + "-"
	var last string
	for n, l := range strings.Split(string(b), "\n") {
		where := fmt.Sprintf("%s:%d", base, n+1)
		if l == "" || l[0] == '#' {
			continue
		}
		if len(l) < 2 {
			t.Fatalf("%s: bad line", where)
		}
		arg := l[2:]
		if l[0] == '>' || l[0] == '<' {
			if arg, err = Unbrace(arg); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
		}
		switch l[0] {
		case 'k':
			fs := strings.Fields(l)
			if len(fs) != 6 || len(fs[4]) != 1 {
				t.Fatalf("%s: key NAME USAGE ALGORITHM MODE HEX", where)
			}
			importKey(Key{Alias: prefix + fs[1], Usage: fs[2], Algorithm: fs[3], Mode: fs[4][0], Hex: fs[5]})
		case '>':
			last = call(strings.ReplaceAll(arg, "@alias/", "@"+prefix))
		case '<':
			if last != arg {
				t.Errorf("%s: got %q, want %q", where, last, arg)
			}
		case '~':
			if !regexp.MustCompile("^(?:" + arg + ")$").MatchString(last) {
				t.Errorf("%s: got %q, want match of %s", where, last, arg)
			}
		default:
			t.Fatalf("%s: unknown line kind %q", where, l[0])
		}
	}
}
