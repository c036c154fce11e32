// Package keystore owns payhsm's durable record store: every customer key (an
// ANSI X9.143 key block, already encrypted under its profile main key by the
// layer above, plus non-secret metadata), its aliases and tags, the index of
// keys awaiting purge, and small named blobs for the layers above (service
// metadata; custody's and the ceremonies' own records). It owns record
// encoding, indices, atomicity, durability and record integrity
// (authentication, rollback marks and the journal that carries them across
// restarts, verification, the upgrade from format 1);
// it knows nothing of AWS semantics beyond the one state value its purge
// index keys on, and no key hierarchy (custody hands it record keys).
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
// No storage failure ends the process. A fatal error in one of Pebble's own
// goroutines (a MANIFEST write of a background flush or compaction failing
// on a full disk) fails the store the same way and parks that goroutine
// (Fatalf); Pebble's retried background errors are logged at most once per
// bgErrEvery. SetWriteGate lets the appliance refuse writes before the disk
// is full (its free-space reserve), which keeps those failures for disks
// filled by someone else (disk_test.go).
//
// # Layout
//
// Every Pebble key begins with a short ASCII prefix. Key ids are exactly 16
// characters of [a-z0-9], so "<prefix><id>/" never collides with another id.
//
//	"sys/format"                  format record: {"format":"payhsm-keystore","version":2}
//	"sys/migration"               only while a format 1 store is migrated: the last key rewritten
//	"k/" + id                     key record; payload JSON (keyRecord, "v":2)
//	"a/" + alias name             alias record; payload the key id, or empty
//	"x/" + id + "/" + alias name  alias-by-key index entry; empty payload
//	"t/" + id + "/" + tag key     tag; payload the tag value
//	"p/" + be64(deadline) + id    purge index entry, empty payload; deadline is
//	                              DeletePending in Unix nanoseconds, big-endian
//	"m/" + name                   meta blob; payload the blob
//	"sys/head/" + writer          a journal writer's head (journal.go)
//	"sys/j/" + writer + "/" + be64(seq)   journal entry
//	"sys/ckpt/" + writer + "/" + be32(b)  checkpoint bucket
//
// Invariants kept by every batch: an "x/" entry exists exactly when the alias
// record it names points at that key; a "p/" entry exists exactly when the key
// record's State is DELETE_PENDING with a non-zero DeletePending, and carries
// that deadline; "t/" and "x/" entries exist only for keys that exist.
//
// The format record is written when a store is first created and checked on
// every Open; a store with an unknown format version, or with records but no
// format record, is refused. A format 1 store (the previous release's)
// opens, but only owner metadata can be used until Migrate has upgraded it
// (migrate.go: resumable, idempotent, atomic per batch).
//
// # Record integrity
//
// The storage is not trusted: whoever can write the data directory (or, in
// the next release, any node of a shared store), a restored stale backup or
// a bug must not be able to change what a key may be used for. Every record
// but "sys/format" and "sys/migration" is framed (frame.go): a header with the format
// version, the record type, the profile whose main key authenticates it,
// that main key's version and the record's revision, then the payload, then
// an HMAC-SHA256 tag over the Pebble key, the header and the payload.
// Records are not secret (a key block is encrypted by its own format), so a
// MAC, not an AEAD. The tag's key is derived by custody from the profile
// main key version (HKDF-SHA256, an info string for this purpose and
// profile; see custody.RecordKey), and handed in through an Authenticator:
// the store stays below custody and knows no key hierarchy. Because the key
// comes from the profile main key, every appliance that shares that main
// key (a fleet, each node with its own token) can verify the records.
//
// Which profile authenticates a record: a key record, its key's profile
// (the header must name the profile the record names); every other record
// (aliases, tags, both indexes, the service's metadata), the namespace
// profile given to SetAuthenticator, which is the profile the AWS API works
// in. The AWS API is the only writer of stored keys, aliases, tags, tokens
// and certificates, and it works in one profile, so today every such record
// is that profile's; a record names its profile in its header and is
// verified under that profile's key, so changing the namespace later does
// not orphan records written before. Owner metadata ("custody/",
// "ceremony/") is framed but not authenticated here: custody reads it
// before it can derive any key, and its owners seal or check it themselves
// (the region record is checked against the token, profile main keys are
// sealed under the region main key with AES-GCM and associated data naming
// the profile and check value, the custodian record and the device key are
// sealed too). What that leaves open is documented in docs/threat-model.md.
//
// A record that fails (its tag does not verify; it is truncated, moved to
// another Pebble key or given another type; it names a profile or main key
// version this appliance does not hold; its authenticated content does not
// decode or disagrees with where it is) is refused with an *IntegrityError
// (errors.Is(err, ErrIntegrity)), which carries
// fault.ViolationRecordIntegrity up to the edges. It is logged at error
// level with its type, name and key id, never its content (once per record
// per minute; IntegrityFailures counts every detection), and nothing else
// is affected: GetKey checks every record of the key it returns (its
// record, tags, alias index entries, purge index entry), so a damaged key is
// refused for every operation; listings leave damaged records out; the
// purge index is trusted only where it agrees with the key record. Verify
// checks every record and the invariants between records, and lists the
// failures (payhsm keystore verify).
//
// Rollback. Each record carries a revision, bumped by every write of it
// (and, for a deleted record, remembered one past its last). In memory, the
// store keeps the highest revision of each record it has read or written
// and refuses an older one: a copy replayed while the process runs.
//
// Across restarts, the journal (journal.go, freshness.go; StartJournal,
// which the appliance calls with its writer id once the namespace profile
// has a main key): every write batch also appends, in the same batch, a
// journal entry listing the records it wrote (with their new revisions) and
// deleted (with their last ones) under the writer's next sequence number,
// and rewrites the writer's head. Checkpoints (every 512 entries, every 5
// minutes when some are pending, and at Close) fold the entries into
// bucket records holding every record's expected state, rewriting only the
// buckets touched, and drop the entries, atomically; the head carries a
// root over the buckets. All of it is authenticated like any record, under
// the namespace profile's key, and keyed by writer, so that several nodes
// of a shared store never write one key. Verify, which the daemon runs at
// every start, rebuilds every record's expected state from the checkpoints
// and journals and compares every record. Detected, each as an integrity
// failure of that one record (refused on every read until the store writes
// it again; GetKey and ListTags refuse a key any of whose records failed;
// logged, counted and listed by Verify): a record older than the journal
// says (a key's record from before a StopKeyUsage put back while the
// daemon was stopped), a deleted record that is back (an alias, a tag, the
// records of a purged key), a record the journal expects that is missing
// (deleted offline), a record newer than the journal says or unknown to it
// (copied from another store under the same profile main key), and owner
// metadata whose content is not the digest the journal recorded (its
// revision is not authenticated). Detected as damage of the journal itself,
// after which records are not compared and the daemon refuses to start: an
// entry missing, forged, put back after a checkpoint covered it, or beyond
// the head; a checkpoint bucket replaced, added or removed (the root);
// journal records without a head. StartJournal refuses a head that fails
// its check or has entries beyond it (ErrJournalDamaged).
//
// A whole store restored from an old backup (head, checkpoint and journal
// included) is consistent with itself: the appliance anchors its journal's
// sequence number in its PKCS#11 token (periodically and at close, never
// per write) and StartJournal refuses a journal that ends before the
// anchor, or is missing while the anchor says there is one (ErrRolledBack),
// until an operator accepts the store as it is (JournalRebaseline: payhsm
// keystore accept-restore). Not detected: a whole store restored to a state
// taken after the last anchor (nothing after a clean stop; at most the
// anchor interval's writes after a crash); anything done to a store before
// its journal's first checkpoint, which trusts what it finds (a store
// written by an older build, upgraded at its first start; as the format 1
// migration, below); and, in --dev mode, a restore of the whole data
// directory, SoftHSM token included. Key ids are never reused, so the
// checkpoint keeps of a purged key only its key record's tombstone. See
// docs/threat-model.md.
//
// A format 2 store cannot be passed off as format 1 to have the migration
// authenticate forged records: custody marks the token once the store is
// format 2, and the appliance refuses a format 1 store on a marked token.
//
// KeyBlock is never logged: Key's String, GoString and MarshalLogObject
// methods redact it, and the store itself logs only ids and names.
package keystore

