// Package etcdkv is the shared kv.Engine: a key prefix of an etcd v3
// cluster, which many payhsm processes (a fleet) use at once. The store's
// records go into etcd exactly as they go into Pebble (sealed and
// authenticated by the store; etcd holds only their bytes), each under the
// prefix followed by the store's own key.
//
// # Consistency
//
// Get and Scan are linearizable reads (etcd's default): they see every
// transaction any process committed before they started. A Scan is read in
// pages of pageSize keys, every page at the revision of the first, so it is
// one consistent snapshot. A View pins the current revision and reads
// everything at it.
//
// A Txn is optimistic. Each Get records the key's mod revision (0 when
// absent), each Scan the revision it read at and the mod revision of every
// key it returned; Commit sends one etcd transaction whose compares require
// all of it to still hold: each key read still at its mod revision (a key
// read as absent still absent, a key returned by a scan neither changed nor
// deleted) and no key in a scanned range modified or created after the
// scan's revision. If any compare fails, etcd applies nothing and Commit
// returns kv.ErrConflict; the store then runs the operation again. Two
// processes creating the same alias at once: both read it absent, both
// commit "alias unchanged since absent" plus their put, and etcd applies
// exactly one of them.
//
// # Limits
//
// One transaction is one etcd request, bounded by the server's
// --max-txn-ops (compares and operations, each; default 128) and
// --max-request-bytes (default 1.5 MiB). The engine checks a transaction
// against Config.MaxTxnOps and Config.MaxRequestBytes (defaulting to those
// server defaults) before it sends it and refuses one that exceeds them
// with kv.ErrTooLarge; a transaction is never split, since that would break
// its atomicity. The store's largest transactions (a key with 50 tags, a 1
// MiB metadata blob, a re-sealing batch) fit the defaults; the store sizes
// its migration and re-sealing batches from Limits.
//
// # Failures
//
// A request that does not complete within Config.RequestTimeout (the
// cluster unreachable, or without quorum) fails with kv.ErrUnavailable;
// for a Commit the outcome is then unknown (etcd may have applied it), and
// the error says so. Reads are retried by the etcd client where that is
// safe. Nothing is latched: the engine serves again as soon as the cluster
// does.
//
// # Watching and leading
//
// Every record lives under Config.Prefix, so one etcd watch of the prefix
// sees every process's writes: Watch (kv.Watcher, watch.go) delivers them,
// resumes a lost watch from the last revision delivered, reports a
// compacted history as a reset, and confirms with linearizable probes and
// progress notifications that the watch is current (the store's staleness
// bound rests on it). Lead (kv.Elector) elects one process per role with
// an etcd election held by a lease, under the prefix's "sys/leader/".
package etcdkv

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"payhsm/fault"
	"payhsm/keystore/kv"
)

// Defaults of Config.
const (
	DefaultDialTimeout     = 5 * time.Second
	DefaultRequestTimeout  = 5 * time.Second
	DefaultMaxTxnOps       = 128         // etcd's --max-txn-ops default
	DefaultMaxRequestBytes = 1536 * 1024 // etcd's --max-request-bytes default
	requestOverhead        = 64          // bytes of framing counted per compare or operation
	pageSize               = 256         // keys per Scan page
	maxPrefixLen           = 256         // bytes
	prefixChars            = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/"
	requestBytesMargin     = 16 * 1024        // left of MaxRequestBytes for the request's own framing
	formatProbe            = "sys/format"     // a key Open reads to check the cluster answers
	maxRequestBytesLimit   = 64 * 1024 * 1024 // a sanity bound on Config.MaxRequestBytes
	maxTxnOpsLimit         = 1 << 20          // a sanity bound on Config.MaxTxnOps
	compactedHint          = "the cluster compacted the revision this read was pinned to; retry"
	unknownOutcome         = "the outcome is unknown: etcd may have applied it"
	timeoutHint            = "is it reachable, with a quorum of members up?"
)

// TLSFiles names the PEM files of a TLS client configuration. All empty
// means plain TCP.
type TLSFiles struct {
	CertFile string // the client certificate
	KeyFile  string // its private key
	CAFile   string // the CA that signed the members' server certificates; empty: the system roots
}

