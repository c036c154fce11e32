// Package pebblekv is the embedded kv.Engine: one Pebble database in a
// directory, used by one process (Pebble's LOCK file refuses a second).
//
// # Transactions
//
// Transactions run one at a time: Begin takes the engine's transaction
// lock, reads go to the live database (nothing else writes while the lock
// is held, so they cannot change before the commit, and a commit never
// conflicts), writes collect in a Pebble batch, and Commit commits the
// batch with pebble.Sync before it releases the lock.
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
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
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
}

// DB is a kv.Engine on one Pebble database.
type DB struct {
	db  *pebble.DB
	dir string
	log *zap.Logger

	txMu   sync.Mutex // held by the one open transaction, from Begin to its apply
	failed atomic.Pointer[error]
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
	d := &DB{dir: dir, log: log}
	opts := &pebble.Options{
		FS:                 fs,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{s: log.WithOptions(zap.AddCallerSkip(1)).Sugar(), db: d},
		EventListener: &pebble.EventListener{
			BackgroundError: func(err error) { log.Error("pebble background error", zap.Error(err)) },
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				log.Error("pebble data corruption", zap.String("info", info.String()))
			},
			DiskSlow: func(info pebble.DiskSlowInfo) { log.Warn("pebble disk slow", zap.String("info", info.String())) },
		},
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

// Begin implements kv.Engine. It waits for the transaction in progress to
// apply (not for its sync).
func (d *DB) Begin() (kv.Txn, error) {
	d.txMu.Lock()
	if err := d.Failed(); err != nil {
		d.txMu.Unlock()
		return nil, err
	}
	return &txn{d: d, b: d.db.NewBatch()}, nil
}

type txn struct {
	d    *DB
	b    *pebble.Batch
	done bool
}

// Reads go to the live database: the transaction lock keeps every other
// writer out until this transaction has applied.
func (t *txn) Get(key []byte) ([]byte, bool, error) { return get(t.d.db, key) }
func (t *txn) Scan(lo, hi []byte, fn func(k, v []byte) (bool, error)) error {
	return scan(t.d.db, lo, hi, fn)
}
func (t *txn) Set(key, value []byte) error { return t.b.Set(key, value, nil) }
func (t *txn) Delete(key []byte) error     { return t.b.Delete(key, nil) }

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
	defer d.txMu.Unlock()
	if t.b.Empty() {
		return t.b.Close()
	}
	if err := d.commitSync(t.b); err != nil {
		return err // the batch is left to the garbage collector: its state is unknown
	}
	return t.b.Close()
}

// commitSync commits b and waits for its WAL sync. Any panic out of
// Pebble's commit path (Fatalf through pebbleLogger, or its WAL writer's
// own panic on a write error) leaves the commit pipeline unusable, so it
// fails the database rather than the process.
func (d *DB) commitSync(b *pebble.Batch) (err error) {
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

func (l pebbleLogger) Infof(format string, args ...any)  { l.s.Infof(format, args...) }
func (l pebbleLogger) Errorf(format string, args ...any) { l.s.Errorf(format, args...) }

// pebbleFatal is the panic value of pebbleLogger.Fatalf.
type pebbleFatal struct{ msg string }

// Fatalf is called by Pebble when it cannot continue. It logs the line,
// fails the database and panics, as Pebble expects Fatalf not to return;
// on the commit path and in Open and Close the panic is recovered (see
// apply and guard), anywhere else it ends the process.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.s.Error(msg)
	_ = l.db.fail(msg)
	panic(pebbleFatal{msg})
}