import (
	"encoding/json"
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
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"

	"payhsm/fault"
)

// FormatVersion is the on-disk format this build writes. It also reads
// format 1 (unauthenticated records) far enough to migrate it (Migrate).
const FormatVersion = 2

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
	// ErrInUse: another process holds the store open.
	ErrInUse = &fault.Error{Kind: fault.Unavailable, Message: "key store in use by another process"}
	// ErrFailed: a write could not be made durable (the disk refused a write
	// or a sync). The store then refuses every call until it is reopened,
	// because Pebble cannot continue after a failed commit and the failed
	// batch may be visible in memory without being on disk.
	ErrFailed = &fault.Error{Kind: fault.Unavailable, Message: "key store failed a durable write; restart the appliance"}
)

// Key prefixes; see the package comment.
var (
	formatKey    = []byte("sys/format")
	migrationKey = []byte("sys/migration") // format 1 stores being migrated: the last Pebble key rewritten
	pfxKey       = "k/"
	pfxAlias     = "a/"
	pfxByKey     = "x/"
	pfxTag       = "t/"
	pfxPurge     = "p/"
	pfxMeta      = "m/"
)

// Store is a durable record store on one Pebble database.
type Store struct {
	db  *pebble.DB
	log *zap.Logger

	mu sync.Mutex // serializes every write (and the reads a write depends on)

	life   sync.RWMutex // readers hold it shared; Close holds it exclusively
	closed bool

	failed  atomic.Pointer[error] // set once, by fail; see ErrFailed
	stalled atomic.Bool           // Pebble stopped in a background fatal error (see Fatalf): db cannot be closed

	gate     atomic.Pointer[func() error] // SetWriteGate: consulted before every write
	bgErr    rateLimited                  // Pebble's background errors, logged at most once per bgErrEvery
	bgErrors atomic.Uint64                // Pebble's background errors, all of them (BackgroundErrors)

	auth   atomic.Pointer[authState]   // nil until SetAuthenticator
	fstate atomic.Pointer[formatState] // written under mu
	marks  sync.Map                    // Pebble key (string) -> highest revision seen (uint64)
	fr     freshness                   // the journal and what Verify found out of date (freshness.go)

	failures atomic.Uint64 // integrity failures detected
	reportMu sync.Mutex
	reported map[string]time.Time // Pebble key -> when its failure was last logged
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
	// Authenticator and Namespace, when set, are given to SetAuthenticator
	// at once (tests and tools that have them before the store opens).
	Authenticator Authenticator
	Namespace     string
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
	s := &Store{log: log, reported: map[string]time.Time{}}
	opts := &pebble.Options{
		FS:                 fs,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{s: log.Named("pebble").WithOptions(zap.AddCallerSkip(1)).Sugar(), store: s},
		EventListener: &pebble.EventListener{
			BackgroundError: func(err error) { s.backgroundError(err) },
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				log.Error("pebble data corruption", zap.String("info", info.String()))
			},
			DiskSlow: func(info pebble.DiskSlowInfo) { log.Warn("pebble disk slow", zap.String("info", info.String())) },
		},
	}
	var db *pebble.DB
	err := s.guard(func() (err error) { db, err = pebble.Open(dir, opts); return err })
	if errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, syscall.EAGAIN) ||
		err != nil && strings.Contains(err.Error(), "lock held by current process") {
		// Pebble's LOCK file is held: another process (or another Open in
		// this one, which Pebble reports by that message) has the store open.
		return nil, fmt.Errorf("keystore: %s is in use by another process (is a payhsm daemon or ceremony running on this data directory?): %w", dir, ErrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: open %s: %w", dir, err)
	}
	s.db = db
	if err := s.checkFormat(); err != nil {
		_ = s.guard(db.Close)
		return nil, err
	}
	if o.Authenticator != nil {
		if err := s.SetAuthenticator(o.Authenticator, o.Namespace); err != nil {
			_ = s.guard(db.Close)
			return nil, err
		}
	}
	st := s.formatState()
	log.Info("keystore opened", zap.String("dir", dir), zap.Int("format", st.version), zap.Bool("migrationPending", st.version < FormatVersion))
	return s, nil
}

