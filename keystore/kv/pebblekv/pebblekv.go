// Package pebblekv is the embedded kv.Engine: one Pebble database in a
// directory, used by one process (Pebble's LOCK file refuses a second).
//
// # Transactions and group commit
//
// Transactions run one at a time: Begin takes the engine's transaction
// lock and Commit releases it, so nothing else writes between a
// transaction's reads and its commit, and a commit never conflicts. What a
// committed transaction writes joins the open group; the transaction then
// waits, without the lock, for its group to be committed: one Pebble batch
// holding every transaction of the group, committed with pebble.Sync (one
// WAL fsync). One group is committed at a time; while it is, the next one
// fills (group commit: transactions that arrive during an fsync share the
// next one). A transaction reads through an indexed batch that holds the
// writes of its own group's earlier transactions and of the group being
// committed, over the database, which holds every group before: it sees
// everything committed before it, acknowledged or not, and its own
// acknowledgement waits for every group it could have read from. Reads
// outside a transaction (Get, Scan, View) see only the groups Pebble has
// applied, never a group still filling.
//
// Pebble itself sees one synchronous commit at a time, as it did when the
// store held one lock across each commit, so a failed WAL write or sync
// surfaces in that commit's call (through Logger.Fatalf) and nowhere else:
// every transaction of the failed group, and of every group after it,
// fails. A group is one batch, one checksummed WAL record: after a crash it
// is wholly present or wholly absent, and no transaction of it was
// acknowledged unless the whole group was durable.
//
// # Failures
//
// When the disk refuses a WAL write or sync, Pebble cannot continue: the
// failed batch may already be visible in memory, and its commit pipeline is
// stuck. The commit that hit the failure returns an error wrapping
// kv.ErrFailed, and so does every later call, until the database is
// reopened. Pebble reports the failure either from the commit (Logger.Fatalf,
// or a panic from its WAL writer) or from SyncWait; all three end here.
// A Fatalf anywhere else (a background flush or compaction) panics, which
// ends the process, as Pebble expects.
package pebblekv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"

	"payhsm/keystore/kv"
)

// ErrLocked: another process (or another Open in this one) holds the
// database open.
var ErrLocked = errors.New("pebblekv: the database is locked by another process")

// Options configures Open. The zero value is the production configuration.
type Options struct {
	// FS is the file system the database lives in; nil means vfs.Default.
	// Tests pass vfs.NewMem(), vfs.NewCrashableMem() or an errorfs wrapper.
	FS vfs.FS
	// Logger receives Pebble's log lines; nil means none.
	Logger *zap.Logger
	// SerialCommit commits every transaction in its own batch, holding the
	// transaction lock across its WAL fsync (no group commit), as the store
	// did before group commit. It exists to measure group commit against
	// (BenchmarkCreateKey); production leaves it off.
	SerialCommit bool
	// CacheSize is the block cache's size in bytes; 0 means DefaultCacheSize.
	CacheSize int64
	// IndexedPrefixes are key prefixes whose keys are indexed in memory
	// (index.go), so that a transaction's read of such a key that the
	// database does not hold returns without reading it once the index is
	// loaded (in the background, from Open). The key store indexes its key
	// records: every creation first checks that its new id is free.
	IndexedPrefixes [][]byte
}

// DefaultCacheSize is the block cache's default size. Pebble's own default
// (8 MiB) holds little of a store of a million keys (about 320 bytes a
// key), so that reading a key not in the working-key cache mostly misses
// it too: a read of the table's blocks from the page cache, their checksum
// and decompression, for every such key. The cache holds only blocks read,
// off the Go heap, so a small store costs no more than its size. 1 GiB holds
// a store of about three million keys: from a million stored keys, a
// uniformly drawn key not in the working-key cache cost 58–67 µs of daemon
// CPU per HTTP request with it against 97–103 µs with 256 MiB, which left a
// third of the store's 304 MB on disk (docs/performance.md, "Cold keys").
// The daemon sets it from keystore.cacheMB.
const DefaultCacheSize = 1 << 30

