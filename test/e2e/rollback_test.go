package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
)

// TestRollbackWhileStoppedThroughTheDaemon: a key's record copied while it
// was usable, StopKeyUsage, the daemon stopped, the old record put back
// (valid: it is a record the store wrote). After the restart the key is
// refused with the integrity answer on both front ends, another key serves
// on both, and payhsm keystore verify lists exactly that record.
func TestRollbackWhileStoppedThroughTheDaemon(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	d := startDaemon(t, dir)
	c := d.client()
	ctx := context.Background()
	cvkAttrs := attrs(types.KeyUsageTr31C0CardVerificationKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{Generate: true, Verify: true})
	victim := *createKey(t, c, cvkAttrs, true).KeyArn
	other := *createKey(t, c, cvkAttrs, true).KeyArn
	call := d.hostCaller(t)
	want := call("CW", "@"+other+";4123456789012345;8701101")
	if want.Error != "00" {
		t.Fatalf("CW: %s", want.Error)
	}
	d.stop()
	var old []byte
	rec := "k/" + keyID(victim)
	editStore(t, dir, func(get func(string) []byte, _ func(string, []byte)) { old = get(rec) })

	d = startDaemon(t, dir)
	c = d.client()
	if _, err := c.StopKeyUsage(ctx, &pc.StopKeyUsageInput{KeyIdentifier: aws.String(victim)}); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := cvvCall(t, d, victim); st == 200 {
		t.Fatal("a stopped key generated a CVV2")
	}
	d.stop()
	editStore(t, dir, func(get func(string) []byte, set func(string, []byte)) {
		if bytes.Equal(get(rec), old) {
			t.Fatal("StopKeyUsage did not change the record")
		}
		set(rec, old) // StopKeyUsage undone with a genuine older copy
	})

	d = startDaemon(t, dir)
	c = d.client()
	call = d.hostCaller(t)
	if _, err := c.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(victim)}); !isIntegrityError(err) {
		t.Errorf("GetKey of the rolled-back key: %v", err)
	}
	if st, typ, msg := cvvCall(t, d, victim); st != 500 || typ != "InternalServerException" || msg != integrityMessage {
		t.Errorf("CVV2 with the rolled-back key: %d %s %q", st, typ, msg)
	}
	if r := call("CW", "@"+victim+";4123456789012345;8701101"); r.Error != integrityCode {
		t.Errorf("CW with the rolled-back key: %s", r.Error)
	}
	if st, _, _ := cvvCall(t, d, other); st != 200 {
		t.Errorf("CVV2 with the other key: %d", st)
	}
	if r := call("CW", "@"+other+";4123456789012345;8701101"); r.Error != "00" || string(r.Fields) != string(want.Fields) {
		t.Errorf("CW with the other key: %s %q", r.Error, r.Fields)
	}
	if logs := d.logs.String(); !strings.Contains(logs, `"type":"key","record":"`+keyID(victim)) || !strings.Contains(logs, "older than revision") {
		t.Errorf("no error log naming the record:\n%s", logs)
	}
	listed := []string{"key " + keyID(victim)}
	if code, got, out := verifyCLI(t, dir); code != 1 || !slices.Equal(got, listed) || !strings.Contains(out, "through the daemon") {
		t.Errorf("keystore verify through the daemon: exit %d, %v, want %v\n%s", code, got, listed, out)
	}
	d.stop()
	if code, got, out := verifyCLI(t, dir); code != 1 || !slices.Equal(got, listed) || !strings.Contains(out, "offline") {
		t.Errorf("keystore verify offline: exit %d, %v, want %v\n%s", code, got, listed, out)
	}
}

// TestRestoredBackupThroughTheDaemon: the key store restored from a copy
// taken while the daemon was stopped, after keys changed since (one
// stopped, one created). The daemon refuses to start with one line saying
// the store is older than the token and how to accept it; payhsm keystore
// accept-restore accepts it (and the audit log says so); the daemon then
// serves the store as the backup has it.
func TestRestoredBackupThroughTheDaemon(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	d := startDaemon(t, dir)
	c := d.client()
	ctx := context.Background()
	cvkAttrs := attrs(types.KeyUsageTr31C0CardVerificationKey, types.KeyAlgorithmTdes2key, types.KeyModesOfUse{Generate: true, Verify: true})
	old := *createKey(t, c, cvkAttrs, true).KeyArn
	d.stop()
	backup := filepath.Join(t.TempDir(), "keystore")
	check(t, os.CopyFS(backup, os.DirFS(filepath.Join(dir, "keystore"))))

	d = startDaemon(t, dir)
	c = d.client()
	if _, err := c.StopKeyUsage(ctx, &pc.StopKeyUsageInput{KeyIdentifier: aws.String(old)}); err != nil {
		t.Fatal(err)
	}
	later := *createKey(t, c, cvkAttrs, true).KeyArn
	d.stop()
	check(t, os.RemoveAll(filepath.Join(dir, "keystore")))
	check(t, os.CopyFS(filepath.Join(dir, "keystore"), os.DirFS(backup)))

	out, err := exec.Command(binPath, "serve", "--dev", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--host-addr", "127.0.0.1:0").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(string(out), "older than this appliance's token (restored from a backup?)") ||
		!strings.Contains(string(out), "payhsm keystore accept-restore --dev --data-dir "+dir) {
		t.Fatalf("the daemon on a restored store: %v\n%s", err, out)
	}
	if code, _, vout := verifyCLI(t, dir); code != 1 || !strings.Contains(vout, "failed") {
		t.Errorf("keystore verify on the restored store: exit %d\n%s", code, vout)
	}

	cmd := exec.Command(binPath, "keystore", "accept-restore", "--dev", "--data-dir", dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || !strings.Contains(stderr.String(), "the key store is accepted as it is") {
		t.Fatalf("accept-restore: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "journal-head") {
		t.Errorf("accept-restore did not list what it accepted:\n%s", stdout.String())
	}
	audit, err := os.ReadFile(filepath.Join(dir, "audit", "audit.log"))
	if err != nil || !strings.Contains(string(audit), `"operation":"keystore-accept-restore"`) || !strings.Contains(string(audit), `"outcome":"ok"`) {
		t.Errorf("audit log: %v\n%s", err, audit)
	}

	d = startDaemon(t, dir)
	c = d.client()
	if st, _, _ := cvvCall(t, d, old); st != 200 { // usable again: the backup has it so
		t.Errorf("the restored key: %d", st)
	}
	if _, err := c.GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(later)}); !isErr[*types.ResourceNotFoundException](err) {
		t.Errorf("a key created after the backup: %v", err)
	}
	d.stop()
	if code, got, vout := verifyCLI(t, dir); code != 0 || len(got) != 0 {
		t.Errorf("keystore verify after accepting: exit %d %v\n%s", code, got, vout)
	}
}
