package audit

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// settledRefs collects what a trail settles (Config.Settled).
type settledRefs struct {
	mu   sync.Mutex
	refs []string
}

func (s *settledRefs) add(refs []string) {
	s.mu.Lock()
	s.refs = append(s.refs, refs...)
	s.mu.Unlock()
}

func (s *settledRefs) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.refs)
}

// controlIDs is the request ids of dir's control entries, in file order.
func controlIDs(t *testing.T, dir string) []string {
	t.Helper()
	var ids []string
	for _, e := range readAll(t, dir) {
		if e.Kind == KindControl {
			ids = append(ids, e.RequestID)
		}
	}
	return ids
}

// TestStagedEntries: staged entries are chained in the order they are
// appended, among entries recorded the usual way, written without a sync of
// their own, and settled once a sync holds them; the trail verifies.
func TestStagedEntries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var settled settledRefs
	tr := openTrail(t, dir, func(c *Config) { c.Settled = settled.add })
	syncs := tr.syncs.Load()
	var bytes [][]byte
	for i := range 3 {
		s, err := tr.Stage(control(i))
		if err != nil {
			t.Fatal(err)
		}
		bytes = append(bytes, s.Bytes())
		tr.AppendStaged(s, "ref-"+control(i).RequestID)
	}
	if n := tr.syncs.Load() - syncs; n != 0 {
		t.Errorf("staged entries synced the file %d times; they are durable elsewhere", n)
	}
	if got := settled.get(); len(got) != 0 {
		t.Errorf("settled %v before any sync", got)
	}
	if err := tr.Record(KindControl, control(3)); err != nil { // its sync takes the staged entries too
		t.Fatal(err)
	}
	s, err := tr.Stage(control(4))
	if err != nil {
		t.Fatal(err)
	}
	tr.AppendStaged(s, "ref-req-4")
	closeTrail(t, tr)
	if got, want := settled.get(), []string{"ref-req-0", "ref-req-1", "ref-req-2", "ref-req-4"}; !slices.Equal(got, want) {
		t.Errorf("settled %v, want %v", got, want)
	}
	if got := strings.Join(controlIDs(t, dir), ","); got != "req-0,req-1,req-2,req-3,req-4" {
		t.Errorf("control entries %s", got)
	}
	if r := verify(t, dir, VerifyOptions{}); !r.OK() || len(r.Warnings) != 0 {
		t.Fatalf("errors %v warnings %v", r.Errors, r.Warnings)
	}
	// The stored form is an entry without its place in the chain.
	var e Entry
	if err := json.Unmarshal(bytes[1], &e); err != nil || e.Seq != 0 || e.Prev != "" || e.Kind != KindControl || e.RequestID != "req-1" || e.Outcome != OK {
		t.Errorf("staged bytes %s: %+v %v", bytes[1], e, err)
	}
}

// TestStageRefuses: only a successful control-plane call with a request id
// and no PAN is staged.
func TestStageRefuses(t *testing.T) {
	t.Parallel()
	tr := openTrail(t, t.TempDir(), nil)
	defer closeTrail(t, tr)
	for name, edit := range map[string]func(*Event){
		"no request id": func(e *Event) { e.RequestID = "" },
		"no operation":  func(e *Event) { e.Operation = "" },
		"refused":       func(e *Event) { e.Outcome = Refused },
		"a PAN":         func(e *Event) { e.PAN = "4123456789012345" },
	} {
		e := control(1)
		edit(&e)
		if _, err := tr.Stage(e); err == nil {
			t.Errorf("%s: staged", name)
		}
	}
}

// TestAdopt: at start, staged entries the store still holds are appended
// unless the files hold them already (found by request id, in the active
// file or a rotated one), in the order of their times; every one is
// settled; an entry that does not decode is left alone; nothing is
// appended twice across restarts.
func TestAdopt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var tick atomic.Int64 // a clock that moves a millisecond a reading: staging order is time order
	start := time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC)
	tune := func(c *Config) {
		c.RotateBytes = 2048
		c.Now = func() time.Time { return start.Add(time.Duration(tick.Add(1)) * time.Millisecond) }
	}
	tr := openTrail(t, dir, tune)
	store := map[string][]byte{}
	stage := func(tr *Trail, i int) *Staged {
		s, err := tr.Stage(control(i))
		if err != nil {
			t.Fatal(err)
		}
		store["ref-"+control(i).RequestID] = s.Bytes()
		return s
	}
	// 0 and 1 reached the files (the first in a file rotated since), their
	// deletion from the store was lost in a crash.
	tr.AppendStaged(stage(tr, 0), "ref-req-0")
	for i := 10; i < 20; i++ {
		if err := tr.Record(KindControl, control(i)); err != nil {
			t.Fatal(err)
		}
	}
	tr.AppendStaged(stage(tr, 1), "ref-req-1")
	closeTrail(t, tr)
	if len(trailFiles(t, dir)) < 2 {
		t.Fatal("no rotation: the test needs entry 0 in a rotated file")
	}
	// 2 and 3 committed with their keys; the process died before the trail
	// wrote them.
	tr = openTrail(t, dir, tune)
	stage(tr, 3) // staged first
	stage(tr, 2)
	store["ref-garbage"] = []byte(`{"v":1,"seq":7`)
	closeTrail(t, tr)

	for round := range 2 {
		tr = openTrail(t, dir, tune)
		settled, err := tr.Adopt(store)
		if err != nil {
			t.Fatal(err)
		}
		closeTrail(t, tr)
		slices.Sort(settled)
		if want := []string{"ref-req-0", "ref-req-1", "ref-req-2", "ref-req-3"}; !slices.Equal(settled, want) {
			t.Errorf("round %d: settled %v, want %v", round, settled, want)
		}
	}
	ids := controlIDs(t, dir)
	if got := strings.Join(ids, ","); !strings.HasSuffix(got, ",req-1,req-3,req-2") || strings.Count(got, "req-0,") != 1 {
		t.Errorf("control entries %s: want req-0 and req-1 once, then the two adopted in staging order", got)
	}
	if r := verify(t, dir, VerifyOptions{}); !r.OK() {
		t.Fatalf("errors %v", r.Errors)
	}
}

// TestScanRequestIDs: a file's control entries are found by request id;
// an absent file holds none; a line longer than any entry is an error.
func TestScanRequestIDs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr := openTrail(t, dir, nil)
	for i := range 3 {
		if err := tr.Record(KindControl, control(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Record(KindCeremony, Event{Operation: "rotate", RequestID: "req-9", Outcome: OK}); err != nil {
		t.Fatal(err)
	}
	closeTrail(t, tr)
	ids := map[string]bool{"req-1": false, "req-5": false, "req-9": false}
	first, err := scanRequestIDs(filepath.Join(dir, ActiveName), ids)
	if err != nil || first.IsZero() {
		t.Fatal(first, err)
	}
	if !ids["req-1"] || ids["req-5"] || ids["req-9"] {
		t.Errorf("found %v: want req-1 only (req-9 is not a control entry)", ids)
	}
	if _, err := scanRequestIDs(filepath.Join(dir, "absent.log"), ids); err != nil {
		t.Errorf("an absent file: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x.log"), []byte(strings.Repeat("x", MaxLineBytes+2)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := scanRequestIDs(filepath.Join(dir, "x.log"), ids); err == nil {
		t.Error("a line longer than any entry was read")
	}
}
