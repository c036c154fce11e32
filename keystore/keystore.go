// Package keystore owns payhsm's durable record store: every customer key (an
// ANSI X9.143 key block, already encrypted under its profile main key by the
// layer above, plus non-secret metadata), its aliases and tags, the index of
// keys awaiting purge, and small named blobs for the custody layer. It owns
// record encoding, indices, atomicity and durability; it knows nothing of AWS
// semantics beyond the one state value its purge index keys on.
//
// # Durability and concurrency
//
// Every acknowledged write is exactly one Pebble batch committed with
// pebble.Sync, so it is atomic and survives a crash once the call returns. All
// writes, including read-modify-write operations, hold one store-wide mutex,
// so checks such as "alias does not exist yet" and the write that follows are
// indivisible. Reads take no write lock: point reads and iterators run against
// Pebble's consistent views (a snapshot where a read touches several records).
// Pebble makes a batch visible to readers when it is applied to the memtable,
// which can be just before its WAL sync completes; the write call itself
// returns only after the sync. The price of one lock is one fsync per write
// (BenchmarkCreateKey: about 0.44 ms on the reference VM); key creation is
// not the hot path, and reads scale without it.
//
// # Failures
//
// When the disk refuses a WAL write or sync, Pebble cannot continue (its
// commit pipeline is stuck, and the failed batch may already be visible in
// memory). The call that hit the failure returns an error wrapping ErrFailed,
// and from then on every call does, until the store is reopened (restart the
// process); Failed reports the state. After the reopen a failed batch is
// either wholly present or wholly absent: a batch is one checksummed WAL
// record. The tests inject such failures with Pebble's errorfs and cut power
// with vfs.NewCrashableMem (see fault_test.go).
//
// # Layout
//
// Every Pebble key begins with a short ASCII prefix. Key ids are exactly 16
// characters of [a-z0-9], so "<prefix><id>/" never collides with another id.
//
//	"sys/format"                  format record: {"format":"payhsm-keystore","version":1}
//	"k/" + id                     key record, JSON (keyRecord, "v":1)
//	"a/" + alias name             alias record, JSON (aliasRecord, "v":1)
//	"x/" + id + "/" + alias name  alias-by-key index entry, empty value
//	"t/" + id + "/" + tag key     tag value, raw bytes
//	"p/" + be64(deadline) + id    purge index entry, empty value; deadline is
//	                              DeletePending in Unix nanoseconds, big-endian
//	"m/" + name                   meta blob, raw bytes
//
// Invariants kept by every batch: an "x/" entry exists exactly when the alias
// record it names points at that key; a "p/" entry exists exactly when the key
// record's State is DELETE_PENDING with a non-zero DeletePending, and carries
// that deadline; "t/" and "x/" entries exist only for keys that exist.
//
// The format record is written when a store is first created and checked on
// every Open; a store with an unknown format version, or with records but no
// format record, is refused.
//
// KeyBlock is never logged: Key's String, GoString and MarshalLogObject
// methods redact it, and the store itself logs only ids and names.
package keystore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"

	"payhsm/fault"
)

// FormatVersion is the on-disk layout version this build reads and writes.
const FormatVersion = 1

const formatName = "payhsm-keystore"

// Errors. Each carries a fault.Kind; operations wrap them with context, so
// test with errors.Is.
var (
	ErrNotFound    = &fault.Error{Kind: fault.NotFound, Message: "not found"}
	ErrExists      = &fault.Error{Kind: fault.Conflict, Message: "already exists"}
	ErrBadToken    = &fault.Error{Kind: fault.Validation, Message: "invalid pagination token"}
	ErrTooManyTags = &fault.Error{Kind: fault.QuotaExceeded, Message: "too many tags"}
	ErrInvalid     = &fault.Error{Kind: fault.Validation, Message: "invalid argument"}
	ErrClosed      = &fault.Error{Kind: fault.Unavailable, Message: "key store closed"}
	// ErrFailed: a write could not be made durable (the disk refused a write
	// or a sync). The store then refuses every call until it is reopened,
	// because Pebble cannot continue after a failed commit and the failed
	// batch may be visible in memory without being on disk.
	ErrFailed = &fault.Error{Kind: fault.Unavailable, Message: "key store failed a durable write; restart the appliance"}
)

