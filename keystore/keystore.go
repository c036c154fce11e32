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
// Pebble publishes a batch only after its WAL sync, so no reader ever sees a
// write that is not yet durable. The price of one lock is one fsync per write
// (BenchmarkCreateKey: about 0.44 ms on the reference VM); key creation is
// not the hot path, and reads scale without it.
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

	"github.com/cockroachdb/pebble/v2"
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
}

// Open opens (creating when absent) the store in dir. log may be nil.
func Open(dir string, log *zap.Logger) (*Store, error) {
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("keystore")
	opts := &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{log.Named("pebble").WithOptions(zap.AddCallerSkip(1)).Sugar()},
		EventListener: &pebble.EventListener{
			BackgroundError: func(err error) { log.Error("pebble background error", zap.Error(err)) },
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				log.Error("pebble data corruption", zap.String("info", info.String()))
			},
			DiskSlow: func(info pebble.DiskSlowInfo) { log.Warn("pebble disk slow", zap.String("info", info.String())) },
		},
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("keystore: open %s: %w", dir, err)
	}
	s := &Store{db: db, log: log}
	if err := s.checkFormat(); err != nil {
		_ = db.Close()
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
		if err := s.db.Set(formatKey, rec, pebble.Sync); err != nil {
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
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("keystore: close: %w", err)
	}
	s.log.Info("keystore closed")
	return nil
}

// read enters a read section; the returned func leaves it.
func (s *Store) read() (func(), error) {
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return nil, ErrClosed
	}
	return s.life.RUnlock, nil
}

// write enters the write section; the returned func leaves it.
func (s *Store) write() (func(), error) {
	s.mu.Lock()
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		s.mu.Unlock()
		return nil, ErrClosed
	}
	return func() { s.life.RUnlock(); s.mu.Unlock() }, nil
}

// commit commits b durably and closes it.
func (s *Store) commit(b *pebble.Batch, what string) (err error) {
	defer closeJoin(&err, b)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("keystore: %s: commit: %w", what, err)
	}
	return nil
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
type pebbleLogger struct{ s *zap.SugaredLogger }

func (l pebbleLogger) Infof(format string, args ...any)  { l.s.Infof(format, args...) }
func (l pebbleLogger) Errorf(format string, args ...any) { l.s.Errorf(format, args...) }

// Fatalf is called by Pebble on invariant violations it cannot continue
// from; zap logs the line and exits the process, as Pebble expects.
func (l pebbleLogger) Fatalf(format string, args ...any) { l.s.Fatalf(format, args...) }
