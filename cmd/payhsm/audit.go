package main

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.uber.org/zap"

	"payhsm/admin"
	"payhsm/appliance"
	"payhsm/audit"
	"payhsm/internal/cli"
)

const auditUsage = `usage: payhsm audit verify (--dev [--data-dir DIR] | --config FILE) [--chain-only] [FILE...]

verify checks the audit trail: every entry's hash, the chain from each entry
to the next and across files, the sequence numbers, and the seals' MACs (under
the key the region main key gives, in the token). It names every entry that was
edited, removed, reordered or added, and a file that was truncated, removed or
replaced, by file, line and sequence number; it warns of what the trail itself
records (a writer that was killed, dropped data events, a change of seal key).
It exits 1 when anything is wrong, 0 when the trail is intact.

FILE... are trail files in chain order (DIR/audit/audit-*.log DIR/audit/audit.log
is that order); without them, every file of the trail's directory. The seals are
checked through the serving daemon's admin socket when one answers (the daemon's
active file may then end without a closing seal), else offline with the token
(the daemon must be stopped: the key store admits one process). --chain-only
checks without the key (a copy of the trail on another machine): hashes, chain
and sequence, not the seals.

flags:
`

// auditMain runs `payhsm audit <command>`.
func auditMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		cli.Sayf(stderr, "%s", auditUsage)
		return 2
	}
	fs := flag.NewFlagSet("payhsm audit verify", flag.ContinueOnError)
	flags := appliance.RegisterFlags(fs)
	chainOnly := fs.Bool("chain-only", false, "check hashes, chain and sequence only, without the key (no appliance needed when FILEs are given)")
	fs.Usage = cli.UsageFunc(fs, auditUsage)
	switch args[0] {
	case "verify":
	case "help", "-h", "-help", "--help":
		if err := cli.PrintUsage(fs, stdout); err != nil {
			cli.Say(stderr, "payhsm audit: write usage:", err)
			return 1
		}
		return 0
	default:
		cli.Sayf(stderr, "payhsm audit: unknown command %q\n\n%s", args[0], auditUsage)
		return 2
	}
	if code, ok := cli.Parse(fs, args[1:], stdout, stderr); !ok {
		return code
	}
	files := fs.Args()
	var cfg *appliance.Config
	if !*chainOnly || len(files) == 0 {
		var err error
		if cfg, err = flags.Config(); err != nil {
			cli.Say(stderr, "payhsm audit verify:", err)
			return 2
		}
	}
	if len(files) == 0 {
		var err error
		if files, err = trailFiles(cfg.AuditDir()); err != nil {
			cli.Say(stderr, "payhsm audit verify:", err)
			return 1
		}
	}
	opt, how, err := sealChecker(cfg, flags.Dev(), *chainOnly, files)
	if err != nil {
		cli.Say(stderr, "payhsm audit verify:", err)
		return 1
	}
	rep, err := audit.VerifyFiles(files, opt)
	if err != nil {
		cli.Say(stderr, "payhsm audit verify:", err)
		return 1
	}
	out := cli.NewWriter(stdout)
	for _, f := range rep.Errors {
		out.Printf("ERROR %s\n", f)
	}
	for _, f := range rep.Warnings {
		out.Printf("warning %s\n", f)
	}
	verdict := "intact"
	if !rep.OK() {
		verdict = fmt.Sprintf("%d problems found", len(rep.Errors))
		if len(rep.Errors) == 1 {
			verdict = "1 problem found"
		}
	}
	cli.Sayf(stderr, "payhsm audit verify: %d files, %d entries (sequence %d to %d), %d seals, %d verified (%s), %d entries not yet sealed: %s\n",
		rep.Files, rep.Entries, rep.First, rep.Last, rep.Seals, rep.SealsChecked, how, rep.Unsealed, verdict)
	if err := out.Err(); err != nil {
		cli.Say(stderr, "payhsm audit verify: write output:", err)
		return 1
	}
	if !rep.OK() {
		return 1
	}
	return 0
}

// trailFiles lists a trail directory's files in chain order.
func trailFiles(dir string) ([]string, error) {
	rotated, err := filepath.Glob(filepath.Join(dir, "audit-*.log"))
	if err != nil {
		return nil, err
	}
	active := filepath.Join(dir, audit.ActiveName)
	if _, err := os.Stat(active); err == nil {
		rotated = append(rotated, active)
	}
	if len(rotated) == 0 {
		return nil, fmt.Errorf("no audit trail in %s", dir)
	}
	return rotated, nil
}

// sealChecker chooses how seals are checked: through the serving daemon,
// offline with the token, or not at all (chain only). It returns the
// verify options and how.
func sealChecker(cfg *appliance.Config, dev, chainOnly bool, files []string) (audit.VerifyOptions, string, error) {
	if chainOnly {
		return audit.VerifyOptions{}, "chain only, seals not checked", nil
	}
	sock := cfg.AdminSocketPath()
	if _, err := admin.Call(sock, &admin.Request{Op: admin.OpAuditSeals}); err == nil {
		// The daemon is writing its active file: it may end unsealed.
		last, _ := filepath.Abs(files[len(files)-1])
		active, _ := filepath.Abs(filepath.Join(cfg.AuditDir(), audit.ActiveName))
		return audit.VerifyOptions{Seals: daemonChecker(sock), Live: last == active}, "through the daemon", nil
	} else if !errors.Is(err, admin.ErrNoDaemon) {
		return audit.VerifyOptions{}, "", err
	}
	if err := appliance.HardenProcess(); err != nil {
		return audit.VerifyOptions{}, "", err
	}
	app, err := appliance.OpenForInspection(cfg, dev, zap.NewNop())
	if err != nil {
		return audit.VerifyOptions{}, "", err
	}
	key, err := app.Custody.AuditKey()
	if err = errors.Join(err, app.Close()); err != nil {
		return audit.VerifyOptions{}, "", err
	}
	defer clear(key)
	c, err := audit.KeyChecker(key)
	if err != nil {
		return audit.VerifyOptions{}, "", err
	}
	return audit.VerifyOptions{Seals: c}, "offline", nil
}

// daemonChecker checks seals through the daemon's admin socket.
type daemonChecker string

func (d daemonChecker) CheckSeals(reqs []audit.SealRequest) ([]audit.SealStatus, error) {
	out := make([]audit.SealStatus, 0, len(reqs))
	for lo := 0; lo < len(reqs); lo += admin.MaxSeals {
		batch := reqs[lo:min(lo+admin.MaxSeals, len(reqs))]
		seals := make([]admin.AuditSeal, len(batch))
		for i, r := range batch {
			seals[i] = admin.AuditSeal{KeyID: r.KeyID, Prev: hex.EncodeToString(r.Prev[:]), MAC: hex.EncodeToString(r.MAC[:])}
		}
		resp, err := admin.Call(string(d), &admin.Request{Op: admin.OpAuditSeals, Seals: seals})
		if err != nil {
			return nil, err
		}
		if len(resp.SealStatus) != len(batch) {
			return nil, fmt.Errorf("the daemon answered %d seal checks for %d seals", len(resp.SealStatus), len(batch))
		}
		for _, name := range resp.SealStatus {
			st, err := admin.ParseSealStatus(name)
			if err != nil {
				return nil, err
			}
			out = append(out, st)
		}
	}
	return out, nil
}