// DB is a kv.Engine on one Pebble database.
type DB struct {
	db  *pebble.DB
	dir string
	log *zap.Logger

	txMu     sync.Mutex // held by the one running transaction, from Begin to Commit or Discard
	open     *group     // the group filling; nil until a transaction begins; guarded by txMu
	inflight *group     // the group being committed, or nil; guarded by txMu
	begun    uint64     // transactions begun (see txn.Serial); guarded by txMu
	serial   bool       // Options.SerialCommit
	failed   atomic.Pointer[error]
	stalled  atomic.Bool // Pebble stopped in a background fatal error (see Fatalf): db cannot be closed

	bgErr    rateLimited   // Pebble's background errors, logged at most once per bgErrEvery
	bgErrors atomic.Uint64 // Pebble's background errors, all of them (BackgroundErrors)

	commits, txns atomic.Uint64 // see Stats

	idx     *presence     // Options.IndexedPrefixes; nil when none
	dbReads atomic.Uint64 // transaction reads that went to the database (tests)
}

// Stats reports how many durable commits (WAL fsyncs of the store's
// batches) the database made and how many transactions they carried; their
// ratio is the group commit's batching.
func (d *DB) Stats() (commits, txns uint64) { return d.commits.Load(), d.txns.Load() }

// group is the transactions committed together in one batch.
type group struct {
	view   *pebble.Batch // indexed: the in-flight group's writes (when it began) and this group's, over the database
	commit *pebble.Batch // this group's writes, handed to Pebble
	ops    *pebble.Batch // a copy of them, to seed the next group's view while this one commits
	n      int           // transactions in it
	done   chan struct{} // closed once committed (or failed)
	err    error         // the outcome, set before done is closed
}

var _ kv.Engine = (*DB)(nil)

// Open opens (creating when absent) the database in dir.
func Open(dir string, o Options) (*DB, error) {
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	fs := o.FS
	if fs == nil {
		fs = vfs.Default
	}
	d := &DB{dir: dir, log: log, serial: o.SerialCommit}
	size := o.CacheSize
	if size <= 0 {
		size = DefaultCacheSize
	}
	cache := pebble.NewCache(size)
	defer cache.Unref() // the database holds its own reference
	opts := &pebble.Options{
		Cache:              cache,
		FS:                 fs,
		FormatMajorVersion: pebble.FormatNewest,
		// Pebble charges its memtables to the block cache: with its
		// defaults (an 8 MiB cache, 4 MiB memtables, two of them while one
		// flushes) no block stays cached, and every write's absence check
		// re-reads index blocks from the files (pread under the
		// transaction lock). The cache (DefaultCacheSize) leaves room for
		// blocks beside two 32 MiB memtables; a larger memtable also
		// flushes less often, and a flush keeps only the last of the many
		// versions of the records rewritten by every write (the journal
		// head) or by every checkpoint (its buckets) instead of writing
		// each to L0. Memory (cgo, outside the Go heap): cached blocks are
		// allocated as they are cached, and a memtable's arena starts at
		// 256 KiB and doubles per memtable up to 32 MiB under a steady
		// write load; a restart replays at most two memtables of WAL.
		// docs/performance.md "Group-committed key writes".
		MemTableSize: 32 << 20,
		Logger:       pebbleLogger{s: log.WithOptions(zap.AddCallerSkip(1)).Sugar(), db: d},
		EventListener: &pebble.EventListener{
			BackgroundError: func(err error) { d.backgroundError(err) },
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				log.Error("pebble data corruption", zap.String("info", info.String()))
			},
			DiskSlow: func(info pebble.DiskSlowInfo) { log.Warn("pebble disk slow", zap.String("info", info.String())) },
		},
	}
	// Bloom filters on every level: the store's writes check that a key or
	// alias is absent before creating it, and without a filter every such
	// check reads a block of every table that could hold the key.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	var db *pebble.DB
	err := d.guard(func() (err error) { db, err = pebble.Open(dir, opts); return err })
	if errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, syscall.EAGAIN) ||
		err != nil && strings.Contains(err.Error(), "lock held by current process") {
		// Pebble's LOCK file is held: another process (or another Open in
		// this one, which Pebble reports by that message) has it open.
		return nil, fmt.Errorf("%s: %w", dir, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("pebblekv: open %s: %w", dir, err)
	}
	d.db = db
	if len(o.IndexedPrefixes) > 0 {
		d.idx = newPresence(o.IndexedPrefixes)
		go d.idx.load(db, log) // before any transaction can begin: every later key is added by its Set
	}
	return d, nil
}

// Name implements kv.Engine.
func (d *DB) Name() string { return "pebble " + d.dir }

// Limits implements kv.Engine: Pebble bounds a batch at 4 GiB, far beyond
// anything the store writes.
func (d *DB) Limits() kv.Limits { return kv.Limits{} }

