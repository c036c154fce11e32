package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"payhsm/appliance"
	"payhsm/daemon"
	"payhsm/internal/cli"
)

const fleetUsage = `usage: payhsm fleet status --config FILE [--json]

status lists the nodes of the fleet that shares this configuration's etcd key
store (docs/fleet.md): each node's state, the age of its last heartbeat, where
it serves, and the profile main key versions it holds (KCV of the active one).
A node with records in the store but no current heartbeat is stopped, or dead
for longer than its heartbeat's lease (three heartbeat intervals). It reads
only names and heartbeats: no token is opened, and it runs beside the daemon.

flags:
`

// fleetMain runs `payhsm fleet <command>`.
func fleetMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("payhsm fleet status", flag.ContinueOnError)
	flags := appliance.RegisterFlags(fs)
	asJSON := fs.Bool("json", false, "print the nodes as JSON")
	fs.Usage = cli.UsageFunc(fs, fleetUsage)
	if len(args) == 0 {
		cli.Sayf(stderr, "%s", fleetUsage)
		return 2
	}
	switch args[0] {
	case "status":
	case "help", "-h", "-help", "--help":
		if err := cli.PrintUsage(fs, stdout); err != nil {
			cli.Say(stderr, "payhsm fleet: write usage:", err)
			return 1
		}
		return 0
	default:
		cli.Sayf(stderr, "payhsm fleet: unknown command %q\n\n%s", args[0], fleetUsage)
		return 2
	}
	if code, ok := cli.Parse(fs, args[1:], stdout, stderr); !ok {
		return code
	}
	cfg, err := flags.Config()
	if err != nil {
		cli.Say(stderr, "payhsm fleet status:", err)
		return 2
	}
	if cfg.Keystore.Engine != appliance.EngineEtcd {
		cli.Say(stderr, "payhsm fleet status: this appliance's key store is not shared (keystore.engine is "+cfg.Keystore.Engine+"): it is no fleet")
		return 2
	}
	nodes, err := daemon.FleetStatus(cfg, zap.NewNop())
	if err != nil {
		cli.Say(stderr, "payhsm fleet status:", err)
		return 1
	}
	if *asJSON {
		b, err := json.MarshalIndent(nodes, "", "  ")
		if err != nil {
			cli.Say(stderr, "payhsm fleet status:", err)
			return 1
		}
		return printOut(stdout, stderr, string(b)+"\n")
	}
	return printOut(stdout, stderr, formatFleet(nodes))
}

// formatFleet is the status table.
func formatFleet(nodes []daemon.NodeStatus) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(w, "NODE\tSTATE\tHEARTBEAT\tHTTP\tHOST\tVERSION\tPROFILE MAIN KEYS")
	for _, n := range nodes {
		state, age, httpAddr, host, ver := "down", "none", "-", "-", "-"
		pmk := strings.Join(n.Profiles, ",") + " (stored)"
		if len(n.Profiles) == 0 {
			pmk = "-"
		}
		if hb := n.Heartbeat; hb != nil {
			state, age, ver = hb.State, n.Age.Round(time.Millisecond).String()+" ago", hb.Version
			if hb.HTTP != "" {
				httpAddr = hb.HTTP
			}
			if hb.Host != "" {
				host = hb.Host
			}
			var ps []string
			for _, p := range slices.Sorted(maps.Keys(hb.Profiles)) {
				v := make([]string, len(hb.Profiles[p]))
				for i, x := range hb.Profiles[p] {
					v[i] = fmt.Sprint(x)
				}
				ps = append(ps, fmt.Sprintf("%s v%s KCV %s", p, strings.Join(v, ",v"), hb.KCVs[p]))
			}
			if len(ps) > 0 {
				pmk = strings.Join(ps, "; ")
			} else {
				pmk = "none"
			}
		}
		_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Node, state, age, httpAddr, host, ver, pmk)
	}
	_ = w.Flush()
	return b.String()
}
