// Package cli owns how payhsm's subcommands parse their flags: help asked for
// (-h, -help, --help) prints the command's usage on standard output and exits
// 0; a bad flag prints the error and the usage on standard error and exits 2.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// Parse parses args into fs. ok is false when the command must exit now with code.
// fs.Usage, when set, must print to fs.Output().
func Parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	fs.SetOutput(io.Discard) // the flag package's own messages; printed below instead
	err := fs.Parse(args)
	switch {
	case err == nil:
		fs.SetOutput(stderr)
		return 0, true
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return 0, false
	default:
		fs.SetOutput(stderr)
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		fs.Usage()
		return 2, false
	}
}
