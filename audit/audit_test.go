package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func readEntries(t *testing.T, path string) []Entry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []Entry
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRecordAppendsJSONLines(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := l.Record(Entry{Time: at, Operation: "init", Outcome: Refused, Detail: "already initialized"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopening appends; it never truncates.
	l, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, l)
	if err := l.Record(Entry{Operation: "rotate", Profile: "default", Custodians: []string{"alice", "bob"}, Outcome: OK,
		KCVs: map[string]string{"profile": "ABCDEF"}, Online: true}); err != nil {
		t.Fatal(err)
	}
	got := readEntries(t, path)
	if len(got) != 2 {
		t.Fatalf("%d entries, want 2", len(got))
	}
	if !got[0].Time.Equal(at) || got[0].Operation != "init" || got[0].Outcome != Refused || got[0].Online {
		t.Errorf("first entry %+v", got[0])
	}
	if got[1].Time.IsZero() || got[1].Outcome != OK || got[1].KCVs["profile"] != "ABCDEF" || !got[1].Online || got[1].Custodians[1] != "bob" {
		t.Errorf("second entry %+v", got[1])
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v; want 0600", fi.Mode(), err)
	}
}

func TestRecordErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		open func(t *testing.T) *Log
		e    Entry
		want string
	}{
		{"no operation", openTemp, Entry{Outcome: OK}, "needs an operation"},
		{"no outcome", openTemp, Entry{Operation: "init"}, "needs an operation and an outcome"},
		{"closed", func(t *testing.T) *Log {
			l := openTemp(t)
			closeT(t, l)
			return l
		}, Entry{Operation: "init", Outcome: OK}, "closed"},
		{"disk full", openFull, Entry{Operation: "init", Outcome: OK}, "no space left"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := tc.open(t)
			err := l.Record(tc.e)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Record = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestFailureIsSticky: after a failed write the log refuses every later
// record, so no ceremony step goes on with an unknown audit trail.
func TestFailureIsSticky(t *testing.T) {
	t.Parallel()
	l := openFull(t)
	if err := l.Record(Entry{Operation: "a", Outcome: OK}); err == nil {
		t.Fatal("write to a full device succeeded")
	}
	err := l.Record(Entry{Operation: "b", Outcome: OK})
	if err == nil || !strings.Contains(err.Error(), "unusable after an earlier failure") {
		t.Fatalf("second Record = %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, path := range []string{filepath.Join(dir, "missing", "audit.log"), dir} {
		if l, err := Open(path); err == nil {
			t.Errorf("Open(%s) succeeded (Close: %v)", path, l.Close())
		}
	}
}

func TestConcurrentRecordsStayWholeLines(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, l)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				if err := l.Record(Entry{Operation: "op", Outcome: OK, Detail: strings.Repeat("x", 500)}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if n := len(readEntries(t, path)); n != 80 {
		t.Errorf("%d entries, want 80", n)
	}
}

func openTemp(t *testing.T) *Log {
	t.Helper()
	l, err := Open(filepath.Join(t.TempDir(), "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeT(t, l) })
	return l
}

// closeT closes c, failing the test when that fails.
func closeT(t *testing.T, c io.Closer) {
	t.Helper()
	if err := c.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

// openFull opens /dev/full, whose every write fails with ENOSPC.
func openFull(t *testing.T) *Log {
	t.Helper()
	l, err := Open("/dev/full")
	if err != nil {
		t.Skipf("/dev/full: %v", err)
	}
	t.Cleanup(func() { closeT(t, l) })
	return l
}
