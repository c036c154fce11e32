package daemon

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"payhsm/audit"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestAuditOutboxWatermark: the watermark is the oldest entry staged and
// neither settled nor abandoned (else now), written at most once a second;
// a stop with nothing in flight is clean, and a start after a clean stop
// reads no key.
func TestAuditOutboxWatermark(t *testing.T) {
	t.Parallel()
	_, store := opstest.NewWithStore(t)
	clock := &fakeClock{t: time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC)}
	o := newAuditOutbox(store, zap.NewNop())
	o.now = clock.now
	watermark := func() string {
		b, err := store.GetMeta(outboxWatermark)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	at := func(d time.Duration) string { return clock.t.Add(d).Format(time.RFC3339Nano) }
	over, err := o.adopt(nil, "000000000000", nil) // a fresh store: nothing staged, nothing read
	if err != nil {
		t.Fatal(err)
	}
	<-over
	if got := watermark(); got != "2026-12-06T02:00:00Z" {
		t.Errorf("watermark at start %q", got)
	}
	clock.add(2 * time.Second)
	a := o.Staging("a")
	clock.add(time.Millisecond)
	o.Staging("b")
	clock.add(time.Millisecond)
	o.settled([]string{"b"})
	if got, want := watermark(), a.Format(time.RFC3339Nano); got != want {
		t.Errorf("watermark with a in flight %q, want %q", got, want)
	}
	o.Abandoned("a")
	clock.add(500 * time.Millisecond)
	o.settled(nil)
	if got, want := watermark(), a.Format(time.RFC3339Nano); got != want {
		t.Errorf("watermark written again within a second: %q", got)
	}
	clock.add(time.Second)
	o.settled(nil)
	if got, want := watermark(), at(0); got != want {
		t.Errorf("watermark with nothing in flight %q, want %q", got, want)
	}
	o.Staging("c")
	o.close()
	if got := watermark(); strings.HasSuffix(got, " clean") {
		t.Errorf("a stop with c in flight is clean: %q", got)
	}
	o.Abandoned("c")
	o.close()
	if got, want := watermark(), at(0)+" clean"; got != want {
		t.Errorf("watermark of a clean stop %q, want %q", got, want)
	}
}

// TestAuditOutboxAdopt: after a stop that did not close the trail, the
// keys created since the watermark (less the margin) whose entries the
// files lack are appended, in the background, once; older keys and keys
// whose entries the files hold are not; the watermark stays at the start
// of the search until it is over.
func TestAuditOutboxAdopt(t *testing.T) {
	t.Parallel()
	svc, store := opstest.NewWithStore(t)
	dir := t.TempDir()
	trail, err := audit.Open(audit.Config{Dir: dir, Key: bytes.Repeat([]byte{7}, audit.RootKeySize), Writer: "test"})
	if err != nil {
		t.Fatal(err)
	}
	attrs := keyspec.Attributes{Usage: keyspec.M3, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
		Modes: keyspec.ModesOfUse{Generate: true, Verify: true}}
	create := func(req string) string {
		k, err := svc.CreateKey(ops.CreateKeyInput{Attributes: attrs, AuditOutbox: func(string) (string, error) {
			return "AKPHTEST 127.0.0.1:5555 " + req, nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		return k.ARN
	}
	old := create("req-old") // before the watermark's margin
	time.Sleep(outboxMargin + 100*time.Millisecond)
	w := time.Now()
	inFile := create("req-in-file")
	st, err := audit.NewStaged(audit.Event{Protocol: "aws", Operation: "CreateKey", Principal: "AKPHTEST", Source: "127.0.0.1:5555",
		RequestID: "req-in-file", Account: "000000000000", Keys: []string{inFile}, Outcome: audit.OK}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	trail.AppendStaged(st)
	if err := trail.Close(); err != nil { // the entry reached the file
		t.Fatal(err)
	}
	if trail, err = audit.Open(audit.Config{Dir: dir, Key: bytes.Repeat([]byte{7}, audit.RootKeySize), Writer: "test"}); err != nil {
		t.Fatal(err)
	}
	lost := create("req-lost") // its entry never did
	if err := store.PutMeta(outboxWatermark, []byte(w.UTC().Format(time.RFC3339Nano))); err != nil {
		t.Fatal(err)
	}

	for round := range 2 {
		o := newAuditOutbox(store, zap.NewNop())
		over, err := o.adopt(trail, "000000000000", svc.KeyARN)
		if err != nil {
			t.Fatal(err)
		}
		<-over
		o.mu.Lock()
		floor := o.floor
		o.mu.Unlock()
		if !floor.IsZero() {
			t.Errorf("round %d: the floor stays after the adoption: %v", round, floor)
		}
		if err := trail.Close(); err != nil {
			t.Fatal(err)
		}
		counts := createEntries(t, dir)
		if counts[old] != 0 || counts[inFile] != 1 || counts[lost] != 1 {
			t.Errorf("round %d: CreateKey entries %v: want none for %s, one each for %s and %s", round, counts, old, inFile, lost)
		}
		// As after another unclean stop: the watermark not clean.
		if err := store.PutMeta(outboxWatermark, []byte(w.UTC().Format(time.RFC3339Nano))); err != nil {
			t.Fatal(err)
		}
		if trail, err = audit.Open(audit.Config{Dir: dir, Key: bytes.Repeat([]byte{7}, audit.RootKeySize), Writer: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := trail.Close(); err != nil {
		t.Fatal(err)
	}
}

// createEntries counts the CreateKey entries of dir's active file by key.
func createEntries(t *testing.T, dir string) map[string]int {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, audit.ActiveName))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, audit.MaxLineBytes+1)
	for sc.Scan() {
		p, err := audit.ParseLine(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if p.Kind == audit.KindControl && p.Operation == "CreateKey" {
			for _, k := range p.Keys {
				counts[k]++
			}
		}
	}
	return counts
}
