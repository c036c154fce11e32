package daemon

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"payhsm/appliance"
	"payhsm/keyspec"
	"payhsm/ops"
)

// TestServeWarmsWorkingKeys: a daemon started on a store that holds keys
// opens every usable one into its working-key cache with no request made
// (payhsm_working_key_cache_entries), leaving out a disabled key.
func TestServeWarmsWorkingKeys(t *testing.T) {
	needSoftHSM(t)
	cfg := devConfig(t, t.TempDir())
	metrics := "http://" + cfg.Ops.Addr + "/metrics"
	cached := func() int {
		resp, err := http.Get(metrics) //nolint:gosec // G107: the daemon's own ops listener
		if err != nil {
			return -1 // not serving yet
		}
		defer closeT(t, resp.Body)
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "payhsm_working_key_cache_entries "); ok {
				n, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("metric line %q", line)
				}
				return int(n)
			}
		}
		return -1
	}
	// serve runs the daemon until until returns true (polled), or fails.
	serve := func(what string, until func() bool) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Serve(ctx, cfg, true, zap.NewNop()) }()
		deadline := time.Now().Add(time.Minute)
		for !until() {
			select {
			case err := <-done:
				cancel()
				t.Fatalf("Serve returned %v", err)
			default:
			}
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("%s: not within a minute (Serve: %v)", what, <-done)
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Serve = %v", err)
		}
	}
	serve("the first start", func() bool { return cached() == 0 })

	app, err := appliance.Open(cfg, true, false, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	svc, err := ops.New(ops.Config{Region: cfg.Region, Account: cfg.Account, Profile: "default"}, app.Store, app.Custody, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	const n = 30
	attrs := keyspec.Attributes{Usage: keyspec.M3, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key, Modes: keyspec.ModesOfUse{Generate: true, Verify: true}}
	off := false
	for i := range n {
		in := ops.CreateKeyInput{Attributes: attrs}
		if i == 7 {
			in.Enabled = &off
		}
		if _, err := svc.CreateKey(in); err != nil {
			t.Fatal(err)
		}
	}
	closeT(t, app)

	serve("the warm-up of the 29 enabled keys", func() bool { return cached() == n-1 })
}
