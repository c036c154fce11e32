package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
	clientv3 "go.etcd.io/etcd/client/v3"

	"payhsm/internal/etcdtest"
)

// fleetNodeConfig writes the configuration of fleet node name (data dir
// dir) on the cluster's prefix /payhsm/fleet/.
func fleetNodeConfig(t *testing.T, c *etcdtest.Cluster, name, dir string) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"dataDir":  dir,
		"keystore": map[string]any{"engine": "etcd", "endpoints": c.Endpoints(), "prefix": "/payhsm/fleet/", "requestTimeout": "10s"},
		"fleet":    map[string]any{"node": name, "heartbeatInterval": "500ms"},
	})
	check(t, err)
	p := filepath.Join(t.TempDir(), name+".json")
	check(t, os.WriteFile(p, b, 0o600))
	return p
}

// payhsmCmd runs the payhsm binary with input on stdin.
func payhsmCmd(input string, args ...string) (string, error) {
	cmd := exec.Command(binPath, args...)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func readyz(t *testing.T, opsURL string) int {
	t.Helper()
	resp, err := http.Get(opsURL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// fleetNodeStatus is one node of `payhsm fleet status --json`, as the
// tests read it.
type fleetNodeStatus struct {
	Node      string
	Heartbeat *struct {
		State, HTTP string
		Profiles    map[string][]int
		KCVs        map[string]string
		OfferError  string
	}
	Profiles []string `json:"storedProfiles"`
}

// fleetStatus runs `payhsm fleet status --json` with cfg.
func fleetStatus(t *testing.T, cfg string) ([]fleetNodeStatus, string) {
	t.Helper()
	out, err := exec.Command(binPath, "fleet", "status", "--json", "--dev", "--config", cfg).Output()
	check(t, err)
	var nodes []fleetNodeStatus
	check(t, json.Unmarshal(out, &nodes))
	return nodes, string(out)
}

// awaitFleetStatus polls fleet status until ok holds, failing the test
// (with what, and the last status) after within.
func awaitFleetStatus(t *testing.T, cfg, what string, within time.Duration, ok func([]fleetNodeStatus) bool) []fleetNodeStatus {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
		nodes, out := fleetStatus(t, cfg)
		if ok(nodes) {
			return nodes
		}
		if time.Now().After(deadline) {
			t.Fatalf("fleet status: %s not seen within %s:\n%s", what, within, out)
		}
	}
}

// TestFleetJoin is issue 15's node identity, join and status on two real
// daemons (each with its own SoftHSM2 token and data directory) sharing a
// real 3-member etcd cluster: node b, initialized with custodians of its
// own, has no profile main key and waits, not ready, until `payhsm
// ceremony join` carries node a's over TR-34 (custodians approving on both
// sides); then a key imported through node a is used through node b on
// both front ends, a principal added on node a signs in on node b, each
// answer names its node, and `payhsm fleet status` shows both nodes.
func TestFleetJoin(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{Args: []string{"--unsafe-no-fsync"}})
	dirA, dirB := t.TempDir(), t.TempDir()
	cfgA, cfgB := fleetNodeConfig(t, c, "a", dirA), fleetNodeConfig(t, c, "b", dirB)
	spec := filepath.Join(t.TempDir(), "ceremony.json")
	check(t, os.WriteFile(spec, []byte(`{"custodians":["alice","bob"],"profiles":[{"name":"default"}]}`), 0o600))
	const enrol = "alice-passphrase\nalice-passphrase\nbob-passphrase!\nbob-passphrase!\n"
	if out, err := payhsmCmd(enrol, "ceremony", "init", "--dev", "--config", cfgA, "--ceremony", spec); err != nil {
		t.Fatalf("init node a: %v\n%s", err, out)
	}
	// Node b enrols its own custodians and leaves the fleet's profile to the join.
	out, err := payhsmCmd(enrol, "ceremony", "init", "--dev", "--config", cfgB, "--ceremony", spec)
	if err != nil || !strings.Contains(out, "Profile default: held by the fleet (node a)") {
		t.Fatalf("init node b: %v\n%s", err, out)
	}

	serve := func(cfg string) *exec.Cmd {
		return exec.Command(binPath, "serve", "--dev", "--config", cfg, "--http-addr", "127.0.0.1:0", "--host-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0")
	}
	da := startDaemonCmd(t, serve(cfgA))
	da.dir = dirA
	da.keyID, da.secret = readCreds(t, filepath.Join(dirA, "credentials"))
	ctx := context.Background()

	// A principal added on node a (its secret sealed for the fleet).
	pol := writePolicy(t, t.TempDir(), "all", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"payment-cryptography:*","Resource":"*"}]}`)
	pout, err := exec.Command(binPath, "principals", "add", "fleet-ops", "--access-key", "--policy", pol, "--dev", "--config", cfgA).Output()
	if err != nil {
		t.Fatalf("principals add on node a: %v\n%s", err, pout)
	}
	var added struct {
		Credentials struct{ AccessKeyId, SecretAccessKey string } `json:"credentials"`
	}
	check(t, json.Unmarshal(pout, &added))

	// Node b waits to join: not ready, and says what to run.
	joinMsg := "node b has no profile main key: run payhsm ceremony join"
	waiting := make(chan map[string]any, 1)
	type joinResult struct {
		out     string
		err     error
		readyz  int
		waitLog map[string]any
		start   time.Time
		took    time.Duration
	}
	joined := make(chan joinResult, 1)
	go func() {
		var r joinResult
		select {
		case r.waitLog = <-waiting:
		case <-time.After(60 * time.Second):
			r.err = os.ErrDeadlineExceeded
			joined <- r
			return
		}
		if u, _ := r.waitLog["ops"].(string); u != "" {
			if resp, err := http.Get(u + "/readyz"); err == nil {
				r.readyz = resp.StatusCode
				_ = resp.Body.Close()
			}
		}
		approvals := "alice\nalice-passphrase\nbob\nbob-passphrase!\n"
		r.start = time.Now()
		r.out, r.err = payhsmCmd("y\n"+approvals+"y\n"+approvals, "ceremony", "join",
			"--from-admin", filepath.Join(dirA, "admin.sock"), "--to-admin", filepath.Join(dirB, "admin.sock"), "--profile", "default")
		r.took = time.Since(r.start)
		joined <- r
	}()
	db := startDaemonHook(t, serve(cfgB), func(m map[string]any) {
		if m["msg"] == joinMsg {
			waiting <- m
		}
	})
	db.dir = dirB
	db.keyID, db.secret = readCreds(t, filepath.Join(dirB, "credentials"))
	r := <-joined
	if r.err != nil || !strings.Contains(r.out, "synchronized online: KCV") {
		t.Fatalf("ceremony join: %v\n%s", r.err, r.out)
	}
	t.Logf("ceremony join took %v (4 argon2id custodian checks, TR-34 build and open); node b ready %v after the join began",
		r.took.Round(time.Millisecond), time.Since(r.start).Round(time.Millisecond))
	if r.readyz != http.StatusServiceUnavailable {
		t.Errorf("node b's /readyz while waiting to join: %d, want 503", r.readyz)
	}
	_, kcvA := ncRaw(t, da, "0000NC")
	if _, kcvB := ncRaw(t, db, "0000NC"); kcvB != kcvA {
		t.Errorf("profile main key KCV on node b %q, on node a %q", kcvB, kcvA)
	}
	if code := readyz(t, db.opsURL); code != http.StatusOK {
		t.Errorf("node b's /readyz after the join: %d", code)
	}

	// A key imported through node a is used through node b at once, on both front ends.
	kk := newKnownKeys(t, da.client())
	cvk := kk.arn(types.KeyUsageTr31C0CardVerificationKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{Generate: true, Verify: true},
		"0123456789ABCDEFFEDCBA9876543210")
	// Visa CVV worked example: PAN 4123456789012345, expiry 8701, service code 101 → 561.
	status, body, _ := db.dataCall(t, "/cardvalidationdata/generate", map[string]any{"KeyIdentifier": cvk, "PrimaryAccountNumber": "4123456789012345",
		"GenerationAttributes": map[string]any{"CardVerificationValue1": map[string]any{"CardExpiryDate": "8701", "ServiceCode": "101"}}})
	if status != 200 || body["ValidationData"] != "561" {
		t.Errorf("CVV through node b's HTTP API: %d %v", status, body)
	}
	if got := hostSend(t, db.hostAddr, "0000CW@"+cvk+";4123456789012345;8701101"); got != "0000CX00561" {
		t.Errorf("CW through node b's host port: %q", got)
	}
	// The same through the AWS CLI, control and data plane, against node b.
	if _, err := exec.LookPath("aws"); err == nil {
		cli := func(svc string, args ...string) (map[string]any, error) {
			cmd := exec.Command("aws", append([]string{svc, "--endpoint-url", db.httpURL, "--region", "us-east-1", "--output", "json"}, args...)...)
			cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+db.keyID, "AWS_SECRET_ACCESS_KEY="+db.secret, "AWS_MAX_ATTEMPTS=1",
				"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
			out, err := cmd.Output()
			var m map[string]any
			if err == nil {
				err = json.Unmarshal(out, &m)
			} else if ee, ok := err.(*exec.ExitError); ok {
				t.Logf("aws %s %v: %s", svc, args, ee.Stderr)
			}
			return m, err
		}
		if m, err := cli("payment-cryptography", "get-key", "--key-identifier", cvk); err != nil || m["Key"] == nil {
			t.Errorf("aws get-key through node b: %v %v", m, err)
		}
		m, err := cli("payment-cryptography-data", "generate-card-validation-data", "--key-identifier", cvk,
			"--primary-account-number", "4123456789012345", "--generation-attributes", "CardVerificationValue1={CardExpiryDate=8701,ServiceCode=101}")
		if err != nil || m["ValidationData"] != "561" {
			t.Errorf("aws generate-card-validation-data through node b: %v %v", m, err)
		}
	} else {
		t.Log("the AWS CLI is not installed: its step is skipped")
	}
	// A key created through node b is seen through node a.
	kb, err := db.client().CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: attrs(types.KeyUsageTr31K0KeyEncryptionKey,
		types.KeyAlgorithmTdes3key, types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true})})
	check(t, err)
	if _, err := da.client().GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: kb.Key.KeyArn}); err != nil {
		t.Errorf("node b's key through node a: %v", err)
	}

	// The principal added on node a signs in on node b.
	ops := pc.New(pc.Options{Region: "us-east-1", BaseEndpoint: aws.String(db.httpURL),
		Credentials: credentials.NewStaticCredentialsProvider(added.Credentials.AccessKeyId, added.Credentials.SecretAccessKey, "")})
	if _, err := ops.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(cvk)}); err != nil {
		t.Errorf("node a's principal on node b: %v", err)
	}

	// A StopKeyUsage made through node a stops the key's use on node b
	// (which has it cached) within the watch's delay; StartKeyUsage
	// brings it back (docs/fleet.md gives the measured bound).
	cvvOnB := func() bool {
		status, body, _ := db.dataCall(t, "/cardvalidationdata/generate", map[string]any{"KeyIdentifier": cvk, "PrimaryAccountNumber": "4123456789012345",
			"GenerationAttributes": map[string]any{"CardVerificationValue1": map[string]any{"CardExpiryDate": "8701", "ServiceCode": "101"}}})
		host := hostSend(t, db.hostAddr, "0000CW@"+cvk+";4123456789012345;8701101")
		return status == 200 && body["ValidationData"] == "561" && host == "0000CX00561"
	}
	waitFor := func(what string, want bool, probe func() bool) {
		start := time.Now()
		for probe() != want {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("%s: not seen on node b after 5s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("%s: seen on node b %v after node a answered", what, time.Since(start).Round(time.Millisecond))
	}
	if !cvvOnB() {
		t.Fatal("node b does not serve the key before StopKeyUsage")
	}
	_, err = da.client().StopKeyUsage(ctx, &pc.StopKeyUsageInput{KeyIdentifier: aws.String(cvk)})
	check(t, err)
	waitFor("StopKeyUsage on node a", false, cvvOnB)
	_, err = da.client().StartKeyUsage(ctx, &pc.StartKeyUsageInput{KeyIdentifier: aws.String(cvk)})
	check(t, err)
	waitFor("StartKeyUsage on node a", true, cvvOnB)

	// A principal added on node a while node b serves signs in on node b
	// (principals follow the store's watch too).
	pout, err = exec.Command(binPath, "principals", "add", "fleet-late", "--access-key", "--policy", pol, "--dev", "--config", cfgA).Output()
	if err != nil {
		t.Fatalf("principals add on serving node a: %v\n%s", err, pout)
	}
	var late struct {
		Credentials struct{ AccessKeyId, SecretAccessKey string } `json:"credentials"`
	}
	check(t, json.Unmarshal(pout, &late))
	lateOps := pc.New(pc.Options{Region: "us-east-1", BaseEndpoint: aws.String(db.httpURL), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(late.Credentials.AccessKeyId, late.Credentials.SecretAccessKey, "")})
	waitFor("a principal added on node a", true, func() bool {
		_, err := lateOps.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(cvk)})
		return err == nil
	})

	// Each answer names its node.
	for _, d := range []struct {
		d    *daemon
		name string
	}{{da, "a"}, {db, "b"}} {
		_, _, hdr := d.d.rawCall(t, "ListKeys", []byte("{}"), nil)
		if got := hdr.Get("x-payhsm-node"); got != d.name {
			t.Errorf("x-payhsm-node %q, want %q", got, d.name)
		}
		if got, want := hostSend(t, d.d.hostAddr, "0000NO02"), "0000NP0001"+d.name; got != want {
			t.Errorf("NO02 %q, want %q", got, want)
		}
	}

	// payhsm fleet status shows both nodes, serving, with the key they hold.
	nodes := awaitFleetStatus(t, cfgB, "both nodes serving", 10*time.Second, func(nodes []fleetNodeStatus) bool {
		ok := len(nodes) == 2
		for _, n := range nodes {
			ok = ok && n.Heartbeat != nil && n.Heartbeat.State == "serving" && len(n.Heartbeat.Profiles["default"]) == 1
		}
		return ok
	})
	if nodes[0].Node != "a" || nodes[1].Node != "b" || nodes[0].Heartbeat.HTTP != da.httpURL || nodes[1].Heartbeat.HTTP != db.httpURL ||
		nodes[0].Heartbeat.KCVs["default"] != nodes[1].Heartbeat.KCVs["default"] {
		t.Errorf("fleet status: %+v", nodes)
	}
	table, err := exec.Command(binPath, "fleet", "status", "--dev", "--config", cfgA).CombinedOutput()
	if err != nil || !strings.Contains(string(table), "serving") {
		t.Errorf("fleet status table: %v\n%s", err, table)
	}
	t.Logf("payhsm fleet status:\n%s", table)

	// A spoiled offer (not authenticated under the fleet's main key: anyone
	// who can write the store can leave one) is refused, recorded, and
	// changes nothing; node b stays ready.
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second})
	check(t, err)
	defer func() { _ = cli.Close() }()
	rogue := `{"from":"a","to":"b","profile":"default","version":9,"kcv":"000000","kdh":"AAAA","token":"AAAA","macVersion":1,"mac":"AAAA"}`
	_, err = cli.Put(ctx, "/payhsm/fleet/sys/fleet/offer/b", rogue)
	check(t, err)
	awaitFleetStatus(t, cfgA, "node b's refusal of the spoiled offer", 10*time.Second, func(nodes []fleetNodeStatus) bool {
		return len(nodes) == 2 && nodes[1].Heartbeat != nil && strings.Contains(nodes[1].Heartbeat.OfferError, "not authenticated under the fleet")
	})
	if code := readyz(t, db.opsURL); code != http.StatusOK {
		t.Errorf("node b's /readyz after a spoiled offer: %d", code)
	}

	// A rotation on node a reaches node b first (TR-34 between the nodes'
	// device identities through the store): node b stays ready and keeps
	// answering throughout, keys it creates meanwhile are carried onto the
	// new version too (node a opens them once the old one is retired), it
	// follows the activation and the retirement, and answers with the same
	// keys after it.
	approvals := "alice\nalice-passphrase\nbob\nbob-passphrase!\n"
	stopPoll := make(chan struct{})
	type during struct {
		notReady, failed int
		created          []string
	}
	polled := make(chan during, 1)
	go func() { // node b every 50 ms, for as long as the rotation runs
		var d during
		for {
			select {
			case <-stopPoll:
				polled <- d
				return
			case <-time.After(50 * time.Millisecond):
			}
			if resp, err := http.Get(db.opsURL + "/readyz"); err != nil || resp.StatusCode != http.StatusOK {
				d.notReady++
			} else {
				_ = resp.Body.Close()
			}
			if got, err := hostDo(db.hostAddr, "0000CW@"+cvk+";4123456789012345;8701101"); err != nil || got != "0000CX00561" {
				d.failed++
			}
			k, err := db.client().CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: attrs(types.KeyUsageTr31C0CardVerificationKey,
				types.KeyAlgorithmTdes2key, types.KeyModesOfUse{Generate: true, Verify: true})})
			if err != nil {
				d.failed++
			} else {
				d.created = append(d.created, aws.ToString(k.Key.KeyArn))
			}
		}
	}()
	rotStart := time.Now()
	out, err = payhsmCmd(approvals, "ceremony", "rotate", "--dev", "--config", cfgA, "--profile", "default")
	rotTook := time.Since(rotStart)
	close(stopPoll)
	dur := <-polled
	if dur.notReady != 0 || dur.failed != 0 || len(dur.created) == 0 {
		t.Errorf("node b during the fleet rotation: not ready %d times, %d failed calls, %d keys created", dur.notReady, dur.failed, len(dur.created))
	}
	if err != nil || !strings.Contains(out, "main key version 2") {
		t.Fatalf("rotate on node a: %v\n%s", err, out)
	}
	t.Logf("fleet rotation (distributed to node b) took %s", rotTook)
	_, kcvA = ncRaw(t, da, "0000NC")
	awaitFleetStatus(t, cfgA, "both nodes serving with version 2 alone", 10*time.Second, func(nodes []fleetNodeStatus) bool {
		ok := len(nodes) == 2
		for _, n := range nodes {
			ok = ok && n.Heartbeat != nil && n.Heartbeat.State == "serving" && slices.Equal(n.Heartbeat.Profiles["default"], []int{2})
		}
		return ok
	})
	if _, kcvB := ncRaw(t, db, "0000NC"); kcvB != kcvA {
		t.Errorf("after the fleet rotation: KCV on node b %q, on node a %q", kcvB, kcvA)
	}
	if got := hostSend(t, db.hostAddr, "0000CW@"+cvk+";4123456789012345;8701101"); got != "0000CX00561" {
		t.Errorf("CW through node b after the fleet rotation: %q", got)
	}
	for _, arn := range dur.created {
		ga := hostSend(t, da.hostAddr, "0000CW@"+arn+";4123456789012345;8701101")
		gb := hostSend(t, db.hostAddr, "0000CW@"+arn+";4123456789012345;8701101")
		if !strings.HasPrefix(ga, "0000CX00") || ga != gb {
			t.Errorf("a key node b created during the rotation, after it: CW through node a %q, node b %q", ga, gb)
		}
	}
	t.Logf("node b during the fleet rotation: %d keys created, every call answered", len(dur.created))
	trailB, err := os.ReadFile(filepath.Join(dirB, "audit", "audit.log"))
	check(t, err)
	for _, op := range []string{"fleet-stage-main-key", "fleet-activate-main-key", "fleet-retire-main-key"} {
		if !strings.Contains(string(trailB), `"`+op+`"`) {
			t.Errorf("node b's audit trail has no %s event", op)
		}
	}
	if !strings.Contains(string(trailB), `"outcome":"refused"`) || !strings.Contains(string(trailB), "version 9 from node a") {
		t.Errorf("node b's audit trail does not record the spoiled offer refused")
	}

	// An isolated rotation (for a main key that may be compromised) leaves
	// node b's copy behind: node b is not ready until the join carries the
	// new version to it.
	if out, err := payhsmCmd(approvals, "ceremony", "rotate", "--isolated", "--dev", "--config", cfgA, "--profile", "default"); err != nil {
		t.Fatalf("isolated rotate on node a: %v\n%s", err, out)
	}
	for deadline := time.Now().Add(10 * time.Second); readyz(t, db.opsURL) != http.StatusServiceUnavailable; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("node b stayed ready with a profile main key older than node a's")
		}
	}
	if code := readyz(t, da.opsURL); code != http.StatusOK {
		t.Errorf("node a's /readyz after its rotation: %d", code)
	}
	out, err = payhsmCmd("y\n"+approvals+"y\n"+approvals, "ceremony", "join",
		"--from-admin", filepath.Join(dirA, "admin.sock"), "--to-admin", filepath.Join(dirB, "admin.sock"), "--profile", "default")
	if err != nil || !strings.Contains(out, "synchronized online: KCV") {
		t.Fatalf("join after the rotation: %v\n%s", err, out)
	}
	_, kcvA = ncRaw(t, da, "0000NC")
	if _, kcvB := ncRaw(t, db, "0000NC"); kcvB != kcvA {
		t.Errorf("after the rotation: KCV on node b %q, on node a %q", kcvB, kcvA)
	}
	for deadline := time.Now().Add(10 * time.Second); readyz(t, db.opsURL) != http.StatusOK; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("node b not ready after receiving the new version")
		}
	}
	if got := hostSend(t, db.hostAddr, "0000CW@"+cvk+";4123456789012345;8701101"); got != "0000CX00561" {
		t.Errorf("CW through node b after the rotation: %q", got)
	}

	// A node waiting to join shows as joining, and stops cleanly.
	dirC := t.TempDir()
	cfgC := fleetNodeConfig(t, c, "c", dirC)
	if out, err := payhsmCmd(enrol, "ceremony", "init", "--dev", "--config", cfgC, "--ceremony", spec); err != nil {
		t.Fatalf("init node c: %v\n%s", err, out)
	}
	cmdC := serve(cfgC)
	var logC strings.Builder
	cmdC.Stderr = &logC
	check(t, cmdC.Start())
	joining := func(nodes []fleetNodeStatus) bool {
		for _, n := range nodes {
			if n.Node == "c" && n.Heartbeat != nil && n.Heartbeat.State == "joining" {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if nodes, _ := fleetStatus(t, cfgA); joining(nodes) {
			break
		}
		if time.Now().After(deadline) {
			_ = cmdC.Process.Kill()
			t.Fatalf("node c never showed as joining in fleet status")
		}
	}
	check(t, cmdC.Process.Signal(syscall.SIGTERM))
	if err := cmdC.Wait(); err != nil {
		t.Errorf("node c stopped while joining: %v\n%s", err, logC.String())
	}

	// A node that stops withdraws its heartbeat.
	db.stop()
	nodes, out2 := fleetStatus(t, cfgA)
	if len(nodes) != 3 || nodes[1].Node != "b" || nodes[1].Heartbeat != nil || nodes[2].Heartbeat != nil {
		t.Errorf("fleet status after node b stopped:\n%s", out2)
	}

	// Node b erased (init --overwrite): its own records leave the shared
	// store, the fleet's keys stay, and initialized again it is a new
	// node that joins.
	st, err := payhsmCmd("", "ceremony", "status", "--dev", "--config", cfgB)
	m := regexp.MustCompile(`Region main key KCV: ([0-9A-F]{6})`).FindStringSubmatch(st)
	if err != nil || m == nil {
		t.Fatalf("status of node b: %v\n%s", err, st)
	}
	out, err = payhsmCmd(approvals+"ERASE "+m[1]+"\n"+enrol, "ceremony", "init", "--overwrite", "--dev", "--config", cfgB, "--ceremony", spec)
	if err != nil || !strings.Contains(out, "records removed from the fleet's store") || !strings.Contains(out, "Profile default: held by the fleet (node a)") {
		t.Fatalf("init --overwrite of node b: %v\n%s", err, out)
	}
	nodes, out2 = fleetStatus(t, cfgA)
	for _, n := range nodes {
		if n.Node == "b" && len(n.Profiles) != 0 {
			t.Errorf("node b still has profile copies in the store after its erase:\n%s", out2)
		}
		if n.Node == "a" && len(n.Profiles) != 1 {
			t.Errorf("node a's copy went with node b's erase:\n%s", out2)
		}
	}
	if code := readyz(t, da.opsURL); code != http.StatusOK {
		t.Errorf("node a's /readyz after node b's erase: %d", code)
	}
}
