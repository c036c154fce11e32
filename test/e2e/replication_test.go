package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
)

// site is one payhsm site (region) of a replication test.
type site struct {
	region, dir, config string
	d                   *daemon
}

// replicationIdentity writes a self-signed ECDSA certificate and key for a
// site's replication channel and returns their paths and the certificate's
// SHA-256 fingerprint.
func replicationIdentity(t *testing.T, dir, name string) (certPath, keyPath, fingerprint string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	check(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	check(t, err)
	certPath, keyPath = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	check(t, os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	check(t, os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))
	sum := sha256.Sum256(der)
	return certPath, keyPath, hex.EncodeToString(sum[:])
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(t, err)
	addr := ln.Addr().String()
	check(t, ln.Close())
	return addr
}

// shareProfile gives appliance to the profile main key of appliance from
// (TR-34 two-pass between their device identities, dual control on both).
func shareProfile(t *testing.T, from, to, profile string) {
	t.Helper()
	files := t.TempDir()
	krdCert, nonceFile, token := filepath.Join(files, "krd.pem"), filepath.Join(files, "nonce.hex"), filepath.Join(files, "pmk.tr34")
	if out, err := runCeremony(t, to, "", "krd-request", "--cert-out", krdCert, "--nonce-out", nonceFile); err != nil {
		t.Fatalf("krd-request: %v\n%s", err, out)
	}
	nonce, err := os.ReadFile(nonceFile)
	check(t, err)
	if out, err := runCeremony(t, from, approveAndConfirm, "export-main-key", "--profile", profile, "--krd", krdCert, "--nonce", string(nonce), "--out", token); err != nil {
		t.Fatalf("export-main-key: %v\n%s", err, out)
	}
	if out, err := runCeremony(t, to, approveAndConfirm, "import-main-key", "--profile", profile, "--kdh", token+".kdh.pem", "--token", token); err != nil {
		t.Fatalf("import-main-key: %v\n%s", err, out)
	}
}

// twoSites initializes the appliances of two sites, east (us-east-1;
// profiles default and lmk01) and west (us-west-2; profile default), gives
// west east's lmk01 main key through the TR-34 main-key sync, and returns
// them with a directory for their configuration files.
func twoSites(t *testing.T) (east, west *site, files string) {
	t.Helper()
	s, files := newSites(t, "us-east-1", "us-west-2")
	return s[0], s[1], files
}

// newSites initializes the appliances of sites in regions: the first with
// profiles default and lmk01, the others with profile default and the
// first's lmk01 main key (TR-34 main-key sync). It returns them and a
// directory for their configuration files.
func newSites(t *testing.T, regions ...string) ([]*site, string) {
	t.Helper()
	var sites []*site
	for i, r := range regions {
		s := &site{region: r, dir: t.TempDir()}
		if i == 0 {
			initAppliance(t, s.dir, `{"name":"default"},{"name":"lmk01"}`)
		} else {
			initAppliance(t, s.dir, `{"name":"default"}`)
			shareProfile(t, sites[0].dir, s.dir, "lmk01")
		}
		sites = append(sites, s)
	}
	return sites, t.TempDir()
}

// writeConfig writes the site's configuration (profile lmk01, replication
// listening on listen with the identity cert/key, retrying every 200ms, to
// peers) into files.
func (s *site) writeConfig(t *testing.T, files, listen, cert, key string, peers []map[string]string) {
	t.Helper()
	cfg := map[string]any{"dataDir": s.dir, "region": s.region, "profile": "lmk01",
		"replication": map[string]any{"listen": listen, "tlsCert": cert, "tlsKey": key, "retryInterval": "200ms", "peers": peers}}
	b, err := json.Marshal(cfg)
	check(t, err)
	s.config = filepath.Join(files, s.region+".json")
	check(t, os.WriteFile(s.config, b, 0o600))
}

func (s *site) start(t *testing.T) {
	t.Helper()
	s.startWith(t, exec.Command(binPath))
}

// startWith starts the site's daemon from cmd (its binary and environment;
// the serve arguments are added).
func (s *site) startWith(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	cmd.Args = append(cmd.Args, "serve", "--dev", "--config", s.config, "--http-addr", "127.0.0.1:0", "--host-addr", "127.0.0.1:0")
	s.d = startDaemonCmd(t, cmd)
	s.d.dir = s.dir
	s.d.keyID, s.d.secret = readCreds(t, filepath.Join(s.dir, "credentials"))
}

// kill ends the site's daemon with SIGKILL (no drain, no close).
func (s *site) kill(t *testing.T) {
	t.Helper()
	check(t, s.d.cmd.Process.Kill())
	if err := <-s.d.exited; err == nil {
		t.Fatal("the killed daemon exited cleanly")
	}
}

func (s *site) client() *pc.Client {
	return pc.New(pc.Options{Region: s.region, BaseEndpoint: aws.String(s.d.httpURL),
		Credentials: credentials.NewStaticCredentialsProvider(s.d.keyID, s.d.secret, ""), RetryMaxAttempts: 1})
}

// data sends a SigV4-signed data-plane request in the site's region.
func (s *site) data(t *testing.T, path string, body any) (int, map[string]any) {
	t.Helper()
	status, rb := s.dataRaw(t, path, body)
	var m map[string]any
	_ = json.Unmarshal(rb, &m)
	return status, m
}

// dataRaw is data returning the response body as it came.
func (s *site) dataRaw(t *testing.T, path string, body any) (int, []byte) {
	t.Helper()
	b, err := json.Marshal(body)
	check(t, err)
	req, _ := http.NewRequest(http.MethodPost, s.d.httpURL+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	check(t, v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: s.d.keyID, SecretAccessKey: s.d.secret},
		req, sha256Hex(b), "payment-cryptography", s.region, time.Now()))
	resp, err := http.DefaultClient.Do(req)
	check(t, err)
	rb, err := io.ReadAll(resp.Body)
	check(t, err)
	check(t, resp.Body.Close())
	return resp.StatusCode, rb
}

