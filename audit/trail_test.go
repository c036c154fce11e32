package audit

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testKey is a fixed trail root key (the daemon gets its key from custody).
var testKey = bytes.Repeat([]byte{0x5a}, RootKeySize)

func openTrail(t testing.TB, dir string, tune func(*Config)) *Trail {
	t.Helper()
	cfg := Config{Dir: dir, Key: testKey, Writer: "test"}
	if tune != nil {
		tune(&cfg)
	}
	tr, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func closeTrail(t testing.TB, tr *Trail) {
	t.Helper()
	if err := tr.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// trailFiles lists dir's trail files in chain order.
func trailFiles(t testing.TB, dir string) []string {
	t.Helper()
	names, err := rotatedFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		out = append(out, filepath.Join(dir, n))
	}
	if _, err := os.Stat(filepath.Join(dir, ActiveName)); err == nil {
		out = append(out, filepath.Join(dir, ActiveName))
	}
	return out
}

func verify(t testing.TB, dir string, opt VerifyOptions) *Report {
	t.Helper()
	if opt.Seals == nil {
		c, err := KeyChecker(testKey)
		if err != nil {
			t.Fatal(err)
		}
		opt.Seals = c
	}
	r, err := VerifyFiles(trailFiles(t, dir), opt)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// readAll parses every entry of dir's files.
func readAll(t testing.TB, dir string) []*Parsed {
	t.Helper()
	var out []*Parsed
	for _, path := range trailFiles(t, dir) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, MaxLineBytes), MaxLineBytes)
		for sc.Scan() {
			p, err := ParseLine(sc.Bytes())
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			out = append(out, p)
		}
	}
	return out
}

func control(i int) Event {
	return Event{Protocol: "aws", Operation: "CreateKey", Principal: "AKPHTEST", Source: "127.0.0.1:5555",
		RequestID: fmt.Sprintf("req-%d", i), Account: "000000000000", Keys: []string{fmt.Sprintf("arn:aws:payment-cryptography:us-east-1:000000000000:key/k%015d", i)},
		Outcome: OK}
}

