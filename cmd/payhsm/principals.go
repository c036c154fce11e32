package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"go.uber.org/zap"

	"payhsm/admin"
	"payhsm/appliance"
	"payhsm/daemon"
	"payhsm/internal/cli"
)

const principalsUsage = `usage: payhsm principals COMMAND [NAME] [flags] (--dev [--data-dir DIR] | --config FILE)

Manages who may use the appliance: principals (SigV4 access keys, host-port
client identities) and their IAM identity policies. Through the serving
daemon's admin socket when one answers (changes apply at once); otherwise it
opens the appliance itself (the daemon must be stopped).

commands:
  add NAME            create a principal: --access-key issues a SigV4 key pair
                      (printed once), --host-client maps mTLS clients to it,
                      --policy attaches identity policies; --principal-account puts it
                      in another account (it then uses the appliance's keys
                      only as their resource-based policies grant)
  list                list the principals (never their secrets)
  rotate-secret NAME  issue a new key pair (printed once); the old one stops at once
  disable NAME        refuse everything the principal asks (enable undoes it)
  enable NAME
  remove NAME         delete the principal
  put-policy NAME     attach or replace identity policies (--policy)

flags:
`

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// principalsMain runs `payhsm principals <command>`.
func principalsMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("payhsm principals", flag.ContinueOnError)
	flags := appliance.RegisterFlags(fs)
	accessKey := fs.Bool("access-key", false, "add: issue a SigV4 access key")
	account := fs.String("principal-account", "", "add: the principal's 12-digit account (default: the appliance's, --account)")
	role := fs.Bool("role", false, "add: the principal is a role (ARN …:role/NAME) rather than a user")
	var hostClients, policies multiFlag
	fs.Var(&hostClients, "host-client", "add: an mTLS client certificate's common name, or sha256:<64 hex> fingerprint (repeatable)")
	fs.Var(&policies, "policy", "add, put-policy: NAME=FILE, an IAM JSON identity policy (repeatable)")
	fs.Usage = cli.UsageFunc(fs, principalsUsage)
	if len(args) == 0 {
		cli.Sayf(stderr, "%s", principalsUsage)
		return 2
	}
	req := &admin.PrincipalsRequest{Command: args[0]}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if err := cli.PrintUsage(fs, stdout); err != nil {
			return 1
		}
		return 0
	case "list", "add", "rotate-secret", "disable", "enable", "remove", "put-policy":
	default:
		cli.Sayf(stderr, "payhsm principals: unknown command %q\n\n%s", args[0], principalsUsage)
		return 2
	}
	rest := args[1:]
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		req.Name, rest = rest[0], rest[1:]
	}
	if code, ok := cli.Parse(fs, rest, stdout, stderr); !ok {
		return code
	}
	if req.Name == "" && fs.NArg() == 1 {
		req.Name = fs.Arg(0)
	} else if fs.NArg() > 0 {
		cli.Sayf(stderr, "payhsm principals: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if req.Command != "list" && req.Name == "" {
		cli.Sayf(stderr, "payhsm principals %s: needs a principal NAME\n", req.Command)
		return 2
	}
	req.AccessKey, req.HostClients, req.Account = *accessKey, hostClients, *account
	if *role {
		req.Kind = "role"
	}
	for _, p := range policies {
		name, file, ok := strings.Cut(p, "=")
		if !ok || name == "" || file == "" {
			cli.Sayf(stderr, "payhsm principals: --policy %q: want NAME=FILE\n", p)
			return 2
		}
		b, err := os.ReadFile(file) //nolint:gosec // G304: the operator names the policy file.
		if err != nil {
			cli.Say(stderr, "payhsm principals:", err)
			return 2
		}
		if req.Policies == nil {
			req.Policies = map[string]string{}
		}
		req.Policies[name] = string(b)
	}
	cfg, err := flags.Config()
	if err != nil {
		cli.Say(stderr, "payhsm principals:", err)
		return 2
	}
	res, err := runPrincipals(cfg, flags.Dev(), req)
	if err != nil {
		cli.Sayf(stderr, "payhsm principals %s: %v\n", req.Command, err)
		return 1
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return 1
	}
	if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil {
		return 1
	}
	if res.Credentials != nil {
		cli.Say(stderr, "payhsm principals: the secret access key is shown only now; store it safely")
	}
	return 0
}

// runPrincipals asks the serving daemon, or opens the appliance when no
// daemon answers.
func runPrincipals(cfg *appliance.Config, dev bool, req *admin.PrincipalsRequest) (*admin.PrincipalsResult, error) {
	resp, err := admin.Call(cfg.AdminSocketPath(), &admin.Request{Op: admin.OpPrincipals, Principals: req})
	if err == nil {
		if resp.Principals == nil {
			return nil, errors.New("the daemon sent no result")
		}
		return resp.Principals, nil
	}
	if !errors.Is(err, admin.ErrNoDaemon) {
		return nil, err
	}
	if err := appliance.HardenProcess(); err != nil {
		return nil, err
	}
	app, err := appliance.Open(cfg, dev, false, zap.NewNop())
	if err != nil {
		return nil, err
	}
	m, err := daemon.OpenAccess(cfg, app)
	if err != nil {
		return nil, errors.Join(err, app.Close())
	}
	res, err := daemon.Principals(m, req)
	return res, errors.Join(err, app.Close())
}