// Config configures Open.
type Config struct {
	Endpoints      []string // member client URLs or host:port
	Prefix         string   // every key of the store lives under it; see ValidatePrefix
	TLS            TLSFiles
	DialTimeout    time.Duration // default DefaultDialTimeout
	RequestTimeout time.Duration // each request, default DefaultRequestTimeout
	// MaxTxnOps and MaxRequestBytes are the cluster's --max-txn-ops and
	// --max-request-bytes (default DefaultMaxTxnOps, DefaultMaxRequestBytes).
	MaxTxnOps       int
	MaxRequestBytes int
	Logger          *zap.Logger // nil: none
}

// ValidatePrefix checks an etcd key prefix: 2 to 256 characters of
// letters, digits, '.', '_', '-' and '/', starting and ending with '/'
// (so that no prefix is the start of another store's, as "/payhsm" would
// be of "/payhsm2/"), without an empty segment.
func ValidatePrefix(p string) error {
	switch {
	case len(p) < 2 || len(p) > maxPrefixLen:
		return fmt.Errorf("etcd prefix %q: must be 2 to %d characters", p, maxPrefixLen)
	case p[0] != '/' || p[len(p)-1] != '/':
		return fmt.Errorf("etcd prefix %q: must start and end with '/' (e.g. \"/payhsm/eu-west-1/\")", p)
	case strings.Contains(p, "//"):
		return fmt.Errorf("etcd prefix %q: has an empty segment (\"//\")", p)
	}
	for _, c := range p {
		if !strings.ContainsRune(prefixChars, c) {
			return fmt.Errorf("etcd prefix %q: character %q is not allowed (letters, digits, '.', '_', '-', '/')", p, c)
		}
	}
	return nil
}

// Engine is a kv.Engine on a prefix of an etcd cluster.
type Engine struct {
	c        *clientv3.Client
	prefix   string
	end      string // the least key after every key under prefix
	timeout  time.Duration
	limits   kv.Limits
	name     string
	log      *zap.Logger
	closeMu  sync.Once
	closeErr error
}

var _ kv.Engine = (*Engine)(nil)

// Open connects to the cluster and checks that it answers a linearizable
// read under the prefix within the request timeout, so that a wrong
// endpoint, a cluster without quorum or a TLS mismatch is reported at
// start with one clear error.
func Open(cfg Config) (*Engine, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints configured")
	}
	if err := ValidatePrefix(cfg.Prefix); err != nil {
		return nil, err
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.MaxTxnOps <= 0 {
		cfg.MaxTxnOps = DefaultMaxTxnOps
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.MaxTxnOps > maxTxnOpsLimit || cfg.MaxRequestBytes > maxRequestBytesLimit || cfg.MaxRequestBytes <= 2*requestBytesMargin {
		return nil, fmt.Errorf("etcd: maxTxnOps %d or maxRequestBytes %d out of range", cfg.MaxTxnOps, cfg.MaxRequestBytes)
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	tlsCfg, err := cfg.TLS.config()
	if err != nil {
		return nil, err
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		TLS:         tlsCfg,
		Logger:      log.Named("client").WithOptions(zap.IncreaseLevel(zap.WarnLevel)),
		// The client's own keepalive notices a dead member and moves on.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: cfg.DialTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd: connect to %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	e := &Engine{
		c: c, prefix: cfg.Prefix, end: string(kv.PrefixEnd([]byte(cfg.Prefix))), timeout: cfg.RequestTimeout,
		limits: kv.Limits{MaxOps: cfg.MaxTxnOps, MaxBytes: cfg.MaxRequestBytes - requestBytesMargin},
		name:   fmt.Sprintf("etcd prefix %s at %s", cfg.Prefix, strings.Join(cfg.Endpoints, ",")),
		log:    log,
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(cfg.RequestTimeout, cfg.DialTimeout))
	defer cancel()
	if _, err := c.Get(ctx, cfg.Prefix+formatProbe); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("the etcd cluster at %s did not answer a read within %v (%s): %w",
			strings.Join(cfg.Endpoints, ","), max(cfg.RequestTimeout, cfg.DialTimeout), timeoutHint, mapErr(err, max(cfg.RequestTimeout, cfg.DialTimeout), false))
	}
	return e, nil
}

// config builds the TLS client configuration, or nil for plain TCP.
func (f TLSFiles) config() (*tls.Config, error) {
	if f == (TLSFiles{}) {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if (f.CertFile == "") != (f.KeyFile == "") {
		return nil, errors.New("etcd tls: cert and key must be given together")
	}
	if f.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd tls: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd tls: ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd tls: ca: %s holds no PEM certificate", f.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// Name implements kv.Engine.
func (e *Engine) Name() string { return e.name }

// Limits implements kv.Engine.
func (e *Engine) Limits() kv.Limits { return e.limits }

// Client is the etcd client, for what the store does not do itself
// (watches of the prefix, leases, cluster status).
func (e *Engine) Client() *clientv3.Client { return e.c }

// Prefix is the key prefix the store lives under.
func (e *Engine) Prefix() string { return e.prefix }

// Close implements kv.Engine.
func (e *Engine) Close() error {
	e.closeMu.Do(func() { e.closeErr = e.c.Close() })
	if e.closeErr != nil && !errors.Is(e.closeErr, context.Canceled) {
		return fmt.Errorf("etcd: close: %w", e.closeErr)
	}
	return nil
}

func (e *Engine) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), e.timeout)
}