// Format is the store's on-disk format: FormatVersion, or 1 until Migrate
// has upgraded it.
func (s *Store) Format() int { return s.formatState().version }

type formatRecord struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
}

// checkFormat verifies the format record, writing it into a brand-new store,
// and loads the format state (with a pending migration's cursor).
func (s *Store) checkFormat() error {
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
		s.fstate.Store(&formatState{version: FormatVersion})
		return nil
	case err != nil:
		return fmt.Errorf("keystore: read format record: %w", err)
	}
	defer closeJoin(&err, closer)
	var rec formatRecord
	if err := json.Unmarshal(v, &rec); err != nil || rec.Format != formatName {
		return errors.New("keystore: format record is not a payhsm keystore format record; refusing to open")
	}
	switch rec.Version {
	case FormatVersion:
		s.fstate.Store(&formatState{version: FormatVersion})
	case 1:
		cursor, _, err := get(s.db, migrationKey)
		if err != nil {
			return fmt.Errorf("keystore: read migration state: %w", err)
		}
		s.fstate.Store(&formatState{version: 1, cursor: string(cursor)})
	default:
		return fmt.Errorf("keystore: on-disk format version %d is not supported by this build (it reads versions 1 and %d); refusing to open", rec.Version, FormatVersion)
	}
	return nil
}

