// Command fleet runs a local payhsm fleet for development (`make fleet`): a
// 3-member etcd cluster and 3 payhsm nodes on loopback, each node with its
// own SoftHSM2 token and data directory (`serve --dev`), joined through
// `payhsm ceremony join`, in the foreground until Ctrl-C, which stops the
// nodes and then the members.
//
// DEV ONLY: the ceremonies need custodians with passphrases, so this program
// enrols two dev custodians per node with fixed passphrases that it prints
// and feeds them on stdin. It also adds one fleet-wide principal with full
// access and writes its secret in clear to the data directory. Never use
// this for keys that matter.
//
// Everything lives under one data directory (default ./fleet-data): a second
// run reuses it (the members restart on their data, the nodes are not
// initialized or joined again); remove it for a fresh fleet. The program
// depends on nothing of payhsm but its binary (-bin) and the etcd binary
// (-etcd), both of which make fleet builds.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The dev custodians every node enrols (DEV ONLY: fixed, printed).
var custodians = []struct{ name, passphrase string }{
	{"alice", "alice-dev-passphrase"},
	{"bob", "bob-dev-passphrase"},
}

const (
	members = 3
	nodes   = 3
	prefix  = "/payhsm/fleet/"
	profile = "default"
)

// config is what the flags set.
type config struct {
	bin, etcd, data                       string
	httpPort, hostPort, opsPort, etcdPort int
}

