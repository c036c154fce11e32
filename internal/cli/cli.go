// Package cli owns how payhsm's subcommands parse their flags and write to
// their standard streams: help asked for (-h, -help, --help) prints the
// command's usage on standard output and exits 0 (1 when that output cannot
// be written); a bad flag prints the error and the usage on standard error
// and exits 2. Diagnostics go to standard error through Say and Sayf; output that
// must arrive goes through a Writer, whose first error the command checks.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// Parse parses args into fs. ok is false when the command must exit now with code.
// fs.Usage, when set, must print to fs.Output() (UsageFunc does).
func Parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	fs.SetOutput(io.Discard) // the flag package's own messages; printed below instead
	err := fs.Parse(args)
	switch {
	case err == nil:
		fs.SetOutput(stderr)
		return 0, true
	case errors.Is(err, flag.ErrHelp):
		if err := PrintUsage(fs, stdout); err != nil {
			Say(stderr, fs.Name()+": write usage:", err)
			return 1, false
		}
		return 0, false
	default:
		fs.SetOutput(stderr)
		Say(stderr, fs.Name()+":", err)
		fs.Usage()
		return 2, false
	}
}

// UsageFunc returns a Usage function for fs: text, then the flags' defaults,
// on fs.Output(). Write errors are not its to report: PrintUsage reports
// them when the usage was asked for; on a misuse it goes to standard error
// (see Say).
func UsageFunc(fs *flag.FlagSet, text string) func() {
	return func() {
		_, _ = io.WriteString(fs.Output(), text) // see above
		fs.PrintDefaults()
	}
}

// PrintUsage runs fs.Usage onto w and returns the first error writing it;
// fs's output is w afterwards.
func PrintUsage(fs *flag.FlagSet, w io.Writer) error {
	ew := NewWriter(w)
	fs.SetOutput(ew)
	fs.Usage()
	fs.SetOutput(w)
	return ew.Err()
}

// Say writes a diagnostic line (fmt.Sprintln of args) to stderr. A failure to
// write it is dropped: standard error is where it would have been reported,
// and the command's exit status still tells.
func Say(stderr io.Writer, args ...any) { _, _ = fmt.Fprintln(stderr, args...) }

// Sayf is Say with a format (fmt.Fprintf: the caller ends the line).
func Sayf(stderr io.Writer, format string, a ...any) { _, _ = fmt.Fprintf(stderr, format, a...) }

// Writer passes writes through to an io.Writer and keeps the first error:
// after one, every later write fails with it at once. A command prints
// through it freely and checks Err where the output must have arrived (a
// prompt before its answer is read, a result before the exit status says
// success). It is not safe for concurrent use.
type Writer struct {
	w   io.Writer
	err error
}

// NewWriter writes to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write writes p, unless an earlier write failed.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	w.err = err
	return n, err
}

// Printf formats and writes; a failure is kept for Err.
func (w *Writer) Printf(format string, a ...any) {
	_, _ = fmt.Fprintf(w, format, a...) // kept in w.err, reported by Err
}

// Err returns the first write error, or nil when every write succeeded.
func (w *Writer) Err() error { return w.err }