// Failed returns nil while the database is healthy, and an error wrapping
// kv.ErrFailed once a durable write failed.
func (d *DB) Failed() error {
	if p := d.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// fail latches the failed state (the first cause wins) and returns it.
func (d *DB) fail(cause string) error {
	err := fmt.Errorf("%w (%s)", kv.ErrFailed, cause)
	if d.failed.CompareAndSwap(nil, &err) {
		d.log.Error("pebble failed a durable write; refusing every call until reopened", zap.String("cause", cause))
	}
	return d.Failed()
}

// Close implements kv.Engine.
func (d *DB) Close() error {
	if d.stalled.Load() {
		// A Pebble goroutine is parked holding the database's mutex (see
		// Fatalf): closing would wait for it forever. The process is about
		// to exit, which releases the files; the next Open recovers.
		return fmt.Errorf("pebblekv: close: not closed, Pebble stopped after a fatal error: %w", d.Failed())
	}
	d.idx.close()
	if err := d.guard(d.db.Close); err != nil {
		return fmt.Errorf("pebblekv: close: %w", err)
	}
	return nil
}

// Get implements kv.Reader.
func (d *DB) Get(key []byte) ([]byte, bool, error) {
	if err := d.Failed(); err != nil {
		return nil, false, err
	}
	return get(d.db, key)
}

// Scan implements kv.Reader.
func (d *DB) Scan(lo, hi []byte, fn func(k, v []byte) (bool, error)) error {
	if err := d.Failed(); err != nil {
		return err
	}
	return scan(d.db, lo, hi, fn)
}

// View implements kv.Engine with a Pebble snapshot.
func (d *DB) View() (kv.View, error) {
	if err := d.Failed(); err != nil {
		return nil, err
	}
	return view{d.db.NewSnapshot()}, nil
}

type view struct{ s *pebble.Snapshot }

func (v view) Get(key []byte) ([]byte, bool, error) { return get(v.s, key) }
func (v view) Scan(lo, hi []byte, fn func(k, v []byte) (bool, error)) error {
	return scan(v.s, lo, hi, fn)
}
func (v view) Close() error { return v.s.Close() }

// Begin implements kv.Engine. It waits for the running transaction to
// commit or be discarded (not for a group's fsync).
func (d *DB) Begin() (kv.Txn, error) {
	d.txMu.Lock()
	if err := d.Failed(); err != nil {
		d.txMu.Unlock()
		return nil, err
	}
	d.begun++
	if d.serial {
		return &txn{d: d, r: d.db, b: d.db.NewBatch(), seq: d.begun}, nil
	}
	if d.open == nil {
		g := &group{view: d.db.NewIndexedBatch(), commit: d.db.NewBatch(), ops: d.db.NewBatch(), done: make(chan struct{})}
		if d.inflight != nil {
			if err := g.view.Apply(d.inflight.ops, nil); err != nil {
				d.txMu.Unlock()
				return nil, fmt.Errorf("pebblekv: begin: %w", err)
			}
		}
		d.open = g
	}
	return &txn{d: d, r: d.open.view, b: d.db.NewBatch(), g: d.open, seq: d.begun}, nil
}

// reader is what *pebble.DB and an indexed *pebble.Batch share.
type reader interface {
	getter
	iterMaker
}

type txn struct {
	d    *DB
	r    reader        // the group's view, or the database (SerialCommit)
	b    *pebble.Batch // this transaction's writes
	g    *group        // nil with SerialCommit
	seq  uint64        // Serial
	done bool
}

// Serial numbers the transaction among the database's, from 1 in the order
// they began: they run one at a time, so the one numbered n+1 began after
// the one numbered n committed or was discarded, and reads what it wrote.
// A commit that fails fails the database (every later Begin fails), so the
// writes of a transaction that committed into a group its successor read
// are never lost without the successor failing too. The key store uses it
// to take the journal head the previous transaction wrote from memory
// instead of reading it back (keystore's journal).
func (t *txn) Serial() uint64 { return t.seq }

// Get reads through an iterator that consults the bloom filters of every
// level, the last included (getFiltered): most reads inside a transaction
// are a write's check that what it creates is absent. A key the presence
// index (Options.IndexedPrefixes) knows to be absent is not read at all.
func (t *txn) Get(key []byte) ([]byte, bool, error) {
	if t.d.idx.absent(key) {
		return nil, false, nil
	}
	t.d.dbReads.Add(1)
	return getFiltered(t.r, key)
}
func (t *txn) Scan(lo, hi []byte, fn func(k, v []byte) (bool, error)) error {
	return scan(t.r, lo, hi, fn)
}
func (t *txn) Set(key, value []byte) error {
	t.d.idx.add(key) // before the write can be read or committed
	return t.b.Set(key, value, nil)
}
func (t *txn) Delete(key []byte) error { return t.b.Delete(key, nil) }

func (t *txn) Discard() {
	if t.done {
		return
	}
	t.done = true
	_ = t.b.Close()
	t.d.txMu.Unlock()
}

func (t *txn) Commit() error {
	if t.done {
		return errors.New("pebblekv: transaction already ended")
	}
	t.done = true
	d := t.d
	if t.b.Empty() {
		d.txMu.Unlock()
		return t.b.Close()
	}
	if d.serial {
		err := d.commitSync(t.b)
		d.commits.Add(1)
		d.txns.Add(1)
		d.txMu.Unlock()
		if err != nil {
			return err
		}
		return t.b.Close()
	}
	g := t.g
	err := errors.Join(g.view.Apply(t.b, nil), g.commit.Apply(t.b, nil), g.ops.Apply(t.b, nil))
	_ = t.b.Close()
	if err != nil {
		// The group's batches may hold part of this transaction: fail the
		// group rather than commit half of it.
		err = d.fail(fmt.Sprintf("adding a transaction to its group: %v", err))
		d.txMu.Unlock()
		return err
	}
	g.n++
	lead := d.inflight == nil
	if lead {
		d.inflight, d.open = g, nil
	}
	d.txMu.Unlock()
	if lead {
		d.lead(g) // in this goroutine: no hand-off when writes do not overlap
	}
	<-g.done
	return g.err
}

// lead commits g, which is in flight, and hands the group that filled
// meanwhile, if any, to a new leader.
func (d *DB) lead(g *group) {
	g.err = d.commitSync(g.commit)
	d.commits.Add(1)
	d.txns.Add(uint64(g.n)) //nolint:gosec // g.n counts transactions: never negative
	d.txMu.Lock()
	next := d.open
	if next != nil && next.n > 0 {
		d.inflight, d.open = next, nil
	} else {
		next, d.inflight = nil, nil
	}
	d.txMu.Unlock()
	// Begin no longer reads g.ops: it is no longer in flight.
	_ = g.view.Close()
	_ = g.ops.Close()
	if g.err == nil {
		_ = g.commit.Close()
	} // else the batch is left to the garbage collector: its state is unknown
	close(g.done)
	if next != nil {
		go d.lead(next)
	}
}

// commitSync commits b and waits for its WAL sync; after a failure it
// commits nothing. Any panic out of Pebble's commit path (Fatalf through
// pebbleLogger, or a panic of its own) leaves the commit pipeline
// unusable, so it fails the database rather than the process.
func (d *DB) commitSync(b *pebble.Batch) (err error) {
	if err := d.Failed(); err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			if f, ok := r.(pebbleFatal); ok {
				err = d.fail(f.msg)
			} else {
				err = d.fail(fmt.Sprintf("commit: %v", r))
			}
		}
	}()
	if err := b.Commit(pebble.Sync); err != nil {
		return d.fail(fmt.Sprintf("commit: %v", err))
	}
	return nil
}