func main() {
	var c config
	flag.StringVar(&c.bin, "bin", "bin/payhsm", "the payhsm binary")
	flag.StringVar(&c.etcd, "etcd", "", "the etcd binary (make etcd builds it into .tools/)")
	flag.StringVar(&c.data, "data", "fleet-data", "the fleet's data directory (members, nodes, logs)")
	flag.IntVar(&c.httpPort, "http-port", 8181, "node 1's HTTP API port; node N's is this + N-1")
	flag.IntVar(&c.hostPort, "host-port", 1601, "node 1's host-command port; node N's is this + N-1")
	flag.IntVar(&c.opsPort, "ops-port", 9201, "node 1's ops port (/readyz, /metrics); node N's is this + N-1")
	flag.IntVar(&c.etcdPort, "etcd-port", 23791, "etcd member 1's client port; member N's is this + N-1, the peer ports follow at +10")
	flag.Parse()
	if c.etcd == "" {
		fmt.Fprintln(os.Stderr, "fleet: -etcd is required (make fleet passes the binary make etcd builds)")
		os.Exit(2)
	}
	f := &fleet{config: c}
	err := f.run()
	f.stopAll()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

// proc is one child process (an etcd member or a payhsm node).
type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// fleet is the running fleet.
type fleet struct {
	config
	mu    sync.Mutex
	procs []*proc // in start order; stopped in reverse
	died  chan *proc
}

func (f *fleet) path(elem ...string) string {
	return filepath.Join(append([]string{f.data}, elem...)...)
}

func (f *fleet) clientURL(i int) string { return fmt.Sprintf("http://127.0.0.1:%d", f.etcdPort+i) }
func (f *fleet) peerURL(i int) string   { return fmt.Sprintf("http://127.0.0.1:%d", f.etcdPort+10+i) }
func nodeName(i int) string             { return fmt.Sprintf("hsm-%d", i+1) }

func (f *fleet) run() error {
	f.died = make(chan *proc, members+nodes)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	if err := os.MkdirAll(f.data, 0o700); err != nil {
		return err
	}
	banner("DEV ONLY: this fleet's custodians have FIXED, PRINTED passphrases and its principal's secret is stored in clear under " + f.data)

	// etcd: three members on loopback.
	var endpoints, initial []string
	for i := range members {
		endpoints = append(endpoints, f.clientURL(i))
		initial = append(initial, fmt.Sprintf("m%d=%s", i+1, f.peerURL(i)))
	}
	for i := range members {
		if err := f.startMember(i, strings.Join(initial, ",")); err != nil {
			return err
		}
	}
	for i := range members {
		if err := waitHTTP(f.clientURL(i)+"/health", `"health":"true"`, 30*time.Second, f.died); err != nil {
			return fmt.Errorf("etcd member %d: %w (log: %s)", i+1, err, f.path("etcd", fmt.Sprintf("m%d.log", i+1)))
		}
	}
	fmt.Printf("etcd: 3 members ready, client URLs %s\n", strings.Join(endpoints, " "))

	// The nodes: configuration, ceremony init (once), serve, join (once).
	spec := f.path("ceremony.json")
	if err := writeJSON(spec, map[string]any{"custodians": []string{custodians[0].name, custodians[1].name},
		"profiles": []map[string]any{{"name": profile}}}); err != nil {
		return err
	}
	for i := range nodes {
		if err := f.startNode(i, endpoints, spec); err != nil {
			return err
		}
	}
	if err := f.principal(); err != nil {
		return err
	}
	f.summary()

	select {
	case s := <-sig:
		fmt.Printf("\n%v: stopping the fleet\n", s)
		return nil
	case p := <-f.died:
		return fmt.Errorf("%s exited: %v", p.name, p.err)
	}
}

// startMember starts etcd member i (a new cluster, or a restart on its data).
func (f *fleet) startMember(i int, initial string) error {
	name := fmt.Sprintf("m%d", i+1)
	dir := f.path("etcd", name)
	state := "new"
	if _, err := os.Stat(dir); err == nil {
		state = "existing"
	}
	if err := os.MkdirAll(f.path("etcd"), 0o700); err != nil {
		return err
	}
	_, err := f.start("etcd "+name, f.path("etcd", name+".log"), nil, f.etcd,
		"--name", name, "--data-dir", dir,
		"--listen-client-urls", f.clientURL(i), "--advertise-client-urls", f.clientURL(i),
		"--listen-peer-urls", f.peerURL(i), "--initial-advertise-peer-urls", f.peerURL(i),
		"--initial-cluster", initial, "--initial-cluster-state", state, "--initial-cluster-token", "payhsm-dev-fleet",
		"--log-level", "warn")
	return err
}

// startNode initializes node i (once), serves it, and joins it to the fleet
// from node 1 (once).
func (f *fleet) startNode(i int, endpoints []string, spec string) error {
	name := nodeName(i)
	dir, _ := filepath.Abs(f.path(name))
	cfg := f.path(name + ".json")
	if err := writeJSON(cfg, map[string]any{
		"dataDir":  dir,
		"keystore": map[string]any{"engine": "etcd", "endpoints": endpoints, "prefix": prefix},
		"fleet":    map[string]any{"node": name},
	}); err != nil {
		return err
	}
	initialized := filepath.Join(dir, ".fleet-initialized")
	if _, err := os.Stat(initialized); err != nil {
		fmt.Printf("%s: payhsm ceremony init (dev custodians %s and %s enrol with their fixed passphrases)\n", name, custodians[0].name, custodians[1].name)
		var enrol strings.Builder
		for _, c := range custodians {
			enrol.WriteString(c.passphrase + "\n" + c.passphrase + "\n")
		}
		out, err := f.payhsm(enrol.String(), "ceremony", "init", "--dev", "--config", cfg, "--ceremony", spec)
		if err != nil {
			return fmt.Errorf("%s: ceremony init: %w\n%s", name, err, out)
		}
		indent(out)
		if err := os.WriteFile(initialized, nil, 0o600); err != nil {
			return err
		}
	}

	joinMsg := "node " + name + " has no profile main key: run payhsm ceremony join"
	ready, waiting := make(chan struct{}), make(chan struct{})
	var once1, once2 sync.Once
	_, err := f.start(name, f.path(name+".log"), func(m map[string]any) {
		switch m["msg"] {
		case "payhsm ready":
			once1.Do(func() { close(ready) })
		case joinMsg:
			once2.Do(func() { close(waiting) })
		}
	}, f.bin, "serve", "--dev", "--config", cfg,
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", f.httpPort+i),
		"--host-addr", fmt.Sprintf("127.0.0.1:%d", f.hostPort+i),
		"--ops-addr", fmt.Sprintf("127.0.0.1:%d", f.opsPort+i))
	if err != nil {
		return err
	}
	timeout := time.After(90 * time.Second)
	select {
	case <-ready:
	case <-waiting:
		from, _ := filepath.Abs(f.path(nodeName(0), "admin.sock"))
		to := filepath.Join(dir, "admin.sock")
		fmt.Printf("%s: waits for the fleet's profile main key: payhsm ceremony join --from-admin %s --to-admin %s --profile %s\n",
			name, from, to, profile)
		var approvals strings.Builder
		for _, c := range custodians {
			approvals.WriteString(c.name + "\n" + c.passphrase + "\n")
		}
		// Confirm the fingerprints, the exporting node's custodians
		// approve; confirm, the importing node's custodians approve.
		answers := "y\n" + approvals.String() + "y\n" + approvals.String()
		out, err := f.payhsm(answers, "ceremony", "join", "--from-admin", from, "--to-admin", to, "--profile", profile)
		if err != nil {
			return fmt.Errorf("%s: ceremony join: %w\n%s", name, err, out)
		}
		indent(out)
		select {
		case <-ready:
		case <-timeout:
			return fmt.Errorf("%s: not ready 90s after it started (log: %s)", name, f.path(name+".log"))
		}
	case p := <-f.died:
		return fmt.Errorf("%s exited: %v (log: %s)", p.name, p.err, f.path(p.name+".log"))
	case <-timeout:
		return fmt.Errorf("%s: not ready within 90s (log: %s)", name, f.path(name+".log"))
	}
	fmt.Printf("%s: ready: HTTP http://127.0.0.1:%d, host port 127.0.0.1:%d, ops http://127.0.0.1:%d\n",
		name, f.httpPort+i, f.hostPort+i, f.opsPort+i)
	return nil
}

// principal adds, once, the principal "fleet-dev" with full access on every
// node and writes its credentials to credentials (AWS shared credentials
// file format) under the data directory.
func (f *fleet) principal() error {
	path := f.path("credentials")
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	policy := f.path("fleet-dev-policy.json")
	if err := writeJSON(policy, map[string]any{"Version": "2012-10-17", "Statement": []map[string]any{
		{"Effect": "Allow", "Action": "payment-cryptography:*", "Resource": "*"}}}); err != nil {
		return err
	}
	cmd := exec.Command(f.bin, "principals", "add", "fleet-dev", "--access-key", "--policy", "full-access="+policy, "--dev", "--config", f.path(nodeName(0)+".json")) //nolint:gosec // the payhsm binary given on the command line
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			out = ee.Stderr
		}
		return fmt.Errorf("payhsm principals add fleet-dev: %w\n%s", err, out)
	}
	var added struct {
		Credentials struct{ AccessKeyId, SecretAccessKey string } `json:"credentials"`
	}
	if err := json.Unmarshal(out, &added); err != nil || added.Credentials.AccessKeyId == "" {
		return fmt.Errorf("payhsm principals add fleet-dev: unexpected output %q", out)
	}
	creds := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", added.Credentials.AccessKeyId, added.Credentials.SecretAccessKey)
	return os.WriteFile(path, []byte(creds), 0o600)
}