// buildTrail writes a trail of several files: a writer that seals every 5
// entries and rotates at 2 KiB, closed and reopened once.
func buildTrail(t testing.TB, dir string) {
	t.Helper()
	tune := func(c *Config) { c.SealEvery, c.RotateBytes = 5, 2048 }
	for round := 0; round < 2; round++ {
		tr := openTrail(t, dir, tune)
		for i := 0; i < 20; i++ {
			if err := tr.Record(KindControl, control(round*100+i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := tr.Deny(Denial{Protocol: "aws", Principal: "AKPHOTHER", Action: "GetKey", Reason: "signature mismatch"}); err != nil {
			t.Fatal(err)
		}
		if err := tr.Record(KindCeremony, Event{Protocol: "console", Operation: "rotate", Profile: "default", Custodians: []string{"alice", "bob"},
			KCVs: map[string]string{"profile": "ABCDEF"}, Outcome: Started}); err != nil {
			t.Fatal(err)
		}
		closeTrail(t, tr)
	}
}

func TestTrailVerifies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	buildTrail(t, dir)
	files := trailFiles(t, dir)
	if len(files) < 3 {
		t.Fatalf("%d files, want a rotated trail", len(files))
	}
	r := verify(t, dir, VerifyOptions{})
	if !r.OK() || len(r.Warnings) != 0 {
		t.Fatalf("errors %v warnings %v", r.Errors, r.Warnings)
	}
	entries := readAll(t, dir)
	if r.Entries != len(entries) || r.First != 1 || r.Last != uint64(len(entries)) || r.Seals == 0 || r.SealsChecked != r.Seals || r.Unsealed != 0 {
		t.Fatalf("report %+v for %d entries", r, len(entries))
	}
	// The chain continues across files: each file after the first starts
	// with a start entry naming the previous file, chained to its last entry.
	for _, path := range files[1:] {
		b, _ := os.ReadFile(path)
		p, err := ParseLine(b[:bytes.IndexByte(b, '\n')])
		if err != nil {
			t.Fatal(err)
		}
		if p.Kind != KindStart || p.Start.Reason != StartRotate || p.Start.PrevFile == "" || p.Seq == 1 {
			t.Errorf("%s starts with %+v", path, p.Entry)
		}
	}
	var kinds = map[Kind]int{}
	for _, e := range entries {
		kinds[e.Kind]++
	}
	if kinds[KindControl] != 40 || kinds[KindDenial] != 2 || kinds[KindCeremony] != 2 || kinds[KindStart] < 4 {
		t.Errorf("kinds %v", kinds)
	}
	// The second writer found a clean end: its start entry says so.
	for _, e := range entries {
		if e.Kind == KindStart && e.Start.Unclean {
			t.Errorf("seq %d: unclean start after a clean close", e.Seq)
		}
	}
}

// tamper is one way to alter a trail and where verify must say it is.
type tamper struct {
	name  string
	alter func(t *testing.T, files []string)
	file  int // index in the file list (-1: the last file) of the first error
	line  int
	want  string
	opt   VerifyOptions
}

func TestVerifyFindsTampering(t *testing.T) {
	t.Parallel()
	tests := []tamper{
		{name: "one byte edited", file: 0, line: 4, want: "content does not match its hash",
			alter: func(t *testing.T, f []string) {
				editLine(t, f[0], 4, func(l []byte) []byte { return bytes.Replace(l, []byte("req-"), []byte("reX-"), 1) })
			}},
		{name: "entry edited and its hash recomputed", file: 0, line: 5, want: "does not chain to entry 4",
			alter: func(t *testing.T, f []string) {
				editLine(t, f[0], 4, func(l []byte) []byte { return rehash(t, bytes.Replace(l, []byte(`"ok"`), []byte(`"failed"`), 1)) })
			}},
		{name: "file rewritten from an entry on, chain recomputed", file: 0, line: 6, want: "seal does not verify",
			alter: func(t *testing.T, f []string) { rewriteFrom(t, f, 0, 3) }},
		{name: "entry deleted", file: 0, line: 4, want: "entry 4 missing before this line: deleted",
			alter: func(t *testing.T, f []string) { deleteLine(t, f[0], 4) }},
		{name: "two entries swapped", file: 0, line: 3, want: "entries reordered (3 is at",
			alter: func(t *testing.T, f []string) { swapLines(t, f[0], 3, 4) }},
		{name: "entry duplicated", file: 0, line: 4, want: "repeats",
			alter: func(t *testing.T, f []string) { duplicateLine(t, f[0], 3) }},
		{name: "last file cut mid-line", file: -1, want: "incomplete last line",
			alter: func(t *testing.T, f []string) { cutBytes(t, f[len(f)-1], 10) }},
		{name: "last file cut at a line", file: -1, want: "ends without a closing seal",
			alter: func(t *testing.T, f []string) { cutLines(t, f[len(f)-1], 2) }},
		{name: "middle file cut at a line", file: 2, line: 1, want: "missing before this file",
			alter: func(t *testing.T, f []string) { cutLines(t, f[1], 3) }},
		{name: "middle file removed", file: 2, line: 1, want: "missing before this file",
			alter: func(t *testing.T, f []string) {
				if err := os.Remove(f[1]); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "line replaced by garbage", file: 0, line: 6, want: "not an audit entry",
			alter: func(t *testing.T, f []string) {
				editLine(t, f[0], 6, func([]byte) []byte { return []byte(`{"hello":"world"}`) })
			}},
		{name: "seal forged under another key", file: 0, line: 7, want: "neither this appliance's key",
			alter: func(t *testing.T, f []string) {
				editLine(t, f[0], 7, func(l []byte) []byte {
					p, _ := ParseLine(l)
					return rehash(t, bytes.Replace(l, []byte(p.Seal.KeyID), []byte("0123456789abcdef"), 1))
				})
			}},
		{name: "verified with another appliance's key", file: 0, line: 6, want: "neither this appliance's key",
			alter: func(*testing.T, []string) {},
			opt:   VerifyOptions{Seals: mustChecker(t, bytes.Repeat([]byte{1}, RootKeySize))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			buildTrail(t, dir)
			files := trailFiles(t, dir)
			if r := verify(t, dir, VerifyOptions{}); !r.OK() {
				t.Fatalf("untampered trail: %v", r.Errors)
			}
			tc.alter(t, files)
			var present []string
			for _, f := range files {
				if _, err := os.Stat(f); err == nil {
					present = append(present, f)
				}
			}
			opt := tc.opt
			if opt.Seals == nil {
				opt.Seals = mustChecker(t, testKey)
			}
			r, err := VerifyFiles(present, opt)
			if err != nil {
				t.Fatal(err)
			}
			if r.OK() {
				t.Fatal("tampering not found")
			}
			wantFile := files[len(files)-1]
			if tc.file >= 0 {
				wantFile = files[tc.file]
			}
			found := false
			for _, got := range r.Errors {
				if got.File == wantFile && (tc.line == 0 || got.Line == tc.line) && strings.Contains(got.Message, tc.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("want an error at %s:%d %q; got %v", filepath.Base(wantFile), tc.line, tc.want, r.Errors)
			}
			if first := r.Errors[0]; first.File != wantFile || (tc.line > 0 && first.Line > tc.line) {
				t.Errorf("the first error %v is not where the trail was altered (%s:%d)", first, filepath.Base(wantFile), tc.line)
			}
		})
	}
}

func mustChecker(t testing.TB, key []byte) SealChecker {
	t.Helper()
	c, err := KeyChecker(key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fileLines(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte{'\n'})
}

func writeLines(t testing.TB, path string, lines [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

// editLine replaces line n (1-based) of path, without its newline, by edit's result.
func editLine(t testing.TB, path string, n int, edit func([]byte) []byte) {
	t.Helper()
	lines := fileLines(t, path)
	l := bytes.TrimSuffix(lines[n-1], []byte{'\n'})
	lines[n-1] = append(edit(bytes.Clone(l)), '\n')
	writeLines(t, path, lines)
}

// rehash recomputes a line's hash for its content and prev, as someone who
// edits an entry without the key can.
func rehash(t testing.TB, line []byte) []byte {
	t.Helper()
	body := append(bytes.Clone(line[:len(line)-hashSuffixLen]), '}')
	var e struct {
		Prev string `json:"prev"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatal(err)
	}
	var prev [HashSize]byte
	if _, err := hex.Decode(prev[:], []byte(e.Prev)); err != nil {
		t.Fatal(err)
	}
	h := chainHash(prev, body)
	return fmt.Appendf(body[:len(body)-1], `,"hash":"%x"}`, h[:])
}

// rewriteFrom edits line n of file fi and recomputes the chain (prev and
// hash of every later entry of every file), as a forger without the seal
// key can.
func rewriteFrom(t testing.TB, files []string, fi, n int) {
	t.Helper()
	var prev string
	for i := fi; i < len(files); i++ {
		lines := fileLines(t, files[i])
		for j := range lines {
			l := bytes.TrimSuffix(lines[j], []byte{'\n'})
			if len(l) == 0 {
				continue
			}
			if i == fi && j+1 < n {
				p, _ := ParseLine(l)
				prev = p.Hash
				continue
			}
			if i == fi && j+1 == n {
				l = bytes.Replace(l, []byte("AKPHTEST"), []byte("AKPHEVIL"), 1)
			}
			p, _ := ParseLine(l)
			l = bytes.Replace(l, []byte(`"prev":"`+p.Prev+`"`), []byte(`"prev":"`+prev+`"`), 1)
			l = rehash(t, l)
			np, _ := ParseLine(l)
			prev = np.Hash
			lines[j] = append(l, '\n')
		}
		writeLines(t, files[i], lines)
	}
}

func deleteLine(t testing.TB, path string, n int) {
	t.Helper()
	lines := fileLines(t, path)
	writeLines(t, path, append(lines[:n-1:n-1], lines[n:]...))
}

func swapLines(t testing.TB, path string, a, b int) {
	t.Helper()
	lines := fileLines(t, path)
	lines[a-1], lines[b-1] = lines[b-1], lines[a-1]
	writeLines(t, path, lines)
}

func duplicateLine(t testing.TB, path string, n int) {
	t.Helper()
	lines := fileLines(t, path)
	out := append([][]byte{}, lines[:n]...)
	out = append(out, lines[n-1])
	writeLines(t, path, append(out, lines[n:]...))
}

func cutBytes(t testing.TB, path string, n int64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()-n); err != nil {
		t.Fatal(err)
	}
}

func cutLines(t testing.TB, path string, n int) {
	t.Helper()
	lines := fileLines(t, path)
	lines = lines[:len(lines)-1] // SplitAfter leaves an empty last element
	writeLines(t, path, lines[:len(lines)-n])
}

// TestUncleanStop: a writer that was killed leaves no closing seal; the next
// one says so in its start entry, and verify reports it as a warning.
func TestUncleanStop(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr := openTrail(t, dir, nil)
	for i := 0; i < 5; i++ {
		if err := tr.Record(KindControl, control(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Kill: keep the file as it is now, close (which seals), put it back.
	snapshot, err := os.ReadFile(filepath.Join(dir, ActiveName))
	if err != nil {
		t.Fatal(err)
	}
	closeTrail(t, tr)
	if err := os.WriteFile(filepath.Join(dir, ActiveName), snapshot, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := verify(t, dir, VerifyOptions{}); r.OK() || !strings.Contains(r.Errors[0].Message, "without a closing seal") {
		t.Fatalf("killed trail: %v", r.Errors)
	}
	if r := verify(t, dir, VerifyOptions{Live: true}); !r.OK() || r.Unsealed == 0 {
		t.Fatalf("live: %v, unsealed %d", r.Errors, r.Unsealed)
	}
	closeTrail(t, openTrail(t, dir, nil))
	r := verify(t, dir, VerifyOptions{})
	if !r.OK() || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0].Message, "stopped without closing") {
		t.Fatalf("errors %v warnings %v", r.Errors, r.Warnings)
	}
}

// TestTornTail: an incomplete last line (a write cut by a crash) is cut off
// by the next writer, and recorded with its digest.
func TestTornTail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr := openTrail(t, dir, nil)
	if err := tr.Record(KindControl, control(1)); err != nil {
		t.Fatal(err)
	}
	closeTrail(t, tr)
	f, err := os.OpenFile(filepath.Join(dir, ActiveName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"v":1,"seq":5,"ti`); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	closeTrail(t, openTrail(t, dir, nil))
	r := verify(t, dir, VerifyOptions{})
	if !r.OK() || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0].Message, "incomplete last line of 18 bytes") {
		t.Fatalf("errors %v warnings %v", r.Errors, r.Warnings)
	}
}

// TestAlteredTailRefused: a writer does not continue a chain whose last
// entry is not valid.
func TestAlteredTailRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	closeTrail(t, openTrail(t, dir, nil))
	path := filepath.Join(dir, ActiveName)
	lines := fileLines(t, path)
	editLine(t, path, len(lines)-1, func(l []byte) []byte { return bytes.Replace(l, []byte(`"close"`), []byte(`"clos3"`), 1) })
	if tr, err := Open(Config{Dir: dir, Key: testKey}); err == nil {
		_ = tr.Close()
		t.Fatal("opened a trail whose last entry was altered")
	} else if !strings.Contains(err.Error(), "is not valid") {
		t.Fatal(err)
	}
}

// TestSealsByInterval: a quiet trail is sealed within SealInterval.
func TestSealsByInterval(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr := openTrail(t, dir, func(c *Config) { c.SealInterval, c.SyncInterval = 50*time.Millisecond, 10*time.Millisecond })
	defer closeTrail(t, tr)
	if err := tr.Record(KindControl, control(1)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for tr.Lag().Unsealed != 0 || tr.Lag().Unsynced != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not sealed: %+v", tr.Lag())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := verify(t, dir, VerifyOptions{Live: true}); !r.OK() || r.Seals != 1 || r.Unsealed != 0 {
		t.Fatalf("%+v", r)
	}
}

// TestGroupCommit: concurrent synchronous records share syncs, and each
// returns only once its entry is durable.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr := openTrail(t, dir, nil)
	const callers, each = 32, 20
	var wg sync.WaitGroup
	var done atomic.Int64
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := tr.Record(KindControl, control(i)); err != nil {
					t.Error(err)
					return
				}
				done.Add(1)
				if l := tr.Lag(); l.Failed {
					t.Errorf("lag %+v", l)
				}
			}
		}()
	}
	wg.Wait()
	syncs := tr.syncs.Load()
	closeTrail(t, tr)
	if done.Load() != callers*each {
		t.Fatalf("%d records", done.Load())
	}
	if syncs >= callers*each {
		t.Errorf("%d syncs for %d records: no group commit", syncs, callers*each)
	}
	t.Logf("%d records in %d syncs", callers*each, syncs)
	if r := verify(t, dir, VerifyOptions{}); !r.OK() || r.Entries < callers*each {
		t.Fatalf("%+v", r)
	}
}

