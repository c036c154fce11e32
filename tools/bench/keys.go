package bench

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Many keys (-keys N, HTTP mode): the requests of each command kind name
// one of N stored keys of that kind, drawn per request uniformly or, with
// -zipf S, by a Zipf law of exponent S (the key of rank k drawn with
// probability proportional to 1/(k+1)^S). Each key comes with the value its
// requests check (a PIN block under it, a CVV, a MAC), made once when the
// key is created. With -keys-file F the keys and their values are kept in F
// and reused by the next run against the same store: creating a million
// keys takes minutes.

// family is a kind of stored key the requests of some commands draw from.
type family struct {
	name  string // in the keys file
	kind  benchKey
	codes string // the commands that name one of its keys
}

var families = []family{
	{"pin", zpkKey, "CC CA"}, // incoming ZPK, with a PIN block under it; the outgoing ZPK is one shared key
	{"cvk", cvkKey, "CW CY"}, // with the CVV of the bench's card under it
	{"mak", makKey, "M6 M8"}, // with the MAC of the bench's message under it
}

func familyOf(code string) (family, bool) {
	for _, f := range families {
		if strings.Contains(f.codes, code) {
			return f, true
		}
	}
	return family{}, false
}

// storedKey is one stored key and the value its requests check.
type storedKey struct{ arn, value string }

// keySet is what a keys file holds: the keys of each family, in order of
// creation, and the shared keys (the PVK the PIN blocks were made with, the
// outgoing ZPK of PIN translation).
type keySet struct {
	shared map[string]string
	keys   map[string][]storedKey
}

const keysFileHeader = "payhsm-bench-keys 1"

// safeField reports whether s can stand in the keys file and, unescaped,
// inside a JSON string: printable ASCII without space, quote or backslash
// (ARNs and hexadecimal values are).
func safeField(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if c := s[i]; c <= ' ' || c > '~' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// parseKeys reads a keys file. A last line without its newline (a run cut
// short while writing it) is ignored; its length is returned so that the
// file can be cut back to whole lines before more are appended.
func parseKeys(b []byte) (set *keySet, whole int, err error) {
	set = &keySet{shared: map[string]string{}, keys: map[string][]storedKey{}}
	if len(b) == 0 {
		return set, 0, nil
	}
	whole = bytes.LastIndexByte(b, '\n') + 1
	lines := strings.Split(string(b[:whole]), "\n")
	if whole == 0 || lines[0] != keysFileHeader {
		return nil, 0, fmt.Errorf("bench: keys file: first line is not %q", keysFileHeader)
	}
	for i, line := range lines[1 : len(lines)-1] {
		f := strings.Split(line, " ")
		bad := len(f) != 3 || !safeField(f[1]) || !safeField(f[2])
		if !bad && f[0] == "shared" {
			if _, dup := set.shared[f[1]]; dup || (f[1] != "pvk" && f[1] != "zpk-out") {
				bad = true
			}
			set.shared[f[1]] = f[2]
		} else if !bad {
			bad = !knownFamily(f[0])
			set.keys[f[0]] = append(set.keys[f[0]], storedKey{f[1], f[2]})
		}
		if bad {
			return nil, 0, fmt.Errorf("bench: keys file: line %d: %.80q", i+2, line)
		}
	}
	return set, whole, nil
}

func knownFamily(name string) bool {
	for _, f := range families {
		if f.name == name {
			return true
		}
	}
	return false
}

// keysWriter appends to a keys file as keys are created, so that a run cut
// short keeps what it made.
type keysWriter struct {
	mu sync.Mutex
	f  *os.File
	w  *bufio.Writer
}

// openKeys reads the keys file at path (none yet: an empty set) and opens
// it for appending. Without a path the set lives only in memory.
func openKeys(path string) (*keySet, *keysWriter, error) {
	if path == "" {
		set, _, err := parseKeys(nil)
		return set, &keysWriter{w: bufio.NewWriter(io.Discard)}, err
	}
	b, err := os.ReadFile(path) //nolint:gosec // G304: the user names the keys file.
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("bench: keys file: %w", err)
	}
	set, whole, err := parseKeys(b)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600) //nolint:gosec // G304: as above.
	if err != nil {
		return nil, nil, fmt.Errorf("bench: keys file: %w", err)
	}
	kw := &keysWriter{f: f, w: bufio.NewWriterSize(f, 1<<20)}
	if err := f.Truncate(int64(whole)); err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("bench: keys file: %w", err)
	}
	if _, err := f.Seek(int64(whole), io.SeekStart); err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("bench: keys file: %w", err)
	}
	if whole == 0 {
		_, _ = kw.w.WriteString(keysFileHeader + "\n")
	}
	return set, kw, nil
}

