// Command payhsm is the payhsm appliance: one binary whose subcommands run
// the daemon (serve), the key ceremonies (ceremony), the key store and audit
// trail checks (keystore verify, audit verify), and the host-port client and
// load tool (client, bench).
package main

import (
	"io"
	"os"

	"payhsm/ceremony"
	"payhsm/daemon"
	"payhsm/internal/cli"
	"payhsm/internal/version"
	"payhsm/tools/bench"
	"payhsm/tools/hostclient"
)

const usage = `usage: payhsm <command> [flags]

commands:
  serve     run the appliance: the AWS Payment Cryptography API, the host-command port,
            the ops listener (health, readiness, metrics) and the admin socket for online
            ceremonies
  ceremony  key ceremonies under dual control: init, load-components, status,
            krd-request, export-main-key, import-main-key, backup-components (with the
            daemon stopped); rotate (online through the daemon, or offline); sync (online,
            between two daemons); join (sync to a new fleet node); mpa-team-create, mpa-team-remove,
            mpa-status, mpa-approve (Multi-Party Approval; online or offline)
  keystore  verify: check every record of the key store and list those that fail
            (through the serving daemon, or offline); accept-restore: accept a key store
            restored from a backup (the daemon stopped)
  principals  who may use which key: add, list, rotate-secret, disable, enable,
            remove, put-policy (through the serving daemon, or offline)
  fleet     status: the nodes sharing an etcd key store, their heartbeats and the
            profile main key versions each holds
  audit     verify: check the audit trail (hash chain, sequence, seals) and say where
            it was altered (through the serving daemon, or offline)
  client    send one host command to the host port and print the parsed response
  bench     load the host port or the HTTP API with a command mix; print throughput and latency percentiles
  version   print the version (also --version)
  help      print this help, or a command's: payhsm help <command>

Run 'payhsm <command> -h' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		cli.Sayf(stderr, "%s", usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return daemon.ServeMain(args[1:], stdout, stderr)
	case "ceremony":
		return ceremony.Main(args[1:], stdin, stdout, stderr)
	case "keystore":
		return keystoreMain(args[1:], stdout, stderr)
	case "principals":
		return principalsMain(args[1:], stdout, stderr)
	case "audit":
		return auditMain(args[1:], stdout, stderr)
	case "fleet":
		return fleetMain(args[1:], stdout, stderr)
	case "client":
		return hostclient.Main(args[1:], stdin, stdout, stderr)
	case "bench":
		return bench.Main(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		return printOut(stdout, stderr, "payhsm "+version.String()+"\n")
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && args[0] == "help" {
			switch args[1] {
			case "serve", "ceremony", "keystore", "principals", "audit", "fleet", "client", "bench":
				return run([]string{args[1], "-h"}, stdin, stdout, stderr)
			case "version", "help":
			default:
				cli.Sayf(stderr, "payhsm: no help for unknown command %q\n\n%s", args[1], usage)
				return 2
			}
		}
		return printOut(stdout, stderr, usage)
	default:
		cli.Sayf(stderr, "payhsm: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// printOut writes text, the command's whole output, to stdout: exit status 0
// when it was written, else 1.
func printOut(stdout, stderr io.Writer, text string) int {
	if _, err := io.WriteString(stdout, text); err != nil {
		cli.Say(stderr, "payhsm: write output:", err)
		return 1
	}
	return 0
}