// mapErr turns an etcd or gRPC error into one of kv's (wrapped, with the
// original's text). An error of kind Unavailable carries a message a client
// may see (fault.Error.Message) that says what is wrong with the cluster:
// no answer within timeout (no quorum, or unreachable; for a commit, the
// outcome unknown) or its NOSPACE alarm (database quota exceeded). commit
// says whether err answered a commit.
func mapErr(err error, timeout time.Duration, commit bool) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, rpctypes.ErrTooManyOps), errors.Is(err, rpctypes.ErrRequestTooLarge):
		return fmt.Errorf("%w: %v", kv.ErrTooLarge, err)
	case errors.Is(err, rpctypes.ErrCompacted):
		return fmt.Errorf("%w: %s: %v", kv.ErrUnavailable, compactedHint, err)
	case errors.Is(err, rpctypes.ErrNoSpace):
		// Not retried: the alarm stays until an operator clears it. etcd
		// refuses every write and serves reads meanwhile.
		return fault.Wrap(fault.Unavailable, noSpaceMessage, fmt.Errorf("%w: %w: %v", kv.ErrUnavailable, ErrNoSpace, err))
	case errors.Is(err, context.Canceled) || errors.Is(err, clientv3.ErrNoAvailableEndpoints):
		return fmt.Errorf("%w: %v", kv.ErrClosed, err)
	}
	if s, ok := status.FromError(err); ok && s.Code() == codes.Canceled {
		return fmt.Errorf("%w: %v", kv.ErrClosed, err)
	}
	msg := fmt.Sprintf("key store unavailable: its etcd cluster did not answer within %v (no quorum of members up, or unreachable); retry later", timeout)
	if commit {
		msg = fmt.Sprintf("key store unavailable: its etcd cluster did not confirm the write within %v (no quorum of members up, or unreachable); the write may or may not have been applied", timeout)
	}
	return fault.Wrap(fault.Unavailable, msg, fmt.Errorf("%w: %v", kv.ErrUnavailable, err))
}

// ErrNoSpace matches (with kv.ErrUnavailable) a write the cluster refused
// because its NOSPACE alarm is raised: its backend database reached
// --quota-backend-bytes.
var ErrNoSpace = errors.New("etcd: the cluster's NOSPACE alarm is raised (database space exceeded)")

// noSpaceMessage is the client-safe text of a write refused for NOSPACE; it
// names the same cause and remedy as the Pebble engine's disk reserve.
const noSpaceMessage = "key store full: its etcd cluster raised the NOSPACE alarm (database space exceeded), so it is refusing writes; an operator must compact and defragment the cluster and disarm the alarm (etcdctl alarm disarm)"

// Get implements kv.Reader.
func (e *Engine) Get(key []byte) ([]byte, bool, error) {
	v, _, ok, err := e.get(key, 0)
	return v, ok, err
}