// TestDataEventsNeverBlock: with the writer stalled, Data returns at once;
// what does not fit the queue is dropped, counted and noted in the trail.
func TestDataEventsNeverBlock(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr := openTrail(t, dir, func(c *Config) { c.DataQueue = 8 })
	tr.mu.Lock() // stalls the drainer (and the flusher) as a slow disk would
	const n = 200
	start := time.Now()
	for i := 0; i < n; i++ {
		tr.Data(Event{Protocol: "host", Operation: "CA", Outcome: OK, PAN: "4111111111111111"})
	}
	took := time.Since(start)
	tr.mu.Unlock()
	if took > time.Second {
		t.Errorf("Data blocked for %v", took)
	}
	dropped := tr.Lag().Dropped
	if dropped == 0 || dropped > n-8 {
		t.Fatalf("dropped %d of %d with a queue of 8", dropped, n)
	}
	closeTrail(t, tr)
	var written, noted uint64
	for _, e := range readAll(t, dir) {
		switch e.Kind {
		case KindData:
			written++
		case KindNotice:
			noted += e.Notice.Dropped
		}
	}
	if written+noted != n || noted != dropped {
		t.Errorf("%d written + %d noted as dropped, want %d (%d dropped)", written, noted, n, dropped)
	}
	r := verify(t, dir, VerifyOptions{})
	if !r.OK() || len(r.Warnings) == 0 || !strings.Contains(r.Warnings[0].Message, "dropped") {
		t.Fatalf("errors %v warnings %v", r.Errors, r.Warnings)
	}
}

