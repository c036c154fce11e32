package bench

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"payhsm/ops/opstest"
	"payhsm/protocol/awsapi"
	"payhsm/protocol/awsapi/sigv4"
)

func TestParseKeys(t *testing.T) {
	t.Parallel()
	const h = keysFileHeader + "\n"
	for _, tc := range []struct {
		name, in string
		ok       bool
		whole    int
		cvk, pin int
	}{
		{name: "empty", in: "", ok: true},
		{name: "header", in: h, ok: true, whole: len(h)},
		{name: "keys", in: h + "shared pvk arn:p\nshared zpk-out arn:z\ncvk arn:c1 123\ncvk arn:c2 456\npin arn:z1 0123ABCD\n", ok: true, cvk: 2, pin: 1,
			whole: len(h + "shared pvk arn:p\nshared zpk-out arn:z\ncvk arn:c1 123\ncvk arn:c2 456\npin arn:z1 0123ABCD\n")},
		{name: "cut last line", in: h + "cvk arn:c1 123\ncvk arn:c2 4", ok: true, cvk: 1, whole: len(h + "cvk arn:c1 123\n")},
		{name: "cut header", in: keysFileHeader, ok: false},
		{name: "other header", in: "payhsm-bench-keys 2\n", ok: false},
		{name: "unknown family", in: h + "zzz arn:c1 123\n", ok: false},
		{name: "code as family", in: h + "CY arn:c1 123\n", ok: false},
		{name: "two fields", in: h + "cvk arn:c1\n", ok: false},
		{name: "four fields", in: h + "cvk arn:c1 1 2\n", ok: false},
		{name: "quote", in: h + "cvk arn:\"c1 123\n", ok: false},
		{name: "backslash", in: h + "cvk arn:c1 12\\3\n", ok: false},
		{name: "non-ASCII", in: h + "cvk arn:c1 12é\n", ok: false},
		{name: "empty line", in: h + "\n", ok: false},
		{name: "unknown shared", in: h + "shared kek arn:k\n", ok: false},
		{name: "repeated shared", in: h + "shared pvk arn:a\nshared pvk arn:b\n", ok: false},
	} {
		set, whole, err := parseKeys([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v", tc.name, err)
			continue
		}
		if err != nil {
			continue
		}
		if whole != tc.whole || len(set.keys["cvk"]) != tc.cvk || len(set.keys["pin"]) != tc.pin {
			t.Errorf("%s: whole %d, cvk %d, pin %d", tc.name, whole, len(set.keys["cvk"]), len(set.keys["pin"]))
		}
	}
	set, _, _ := parseKeys([]byte(h + "shared pvk arn:p\ncvk arn:c1 123\ncvk arn:c2 456\n"))
	if set.shared["pvk"] != "arn:p" || set.keys["cvk"][1] != (storedKey{"arn:c2", "456"}) {
		t.Errorf("parsed %+v", set)
	}
}

// TestKeyedBodies checks that each command's body template, filled with a
// key, is byte for byte the body the single-key mode sends for that key.
func TestKeyedBodies(t *testing.T) {
	t.Parallel()
	set := &keySet{shared: map[string]string{"zpk-out": "arn:aws:payment-cryptography:us-east-1:111122223333:key/out"},
		keys: map[string][]storedKey{}}
	for _, f := range families {
		for i := range 3 {
			set.keys[f.name] = append(set.keys[f.name], storedKey{"arn:aws:payment-cryptography:us-east-1:111122223333:key/" + f.name + string(rune('a'+i)),
				strings.Repeat(string(rune('0'+i)), 4) + "ABCD"})
		}
	}
	codes := []string{"CA", "CC", "CW", "CY", "M6", "M8"}
	reqs, err := keyedRequests(set, codes, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i, code := range codes {
		f, _ := familyOf(code)
		for k, key := range set.keys[f.name] {
			v := dataValues{zpkOut: set.shared["zpk-out"]}
			switch f.name {
			case "pin":
				v.zpkIn, v.pinBlock = key.arn, key.value
			case "cvk":
				v.cvk, v.cvv = key.arn, key.value
			case "mak":
				v.mak, v.mac = key.arn, key.value
			}
			want := dataBodies(v)[code]
			wantBody, err := json.Marshal(want.body)
			if err != nil {
				t.Fatal(err)
			}
			if got := reqs[i].appendBody(nil, k); !bytes.Equal(got, wantBody) || reqs[i].req.path != want.path {
				t.Errorf("%s key %d: %s %s\nwant %s %s", code, k, reqs[i].req.path, got, want.path, wantBody)
			}
		}
	}
	if _, err := keyedRequests(set, []string{"CY"}, 4); err == nil {
		t.Error("4 keys wanted of 3: no error")
	}
}

// TestZipfTable compares the draw's frequencies with the law's
// probabilities 1/((k+1)^s H) for the first ranks.
func TestZipfTable(t *testing.T) {
	t.Parallel()
	const n, draws = 1000, 400000
	for _, s := range []float64{0.8, 1.0, 1.2} {
		z := newZipfTable(s, n, 1)
		if z.rank(0) != 0 || z.rank(math.Nextafter(1, 0)) != n-1 {
			t.Errorf("s=%g: rank(0) %d, rank(1-) %d", s, z.rank(0), z.rank(math.Nextafter(1, 0)))
		}
		h := 0.0
		for k := range n {
			h += math.Pow(float64(k+1), -s)
		}
		count := make([]int, n)
		r := rand.New(rand.NewPCG(3, 4))
		for range draws {
			count[z.rank(r.Float64())]++
		}
		for _, k := range []int{0, 1, 9, 99} {
			p := math.Pow(float64(k+1), -s) / h
			sd := math.Sqrt(draws * p * (1 - p))
			if d := math.Abs(float64(count[k]) - draws*p); d > 5*sd {
				t.Errorf("s=%g rank %d: %d draws, want %.0f ± %.0f", s, k, count[k], draws*p, sd)
			}
		}
		seen := make([]bool, n)
		for _, p := range z.perm {
			if p < 0 || int(p) >= n || seen[p] {
				t.Fatalf("s=%g: not a permutation", s)
			}
			seen[p] = true
		}
	}
}

// TestKeyedDrawsDiffer: two connections (or two runs) draw different keys,
// so that a run does not replay the keys the previous one left cached.
func TestKeyedDrawsDiffer(t *testing.T) {
	t.Parallel()
	keys := make([]storedKey, 1000000)
	kr := []*keyedRequest{{keys: keys}}
	a, b := newKeyedConn(kr, nil), newKeyedConn(kr, nil)
	same := 0
	for range 1000 {
		if a.rng.IntN(len(keys)) == b.rng.IntN(len(keys)) {
			same++
		}
	}
	if same > 5 {
		t.Errorf("%d of 1000 draws equal", same)
	}
}

// keyRecorder counts the keys each data-plane request names and the
// CreateKey calls, in front of the real API.
type keyRecorder struct {
	next    http.Handler
	mu      sync.Mutex
	used    map[string]int // key ARN -> requests
	creates int
}

func (kr *keyRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var in struct{ KeyIdentifier, IncomingKeyIdentifier string }
	_ = json.Unmarshal(body, &in)
	kr.mu.Lock()
	if strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".CreateKey") {
		kr.creates++
	}
	kr.used[in.KeyIdentifier+in.IncomingKeyIdentifier]++
	kr.mu.Unlock()
	kr.next.ServeHTTP(w, r)
}

func (kr *keyRecorder) reset() (used map[string]int, creates int) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	used, creates = kr.used, kr.creates
	kr.used, kr.creates = map[string]int{}, 0
	return used, creates
}