// waitFor polls cond every 20ms until it holds or timeout passes, and
// returns how long it took.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func inRegion(arn, region string) string {
	parts := strings.SplitN(arn, ":", 5)
	parts[3] = region
	return strings.Join(parts, ":")
}

// TestMultiRegionReplication runs two sites on loopback, us-east-1 (primary)
// and us-west-2, sharing the lmk01 profile main key through the TR-34 sync,
// driven by the AWS SDK and the AWS CLI: the guide's replication examples,
// identical answers at both sites, the read-only replica, propagation of the
// primary's changes with a measured bound, a peer down (and the primary
// SIGKILLed right after answering) catching up, a wrongly pinned peer
// refused with nothing sent, and region removal deleting the replica.
func TestMultiRegionReplication(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	east, west, files := twoSites(t)
	eCert, eKey, eFP := replicationIdentity(t, files, "east")
	wCert, wKey, wFP := replicationIdentity(t, files, "west")
	_, _, rogueFP := replicationIdentity(t, files, "rogue")
	eAddr, wAddr := freeAddr(t), freeAddr(t)
	// eu-west-1 is "at" the us-west-2 daemon's endpoint, pinned to another
	// certificate: the channel must refuse it.
	east.writeConfig(t, files, eAddr, eCert, eKey, []map[string]string{
		{"region": "us-west-2", "endpoint": wAddr, "certificateSha256": wFP},
		{"region": "eu-west-1", "endpoint": wAddr, "certificateSha256": rogueFP}})
	west.writeConfig(t, files, wAddr, wCert, wKey, []map[string]string{{"region": "us-east-1", "endpoint": eAddr, "certificateSha256": eFP}})
	east.start(t)
	west.start(t)
	ec, wc := east.client(), west.client()

	// --- The guide's examples through the AWS CLI (site = --region). ---
	var cliKeyARN string
	if _, err := exec.LookPath("aws"); err == nil {
		cli := func(s *site, args ...string) (map[string]any, string, error) {
			cmd := exec.Command("aws", append([]string{"payment-cryptography", "--endpoint-url", s.d.httpURL, "--region", s.region, "--output", "json"}, args...)...)
			cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+s.d.keyID, "AWS_SECRET_ACCESS_KEY="+s.d.secret, "AWS_MAX_ATTEMPTS=1",
				"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var m map[string]any
			_ = json.Unmarshal(stdout.Bytes(), &m)
			return m, stderr.String(), err
		}
		m, stderr, err := cli(east, "get-default-key-replication-regions")
		if err != nil || fmt.Sprint(m["EnabledReplicationRegions"]) != "[]" {
			t.Fatalf("get-default-key-replication-regions: %v %v %s", m, err, stderr)
		}
		m, stderr, err = cli(east, "enable-default-key-replication-regions", "--replication-regions", "us-west-2")
		if err != nil || fmt.Sprint(m["EnabledReplicationRegions"]) != "[us-west-2]" {
			t.Fatalf("enable-default-key-replication-regions: %v %v %s", m, err, stderr)
		}
		// The guide's create-key example, replicating to a region this site
		// does not know: a clear ValidationException.
		guideKey := []string{"create-key", "--exportable", "--key-attributes",
			"KeyUsage=TR31_B0_BASE_DERIVATION_KEY,KeyClass=SYMMETRIC_KEY,KeyAlgorithm=TDES_3KEY,KeyModesOfUse={DeriveKey=true}"}
		_, stderr, err = cli(east, append(guideKey, "--replication-regions", "us-east-2")...)
		if err == nil || !strings.Contains(stderr, "ValidationException") || !strings.Contains(stderr, "us-east-2 is not a replication peer") {
			t.Fatalf("create-key to an unconfigured region: %v %s", err, stderr)
		}
		m, stderr, err = cli(east, append(guideKey, "--replication-regions", "us-west-2")...)
		if err != nil {
			t.Fatalf("create-key --replication-regions: %v %s", err, stderr)
		}
		k := m["Key"].(map[string]any)
		cliKeyARN = k["KeyArn"].(string)
		if k["MultiRegionKeyType"] != "PRIMARY" || k["PrimaryRegion"] != "us-east-1" || k["UsingDefaultReplicationRegions"] != false {
			t.Fatalf("create-key: %v", k)
		}
		m, stderr, err = cli(east, "disable-default-key-replication-regions", "--replication-regions", "us-west-2")
		if err != nil || fmt.Sprint(m["EnabledReplicationRegions"]) != "[]" {
			t.Fatalf("disable-default-key-replication-regions: %v %v %s", m, err, stderr)
		}
	} else {
		t.Log("the AWS CLI is not installed: its examples are skipped")
	}

	// --- A replicated key gives identical answers at both sites. ---
	created, err := ec.CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(true), ReplicationRegions: []string{"us-west-2"},
		KeyAttributes: &types.KeyAttributes{KeyUsage: types.KeyUsageTr31C0CardVerificationKey, KeyClass: types.KeyClassSymmetricKey,
			KeyAlgorithm: types.KeyAlgorithmTdes2key, KeyModesOfUse: &types.KeyModesOfUse{Generate: true, Verify: true}},
		Tags: []types.Tag{{Key: aws.String("app"), Value: aws.String("issuing")}}})
	check(t, err)
	cvk := created.Key
	if cvk.MultiRegionKeyType != types.MultiRegionKeyTypePrimary || aws.ToString(cvk.PrimaryRegion) != "us-east-1" ||
		cvk.ReplicationStatus["us-west-2"].Status == "" {
		t.Fatalf("CreateKey: type %q primary %q status %v", cvk.MultiRegionKeyType, aws.ToString(cvk.PrimaryRegion), cvk.ReplicationStatus)
	}
	cvkEast, cvkWest := aws.ToString(cvk.KeyArn), inRegion(aws.ToString(cvk.KeyArn), "us-west-2")
	took := waitFor(t, 10*time.Second, "the replica appears", func() bool {
		_, err := wc.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(cvkWest)})
		return err == nil
	})
	t.Logf("replica created %v after CreateKey answered", took)
	waitFor(t, 5*time.Second, "the primary reports SYNCHRONIZED", func() bool {
		g, err := ec.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(cvkEast)})
		return err == nil && g.Key.ReplicationStatus["us-west-2"].Status == types.KeyReplicationStateSynchronized
	})
	rep, err := wc.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(cvkWest)})
	check(t, err)
	if rep.Key.MultiRegionKeyType != types.MultiRegionKeyTypeReplica || aws.ToString(rep.Key.PrimaryRegion) != "us-east-1" ||
		aws.ToString(rep.Key.KeyCheckValue) != aws.ToString(cvk.KeyCheckValue) {
		t.Fatalf("replica: type %q primary %q KCV %s (primary %s)", rep.Key.MultiRegionKeyType, aws.ToString(rep.Key.PrimaryRegion),
			aws.ToString(rep.Key.KeyCheckValue), aws.ToString(cvk.KeyCheckValue))
	}
	list, err := wc.ListKeys(ctx, &pc.ListKeysInput{})
	check(t, err)
	found := false
	for _, k := range list.Keys {
		if aws.ToString(k.KeyArn) == cvkWest {
			found = k.MultiRegionKeyType == types.MultiRegionKeyTypeReplica && aws.ToString(k.PrimaryRegion) == "us-east-1"
		}
	}
	if !found {
		t.Fatal("ListKeys at the replica site does not report the replica as REPLICA of us-east-1")
	}
	cvv := func(s *site, arn string) (int, map[string]any) {
		return s.data(t, "/cardvalidationdata/generate", map[string]any{"KeyIdentifier": arn, "PrimaryAccountNumber": "4123456789012345",
			"GenerationAttributes": map[string]any{"CardVerificationValue2": map[string]any{"CardExpiryDate": "1226"}}})
	}
	st1, onEast := cvv(east, cvkEast)
	st2, onWest := cvv(west, cvkWest)
	if st1 != 200 || st2 != 200 || onEast["ValidationData"] != onWest["ValidationData"] || onEast["KeyCheckValue"] != onWest["KeyCheckValue"] {
		t.Fatalf("CVV2 at us-east-1 %d %v, at us-west-2 %d %v", st1, onEast, st2, onWest)
	}
	macKey, err := ec.CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(false), ReplicationRegions: []string{"us-west-2"},
		KeyAttributes: &types.KeyAttributes{KeyUsage: types.KeyUsageTr31M7HmacKey, KeyClass: types.KeyClassSymmetricKey,
			KeyAlgorithm: types.KeyAlgorithmHmacSha256, KeyModesOfUse: &types.KeyModesOfUse{Generate: true, Verify: true}}})
	check(t, err)
	macEast, macWest := aws.ToString(macKey.Key.KeyArn), inRegion(aws.ToString(macKey.Key.KeyArn), "us-west-2")
	waitFor(t, 10*time.Second, "the MAC key's replica", func() bool {
		_, err := wc.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(macWest)})
		return err == nil
	})
	mac := func(s *site, arn string) (int, map[string]any) {
		return s.data(t, "/mac/generate", map[string]any{"KeyIdentifier": arn, "MessageData": "3132333435363738",
			"GenerationAttributes": map[string]any{"Algorithm": "HMAC_SHA256"}})
	}
	st1, m1 := mac(east, macEast)
	st2, m2 := mac(west, macWest)
	if st1 != 200 || st2 != 200 || m1["Mac"] != m2["Mac"] || m1["Mac"] == nil {
		t.Fatalf("MAC at us-east-1 %d %v, at us-west-2 %d %v", st1, m1, st2, m2)
	}
	// The host port of the replica site answers the same (CW, CVV, on the replica's key block).
	if cliKeyARN != "" {
		waitFor(t, 10*time.Second, "the CLI key's replica", func() bool {
			_, err := wc.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(inRegion(cliKeyARN, "us-west-2"))})
			return err == nil
		})
	}

	// --- The replica is read-only. ---
	if _, err := wc.StopKeyUsage(ctx, &pc.StopKeyUsageInput{KeyIdentifier: aws.String(cvkWest)}); apiErrorCode(err) != "ValidationException" ||
		!strings.Contains(err.Error(), "Replica Region key") {
		t.Errorf("StopKeyUsage on the replica: %v", err)
	}
	if _, err := wc.DeleteKey(ctx, &pc.DeleteKeyInput{KeyIdentifier: aws.String(cvkWest)}); apiErrorCode(err) != "ValidationException" {
		t.Errorf("DeleteKey on the replica: %v", err)
	}
	if _, err := wc.TagResource(ctx, &pc.TagResourceInput{ResourceArn: aws.String(cvkWest), Tags: []types.Tag{{Key: aws.String("x"), Value: aws.String("y")}}}); apiErrorCode(err) != "ValidationException" {
		t.Errorf("TagResource on the replica: %v", err)
	}
	if _, err := wc.AddKeyReplicationRegions(ctx, &pc.AddKeyReplicationRegionsInput{KeyIdentifier: aws.String(cvkWest), ReplicationRegions: []string{"us-east-1"}}); apiErrorCode(err) != "ValidationException" {
		t.Errorf("AddKeyReplicationRegions on the replica: %v", err)
	}
	tags, err := wc.ListTagsForResource(ctx, &pc.ListTagsForResourceInput{ResourceArn: aws.String(cvkWest)})
	if err != nil || len(tags.Tags) != 1 || aws.ToString(tags.Tags[0].Key) != "app" {
		t.Errorf("replica tags: %v %v", tags, err)
	}

	// --- Disabling the primary disables the replica, within a bound. ---
	_, err = ec.StopKeyUsage(ctx, &pc.StopKeyUsageInput{KeyIdentifier: aws.String(cvkEast)})
	check(t, err)
	took = waitFor(t, 5*time.Second, "the replica is disabled", func() bool {
		st, _ := cvv(west, cvkWest)
		return st != 200
	})
	t.Logf("MEASURED: StopKeyUsage on the primary reached the replica's data plane in %v", took)
	if g, _ := wc.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(cvkWest)}); g == nil || aws.ToBool(g.Key.Enabled) {
		t.Fatal("the replica is still enabled")
	}
	_, err = ec.StartKeyUsage(ctx, &pc.StartKeyUsageInput{KeyIdentifier: aws.String(cvkEast)})
	check(t, err)
	waitFor(t, 5*time.Second, "the replica is enabled again", func() bool {
		st, _ := cvv(west, cvkWest)
		return st == 200
	})

	// --- A wrongly pinned peer is refused and nothing is sent. ---
	_, err = ec.AddKeyReplicationRegions(ctx, &pc.AddKeyReplicationRegionsInput{KeyIdentifier: aws.String(macEast), ReplicationRegions: []string{"eu-west-1"}})
	check(t, err)
	var failedMsg string
	waitFor(t, 5*time.Second, "eu-west-1 FAILED", func() bool {
		g, err := ec.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(macEast)})
		if err != nil {
			return false
		}
		st := g.Key.ReplicationStatus["eu-west-1"]
		failedMsg = aws.ToString(st.StatusMessage)
		return st.Status == types.KeyReplicationStateFailed
	})
	if !strings.Contains(failedMsg, "pinned fingerprint") || !strings.Contains(failedMsg, "nothing was sent") {
		t.Errorf("eu-west-1 status message %q", failedMsg)
	}
	// Adding a region changes the key's replication state, which the primary
	// sends to its existing replica (us-west-2) as well: count what that site
	// applies only once its count has settled (unchanged for a second).
	before, stable := -1, time.Now()
	waitFor(t, 10*time.Second, "the replica site's applied snapshots settle", func() bool {
		if n := strings.Count(west.d.logs.String(), `"replica applied"`); n != before {
			before, stable = n, time.Now()
		}
		return time.Since(stable) >= time.Second
	})
	// And the replica site refuses a client whose certificate it does not pin.
	rogueCert, rogueKey, _ := replicationIdentity(t, files, "rogue-client")
	pair, err := tls.LoadX509KeyPair(rogueCert, rogueKey)
	check(t, err)
	rogue := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{pair}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}}} //nolint:gosec // G402: the test is the rogue peer
	resp, err := rogue.Post("https://"+wAddr+"/payhsm/replication/v1/apply", "application/json", strings.NewReader(`{"keyId":"x"}`))
	if err == nil {
		_ = resp.Body.Close()
		t.Errorf("the replica site accepted an unpinned client: %s", resp.Status)
	}
	if after := strings.Count(west.d.logs.String(), `"replica applied"`); after != before {
		t.Errorf("the replica site applied %d snapshots while only refused peers talked to it", after-before)
	}
	_, err = ec.RemoveKeyReplicationRegions(ctx, &pc.RemoveKeyReplicationRegionsInput{KeyIdentifier: aws.String(macEast), ReplicationRegions: []string{"eu-west-1"}})
	check(t, err)

	// --- Peer down: pending with a reason; the primary is SIGKILLed right
	// after answering; both come back and the replicas appear. ---
	west.d.stop()
	newKey := func() string {
		out, err := ec.CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(true), ReplicationRegions: []string{"us-west-2"},
			KeyAttributes: &types.KeyAttributes{KeyUsage: types.KeyUsageTr31C0CardVerificationKey, KeyClass: types.KeyClassSymmetricKey,
				KeyAlgorithm: types.KeyAlgorithmTdes2key, KeyModesOfUse: &types.KeyModesOfUse{Generate: true, Verify: true}}})
		check(t, err)
		return aws.ToString(out.Key.KeyArn)
	}
	down := newKey()
	var downMsg string
	waitFor(t, 5*time.Second, "the status shows the peer down", func() bool {
		g, err := ec.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(down)})
		if err != nil {
			return false
		}
		st := g.Key.ReplicationStatus["us-west-2"]
		downMsg = aws.ToString(st.StatusMessage)
		return st.Status == types.KeyReplicationStateInProgress && downMsg != ""
	})
	t.Logf("status while the peer is down: IN_PROGRESS %q", downMsg)
	if !strings.Contains(downMsg, "unreachable") {
		t.Errorf("status message %q", downMsg)
	}
	killed := newKey()
	east.kill(t) // right after the API answered: the outbox must survive
	east.start(t)
	west.start(t)
	ec, wc = east.client(), west.client()
	took = waitFor(t, 15*time.Second, "the replicas appear after the peer returns", func() bool {
		for _, arn := range []string{down, killed} {
			if _, err := wc.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(inRegion(arn, "us-west-2"))}); err != nil {
				return false
			}
		}
		return true
	})
	t.Logf("caught up %v after both sites restarted", took)
	st1, onEast = cvv(east, killed)
	st2, onWest = cvv(west, inRegion(killed, "us-west-2"))
	if st1 != 200 || st2 != 200 || onEast["ValidationData"] != onWest["ValidationData"] {
		t.Fatalf("CVV2 of the key replicated after a SIGKILL: %v / %v", onEast, onWest)
	}

	// --- Removing the region deletes the replica; deleting the primary
	// schedules the replica's deletion. ---
	out, err := ec.RemoveKeyReplicationRegions(ctx, &pc.RemoveKeyReplicationRegionsInput{KeyIdentifier: aws.String(cvkEast), ReplicationRegions: []string{"us-west-2"}})
	check(t, err)
	if st := out.Key.ReplicationStatus["us-west-2"].Status; st != types.KeyReplicationStateDeleteInProgress {
		t.Errorf("RemoveKeyReplicationRegions status %q", st)
	}
	waitFor(t, 10*time.Second, "the replica is deleted", func() bool {
		_, err := wc.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(cvkWest)})
		return apiErrorCode(err) == "ResourceNotFoundException"
	})
	_, err = ec.DeleteKey(ctx, &pc.DeleteKeyInput{KeyIdentifier: aws.String(macEast), DeleteKeyInDays: aws.Int32(3)})
	check(t, err)
	waitFor(t, 10*time.Second, "the replica is pending deletion", func() bool {
		g, err := wc.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(macWest)})
		return err == nil && g.Key.KeyState == types.KeyStateDeletePending
	})
}
