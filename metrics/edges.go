package metrics

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// opStats is one operation's (or host command's) series, resolved once.
type opStats struct {
	name     string
	requests prometheus.Counter
	latency  prometheus.Observer
}

// edge is what both front ends' collectors share: a series per operation
// and the error counters.
type edge struct {
	other *opStats
	errs  *prometheus.CounterVec
	errC  sync.Map // errKey -> prometheus.Counter, resolved on an error's first occurrence
}

type errKey struct{ op, kind, code string }

func newEdge(r *Registry, subsystem, plural, singular, label string, names []string) (*edge, map[string]*opStats) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: subsystem,
		Name: plural + "_total", Help: "Requests answered, by " + label + "."}, []string{label})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: subsystem,
		Name: singular + "_duration_seconds", Help: "Time from a request's decoding to its answer, by " + label + ".",
		Buckets: LatencyBuckets}, []string{label})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: subsystem,
		Name: singular + "_errors_total", Help: "Requests answered with an error, by " + label + ", fault kind and error code."},
		[]string{label, "kind", "code"})
	r.register(requests)
	r.register(latency)
	r.register(errs)
	stats := func(name string) *opStats {
		return &opStats{name: name, requests: requests.WithLabelValues(name), latency: latency.WithLabelValues(name)}
	}
	byName := make(map[string]*opStats, len(names))
	for _, n := range names {
		if n != "" && n != Other {
			byName[n] = stats(n)
		}
	}
	return &edge{other: stats(Other), errs: errs}, byName
}

// observe counts one request of s; code is "" for a success.
func (e *edge) observe(s *opStats, kind, code string, took time.Duration) {
	s.requests.Inc()
	s.latency.Observe(took.Seconds())
	if code == "" {
		return
	}
	k := errKey{s.name, kind, code}
	c, ok := e.errC.Load(k)
	if !ok {
		c, _ = e.errC.LoadOrStore(k, e.errs.WithLabelValues(k.op, kind, code))
	}
	c.(prometheus.Counter).Inc()
}

// HTTP collects the AWS API's metrics: payhsm_http_requests_total,
// payhsm_http_request_errors_total and payhsm_http_request_duration_seconds
// by operation, and payhsm_open_connections{listener="http"}. It implements
// awsapi.Observer.
type HTTP struct {
	edge  *edge
	ops   map[string]*opStats // read-only after newHTTP
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
		s = h.edge.other
	}
	h.edge.observe(s, kind, code, took)
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
// by command code. (The daemon
// registers payhsm_open_connections{listener="host"} from the server.) It
// implements hostcmd.Observer.
type Host struct {
	edge *edge
	cmds map[[2]byte]*opStats // read-only after newHost
}

// NewHost registers the host port's collectors, with a series for each of
// commands (the command codes; hostcmd.Commands). Call it once.
func (r *Registry) NewHost(commands []string) *Host {
	e, byName := newEdge(r, "host", "commands", "command", "command", commands)
	h := &Host{edge: e, cmds: make(map[[2]byte]*opStats, len(byName))}
	for name, s := range byName {
		if len(name) == 2 {
			h.cmds[[2]byte{name[0], name[1]}] = s
		}
	}
	return h
}

// ObserveCommand counts one answered host command: command is its code as
// received (one outside the command table counts as "other"), kind the
// error's fault kind and code its payShield error code, both "" for a
// success ("00").
func (h *Host) ObserveCommand(command [2]byte, kind, code string, took time.Duration) {
	s := h.cmds[command]
	if s == nil {
		s = h.edge.other
	}
	h.edge.observe(s, kind, code, took)
}