func serveRecorded(t *testing.T) (string, *keyRecorder) {
	t.Helper()
	svc := opstest.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	v := &sigv4.Verifier{Creds: sigv4.StaticCredentials{testKeyID: testSecret}, Region: testRegion, Service: service}
	rec := &keyRecorder{next: awsapi.New(svc, v, zap.NewNop()), used: map[string]int{}}
	srv := awsapi.NewHTTPServer(&http.Server{Handler: rec, ReadHeaderTimeout: 10 * time.Second})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String(), rec
}

// TestRunHTTPManyKeys drives the real HTTP API with -keys: the first run
// creates the keys and writes the keys file, the next ones reuse it (no
// CreateKey), every request is answered 200 (so each key's value checks),
// and the requests spread over the keys: uniformly, or mostly on a few with
// a steep Zipf law.
func TestRunHTTPManyKeys(t *testing.T) {
	t.Parallel()
	url, rec := serveRecorded(t)
	file := filepath.Join(t.TempDir(), "keys")
	base := Options{Conns: 3, Duration: 400 * time.Millisecond, Warmup: 50 * time.Millisecond, Keys: 16, KeysFile: file,
		Mix:  map[string]int{"CY": 1, "M8": 1, "CC": 1},
		HTTP: HTTPTarget{URL: url, AccessKeyID: testKeyID, Secret: testSecret, Region: testRegion}}
	run := func(o Options) (map[string]int, int) {
		t.Helper()
		r, err := Run(o)
		if err != nil {
			t.Fatalf("keys %d zipf %g: %v", o.Keys, o.Zipf, err)
		}
		if r.Total.Count == 0 || r.Total.Errors != 0 || len(r.PerCommand) != len(o.Mix) {
			t.Fatalf("keys %d zipf %g: %+v", o.Keys, o.Zipf, r)
		}
		var out bytes.Buffer
		if err := Print(&out, o, r); err != nil || !strings.Contains(out.String(), "stored keys per command kind") {
			t.Errorf("output %v:\n%s", err, out.String())
		}
		return rec.reset()
	}
	lines := func() []string {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	}
	countFamily := func(name string) (n int) {
		for _, l := range lines() {
			if strings.HasPrefix(l, name+" ") {
				n++
			}
		}
		return n
	}

	used, creates := run(base)
	// 16 keys of each of three families, the PVK and the outgoing ZPK.
	if creates != 3*16+2 || len(lines()) != 1+2+3*16 {
		t.Fatalf("first run: %d CreateKey, keys file of %d lines", creates, len(lines()))
	}
	spread := func(used map[string]int, fam string) (keys, most, total int) {
		for _, l := range lines() {
			f := strings.Split(l, " ")
			if f[0] == fam {
				keys++
				most = max(most, used[f[1]])
				total += used[f[1]]
			}
		}
		return keys, most, total
	}
	for _, fam := range []string{"pin", "cvk", "mak"} {
		if _, mx, total := spread(used, fam); total == 0 || mx > total/4 {
			t.Errorf("uniform, %s: the most used key had %d of %d requests", fam, mx, total)
		}
	}
	before := lines()

	// Reused: no key created, the file unchanged.
	o := base
	o.Zipf = 2 // rank 0 about 61% of the draws
	used, creates = run(o)
	if creates != 0 || strings.Join(lines(), "\n") != strings.Join(before, "\n") {
		t.Errorf("second run: %d CreateKey, keys file changed", creates)
	}
	for _, fam := range []string{"cvk", "mak"} {
		if _, mx, total := spread(used, fam); mx < total/3 {
			t.Errorf("zipf 2, %s: the most used key had %d of %d requests", fam, mx, total)
		}
	}

	// A run cut short in the middle of a line: the partial line is dropped,
	// more keys are created for the families the mix uses only.
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("cvk arn:aws:payment-cryptography:us-east-1:111122223333:key/cut"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	o = base
	o.Keys, o.Mix = 20, map[string]int{"CW": 1}
	if _, creates = run(o); creates != 4 || countFamily("cvk") != 20 || countFamily("mak") != 16 || strings.Contains(strings.Join(lines(), "\n"), "key/cut") {
		t.Errorf("after a cut line: %d CreateKey, %d cvk and %d mak lines", creates, countFamily("cvk"), countFamily("mak"))
	}

	// The keys file against another store: refused before the load.
	other, _ := serveRecorded(t)
	o = base
	o.HTTP.URL = other
	if _, err := Run(o); err == nil || !strings.Contains(err.Error(), "another store") {
		t.Errorf("another store: %v", err)
	}
	// A command without stored keys of its own, and host mode.
	o = base
	o.Mix = map[string]int{"CK": 1}
	if _, err := Run(o); err == nil || !strings.Contains(err.Error(), "not in the benchmark set") {
		t.Errorf("CK with -keys: %v", err)
	}
	o = base
	o.HTTP.URL = ""
	if _, err := Run(o); err == nil || !strings.Contains(err.Error(), "HTTP mode") {
		t.Errorf("host mode with -keys: %v", err)
	}
}
