package metrics

import (
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The front ends' series are kept by this package rather than by
// client_golang's CounterVec and HistogramVec: a request costs one map
// lookup by name and two uncontended-in-the-common-case atomic additions
// (its latency bucket, the latency sum in nanoseconds), about a third of what
// a client_golang counter plus histogram cost on the reference VM (see
// BenchmarkObserve and docs/operations.md). The request count is the sum of
// the buckets, so payhsm_*_total and the histogram's _count always agree. A
// collector turns them into constant metrics at scrape time.

// boundsNanos are LatencyBuckets in nanoseconds.
var boundsNanos = func() []int64 {
	out := make([]int64, len(LatencyBuckets))
	for i, b := range LatencyBuckets {
		out[i] = int64(b * 1e9)
	}
	return out
}()

// opStats is one operation's (or host command's) counters.
type opStats struct {
	name    string
	buckets []atomic.Uint64 // one per bound, and one past the largest
	sum     atomic.Uint64   // nanoseconds
	errs    sync.Map        // errKey -> *atomic.Uint64
}

type errKey struct{ kind, code string }

func newOpStats(name string) *opStats {
	return &opStats{name: name, buckets: make([]atomic.Uint64, len(boundsNanos)+1)}
}

// observe counts one request that took took; code is "" for a success.
func (s *opStats) observe(kind, code string, took time.Duration) {
	d := int64(took)
	i := 0
	for i < len(boundsNanos) && d > boundsNanos[i] {
		i++
	}
	s.buckets[i].Add(1)
	if d > 0 {
		s.sum.Add(uint64(d))
	}
	if code == "" {
		return
	}
	k := errKey{kind, code}
	c, ok := s.errs.Load(k)
	if !ok {
		c, _ = s.errs.LoadOrStore(k, new(atomic.Uint64))
	}
	c.(*atomic.Uint64).Add(1)
}

// edge is one front end's series: a Collector.
type edge struct {
	ops                         []*opStats // sorted by name, "other" included
	requests, duration, errDesc *prometheus.Desc
}

func newEdge(r *Registry, subsystem, plural, singular, label string, names []string) (*edge, map[string]*opStats) {
	e := &edge{
		requests: prometheus.NewDesc(prometheus.BuildFQName(Namespace, subsystem, plural+"_total"),
			"Requests answered, by "+label+".", []string{label}, nil),
		duration: prometheus.NewDesc(prometheus.BuildFQName(Namespace, subsystem, singular+"_duration_seconds"),
			"Time from a request's receipt to its answer, by "+label+".", []string{label}, nil),
		errDesc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, subsystem, singular+"_errors_total"),
			"Requests answered with an error, by "+label+", fault kind and error code.", []string{label, "kind", "code"}, nil),
	}
	byName := make(map[string]*opStats, len(names)+1)
	for _, n := range append(names, Other) {
		if n != "" && byName[n] == nil {
			byName[n] = newOpStats(n)
			e.ops = append(e.ops, byName[n])
		}
	}
	sort.Slice(e.ops, func(i, j int) bool { return e.ops[i].name < e.ops[j].name })
	r.register(e)
	return e, byName
}

// Describe implements prometheus.Collector.
func (e *edge) Describe(ch chan<- *prometheus.Desc) {
	ch <- e.requests
	ch <- e.duration
	ch <- e.errDesc
}

// Collect implements prometheus.Collector.
func (e *edge) Collect(ch chan<- prometheus.Metric) {
	for _, s := range e.ops {
		cumulative := make(map[float64]uint64, len(LatencyBuckets))
		var count uint64
		for i := range s.buckets {
			count += s.buckets[i].Load()
			if i < len(LatencyBuckets) {
				cumulative[LatencyBuckets[i]] = count
			}
		}
		sum := float64(s.sum.Load()) / 1e9
		ch <- constMetric(e.requests, prometheus.CounterValue, float64(count), s.name)
		h, err := prometheus.NewConstHistogram(e.duration, count, sum, cumulative, s.name)
		if err != nil {
			h = prometheus.NewInvalidMetric(e.duration, err)
		}
		ch <- h
		s.errs.Range(func(k, v any) bool {
			key := k.(errKey)
			ch <- constMetric(e.errDesc, prometheus.CounterValue, float64(v.(*atomic.Uint64).Load()), s.name, key.kind, key.code)
			return true
		})
	}
}