// Key prefixes; see the package comment.
var (
	formatKey = []byte("sys/format")
	pfxKey    = "k/"
	pfxAlias  = "a/"
	pfxByKey  = "x/"
	pfxTag    = "t/"
	pfxPurge  = "p/"
	pfxMeta   = "m/"
)

// Store is a durable record store on one Pebble database.
type Store struct {
	db  *pebble.DB
	log *zap.Logger

	mu sync.Mutex // serializes every write (and the reads a write depends on)

	life   sync.RWMutex // readers hold it shared; Close holds it exclusively
	closed bool

	failed atomic.Pointer[error] // set once, by fail; see ErrFailed
}

// Options configures Open. The zero value is the production configuration.
type Options struct {
	// FS is the file system the database lives in; nil means vfs.Default,
	// the operating system's. Tests pass vfs.NewMem(), a crashable memory
	// file system (vfs.NewCrashableMem) or one that injects errors
	// (github.com/cockroachdb/pebble/v2/vfs/errorfs).
	FS vfs.FS
	// Logger receives the store's and Pebble's log lines; nil means none.
	Logger *zap.Logger
}

// Open opens (creating when absent) the store in dir.
func Open(dir string, o Options) (*Store, error) {
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	fs := o.FS
	if fs == nil {
		fs = vfs.Default
	}
	log = log.Named("keystore")
	s := &Store{log: log}
	opts := &pebble.Options{
		FS:                 fs,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{s: log.Named("pebble").WithOptions(zap.AddCallerSkip(1)).Sugar(), store: s},
		EventListener: &pebble.EventListener{
			BackgroundError: func(err error) { log.Error("pebble background error", zap.Error(err)) },
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				log.Error("pebble data corruption", zap.String("info", info.String()))
			},
			DiskSlow: func(info pebble.DiskSlowInfo) { log.Warn("pebble disk slow", zap.String("info", info.String())) },
		},
	}
	var db *pebble.DB
	err := s.guard(func() (err error) { db, err = pebble.Open(dir, opts); return err })
	if err != nil {
		return nil, fmt.Errorf("keystore: open %s: %w", dir, err)
	}
	s.db = db
	if err := s.checkFormat(); err != nil {
		_ = s.guard(db.Close)
		return nil, err
	}
	log.Info("keystore opened", zap.String("dir", dir), zap.Int("format", FormatVersion))
	return s, nil
}

type formatRecord struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
}

// checkFormat verifies the format record, writing it into a brand-new store.
func (s *Store) checkFormat() (err error) {
	v, closer, err := s.db.Get(formatKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		it, err := s.db.NewIter(nil)
		if err != nil {
			return fmt.Errorf("keystore: check format: %w", err)
		}
		nonEmpty := it.First()
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return fmt.Errorf("keystore: check format: %w", err)
		}
		if nonEmpty {
			return errors.New("keystore: database has records but no format record; refusing to open it as a payhsm keystore")
		}
		rec, _ := json.Marshal(formatRecord{Format: formatName, Version: FormatVersion})
		if err := s.guard(func() error { return s.db.Set(formatKey, rec, pebble.Sync) }); err != nil {
			return fmt.Errorf("keystore: write format record: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("keystore: read format record: %w", err)
	}
	defer closeJoin(&err, closer)
	var rec formatRecord
	if err := json.Unmarshal(v, &rec); err != nil || rec.Format != formatName {
		return errors.New("keystore: format record is not a payhsm keystore format record; refusing to open")
	}
	if rec.Version != FormatVersion {
		return fmt.Errorf("keystore: on-disk format version %d is not supported by this build (it reads version %d); refusing to open", rec.Version, FormatVersion)
	}
	return nil
}

// Close closes the store. Calls made after Close return ErrClosed; Close waits
// for reads and writes in progress.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.guard(s.db.Close); err != nil {
		return fmt.Errorf("keystore: close: %w", err)
	}
	s.log.Info("keystore closed")
	return nil
}