// guard runs Open or Close: a Fatalf there (through pebbleLogger) becomes
// the failed database's error. Other panics pass through.
func (d *DB) guard(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(pebbleFatal); !ok {
				panic(r)
			}
			err = d.Failed()
		}
	}()
	return fn()
}

// getter is what *pebble.DB and *pebble.Snapshot share.
type getter interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

// get reads key and returns a copy of its value; ok is false when absent.
func get(r getter, key []byte) ([]byte, bool, error) {
	v, c, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	val := append([]byte(nil), v...)
	return val, true, c.Close()
}

// getFiltered is get through a prefix iterator that consults the bloom
// filter of every level. Pebble's own Get skips the filters of the last
// level (L6), where most of a store's records are, so that a key that is
// absent (a write's check that the key or alias it creates is not taken)
// read a data block of the last level's table for it, from the page cache
// when the block cache did not hold it (every table a compaction writes
// starts uncached), the more so the larger the store.
func getFiltered(r iterMaker, key []byte) (val []byte, ok bool, err error) {
	it, err := r.NewIter(&pebble.IterOptions{UseL6Filters: true})
	if err != nil {
		return nil, false, err
	}
	defer func() { err = errors.Join(err, it.Close()) }()
	if !it.SeekPrefixGE(key) || !bytes.Equal(it.Key(), key) {
		return nil, false, it.Error()
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return nil, false, err
	}
	return append([]byte(nil), v...), true, nil
}