// TestNoSecretInTrail: a PAN is written masked and keyed-hashed only; the
// same PAN hashes alike, another differently.
func TestNoSecretInTrail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr := openTrail(t, dir, nil)
	const pan, other = "4761739001010119", "5413330089020011"
	tr.Data(Event{Protocol: "aws", Operation: "VerifyCardValidationData", Outcome: OK, PAN: pan})
	tr.Data(Event{Protocol: "aws", Operation: "VerifyCardValidationData", Outcome: OK, PAN: pan})
	tr.Data(Event{Protocol: "host", Operation: "CY", Outcome: OK, PAN: other})
	if err := tr.Record(KindControl, Event{Operation: "x", Outcome: OK, PAN: pan}); err != nil {
		t.Fatal(err)
	}
	closeTrail(t, tr)
	raw, err := os.ReadFile(filepath.Join(dir, ActiveName))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{pan, other, pan[6:12], other[6:12], string(testKey)} {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("the trail holds %q", s)
		}
	}
	hashes := map[string]map[string]int{} // masked PAN -> its hashes
	for _, e := range readAll(t, dir) {
		if e.MaskedPAN != "" {
			if hashes[e.MaskedPAN] == nil {
				hashes[e.MaskedPAN] = map[string]int{}
			}
			hashes[e.MaskedPAN][e.PANHash]++
		}
	}
	a, b := hashes["476173******0119"], hashes["541333******0011"]
	if len(hashes) != 2 || len(a) != 1 || len(b) != 1 {
		t.Fatalf("PAN hashes %v", hashes)
	}
	for ha, n := range a {
		for hb := range b {
			if n != 3 || ha == hb || len(ha) != 16 {
				t.Errorf("PAN hashes %v", hashes)
			}
		}
	}
}

