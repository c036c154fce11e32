package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"go.uber.org/zap"

	"payhsm/admin"
	"payhsm/appliance"
	"payhsm/audit"
	"payhsm/daemon"
	"payhsm/internal/cli"
)

const keystoreUsage = `usage: payhsm keystore verify (--dev [--data-dir DIR] | --config FILE)
       payhsm keystore accept-restore (--dev [--data-dir DIR] | --config FILE)

verify checks every record of the key store: its authentication, that its
content decodes, that records agree with each other (aliases and their
index, tags and index entries and their keys, the purge index and its keys),
and that each is the latest the store wrote (its journal: a record put back
to an older copy, deleted, or brought back after its deletion while the
daemon was stopped), and the journal itself (and that the store is not
older than this appliance's token). It lists each record that fails, one a
line (type, name, key id, reason; tab-separated), and exits 1 when any
does, 0 when none does. Through the serving daemon's admin socket when one
answers; otherwise it opens the appliance itself (the daemon must be
stopped: the key store admits one process). A store of an older format is
not verified: start the daemon once to upgrade it.

accept-restore is for an operator who restored the key store from a backup
on purpose (the daemon then refuses to start: the store is older than this
appliance's token), or whose store's journal failed its check: with the
daemon stopped, it lists what verify finds, then accepts the store as it
is. Every record as found becomes what the journal expects (including one
verify lists as out of date), the token records the journal's new
sequence number, and the audit log records the acceptance. Keys changed
or deleted since the backup are back as the backup has them: check the
audit trail for what was done since.

flags:
`

// keystoreMain runs `payhsm keystore <command>`.
func keystoreMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		cli.Sayf(stderr, "%s", keystoreUsage)
		return 2
	}
	cmd := args[0]
	fs := flag.NewFlagSet("payhsm keystore "+cmd, flag.ContinueOnError)
	flags := appliance.RegisterFlags(fs)
	fs.Usage = cli.UsageFunc(fs, keystoreUsage)
	switch cmd {
	case "verify", "accept-restore":
	case "help", "-h", "-help", "--help":
		if err := cli.PrintUsage(fs, stdout); err != nil {
			cli.Say(stderr, "payhsm keystore: write usage:", err)
			return 1
		}
		return 0
	default:
		cli.Sayf(stderr, "payhsm keystore: unknown command %q\n\n%s", cmd, keystoreUsage)
		return 2
	}
	if code, ok := cli.Parse(fs, args[1:], stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		cli.Sayf(stderr, "payhsm keystore %s: unexpected arguments %q\n", cmd, fs.Args())
		return 2
	}
	cfg, err := flags.Config()
	if err != nil {
		cli.Say(stderr, "payhsm keystore "+cmd+":", err)
		return 2
	}
	if cmd == "accept-restore" {
		return acceptRestore(cfg, flags.Dev(), stdout, stderr)
	}
	rep, how, err := verifyKeystore(cfg, flags.Dev())
	if err != nil {
		cli.Say(stderr, "payhsm keystore verify:", err)
		return 1
	}
	if !printVerify(rep, stdout, stderr, "payhsm keystore verify", how) {
		return 1
	}
	if len(rep.Failures) > 0 {
		return 1
	}
	return 0
}

// printVerify lists the failures on stdout and a summary on stderr; false
// when stdout failed.
func printVerify(rep *admin.VerifyReport, stdout, stderr io.Writer, who, how string) bool {
	out := cli.NewWriter(stdout)
	for _, f := range rep.Failures {
		out.Printf("%s\t%s\t%s\t%s\n", f.Type, f.Name, f.KeyID, f.Reason)
	}
	cli.Sayf(stderr, "%s: %d records checked (format %d, %s): %d failed\n", who, rep.Records, rep.Format, how, len(rep.Failures))
	if err := out.Err(); err != nil {
		cli.Say(stderr, who+": write output:", err)
		return false
	}
	return true
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
	rep, _, err := verifyOffline(cfg, dev)
	return rep, "offline", err
}

// verifyOffline opens the appliance for inspection and verifies the store;
// it also returns the store's journal sequence number.
func verifyOffline(cfg *appliance.Config, dev bool) (*admin.VerifyReport, uint64, error) {
	app, err := appliance.OpenForInspection(cfg, dev, zap.NewNop())
	if err != nil {
		return nil, 0, err
	}
	seq := app.Store.JournalSeq()
	rep, err := app.Store.Verify()
	if err = errors.Join(err, app.Close()); err != nil {
		return nil, 0, err
	}
	return daemon.VerifyReport(rep), seq, nil
}

// acceptRestore runs payhsm keystore accept-restore.
func acceptRestore(cfg *appliance.Config, dev bool, stdout, stderr io.Writer) int {
	const who = "payhsm keystore accept-restore"
	fail := func(err error) int {
		cli.Say(stderr, who+":", err)
		return 1
	}
	if _, err := admin.Call(cfg.AdminSocketPath(), &admin.Request{Op: admin.OpVerifyKeystore}); err == nil {
		return fail(errors.New("a daemon is serving this data directory: stop it first"))
	} else if !errors.Is(err, admin.ErrNoDaemon) {
		return fail(err)
	}
	if err := appliance.HardenProcess(); err != nil {
		return fail(err)
	}
	rep, storeSeq, err := verifyOffline(cfg, dev)
	if err != nil {
		return fail(err)
	}
	if !printVerify(rep, stdout, stderr, who, "offline, before accepting") {
		return 1
	}
	// The audit trail is sealed under a key the token derives, so it is
	// opened with the appliance: the acceptance is recorded once it is made
	// (a refusal is reported here and changes nothing).
	app, rr, err := appliance.OpenAcceptingRestore(cfg, dev, zap.NewNop())
	if err != nil {
		return fail(err)
	}
	detail := fmt.Sprintf("journal %s was at sequence %d, the token at %d; accepted as sequence %d, now anchored; %d records listed by verify accepted as they are",
		rr.Writer, storeSeq, rr.Anchor, rr.Seq, len(rep.Failures))
	trail, err := cfg.OpenAudit(app.Custody, "ceremony", zap.NewNop())
	if err == nil {
		err = errors.Join(trail.Record(audit.KindCeremony, audit.Event{Operation: "keystore-accept-restore", Outcome: audit.OK, Detail: detail}),
			trail.Close())
	}
	if err = errors.Join(err, app.Close()); err != nil {
		return fail(err)
	}
	cli.Sayf(stderr, "%s: the key store is accepted as it is (%s)\n", who, detail)
	return 0
}
