package main

import (
	"errors"
	"flag"
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
		cli.Sayf(stderr, "%s", keystoreUsage)
		return 2
	}
	fs := flag.NewFlagSet("payhsm keystore verify", flag.ContinueOnError)
	flags := appliance.RegisterFlags(fs)
	fs.Usage = cli.UsageFunc(fs, keystoreUsage)
	switch args[0] {
	case "verify":
	case "help", "-h", "-help", "--help":
		if err := cli.PrintUsage(fs, stdout); err != nil {
			cli.Say(stderr, "payhsm keystore: write usage:", err)
			return 1
		}
		return 0
	default:
		cli.Sayf(stderr, "payhsm keystore: unknown command %q\n\n%s", args[0], keystoreUsage)
		return 2
	}
	if code, ok := cli.Parse(fs, args[1:], stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		cli.Sayf(stderr, "payhsm keystore verify: unexpected arguments %q\n", fs.Args())
		return 2
	}
	cfg, err := flags.Config()
	if err != nil {
		cli.Say(stderr, "payhsm keystore verify:", err)
		return 2
	}
	rep, how, err := verifyKeystore(cfg, flags.Dev())
	if err != nil {
		cli.Say(stderr, "payhsm keystore verify:", err)
		return 1
	}
	out := cli.NewWriter(stdout)
	for _, f := range rep.Failures {
		out.Printf("%s\t%s\t%s\t%s\n", f.Type, f.Name, f.KeyID, f.Reason)
	}
	cli.Sayf(stderr, "payhsm keystore verify: %d records checked (format %d, %s): %d failed\n", rep.Records, rep.Format, how, len(rep.Failures))
	if err := out.Err(); err != nil {
		cli.Say(stderr, "payhsm keystore verify: write output:", err)
		return 1
	}
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
	rep, err := app.Store.Verify()
	if err = errors.Join(err, app.Close()); err != nil {
		return nil, "", err
	}
	return daemon.VerifyReport(rep), "offline", nil
}
