package health

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestChecker(t *testing.T) {
	t.Parallel()
	var c Checker
	if rep := c.Report(); !rep.Ready || len(rep.Checks) != 0 {
		t.Errorf("no checks: %+v", rep)
	}
	token := NewState(errors.New("starting"))
	c.Add("token", token.Check)
	c.Add("disk", func() error { return nil })
	rep := c.Report()
	if rep.Ready || len(rep.Checks) != 2 || rep.Checks[0] != (Result{Name: "token", Error: "starting"}) || !rep.Checks[1].OK {
		t.Errorf("one failing: %+v", rep)
	}
	token.Set(nil)
	if !c.Ready() {
		t.Errorf("all passing: %+v", c.Report())
	}
	c.Add("disk", func() error { return errors.New("full") }) // replaces, keeps its place
	if names := c.Names(); len(names) != 2 || names[1] != "disk" {
		t.Errorf("names %v", names)
	}
	if err := c.Check("disk"); err == nil || err.Error() != "full" {
		t.Errorf("Check(disk) = %v", err)
	}
	if err := c.Check("nope"); err == nil {
		t.Error("an unknown check passed")
	}
}

func TestHandlers(t *testing.T) {
	t.Parallel()
	var c Checker
	st := NewState(errors.New("token unavailable"))
	c.Add("token", st.Check)
	tests := []struct {
		name    string
		h       http.Handler
		method  string
		ready   bool
		status  int
		decoded bool
	}{
		{"readyz failing", c.ReadyzHandler(), http.MethodGet, false, http.StatusServiceUnavailable, true},
		{"readyz passing", c.ReadyzHandler(), http.MethodGet, true, http.StatusOK, true},
		{"readyz head", c.ReadyzHandler(), http.MethodHead, true, http.StatusOK, false},
		{"readyz post", c.ReadyzHandler(), http.MethodPost, true, http.StatusMethodNotAllowed, false},
		{"healthz", HealthzHandler(), http.MethodGet, false, http.StatusOK, false},
		{"version", JSONHandler(map[string]string{"version": "v1"}), http.MethodGet, false, http.StatusOK, false},
	}
	for _, tc := range tests {
		if tc.ready {
			st.Set(nil)
		} else {
			st.Set(errors.New("token unavailable"))
		}
		w := httptest.NewRecorder()
		tc.h.ServeHTTP(w, httptest.NewRequest(tc.method, "/", nil))
		if w.Code != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, w.Code, tc.status)
		}
		if tc.method == http.MethodHead && w.Body.Len() != 0 {
			t.Errorf("%s: a body for HEAD", tc.name)
		}
		if !tc.decoded {
			continue
		}
		var rep Report
		if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if rep.Ready != tc.ready || len(rep.Checks) != 1 || (!tc.ready && rep.Checks[0].Error != "token unavailable") {
			t.Errorf("%s: %+v", tc.name, rep)
		}
	}
}