// summary prints how to reach the fleet.
func (f *fleet) summary() {
	abs, _ := filepath.Abs(f.data)
	fmt.Println()
	banner("payhsm dev fleet running (DEV ONLY)")
	fmt.Printf("  %-6s %-24s %-16s %s\n", "NODE", "HTTP API", "HOST PORT", "OPS")
	for i := range nodes {
		fmt.Printf("  %-6s http://127.0.0.1:%-7d 127.0.0.1:%-6d http://127.0.0.1:%d\n", nodeName(i), f.httpPort+i, f.hostPort+i, f.opsPort+i)
	}
	fmt.Printf("  etcd   %s (prefix %s)\n", strings.Join([]string{f.clientURL(0), f.clientURL(1), f.clientURL(2)}, " "), prefix)
	fmt.Printf("\n  dev custodians of every node (DEV ONLY): ")
	for i, c := range custodians {
		if i > 0 {
			fmt.Print(", ")
		}
		fmt.Printf("%s / %s", c.name, c.passphrase)
	}
	fmt.Printf("\n  principal fleet-dev (every node): export AWS_SHARED_CREDENTIALS_FILE=%s/credentials AWS_CONFIG_FILE=/dev/null\n", abs)
	fmt.Printf("  node configs: %s/hsm-N.json; logs: %s/hsm-N.log, %s/etcd/mN.log\n", abs, abs, abs)
	fmt.Printf("\n  aws payment-cryptography create-key --endpoint-url http://127.0.0.1:%d --region us-east-1 --exportable \\\n"+
		"      --key-attributes KeyAlgorithm=TDES_2KEY,KeyUsage=TR31_C0_CARD_VERIFICATION_KEY,KeyClass=SYMMETRIC_KEY,KeyModesOfUse='{Generate=true,Verify=true}'\n", f.httpPort)
	fmt.Printf("  %s fleet status --dev --config %s/hsm-1.json\n", f.bin, abs)
	fmt.Printf("  %s client -addr 127.0.0.1:%d NO 02    (which node answers: NP ... hsm-2)\n", f.bin, f.hostPort+1)
	fmt.Printf("  README.md \"A local fleet\" has the walk-through.\n")
	fmt.Println("\n  Ctrl-C stops the nodes, then etcd; the data stays in", abs, "(remove it for a fresh fleet)")
	fmt.Println()
	out, err := exec.Command(f.bin, "fleet", "status", "--dev", "--config", f.path(nodeName(0)+".json")).CombinedOutput() //nolint:gosec // the payhsm binary given on the command line
	if err != nil {
		fmt.Printf("payhsm fleet status: %v\n", err)
	}
	indent(string(out))
}