func (kw *keysWriter) add(kind, a, b string) {
	kw.mu.Lock()
	defer kw.mu.Unlock()
	_, _ = kw.w.WriteString(kind + " " + a + " " + b + "\n") // a write error surfaces at flush
}

func (kw *keysWriter) flush() error {
	kw.mu.Lock()
	defer kw.mu.Unlock()
	if err := kw.w.Flush(); err != nil {
		return fmt.Errorf("bench: keys file: %w", err)
	}
	return nil
}

func (kw *keysWriter) close() error {
	err := kw.flush()
	if kw.f != nil {
		if cerr := kw.f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("bench: keys file: %w", cerr)
		}
	}
	return err
}

// keyDialer opens setup connections.
type keyDialer func() (*httpConn, error)

func httpDialer(addr string, tlsCfg *tls.Config, newSigner func() *signer) keyDialer {
	return func() (*httpConn, error) {
		c, err := dial(addr, tlsCfg)
		if err != nil {
			return nil, err
		}
		return &httpConn{c: c, br: bufio.NewReader(c), s: newSigner()}, nil
	}
}

// ensureKeys makes set hold at least n keys of each family in fams (and
// the shared keys they need), creating the missing ones over par
// connections and appending them to kw.
func ensureKeys(set *keySet, kw *keysWriter, fams []family, n, par int, dialer keyDialer, log io.Writer) error {
	needShared := false
	for _, f := range fams {
		needShared = needShared || f.name == "pin"
	}
	if needShared && (set.shared["pvk"] == "" || set.shared["zpk-out"] == "") {
		h, err := dialer()
		if err != nil {
			return err
		}
		for _, s := range []struct {
			name string
			kind benchKey
		}{{"pvk", pvkKey}, {"zpk-out", zpkKey}} {
			if set.shared[s.name] != "" {
				continue
			}
			arn, err := h.createKey(s.kind)
			if err != nil {
				_ = h.c.Close()
				return err
			}
			set.shared[s.name] = arn
			kw.add("shared", s.name, arn)
		}
		if err := h.c.Close(); err != nil {
			return err
		}
	}
	for _, f := range fams {
		have := len(set.keys[f.name])
		if have >= n {
			continue
		}
		if err := createFamily(set, kw, f, n-have, par, dialer, log); err != nil {
			return err
		}
	}
	return kw.flush()
}

// createFamily creates missing keys of f and their values over par connections.
func createFamily(set *keySet, kw *keysWriter, f family, missing, par int, dialer keyDialer, log io.Writer) error {
	var next, done atomic.Int64
	var mu sync.Mutex
	errs := make(chan error, par)
	start := time.Now()
	stop := make(chan struct{})
	if log != nil {
		go func() {
			t := time.NewTicker(10 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					d := done.Load()
					_, _ = fmt.Fprintf(log, "bench: %s keys: %d of %d created (%.0f/s)\n", f.name, d, missing, float64(d)/time.Since(start).Seconds())
				}
			}
		}()
	}
	pvk := set.shared["pvk"]
	for range min(par, missing) {
		go func() {
			h, err := dialer()
			if err != nil {
				errs <- err
				return
			}
			defer func() { _ = h.c.Close() }()
			for next.Add(1) <= int64(missing) {
				arn, err := h.createKey(f.kind)
				if err != nil {
					errs <- err
					return
				}
				var value string
				switch f.name {
				case "pin":
					var out struct{ EncryptedPinBlock string }
					err, value = h.data("/pindata/generate", pinGenerate(pvk, arn), &out), out.EncryptedPinBlock
				case "cvk":
					var out struct{ ValidationData string }
					err, value = h.data("/cardvalidationdata/generate", cvvGenerate(arn), &out), out.ValidationData
				case "mak":
					var out struct{ Mac string }
					err, value = h.data("/mac/generate", macGenerate(arn), &out), out.Mac
				}
				if err == nil && (!safeField(arn) || !safeField(value)) {
					err = fmt.Errorf("bench: unexpected key ARN %.80q or value %.80q", arn, value)
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				set.keys[f.name] = append(set.keys[f.name], storedKey{arn, value})
				mu.Unlock()
				kw.add(f.name, arn, value)
				done.Add(1)
			}
			errs <- nil
		}()
	}
	var first error
	for range min(par, missing) {
		if err := <-errs; err != nil && first == nil {
			first = err
			next.Store(int64(missing)) // the others stop after their current key
		}
	}
	close(stop)
	if log != nil && first == nil {
		el := time.Since(start)
		_, _ = fmt.Fprintf(log, "bench: %s keys: %d created in %v (%.0f/s)\n", f.name, missing, el.Round(time.Second), float64(missing)/el.Seconds())
	}
	return first
}

