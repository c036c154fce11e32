package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// opsGet GETs path on the daemon's ops listener.
func (d *daemon) opsGet(t *testing.T, path string) (int, []byte) {
	t.Helper()
	if d.opsURL == "" {
		t.Fatal("the daemon serves no ops listener")
	}
	resp, err := http.Get(d.opsURL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	b, err := io.ReadAll(resp.Body)
	check(t, err)
	check(t, resp.Body.Close())
	return resp.StatusCode, b
}

// readyz is /readyz: whether ready, and the report.
func (d *daemon) readyz(t *testing.T) (bool, string) {
	t.Helper()
	code, b := d.opsGet(t, "/readyz")
	var rep struct {
		Ready bool `json:"ready"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("/readyz: %v: %s", err, b)
	}
	if rep.Ready != (code == http.StatusOK) {
		t.Fatalf("/readyz: status %d with %s", code, b)
	}
	return rep.Ready, string(b)
}

// waitReady polls /readyz until it says want, and returns how long that took.
func (d *daemon) waitReady(t *testing.T, want bool, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ready, rep := d.readyz(t)
		if ready == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("/readyz not %v within %v: %s\n%s", want, within, rep, d.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scrape reads /metrics with the Prometheus text parser.
func (d *daemon) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	code, b := d.opsGet(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// metricValue is the value (a histogram's count) of the series of family
// name whose labels include want (name, value pairs); -1 when absent.
func metricValue(fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
next:
	for _, m := range fams[name].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

// TestReadyzFollowsTheToken: the token directory moved away makes /readyz
// false within 5 s and is logged once; a cached working key keeps serving
// for the loss grace, then it and everything that needs the token are
// refused cleanly; the directory moved back makes the appliance ready and
// serving again.
func TestReadyzFollowsTheToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const grace = 6 * time.Second
	d := startDaemon(t, dir, "--token-loss-grace", grace.String())
	d.waitReady(t, true, 30*time.Second)
	c := d.client()
	ctx := context.Background()
	out, err := c.CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: &types.KeyAttributes{
		KeyUsage: types.KeyUsageTr31D0SymmetricDataEncryptionKey, KeyClass: types.KeyClassSymmetricKey, KeyAlgorithm: types.KeyAlgorithmAes128,
		KeyModesOfUse: &types.KeyModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}})
	if err != nil {
		t.Fatal(err)
	}
	encrypt := func() (int, map[string]any, string) {
		return d.dataCall(t, "/keys/"+url.PathEscape(*out.Key.KeyArn)+"/encrypt", map[string]any{
			"PlainText": "00112233445566778899AABBCCDDEEFF",
			"EncryptionAttributes": map[string]any{"Symmetric": map[string]any{"Mode": "CBC",
				"InitializationVector": "000102030405060708090A0B0C0D0E0F"}}})
	}
	if st, body, et := encrypt(); st != http.StatusOK {
		t.Fatalf("EncryptData: %d %s %v", st, et, body)
	}

	tokens := filepath.Join(dir, "softhsm", "tokens")
	check(t, os.Rename(tokens, tokens+".away"))
	took := d.waitReady(t, false, 5*time.Second)
	t.Logf("/readyz false %v after the token directory went away", took.Round(time.Millisecond))
	if _, rep := d.readyz(t); !strings.Contains(rep, `"name":"token","ok":false`) {
		t.Errorf("/readyz does not blame the token: %s", rep)
	}
	lost := time.Now()
	if st, body, et := encrypt(); st != http.StatusOK {
		if time.Since(lost) < grace-time.Second {
			t.Errorf("EncryptData within the loss grace: %d %s %v", st, et, body)
		}
	}
	// After the grace: refused, cleanly.
	for {
		st, body, et := encrypt()
		if st != http.StatusOK {
			if st != http.StatusInternalServerError || et != "InternalServerException" ||
				!strings.Contains(body["Message"].(string), "PKCS#11 token") {
				t.Errorf("EncryptData after the grace: %d %s %v", st, et, body)
			}
			break
		}
		if time.Since(lost) > grace+10*time.Second {
			t.Fatalf("EncryptData still served %v after the token went", time.Since(lost))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := c.ListKeys(ctx, &pc.ListKeysInput{}); err == nil || !strings.Contains(err.Error(), "ServiceUnavailableException") {
		t.Errorf("ListKeys after the grace: %v", err)
	}
	fams := d.scrape(t)
	if v := metricValue(fams, "payhsm_token_up"); v != 0 {
		t.Errorf("payhsm_token_up = %v with the token gone", v)
	}
	if v := metricValue(fams, "payhsm_readiness_check", "check", "token"); v != 0 {
		t.Errorf(`payhsm_readiness_check{check="token"} = %v with the token gone`, v)
	}

	check(t, os.Rename(tokens+".away", tokens))
	took = d.waitReady(t, true, 5*time.Second)
	t.Logf("/readyz true %v after the token directory came back", took.Round(time.Millisecond))
	if st, body, et := encrypt(); st != http.StatusOK {
		t.Errorf("EncryptData after the token came back: %d %s %v", st, et, body)
	}
	if _, err := c.ListKeys(ctx, &pc.ListKeysInput{}); err != nil {
		t.Errorf("ListKeys after the token came back: %v", err)
	}
	logs := d.logs.String()
	for msg, want := range map[string]int{"PKCS#11 token unavailable:": 1, "longer than the loss grace": 1, "PKCS#11 token available again": 1} {
		if n := strings.Count(logs, msg); n != want {
			t.Errorf("log %q %d times, want %d", msg, n, want)
		}
	}
}

// TestOpsEndpointsAndMetrics: the ops listener answers /healthz, /readyz
// and /version; the AWS port answers an unknown path with AWS's 404 and
// logs it as NotFound, not as an internal error; and /metrics, read by the
// Prometheus text parser, shows the counters moving under payhsm bench.
func TestOpsEndpointsAndMetrics(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, t.TempDir())
	d.waitReady(t, true, 30*time.Second)
	if code, b := d.opsGet(t, "/healthz"); code != http.StatusOK || !strings.Contains(string(b), `"alive":true`) {
		t.Errorf("/healthz: %d %s", code, b)
	}
	code, b := d.opsGet(t, "/version")
	var v struct{ Version, GoVersion string }
	if code != http.StatusOK || json.Unmarshal(b, &v) != nil || v.Version == "" || !strings.HasPrefix(v.GoVersion, "go") {
		t.Errorf("/version: %d %s", code, b)
	}
	resp, err := http.Get(d.httpURL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	check(t, resp.Body.Close())
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("X-Amzn-ErrorType") != "UnknownOperationException" {
		t.Errorf("GET /healthz on the AWS port: %d %s", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"))
	}

	before := d.scrape(t)
	var outb bytes.Buffer
	cmd := exec.Command(binPath, "bench", "-addr", d.hostAddr, "-conns", "2", "-duration", "1s", "-warmup", "200ms", "-mix", "CC=1,NC=1")
	cmd.Stdout, cmd.Stderr = &outb, &outb
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench: %v\n%s", err, &outb)
	}
	out := outb.String()
	after := d.scrape(t)
	count := func(code string) float64 {
		m := regexp.MustCompile(`(?m)^` + code + `\s+(\d+)\s+(\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("bench output has no %s line:\n%s", code, out)
		}
		n, _ := strconv.Atoi(m[1])
		return float64(n)
	}
	for _, code := range []string{"CC", "NC"} {
		n := count(code)
		if n == 0 {
			t.Errorf("bench ran no %s", code)
		}
		delta := metricValue(after, "payhsm_host_commands_total", "command", code) - metricValue(before, "payhsm_host_commands_total", "command", code)
		if delta < n {
			t.Errorf("payhsm_host_commands_total{command=%q} rose by %v; bench counted %v", code, delta, n)
		}
		hd := metricValue(after, "payhsm_host_command_duration_seconds", "command", code) -
			metricValue(before, "payhsm_host_command_duration_seconds", "command", code)
		if hd != delta {
			t.Errorf("%s: the latency histogram counted %v commands, the counter %v", code, hd, delta)
		}
	}
	if delta := metricValue(after, "payhsm_host_commands_total", "command", "A0") - metricValue(before, "payhsm_host_commands_total", "command", "A0"); delta < 1 {
		t.Errorf("bench's A0 key generations were not counted: %v", delta)
	}
	if v := metricValue(after, "payhsm_http_request_errors_total", "operation", "other", "kind", "NotFound", "code", "UnknownOperationException"); v < 1 {
		t.Errorf("the AWS port's 404 was not counted: %v", v)
	}
	if v := metricValue(after, "payhsm_working_key_cache_hits_total"); v <= metricValue(before, "payhsm_working_key_cache_hits_total") {
		t.Errorf("the working-key cache hits did not move: %v", v)
	}
	for _, name := range []string{"payhsm_ready", "payhsm_token_up"} {
		if v := metricValue(after, name); v != 1 {
			t.Errorf("%s = %v", name, v)
		}
	}
	if v := metricValue(after, "payhsm_keystore_disk_bytes"); v <= 0 {
		t.Errorf("payhsm_keystore_disk_bytes = %v", v)
	}
	// The 404 logged once, as NotFound at info, with the request's fields.
	var found bool
	for _, line := range strings.Split(d.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || m["code"] != "UnknownOperationException" {
			continue
		}
		found = true
		if m["level"] != "info" || m["kind"] != "NotFound" || m["status"] != float64(404) || m["requestId"] == nil || m["remote"] == nil {
			t.Errorf("the 404's log line: %s", line)
		}
	}
	if !found {
		t.Errorf("the 404 was not logged:\n%s", d.logs)
	}
}