// start starts a child process with its output in logPath; hook (when not
// nil) sees each JSON line of its standard error. The child runs in its
// own process group (Ctrl-C reaches this program only, which stops the
// children in order) and is killed if this program dies.
func (f *fleet) start(name, logPath string, hook func(map[string]any), bin string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600) //nolint:gosec // a path under the fleet's data directory
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...) //nolint:gosec // the etcd and payhsm binaries given on the command line
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Stdout = logf
	var pw *io.PipeWriter
	if hook != nil {
		var pr *io.PipeReader
		pr, pw = io.Pipe()
		cmd.Stderr = io.MultiWriter(logf, pw)
		go func() {
			sc := bufio.NewScanner(pr)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				var m map[string]any
				if json.Unmarshal(sc.Bytes(), &m) == nil {
					hook(m)
				}
			}
			_, _ = io.Copy(io.Discard, pr)
		}()
	} else {
		cmd.Stderr = logf
	}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{})}
	f.mu.Lock()
	f.procs = append(f.procs, p)
	f.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		if pw != nil {
			_ = pw.Close()
		}
		_ = logf.Close()
		close(p.exited)
		f.died <- p
	}()
	return p, nil
}

// stopAll stops every child in reverse start order (the nodes, then the
// members): SIGTERM, then SIGKILL after 20 s.
func (f *fleet) stopAll() {
	f.mu.Lock()
	procs := f.procs
	f.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		select {
		case <-p.exited:
			continue
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
			fmt.Printf("%s stopped\n", p.name)
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
			fmt.Printf("%s killed (no exit 20 s after SIGTERM)\n", p.name)
		}
	}
}

// payhsm runs the payhsm binary with input on stdin and returns its output.
func (f *fleet) payhsm(input string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.bin, args...) //nolint:gosec // the payhsm binary given on the command line
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitHTTP polls url until its body contains want, or fails after timeout
// or when a child dies.
func waitHTTP(url, want string, timeout time.Duration, died <-chan *proc) error {
	deadline := time.Now().Add(timeout)
	cl := &http.Client{Timeout: 2 * time.Second}
	for {
		if resp, err := cl.Get(url); err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if strings.Contains(string(b), want) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not %s within %v", url, want, timeout)
		}
		select {
		case p := <-died:
			return fmt.Errorf("%s exited: %v", p.name, p.err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}

func banner(s string) {
	line := strings.Repeat("!", len(s)+4)
	fmt.Printf("%s\n! %s !\n%s\n", line, s, line)
}

// prompts are the questions of payhsm's ceremonies that this program
// answers on stdin: indent shows each answered one on its own line.
var prompts = regexp.MustCompile(`(\[y/N\] |Passphrase: |custodian name: |\(at least 10 characters\): |repeat the passphrase: )`)

// indent prints a ceremony's output indented, each prompt this program
// answered marked as such.
func indent(s string) {
	s = prompts.ReplaceAllString(strings.TrimRight(s, "\n"), "${1}(answered by the dev fleet)\n")
	for line := range strings.Lines(s) {
		fmt.Print("    ", line)
	}
	fmt.Println()
}