// Placeholders of a body template: where the key's ARN and its value go.
const (
	arnMark   = "@@ARN@@"
	valueMark = "@@VALUE@@"
)

// keyedRequest is the request of one command for any key of its family:
// its body is parts[0] field(0) parts[1] field(1) ... parts[len-1], each
// field the key's ARN or its value.
type keyedRequest struct {
	req    httpRequest // body filled per request
	parts  []string
	values []bool // per field: the key's value (else its ARN)
	keys   []storedKey
}

func newKeyedRequest(path string, body any, keys []storedKey) (*keyedRequest, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	kr := &keyedRequest{req: httpRequest{path: path, contentType: dataContentType}, keys: keys}
	s := string(b)
	for {
		a, v := strings.Index(s, arnMark), strings.Index(s, valueMark)
		switch {
		case a < 0 && v < 0:
			kr.parts = append(kr.parts, s)
			return kr, nil
		case v < 0 || (a >= 0 && a < v):
			kr.parts, kr.values, s = append(kr.parts, s[:a]), append(kr.values, false), s[a+len(arnMark):]
		default:
			kr.parts, kr.values, s = append(kr.parts, s[:v]), append(kr.values, true), s[v+len(valueMark):]
		}
	}
}

func (kr *keyedRequest) appendBody(b []byte, i int) []byte {
	k := kr.keys[i]
	for j, v := range kr.values {
		b = append(b, kr.parts[j]...)
		if v {
			b = append(b, k.value...)
		} else {
			b = append(b, k.arn...)
		}
	}
	return append(b, kr.parts[len(kr.parts)-1]...)
}

