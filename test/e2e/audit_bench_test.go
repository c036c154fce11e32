package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
)

// TestControlPlaneThroughput measures control-plane calls per second on the
// real daemon, each recorded and synced in the audit trail before its
// answer: GetKey (a read: the trail's sync is the only one) and CreateKey (a
// write: the key store's sync and the trail's). It is a measurement, not a
// check, and runs only when PAYHSM_AUDIT_BENCH is set (to a duration such
// as 10s); PAYHSM_BENCH_BIN names another payhsm binary to measure (an
// earlier release, for a before/after comparison). docs/audit.md has the
// numbers.
func TestControlPlaneThroughput(t *testing.T) {
	dur, err := time.ParseDuration(os.Getenv("PAYHSM_AUDIT_BENCH"))
	if err != nil {
		t.Skip("set PAYHSM_AUDIT_BENCH=10s to measure")
	}
	bin := binPath
	if b := os.Getenv("PAYHSM_BENCH_BIN"); b != "" {
		bin = b
	}
	dir := t.TempDir()
	d := startDaemonCmd(t, exec.Command(bin, "serve", "--dev", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--host-addr", "127.0.0.1:0"))
	d.dir = dir
	d.keyID, d.secret = readCreds(t, filepath.Join(dir, "credentials"))
	attrs := &types.KeyAttributes{KeyUsage: types.KeyUsageTr31C0CardVerificationKey, KeyClass: types.KeyClassSymmetricKey,
		KeyAlgorithm: types.KeyAlgorithmTdes2key, KeyModesOfUse: &types.KeyModesOfUse{Generate: true, Verify: true}}
	out, err := d.client().CreateKey(context.Background(), &pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: attrs})
	check(t, err)
	for _, op := range []string{"GetKey", "CreateKey"} {
		for _, conc := range []int{1, 16, 64} {
			var n, fails atomic.Int64
			var wg sync.WaitGroup
			stop := time.Now().Add(dur)
			for i := 0; i < conc; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := d.client()
					for time.Now().Before(stop) {
						var err error
						if op == "GetKey" {
							_, err = c.GetKey(context.Background(), &pc.GetKeyInput{KeyIdentifier: out.Key.KeyArn})
						} else {
							_, err = c.CreateKey(context.Background(), &pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: attrs})
						}
						if err != nil {
							fails.Add(1)
						} else {
							n.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			t.Logf("%s with %d clients: %.0f calls/s (%d failed)", op, conc, float64(n.Load())/dur.Seconds(), fails.Load())
		}
	}
}
