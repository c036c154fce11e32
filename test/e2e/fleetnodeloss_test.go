package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"

	"payhsm/internal/etcdtest"
)

// fleetNode is one node of a test fleet: its name, config file, data
// directory and running daemon (replaced when the node restarts).
type fleetNode struct {
	name, cfg, dir string
	d              *daemon
}

// fleetServe is the command that serves a fleet node with every listener on
// a port of its own.
func fleetServe(cfg string) *exec.Cmd {
	return exec.Command(binPath, "serve", "--dev", "--config", cfg, "--http-addr", "127.0.0.1:0", "--host-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0")
}

// Dev custodians of every test fleet node: alice and bob, who enrol with
// fleetEnrol and approve with fleetApprovals.
const (
	fleetEnrol     = "alice-passphrase\nalice-passphrase\nbob-passphrase!\nbob-passphrase!\n"
	fleetApprovals = "alice\nalice-passphrase\nbob\nbob-passphrase!\n"
)

// startFleet initializes and serves one node per name on c: the first makes
// the profile main key, each other one is joined from the first through
// `payhsm ceremony join` (TR-34, both sides' custodians approving).
func startFleet(t *testing.T, c *etcdtest.Cluster, names ...string) []*fleetNode {
	t.Helper()
	spec := filepath.Join(t.TempDir(), "ceremony.json")
	check(t, os.WriteFile(spec, []byte(`{"custodians":["alice","bob"],"profiles":[{"name":"default"}]}`), 0o600))
	var nodes []*fleetNode
	for i, name := range names {
		n := &fleetNode{name: name, dir: t.TempDir()}
		n.cfg = fleetNodeConfig(t, c, name, n.dir)
		if out, err := payhsmCmd(fleetEnrol, "ceremony", "init", "--dev", "--config", n.cfg, "--ceremony", spec); err != nil {
			t.Fatalf("init node %s: %v\n%s", name, err, out)
		}
		if i == 0 {
			n.d = startDaemonCmd(t, fleetServe(n.cfg))
		} else {
			n.d = joinFleetNode(t, nodes[0], n)
		}
		n.d.dir = n.dir
		n.d.keyID, n.d.secret = readCreds(t, filepath.Join(n.dir, "credentials"))
		nodes = append(nodes, n)
	}
	return nodes
}

// joinFleetNode serves n, which waits for the fleet's profile main key,
// and joins it from the serving node from; it returns n's daemon, ready.
func joinFleetNode(t *testing.T, from, n *fleetNode) *daemon {
	t.Helper()
	waiting := make(chan struct{}, 1)
	joined := make(chan error, 1)
	go func() {
		select {
		case <-waiting:
		case <-time.After(60 * time.Second):
			joined <- fmt.Errorf("node %s did not wait for the join within 60s", n.name)
			return
		}
		out, err := payhsmCmd("y\n"+fleetApprovals+"y\n"+fleetApprovals, "ceremony", "join",
			"--from-admin", filepath.Join(from.dir, "admin.sock"), "--to-admin", filepath.Join(n.dir, "admin.sock"), "--profile", "default")
		if err == nil && !strings.Contains(out, "synchronized online: KCV") {
			err = errors.New("no KCV in its output")
		}
		if err != nil {
			err = fmt.Errorf("ceremony join to node %s: %w\n%s", n.name, err, out)
		}
		joined <- err
	}()
	joinMsg := "node " + n.name + " has no profile main key: run payhsm ceremony join"
	d := startDaemonHook(t, fleetServe(n.cfg), func(m map[string]any) {
		if m["msg"] == joinMsg {
			select {
			case waiting <- struct{}{}:
			default:
			}
		}
	})
	check(t, <-joined)
	return d
}

