// Package bench is `payhsm bench`, the load tool for both front ends: it
// creates its own keys on the appliance (host commands A0 on the host port,
// CreateKey over the HTTP API), prepares valid requests (a PIN block with EE
// or GeneratePinData, a CVV, a MAC), then drives N connections from a
// weighted command mix for a duration, each keeping up to -pipeline requests
// in flight (1: one request at a time), and prints throughput and latency
// percentiles. Latency is measured per request, from just before the write
// that sends it to the parse of its response. In HTTP mode every request is
// signed with SigV4 as it is sent (the derived signing key cached per day,
// no allocation per request) over keep-alive HTTP/1.1.
//
// The load loop is lean on purpose, since on a small machine it shares the
// cores with the appliance: by default, on the host port and over HTTP
// alike, one thread drives every connection through one io_uring
// (ring_linux.go: multishot recvs, one io_uring_enter per turn for all
// connections' sends; -driver io_uring), or through one epoll set (-driver
// epoll), otherwise one goroutine per connection (a sender and a receiver
// with -rate; -driver goroutine, and always for TLS and -rate). The drivers
// take whole responses only: a host frame by its length prefix, an HTTP
// response by its header and Content-Length. Either way
// requests are encoded once and only their header numbered per send, every
// request of a window is sent in one write, every response already
// received is parsed without another read, and there is no allocation per
// request beyond the latency samples.
package bench

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"payhsm/internal/cli"
	"payhsm/protocol/hostcmd"
	"payhsm/tools/hostclient"
)

// Request is one prepared command.
type Request struct {
	Code   string
	Fields []byte
}

// Options drive a run.
type Options struct {
	Addr     string
	Conns    int
	Duration time.Duration
	Warmup   time.Duration
	Mix      map[string]int // command code -> weight
	Header   int
	Pipeline int     // requests in flight per connection (default 1)
	Rate     float64 // offered load in requests/s over all connections; 0 = as fast as answered
	TLS      hostclient.TLSFlags
	HTTP     HTTPTarget // with a URL: drive the HTTP API instead of the host port
	PID      int        // when not 0, the appliance's process: its CPU time is measured (Linux /proc)
	// HTTP mode: when Keys > 0, each command's requests draw one of Keys
	// stored keys of its kind, uniformly or, with Zipf > 0, by a Zipf law
	// of that exponent; KeysFile keeps the keys for the next run (keys.go).
	Keys     int
	Zipf     float64
	KeysFile string
	Log      io.Writer // progress of key creation; nil: none
	// Driver is how the connections are driven: DriverGoroutine
	// (a goroutine per connection), DriverIOUring (one thread and one ring
	// for all, Linux 6.0+), DriverEpoll (one thread and one epoll set for
	// all, Linux), the last two for plain TCP without -rate; or "" for the
	// default (DefaultDriver).
	Driver string
}

// The client drivers.
const (
	DriverGoroutine = "goroutine"
	DriverIOUring   = "io_uring"
	DriverEpoll     = "epoll"
)

// DefaultDriver is the driver used when Options.Driver is empty and the
// run allows any: see docs/performance.md ("io_uring driver") for the
// measurements behind it.
const DefaultDriver = DriverIOUring

// chooseDriver chooses the driver of a run, host port or HTTP alike: the
// io_uring and epoll drivers serve plain TCP without -rate, and io_uring
// is the default only where a ring with multishot recv can be set up.
func chooseDriver(o Options) (string, error) {
	switch o.Driver {
	case DriverGoroutine:
		return DriverGoroutine, nil
	case DriverIOUring, DriverEpoll:
		if o.TLS.Enabled || o.Rate > 0 {
			return "", fmt.Errorf("bench: -driver %s drives plain TCP without -rate", o.Driver)
		}
		if o.Driver == DriverIOUring {
			if err := ringAvailable(); err != nil {
				return "", fmt.Errorf("bench: -driver io_uring: %w", err)
			}
		} else if runtime.GOOS != "linux" {
			return "", errors.New("bench: -driver epoll: Linux only")
		}
		return o.Driver, nil
	case "":
		if DefaultDriver == DriverIOUring && !o.TLS.Enabled && o.Rate == 0 && ringAvailable() == nil {
			return DriverIOUring, nil
		}
		return DriverGoroutine, nil
	default:
		return "", fmt.Errorf("bench: driver %q (io_uring, epoll or goroutine)", o.Driver)
	}
}

