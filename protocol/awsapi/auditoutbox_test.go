package awsapi

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"payhsm/audit"
	"payhsm/ops/opstest"
	"payhsm/protocol/awsapi/sigv4"
)

// fakeOutbox is an AuditOutbox that remembers what was staged and
// abandoned.
type fakeOutbox struct {
	mu        sync.Mutex
	staged    []string
	abandoned []string
}

func (o *fakeOutbox) Staging(ref string) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.staged = append(o.staged, ref)
	return time.Now()
}

func (o *fakeOutbox) Abandoned(ref string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.abandoned = append(o.abandoned, ref)
}

// TestAuditOutboxCreateKey: with an outbox, CreateKey's key record carries
// who created it, its entry is appended without a sync of its own and
// settled by the trail's next one; the entry StagedCreateKey rebuilds from
// the key record is the one the call appended; a CreateKey that fails
// abandons what it staged and is recorded as before; other calls are
// recorded as before.
func TestAuditOutboxCreateKey(t *testing.T) {
	dir := t.TempDir()
	svc, store := opstest.NewWithStore(t)
	v := &sigv4.Verifier{Creds: sigv4.StaticCredentials{testAccessKey: testSecret}, Region: "us-east-1", Service: "payment-cryptography"}
	s := New(svc, v, zap.NewNop())
	var settled []string
	var smu sync.Mutex
	trail, err := audit.Open(audit.Config{Dir: dir, Key: bytes.Repeat([]byte{3}, audit.RootKeySize), Writer: "test",
		Settled: func(refs []string) { smu.Lock(); settled = append(settled, refs...); smu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	s.SetAudit(trail, "000000000000", false)
	ob := &fakeOutbox{}
	s.SetAuditOutbox(ob)

	status, m, reqID := call(t, s, testSecret, "CreateKey", "/", map[string]any{"Exportable": true, "KeyAttributes": cvkAttributes})
	if status != 200 {
		t.Fatalf("CreateKey: %d %v", status, m)
	}
	arn := m["Key"].(map[string]any)["KeyArn"].(string)
	rec, err := store.GetKey(arn[strings.LastIndexByte(arn, '/')+1:])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rec.CreatedBy, testAccessKey+" ") || !strings.HasSuffix(rec.CreatedBy, " "+reqID) {
		t.Errorf("CreatedBy %q", rec.CreatedBy)
	}
	// An invalid creation: refused before anything is staged.
	if status, _, _ := call(t, s, testSecret, "CreateKey", "/", map[string]any{"Exportable": true,
		"KeyAttributes": map[string]any{"KeyUsage": "TR31_C0_CARD_VERIFICATION_KEY", "KeyClass": "SYMMETRIC_KEY", "KeyAlgorithm": "RSA_2048",
			"KeyModesOfUse": map[string]any{"Generate": true}}}); status != 400 {
		t.Fatalf("an invalid CreateKey answered %d", status)
	}
	// A store that refuses writes: staged, then abandoned, recorded failed.
	store.SetWriteGate(func() error { return errors.New("test: writes refused") })
	status, _, failedID := call(t, s, testSecret, "CreateKey", "/", map[string]any{"Exportable": true, "KeyAttributes": cvkAttributes})
	store.SetWriteGate(nil)
	if status == 200 {
		t.Fatal("CreateKey through a closed write gate succeeded")
	}
	if status, _, _ := call(t, s, testSecret, "GetKey", "/", map[string]any{"KeyIdentifier": arn}); status != 200 {
		t.Fatalf("GetKey: %d", status)
	}
	if err := trail.Close(); err != nil {
		t.Fatal(err)
	}

	ob.mu.Lock()
	if !slices.Equal(ob.staged, []string{reqID, failedID}) || !slices.Equal(ob.abandoned, []string{failedID}) {
		t.Errorf("staged %v, abandoned %v; want %s staged, %s staged and abandoned", ob.staged, ob.abandoned, reqID, failedID)
	}
	ob.mu.Unlock()
	if !slices.Contains(settled, reqID) || slices.Contains(settled, failedID) {
		t.Errorf("settled %v", settled)
	}
	var created *audit.Parsed
	var ops []string
	for _, e := range trailEntries(t, dir) {
		if e.Kind != audit.KindControl {
			continue
		}
		ops = append(ops, e.Operation+":"+string(e.Outcome))
		if e.RequestID == reqID {
			created = e
		}
	}
	if strings.Join(ops, ",") != "CreateKey:ok,CreateKey:refused,CreateKey:failed,GetKey:ok" {
		t.Errorf("control entries %v", ops)
	}
	if created == nil {
		t.Fatal("no entry for the CreateKey")
	}
	again, err := StagedCreateKey("000000000000", arn, rec.CreatedBy, rec.Created)
	if err != nil {
		t.Fatal(err)
	}
	// Adopted into a trail of its own, it reads as the call's entry (but for
	// its time: the key's, a moment before the entry's).
	dir2 := t.TempDir()
	tr2, err := audit.Open(audit.Config{Dir: dir2, Key: bytes.Repeat([]byte{3}, audit.RootKeySize), Writer: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := tr2.Adopt([]*audit.Staged{again}); n != 1 || err != nil {
		t.Fatalf("adopt: %d, %v", n, err)
	}
	if err := tr2.Close(); err != nil {
		t.Fatal(err)
	}
	var adopted *audit.Parsed
	for _, e := range trailEntries(t, dir2) {
		if e.Kind == audit.KindControl {
			adopted = e
		}
	}
	a, c := *adopted.Event, *created.Event
	if !slices.Equal(a.Keys, c.Keys) || a.Principal != c.Principal || a.Source != c.Source || a.RequestID != c.RequestID ||
		a.Account != c.Account || a.Protocol != c.Protocol || a.Operation != c.Operation || a.Outcome != c.Outcome {
		t.Errorf("rebuilt entry %+v, the call's %+v", a, c)
	}
	if d := created.Time.Sub(adopted.Time); d < 0 || d > time.Second {
		t.Errorf("the call's entry at %v, the key created at %v", created.Time, adopted.Time)
	}
}

// TestCreatedBy: only parts without spaces or characters JSON escapes are
// kept in a key record; StagedCreateKey refuses what is not three parts.
func TestCreatedBy(t *testing.T) {
	if by, ok := createdBy("AKPH", "10.0.0.1:443", "r-1"); !ok || by != "AKPH 10.0.0.1:443 r-1" {
		t.Errorf("createdBy %q %v", by, ok)
	}
	for _, p := range []string{"", "a b", "a\"b", "a\\b", "a<b", "\u00e9", strings.Repeat("a", 257)} {
		if _, ok := createdBy(p, "s", "r"); ok {
			t.Errorf("principal %q kept", p)
		}
	}
	for _, by := range []string{"", "a b", "a b c d"} {
		if _, err := StagedCreateKey("0", "arn", by, time.Now()); err == nil {
			t.Errorf("CreatedBy %q accepted", by)
		}
	}
}