// TestWriteFailureAndRecovery: a failed write refuses records (fail
// closed), discards what was not acknowledged, and the trail resumes — cut
// back to its last durable entry — once writing works again, with a notice.
func TestWriteFailureAndRecovery(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now, clock := testClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	tr := openTrail(t, dir, func(c *Config) { c.Now = clock })
	if err := tr.Record(KindControl, control(1)); err != nil {
		t.Fatal(err)
	}
	// The disk fails: the active file is swapped for a read-only one, and
	// bytes of a half-done write are left at its end.
	path := filepath.Join(dir, ActiveName)
	good := tr.f
	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := good.WriteString(`{"v":1,"seq":99,"half`); err != nil {
		t.Fatal(err)
	}
	tr.mu.Lock()
	tr.f = ro
	tr.mu.Unlock()
	if err := tr.Record(KindControl, control(2)); err == nil {
		t.Fatal("a record on a failing disk succeeded")
	}
	if err := tr.Ready(); err == nil {
		t.Fatal("ready right after a failure")
	}
	if err := tr.Record(KindControl, control(3)); err == nil || !strings.Contains(err.Error(), "cannot write") {
		t.Fatalf("second record: %v", err)
	}
	if l := tr.Lag(); !l.Failed {
		t.Errorf("lag %+v", l)
	}
	// The disk works again; a second later the trail retries.
	tr.mu.Lock()
	tr.f = good
	tr.mu.Unlock()
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	now.Add(int64(2 * time.Second))
	if err := tr.Ready(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Record(KindControl, control(4)); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if l := tr.Lag(); l.Failed {
		t.Errorf("lag %+v", l)
	}
	closeTrail(t, tr)
	r := verify(t, dir, VerifyOptions{})
	if !r.OK() || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0].Message, "a write failed") {
		t.Fatalf("errors %v warnings %v", r.Errors, r.Warnings)
	}
	var ids []string
	for _, e := range readAll(t, dir) {
		if e.Kind == KindControl {
			ids = append(ids, e.RequestID)
		}
	}
	if strings.Join(ids, ",") != "req-1,req-4" {
		t.Errorf("recorded %v, want req-1 and req-4 (2 and 3 were refused)", ids)
	}
}

