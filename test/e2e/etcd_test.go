package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"

	"payhsm/internal/etcdtest"
)

// TestDaemonOnEtcd: the daemon configured with keystore.engine etcd keeps
// its whole key store (custody's records included) under the prefix of a
// real 3-member cluster, not in the data directory; keys and aliases
// created through the AWS API survive a SIGKILL of the daemon and of the
// cluster's leader, and the daemon goes on serving writes while the leader
// is down.
func TestDaemonOnEtcd(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{Args: []string{"--unsafe-no-fsync"}})
	dir := t.TempDir()
	cfgPath := filepath.Join(t.TempDir(), "payhsm.json")
	cfg, err := json.Marshal(map[string]any{
		"dataDir":  dir,
		"keystore": map[string]any{"engine": "etcd", "endpoints": c.Endpoints(), "prefix": "/payhsm/e2e/", "requestTimeout": "10s"},
		"fleet":    map[string]any{"node": "solo"},
	})
	check(t, err)
	check(t, os.WriteFile(cfgPath, cfg, 0o600))
	start := func() *daemon {
		d := startDaemonArgs(t, "serve", "--dev", "--config", cfgPath, "--http-addr", "127.0.0.1:0", "--host-addr", "127.0.0.1:0")
		d.dir = dir
		d.keyID, d.secret = readCreds(t, filepath.Join(dir, "credentials"))
		return d
	}
	d := start()
	ctx := context.Background()
	a := attrs(types.KeyUsageTr31K0KeyEncryptionKey, types.KeyAlgorithmTdes3key, types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true})
	var keys []string
	create := func(c *pc.Client) error {
		out, err := c.CreateKey(ctx, &pc.CreateKeyInput{KeyAttributes: a, Exportable: aws.Bool(true)})
		if err != nil {
			return err
		}
		arn := *out.Key.KeyArn
		if _, err := c.CreateAlias(ctx, &pc.CreateAliasInput{AliasName: aws.String("alias/etcd-" + arn[len(arn)-16:]), KeyArn: out.Key.KeyArn}); err != nil {
			return err
		}
		keys = append(keys, arn)
		return nil
	}
	for range 5 {
		check(t, create(d.client()))
	}
	if _, err := os.Stat(filepath.Join(dir, "keystore")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the daemon made a Pebble key store in the data directory: %v", err)
	}

	// The Raft leader dies: writes go on (a client may retry once).
	leader := c.Leader()
	c.Kill(leader)
	failed := 0
	for range 5 {
		if err := create(d.client()); err != nil {
			failed++
			t.Logf("a write while the leader was down: %v", err)
			check(t, create(d.client()))
		}
	}
	if failed > 1 {
		t.Errorf("%d of 5 writes failed while one of three members was down", failed)
	}
	c.Restart(leader)

	// SIGKILL the daemon; a new one finds everything.
	check(t, d.cmd.Process.Signal(syscall.SIGKILL))
	select {
	case err := <-d.exited:
		t.Logf("daemon killed: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not die")
	}
	d = start()
	cl := d.client()
	for _, arn := range keys {
		if _, err := cl.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(arn)}); err != nil {
			t.Errorf("key %s after restart: %v", arn, err)
		}
		if al, err := cl.GetAlias(ctx, &pc.GetAliasInput{AliasName: aws.String("alias/etcd-" + arn[len(arn)-16:])}); err != nil || aws.ToString(al.Alias.KeyArn) != arn {
			t.Errorf("alias of %s after restart: %v", arn, err)
		}
	}
}
