package daemon

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"

	"payhsm/appliance"
	"payhsm/health"
)

// checkOpsEndpoints: a serving daemon's ops listener answers /healthz,
// /readyz (ready, every check passing), /version and /metrics (parsed as
// the Prometheus text format, with the series of every source).
func checkOpsEndpoints(t *testing.T, base string) {
	t.Helper()
	get := func(path string) (int, []byte) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer closeT(t, resp.Body)
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	if code, b := get("/healthz"); code != http.StatusOK || !strings.Contains(string(b), `"alive":true`) {
		t.Errorf("/healthz: %d %s", code, b)
	}
	// Ready once the data directory's first write probe has run.
	var rep health.Report
	for deadline := time.Now().Add(30 * time.Second); ; {
		code, b := get("/readyz")
		rep = health.Report{}
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatalf("/readyz: %v: %s", err, b)
		}
		if code == http.StatusOK && rep.Ready || time.Now().After(deadline) {
			if code != http.StatusOK || !rep.Ready {
				t.Fatalf("/readyz: %d %+v", code, rep)
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	names := map[string]bool{}
	for _, c := range rep.Checks {
		names[c.Name] = c.OK
	}
	for _, want := range []string{checkServing, checkToken, checkKeystore, checkHTTP, checkHost} {
		if !names[want] {
			t.Errorf("/readyz has no passing check %q: %+v", want, rep)
		}
	}
	if code, b := get("/version"); code != http.StatusOK || !strings.Contains(string(b), `"goVersion":"go`) {
		t.Errorf("/version: %d %s", code, b)
	}
	code, b := get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	for _, name := range []string{"payhsm_build_info", "payhsm_ready", "payhsm_readiness_check", "payhsm_open_connections",
		"payhsm_http_requests_total", "payhsm_http_request_duration_seconds", "payhsm_host_commands_total",
		"payhsm_host_command_duration_seconds", "payhsm_working_key_cache_hits_total", "payhsm_keystore_keys",
		"payhsm_keystore_disk_bytes", "payhsm_keystore_integrity_failures_total", "payhsm_token_up", "go_goroutines", "process_open_fds"} {
		if families[name] == nil {
			t.Errorf("/metrics has no %s", name)
		}
	}
	// Every payhsm metric the Grafana dashboard queries exists.
	dash, err := os.ReadFile(filepath.Join("..", "docs", "grafana", "payhsm-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	queried := regexp.MustCompile(`payhsm_[a-z_]+`).FindAllString(string(dash), -1)
	if len(queried) < 10 {
		t.Errorf("the dashboard queries %d payhsm metrics", len(queried))
	}
	lazy := map[string]bool{"payhsm_http_request_errors_total": true, "payhsm_host_command_errors_total": true} // a series per error seen
	for _, n := range queried {
		if families[strings.TrimSuffix(n, "_bucket")] == nil && !lazy[n] {
			t.Errorf("the dashboard queries %s, which /metrics does not have", n)
		}
	}
	if f := families["payhsm_token_up"]; f != nil && f.GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Errorf("payhsm_token_up = %v", f.GetMetric()[0].GetGauge().GetValue())
	}
	if f := families["payhsm_ready"]; f != nil && f.GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Errorf("payhsm_ready = %v", f.GetMetric()[0].GetGauge().GetValue())
	}
}

// TestOpsListenerAddress: a configured ops address that is taken fails the
// start; the default one, taken, is skipped (another appliance on the
// machine has it).
func TestOpsListenerAddress(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, taken)
	cfg := &appliance.Config{Ops: appliance.OpsConfig{Addr: taken.Addr().String()}}
	cfg.Defaults()
	tel := newTelemetry()
	if err := tel.listen(cfg, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "ops listener") {
		t.Errorf("configured address taken: %v", err)
	}

	// The default address: taken by this test, or by someone else already.
	def, err := net.Listen("tcp", appliance.DefaultOpsAddr)
	switch {
	case err == nil:
		defer closeT(t, def)
	case !errors.Is(err, syscall.EADDRINUSE):
		t.Skipf("cannot take %s: %v", appliance.DefaultOpsAddr, err)
	}
	cfg = &appliance.Config{}
	cfg.Defaults()
	tel = newTelemetry()
	if err := tel.listen(cfg, zap.NewNop()); err != nil || tel.url() != "" {
		t.Errorf("default address taken: %v, url %q", err, tel.url())
	}
	tel.close(zap.NewNop())
}

// TestProbeWritable: a writable directory passes (and keeps no probe
// file); a read-only one and a missing one fail.
func TestProbeWritable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := probeWritable(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, writeProbeName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the probe file was left: %v", err)
	}
	if err := probeWritable(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing directory passed")
	}
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		t.Log("root writes into a mode-0500 directory: that case is not checked")
		return
	}
	if err := probeWritable(ro); err == nil {
		t.Error("a read-only directory passed")
	}
}
