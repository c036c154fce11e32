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
// # Engines
//
// The store keeps its records in a kv.Engine (package keystore/kv): an
// ordered key-value map with serializable transactions. Open puts it on an
// embedded Pebble database in a directory (kv/pebblekv), OpenEngine on any
// engine, such as a prefix of an etcd cluster shared by a fleet of
// appliances (kv/etcdkv). Everything below this paragraph (the layout,
// record sealing and integrity, indices, purge, migration, verification) is
// the store's own and the same on every engine; engines hold bytes.
//
// On a shared engine, the store also tells its user what other processes
// change (Follow: the layer above drops what it cached), how current it is
// (Stale: past a staleness bound without contact, cached data must not be
// used; every call is refused at once while the engine is known out of
// reach), and runs a job on one process of the fleet at a time (Lead); see
// fleet.go and docs/fleet.md.
//
// # Durability and concurrency
//
// Every acknowledged write is exactly one engine transaction, committed
// durably, so it is atomic and survives a crash once the call returns.
// A write operation reads what it depends on (that an alias does not exist
// yet, the record it replaces) inside its transaction, so the check and the
// write that follows are indivisible: on Pebble because one transaction
// runs at a time; on a shared engine because the commit fails with a
// conflict, having written nothing, when another process changed what the
// transaction read, and the store then runs the operation again from its
// reads (update). Reads inside a write may see writes that are not durable
// yet; they are held to the rollback marks but do not raise them
// (verifiedIn). Reads outside a write are linearizable point reads and
// scans, or a consistent view where a read touches several records. An
// engine may make a transaction visible to readers just before it is
// durable (Pebble applies a batch to its memtable before its WAL sync
// completes); the write call itself returns only after it is durable.
// Concurrent writes share durability: on Pebble, the transactions that
// commit while a WAL fsync is in flight are committed together by the next
// one (group commit, kv/pebblekv), so key creation scales with the number
// of writers instead of being one fsync each; on etcd, each transaction is
// one Raft entry and the cluster batches entries into its own fsyncs.
//
// # Failures
//
// On Pebble: when the disk refuses a WAL write or sync, Pebble cannot
// continue (its commit pipeline is stuck, and the failed batch may already
// be visible in memory). The call that hit the failure returns an error
// wrapping ErrFailed, and from then on every call does, until the store is
// reopened (restart the process); Failed reports the state. After the
// reopen a failed batch (a group of transactions) is either wholly present
// or wholly absent: a batch is one checksummed WAL record. The tests inject such failures with Pebble's errorfs and cut power
// with vfs.NewCrashableMem (see fault_test.go). On etcd, an unreachable
// cluster or one without quorum fails the calls made meanwhile with an error
// of kind fault.Unavailable, and the store serves again once the cluster
// does; a write whose outcome is unknown (the cluster did not answer in
// time) is reported as failed, and may or may not have been applied.
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
// Every engine key (the Pebble key; on etcd, the key after the store's
// prefix) begins with a short ASCII prefix. Key ids are exactly 16
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
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"

	"payhsm/fault"
	"payhsm/keystore/kv"
	"payhsm/keystore/kv/pebblekv"
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

// Store is a durable record store on one kv.Engine.
type Store struct {
	eng kv.Engine
	log *zap.Logger
	// noBareMarks: new keys are not marked bare (Options.NoBareKeyMarks).
	noBareMarks bool

	life    sync.RWMutex // calls hold it shared; Close holds it exclusively
	runlock func()       // life.RUnlock, returned by read
	closed  bool
	closing atomic.Bool // Close was called: a long Verify stops

	// writing is held shared by every write transaction, and exclusively by
	// one that has conflicted twice (on an optimistic engine), so that it
	// runs alone in this process and cannot be starved by this process's
	// other writers (see update).
	writing sync.RWMutex

	failed atomic.Pointer[error] // set once, by fail; see ErrFailed

	gate atomic.Pointer[func() error] // SetWriteGate: consulted at the start of every write transaction
	fr   freshness                    // the journal and what Verify found out of date (freshness.go)

	follow atomic.Pointer[follow] // set by Follow on a shared engine (fleet.go)

	created bool // this open wrote the format record: the store is new

	auth   atomic.Pointer[authState]   // nil until SetAuthenticator
	fstate atomic.Pointer[formatState] // written by the transaction that changes the format
	marks  *markTable                  // engine key -> highest revision seen (marks.go)

	failures    atomic.Uint64                 // integrity failures detected
	conflicts   atomic.Uint64                 // transactions run again after a conflict
	optimistic  bool                          // the engine's transactions are optimistic (kv.Optimistic)
	groups      writeGroups                   // updateGrouped's queue (group.go)
	unavailable atomic.Pointer[unavailableAt] // the last write attempt that found the engine unavailable
	reportMu    sync.Mutex
	reported    map[string]time.Time // engine key -> when its failure was last logged
}

