// Package bench is `payhsm bench`, the host-port load tool: it creates its
// own keys on the appliance with host commands (A0), prepares valid requests
// (a PIN block with EE, a CVV with CW, a MAC with M6), then drives N
// connections, each sending one request at a time from a weighted command
// mix, for a duration, and prints throughput and latency percentiles.
package bench

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	TLS      hostclient.TLSFlags
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

type sample struct {
	cmd int
	d   time.Duration
	ok  bool
}

// Run prepares the requests and drives the load.
func Run(o Options) (*Result, error) {
	tlsCfg, err := o.TLS.Config(o.Addr)
	if err != nil {
		return nil, err
	}
	setup, err := hostclient.Dial(o.Addr, tlsCfg, o.Header)
	if err != nil {
		return nil, err
	}
	reqs, err := Prepare(setup)
	setup.Close()
	if err != nil {
		return nil, fmt.Errorf("bench setup: %w", err)
	}
	var codes []string
	var wheel []int
	for code := range o.Mix {
		if _, ok := reqs[code]; !ok {
			return nil, fmt.Errorf("bench: command %s is not in the benchmark set (CC CA CW CY M6 M8 NC B2)", code)
		}
		codes = append(codes, code)
	}
	sort.Strings(codes)
	for i, code := range codes {
		for range o.Mix[code] {
			wheel = append(wheel, i)
		}
	}
	if len(wheel) == 0 {
		return nil, errors.New("bench: empty command mix")
	}
	clients := make([]*hostclient.Client, o.Conns)
	for i := range clients {
		if clients[i], err = hostclient.Dial(o.Addr, tlsCfg, o.Header); err != nil {
			return nil, err
		}
		defer clients[i].Close()
	}
	var measuring atomic.Bool
	stop := make(chan struct{})
	results := make([][]sample, o.Conns)
	errs := make([]error, o.Conns)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			var out []sample
			for {
				select {
				case <-stop:
					results[i] = out
					return
				default:
				}
				k := wheel[rng.IntN(len(wheel))]
				rq := reqs[codes[k]]
				t0 := time.Now()
				r, err := c.Call(rq.Code, rq.Fields)
				d := time.Since(t0)
				if err != nil {
					errs[i] = err
					results[i] = out
					return
				}
				if measuring.Load() {
					out = append(out, sample{k, d, r.Error == "00"})
				}
			}
		}()
	}
	time.Sleep(o.Warmup)
	measuring.Store(true)
	start := time.Now()
	time.Sleep(o.Duration)
	measuring.Store(false)
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	for _, e := range errs {
		if e != nil {
			return nil, e
		}
	}
	per := make([][]time.Duration, len(codes))
	perErr := make([]int, len(codes))
	var all []time.Duration
	okCount := 0
	for _, rs := range results {
		for _, s := range rs {
			per[s.cmd] = append(per[s.cmd], s.d)
			all = append(all, s.d)
			if s.ok {
				okCount++
			} else {
				perErr[s.cmd]++
			}
		}
	}
	res := &Result{Duration: elapsed, Throughput: float64(okCount) / elapsed.Seconds(), Total: stats("all", all, len(all)-okCount)}
	for i, code := range codes {
		res.PerCommand = append(res.PerCommand, stats(code, per[i], perErr[i]))
	}
	return res, nil
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
func Print(w io.Writer, o Options, r *Result) {
	fmt.Fprintf(w, "connections %d, duration %v (after %v warm-up)\n", o.Conns, r.Duration.Round(time.Millisecond), o.Warmup)
	fmt.Fprintf(w, "throughput  %.0f successful commands/s\n\n", r.Throughput)
	fmt.Fprintf(w, "%-4s %10s %7s %10s %10s %10s %10s\n", "cmd", "count", "errors", "p50", "p99", "p99.9", "max")
	for _, s := range append(r.PerCommand, r.Total) {
		fmt.Fprintf(w, "%-4s %10d %7d %10v %10v %10v %10v\n", s.Code, s.Count, s.Errors, s.P50.Round(time.Microsecond),
			s.P99.Round(time.Microsecond), s.P999.Round(time.Microsecond), s.Max.Round(time.Microsecond))
	}
}

const usage = `usage: payhsm bench [flags]

Creates its own keys with A0 on the appliance, then drives -conns connections
(one outstanding request each) with the -mix of commands for -duration and
prints throughput and latency percentiles. Commands: CC CA CW CY M6 M8 NC B2.

example:
  payhsm bench -addr 127.0.0.1:1500 -conns 32 -duration 20s -mix CC=1
`

// Main runs `payhsm bench`.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	var o Options
	fs.StringVar(&o.Addr, "addr", "127.0.0.1:1500", "host port address")
	fs.IntVar(&o.Conns, "conns", 32, "connections")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured duration")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "unmeasured warm-up")
	fs.IntVar(&o.Header, "header", 4, "message header length")
	mix := fs.String("mix", "CC=1", "weighted command mix, e.g. CC=2,CY=1,M8=1")
	o.TLS.Register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	if o.Mix, err = ParseMix(*mix); err != nil || o.Conns < 1 || o.Duration <= 0 {
		fmt.Fprintln(stderr, "payhsm bench: bad -mix, -conns or -duration", err)
		return 2
	}
	r, err := Run(o)
	if err != nil {
		fmt.Fprintln(stderr, "payhsm bench:", err)
		return 1
	}
	Print(stdout, o, r)
	if r.Total.Errors > 0 {
		return 3
	}
	return 0
}