// read enters a read section; the returned func leaves it.
func (s *Store) read() (func(), error) {
	s.life.RLock()
	if err := s.usable(); err != nil {
		s.life.RUnlock()
		return nil, err
	}
	return s.life.RUnlock, nil
}

// write enters the write section; the returned func leaves it.
func (s *Store) write() (func(), error) {
	s.mu.Lock()
	s.life.RLock()
	if err := s.usable(); err != nil {
		s.life.RUnlock()
		s.mu.Unlock()
		return nil, err
	}
	return func() { s.life.RUnlock(); s.mu.Unlock() }, nil
}

// usable reports why the store cannot serve a call; the caller holds life.
func (s *Store) usable() error {
	if s.closed {
		return ErrClosed
	}
	return s.Failed()
}

// Failed returns nil while the store is healthy, and an error wrapping
// ErrFailed once a write could not be made durable.
func (s *Store) Failed() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// fail puts the store in the failed state (the first cause wins) and returns
// the error that every later call gets.
func (s *Store) fail(cause string) error {
	err := fmt.Errorf("%w (%s)", ErrFailed, cause)
	if s.failed.CompareAndSwap(nil, &err) {
		s.log.Error("key store failed; refusing every call until it is reopened", zap.String("cause", cause))
	}
	return s.Failed()
}

// commit commits b durably and closes it.
func (s *Store) commit(b *pebble.Batch, what string) (err error) {
	defer closeJoin(&err, b)
	return s.commitOpen(b, what)
}

// commitOpen commits b durably and leaves closing it to the caller.
func (s *Store) commitOpen(b *pebble.Batch, what string) error {
	if err := s.guard(func() error { return b.Commit(pebble.Sync) }); err != nil {
		return fmt.Errorf("keystore: %s: commit: %w", what, err)
	}
	return nil
}

// guard runs a durable Pebble write (or Close). Pebble cannot continue after a commit
// whose WAL write or sync failed: it calls Fatalf, which fails the store and
// panics (see pebbleLogger); guard turns that panic into the failed store's
// error. Other panics pass through.
func (s *Store) guard(write func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(pebbleFatal); !ok {
				panic(r)
			}
			err = s.Failed()
		}
	}()
	return write()
}

// getter is what *pebble.DB and *pebble.Snapshot share.
type getter interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

// get reads key and returns a copy of its value; ok is false when absent.
func get(r getter, key []byte) (val []byte, ok bool, err error) {
	v, c, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	val = append([]byte(nil), v...)
	return val, true, c.Close()
}

// pebbleLogger routes Pebble's log lines into zap.
type pebbleLogger struct {
	s     *zap.SugaredLogger
	store *Store
}

func (l pebbleLogger) Infof(format string, args ...any)  { l.s.Infof(format, args...) }
func (l pebbleLogger) Errorf(format string, args ...any) { l.s.Errorf(format, args...) }

// pebbleFatal is the panic value of pebbleLogger.Fatalf.
type pebbleFatal struct{ msg string }

// Fatalf is called by Pebble when it cannot continue: a commit whose WAL
// write or sync failed, or an invariant violation. It logs the line, fails
// the store (every later call returns ErrFailed) and panics, as Pebble
// expects Fatalf not to return. On the commit path Store.guard recovers the
// panic, so the caller gets an error; anywhere else (a background flush or
// compaction) the panic ends the process, as exiting would.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.s.Error(msg)
	_ = l.store.fail(msg) // every later call returns it (Failed); the panic stops this one
	panic(pebbleFatal{msg})
}
