// Command apigen generates Go types, JSON decoding and constraint validation
// for one AWS service model in botocore "service-2" JSON format, for payhsm's
// AWS-compatible HTTP edge.
//
//	go run ./tools/apigen -model <service-2.json> -pkg <name> -out <file.go>
//
// The output is a single gofmt'ed file with deterministic content: for every
// structure a struct type, an exact-name JSON decoder and a Validate method
// enforcing the model's constraints; a named string type per enum; the
// operation table (input factory, output type, HTTP binding, URI labels,
// errors) and the error shapes. Pattern rewrites needed to run the model's
// regular expressions on Go's RE2 engine are printed to standard error.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "apigen:", err)
		os.Exit(1)
	}
}

// run generates one file; pattern rewrites are reported on report.
func run(args []string, report io.Writer) (err error) {
	fs := flag.NewFlagSet("apigen", flag.ContinueOnError)
	fs.SetOutput(report)
	modelPath := fs.String("model", "", "botocore service-2 JSON model")
	pkg := fs.String("pkg", "", "Go package name of the output")
	out := fs.String("out", "", "output Go file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *modelPath == "" || *pkg == "" || *out == "" || fs.NArg() != 0 {
		return fmt.Errorf("usage: apigen -model <file> -pkg <name> -out <file.go>")
	}
	src, notes, err := generate(*modelPath, *pkg)
	if err != nil {
		return err
	}
	for _, n := range notes {
		if _, err := fmt.Fprintf(report, "apigen: %s: pattern rewrite: %s\n", filepath.Base(*modelPath), n); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".apigen-*.go.tmp")
	if err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	defer func() {
		// Gone after the rename; left behind by a failure before it.
		if rerr := os.Remove(tmp.Name()); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
	}()
	if _, err := tmp.Write(src); err != nil {
		return fmt.Errorf("write output: %w", errors.Join(err, tmp.Close()))
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	// A source file of the repository, readable like every other one.
	if err := os.Chmod(tmp.Name(), 0o644); err != nil { //nolint:gosec // G302: see above.
		return fmt.Errorf("write output: %w", err)
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