// Options configures Open and OpenEngine. The zero value is the production
// configuration.
type Options struct {
	// FS is the file system Open's Pebble database lives in; nil means
	// vfs.Default, the operating system's. Tests pass vfs.NewMem(), a
	// crashable memory file system (vfs.NewCrashableMem) or one that
	// injects errors (github.com/cockroachdb/pebble/v2/vfs/errorfs).
	// OpenEngine ignores it.
	FS vfs.FS
	// Logger receives the store's and its engine's log lines; nil means none.
	Logger *zap.Logger
	// Authenticator and Namespace, when set, are given to SetAuthenticator
	// at once (tests and tools that have them before the store opens).
	Authenticator Authenticator
	Namespace     string
	// NoBareKeyMarks leaves out the mark a key created without tags or an
	// alias carries in its record (Key.bare; it spares GetKey the scan of
	// its tag and alias prefixes). A release before the mark refuses a
	// record that carries it (its decoder refuses unknown fields), so a
	// fleet whose nodes may run such a release (a rolling upgrade) must not
	// write it. Records with the mark are read either way.
	NoBareKeyMarks bool
	// CacheSize (Open only) is the Pebble block cache's size in bytes; 0
	// means pebblekv.DefaultCacheSize.
	CacheSize int64
}

// Open opens (creating when absent) the store in a Pebble database in dir.
func Open(dir string, o Options) (*Store, error) {
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	db, err := pebblekv.Open(dir, pebblekv.Options{FS: o.FS, Logger: log.Named("keystore").Named("pebble"), CacheSize: o.CacheSize,
		// A creation checks that its key id (and alias) is free: indexed, the
		// check of a free one reads nothing.
		IndexedPrefixes: [][]byte{[]byte(pfxKey), []byte(pfxAlias)}})
	if errors.Is(err, pebblekv.ErrLocked) {
		return nil, fmt.Errorf("keystore: %s is in use by another process (is a payhsm daemon or ceremony running on this data directory?): %w", dir, ErrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	return OpenEngine(db, o)
}

// OpenEngine opens the store held by e, writing the format record into an
// empty one. The store owns e from then on: Close closes it, and so does
// OpenEngine when it fails.
func OpenEngine(e kv.Engine, o Options) (*Store, error) {
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("keystore")
	s := &Store{eng: e, log: log, reported: map[string]time.Time{}, noBareMarks: o.NoBareKeyMarks, marks: newMarkTable()}
	s.runlock = s.life.RUnlock // made once: a method value made per read is an allocation per read
	if o, ok := e.(kv.Optimistic); ok {
		s.optimistic = o.Optimistic()
	}
	if err := s.checkFormat(); err != nil {
		return nil, errors.Join(err, e.Close())
	}
	if o.Authenticator != nil {
		if err := s.SetAuthenticator(o.Authenticator, o.Namespace); err != nil {
			return nil, errors.Join(err, e.Close())
		}
	}
	st := s.formatState()
	log.Info("keystore opened", zap.String("engine", e.Name()), zap.Int("format", st.version), zap.Bool("migrationPending", st.version < FormatVersion))
	return s, nil
}

// Engine names the engine the store is on, for logs and status.
func (s *Store) Engine() string { return s.eng.Name() }

// Created reports whether this Open created the store: it was empty (a new
// Pebble directory, an etcd prefix holding nothing) and Open wrote its
// format record.
func (s *Store) Created() bool { return s.created }

// Format is the store's on-disk format: FormatVersion, or 1 until Migrate
// has upgraded it.
func (s *Store) Format() int { return s.formatState().version }

type formatRecord struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
}

// checkFormat verifies the format record, writing it into a brand-new store,
// and loads the format state (with a pending migration's cursor). Two
// processes opening one new shared store at once agree: the record is
// written by a transaction that requires the store to be still empty.
func (s *Store) checkFormat() error {
	var st *formatState
	created := false
	err := s.update("write format record", func(w *writer) error {
		created = false
		v, ok, err := get(w.b, formatKey)
		if err != nil {
			return fmt.Errorf("keystore: read format record: %w", err)
		}
		if !ok {
			nonEmpty := false
			if err := w.b.Scan(nil, nil, func(_, _ []byte) (bool, error) { nonEmpty = true; return false, nil }); err != nil {
				return fmt.Errorf("keystore: check format: %w", err)
			}
			if nonEmpty {
				return errors.New("keystore: the store has records but no format record; refusing to open it as a payhsm keystore (is this the right data directory or etcd prefix?)")
			}
			rec, _ := json.Marshal(formatRecord{Format: formatName, Version: FormatVersion})
			st, created = &formatState{version: FormatVersion}, true
			return w.b.Set(formatKey, rec)
		}
		var rec formatRecord
		if err := json.Unmarshal(v, &rec); err != nil || rec.Format != formatName {
			return errors.New("keystore: format record is not a payhsm keystore format record; refusing to open")
		}
		switch rec.Version {
		case FormatVersion:
			st = &formatState{version: FormatVersion}
		case 1:
			cursor, _, err := get(w.b, migrationKey)
			if err != nil {
				return fmt.Errorf("keystore: read migration state: %w", err)
			}
			st = &formatState{version: 1, cursor: string(cursor)}
		default:
			return fmt.Errorf("keystore: on-disk format version %d is not supported by this build (it reads versions 1 and %d); refusing to open", rec.Version, FormatVersion)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.fstate.Store(st)
	s.created = created
	return nil
}

// Close closes the store and its engine. Calls made after Close return
// ErrClosed; Close waits for reads and writes in progress.
func (s *Store) Close() error {
	s.closing.Store(true)
	s.haltJournal()
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return nil
	}
	s.finalCheckpoint()
	s.closed = true
	if lz := s.fr.lazy.Swap(nil); lz != nil {
		lz.close()
	}
	if err := s.eng.Close(); err != nil {
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
	if err := s.reachable(); err != nil { // a shared store known out of reach: no call waits for its timeout
		s.life.RUnlock()
		return nil, fmt.Errorf("keystore: %w", err)
	}
	return s.runlock, nil
}

// SetWriteGate makes every write transaction gate first and fail with its
// error, writing nothing, when it returns one (the appliance refuses writes
// while the disk is below its free-space reserve). Reads are not gated. nil
// removes the gate.
func (s *Store) SetWriteGate(gate func() error) {
	if gate == nil {
		s.gate.Store(nil)
		return
	}
	s.gate.Store(&gate)
}

// checkGate returns the write gate's refusal, if any.
func (s *Store) checkGate() error {
	if g := s.gate.Load(); g != nil {
		return (*g)()
	}
	return nil
}

// BackgroundErrors counts the errors of the engine's background work
// (Pebble's flushes and compactions) since Open, logged or not (for
// metrics); 0 on an engine without any.
func (s *Store) BackgroundErrors() uint64 {
	if b, ok := s.eng.(interface{ BackgroundErrors() uint64 }); ok {
		return b.BackgroundErrors()
	}
	return 0
}

// usable reports why the store cannot serve a call; the caller holds life.
func (s *Store) usable() error {
	if s.closed {
		return ErrClosed
	}
	return s.Failed()
}

// Failed returns nil while the store is healthy, and an error wrapping
// ErrFailed once a write could not be made durable, or once the engine
// failed by itself (Pebble stopped after a fatal error in one of its own
// goroutines: see pebblekv's Fatalf).
func (s *Store) Failed() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	if e, ok := s.eng.(interface{ Failed() error }); ok {
		if err := e.Failed(); err != nil {
			return s.fail(err.Error())
		}
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

// maxAttempts bounds how often update runs an operation that keeps
// conflicting with concurrent writers (on a shared engine); from attempt
// aloneAfter on it runs alone among this process's writers.
const (
	maxAttempts = 16
	aloneAfter  = 3
)

// update runs one write operation: fn reads what it depends on through the
// writer's transaction and writes its records through the writer; update
// commits them durably, as one atomic transaction. When the engine reports
// a conflict (another process changed something fn read; optimistic
// engines only), the transaction has written nothing and update runs fn
// again from the start, after a short random pause, up to maxAttempts
// times; from its third attempt on it runs alone among this process's
// writers, so that writers of one busy record in this process cannot
// starve it (writers in other processes can still make it conflict, and
// the pauses spread them out). On an optimistic engine (kv.Optimistic:
// etcd) with the journal on, every write transaction of this process
// reads and rewrites this writer's journal head, so any two of them
// conflict: there they run alone from the first attempt (one etcd
// transaction of this process in flight; a conflict costs nothing but a
// queue, instead of a commit, a pause and a re-run), and the creations
// queued together share one (updateGrouped, group.go). fn must therefore have
// no effect outside the writer. An error from fn is returned as it is, and
// nothing is written.
func (s *Store) update(what string, fn func(w *writer) error) error {
	return s.updateIn(what, false, fn)
}

// updateIn is update, its first attempts grouped when grouped is set
// (updateGrouped).
func (s *Store) updateIn(what string, grouped bool, fn func(w *writer) error) error {
	done, err := s.read()
	if err != nil {
		return err
	}
	defer done()
	return s.transactIn(what, grouped, fn)
}

// transact is update for a caller already in the read section, or holding
// the store exclusively (Close's checkpoint).
func (s *Store) transact(what string, fn func(w *writer) error) error {
	return s.transactIn(what, false, fn)
}

// transactIn runs fn until it does not conflict. grouped: its first
// attempts go through a group (updateGrouped); from attempt aloneAfter on,
// or once fn has scanned in a group, it runs alone.
func (s *Store) transactIn(what string, grouped bool, fn func(w *writer) error) error {
	for attempt := 1; ; attempt++ {
		var err error
		if grouped && attempt < aloneAfter {
			if err = s.grouped(what, fn); errors.Is(err, errGroupScan) {
				grouped = false
				err = s.attempt(what, true, fn)
			}
		} else {
			err = s.attempt(what, attempt >= aloneAfter || (s.optimistic && s.fr.on.Load()), fn)
		}
		if !errors.Is(err, kv.ErrConflict) {
			return err
		}
		if attempt == maxAttempts {
			return fmt.Errorf("keystore: %s: gave up after %d conflicting attempts: %w", what, attempt, err)
		}
		s.conflicts.Add(1)
		// Up to 1, 2, 4 ... 64 ms: concurrent writers of one record spread out.
		time.Sleep(time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt-1, 6)))) //nolint:gosec // jitter for retries, not a secret
	}
}

// attempt runs fn in one transaction and commits it; alone, it holds
// writing exclusively. A writer that queued for writing while an attempt
// found the engine unavailable (kv.ErrUnavailable: no answer in time, or
// a NOSPACE alarm) fails at once with that attempt's error instead of
// spending a timeout of its own: a queue of N writers must not wait N
// timeouts.
func (s *Store) attempt(what string, alone bool, fn func(w *writer) error) error {
	if alone {
		queued := time.Now()
		s.writing.Lock()
		defer s.writing.Unlock()
		if err := s.downSince(what, queued); err != nil {
			return err
		}
	} else {
		s.writing.RLock()
		defer s.writing.RUnlock()
	}
	err := s.attemptIn(what, fn)
	s.noteUnavailable(err)
	return err
}

// downSince is the error of a write that queued at queued, when an attempt
// found the engine unavailable since: it is not attempted.
func (s *Store) downSince(what string, queued time.Time) error {
	if u := s.unavailable.Load(); u != nil && u.at.After(queued) {
		return fmt.Errorf("keystore: %s: not attempted, the key store stopped answering while it queued: %w", what, u.err)
	}
	return nil
}

// noteUnavailable records err when it says the engine is unavailable, and
// reports whether it did.
func (s *Store) noteUnavailable(err error) bool {
	if !errors.Is(err, kv.ErrUnavailable) {
		return false
	}
	s.unavailable.Store(&unavailableAt{at: time.Now(), err: err})
	return true
}

// unavailableAt is the last write attempt that found the engine
// unavailable.
type unavailableAt struct {
	at  time.Time
	err error
}

// attemptIn is attempt's transaction, under writing.
func (s *Store) attemptIn(what string, fn func(w *writer) error) error {
	w, err := s.beginWrite(what)
	if err != nil {
		return err
	}
	defer w.close()
	if err := fn(w); err != nil {
		return err
	}
	return w.commit(what)
}

// beginWrite opens a write transaction, under writing, once the gate and
// the engine allow writes.
func (s *Store) beginWrite(what string) (*writer, error) {
	if err := s.checkGate(); err != nil {
		return nil, err
	}
	if err := s.reachable(); err != nil {
		return nil, fmt.Errorf("keystore: %s: %w", what, err)
	}
	tx, err := s.eng.Begin()
	if err != nil {
		return nil, s.engineErr(what, err)
	}
	return s.newWriter(tx), nil
}

// Conflicts is how many write transactions this store ran again because a
// concurrent writer on the shared engine changed what they had read.
func (s *Store) Conflicts() uint64 { return s.conflicts.Load() }

// commit commits tx durably. A failed durable write fails the store.
func (s *Store) commit(tx kv.Txn, what string) error {
	return s.engineErr(what+": commit", tx.Commit())
}

// engineErr wraps an engine error with what was being done; a failed
// durable write (kv.ErrFailed) fails the store, and the error then wraps
// ErrFailed.
func (s *Store) engineErr(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, kv.ErrFailed) {
		err = s.fail(err.Error())
	}
	return fmt.Errorf("keystore: %s: %w", what, err)
}

// verifiedIn is verified for the value v of the record at k that was read
// from r. Inside a write transaction (r is a kv.Txn) a read may see writes
// that are not durable yet, and that readers outside the transaction do
// not see yet (Pebble's group commit shows a transaction the writes of the
// group ahead of it): such a read is held to the marks but does not raise
// them, or a reader of the database could take the record it reads for a
// replayed copy. The writer raises the marks of what it writes once its
// transaction has committed. An older revision than the mark is re-read
// through r, as verified re-reads.
func (s *Store) verifiedIn(r kv.Reader, k, v []byte) (frame, bool, error) {
	if _, inTxn := r.(kv.Txn); !inTxn {
		return s.verified(k, v)
	}
	f, err := s.check(k, v)
	if err != nil {
		return frame{}, false, err
	}
	if err := s.damagedRecord(k); err != nil { // out of date, as Verify found (expect.go)
		return frame{}, false, err
	}
	seen := s.mark(k)
	if s.legacy(k) || f.typ == RecordOwnerMeta || f.revision >= seen {
		return f, true, nil
	}
	v2, ok, err := get(r, k)
	if err != nil || !ok {
		return frame{}, ok, err
	}
	if f, err = s.check(k, v2); err != nil {
		return frame{}, false, err
	}
	if f.revision < seen {
		return frame{}, false, s.integrityFailure(k, "revision %d is older than revision %d read or written before: a replayed copy", f.revision, seen)
	}
	return f, true, nil
}

// get reads key from r; ok is false when absent.
func get(r kv.Reader, key []byte) (val []byte, ok bool, err error) {
	return r.Get(key)
}
