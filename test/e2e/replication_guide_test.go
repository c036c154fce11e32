package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestReplicationGuideExamples runs the user guide's Multi-Region key
// replication examples ("Enabling/Disabling Multi-Region key replication",
// "Creating a 3KEY TDES base derivation key") with the AWS CLI, as written,
// against three sites on loopback — us-east-1, us-east-2 (Ohio) and
// us-west-2 (Oregon), each peer of the others — adding only each site's
// --endpoint-url and credentials, and checks the documented response
// shapes. One example cannot run as printed: add-key-replication-regions
// and remove-key-replication-regions name a key in us-east-2 and replicate
// it to us-east-2, its own region (refused: a key is not replicated to its
// own region, checked below); they run on a us-east-1 key instead, which is
// what their text says ("enabled in US East (Ohio)").
func TestReplicationGuideExamples(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("aws"); err != nil {
		t.Skip("the AWS CLI is not installed")
	}
	sites, files := newSites(t, "us-east-1", "us-east-2", "us-west-2")
	type ident struct{ cert, key, fp, addr string }
	ids := map[string]ident{}
	for _, s := range sites {
		c, k, fp := replicationIdentity(t, files, s.region)
		ids[s.region] = ident{c, k, fp, freeAddr(t)}
	}
	byRegion := map[string]*site{}
	for _, s := range sites {
		var peers []map[string]string
		for _, o := range sites {
			if o != s {
				peers = append(peers, map[string]string{"region": o.region, "endpoint": ids[o.region].addr, "certificateSha256": ids[o.region].fp})
			}
		}
		id := ids[s.region]
		s.writeConfig(t, files, id.addr, id.cert, id.key, peers)
		s.start(t)
		byRegion[s.region] = s
	}
	// aws runs the AWS CLI against the site of region (its endpoint and
	// credentials; the arguments are the guide's).
	aws := func(region string, args ...string) (map[string]any, string, error) {
		t.Helper()
		s := byRegion[region]
		cmd := exec.Command("aws", append([]string{"payment-cryptography"}, append(args, "--endpoint-url", s.d.httpURL, "--output", "json")...)...)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+s.d.keyID, "AWS_SECRET_ACCESS_KEY="+s.d.secret, "AWS_MAX_ATTEMPTS=1",
			"AWS_DEFAULT_REGION="+region, "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var m map[string]any
		if err == nil {
			if jerr := json.Unmarshal(stdout.Bytes(), &m); jerr != nil && stdout.Len() > 0 {
				t.Fatalf("aws %s: output is not JSON: %v\n%s", args[0], jerr, stdout.Bytes())
			}
		}
		return m, stderr.String(), err
	}
	must := func(region string, args ...string) map[string]any {
		t.Helper()
		m, stderr, err := aws(region, args...)
		if err != nil {
			t.Fatalf("aws %s (%s): %v\n%s", strings.Join(args, " "), region, err, stderr)
		}
		return m
	}
	regionsOf := func(m map[string]any) string { return fmt.Sprint(m["EnabledReplicationRegions"]) }
	keyOf := func(m map[string]any) map[string]any {
		t.Helper()
		k, ok := m["Key"].(map[string]any)
		if !ok {
			t.Fatalf("no Key in %v", m)
		}
		return k
	}
	status := func(k map[string]any, region string) string {
		rs, _ := k["ReplicationStatus"].(map[string]any)
		st, _ := rs[region].(map[string]any)
		s, _ := st["Status"].(string)
		return s
	}
	getKey := func(region, arn string) (map[string]any, error) {
		m, stderr, err := aws(region, "get-key", "--key-identifier", arn)
		if err != nil {
			return nil, fmt.Errorf("%v: %s", err, stderr)
		}
		return keyOf(m), nil
	}
	waitStatus := func(region, arn, replica, want string) {
		t.Helper()
		waitFor(t, 20*time.Second, arn+" "+replica+" "+want, func() bool {
			k, err := getKey(region, arn)
			return err == nil && status(k, replica) == want
		})
	}

	// A key created before any replication is enabled (it stays regional
	// when the defaults are enabled).
	own := keyOf(must("us-east-1", "create-key", "--exportable", "--key-attributes",
		"KeyAlgorithm=TDES_2KEY,KeyUsage=TR31_C0_CARD_VERIFICATION_KEY,KeyClass=SYMMETRIC_KEY,KeyModesOfUse={Generate=true,Verify=true}"))
	ownArn := own["KeyArn"].(string)
	if own["MultiRegionKeyType"] != nil {
		t.Fatalf("create-key without replication: %v", own)
	}
	// get-default-key-replication-regions: none yet.
	if m := must("us-east-1", "get-default-key-replication-regions"); regionsOf(m) != "[]" {
		t.Fatalf("get-default-key-replication-regions: %v", m)
	}
	// "Enabling ... For AWS Region" (run at us-east-1).
	if m := must("us-east-1", "enable-default-key-replication-regions", "--replication-regions", "us-east-2", "us-west-2"); regionsOf(m) != "[us-east-2 us-west-2]" {
		t.Fatalf("enable-default-key-replication-regions: %v", m)
	}
	if m := must("us-east-1", "get-default-key-replication-regions"); regionsOf(m) != "[us-east-2 us-west-2]" {
		t.Fatalf("get-default-key-replication-regions after enabling: %v", m)
	}
	if k, err := getKey("us-east-1", ownArn); err != nil || k["MultiRegionKeyType"] != nil {
		t.Fatalf("an existing key after enabling the defaults: %v %v", k, err)
	}
	// The CreateKey note: with defaults enabled, a key created without
	// --replication-regions is a PRK replicated to them.
	dflt := keyOf(must("us-east-1", "create-key", "--exportable", "--key-attributes",
		"KeyAlgorithm=TDES_2KEY,KeyUsage=TR31_C0_CARD_VERIFICATION_KEY,KeyClass=SYMMETRIC_KEY,KeyModesOfUse={Generate=true,Verify=true}"))
	if dflt["MultiRegionKeyType"] != "PRIMARY" || dflt["PrimaryRegion"] != "us-east-1" || dflt["UsingDefaultReplicationRegions"] != true ||
		status(dflt, "us-east-2") == "" || status(dflt, "us-west-2") == "" {
		t.Fatalf("create-key with default regions: %v", dflt)
	}
	dfltArn := dflt["KeyArn"].(string)
	waitStatus("us-east-1", dfltArn, "us-east-2", "SYNCHRONIZED")
	waitStatus("us-east-1", dfltArn, "us-west-2", "SYNCHRONIZED")

	// "Creating a 3KEY TDES base derivation key", as printed (at us-west-2).
	b0 := keyOf(must("us-west-2", "create-key", "--exportable", "--key-attributes",
		"KeyUsage=TR31_B0_BASE_DERIVATION_KEY,KeyClass=SYMMETRIC_KEY,KeyAlgorithm=TDES_3KEY,KeyModesOfUse={NoRestrictions=true}",
		"--replication-regions", "us-east-2", "--region", "us-west-2"))
	attrs, _ := b0["KeyAttributes"].(map[string]any)
	for name, want := range map[string]any{"Exportable": true, "Enabled": true, "KeyCheckValueAlgorithm": "ANSI_X9_24",
		"KeyOrigin": "AWS_PAYMENT_CRYPTOGRAPHY", "KeyState": "CREATE_COMPLETE", "MultiRegionKeyType": "PRIMARY", "PrimaryRegion": "us-west-2",
		"UsingDefaultReplicationRegions": false} {
		if b0[name] != want {
			t.Errorf("create-key (guide): %s = %v, want %v", name, b0[name], want)
		}
	}
	for _, name := range []string{"KeyArn", "KeyCheckValue", "CreateTimestamp", "UsageStartTimestamp"} {
		if b0[name] == nil {
			t.Errorf("create-key (guide): no %s", name)
		}
	}
	if attrs["KeyUsage"] != "TR31_B0_BASE_DERIVATION_KEY" || attrs["KeyAlgorithm"] != "TDES_3KEY" || attrs["KeyClass"] != "SYMMETRIC_KEY" {
		t.Errorf("create-key (guide): KeyAttributes %v", attrs)
	}
	b0Arn := b0["KeyArn"].(string)
	if !strings.HasPrefix(b0Arn, "arn:aws:payment-cryptography:us-west-2:") || !slices.Contains([]string{"IN_PROGRESS", "SYNCHRONIZED"}, status(b0, "us-east-2")) {
		t.Fatalf("create-key (guide): ARN %s, us-east-2 status %q", b0Arn, status(b0, "us-east-2"))
	}
	waitStatus("us-west-2", b0Arn, "us-east-2", "SYNCHRONIZED")
	rep, err := getKey("us-east-2", inRegion(b0Arn, "us-east-2"))
	if err != nil || rep["MultiRegionKeyType"] != "REPLICA" || rep["PrimaryRegion"] != "us-west-2" || rep["KeyCheckValue"] != b0["KeyCheckValue"] {
		t.Fatalf("the guide's key at us-east-2: %v %v", rep, err)
	}

	// "Enabling ... For specific AWS Payment Cryptography keys": the key
	// created before the defaults were enabled.
	added := keyOf(must("us-east-1", "add-key-replication-regions", "--key-identifier", ownArn, "--replication-regions", "us-east-2"))
	if added["MultiRegionKeyType"] != "PRIMARY" || status(added, "us-east-2") == "" || added["UsingDefaultReplicationRegions"] != false {
		t.Fatalf("add-key-replication-regions: %v", added)
	}
	waitStatus("us-east-1", ownArn, "us-east-2", "SYNCHRONIZED")
	// The example as printed: a us-east-2 key replicated to us-east-2.
	ohio := keyOf(must("us-east-2", "create-key", "--exportable", "--key-attributes",
		"KeyAlgorithm=TDES_2KEY,KeyUsage=TR31_C0_CARD_VERIFICATION_KEY,KeyClass=SYMMETRIC_KEY,KeyModesOfUse={Generate=true,Verify=true}"))
	if _, stderr, err := aws("us-east-2", "add-key-replication-regions", "--key-identifier", ohio["KeyArn"].(string), "--replication-regions", "us-east-2"); err == nil ||
		!strings.Contains(stderr, "ValidationException") || !strings.Contains(stderr, "own region") {
		t.Errorf("add-key-replication-regions of a us-east-2 key to us-east-2: %v %s", err, stderr)
	}

	// "Disabling ... For AWS Region".
	if m := must("us-east-1", "disable-default-key-replication-regions", "--replication-regions", "us-east-2"); regionsOf(m) != "[us-west-2]" {
		t.Fatalf("disable-default-key-replication-regions: %v", m)
	}
	// Existing keys keep their replication.
	if k, err := getKey("us-east-1", dfltArn); err != nil || status(k, "us-east-2") != "SYNCHRONIZED" {
		t.Errorf("a key created with the defaults, after disabling us-east-2: %v %v", k, err)
	}
	// "Disabling ... For specific AWS Payment Cryptography keys".
	removed := keyOf(must("us-east-1", "remove-key-replication-regions", "--key-identifier", ownArn, "--replication-regions", "us-east-2"))
	if st := status(removed, "us-east-2"); st != "DELETE_IN_PROGRESS" {
		t.Errorf("remove-key-replication-regions: us-east-2 %q, want DELETE_IN_PROGRESS", st)
	}
	// "Replication region key deletions are eventually consistent."
	waitFor(t, 20*time.Second, "the replica at us-east-2 is deleted", func() bool {
		_, stderr, err := aws("us-east-2", "get-key", "--key-identifier", inRegion(ownArn, "us-east-2"))
		return err != nil && strings.Contains(stderr, "ResourceNotFoundException")
	})
	waitFor(t, 20*time.Second, "us-east-2 leaves the key's ReplicationStatus", func() bool {
		k, err := getKey("us-east-1", ownArn)
		return err == nil && k["ReplicationStatus"] == nil && k["MultiRegionKeyType"] == nil
	})
}
