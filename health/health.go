// Package health owns the appliance's liveness and readiness answers: a set
// of named readiness checks, each a cheap function over state that another
// component keeps current (the token prober, the key store's failure state,
// the listeners, the data directory's write probe, the disk watchdog), and
// the ops listener's /healthz and /readyz handlers. A check never does slow
// work itself: /readyz must answer at once even while the token hangs.
package health

import (
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
)

// Check reports why a component is not ready, or nil. It must be cheap, not
// block, and be safe for concurrent use.
type Check func() error

// Checker is the set of readiness checks. The zero value has none (and is ready).
type Checker struct {
	mu     sync.RWMutex
	names  []string
	checks map[string]Check
}

// Add adds the check name; a second Add of a name replaces its check.
func (c *Checker) Add(name string, f Check) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.checks == nil {
		c.checks = map[string]Check{}
	}
	if _, ok := c.checks[name]; !ok {
		c.names = append(c.names, name)
	}
	c.checks[name] = f
}

// Names lists the checks in the order they were added.
func (c *Checker) Names() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return append([]string(nil), c.names...)
}

// Check runs the check name: nil when it passes, an error when it fails or
// no such check exists.
func (c *Checker) Check(name string) error {
	c.mu.RLock()
	f := c.checks[name]
	c.mu.RUnlock()
	if f == nil {
		return errors.New("no such check")
	}
	return f()
}

// Result is one check's outcome.
type Result struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Report is every check's outcome: Ready when all passed.
type Report struct {
	Ready  bool     `json:"ready"`
	Checks []Result `json:"checks"`
}

// Report runs every check.
func (c *Checker) Report() Report {
	c.mu.RLock()
	names := append([]string(nil), c.names...)
	fs := make([]Check, len(names))
	for i, n := range names {
		fs[i] = c.checks[n]
	}
	c.mu.RUnlock()
	rep := Report{Ready: true, Checks: make([]Result, len(names))}
	for i, f := range fs {
		r := Result{Name: names[i], OK: true}
		if err := f(); err != nil {
			r.OK, r.Error, rep.Ready = false, err.Error(), false
		}
		rep.Checks[i] = r
	}
	return rep
}

// Ready reports whether every check passes.
func (c *Checker) Ready() bool { return c.Report().Ready }

// ReadyzHandler answers GET (or HEAD) /readyz: 200 when every check passes,
// 503 Service Unavailable when one fails, with the Report as JSON either way.
func (c *Checker) ReadyzHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !getOrHead(w, r) {
			return
		}
		rep := c.Report()
		status := http.StatusOK
		if !rep.Ready {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, r, status, rep)
	})
}

// HealthzHandler answers GET (or HEAD) /healthz with 200 and {"alive":true}:
// the process runs and serves its ops listener. It says nothing of
// readiness.
func HealthzHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if getOrHead(w, r) {
			writeJSON(w, r, http.StatusOK, map[string]bool{"alive": true})
		}
	})
}

// JSONHandler answers GET (or HEAD) with v as JSON (the /version document).
func JSONHandler(v any) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if getOrHead(w, r) {
			writeJSON(w, r, http.StatusOK, v)
		}
	})
}

func getOrHead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b) // the client went away: nothing to do
	}
}

// State is a component's readiness as set by the component: a Check that
// returns the last error Set (nil: ready). The zero value is ready.
type State struct {
	err atomic.Pointer[error]
}

// NewState returns a State whose check fails with err until Set(nil).
func NewState(err error) *State {
	s := &State{}
	s.Set(err)
	return s
}

// Set records the component's state: nil for ready.
func (s *State) Set(err error) {
	if err == nil {
		s.err.Store(nil)
		return
	}
	s.err.Store(&err)
}

// Check is the State's Check.
func (s *State) Check() error {
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}