// Stats is one command's (or the total's) result.
type Stats struct {
	Code                string
	Count, Errors       int
	P50, P99, P999, Max time.Duration
}

// Result is a run's result.
type Result struct {
	Duration   time.Duration
	Throughput float64 // successful responses per second
	Total      Stats
	PerCommand []Stats
	// CPU time used during the measured window by the process of
	// Options.PID (zero without one) and by the bench itself.
	ServerCPU, BenchCPU time.Duration
	Driver              string // the client driver that ran
}

// Prepare creates keys with A0 and returns a valid request for each
// supported command code: CC, CA (PIN translation), CY, CW (CVV), M8, M6
// (MAC), KQ is not included (it needs card data), NC, B2.
func Prepare(c *hostclient.Client) (map[string]Request, error) {
	gen := func(attrs string) (string, error) {
		r, err := c.Call("A0", []byte("0FFFS#"+attrs))
		if err != nil {
			return "", err
		}
		if r.Error != "00" || len(r.Fields) < 8 {
			return "", fmt.Errorf("A0 #%s: error %s", attrs, r.Error)
		}
		return string(r.Fields[:len(r.Fields)-6]), nil // "S" + block, without the KCV
	}
	zpkA, err := gen("P0T2B00N00")
	if err != nil {
		return nil, err
	}
	zpkB, err := gen("P0T2B00N00")
	if err != nil {
		return nil, err
	}
	pvk, err := gen("V1T2C00N00")
	if err != nil {
		return nil, err
	}
	cvk, err := gen("C0T2C00N00")
	if err != nil {
		return nil, err
	}
	mak, err := gen("M3T2C00N00")
	if err != nil {
		return nil, err
	}
	const account = "555555123456"
	// A PIN block under zpkA: the PIN that offset 1234 yields (EE).
	r, err := c.Call("EE", []byte(zpkA+"01"+pvk+"1234FFFFFFFF04"+account+"0123456789012345"+"1234567N8901"))
	if err != nil {
		return nil, err
	}
	if r.Error != "00" || len(r.Fields) != 16 {
		return nil, fmt.Errorf("EE: error %s", r.Error)
	}
	pinBlock := string(r.Fields)
	cw := []byte(cvk + "4123456789012345;8701101")
	r, err = c.Call("CW", cw)
	if err != nil || r.Error != "00" {
		return nil, fmt.Errorf("CW: %v %v", err, r)
	}
	cvv := string(r.Fields)
	msg := "0000000000000000000000000000000000000000000000000000000000000000" // 32 bytes, hex input
	m6 := []byte("01131FFF" + mak + "0040" + msg)
	r, err = c.Call("M6", m6)
	if err != nil || r.Error != "00" {
		return nil, fmt.Errorf("M6: %v %v", err, r)
	}
	return map[string]Request{
		"CC": {"CC", []byte(zpkA + zpkB + "12" + pinBlock + "0101" + account)},
		"CA": {"CA", []byte(zpkA + zpkB + "12" + pinBlock + "0101" + account)},
		"CW": {"CW", cw},
		"CY": {"CY", []byte(cvk + cvv + "4123456789012345;8701101")},
		"M6": {"M6", m6},
		"M8": {"M8", []byte("01131FFF" + mak + "0040" + msg + string(r.Fields))},
		"NC": {"NC", nil},
		"B2": {"B2", []byte("0004PING")},
	}, nil
}