// Close closes the store. Calls made after Close return ErrClosed; Close waits
// for reads and writes in progress.
func (s *Store) Close() error {
	s.haltJournal()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return nil
	}
	s.finalCheckpoint()
	s.closed = true
	if s.stalled.Load() {
		// A Pebble goroutine is parked holding the database's mutex (see
		// Fatalf): closing would wait for it forever. The process is about
		// to exit, which releases the files; the next Open recovers.
		return fmt.Errorf("keystore: close: not closed, Pebble stopped after a fatal error: %w", s.Failed())
	}
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

// SetWriteGate makes every write call gate first and fail with its error,
// writing nothing, when it returns one (the appliance refuses writes while
// the disk is below its free-space reserve). Reads are not gated. nil
// removes the gate.
func (s *Store) SetWriteGate(gate func() error) {
	if gate == nil {
		s.gate.Store(nil)
		return
	}
	s.gate.Store(&gate)
}

// write enters the write section; the returned func leaves it.
func (s *Store) write() (func(), error) {
	if g := s.gate.Load(); g != nil {
		if err := (*g)(); err != nil {
			return nil, err
		}
	}
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
// else), or an invariant violation. It logs the line and fails the store
// (every later call returns ErrFailed, without touching Pebble), and then
// must not return. Called under Store.guard (the commit path, Open, Close),
// it panics and guard turns the panic into the failed store's error.
// Anywhere else — one of Pebble's own goroutines — a panic would end the
// process, so it parks the goroutine for good instead: Pebble stops where
// it stood (nothing more is written, so nothing acknowledged is lost; the
// next start recovers from the WAL), and the rest of the appliance —
// everything that does not need the store — keeps serving until the
// operator restarts it.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.s.Error(msg)
	guarded := underGuard()
	if !guarded {
		l.store.stalled.Store(true) // before fail: a Close that sees the failure must not wait for db
	}
	_ = l.store.fail(msg) // every later call returns it (Failed); this one stops here
	if guarded {
		panic(pebbleFatal{msg})
	}
	select {}
}

// underGuard reports whether the calling goroutine is inside Store.guard.
func underGuard() bool {
	pcs := make([]uintptr, 256)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, "/keystore.(*Store).guard") {
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
func (s *Store) backgroundError(err error) {
	s.bgErrors.Add(1)
	if n, ok := s.bgErr.allow(time.Now(), bgErrEvery); ok {
		s.log.Error("pebble background error (retried by Pebble; at most one line per interval)", zap.Error(err),
			zap.Uint64("suppressedSinceLastLine", n), zap.Duration("interval", bgErrEvery))
	}
}

// BackgroundErrors counts the errors of Pebble's background work (flushes,
// compactions) since Open, logged or not (for metrics).
func (s *Store) BackgroundErrors() uint64 { return s.bgErrors.Load() }

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
