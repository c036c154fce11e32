// Command payhsm is the payhsm appliance: one binary whose subcommands run the
// daemon (serve) and, as they arrive, the operator and client tools.
package main

import (
	"fmt"
	"os"

	"payhsm/ceremony"
	"payhsm/daemon"
	"payhsm/tools/bench"
	"payhsm/tools/hostclient"
)

const usage = `usage: payhsm <command> [flags]

commands:
  serve     run the appliance (AWS Payment Cryptography API and host-command port)
  ceremony  key ceremonies: init, load-components, status (run with the daemon stopped)
  client    send one host command to the host port and print the parsed response
  bench     load the host port with a command mix; print throughput and latency percentiles
  version   print the version

Run 'payhsm <command> -h' for a command's flags.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		os.Exit(daemon.ServeMain(os.Args[2:], os.Stderr))
	case "ceremony":
		os.Exit(ceremony.Main(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	case "client":
		os.Exit(hostclient.Main(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	case "bench":
		os.Exit(bench.Main(os.Args[2:], os.Stdout, os.Stderr))
	case "version":
		fmt.Println("payhsm", version)
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "payhsm: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
}
