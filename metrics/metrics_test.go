package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape serves the registry's handler once and parses the answer as a
// Prometheus client would.
func scrape(t *testing.T, r *Registry) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return fams
}

// value is the counter, gauge or histogram count of the series of family
// name whose labels include want (name=value pairs); -1 when absent.
func value(fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
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

func TestFrontEnds(t *testing.T) {
	t.Parallel()
	r := New("v9.9.9")
	h := r.NewHTTP([]string{"CreateKey", "EncryptData"})
	host := r.NewHost([]string{"CC", "NC"})
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, r)
	// Every known operation has its series before its first request.
	for _, tc := range []struct{ name, label, value string }{
		{"payhsm_http_requests_total", "operation", "CreateKey"},
		{"payhsm_http_requests_total", "operation", "EncryptData"},
		{"payhsm_http_requests_total", "operation", Other},
		{"payhsm_host_commands_total", "command", "CC"},
		{"payhsm_host_commands_total", "command", Other},
		{"payhsm_open_connections", "listener", "http"},
	} {
		if got := value(fams, tc.name, tc.label, tc.value); got != 0 {
			t.Errorf("%s{%s=%q} = %v before any request, want 0", tc.name, tc.label, tc.value, got)
		}
	}
	if got := value(fams, "payhsm_build_info", "version", "v9.9.9"); got != 1 {
		t.Errorf("payhsm_build_info = %v", got)
	}

	h.ObserveRequest("CreateKey", "", "", time.Millisecond)
	h.ObserveRequest("CreateKey", "Validation", "ValidationException", 2*time.Millisecond)
	h.ObserveRequest("CreateKey", "Validation", "ValidationException", 2*time.Millisecond)
	h.ObserveRequest("", "NotFound", "UnknownOperationException", time.Microsecond)
	h.ObserveRequest("NoSuchOperation", "NotFound", "UnknownOperationException", time.Microsecond)
	host.ObserveCommand([2]byte{'C', 'C'}, "", "", 10*time.Microsecond)
	host.ObserveCommand([2]byte{'C', 'C'}, "VerificationFailed", "01", 10*time.Microsecond)
	host.ObserveCommand([2]byte{'Q', 'Q'}, "Validation", "68", time.Microsecond)
	host.ObserveCommand([2]byte{'c', 0}, "Validation", "68", time.Microsecond)
	h.ConnState(nil, http.StateNew)
	h.ConnState(nil, http.StateNew)
	h.ConnState(nil, http.StateActive)
	h.ConnState(nil, http.StateClosed)

	fams = scrape(t, r)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"payhsm_http_requests_total", []string{"operation", "CreateKey"}, 3},
		{"payhsm_http_request_duration_seconds", []string{"operation", "CreateKey"}, 3},
		{"payhsm_http_request_errors_total", []string{"operation", "CreateKey", "kind", "Validation", "code", "ValidationException"}, 2},
		{"payhsm_http_requests_total", []string{"operation", Other}, 2},
		{"payhsm_http_request_errors_total", []string{"operation", Other, "code", "UnknownOperationException"}, 2},
		{"payhsm_http_requests_total", []string{"operation", "EncryptData"}, 0},
		{"payhsm_host_commands_total", []string{"command", "CC"}, 2},
		{"payhsm_host_command_errors_total", []string{"command", "CC", "kind", "VerificationFailed", "code", "01"}, 1},
		{"payhsm_host_commands_total", []string{"command", Other}, 2},
		{"payhsm_host_command_errors_total", []string{"command", Other, "code", "68"}, 2},
		{"payhsm_open_connections", []string{"listener", "http"}, 1},
	} {
		if got := value(fams, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	// An unknown command code never becomes a label value of its own.
	for _, m := range fams["payhsm_host_commands_total"].GetMetric() {
		if v := m.GetLabel()[0].GetValue(); v == "QQ" {
			t.Errorf("command label %q", v)
		}
	}
}

func TestFuncsAndErrors(t *testing.T) {
	t.Parallel()
	r := New("v1")
	var n atomic.Int64
	r.GaugeFunc("things", "Things.", func() float64 { return float64(n.Load()) }, "kind", "a")
	r.GaugeFunc("things", "Things.", func() float64 { return 7 }, "kind", "b")
	r.CounterFunc("events_total", "Events.", func() float64 { return 3 })
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	n.Store(5)
	fams := scrape(t, r)
	if got := value(fams, "payhsm_things", "kind", "a"); got != 5 {
		t.Errorf("things{a} = %v", got)
	}
	if got := value(fams, "payhsm_things", "kind", "b"); got != 7 {
		t.Errorf("things{b} = %v", got)
	}
	if got := value(fams, "payhsm_events_total"); got != 3 {
		t.Errorf("events_total = %v", got)
	}

	r.GaugeFunc("things", "Things.", func() float64 { return 1 }, "kind", "a") // the same series twice
	if err := r.Err(); err == nil {
		t.Error("a duplicate registration was not reported")
	}
	r2 := New("v1")
	r2.GaugeFunc("odd", "Odd.", func() float64 { return 1 }, "kind")
	if err := r2.Err(); err == nil || !strings.Contains(err.Error(), "pairs") {
		t.Errorf("odd labels: %v", err)
	}
	r3 := New("v1")
	r3.GaugeFunc("mixed", "Mixed.", func() float64 { return 1 }, "a", "1")
	r3.GaugeFunc("mixed", "Mixed.", func() float64 { return 1 }, "b", "1")
	if err := r3.Err(); err == nil {
		t.Error("one name with two label sets was not reported")
	}
}

func TestMemo(t *testing.T) {
	t.Parallel()
	calls := 0
	f := Memo(time.Hour, func() int { calls++; return calls })
	if a, b := f(), f(); a != 1 || b != 1 || calls != 1 {
		t.Errorf("within the ttl: %d %d, %d calls", a, b, calls)
	}
	g := Memo(0, func() int { calls++; return calls })
	if a, b := g(), g(); a == b {
		t.Errorf("ttl 0 memoized: %d %d", a, b)
	}
}

// TestHandlerFormats: the handler negotiates the exposition format; a
// plain GET gets the text format the parser above reads.
func TestHandlerFormats(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(New("v1").Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || !strings.Contains(string(b), "payhsm_build_info") {
		t.Errorf("content type %q, body %.200s", ct, b)
	}
}

// BenchmarkObserve is the cost a request pays for its metrics: one map
// lookup, a counter, a histogram (and, for an error, its counter).
func BenchmarkObserve(b *testing.B) {
	r := New("v1")
	host := r.NewHost([]string{"CC", "NC", "M0", "M2"})
	h := r.NewHTTP([]string{"CreateKey", "EncryptData", "DecryptData"})
	b.Run("host-ok", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				host.ObserveCommand([2]byte{'C', 'C'}, "", "", 5*time.Microsecond)
			}
		})
	})
	b.Run("host-error", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				host.ObserveCommand([2]byte{'C', 'C'}, "VerificationFailed", "01", 5*time.Microsecond)
			}
		})
	})
	b.Run("http-ok", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				h.ObserveRequest("EncryptData", "", "", 50*time.Microsecond)
			}
		})
	})
}