// hostDo sends one host command over a new connection and returns the
// answer, or the error (for load goroutines that may see the node die).
func hostDo(addr, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer func() { _ = c.Close() }()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return "", err
	}
	if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...)); err != nil {
		return "", err
	}
	var lb [2]byte
	if _, err := io.ReadFull(c, lb[:]); err != nil {
		return "", err
	}
	b := make([]byte, binary.BigEndian.Uint16(lb[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		return "", err
	}
	return string(b), nil
}

// The node-loss trial's phases.
const (
	phaseBefore   = iota // all three nodes serving
	phaseDown            // one node SIGKILLed
	phaseRejoined        // the node restarted and ready again
	phases
)

var phaseNames = [phases]string{"before the kill", "one node down", "after its restart"}

// callStats counts one kind of call in one phase (the phase when the call
// began: a call in flight at the kill counts before it): the calls, those whose
// first attempt failed (split by whether that attempt went to the killed
// node), and those that failed on the retry too.
type callStats struct {
	calls, firstErrKilled, firstErrOther, failed int
	firstErr                                     string // the first error seen on a surviving node
}

// nodeLossLoad is the state the node-loss trial's clients share.
type nodeLossLoad struct {
	mu     sync.Mutex
	nodes  []*daemon // the current daemon of each node
	killed int       // the index of the node that is killed
	phase  atomic.Int32
	stats  map[string]*[phases]callStats
	keys   []string          // acknowledged CreateKey ARNs
	alias  map[string]string // acknowledged CreateAlias: alias → key ARN
}

func (l *nodeLossLoad) node(i int) *daemon {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nodes[i%len(l.nodes)]
}

// call runs op on node home and, when that fails, once more on the next
// node; it counts the outcome under kind and reports whether op succeeded.
func (l *nodeLossLoad) call(kind string, home int, op func(d *daemon) error) bool {
	phase := l.phase.Load()
	err := op(l.node(home))
	var retryErr error
	if err != nil {
		retryErr = op(l.node(home + 1))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stats[kind] == nil {
		l.stats[kind] = &[phases]callStats{}
	}
	s := &l.stats[kind][phase]
	s.calls++
	if err != nil {
		if home%len(l.nodes) == l.killed {
			s.firstErrKilled++
		} else {
			s.firstErrOther++
			if s.firstErr == "" {
				s.firstErr = err.Error()
			}
		}
		if retryErr != nil {
			s.failed++
		}
	}
	return err == nil || retryErr == nil
}

// TestFleetNodeLoss is issue 15's node-loss acceptance: three payhsm nodes
// (each with its own SoftHSM2 token and data directory, joined through the
// ceremony) on a real 3-member etcd cluster, under continuous load spread
// over the three: control-plane writers (CreateKey then CreateAlias) and
// data-plane clients on both front ends (EncryptData over HTTP, CVV
// generation CW on the host port) that retry a failed call once on the
// next node. The node that leads the fleet's jobs (purge, rotation) is
// SIGKILLed mid-load; the load goes on for a few seconds; the node is
// restarted on its data directory and configuration and must be ready
// again, and serving in `payhsm fleet status`, without a new ceremony, and
// some node must lead the jobs again. Required: no call fails after its
// retry, the surviving nodes answer every first attempt, and every
// acknowledged key and alias is present through a surviving node and
// through the restarted one. The error rates the clients saw, before and
// after their retry, are logged (docs/fleet.md reports them).
func TestFleetNodeLoss(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{Args: []string{"--unsafe-no-fsync"}})
	begin := time.Now()
	fleet := startFleet(t, c, "a", "b", "c")
	t.Logf("3 nodes initialized and joined in %v", time.Since(begin).Round(time.Millisecond))
	ctx := context.Background()

	// The shared keys: an AES key (EncryptData) and a known CVK (CW).
	aesARN := createAESKey(t, fleet[0].d.client())
	encPath := "/keys/" + url.PathEscape(aesARN) + "/encrypt"
	encBody := map[string]any{"PlainText": "6BC1BEE22E409F96E93D7E117393172A", "EncryptionAttributes": map[string]any{"Symmetric": map[string]any{"Mode": "ECB"}}}
	_, m, _ := fleet[1].d.dataCall(t, encPath, encBody)
	want, _ := m["CipherText"].(string)
	if want == "" {
		t.Fatalf("EncryptData through node b: %v", m)
	}
	kk := newKnownKeys(t, fleet[0].d.client())
	cvk := kk.arn(types.KeyUsageTr31C0CardVerificationKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{Generate: true, Verify: true},
		"0123456789ABCDEFFEDCBA9876543210")
	// Visa CVV worked example: PAN 4123456789012345, expiry 8701, service code 101 → 561.
	cw := "0000CW@" + cvk + ";4123456789012345;8701101"
	for _, n := range fleet {
		if got := hostSend(t, n.d.hostAddr, cw); got != "0000CX00561" {
			t.Fatalf("CW through node %s before the load: %q", n.name, got)
		}
	}

	// The node killed is the one that leads the fleet's jobs (purge,
	// rotation), so that the trial covers the hand-over too; node b if no
	// node leads yet.
	killed := 1
	if i := fleetLeader(fleet, 15*time.Second); i >= 0 {
		killed = i
	} else {
		t.Log("no node reported leading the fleet's jobs within 15s: killing node b")
	}
	survivor := fleet[(killed+1)%3]
	l := &nodeLossLoad{nodes: []*daemon{fleet[0].d, fleet[1].d, fleet[2].d}, killed: killed,
		stats: map[string]*[phases]callStats{}, alias: map[string]string{}}
	stop := make(chan struct{})
	running := func() bool {
		select {
		case <-stop:
			return false
		default:
			return true
		}
	}
	var wg sync.WaitGroup
	for home := range 3 {
		// A control-plane writer: CreateKey, then CreateAlias on the key.
		wg.Go(func() {
			for i := 0; running(); i++ {
				var arn string
				if !l.call("CreateKey", home, func(d *daemon) error {
					out, err := d.client().CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: aesAttrs()})
					if err == nil {
						arn = aws.ToString(out.Key.KeyArn)
					}
					return err
				}) {
					continue
				}
				l.mu.Lock()
				l.keys = append(l.keys, arn)
				l.mu.Unlock()
				alias := "alias/nodeloss-" + strconv.Itoa(home) + "-" + strconv.Itoa(i)
				first := true
				if l.call("CreateAlias", home, func(d *daemon) error {
					_, err := d.client().CreateAlias(ctx, &pc.CreateAliasInput{AliasName: aws.String(alias), KeyArn: aws.String(arn)})
					var ce *types.ConflictException
					if err != nil && !first && errors.As(err, &ce) {
						// The first attempt's write committed before its
						// node died: the alias is there, on this key.
						out, gerr := d.client().GetAlias(ctx, &pc.GetAliasInput{AliasName: aws.String(alias)})
						if gerr == nil && aws.ToString(out.Alias.KeyArn) == arn {
							err = nil
						}
					}
					first = false
					return err
				}) {
					l.mu.Lock()
					l.alias[alias] = arn
					l.mu.Unlock()
				}
			}
		})
		// A data-plane client on the HTTP API: EncryptData.
		wg.Go(func() {
			for running() {
				l.call("EncryptData", home, func(d *daemon) error {
					status, m, typ, err := d.dataDo(encPath, encBody)
					if err == nil && (status != http.StatusOK || m["CipherText"] != want) {
						err = fmt.Errorf("EncryptData: %d %s %v", status, typ, m)
					}
					return err
				})
				time.Sleep(5 * time.Millisecond)
			}
		})
		// A data-plane client on the host port: CW (generate a CVV).
		wg.Go(func() {
			for running() {
				l.call("CW (host port)", home, func(d *daemon) error {
					got, err := hostDo(d.hostAddr, cw)
					if err == nil && got != "0000CX00561" {
						err = fmt.Errorf("CW: %q", got)
					}
					return err
				})
				time.Sleep(5 * time.Millisecond)
			}
		})
	}

	loadStart := time.Now()
	time.Sleep(1500 * time.Millisecond)
	victim := fleet[killed]
	wasLeader := leads(victim.d)
	sigkill(t, victim.d)
	killedAt := time.Now()
	l.phase.Store(phaseDown)
	time.Sleep(3 * time.Second)

	// The restart: same data directory, same configuration, no ceremony.
	restartAt := time.Now()
	joinMsg := "node " + victim.name + " has no profile main key: run payhsm ceremony join"
	var askedJoin atomic.Bool
	d := startDaemonHook(t, fleetServe(victim.cfg), func(m map[string]any) {
		if m["msg"] == joinMsg {
			askedJoin.Store(true)
		}
	})
	d.dir = victim.dir
	d.keyID, d.secret = readCreds(t, filepath.Join(victim.dir, "credentials"))
	readyAfter := time.Since(restartAt)
	if code := readyz(t, d.opsURL); code != http.StatusOK {
		t.Errorf("node %s's /readyz after its restart: %d", victim.name, code)
	}
	if askedJoin.Load() {
		t.Errorf("node %s asked for a ceremony join on its restart", victim.name)
	}
	victim.d = d
	l.mu.Lock()
	l.nodes[killed] = d
	l.mu.Unlock()
	l.phase.Store(phaseRejoined)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("node %s (leading the fleet's jobs: %v) SIGKILLed %v into the load, down %v, ready %v after its restart (no ceremony)",
		victim.name, wasLeader, killedAt.Sub(loadStart).Round(time.Millisecond), restartAt.Sub(killedAt).Round(time.Millisecond), readyAfter.Round(time.Millisecond))

	// The clients' error rates, per kind of call and phase.
	for _, kind := range []string{"CreateKey", "CreateAlias", "EncryptData", "CW (host port)"} {
		st := l.stats[kind]
		if st == nil {
			t.Errorf("%s: no calls", kind)
			continue
		}
		for p := range phases {
			s := st[p]
			firstErr := s.firstErrKilled + s.firstErrOther
			t.Logf("%-15s %-18s %5d calls, first attempt failed %3d (%.2f%%; %d of them on the killed node), failed after the retry %d (%.2f%%)",
				kind, phaseNames[p]+":", s.calls, firstErr, pct(firstErr, s.calls), s.firstErrKilled, s.failed, pct(s.failed, s.calls))
			if s.calls == 0 {
				t.Errorf("%s %s: no calls", kind, phaseNames[p])
			}
			if s.failed > 0 {
				t.Errorf("%s %s: %d calls failed after their retry on another node", kind, phaseNames[p], s.failed)
			}
			if s.firstErrOther > 0 {
				t.Errorf("%s %s: a surviving node failed %d first attempts, the first: %s", kind, phaseNames[p], s.firstErrOther, s.firstErr)
			}
		}
		if st[phaseDown].firstErrKilled == 0 {
			t.Errorf("%s: no first attempt failed on the killed node while it was down: the trial did not test the retry", kind)
		}
	}

	// The restarted node serves in fleet status.
	var status []struct {
		Node      string
		Heartbeat *struct{ State, HTTP string }
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := exec.Command(binPath, "fleet", "status", "--json", "--dev", "--config", fleet[0].cfg).Output()
		check(t, err)
		status = nil
		check(t, json.Unmarshal(out, &status))
		serving := 0
		for _, n := range status {
			if n.Heartbeat != nil && n.Heartbeat.State == "serving" {
				if n.Node == victim.name && n.Heartbeat.HTTP != d.httpURL {
					continue // the dead process's heartbeat, not yet expired
				}
				serving++
			}
		}
		if len(status) == 3 && serving == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fleet status 15s after node %s's restart:\n%s", victim.name, out)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Some node leads the fleet's jobs again (after the dead leader's
	// lease ran out: keystore.leaderTTL, 10 s by default).
	if wasLeader {
		if i := fleetLeader(fleet, 30*time.Second); i < 0 {
			t.Errorf("no node leads the fleet's jobs 30s after the leader %s was SIGKILLed and restarted", victim.name)
		} else {
			t.Logf("node %s leads the fleet's jobs %v after the leader was SIGKILLed", fleet[i].name, time.Since(killedAt).Round(100*time.Millisecond))
		}
	}

	// Every acknowledged write, through a surviving node and through the
	// restarted one.
	l.mu.Lock()
	keys, aliases := l.keys, l.alias
	l.mu.Unlock()
	for _, n := range []*fleetNode{survivor, victim} {
		cl := n.d.client()
		for _, arn := range keys {
			if _, err := cl.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(arn)}); err != nil {
				t.Errorf("acknowledged key %s lost (GetKey through node %s): %v", arn, n.name, err)
			}
		}
		for alias, arn := range aliases {
			out, err := cl.GetAlias(ctx, &pc.GetAliasInput{AliasName: aws.String(alias)})
			if err != nil || aws.ToString(out.Alias.KeyArn) != arn {
				t.Errorf("acknowledged alias %s of %s lost (GetAlias through node %s): %v", alias, arn, n.name, err)
			}
		}
	}
	if len(keys) == 0 || len(aliases) == 0 {
		t.Fatalf("%d keys and %d aliases acknowledged", len(keys), len(aliases))
	}
	t.Logf("%d acknowledged keys and %d aliases, all present through nodes %s and %s", len(keys), len(aliases), survivor.name, victim.name)

	// StopKeyUsage through node c: nodes a and b, which have the key
	// cached (they served it under load), refuse it on both front ends
	// within the watch's delay.
	_, err := fleet[2].d.client().StopKeyUsage(ctx, &pc.StopKeyUsageInput{KeyIdentifier: aws.String(cvk)})
	check(t, err)
	stopped := time.Now()
	for _, n := range fleet[:2] {
		for {
			status, _, _ := n.d.dataCall(t, "/cardvalidationdata/generate", map[string]any{"KeyIdentifier": cvk, "PrimaryAccountNumber": "4123456789012345",
				"GenerationAttributes": map[string]any{"CardVerificationValue1": map[string]any{"CardExpiryDate": "8701", "ServiceCode": "101"}}})
			if status != http.StatusOK && hostSend(t, n.d.hostAddr, cw) != "0000CX00561" {
				break
			}
			if time.Since(stopped) > 5*time.Second {
				t.Fatalf("node %s still uses the key 5s after StopKeyUsage through node c", n.name)
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Logf("StopKeyUsage through node c: node %s refuses the key %v after node c answered", n.name, time.Since(stopped).Round(time.Millisecond))
	}
}

// leads reports whether d says (payhsm_leader on its /metrics) that it
// leads the fleet's jobs.
func leads(d *daemon) bool {
	resp, err := http.Get(d.opsURL + "/metrics")
	if err != nil {
		return false
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return err == nil && strings.Contains("\n"+string(b), "\npayhsm_leader 1\n")
}

// fleetLeader returns the index of the node that leads the fleet's jobs,
// waiting up to timeout for one; -1 if none does.
func fleetLeader(fleet []*fleetNode, timeout time.Duration) int {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		for i, n := range fleet {
			if leads(n.d) {
				return i
			}
		}
	}
	return -1
}

// pct is n of total in percent (0 for no total).
func pct(n, total int) float64 {
	if total == 0 {
		return 0
	}
	return 100 * float64(n) / float64(total)
}
