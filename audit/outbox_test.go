package audit

import (
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
	tr := openTrail(t, dir, func(c *Config) { c.Settled, c.SyncInterval = settled.add, time.Hour }) // no sync but those the test makes
	syncs := tr.syncs.Load()
	for i := range 3 {
		s, err := NewStaged(control(i), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		tr.AppendStaged(s)
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
	s, err := NewStaged(control(4), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tr.AppendStaged(s)
	closeTrail(t, tr)
	if got, want := settled.get(), []string{"req-0", "req-1", "req-2", "req-4"}; !slices.Equal(got, want) {
		t.Errorf("settled %v, want %v", got, want)
	}
	if got := strings.Join(controlIDs(t, dir), ","); got != "req-0,req-1,req-2,req-3,req-4" {
		t.Errorf("control entries %s", got)
	}
	if r := verify(t, dir, VerifyOptions{}); !r.OK() || len(r.Warnings) != 0 {
		t.Fatalf("errors %v warnings %v", r.Errors, r.Warnings)
	}
}

// TestStageRefuses: only a successful control-plane call with a request id
// and no PAN is staged.
func TestStageRefuses(t *testing.T) {
	t.Parallel()
	for name, edit := range map[string]func(*Event){
		"no request id": func(e *Event) { e.RequestID = "" },
		"no operation":  func(e *Event) { e.Operation = "" },
		"refused":       func(e *Event) { e.Outcome = Refused },
		"a PAN":         func(e *Event) { e.PAN = "4123456789012345" },
	} {
		e := control(1)
		edit(&e)
		if _, err := NewStaged(e, time.Now()); err == nil {
			t.Errorf("%s: staged", name)
		}
	}
}

// TestAdopt: at start, the staged entries the store says may be missing
// are appended unless the files hold them already (found by request id, in
// the active file or a rotated one), in the order of their times; nothing
// is appended twice across restarts.
func TestAdopt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tune := func(c *Config) { c.RotateBytes = 2048 }
	t0 := time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC)
	staged := func(i int, at time.Duration) *Staged {
		s, err := NewStaged(control(i), t0.Add(at))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// 0 and 1 reached the files (0 in a file rotated since).
	tr := openTrail(t, dir, tune)
	tr.AppendStaged(staged(0, 0))
	for i := 10; i < 20; i++ {
		if err := tr.Record(KindControl, control(i)); err != nil {
			t.Fatal(err)
		}
	}
	tr.AppendStaged(staged(1, time.Second))
	closeTrail(t, tr)
	if len(trailFiles(t, dir)) < 2 {
		t.Fatal("no rotation: the test needs entry 0 in a rotated file")
	}
	// 2 and 3 committed; the process died before the trail wrote them. 3 was
	// staged first.
	all := []*Staged{staged(2, 3*time.Second), staged(0, 0), staged(3, 2*time.Second), staged(1, time.Second)}
	for round, want := range []int{2, 0} {
		tr = openTrail(t, dir, tune)
		n, err := tr.Adopt(all)
		if err != nil {
			t.Fatal(err)
		}
		closeTrail(t, tr)
		if n != want {
			t.Errorf("round %d: appended %d, want %d", round, n, want)
		}
	}
	if got := strings.Join(controlIDs(t, dir), ","); !strings.HasSuffix(got, ",req-1,req-3,req-2") || strings.Count(got, "req-0,") != 1 {
		t.Errorf("control entries %s: want req-0 and req-1 once, then the two adopted in the order of their times", got)
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

// TestStagedEntriesOutliveAWriteFailure: a staged entry whose write failed,
// and one that came while the trail could not write, are appended once it
// writes again, after the failure's notice, and settled then; nothing is
// appended twice.
func TestStagedEntriesOutliveAWriteFailure(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now, clock := testClock(time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC))
	var settled settledRefs
	tr := openTrail(t, dir, func(c *Config) { c.Now, c.Settled = clock, settled.add })
	stage := func(i int) {
		s, err := NewStaged(control(i), clock())
		if err != nil {
			t.Fatal(err)
		}
		tr.AppendStaged(s)
	}
	if err := tr.Record(KindControl, control(1)); err != nil {
		t.Fatal(err)
	}
	// The disk fails with staged entry 2 buffered: the write of record 3
	// takes it down with it.
	restore := failWrites(t, tr)
	stage(2)
	if err := tr.Record(KindControl, control(3)); err == nil {
		t.Fatal("a record on a failing disk succeeded")
	}
	stage(4) // while the trail cannot write
	if got := settled.get(); len(got) != 0 {
		t.Errorf("settled %v before any was written", got)
	}
	restore()
	now.Add(int64(2 * time.Second))
	if err := tr.Record(KindControl, control(5)); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	closeTrail(t, tr)
	if got := strings.Join(controlIDs(t, dir), ","); got != "req-1,req-2,req-4,req-5" {
		t.Errorf("control entries %s, want req-1, the two staged ones, req-5 (req-3 was refused)", got)
	}
	got := settled.get()
	slices.Sort(got)
	if want := []string{"req-2", "req-4"}; !slices.Equal(got, want) {
		t.Errorf("settled %v, want %v", got, want)
	}
	if r := verify(t, dir, VerifyOptions{}); !r.OK() {
		t.Fatalf("errors %v", r.Errors)
	}
}

// testClock is a clock a test moves: the time, and a Config.Now reading it.
func testClock(start time.Time) (*atomic.Int64, func() time.Time) {
	var now atomic.Int64
	now.Store(start.UnixNano())
	return &now, func() time.Time { return time.Unix(0, now.Load()) }
}

// failWrites makes tr's writes fail (its active file swapped for a
// read-only one) and returns what puts the file back.
func failWrites(t *testing.T, tr *Trail) (restore func()) {
	t.Helper()
	ro, err := os.Open(filepath.Join(tr.cfg.Dir, ActiveName))
	if err != nil {
		t.Fatal(err)
	}
	tr.mu.Lock()
	good := tr.f
	tr.f = ro
	tr.mu.Unlock()
	return func() {
		tr.mu.Lock()
		tr.f = good
		tr.mu.Unlock()
		if err := ro.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