// TestRekey: after a change of seal key, seals under the old key are
// reported as not checkable, not as forged.
func TestRekey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr := openTrail(t, dir, func(c *Config) { c.SealEvery = 2 })
	for i := 0; i < 4; i++ {
		if err := tr.Record(KindCeremony, Event{Operation: "step", Outcome: OK}); err != nil {
			t.Fatal(err)
		}
	}
	newKey := bytes.Repeat([]byte{7}, RootKeySize)
	if err := tr.Rekey(newKey); err != nil {
		t.Fatal(err)
	}
	if err := tr.Record(KindCeremony, Event{Operation: "after", Outcome: OK}); err != nil {
		t.Fatal(err)
	}
	closeTrail(t, tr)
	r := verify(t, dir, VerifyOptions{Seals: mustChecker(t, newKey)})
	if !r.OK() || r.SealsChecked == 0 || r.SealsChecked == r.Seals {
		t.Fatalf("%+v", r)
	}
	for _, w := range r.Warnings {
		if !strings.Contains(w.Message, "retired key") && !strings.Contains(w.Message, "seal key changed") {
			t.Errorf("warning %v", w)
		}
	}
	// The old key alone cannot vouch for the seals after the change.
	if r := verify(t, dir, VerifyOptions{}); r.OK() {
		t.Fatal("the old key verified seals made under the new one")
	}
}

// TestRotationByAge: a file older than RotateAge is rotated at the next write.
func TestRotationByAge(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now, clock := testClock(time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))
	tr := openTrail(t, dir, func(c *Config) { c.Now = clock })
	if err := tr.Record(KindControl, control(1)); err != nil {
		t.Fatal(err)
	}
	now.Add(int64(25 * time.Hour))
	if err := tr.Record(KindControl, control(2)); err != nil {
		t.Fatal(err)
	}
	closeTrail(t, tr)
	if files := trailFiles(t, dir); len(files) != 2 || filepath.Base(files[0]) != "audit-0000000000000001.log" {
		t.Fatalf("files %v", files)
	}
	if r := verify(t, dir, VerifyOptions{}); !r.OK() {
		t.Fatal(r.Errors)
	}
}