// get reads key at revision rev (0: the current one); modRev is 0 when the
// key is absent.
func (e *Engine) get(key []byte, rev int64) (val []byte, modRev int64, ok bool, err error) {
	ctx, cancel := e.ctx()
	defer cancel()
	var opts []clientv3.OpOption
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := e.c.Get(ctx, e.prefix+string(key), opts...)
	if err != nil {
		return nil, 0, false, fmt.Errorf("etcd get: %w", mapErr(err, e.timeout, false))
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, false, nil
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision, true, nil
}

// Scan implements kv.Reader: one consistent snapshot, read in pages.
func (e *Engine) Scan(lo, hi []byte, fn func(k, v []byte) (bool, error)) error {
	_, _, err := e.scan(lo, hi, 0, func(kv *mvccpb.KeyValue) (bool, error) {
		return fn(kv.Key[len(e.prefix):], kv.Value)
	})
	return err
}

// scan reads [lo, hi) at revision rev (0: the current one, which then pins
// every later page) and calls fn for each key. It returns the revision it
// read at and, when fn stopped it, the last key it passed to fn (full).
func (e *Engine) scan(lo, hi []byte, rev int64, fn func(*mvccpb.KeyValue) (bool, error)) (int64, []byte, error) {
	start := e.prefix + string(lo)
	end := e.end
	if hi != nil {
		end = e.prefix + string(hi)
	}
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(pageSize),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		ctx, cancel := e.ctx()
		resp, err := e.c.Get(ctx, start, opts...)
		cancel()
		if err != nil {
			return 0, nil, fmt.Errorf("etcd scan: %w", mapErr(err, e.timeout, false))
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, item := range resp.Kvs {
			more, err := fn(item)
			if err != nil {
				return rev, nil, err
			}
			if !more {
				return rev, item.Key, nil
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil, nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Count implements kv.Counter: one count-only range request (etcd sends no
// key and no value back).
func (e *Engine) Count(lo, hi []byte) (int, error) {
	end := e.end
	if hi != nil {
		end = e.prefix + string(hi)
	}
	ctx, cancel := e.ctx()
	defer cancel()
	resp, err := e.c.Get(ctx, e.prefix+string(lo), clientv3.WithRange(end), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("etcd count: %w", mapErr(err, e.timeout, false))
	}
	return int(resp.Count), nil
}

var _ kv.Counter = (*Engine)(nil)

// Optimistic implements kv.Optimistic: a transaction is checked at commit
// (see the package comment).
func (e *Engine) Optimistic() bool { return true }

// View implements kv.Engine: every read at the revision current now.
func (e *Engine) View() (kv.View, error) {
	ctx, cancel := e.ctx()
	defer cancel()
	resp, err := e.c.Get(ctx, e.prefix+formatProbe, clientv3.WithCountOnly())
	if err != nil {
		return nil, fmt.Errorf("etcd view: %w", mapErr(err, e.timeout, false))
	}
	return &view{e: e, rev: resp.Header.Revision}, nil
}

type view struct {
	e   *Engine
	rev int64
}

func (v *view) Get(key []byte) ([]byte, bool, error) {
	val, _, ok, err := v.e.get(key, v.rev)
	return val, ok, err
}

func (v *view) Scan(lo, hi []byte, fn func(k, v []byte) (bool, error)) error {
	_, _, err := v.e.scan(lo, hi, v.rev, func(item *mvccpb.KeyValue) (bool, error) {
		return fn(item.Key[len(v.e.prefix):], item.Value)
	})
	return err
}

func (v *view) Close() error { return nil }

// Begin implements kv.Engine. It makes no request.
func (e *Engine) Begin() (kv.Txn, error) {
	return &txn{e: e, reads: map[string]int64{}, writes: map[string]*write{}}, nil
}

type write struct {
	val []byte // nil: delete
	del bool
}

type rangeRead struct {
	lo, hi string // full keys; the range is [lo, hi)
	rev    int64  // the revision it was read at
}

type txn struct {
	e        *Engine
	reads    map[string]int64 // full key -> mod revision seen (0: absent)
	ranges   []rangeRead
	writes   map[string]*write
	order    []string // write keys in first-write order
	conflict bool     // two reads of one key disagreed
	done     bool
}

// saw records that key was read at mod revision modRev.
func (t *txn) saw(key string, modRev int64) {
	if prev, ok := t.reads[key]; ok && prev != modRev {
		t.conflict = true
	}
	t.reads[key] = modRev
}

func (t *txn) Get(key []byte) ([]byte, bool, error) {
	val, modRev, ok, err := t.e.get(key, 0)
	if err != nil {
		return nil, false, err
	}
	t.saw(t.e.prefix+string(key), modRev)
	return val, ok, nil
}

func (t *txn) Scan(lo, hi []byte, fn func(k, v []byte) (bool, error)) error {
	e := t.e
	rev, last, err := e.scan(lo, hi, 0, func(item *mvccpb.KeyValue) (bool, error) {
		t.saw(string(item.Key), item.ModRevision)
		return fn(item.Key[len(e.prefix):], item.Value)
	})
	if err != nil {
		return err
	}
	r := rangeRead{lo: e.prefix + string(lo), hi: e.end, rev: rev}
	if hi != nil {
		r.hi = e.prefix + string(hi)
	}
	if last != nil { // stopped early: only what was read up to last counts
		r.hi = string(last) + "\x00"
	}
	t.ranges = append(t.ranges, r)
	return nil
}

func (t *txn) put(key []byte, w *write) error {
	if t.done {
		return errors.New("etcd: transaction already ended")
	}
	k := t.e.prefix + string(key)
	if _, ok := t.writes[k]; !ok {
		t.order = append(t.order, k)
	}
	t.writes[k] = w
	return nil
}

func (t *txn) Set(key, value []byte) error {
	return t.put(key, &write{val: bytes.Clone(value)})
}

func (t *txn) Delete(key []byte) error { return t.put(key, &write{del: true}) }

func (t *txn) Discard() { t.done = true }

func (t *txn) Commit() error {
	if t.done {
		return errors.New("etcd: transaction already ended")
	}
	t.done = true
	if len(t.writes) == 0 {
		return nil // its reads were linearizable; nothing to apply
	}
	if t.conflict {
		return fmt.Errorf("etcd commit: %w (a key read twice changed in between)", kv.ErrConflict)
	}
	cmps := make([]clientv3.Cmp, 0, len(t.reads)+len(t.ranges))
	size := 0
	for k, rev := range t.reads {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", rev))
		size += len(k) + requestOverhead
	}
	for _, r := range t.ranges {
		// Every key in the range unchanged since the scan: none modified or
		// created after its revision (the keys it returned are also compared
		// one by one above, which catches their deletion).
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(r.lo), "<", r.rev+1).WithRange(r.hi))
		size += len(r.lo) + len(r.hi) + requestOverhead
	}
	ops := make([]clientv3.Op, 0, len(t.order))
	for _, k := range t.order {
		w := t.writes[k]
		if w.del {
			ops = append(ops, clientv3.OpDelete(k))
		} else {
			ops = append(ops, clientv3.OpPut(k, string(w.val)))
		}
		size += len(k) + len(w.val) + requestOverhead
	}
	l := t.e.limits
	if len(cmps) > l.MaxOps || len(ops) > l.MaxOps || size > l.MaxBytes {
		return fmt.Errorf("etcd commit: %w: %d reads to check, %d writes, about %d bytes (limits: %d operations each, %d bytes; raise the cluster's --max-txn-ops and --max-request-bytes and the keystore's maxTxnOps and maxRequestBytes together)",
			kv.ErrTooLarge, len(cmps), len(ops), size, l.MaxOps, l.MaxBytes)
	}
	ctx, cancel := t.e.ctx()
	defer cancel()
	resp, err := t.e.c.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		err = mapErr(err, t.e.timeout, true)
		if errors.Is(err, kv.ErrUnavailable) && !errors.Is(err, ErrNoSpace) {
			return fmt.Errorf("etcd commit (%s): %w", unknownOutcome, err)
		}
		return fmt.Errorf("etcd commit: %w", err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("etcd commit: %w", kv.ErrConflict)
	}
	return nil
}
