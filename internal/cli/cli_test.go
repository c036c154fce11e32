package cli

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
)

// failWriter accepts the first ok bytes, then fails every write.
type failWriter struct {
	ok  int
	buf bytes.Buffer
}

var errWrite = errors.New("write failed")

func (f *failWriter) Write(p []byte) (int, error) {
	if n := f.ok - f.buf.Len(); n < len(p) {
		f.buf.Write(p[:max(n, 0)])
		return max(n, 0), errWrite
	}
	return f.buf.Write(p)
}

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args            []string
		stdout          io.Writer // nil: a buffer
		code            int
		ok              bool
		wantOut, stderr string // substrings; "" means empty
		wantN           int
	}{
		{[]string{"-n", "3"}, nil, 0, true, "", "", 3},
		{[]string{"-h"}, nil, 0, false, "usage: demo", "", 0},
		{[]string{"--help"}, nil, 0, false, "-n int", "", 0},
		{[]string{"-help"}, nil, 0, false, "usage: demo", "", 0},
		{[]string{"-h"}, &failWriter{}, 1, false, "", "demo: write usage: write failed", 0},
		{[]string{"-h"}, &failWriter{ok: 30}, 1, false, "", "demo: write usage: write failed", 0}, // the flags' part fails
		{[]string{"-x"}, nil, 2, false, "", "demo: flag provided but not defined: -x", 0},
		{[]string{"-n", "three"}, nil, 2, false, "", "usage: demo", 0},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			fs := flag.NewFlagSet("demo", flag.ContinueOnError)
			n := fs.Int("n", 0, "a number")
			fs.Usage = UsageFunc(fs, "usage: demo [-n N]\n")
			var stdout, stderr bytes.Buffer
			out := tc.stdout
			if out == nil {
				out = &stdout
			}
			code, ok := Parse(fs, tc.args, out, &stderr)
			if code != tc.code || ok != tc.ok || *n != tc.wantN {
				t.Errorf("Parse = %d, %v (n=%d); want %d, %v (n=%d)", code, ok, *n, tc.code, tc.ok, tc.wantN)
			}
			for _, c := range []struct{ name, got, want string }{{"stdout", stdout.String(), tc.wantOut}, {"stderr", stderr.String(), tc.stderr}} {
				if c.want == "" && c.got != "" || !strings.Contains(c.got, c.want) {
					t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
				}
			}
		})
	}
}

// TestWriterKeepsFirstError: after a failed (or short) write every later
// write fails with the first error, and nothing more reaches the writer.
func TestWriterKeepsFirstError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ok      int
		writes  []string
		want    string
		wantErr error
	}{
		{"all written", 100, []string{"one ", "two"}, "one two", nil},
		{"second fails", 5, []string{"one ", "two", "three"}, "one t", errWrite},
		{"first fails", 0, []string{"one", "two"}, "", errWrite},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fw := &failWriter{ok: tc.ok}
			w := NewWriter(fw)
			for _, s := range tc.writes {
				w.Printf("%s", s)
			}
			if got := fw.buf.String(); got != tc.want {
				t.Errorf("written %q, want %q", got, tc.want)
			}
			if !errors.Is(w.Err(), tc.wantErr) {
				t.Errorf("Err = %v, want %v", w.Err(), tc.wantErr)
			}
		})
	}
}

// shortWriter reports writing less than it was given, without an error.
type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return len(p) / 2, nil }

func TestWriterShortWrite(t *testing.T) {
	t.Parallel()
	w := NewWriter(shortWriter{})
	w.Printf("four")
	if !errors.Is(w.Err(), io.ErrShortWrite) {
		t.Errorf("Err = %v, want io.ErrShortWrite", w.Err())
	}
}

func TestSay(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	Say(&b, "payhsm x:", errWrite)
	if b.String() != "payhsm x: write failed\n" {
		t.Errorf("Say wrote %q", b.String())
	}
	Say(&failWriter{}, "dropped") // must not panic or block
}