// iterMaker is what *pebble.DB and *pebble.Snapshot share.
type iterMaker interface {
	NewIter(*pebble.IterOptions) (*pebble.Iterator, error)
}

// scan iterates [lo, hi) of r.
func scan(r iterMaker, lo, hi []byte, fn func(k, v []byte) (bool, error)) (err error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, it.Error(), it.Close()) }()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		more, err := fn(it.Key(), v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// pebbleLogger routes Pebble's log lines into zap.
type pebbleLogger struct {
	s  *zap.SugaredLogger
	db *DB
}

// Infof is Pebble's informational chatter (WAL recovery, compactions,
// format upgrades): debug level, so it does not drown the appliance's own
// info lines.
func (l pebbleLogger) Infof(format string, args ...any)  { l.s.Debugf(format, args...) }
func (l pebbleLogger) Errorf(format string, args ...any) { l.s.Errorf(format, args...) }

// pebbleFatal is the panic value of pebbleLogger.Fatalf.
type pebbleFatal struct{ msg string }

// Fatalf is called by Pebble when it cannot continue: a commit whose WAL
// write or sync failed, a MANIFEST write that failed in a background flush
// or compaction (a disk filled past the appliance's reserve by someone
// else), or an invariant violation. It logs the line and fails the database
// (every later call returns kv.ErrFailed, without touching Pebble), and then
// must not return. Called on the commit path (commitSync) or in Open and
// Close (guard), it panics and those turn the panic into the failed
// database's error. Anywhere else — one of Pebble's own goroutines — a panic
// would end the process, so it parks the goroutine for good instead: Pebble
// stops where it stood (nothing more is written, so nothing acknowledged is
// lost; the next start recovers from the WAL), and the rest of the appliance
// keeps serving until the operator restarts it.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.s.Error(msg)
	guarded := underGuard()
	if !guarded {
		l.db.stalled.Store(true) // before fail: a Close that sees the failure must not wait for db
	}
	_ = l.db.fail(msg) // every later call returns it (Failed); this one stops here
	if guarded {
		panic(pebbleFatal{msg})
	}
	select {}
}

// underGuard reports whether the calling goroutine is inside DB.guard or
// DB.commitSync, which recover pebbleFatal.
func underGuard() bool {
	pcs := make([]uintptr, 256)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, "/pebblekv.(*DB).guard") || strings.HasSuffix(f.Function, "/pebblekv.(*DB).commitSync") {
			return true
		}
		if !more {
			return false
		}
	}
}

// bgErrEvery is how often at most Pebble's background errors are logged: a
// flush that fails on a full disk is retried at once, thousands of times a
// second.
const bgErrEvery = 10 * time.Second

// backgroundError logs a background flush or compaction error, at most once
// per bgErrEvery with the count of those not logged since.
func (d *DB) backgroundError(err error) {
	d.bgErrors.Add(1)
	if n, ok := d.bgErr.allow(time.Now(), bgErrEvery); ok {
		d.log.Error("pebble background error (retried by Pebble; at most one line per interval)", zap.Error(err),
			zap.Uint64("suppressedSinceLastLine", n), zap.Duration("interval", bgErrEvery))
	}
}

// Pebble is the database beneath, for tests that drive Pebble's own work
// (flushes) directly.
func (d *DB) Pebble() *pebble.DB { return d.db }

// DiskSpaceUsage is the space the database takes on disk (Pebble's
// estimate: tables, logs, manifests).
func (d *DB) DiskSpaceUsage() uint64 { return d.db.Metrics().DiskSpaceUsage() }

// BackgroundErrors counts the errors of Pebble's background work (flushes,
// compactions) since Open, logged or not (for metrics).
func (d *DB) BackgroundErrors() uint64 { return d.bgErrors.Load() }

// rateLimited lets one event through per interval and counts the others.
type rateLimited struct {
	mu         sync.Mutex
	last       time.Time
	suppressed uint64
}

// allow reports whether an event at now is let through, and how many were
// suppressed since the last one that was.
func (r *rateLimited) allow(now time.Time, every time.Duration) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.last.IsZero() && now.Sub(r.last) < every {
		r.suppressed++
		return 0, false
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	return n, true
}
