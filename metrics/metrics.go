// Package metrics owns payhsm's Prometheus metrics: the registry that the ops
// listener serves on /metrics, the collectors of both front ends (request and
// command counts, errors by kind and code, latency histograms, open
// connections) and the values read from the other components when Prometheus
// scrapes (working-key cache, key store, token, readiness, and whatever a
// later component exposes).
//
// No component imports this package. Each front end defines an observer
// interface (awsapi.Observer, hostcmd.Observer) that HTTP and Host implement,
// and every other value is a function read at scrape time, registered by the
// daemon in one line (GaugeFunc, CounterFunc). On the request path nothing is
// looked up by label: each operation's and command's counter and histogram are
// resolved once, when the registry is made, and a request finds them with one
// read-only map lookup by name; only an error resolves its (kind, code)
// counter, once per distinct triple.
package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every payhsm metric name.
const Namespace = "payhsm"

// LatencyBuckets are the upper bounds, in seconds, of the request and command
// latency histograms: 50 µs (a host command on a cached key) to 5 s (an RSA
// key generation).
var LatencyBuckets = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5}

// Registry is payhsm's metrics registry.
type Registry struct {
	reg *prometheus.Registry

	mu  sync.Mutex
	err error // the first registration error
}

// Other is the operation or command label of a request that names none of
// the known ones (an unknown path, target or command code): the label values
// stay a fixed set whatever clients send.
const Other = "other"

// New returns a registry holding the Go runtime and process collectors and
// payhsm_build_info. The front ends' collectors are added by NewHTTP and
// NewHost, the other sources by GaugeFunc and CounterFunc.
func New(version string) *Registry {
	r := &Registry{reg: prometheus.NewRegistry()}
	r.register(collectors.NewGoCollector())
	r.register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r.register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help:        "Always 1: the running payhsm's version and the Go release that built it.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	}, func() float64 { return 1 }))
	return r
}

// register registers c, keeping the first failure for Err.
func (r *Registry) register(c prometheus.Collector) {
	if err := r.reg.Register(c); err != nil {
		r.fail(err)
	}
}

func (r *Registry) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

// Err is the first registration failure (a name registered twice, a name or
// label that Prometheus refuses), or nil. The daemon checks it once, after
// registering everything.
func (r *Registry) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return fmt.Errorf("metrics: %w", r.err)
	}
	return nil
}

// Handler serves the registry in the Prometheus exposition formats.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.reg})
}

// Gatherer is the registry, for tests and embedding.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// GaugeFunc registers payhsm_<name>, a gauge whose value f returns at each
// scrape; labels are constant label name/value pairs (several registrations
// may share a name with different label values). f must be cheap and safe
// for concurrent use.
func (r *Registry) GaugeFunc(name, help string, f func() float64, labels ...string) {
	cl, err := constLabels(labels)
	if err != nil {
		r.fail(fmt.Errorf("%s: %w", name, err))
		return
	}
	r.register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help, ConstLabels: cl}, f))
}

// CounterFunc registers payhsm_<name> (which should end in _total), a
// counter whose value f returns at each scrape; f must never decrease. As
// GaugeFunc otherwise.
func (r *Registry) CounterFunc(name, help string, f func() float64, labels ...string) {
	cl, err := constLabels(labels)
	if err != nil {
		r.fail(fmt.Errorf("%s: %w", name, err))
		return
	}
	r.register(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help, ConstLabels: cl}, f))
}

// Register registers a collector of its own (for a source that exposes
// several series at once).
func (r *Registry) Register(c prometheus.Collector) { r.register(c) }

func constLabels(kv []string) (prometheus.Labels, error) {
	if len(kv)%2 != 0 {
		return nil, errors.New("labels come in name/value pairs")
	}
	if len(kv) == 0 {
		return nil, nil
	}
	out := prometheus.Labels{}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out, nil
}

// Bool is 1 for true and 0 for false, for gauges of a state.
func Bool(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Memo returns a function that calls f at most once per ttl and otherwise
// returns f's last result: for several series read from one costly source
// (the key store's size) in the same scrape.
func Memo[T any](ttl time.Duration, f func() T) func() T {
	var (
		mu   sync.Mutex
		at   time.Time
		last T
	)
	return func() T {
		mu.Lock()
		defer mu.Unlock()
		if now := time.Now(); at.IsZero() || now.Sub(at) >= ttl {
			last, at = f(), now
		}
		return last
	}
}