// Run prepares the requests and drives the load.
func Run(o Options) (*Result, error) {
	o.Pipeline = max(o.Pipeline, 1)
	if o.HTTP.URL != "" {
		return runHTTP(o)
	}
	if o.Keys > 0 {
		return nil, errors.New("bench: -keys is for HTTP mode (-http)")
	}
	var err error
	if o.Driver, err = chooseDriver(o); err != nil {
		return nil, err
	}
	tlsCfg, err := o.TLS.Config(o.Addr)
	if err != nil {
		return nil, err
	}
	setup, err := hostclient.Dial(o.Addr, tlsCfg, o.Header)
	if err != nil {
		return nil, err
	}
	reqs, err := Prepare(setup)
	if cerr := setup.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("bench setup: %w", err)
	}
	codes, wheel, err := mixWheel(o.Mix, func(code string) bool { _, ok := reqs[code]; return ok }, "CC CA CW CY M6 M8 NC B2")
	if err != nil {
		return nil, err
	}
	frames := make([][]byte, len(codes))
	for i, code := range codes {
		msg := append(append(make([]byte, o.Header), code...), reqs[code].Fields...)
		if len(msg) > hostcmd.MaxMessage {
			return nil, fmt.Errorf("bench: %s request of %d bytes", code, len(msg))
		}
		f, err := hostcmd.AppendFrame(nil, msg)
		if err != nil {
			return nil, fmt.Errorf("bench: %s request: %w", code, err)
		}
		frames[i] = f
	}
	return drive(o, o.Addr, tlsCfg, codes, wheel, func() proto { return newHostProto(frames, codes, o.Header) })
}

// runHTTP is Run against the HTTP API: keys and requests are prepared over
// one connection, then each connection signs every request it sends.
func runHTTP(o Options) (*Result, error) {
	addr, host, useTLS, err := parseHTTPURL(o.HTTP.URL)
	if err != nil {
		return nil, err
	}
	if useTLS {
		o.TLS.Enabled = true
	}
	if o.Driver, err = chooseDriver(o); err != nil {
		return nil, err
	}
	tlsCfg, err := o.TLS.Config(addr)
	if err != nil {
		return nil, err
	}
	newSigner := func() *signer { return newSigner(o.HTTP.AccessKeyID, o.HTTP.Secret, o.HTTP.Region, service, host) }
	if o.Keys > 0 {
		codes, wheel, err := mixWheel(o.Mix, func(code string) bool { _, ok := familyOf(code); return ok }, "CC CA CW CY M6 M8 with -keys")
		if err != nil {
			return nil, err
		}
		return driveKeyed(o, addr, tlsCfg, codes, wheel, newSigner)
	}
	c, err := dial(addr, tlsCfg)
	if err != nil {
		return nil, err
	}
	setup := &httpConn{c: c, br: bufio.NewReader(c), s: newSigner()}
	reqs, err := setup.prepare()
	if cerr := c.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("bench setup: %w", err)
	}
	codes, wheel, err := mixWheel(o.Mix, func(code string) bool { _, ok := reqs[code]; return ok }, "CC CA CW CY M6 M8 CK")
	if err != nil {
		return nil, err
	}
	byIndex := make([]*httpRequest, len(codes))
	for i, code := range codes {
		byIndex[i] = reqs[code]
	}
	return drive(o, addr, tlsCfg, codes, wheel, func() proto { return &httpProto{reqs: byIndex, s: newSigner()} })
}

// mixWheel orders the mix's codes and builds the weighted wheel of their indexes.
func mixWheel(mix map[string]int, known func(string) bool, set string) ([]string, []int, error) {
	var codes []string
	var wheel []int
	for code := range mix {
		if !known(code) {
			return nil, nil, fmt.Errorf("bench: command %s is not in the benchmark set (%s)", code, set)
		}
		codes = append(codes, code)
	}
	sort.Strings(codes)
	for i, code := range codes {
		for range mix[code] {
			wheel = append(wheel, i)
		}
	}
	if len(wheel) == 0 {
		return nil, nil, errors.New("bench: empty command mix")
	}
	return codes, wheel, nil
}