// TestLegacyAnchored: a new trail records the digest of the pre-chain log.
func TestLegacyAnchored(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	legacy := filepath.Join(dir, "ceremony-audit.log")
	if err := os.WriteFile(legacy, []byte("{\"operation\":\"init\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	closeTrail(t, openTrail(t, filepath.Join(dir, "audit"), func(c *Config) { c.Legacy = legacy }))
	e := readAll(t, filepath.Join(dir, "audit"))[0]
	if e.Start == nil || e.Start.Legacy == nil || e.Start.Legacy.Bytes != 21 || e.Start.Legacy.File != "ceremony-audit.log" {
		t.Fatalf("%+v", e.Entry)
	}
}

func TestRecordErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr := openTrail(t, dir, nil)
	tests := []struct {
		name string
		kind Kind
		e    Event
		want string
	}{
		{"no operation", KindControl, Event{Outcome: OK}, "needs an operation"},
		{"no outcome", KindControl, Event{Operation: "x"}, "needs an operation and an outcome"},
		{"data through Record", KindData, Event{Operation: "x", Outcome: OK}, "Record of a data entry"},
		{"too large", KindControl, Event{Operation: "x", Outcome: OK, Detail: strings.Repeat("x", MaxLineBytes)}, "exceeds"},
	}
	for _, tc := range tests {
		if err := tr.Record(tc.kind, tc.e); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	closeTrail(t, tr)
	if err := tr.Record(KindControl, control(1)); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("after close: %v", err)
	}
	if r := verify(t, dir, VerifyOptions{}); !r.OK() {
		t.Fatal(r.Errors)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []Config{
		{Dir: dir, Key: []byte("short")},
		{Key: testKey},
		{Dir: filepath.Join(file, "sub"), Key: testKey},
	} {
		if tr, err := Open(cfg); err == nil {
			_ = tr.Close()
			t.Errorf("Open(%+v) succeeded", cfg.Dir)
		}
	}
}

// TestHead: Head names the last durable entry, the closing seal after Close.
func TestHead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr := openTrail(t, dir, nil)
	if err := tr.Record(KindControl, control(1)); err != nil {
		t.Fatal(err)
	}
	entries := readAll(t, dir)
	if seq, hash := tr.Head(); seq != 2 || hash != entries[1].Hash {
		t.Errorf("head %d %s, want 2 %s", seq, hash, entries[1].Hash)
	}
	closeTrail(t, tr)
	entries = readAll(t, dir)
	last := entries[len(entries)-1]
	if seq, hash := tr.Head(); seq != last.Seq || hash != last.Hash || last.Kind != KindSeal {
		t.Errorf("head after close %d %s, want the closing seal %d %s", seq, hash, last.Seq, last.Hash)
	}
}

// TestDenialFlood: beyond DenyRate, denials are counted and the count
// recorded, so a flood of refused requests cannot fill the disk.
func TestDenialFlood(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC).UnixNano())
	tr := openTrail(t, dir, func(c *Config) {
		c.DenyRate, c.DenyBurst = 10, 5
		c.Now = func() time.Time { return time.Unix(0, now.Load()) }
	})
	for i := 0; i < 100; i++ {
		if err := tr.Deny(Denial{Protocol: "aws", Action: "GetKey", Reason: "signature mismatch"}); err != nil {
			t.Fatal(err)
		}
	}
	now.Add(int64(time.Second)) // 10 more tokens
	for i := 0; i < 20; i++ {
		if err := tr.Deny(Denial{Protocol: "aws", Action: "GetKey", Reason: "signature mismatch"}); err != nil {
			t.Fatal(err)
		}
	}
	if l := tr.Lag(); l.Suppressed == 0 {
		t.Errorf("lag %+v", l)
	}
	closeTrail(t, tr)
	var recorded, suppressed uint64
	for _, e := range readAll(t, dir) {
		switch e.Kind {
		case KindDenial:
			recorded++
		case KindNotice:
			suppressed += e.Notice.SuppressedDenials
		}
	}
	if recorded != 5+5 || recorded+suppressed != 120 {
		t.Errorf("%d denials recorded, %d counted; want 10 and 110", recorded, suppressed)
	}
	if r := verify(t, dir, VerifyOptions{}); !r.OK() || len(r.Warnings) == 0 || !strings.Contains(r.Warnings[0].Message, "denials beyond") {
		t.Fatalf("errors %v warnings %v", r.Errors, r.Warnings)
	}
}

// TestOneWriter: a second writer on the same directory is refused.
func TestOneWriter(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr := openTrail(t, dir, nil)
	if tr2, err := Open(Config{Dir: dir, Key: testKey}); err == nil {
		_ = tr2.Close()
		t.Fatal("a second writer opened the trail")
	} else if !strings.Contains(err.Error(), "in use by another process") {
		t.Fatal(err)
	}
	closeTrail(t, tr)
	closeTrail(t, openTrail(t, dir, nil))
}

// TestActiveFileMissing: a writer that finds only rotated files continues
// the chain from the last one and says so; verify warns.
func TestActiveFileMissing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	buildTrail(t, dir)
	if err := os.Remove(filepath.Join(dir, ActiveName)); err != nil {
		t.Fatal(err)
	}
	closeTrail(t, openTrail(t, dir, nil))
	first := readAll(t, dir)
	var start *Parsed
	for _, e := range first {
		if e.Kind == KindStart && e.Start.ActiveMissing {
			start = e
		}
	}
	if start == nil || start.Start.PrevFile == "" {
		t.Fatal("no start entry says the active file was missing")
	}
	r := verify(t, dir, VerifyOptions{})
	if !r.OK() || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0].Message, "found no audit.log") {
		t.Fatalf("errors %v warnings %v", r.Errors, r.Warnings)
	}
}
