package audit

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseLine: the parser verify runs on every line of a file an attacker
// may have written never panics, and what it accepts is well formed.
func FuzzParseLine(f *testing.F) {
	dir := f.TempDir()
	tr := openTrail(f, dir, func(c *Config) { c.SealEvery = 2 })
	tr.Data(Event{Protocol: "host", Operation: "CY", Outcome: OK, PAN: "4111111111111111", Keys: []string{"@alias/x"}})
	if err := tr.Record(KindControl, control(1)); err != nil {
		f.Fatal(err)
	}
	if err := tr.Deny(Denial{Protocol: "aws", Action: "GetKey", Reason: "no"}); err != nil {
		f.Fatal(err)
	}
	closeTrail(f, tr)
	b, err := os.ReadFile(filepath.Join(dir, ActiveName))
	if err != nil {
		f.Fatal(err)
	}
	for _, l := range bytes.Split(b, []byte{'\n'}) {
		f.Add(l)
	}
	f.Add([]byte(`{"v":1,"seq":1,"time":"2026-01-02T03:04:05Z","kind":"seal","prev":"` + string(bytes.Repeat([]byte("0"), 64)) + `","seal":null,"hash":"` + string(bytes.Repeat([]byte("a"), 64)) + `"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		p, err := ParseLine(line)
		if err != nil {
			return
		}
		if p.Seq == 0 || !p.Kind.valid() || p.V != Version || hex.EncodeToString(p.Stated[:]) != p.Hash || hex.EncodeToString(p.PrevHash[:]) != p.Prev {
			t.Fatalf("accepted a malformed entry: %+v", p.Entry)
		}
		switch p.Kind {
		case KindSeal:
			if p.Seal == nil {
				t.Fatal("seal without seal member")
			}
		case KindStart:
			if p.Start == nil {
				t.Fatal("start without start member")
			}
		case KindNotice:
			if p.Notice == nil {
				t.Fatal("notice without notice member")
			}
		default:
			if p.Event == nil {
				t.Fatal("event entry without event")
			}
		}
	})
}

// TestEveryByteCounts: changing any one byte of any entry is found, by the
// parser or by the hash.
func TestEveryByteCounts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr := openTrail(t, dir, func(c *Config) { c.SealEvery = 2 })
	tr.Data(Event{Protocol: "host", Operation: "CY", Outcome: OK, PAN: "4111111111111111"})
	if err := tr.Record(KindCeremony, Event{Operation: "rotate", Custodians: []string{"alice", "bob"}, KCVs: map[string]string{"profile": "ABC123"}, Outcome: OK}); err != nil {
		t.Fatal(err)
	}
	closeTrail(t, tr)
	b, err := os.ReadFile(filepath.Join(dir, ActiveName))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(b, []byte{'\n'}), []byte{'\n'})
	for n, l := range lines {
		for i := range l {
			for _, d := range []byte{1, 0x20} {
				m := bytes.Clone(l)
				m[i] ^= d
				if p, err := ParseLine(m); err == nil && p.Computed == p.Stated && p.Stated == mustParse(t, l).Stated {
					t.Fatalf("line %d: byte %d changed (%q) and not found", n+1, i, m)
				}
			}
		}
	}
}

func mustParse(t *testing.T, l []byte) *Parsed {
	t.Helper()
	p, err := ParseLine(l)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
