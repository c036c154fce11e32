package audit

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// randomEntry is an event entry with every member either empty or drawn
// from alphabet; special makes one string hold a character Marshal escapes.
func randomEntry(rng *rand.Rand, special bool) *Entry {
	const alphabet = "abcXYZ0189 :/-_.@=+,;!#$%'()*?[]^`{|}~"
	str := func() string {
		if rng.IntN(3) == 0 {
			return ""
		}
		b := make([]byte, 1+rng.IntN(24))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	list := func() []string {
		switch rng.IntN(3) {
		case 0:
			return nil
		case 1:
			return []string{}
		}
		l := make([]string, 1+rng.IntN(3))
		for i := range l {
			l[i] = str()
		}
		return l
	}
	ev := &Event{Protocol: str(), Operation: str(), Principal: str(), Source: str(), RequestID: str(), Account: str(),
		Profile: str(), Keys: list(), Custodians: list(), Outcome: Outcome(str()), Error: str(), Detail: str(),
		Online: rng.IntN(2) == 0, PAN: str()}
	if n := rng.IntN(4); n > 0 {
		ev.KCVs = map[string]string{}
		for range n {
			ev.KCVs[str()] = str()
		}
	} else if rng.IntN(2) == 0 {
		ev.KCVs = map[string]string{}
	}
	e := &Entry{V: Version, Seq: rng.Uint64N(1 << 40), Kind: []Kind{KindControl, KindData, KindCeremony, KindDenial}[rng.IntN(4)],
		Prev: strings.Repeat("0f", HashSize), Event: ev, MaskedPAN: str(), PANHash: str(),
		Time: time.Unix(rng.Int64N(1<<34), rng.Int64N(1e9)).UTC()}
	if rng.IntN(4) == 0 {
		e.Time = e.Time.Truncate(time.Second)
	}
	if special {
		escaped := []string{`"`, `\`, "<", ">", "&", "\n", "\x00", "é", "\u2028", "\xff"}[rng.IntN(10)]
		targets := []*string{&ev.Protocol, &ev.Operation, &ev.Principal, &ev.Source, &ev.RequestID, &ev.Account,
			&ev.Profile, &ev.Error, &ev.Detail, &e.MaskedPAN, &e.PANHash}
		t := targets[rng.IntN(len(targets))]
		*t += escaped
	}
	return e
}

// TestAppendEntryJSONMatchesMarshal: for 20,000 random event entries the
// encoder writes exactly Marshal's bytes, and it declines every entry with
// a string Marshal escapes (half of them), every entry that is not an event
// and every time that is not UTC; the declined ones go to Marshal.
func TestAppendEntryJSONMatchesMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	for i := range 20_000 {
		special := i%2 == 1
		e := randomEntry(rng, special)
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		prefix := []byte("prefix")
		got, ok := appendEntryJSON(prefix, e)
		if special {
			if ok {
				t.Fatalf("entry %d: accepted a string Marshal escapes: %s", i, got[len(prefix):])
			}
			continue
		}
		if !ok {
			t.Fatalf("entry %d: declined a plain entry: %s", i, want)
		}
		if !bytes.Equal(got[len(prefix):], want) || string(got[:len(prefix)]) != "prefix" {
			t.Fatalf("entry %d:\n got %s\nwant %s", i, got, want)
		}
	}
	for _, e := range []*Entry{
		{Kind: KindSeal, Seal: &Seal{}},
		{Kind: KindStart, Start: &Start{}},
		{Kind: KindNotice, Notice: &Notice{}},
		{Kind: KindControl},
		{Kind: KindControl, Event: &Event{Operation: "x", Outcome: OK}, Hash: "ab"},
		{Kind: KindControl, Event: &Event{Operation: "x", Outcome: OK}, Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Kind: KindControl, Event: &Event{Operation: "x", Outcome: OK}, Time: time.Now().In(time.FixedZone("x", 3600))},
		{Kind: KindControl, Event: &Event{Operation: "x", Outcome: OK, KCVs: map[string]string{"a<": "1"}}},
		{Kind: KindControl, Event: &Event{Operation: "x", Outcome: OK, Keys: []string{"a", "b&"}}},
	} {
		if b, ok := appendEntryJSON(nil, e); ok {
			t.Errorf("accepted %+v: %s", e, b)
		}
	}
}

// TestEncodeEntryLine: the line of an entry the fast encoder takes and of
// one it declines both parse back (ParseLine) with the hash they were
// chained with, and appending to a buffer leaves what it held.
func TestEncodeEntryLine(t *testing.T) {
	var prev [HashSize]byte
	prev[0] = 7
	for _, detail := range []string{"plain", `quoted "<&>"`} {
		e := &Entry{Kind: KindControl, Seq: 3, Time: time.Date(2026, 12, 5, 1, 2, 3, 4, time.UTC),
			Event: &Event{Operation: "CreateKey", Outcome: OK, Detail: detail, KCVs: map[string]string{"b": "2", "a": "1"}}}
		buf, h, err := appendEntryLine([]byte("held\n"), e, prev)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(buf, []byte("held\n")) || buf[len(buf)-1] != '\n' {
			t.Fatalf("%q", buf)
		}
		p, err := ParseLine(buf[len("held\n") : len(buf)-1])
		if err != nil {
			t.Fatal(err)
		}
		if p.Computed != h || p.Stated != h || p.PrevHash != prev || p.Detail != detail || p.KCVs["a"] != "1" {
			t.Fatalf("parsed %+v", p)
		}
	}
}

// FuzzAppendEntryJSON: whatever the strings, the encoder either declines or
// writes Marshal's bytes.
func FuzzAppendEntryJSON(f *testing.F) {
	f.Add("aws", "CreateKey", "AKIA", "127.0.0.1:1", "k1", "a<b", true, int64(1e9))
	f.Add("", "", "", "", "", "", false, int64(0))
	f.Fuzz(func(t *testing.T, protocol, operation, principal, key, kcvName, detail string, online bool, unix int64) {
		e := &Entry{V: Version, Seq: 1, Kind: KindControl, Prev: strings.Repeat("ab", HashSize), Time: time.Unix(unix, 0).UTC(),
			Event: &Event{Protocol: protocol, Operation: operation, Principal: principal, Keys: []string{key},
				KCVs: map[string]string{kcvName: detail}, Outcome: OK, Detail: detail, Online: online}}
		got, ok := appendEntryJSON(nil, e)
		if !ok {
			return
		}
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("accepted what Marshal refuses (%v): %s", err, got)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}