func constMetric(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) prometheus.Metric {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		return prometheus.NewInvalidMetric(d, err)
	}
	return m
}

// HTTP collects the AWS API's metrics: payhsm_http_requests_total,
// payhsm_http_request_errors_total and payhsm_http_request_duration_seconds
// by operation, and payhsm_open_connections{listener="http"}. It implements
// awsapi.Observer.
type HTTP struct {
	edge  *edge
	ops   map[string]*opStats // read-only after NewHTTP
	conns atomic.Int64
}

// NewHTTP registers the AWS API's collectors, with a series for each of
// operations (the AWS operation names; awsapi.Server.Operations). Call it once.
func (r *Registry) NewHTTP(operations []string) *HTTP {
	e, ops := newEdge(r, "http", "requests", "request", "operation", operations)
	h := &HTTP{edge: e, ops: ops}
	r.GaugeFunc("open_connections", "Open client connections, by listener.",
		func() float64 { return float64(h.conns.Load()) }, "listener", "http")
	return h
}

// ObserveRequest counts one answered request of operation (the AWS
// operation name; "" or an unknown name counts as "other"): kind is the
// error's fault kind and code its AWS exception name, both "" for a success.
func (h *HTTP) ObserveRequest(operation, kind, code string, took time.Duration) {
	s := h.ops[operation]
	if s == nil {
		s = h.ops[Other]
	}
	s.observe(kind, code, took)
}

// ConnState is an http.Server's ConnState hook: it keeps the open connection count.
func (h *HTTP) ConnState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		h.conns.Add(1)
	case http.StateClosed, http.StateHijacked:
		h.conns.Add(-1)
	}
}

// Host collects the host port's metrics: payhsm_host_commands_total,
// payhsm_host_command_errors_total and payhsm_host_command_duration_seconds
// by command code. (The daemon registers
// payhsm_open_connections{listener="host"} from the server.) It implements
// hostcmd.Observer.
type Host struct {
	edge  *edge
	cmds  [36 * 36]*opStats // by codeIndex; read-only after NewHost
	other *opStats
}

// codeIndex is the index of a command code of two characters 0-9 or A-Z in
// Host.cmds, or -1: a table lookup costs less than a map's.
func codeIndex(c [2]byte) int {
	a, b := alnum(c[0]), alnum(c[1])
	if a < 0 || b < 0 {
		return -1
	}
	return a*36 + b
}

func alnum(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 10
	}
	return -1
}

// NewHost registers the host port's collectors, with a series for each of
// commands (the command codes; hostcmd.Commands). Call it once.
func (r *Registry) NewHost(commands []string) *Host {
	e, byName := newEdge(r, "host", "commands", "command", "command", commands)
	h := &Host{edge: e, other: byName[Other]}
	for name, s := range byName {
		if len(name) == 2 {
			if i := codeIndex([2]byte{name[0], name[1]}); i >= 0 {
				h.cmds[i] = s
			}
		}
	}
	return h
}

// ObserveCommand counts one answered host command: command is its code as
// received (one outside the command table counts as "other"), kind the
// error's fault kind and code its payShield error code, both "" for a
// success ("00").
func (h *Host) ObserveCommand(command [2]byte, kind, code string, took time.Duration) {
	s := h.other
	if i := codeIndex(command); i >= 0 && h.cmds[i] != nil {
		s = h.cmds[i]
	}
	s.observe(kind, code, took)
}
