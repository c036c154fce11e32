package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"go.uber.org/zap"

	"payhsm/admin"
	"payhsm/appliance"
	"payhsm/daemon"
	"payhsm/internal/cli"
)

const keystoreUsage = `usage: payhsm keystore verify (--dev [--data-dir DIR] | --config FILE)

verify checks every record of the key store: its authentication, that its
content decodes, and that records agree with each other (aliases and their
index, tags and index entries and their keys, the purge index and its keys).
It lists each record that fails, one a line (type, name, key id, reason;
tab-separated), and exits 1 when any does, 0 when none does. Through the
serving daemon's admin socket when one answers; otherwise it opens the
appliance itself (the daemon must be stopped: the key store admits one
process). A store of an older format is not verified: start the daemon once
to upgrade it.

flags:
`

// keystoreMain runs `payhsm keystore <command>`.
func keystoreMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, keystoreUsage)
		return 2
	}
	fs := flag.NewFlagSet("payhsm keystore verify", flag.ContinueOnError)
	flags := appliance.RegisterFlags(fs)
	fs.Usage = func() { fmt.Fprint(fs.Output(), keystoreUsage); fs.PrintDefaults() }
	switch args[0] {
	case "verify":
	case "help", "-h", "-help", "--help":
		fs.SetOutput(stdout)
		fs.Usage()
		return 0
	default:
		fmt.Fprintf(stderr, "payhsm keystore: unknown command %q\n\n%s", args[0], keystoreUsage)
		return 2
	}
	if code, ok := cli.Parse(fs, args[1:], stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "payhsm keystore verify: unexpected arguments %q\n", fs.Args())
		return 2
	}
	cfg, err := flags.Config()
	if err != nil {
		fmt.Fprintln(stderr, "payhsm keystore verify:", err)
		return 2
	}
	rep, how, err := verifyKeystore(cfg, flags.Dev())
	if err != nil {
		fmt.Fprintln(stderr, "payhsm keystore verify:", err)
		return 1
	}
	for _, f := range rep.Failures {
		fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\n", f.Type, f.Name, f.KeyID, f.Reason)
	}
	fmt.Fprintf(stderr, "payhsm keystore verify: %d records checked (format %d, %s): %d failed\n", rep.Records, rep.Format, how, len(rep.Failures))
	if len(rep.Failures) > 0 {
		return 1
	}
	return 0
}

// verifyKeystore asks the serving daemon, or opens the appliance when no
// daemon answers.
func verifyKeystore(cfg *appliance.Config, dev bool) (*admin.VerifyReport, string, error) {
	resp, err := admin.Call(cfg.AdminSocketPath(), &admin.Request{Op: admin.OpVerifyKeystore})
	if err == nil {
		if resp.Verify == nil {
			return nil, "", errors.New("the daemon sent no report")
		}
		return resp.Verify, "through the daemon", nil
	}
	if !errors.Is(err, admin.ErrNoDaemon) {
		return nil, "", err
	}
	if err := appliance.HardenProcess(); err != nil {
		return nil, "", err
	}
	app, err := appliance.OpenForInspection(cfg, dev, zap.NewNop())
	if err != nil {
		return nil, "", err
	}
	defer app.Close()
	rep, err := app.Store.Verify()
	if err != nil {
		return nil, "", err
	}
	return daemon.VerifyReport(rep), "offline", nil
}
