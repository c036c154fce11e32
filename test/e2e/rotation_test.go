package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
)

const approvalsInput = "alice\nalice-passphrase\nbob\nbob-passphrase!\n"

// cvv2 generates a CVV2 with key arn; ok is false on any failure (the daemon may be down).
func cvv2(t testing.TB, d *daemon, arn string) (string, bool) {
	status, body, _, err := d.dataDo("/cardvalidationdata/generate", map[string]any{
		"KeyIdentifier": arn, "PrimaryAccountNumber": "4123456789012345",
		"GenerationAttributes": map[string]any{"CardVerificationValue2": map[string]any{"CardExpiryDate": "1226"}}})
	v, _ := body["ValidationData"].(string)
	return v, err == nil && status == 200 && v != ""
}

// TestRotationCrashUnderLoad rotates the profile main key online through the
// admin socket while CVVs are being generated, kills the daemon with SIGKILL
// in the middle of the rotation, restarts it, resumes the rotation, and
// checks that every key is still there and gives the same CVV.
func TestRotationCrashUnderLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	spec := filepath.Join(t.TempDir(), "ceremony.json")
	check(t, os.WriteFile(spec, []byte(`{"custodians":["alice","bob"],"profiles":[{"name":"default"}]}`), 0o600))
	if out, err := runCeremony(t, dir, "alice-passphrase\nalice-passphrase\nbob-passphrase!\nbob-passphrase!\n", "init", "--ceremony", spec); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	d := startDaemon(t, dir)
	c := d.client()
	const n = 400
	arns := make([]string, n)
	want := make([]string, n)
	for i := range arns {
		k, err := c.CreateKey(context.Background(), &pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: &types.KeyAttributes{
			KeyUsage: types.KeyUsageTr31C0CardVerificationKey, KeyClass: types.KeyClassSymmetricKey, KeyAlgorithm: types.KeyAlgorithmTdes2key,
			KeyModesOfUse: &types.KeyModesOfUse{Generate: true, Verify: true}}})
		if err != nil {
			t.Fatal(err)
		}
		arns[i] = *k.Key.KeyArn
		v, ok := cvv2(t, d, arns[i])
		if !ok {
			t.Fatalf("CVV2 with %s failed", arns[i])
		}
		want[i] = v
	}
	_, before := ncKCV(t, d)

	// Load: CVV2 generation on random keys while the rotation runs.
	var stop atomic.Bool
	var served, failed atomic.Int64
	var wg sync.WaitGroup
	load := func(d *daemon) {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			if _, ok := cvv2(t, d, arns[i%n]); ok {
				served.Add(1)
			} else {
				failed.Add(1)
			}
		}
	}
	wg.Add(2)
	go load(d)
	go load(d)

	// Start the rotation online and kill the daemon once it is under way.
	rot := exec.Command(binPath, "ceremony", "rotate", "--dev", "--data-dir", dir, "--profile", "default")
	rot.Stdin = strings.NewReader(approvalsInput)
	if err := rot.Start(); err != nil {
		t.Fatal(err)
	}
	audit := filepath.Join(dir, "audit", "audit.log")
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(audit)
		if strings.Contains(string(b), `"outcome":"started"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotation did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(60 * time.Millisecond)
	check(t, d.cmd.Process.Signal(syscall.SIGKILL))
	if err := <-d.exited; err == nil {
		t.Error("the killed daemon exited cleanly")
	}
	// The rotation loses its daemon half-way and fails; the status below
	// shows where it stopped.
	_ = rot.Wait()
	stop.Store(true)
	wg.Wait()
	// The crash hit the rotation half-way: both main key versions are still there.
	if st, err := runCeremony(t, dir, "", "status"); err != nil || !strings.Contains(st, "rotation in progress") {
		t.Fatalf("after the crash: %v\n%s", err, st)
	}
	if served.Load() == 0 {
		t.Fatalf("no CVV was served during the rotation")
	}

	// Restart, resume the rotation under load, and check every key.
	d2 := startDaemon(t, dir)
	stop.Store(false)
	wg.Add(1)
	go load(d2)
	rot2 := exec.Command(binPath, "ceremony", "rotate", "--dev", "--data-dir", dir, "--profile", "default")
	rot2.Stdin = strings.NewReader(approvalsInput)
	out, err := rot2.CombinedOutput()
	stop.Store(true)
	wg.Wait()
	if err != nil || !strings.Contains(string(out), "rotated (online)") || !strings.Contains(string(out), "old main key retired") {
		t.Fatalf("resumed rotation: %v\n%s\n%s", err, out, d2.logs)
	}
	_, after := ncKCV(t, d2)
	if after == before {
		t.Errorf("the profile main key did not change (KCV %s)", after)
	}
	for i, arn := range arns {
		got, ok := cvv2(t, d2, arn)
		if !ok || got != want[i] {
			t.Fatalf("key %d after rotation: CVV %q ok=%v, want %q", i, got, ok, want[i])
		}
	}
	ks, err := d2.client().ListKeys(context.Background(), &pc.ListKeysInput{MaxResults: aws.Int32(100)})
	if err != nil || len(ks.Keys) != 100 || ks.NextToken == nil {
		t.Fatalf("listing after rotation: %v", err)
	}
	// Dual control: a single custodian twice is refused.
	bad := exec.Command(binPath, "ceremony", "rotate", "--dev", "--data-dir", dir, "--profile", "default")
	bad.Stdin = strings.NewReader("alice\nalice-passphrase\nalice\nalice-passphrase\n")
	if out, err := bad.CombinedOutput(); err == nil || !strings.Contains(string(out), "two different custodians") {
		t.Errorf("rotation approved by one custodian: %v\n%s", err, out)
	}
	t.Logf("served %d CVVs during the rotations (%d failed, during the crash)", served.Load(), failed.Load())
}