// keyedRequests builds the keyed request of each command of codes: n keys
// of its family each.
func keyedRequests(set *keySet, codes []string, n int) ([]*keyedRequest, error) {
	bodies := dataBodies(dataValues{zpkIn: arnMark, zpkOut: set.shared["zpk-out"], cvk: arnMark, mak: arnMark,
		pinBlock: valueMark, cvv: valueMark, mac: valueMark})
	out := make([]*keyedRequest, len(codes))
	for i, code := range codes {
		f, ok := familyOf(code)
		if !ok {
			return nil, fmt.Errorf("bench: -keys: %s does not name a data-plane key", code)
		}
		keys := set.keys[f.name]
		if len(keys) < n {
			return nil, fmt.Errorf("bench: -keys: %d %s keys, want %d", len(keys), f.name, n)
		}
		var err error
		if out[i], err = newKeyedRequest(bodies[code].path, bodies[code].body, keys[:n]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// zipfTable draws ranks 0..n-1 with probability proportional to
// 1/(k+1)^s (any s > 0; math/rand's Zipf needs s > 1) by inverting the
// cumulative table, the ranks permuted so that the hot keys are not the
// first created. It is read-only once made: connections share it.
type zipfTable struct {
	cdf  []float64
	perm []int32
}

func newZipfTable(s float64, n int, seed uint64) *zipfTable {
	z := &zipfTable{cdf: make([]float64, n), perm: make([]int32, n)}
	sum := 0.0
	for k := range n {
		sum += math.Pow(float64(k+1), -s)
		z.cdf[k] = sum
	}
	r := rand.New(rand.NewPCG(seed, 11)) //nolint:gosec // G404: a reproducible draw, no secret.
	for i, p := range r.Perm(n) {
		z.perm[i] = int32(p) //nolint:gosec // G115: n keys fit an int32 (Main caps -keys).
	}
	return z
}

// rank draws a rank with u uniform in [0, 1).
func (z *zipfTable) rank(u float64) int {
	x := u * z.cdf[len(z.cdf)-1]
	lo, hi := 0, len(z.cdf)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if z.cdf[mid] <= x {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

func (z *zipfTable) draw(r *rand.Rand) int { return int(z.perm[z.rank(r.Float64())]) }

// keyedConn is one connection's state in many-key mode.
type keyedConn struct {
	reqs []*keyedRequest // per command index
	zipf *zipfTable      // nil: uniform
	rng  *rand.Rand
	req  httpRequest
}

func (kc *keyedConn) appendRequest(b []byte, s *signer, k int, now time.Time) []byte {
	kr := kc.reqs[k]
	var i int
	if kc.zipf != nil {
		i = kc.zipf.draw(kc.rng)
	} else {
		i = kc.rng.IntN(len(kr.keys))
	}
	kc.req.path, kc.req.contentType = kr.req.path, kr.req.contentType
	kc.req.body = kr.appendBody(kc.req.body[:0], i)
	return s.appendSigned(b, &kc.req, now)
}

// prepareKeys is the setup of many-key mode: the keys of the families the
// mix uses, loaded from o.KeysFile and created where missing; then the
// first and last key of each command are tried once (a keys file made
// against another store fails here).
func prepareKeys(o Options, codes []string, dialer keyDialer, log io.Writer) ([]*keyedRequest, error) {
	var fams []family
	for _, code := range codes {
		f, ok := familyOf(code)
		if !ok {
			return nil, fmt.Errorf("bench: -keys: %s does not name a data-plane key (-keys is for %s)", code, "CC CA CW CY M6 M8")
		}
		if !slices.ContainsFunc(fams, func(g family) bool { return g.name == f.name }) {
			fams = append(fams, f)
		}
	}
	set, kw, err := openKeys(o.KeysFile)
	if err != nil {
		return nil, err
	}
	err = ensureKeys(set, kw, fams, o.Keys, max(o.Conns, 1), dialer, log)
	if cerr := kw.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	reqs, err := keyedRequests(set, codes, o.Keys)
	if err != nil {
		return nil, err
	}
	h, err := dialer()
	if err != nil {
		return nil, err
	}
	defer func() { _ = h.c.Close() }()
	for i, kr := range reqs {
		for _, k := range []int{0, o.Keys - 1} {
			r := kr.req
			r.body = kr.appendBody(nil, k)
			if _, err := h.call(&r); err != nil {
				return nil, fmt.Errorf("bench: -keys: %s with key %d (%s): %w (a keys file from another store?)", codes[i], k, kr.keys[k].arn, err)
			}
		}
	}
	return reqs, nil
}

// driveKeyed runs the load of many-key mode.
func driveKeyed(o Options, addr string, tlsCfg *tls.Config, codes []string, wheel []int, newSigner func() *signer) (*Result, error) {
	reqs, err := prepareKeys(o, codes, httpDialer(addr, tlsCfg, newSigner), o.Log)
	if err != nil {
		return nil, fmt.Errorf("bench setup: %w", err)
	}
	var zipf *zipfTable
	if o.Zipf > 0 {
		zipf = newZipfTable(o.Zipf, o.Keys, 1)
	}
	return drive(o, addr, tlsCfg, codes, wheel, func() proto {
		return &httpProto{s: newSigner(), keyed: newKeyedConn(reqs, zipf)}
	})
}

// newKeyedConn seeds each connection's draw at random: a fixed seed would
// draw the same keys in the same order on every run, so that a run against
// a daemon still holding the previous run's keys would find them cached.
func newKeyedConn(reqs []*keyedRequest, zipf *zipfTable) *keyedConn {
	return &keyedConn{reqs: reqs, zipf: zipf, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))} //nolint:gosec // G404: a load draw, no secret.
}