// drive opens the connections, runs the load and gathers the results.
func drive(o Options, addr string, tlsCfg *tls.Config, codes []string, wheel []int, newProto func() proto) (*Result, error) {
	workers := make([]*worker, o.Conns)
	conns := make([]net.Conn, o.Conns)
	for i := range workers {
		c, err := dial(addr, tlsCfg)
		if err != nil {
			return nil, err
		}
		conns[i] = c
		// The run's results are complete when these close: a close error
		// changes nothing that was measured.
		defer func() { _ = c.Close() }()
		// One deadline for the whole run: a stalled appliance fails the run
		// instead of hanging it, and no timer is reprogrammed per request.
		if err := c.SetDeadline(time.Now().Add(o.Warmup + o.Duration + time.Minute)); err != nil {
			return nil, fmt.Errorf("bench: set deadline: %w", err)
		}
		workers[i] = newWorker(c, i, o, newProto(), wheel)
	}
	var measuring, stopping atomic.Bool
	errs := make(chan error, len(workers))
	running := len(workers)
	if run := map[string]func([]*worker, []net.Conn, *atomic.Bool, *atomic.Bool, time.Time) error{
		DriverIOUring: runRing, DriverEpoll: runEpoll}[o.Driver]; run != nil {
		running = 1
		deadline := time.Now().Add(o.Warmup + o.Duration + time.Minute)
		go func() { errs <- run(workers, conns, &measuring, &stopping, deadline) }()
	}
	for _, w := range workers {
		if o.Driver != DriverGoroutine { // one thread drives them all (above)
			break
		}
		if o.Rate > 0 {
			go func() { errs <- w.runOpen(&measuring, &stopping) }()
		} else {
			go func() { errs <- w.run(&measuring, &stopping) }()
		}
	}
	time.Sleep(o.Warmup)
	cpu0, err := cpuTimes(o.PID)
	if err != nil {
		return nil, err
	}
	measuring.Store(true)
	start := time.Now()
	time.Sleep(o.Duration)
	measuring.Store(false)
	elapsed := time.Since(start)
	cpu1, err := cpuTimes(o.PID)
	if err != nil {
		return nil, err
	}
	stopping.Store(true)
	var firstErr error
	for range running {
		if err := <-errs; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	per := make([][]time.Duration, len(codes))
	perErr := make([]int, len(codes))
	var all []time.Duration
	okCount := 0
	for _, w := range workers {
		for j, d := range w.lat {
			k := w.cmd[j] &^ failed
			per[k] = append(per[k], d)
			all = append(all, d)
			if w.cmd[j]&failed == 0 {
				okCount++
			} else {
				perErr[k]++
			}
		}
	}
	res := &Result{Duration: elapsed, Throughput: float64(okCount) / elapsed.Seconds(), Total: stats("all", all, len(all)-okCount),
		ServerCPU: cpu1.server - cpu0.server, BenchCPU: cpu1.self - cpu0.self, Driver: o.Driver}
	for i, code := range codes {
		res.PerCommand = append(res.PerCommand, stats(code, per[i], perErr[i]))
	}
	return res, nil
}

func dial(addr string, tlsCfg *tls.Config) (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if tlsCfg != nil {
		return tls.DialWithDialer(d, "tcp", addr, tlsCfg)
	}
	return d.Dial("tcp", addr)
}

// failed marks a sample whose response carried an error code.
const failed = 0x80

// worker drives one connection.
type worker struct {
	c       io.ReadWriter
	br      *bufio.Reader
	wbuf    []byte
	p       proto
	wheel   []int
	rng     *rand.Rand
	window  int
	every   time.Duration // with a rate: the interval between this connection's requests
	next    time.Time     // with a rate: when the next request is due
	seq     uint64
	flight  []inflight // FIFO ring of requests sent and not answered
	head, n int
	lat     []time.Duration // per measured response
	cmd     []uint8         // its command index, | failed on an error code
}

type inflight struct {
	sent time.Time
	seq  uint64
	cmd  uint8
}

// proto is a front end's encoding as one connection uses it.
type proto interface {
	// appendRequest appends request k of the mix, numbered seq, to b; now
	// is the time of sending.
	appendRequest(b []byte, k int, seq uint64, now time.Time) []byte
	// complete reports whether a response can be read without blocking.
	complete(br *bufio.Reader) bool
	// readResponse consumes the response to request k (seq), checks that it
	// answers it, and reports whether it succeeded.
	readResponse(br *bufio.Reader, k int, seq uint64) (ok bool, err error)
}

// hostProto is the host port's framing: each request encoded once, only
// its header numbered per send.
type hostProto struct {
	frames [][]byte // one encoded request per command of the mix
	codes  []string
	rcodes [][2]byte // the expected response codes
	header int
}

func newHostProto(frames [][]byte, codes []string, header int) *hostProto {
	p := &hostProto{frames: make([][]byte, len(frames)), codes: codes, header: header}
	for k, f := range frames {
		p.frames[k] = append([]byte(nil), f...) // each worker numbers its own copy
		var code [2]byte
		copy(code[:], hostcmd.ResponseCode(codes[k]))
		p.rcodes = append(p.rcodes, code)
	}
	return p
}

func (p *hostProto) appendRequest(b []byte, k int, seq uint64, _ time.Time) []byte {
	start := len(b)
	b = append(b, p.frames[k]...)
	putSeq(b[start+2:start+2+p.header], seq)
	return b
}

// complete reports whether a whole response frame is buffered.
func (p *hostProto) complete(br *bufio.Reader) bool {
	if br.Buffered() < 2 {
		return false
	}
	lb, _ := br.Peek(2)
	return br.Buffered() >= 2+int(binary.BigEndian.Uint16(lb))
}

func (p *hostProto) readResponse(br *bufio.Reader, k int, seq uint64) (bool, error) {
	lb, err := br.Peek(2)
	if err != nil {
		return false, fmt.Errorf("bench: receive: %w", err)
	}
	n := 2 + int(binary.BigEndian.Uint16(lb))
	f, err := br.Peek(n)
	if err != nil {
		return false, fmt.Errorf("bench: receive: %w", err)
	}
	msg := f[2:]
	if len(msg) < p.header+4 {
		return false, fmt.Errorf("bench: response of %d bytes", len(msg))
	}
	var want [20]byte
	putSeq(want[:p.header], seq)
	if string(msg[:p.header]) != string(want[:p.header]) {
		return false, fmt.Errorf("bench: response header %q, want %q (out of order)", msg[:p.header], want[:p.header])
	}
	if rc := p.rcodes[k]; msg[p.header] != rc[0] || msg[p.header+1] != rc[1] {
		return false, fmt.Errorf("bench: %s answered with %q", p.codes[k], msg[p.header:p.header+2])
	}
	ok := msg[p.header+2] == '0' && msg[p.header+3] == '0'
	_, err = br.Discard(n)
	return ok, err
}

func newWorker(c io.ReadWriter, i int, o Options, p proto, wheel []int) *worker {
	w := &worker{c: c, br: bufio.NewReaderSize(c, 64<<10), p: p,
		wheel: wheel, rng: rand.New(rand.NewPCG(uint64(i), 7)), window: o.Pipeline, //nolint:gosec // G404: a reproducible command mix per connection, no secret.
		flight: make([]inflight, o.Pipeline)}
	if o.Rate > 0 {
		w.every = time.Duration(float64(o.Conns) / o.Rate * float64(time.Second))
		// Connections start spread over one interval.
		w.next = time.Now().Add(w.every * time.Duration(i) / time.Duration(o.Conns))
	}
	// Enough for about 40k responses per second per connection for a minute
	// without growing during the run.
	w.lat = make([]time.Duration, 0, 1<<16)
	w.cmd = make([]uint8, 0, 1<<16)
	return w
}

// run keeps the window full until stopping is set, then collects the
// responses still in flight.
func (w *worker) run(measuring, stopping *atomic.Bool) error {
	for {
		if !stopping.Load() {
			if err := w.send(); err != nil {
				return err
			}
		}
		if w.n == 0 {
			return nil
		}
		if err := w.receive(measuring); err != nil {
			return err
		}
	}
}

// send fills the window and writes the new requests with one write.
func (w *worker) send() error {
	if w.n == w.window {
		return nil
	}
	w.wbuf = w.wbuf[:0]
	now := time.Now()
	for w.n < w.window {
		k := w.wheel[w.rng.IntN(len(w.wheel))]
		w.seq++
		w.wbuf = w.p.appendRequest(w.wbuf, k, w.seq, now)
		w.flight[(w.head+w.n)%w.window] = inflight{sent: now, seq: w.seq, cmd: uint8(k)} //nolint:gosec // G115: k < len(codes) <= 8, the benchmark set (Run).
		w.n++
	}
	if _, err := w.c.Write(w.wbuf); err != nil {
		return fmt.Errorf("bench: send: %w", err)
	}
	return nil
}

// runOpen offers load on a schedule (-rate): a sender writes each request
// when it is due, independently of the responses, as long as fewer than the
// window are in flight; a receiver matches the responses. Latency counts
// from when each request was due, so a stall that delays the schedule is
// measured rather than hidden (no coordinated omission). Requests that fall
// due together go out in one write.
func (w *worker) runOpen(measuring, stopping *atomic.Bool) error {
	slots := make(chan struct{}, w.window) // one per request written and not yet answered
	sent := make(chan inflight, w.window)  // the requests written, in order
	errc := make(chan error, 1)
	go func() {
		defer close(sent)
		var batch []inflight
		for !stopping.Load() {
			if d := time.Until(w.next); d > 0 {
				time.Sleep(d)
			}
			w.wbuf, batch = w.wbuf[:0], batch[:0]
			for now := time.Now(); !w.next.After(now) && len(w.wbuf) < 8<<10; w.next = w.next.Add(w.every) {
				if len(batch) == 0 {
					slots <- struct{}{} // nothing unwritten: wait for room in the window
				} else if !tryAcquire(slots) {
					break // window full: write what is batched first
				}
				k := w.wheel[w.rng.IntN(len(w.wheel))]
				w.seq++
				w.wbuf = w.p.appendRequest(w.wbuf, k, w.seq, now)
				batch = append(batch, inflight{sent: w.next, seq: w.seq, cmd: uint8(k)}) //nolint:gosec // G115: k < len(codes) <= 8, the benchmark set (Run).
			}
			if _, err := w.c.Write(w.wbuf); err != nil {
				errc <- fmt.Errorf("bench: send: %w", err)
				return
			}
			for _, fl := range batch {
				sent <- fl
			}
		}
	}()
	for fl := range sent {
		err := w.match(fl, measuring)
		<-slots
		if err != nil {
			stopping.Store(true) // the sender ends; release what it still writes
			for range sent {
				<-slots
			}
			return err
		}
	}
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func tryAcquire(slots chan struct{}) bool {
	select {
	case slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// receive reads at least one response, then every further response that is
// already buffered.
func (w *worker) receive(measuring *atomic.Bool) error {
	for {
		if err := w.one(measuring); err != nil {
			return err
		}
		if w.n == 0 || !w.p.complete(w.br) {
			return nil
		}
	}
}

// one parses the response to the oldest request in flight.
func (w *worker) one(measuring *atomic.Bool) error {
	fl := w.flight[w.head]
	w.head, w.n = (w.head+1)%w.window, w.n-1
	return w.match(fl, measuring)
}

// match reads the next response and checks that it answers fl.
func (w *worker) match(fl inflight, measuring *atomic.Bool) error {
	ok, err := w.p.readResponse(w.br, int(fl.cmd), fl.seq)
	if err != nil {
		return err
	}
	if measuring.Load() {
		done := time.Now()
		k := fl.cmd
		if !ok {
			k |= failed
		}
		w.lat = append(w.lat, done.Sub(fl.sent))
		w.cmd = append(w.cmd, k)
	}
	return nil
}

// putSeq writes seq as decimal digits right-justified in h (its low digits
// when h is shorter).
func putSeq(h []byte, seq uint64) {
	for i := len(h) - 1; i >= 0; i-- {
		h[i] = byte('0' + seq%10)
		seq /= 10
	}
}

func stats(code string, ds []time.Duration, errs int) Stats {
	s := Stats{Code: code, Count: len(ds), Errors: errs}
	if len(ds) == 0 {
		return s
	}
	slices.Sort(ds)
	q := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	s.P50, s.P99, s.P999, s.Max = q(0.50), q(0.99), q(0.999), ds[len(ds)-1]
	return s
}

// ParseMix parses "CC=2,CY=1".
func ParseMix(s string) (map[string]int, error) {
	m := map[string]int{}
	for _, part := range strings.Split(s, ",") {
		code, w, found := strings.Cut(strings.TrimSpace(part), "=")
		n := 1
		if found {
			var err error
			if n, err = strconv.Atoi(w); err != nil || n < 0 || n > 1000 {
				return nil, fmt.Errorf("bench: weight %q", w)
			}
		}
		if len(code) != 2 {
			return nil, fmt.Errorf("bench: command %q", code)
		}
		m[strings.ToUpper(code)] = n
	}
	return m, nil
}

// Print writes r as a table.
func Print(w io.Writer, o Options, r *Result) error {
	rate := "as fast as answered"
	if o.Rate > 0 {
		rate = fmt.Sprintf("offered %.0f/s", o.Rate)
	}
	target := "host port " + o.Addr
	if o.HTTP.URL != "" {
		target = "HTTP API " + o.HTTP.URL
	}
	b := fmt.Appendf(nil, "%s: connections %d, pipeline %d, %s, duration %v (after %v warm-up), driver %s\n", target, o.Conns, max(o.Pipeline, 1), rate, r.Duration.Round(time.Millisecond), o.Warmup, r.Driver)
	if o.Keys > 0 {
		draw := "uniformly"
		if o.Zipf > 0 {
			draw = fmt.Sprintf("by a Zipf law, s = %g", o.Zipf)
		}
		b = fmt.Appendf(b, "keys: %d stored keys per command kind, drawn %s per request\n", o.Keys, draw)
	}
	b = fmt.Appendf(b, "throughput  %.0f successful commands/s\n", r.Throughput)
	if n := r.Total.Count; n > 0 {
		if o.PID != 0 {
			b = fmt.Appendf(b, "CPU per request: appliance (pid %d) %.2f µs, bench %.2f µs\n", o.PID,
				float64(r.ServerCPU.Nanoseconds())/1e3/float64(n), float64(r.BenchCPU.Nanoseconds())/1e3/float64(n))
		} else {
			b = fmt.Appendf(b, "CPU per request: bench %.2f µs\n", float64(r.BenchCPU.Nanoseconds())/1e3/float64(n))
		}
	}
	b = append(b, '\n')
	b = fmt.Appendf(b, "%-4s %10s %7s %10s %10s %10s %10s", "cmd", "count", "errors", "p50", "p99", "p99.9", "max")
	if o.HTTP.URL != "" {
		b = append(b, "  operation"...)
	}
	b = append(b, '\n')
	for _, s := range append(r.PerCommand, r.Total) {
		b = fmt.Appendf(b, "%-4s %10d %7d %10v %10v %10v %10v", s.Code, s.Count, s.Errors, s.P50.Round(time.Microsecond),
			s.P99.Round(time.Microsecond), s.P999.Round(time.Microsecond), s.Max.Round(time.Microsecond))
		if o.HTTP.URL != "" {
			b = append(b, "  "+httpOperations[s.Code]...)
		}
		b = append(b, '\n')
	}
	_, err := w.Write(b)
	return err
}

const usage = `usage: payhsm bench [flags]

Creates its own keys with A0 on the appliance, then drives -conns connections
(-pipeline requests in flight each, sent together) with the -mix of commands
for -duration and prints throughput and per-request latency percentiles (from
send to response). Commands: CC CA CW CY M6 M8 NC B2.

With -http URL it drives the AWS-compatible HTTP API instead, over keep-alive
HTTP/1.1 connections (-pipeline requests pipelined on each), every request
SigV4-signed: it creates its keys with CreateKey, and the same codes select
the data-plane operations CC, CA TranslatePinData; CW GenerateCardValidationData;
CY VerifyCardValidationData; M6 GenerateMac; M8 VerifyMac; and CK CreateKey
(control plane: each creates an AES-128 key, a key store write). The credentials come
from -credentials (an AWS shared credentials file such as the DATA-DIR/credentials
that serve --dev writes) or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. A
response other than 200 counts as an error.

With -keys N (HTTP mode) each request names one of N stored keys of its
command's kind (ZPKs for CC CA, each with a PIN block under it; CVKs for CW
CY, each with its CVV; MAKs for M6 M8, each with its MAC), drawn uniformly
per request or, with -zipf S, by a Zipf law of exponent S. The keys are
created first (CreateKey over -conns connections, then one request each for
its value); with -keys-file F they are appended to F as they are made and the
next run against the same store reuses them (creating a million takes
minutes). The first and last key of each command are tried once before the
load: a keys file from another store fails there.

With -pid PID (the appliance's process on the same machine) it also prints
the CPU time (user + system, from /proc/PID/stat) that process and the bench
itself spent per request in the measured window.

With -rate the load is offered on a schedule (requests/s over all
connections) and each latency counts from when its request was due.

-driver chooses how connections (host port or HTTP) are driven: io_uring
(one thread and one ring for all of them, Linux 6.0+; the default where it
can run), epoll (one thread, one epoll set, Linux) or goroutine (one per
connection; always with -tls, https and -rate). The semantics are the same:
-conns connections, -pipeline requests in flight each (HTTP: keep-alive,
pipelined, each signed as it is sent), latency from the send to the response.

examples:
  payhsm bench -addr 127.0.0.1:1500 -conns 32 -duration 20s -mix CC=1
  payhsm bench -addr 127.0.0.1:1500 -conns 32 -pipeline 4 -duration 20s -mix CC=1
  payhsm bench -addr 127.0.0.1:1500 -conns 32 -pipeline 4 -rate 50000 -duration 20s -mix CC=1
  payhsm bench -http http://127.0.0.1:8080 -credentials DATA-DIR/credentials -conns 32 -duration 20s -mix CC=1,CY=1,M8=1
  payhsm bench -http http://127.0.0.1:8080 -credentials DATA-DIR/credentials -keys 1000000 -keys-file keys.txt -zipf 1 -mix CY=1
`

// maxKeys bounds -keys (the Zipf table's ranks are int32).
const maxKeys = 1 << 28

// Main runs `payhsm bench`.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("payhsm bench", flag.ContinueOnError)
	fs.Usage = cli.UsageFunc(fs, usage)
	var o Options
	fs.StringVar(&o.Addr, "addr", "127.0.0.1:1500", "host port address")
	fs.IntVar(&o.Conns, "conns", 32, "connections")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured duration")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "unmeasured warm-up")
	fs.IntVar(&o.Header, "header", 4, "message header length")
	fs.IntVar(&o.Pipeline, "pipeline", 1, "requests in flight per connection")
	fs.Float64Var(&o.Rate, "rate", 0, "offered load, requests/s over all connections (0: as fast as answered); latency then counts from when each request was due")
	mix := fs.String("mix", "CC=1", "weighted command mix, e.g. CC=2,CY=1,M8=1")
	fs.StringVar(&o.HTTP.URL, "http", "", "drive the HTTP API at this base URL (http://host:port) instead of the host port")
	creds := fs.String("credentials", "", "HTTP mode: AWS shared credentials file (default: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
	profile := fs.String("profile", "default", "HTTP mode: profile in the -credentials file")
	fs.StringVar(&o.HTTP.Region, "region", "us-east-1", "HTTP mode: signing region")
	fs.IntVar(&o.Keys, "keys", 0, "HTTP mode: each request names one of N stored keys of its command's kind (created once; see -keys-file)")
	fs.Float64Var(&o.Zipf, "zipf", 0, "with -keys: draw the keys by a Zipf law of this exponent (0: uniformly)")
	fs.StringVar(&o.KeysFile, "keys-file", "", "with -keys: keep the created keys (ARNs and values) in this file and reuse them on the next run against the same store")
	fs.StringVar(&o.Driver, "driver", "", "how connections (host port or HTTP) are driven, io_uring (one thread, one ring), epoll (one thread, one epoll set), both for plain TCP without -rate, or goroutine (one per connection); default "+DefaultDriver+" where it can run, else goroutine")
	fs.IntVar(&o.PID, "pid", 0, "the appliance's process id: report its CPU time per request during the measured window (Linux)")
	o.TLS.Register(fs)
	if code, ok := cli.Parse(fs, args, stdout, stderr); !ok {
		return code
	}
	var err error
	if o.HTTP.URL != "" {
		if o.HTTP.AccessKeyID, o.HTTP.Secret, err = LoadCredentials(*creds, *profile); err != nil {
			cli.Say(stderr, "payhsm bench:", err)
			return 2
		}
	}
	if o.Mix, err = ParseMix(*mix); err != nil || o.Conns < 1 || o.Duration <= 0 || o.Pipeline < 1 || o.Pipeline > 1024 || o.Header < 0 || o.Header > 20 || o.Rate < 0 {
		cli.Say(stderr, "payhsm bench: bad -mix, -conns, -duration, -pipeline, -header or -rate", err)
		return 2
	}
	if o.Keys < 0 || o.Keys > maxKeys || o.Zipf < 0 || math.IsNaN(o.Zipf) || (o.Keys == 0 && (o.Zipf != 0 || o.KeysFile != "")) {
		cli.Say(stderr, "payhsm bench: bad -keys (0 to", maxKeys, "), -zipf (>= 0) or -keys-file (with -keys)")
		return 2
	}
	o.Log = stderr
	r, err := Run(o)
	if err != nil {
		cli.Say(stderr, "payhsm bench:", err)
		return 1
	}
	if err := Print(stdout, o, r); err != nil {
		cli.Say(stderr, "payhsm bench: write output:", err)
		return 1
	}
	if r.Total.Errors > 0 {
		return 3
	}
	return 0
}
