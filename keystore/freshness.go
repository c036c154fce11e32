package keystore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"payhsm/fault"
	"payhsm/keystore/kv"
)

// Freshness: that every record is the latest one the store wrote, across
// restarts (see "Rollback" in the package comment; the records are in
// journal.go).
//
// Every write transaction appends one journal entry listing the records it
// wrote (with their new revisions) and deleted (with their last ones), under
// the writer's next sequence number, and rewrites the writer's head, in the
// same transaction: a record never changes without its entry. The head is
// read inside the transaction, and every key of the journal is the
// writer's own (sys/j/<writer>/, sys/head/<writer>, sys/ckpt/<writer>/), so
// appliances sharing an etcd cluster never touch one another's journal; the
// writers of one process serialize on their head (on Pebble they do anyway;
// on etcd one of two conflicting transactions runs again). A checkpoint
// (every defaultCheckpointEntries entries, every defaultCheckpointInterval
// when something is pending, and at Close) reads a consistent view of the
// engine, folds the entries into the checkpoint's buckets, rewriting only
// the buckets they touch (merging each bucket's sorted encoding with its
// changed records), and deletes them, in one transaction that also
// rewrites the head. The entries this process committed are folded from
// memory, not read back and checked again (they are its own writes; the
// buckets and the head are still read from the engine and checked). On an engine with transaction limits (etcd: 128
// operations and 1.5 MiB by default) a checkpoint is kept small enough
// rather than split: it folds only as many of the oldest entries as fit, and
// the next checkpoint goes on; a re-bucketing that would not fit is skipped
// (the buckets grow past their target instead). The first checkpoint of an
// existing store (and accept-restore's) is one transaction of the whole
// store's state where it fits; on etcd a larger one is written in steps
// that leave the writer without a journal until the last (see
// rebaselineInSteps). A bucket holds the expected state of the records that
// hash into it (all of a key's records hash by its id, so they share one);
// the head carries the root, a hash over every bucket's digest, so a bucket
// cannot be swapped for an older one. A deleted key record stays as a
// tombstone; the other records of a deleted key are dropped from the
// checkpoint (key ids are never reused: a record of a deleted key that
// comes back has no entry and is refused as unknown).
//
// Verify rebuilds the expected state of every record from the checkpoints
// and journals of every writer and compares every record with it (see
// expectations). What it finds is kept in memory (damage) and refused on
// every later read until the store rewrites the record.

// Checkpoint tuning.
const (
	minBucketBits = 4
	maxBucketBits = 20
	// bucketTarget is the average number of records per bucket a full
	// checkpoint aims at. A checkpoint rewrites every bucket its entries
	// touch, whole: N(1-exp(-E/B))/E records per write for N records in B
	// buckets and E entries, never more than the average bucket (at most
	// bucketGrow times this), and about that once B outgrows E. With 256
	// that was up to 1024 records per write (about 72 at 300,000 records,
	// where a checkpoint of 4096 entries touched nearly every one of 1,024
	// buckets); with 32 it is at most 128 (about 46 there). Each bucket
	// costs a read, a seal and a digest besides its records, and the
	// checkpoint's bucket digests are copied and hashed once per
	// checkpoint, so much smaller buckets cost more than they save.
	// docs/performance.md "(branch h-ck)".
	bucketTarget = 32
	// bucketGrow: a checkpoint re-buckets when the average number of
	// records per bucket has grown to bucketGrow times bucketTarget.
	bucketGrow = 4

	// defaultCheckpointEntries: a checkpoint rewrites every bucket its
	// entries touch, whole, so its cost per entry falls as more entries
	// share a bucket; at 512 a checkpoint of a small store (16 buckets)
	// rewrote the whole store every 512 writes, the largest CPU cost of a
	// CreateKey after HTTP (docs/performance.md "Group-committed key
	// writes"). 4096 entries are a few hundred KiB of journal, read once
	// at start (Verify); a checkpoint folds this process's own entries
	// from memory (freshness.mem) and reads back only those it lacks.
	defaultCheckpointEntries = 4096
	// limitedCheckpointEntries is defaultCheckpointEntries on an engine
	// with transaction limits (etcd), as before.
	limitedCheckpointEntries  = 512
	defaultCheckpointInterval = 5 * time.Minute
)

// JournalMode says what StartJournal may do.
type JournalMode int

const (
	// JournalServe is for every process that writes the store (the daemon,
	// the ceremonies): a store without a journal gets its first checkpoint
	// (the upgrade from a store written by an older build); a journal that
	// ends before the anchor, or is missing while the anchor says there is
	// one, is refused (ErrRolledBack); a head that fails its check, or
	// entries beyond it, are refused (ErrJournalDamaged).
	JournalServe JournalMode = iota
	// JournalInspect is for payhsm keystore verify: nothing is written and
	// nothing is refused; Verify reports what JournalServe would refuse.
	JournalInspect
	// JournalRebaseline accepts the store as it is (an operator restored a
	// backup, or repairs a damaged journal): a new checkpoint of every
	// record as found, under a sequence number past both the store's and
	// the anchor's, replaces this writer's checkpoint and journal.
	JournalRebaseline
)

// JournalOptions configures StartJournal.
type JournalOptions struct {
	// Writer is this appliance's journal identity (ValidWriter), the same
	// at every start: the appliance keeps it with the anchor in its token.
	Writer string
	// Anchor is the sequence number this appliance's token recorded (0
	// when none): the journal must not end before it.
	Anchor uint64
	Mode   JournalMode
	// CheckpointEntries and CheckpointInterval override the defaults (tests).
	CheckpointEntries  int
	CheckpointInterval time.Duration
	bucketTarget       int // tests: instead of bucketTarget
}

// ErrRolledBack matches the refusal of a store whose journal ends before
// the anchor: the store is older than the appliance's token.
var ErrRolledBack = &fault.Error{Kind: fault.Unavailable, Message: "the key store is older than this appliance's token"}

// ErrJournalDamaged matches a journal that cannot be continued or trusted.
var ErrJournalDamaged = &fault.Error{Kind: fault.Unavailable, Message: "the key store's journal failed its integrity check"}

// RollbackError is a store whose journal ends before the anchor.
type RollbackError struct {
	Writer    string
	Head      uint64 // the last sequence number of the store's journal
	Anchor    uint64 // the one the token recorded
	NoJournal bool   // the store has no journal at all
}

func (e *RollbackError) Error() string {
	if e.NoJournal {
		return fmt.Sprintf("keystore: the key store has no journal, but this appliance's token recorded journal %s up to sequence %d: the key store is older than the token", e.Writer, e.Anchor)
	}
	return fmt.Sprintf("keystore: the key store's journal %s ends at sequence %d, but this appliance's token recorded sequence %d: the key store is older than the token", e.Writer, e.Head, e.Anchor)
}

// Unwrap makes errors.Is(err, ErrRolledBack) hold.
func (e *RollbackError) Unwrap() error { return ErrRolledBack }

// freshness is the store's journal state.
type freshness struct {
	// on: StartJournal started this writer's journal (not in inspection);
	// writer is set before on and not changed after.
	on     atomic.Bool
	writer string

	mu      sync.Mutex                   // guards the members down to wake
	head    headRecord                   // the head as of the last checkpoint or entry this process committed (a cache: the engine's is the truth)
	digests map[uint32][sha256.Size]byte // the checkpoint's bucket digests; nil until loaded
	pending int                          // journal entries since the checkpoint
	// mem holds the ops of the journal entries this process committed since
	// the checkpoint, by sequence number, for the next checkpoint to fold
	// without reading them back: they are this process's own writes. It
	// holds at most memEntriesMax; one that is missing (a commit whose
	// outcome is unknown, an entry of an earlier process, a full map) makes
	// the checkpoint read the journal from the engine, as before.
	mem    map[uint64][]jop
	every  int
	target int           // records per bucket a full checkpoint aims at
	gen    uint64        // bumped by every change of the buckets (a checkpoint prepared before one is dropped)
	stop   chan struct{} // closed to stop the checkpoint loop
	done   chan struct{} // closed by the loop when it ends
	wake   chan struct{}

	// sealed is the last head this process sealed: a head read back with
	// the same bytes is authentic (this process made it) and is not
	// checked and decoded again.
	sealed atomic.Pointer[sealedHead]

	problems atomic.Pointer[[]Failure] // what StartJournal found in inspection mode, for Verify
	seq      atomic.Uint64             // head.lastSeq, for JournalSeq

	damage atomic.Pointer[damage]    // records Verify found out of date; nil when none
	lazy   atomic.Pointer[lazyCheck] // VerifyStart's comparisons on first read, until a full Verify; nil when none
	dmu    sync.Mutex                // serializes changes of damage
	ckptMu sync.Mutex                // one Checkpoint at a time (writers do not take it)
}

func (fr *freshness) kick() {
	select {
	case fr.wake <- struct{}{}:
	default:
	}
}

// JournalSeq is the last sequence number of this writer's journal that is
// durable (0 before StartJournal): what the appliance anchors in its token.
func (s *Store) JournalSeq() uint64 { return s.fr.seq.Load() }

// StartJournal starts (or, in inspection, only reads) this writer's journal;
// see JournalMode. It returns the journal's last sequence number. Call it
// once, after SetAuthenticator, once the namespace profile has a main key
// (the journal is authenticated under it) and before the store is written.
func (s *Store) StartJournal(o JournalOptions) (uint64, error) {
	if !ValidWriter(o.Writer) {
		return 0, fmt.Errorf("keystore: journal writer id %q: %w", o.Writer, ErrInvalid)
	}
	if s.formatState().version != FormatVersion {
		return 0, ErrNeedsMigration
	}
	if s.auth.Load() == nil {
		return 0, errNoAuthenticator
	}
	release, err := s.read()
	if err != nil {
		return 0, err
	}
	defer release()
	fr := &s.fr
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if fr.writer != "" {
		return 0, errors.New("keystore: the journal is already started")
	}
	fr.target = o.bucketTarget
	if fr.target <= 0 {
		fr.target = bucketTarget
	}
	h, found, reason, err := s.readHead(s.eng, o.Writer)
	if err != nil {
		return 0, err
	}
	switch o.Mode {
	case JournalInspect:
		fr.writer = o.Writer
		var p []Failure
		switch {
		case reason != "": // Verify reports it
		case !found && o.Anchor > 0:
			p = append(p, Failure{Type: RecordJournalHead, Name: o.Writer, Reason: (&RollbackError{Writer: o.Writer, Anchor: o.Anchor, NoJournal: true}).Error()})
		case found && h.lastSeq < o.Anchor:
			p = append(p, Failure{Type: RecordJournalHead, Name: o.Writer, Reason: (&RollbackError{Writer: o.Writer, Head: h.lastSeq, Anchor: o.Anchor}).Error()})
		}
		fr.problems.Store(&p)
		fr.seq.Store(h.lastSeq)
		return h.lastSeq, nil
	case JournalServe:
		switch {
		case reason != "":
			return 0, fmt.Errorf("keystore: the journal head of %s failed its integrity check (%s): %w", o.Writer, reason, ErrJournalDamaged)
		case !found && o.Anchor > 0:
			return 0, &RollbackError{Writer: o.Writer, Anchor: o.Anchor, NoJournal: true}
		case found && h.lastSeq < o.Anchor:
			return 0, &RollbackError{Writer: o.Writer, Head: h.lastSeq, Anchor: o.Anchor}
		case found:
			beyond := false
			err := s.eng.Scan(journalKey(o.Writer, h.lastSeq+1), upperBound(journalPrefix(o.Writer)), func(_, _ []byte) (bool, error) {
				beyond = true
				return false, nil
			})
			if err != nil {
				return 0, err
			}
			if beyond {
				return 0, fmt.Errorf("keystore: the journal of %s has entries beyond its head (sequence %d): the head was rolled back: %w", o.Writer, h.lastSeq, ErrJournalDamaged)
			}
		default:
			n, err := s.rebaseline(o.Writer, 0)
			if err != nil {
				return 0, fmt.Errorf("keystore: first journal checkpoint: %w", err)
			}
			s.log.Info("keystore journal started: first checkpoint written", zap.String("writer", o.Writer), zap.Int("records", n))
			h = fr.head
		}
	case JournalRebaseline:
		last := max(h.lastSeq, o.Anchor) + 1
		n, err := s.rebaseline(o.Writer, last)
		if err != nil {
			return 0, fmt.Errorf("keystore: rebaseline the journal: %w", err)
		}
		s.log.Warn("keystore journal rebaselined: every record accepted as found", zap.String("writer", o.Writer),
			zap.Uint64("storeSeq", h.lastSeq), zap.Uint64("anchor", o.Anchor), zap.Uint64("seq", last), zap.Int("records", n))
		h = fr.head
	default:
		return 0, fmt.Errorf("keystore: journal mode %d: %w", o.Mode, ErrInvalid)
	}
	fr.writer, fr.head = o.Writer, h
	fr.on.Store(true)
	fr.pending = int(min(h.lastSeq-h.ckptSeq, 1<<30))
	fr.every = o.CheckpointEntries
	if fr.every <= 0 {
		fr.every = defaultCheckpointEntries
		if lim := s.eng.Limits(); lim.MaxOps > 0 || lim.MaxBytes > 0 {
			// etcd: a checkpoint folds only what fits in one transaction
			// but reads every pending entry first; a longer journal would
			// be read again by each of its partial checkpoints.
			fr.every = limitedCheckpointEntries
		}
	}
	interval := o.CheckpointInterval
	if interval <= 0 {
		interval = defaultCheckpointInterval
	}
	fr.seq.Store(h.lastSeq)
	fr.mem = map[uint64][]jop{}
	fr.stop, fr.done, fr.wake = make(chan struct{}), make(chan struct{}), make(chan struct{}, 1)
	go s.checkpointLoop(fr.stop, fr.wake, fr.done, interval)
	if fr.pending >= fr.every { // left by a crash
		fr.kick()
	}
	return h.lastSeq, nil
}

// sealedHead is a head record this process sealed: writer w's head h,
// stored as v, by the transaction the engine numbered txn (0: an engine
// that does not number its transactions; see serialTxn).
type sealedHead struct {
	w   string
	h   headRecord
	v   []byte
	txn uint64
}

// serialTxn is a transaction of an engine that runs its transactions one
// at a time and numbers them (pebblekv): the one numbered n+1 reads what
// the one numbered n wrote, and a failed commit fails the engine.
type serialTxn interface{ Serial() uint64 }

// txnSerial is tx's number, or 0 when its engine does not number them.
func txnSerial(tx kv.Txn) uint64 {
	if st, ok := tx.(serialTxn); ok {
		return st.Serial()
	}
	return 0
}

// readHead reads writer w's head; reason says why it failed its check.
func (s *Store) readHead(r kv.Reader, w string) (h headRecord, found bool, reason string, err error) {
	hk := headKey(w)
	v, ok, err := get(r, hk)
	if err != nil || !ok {
		return headRecord{}, false, "", err
	}
	if c := s.fr.sealed.Load(); c != nil && c.w == w && bytes.Equal(c.v, v) {
		return c.h, true, "", nil // the bytes this process sealed (the seal covers w's key)
	}
	f, reason, err := s.openSys(hk, v, RecordJournalHead)
	if err != nil || reason != "" {
		return headRecord{}, true, reason, err
	}
	if h, err = decodeHead(f.payload); err != nil {
		return headRecord{}, true, err.Error(), nil
	}
	if f.revision != h.lastSeq {
		return headRecord{}, true, "its header and payload disagree", nil
	}
	return h, true, "", nil
}

// rebaseline replaces writer w's checkpoint and journal with a checkpoint of
// every record as found, at sequence number seq, and installs it; it
// returns the number of records. The caller is in the read section and
// holds fr.mu. The records are read from a view and the checkpoint is
// written in one transaction (which reads the head, so that a concurrent
// checkpoint or rebaseline of the same writer conflicts) when it fits the
// engine's transaction limits; on an engine with limits (etcd) a larger one
// is written in steps (rebaselineInSteps).
func (s *Store) rebaseline(w string, seq uint64) (int, error) {
	view, err := s.eng.View()
	if err != nil {
		return 0, s.engineErr("journal checkpoint: view", err)
	}
	all, err := s.scanRecords(view)
	var b batch
	var bits uint8
	var count uint64
	var digests map[uint32][sha256.Size]byte
	if err == nil {
		bits, count, digests, err = s.writeFull(&b, view, w, all, seq, math.MaxUint64)
	}
	err = errors.Join(err, view.Close())
	if err != nil {
		return 0, err
	}
	h := headRecord{lastSeq: seq, ckptSeq: seq, bits: bits, count: count, root: rootOf(bits, digests)}
	if err := s.setHead(&b, w, h); err != nil {
		return 0, err
	}
	if steps := s.splitBatch(b); len(steps) > 1 {
		err = s.rebaselineInSteps(w, steps, b.ops[len(b.ops)-1])
	} else {
		err = s.transact("journal checkpoint", func(tx *writer) error {
			if _, _, err := tx.b.Get(headKey(w)); err != nil { // read: a concurrent head change conflicts
				return err
			}
			return b.apply(tx.b)
		})
	}
	if err != nil {
		return 0, err
	}
	s.fr.head, s.fr.digests, s.fr.gen = h, digests, s.fr.gen+1
	if s.fr.mem != nil {
		s.fr.mem = map[uint64][]jop{} // the journal is replaced
	}
	return len(all), nil
}

// rebaselineInSteps writes a rebaseline too large for one transaction of
// the engine: steps is the rebaseline's batch cut to fit (splitBatch) and
// head the write of the new head (its last operation). Every state in
// between is one the next start handles:
//
//  1. The writer's head is deleted first, alone. From here until step 3
//     the writer has no journal: a start in JournalServe with no anchor
//     (the first checkpoint of a store written by an older build) writes
//     the first checkpoint again; with an anchor (an accept-restore) it is
//     refused as a store without a journal (RollbackError, NoJournal), and
//     the operator runs accept-restore again. Either way the rebaseline
//     starts over from a new view and deletes whatever buckets and entries
//     of the writer an interrupted one left.
//  2. The old buckets and journal entries are deleted and the new buckets
//     written, one transaction per step (each reads the head, which must
//     still be absent: a concurrent start of the same writer conflicts).
//  3. The new head is written, alone: the new checkpoint is in force.
func (s *Store) rebaselineInSteps(w string, steps []batch, head batchOp) error {
	hk := headKey(w)
	absent := func(tx *writer) error {
		_, ok, err := tx.b.Get(hk)
		if err == nil && ok {
			err = fmt.Errorf("keystore: journal checkpoint of %s: a head appeared while it was written in steps (another start of the same writer?): %w", w, ErrJournalDamaged)
		}
		return err
	}
	err := s.transact("journal checkpoint: drop the head", func(tx *writer) error {
		if _, _, err := tx.b.Get(hk); err != nil { // read: a concurrent head change conflicts
			return err
		}
		return tx.b.Delete(hk)
	})
	if err != nil {
		return err
	}
	for i, step := range steps {
		if i == len(steps)-1 {
			step.ops = step.ops[:len(step.ops)-1] // the head, last of the last step: written alone below
		}
		err := s.transact(fmt.Sprintf("journal checkpoint: step %d of %d", i+1, len(steps)), func(tx *writer) error {
			if err := absent(tx); err != nil {
				return err
			}
			return step.apply(tx.b)
		})
		if err != nil {
			return err
		}
	}
	err = s.transact("journal checkpoint: the new head", func(tx *writer) error {
		if err := absent(tx); err != nil {
			return err
		}
		return tx.b.Set(head.k, head.v)
	})
	if err == nil {
		s.log.Info("keystore journal checkpoint written in steps (too large for one transaction of the engine)",
			zap.String("writer", w), zap.Int("steps", len(steps)+2))
	}
	return err
}

// splitBatch cuts b into batches that each fit one transaction of the
// engine (with room for a read and for the engine's framing of every
// operation), keeping of several writes of one key the last, in b's order.
// An engine without limits, or a b that fits, gives one batch.
func (s *Store) splitBatch(b batch) []batch {
	lim := s.eng.Limits()
	const perOp = 64 + 256 + 64 // the engine's framing, its key prefix (at most 256 bytes) and a margin
	maxOps, maxBytes := lim.MaxOps-2, lim.MaxBytes-4096
	if lim.MaxOps == 0 {
		maxOps = math.MaxInt
	}
	if lim.MaxBytes == 0 {
		maxBytes = math.MaxInt
	}
	last := make(map[string]int, len(b.ops))
	for i, o := range b.ops {
		last[string(o.k)] = i
	}
	var out []batch
	var cur batch
	bytes := 0
	for i, o := range b.ops {
		if last[string(o.k)] != i {
			continue
		}
		n := len(o.k) + len(o.v) + perOp
		if len(cur.ops) > 0 && (len(cur.ops)+1 > maxOps || bytes+n > maxBytes) {
			out = append(out, cur)
			cur, bytes = batch{}, 0
		}
		cur.ops = append(cur.ops, o)
		bytes += n
	}
	if len(cur.ops) > 0 {
		out = append(out, cur)
	}
	return out
}

// batch is writes collected before a transaction, applied to it by apply
// (again on each attempt).
type batch struct{ ops []batchOp }

type batchOp struct {
	k, v []byte
	del  bool
}

// Set adds k = v; a later write of k wins.
func (b *batch) Set(k, v []byte) { b.ops = append(b.ops, batchOp{k: k, v: v}) }

// Delete adds the deletion of k.
func (b *batch) Delete(k []byte) { b.ops = append(b.ops, batchOp{k: k, del: true}) }

// apply writes b into tx in order; of several writes of one key the last
// wins.
func (b *batch) apply(tx kv.Txn) error {
	last := make(map[string]int, len(b.ops))
	for i, o := range b.ops {
		last[string(o.k)] = i
	}
	for i, o := range b.ops {
		if last[string(o.k)] != i {
			continue
		}
		var err error
		if o.del {
			err = tx.Delete(o.k)
		} else {
			err = tx.Set(o.k, o.v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// size is the number of distinct keys b writes and their bytes, as
// kv.Limits counts them.
func (b *batch) size() (ops, bytes int) {
	seen := make(map[string]bool, len(b.ops))
	for i := len(b.ops) - 1; i >= 0; i-- {
		o := b.ops[i]
		if seen[string(o.k)] {
			continue
		}
		seen[string(o.k)] = true
		ops++
		bytes += len(o.k) + len(o.v)
	}
	return ops, bytes
}

// scanRecords returns the state of every record in r as found: its header
// revision (and, for owner metadata, its digest).
func (s *Store) scanRecords(r kv.Reader) (map[string]jop, error) {
	all := map[string]jop{}
	err := r.Scan(nil, nil, func(k, v []byte) (bool, error) {
		typ := typeAt(k)
		if typ == 0 {
			return true, nil
		}
		o := jop{key: string(k), rev: headerRevision(v)}
		if typ == RecordOwnerMeta {
			d := sha256.Sum256(v)
			o.digest = &d
		}
		all[o.key] = o
		return true, nil
	})
	return all, err
}

// bitsFor is the bucket bits for n records, target a bucket.
func bitsFor(n, target int) uint8 {
	b := uint8(minBucketBits)
	for b < maxBucketBits && n > target<<b {
		b++
	}
	return b
}

// bucketOf is the bucket of the record at k: by the key it belongs to, or
// by its own Pebble key.
func bucketOf(k string, bits uint8) uint32 {
	o := ownerID(k)
	if o == "" {
		o = k
	}
	h := sha256.Sum256([]byte(o))
	return binary.BigEndian.Uint32(h[:]) >> (32 - bits)
}

// encodeBucket is a checkpoint bucket's payload: the version, the bits, the
// bucket's number, and its records' states in key order.
func encodeBucket(bits uint8, i uint32, ops []jop) []byte {
	b := []byte{opsVersion, bits}
	b = binary.BigEndian.AppendUint32(b, i)
	b = binary.AppendUvarint(b, uint64(len(ops)))
	for _, o := range ops {
		b = appendOp(b, o)
	}
	return b
}

func decodeBucket(p []byte) (bits uint8, i uint32, ops []jop, err error) {
	if len(p) < 6 || p[0] != opsVersion {
		return 0, 0, nil, errors.New("malformed checkpoint bucket")
	}
	bits, i = p[1], binary.BigEndian.Uint32(p[2:])
	// The rest is a journal entry's encoding without its version byte.
	ops, err = decodeOps(append([]byte{opsVersion}, p[6:]...))
	return bits, i, ops, err
}

// rootOf is the checkpoint's root: SHA-256 over the bits and every
// non-empty bucket's number and payload digest, in bucket order.
func rootOf(bits uint8, digests map[uint32][sha256.Size]byte) [sha256.Size]byte {
	idx := make([]uint32, 0, len(digests))
	for i := range digests {
		idx = append(idx, i)
	}
	sort.Slice(idx, func(a, b int) bool { return idx[a] < idx[b] })
	h := sha256.New()
	h.Write([]byte("payhsm keystore checkpoint root v1\x00"))
	h.Write([]byte{bits})
	for _, i := range idx {
		d := digests[i]
		h.Write(binary.BigEndian.AppendUint32(nil, i))
		h.Write(d[:])
	}
	var r [sha256.Size]byte
	h.Sum(r[:0])
	return r
}

// gcDeletedKeys drops from all the states of the records of every deleted
// key but its key record's tombstone.
func gcDeletedKeys(all map[string]jop) {
	gone := map[string]bool{}
	for k, o := range all {
		if o.del && strings.HasPrefix(k, pfxKey) {
			gone[k[len(pfxKey):]] = true
		}
	}
	if len(gone) == 0 {
		return
	}
	for k := range all {
		if id := ownerID(k); gone[id] && k != pfxKey+id {
			delete(all, k)
		}
	}
}

// writeFull adds to b a full checkpoint of all for writer w, its buckets
// sealed at sequence number seq, replacing w's buckets in r and deleting its
// journal entries up to dropUpTo; the caller adds the head.
func (s *Store) writeFull(b *batch, r kv.Reader, w string, all map[string]jop, seq, dropUpTo uint64) (uint8, uint64, map[uint32][sha256.Size]byte, error) {
	if err := s.eachKey(r, ckptPrefix(w), func(name string) { b.Delete([]byte(ckptPrefix(w) + name)) }); err != nil {
		return 0, 0, nil, err
	}
	jp := journalPrefix(w)
	err := s.eachKey(r, jp, func(name string) {
		if len(name) != 8 || binary.BigEndian.Uint64([]byte(name)) <= dropUpTo {
			b.Delete([]byte(jp + name))
		}
	})
	if err != nil {
		return 0, 0, nil, err
	}
	gcDeletedKeys(all)
	bits := bitsFor(len(all), s.fr.target)
	buckets := map[uint32][]jop{}
	for _, o := range all {
		i := bucketOf(o.key, bits)
		buckets[i] = append(buckets[i], o)
	}
	digests := make(map[uint32][sha256.Size]byte, len(buckets))
	for i, ops := range buckets {
		sortOps(ops)
		p := encodeBucket(bits, i, ops)
		k := ckptKey(w, i)
		v, err := s.sealSys(k, RecordCheckpoint, p, seq)
		if err != nil {
			return 0, 0, nil, err
		}
		b.Set(k, v) // after the Delete above: the later write wins
		digests[i] = sha256.Sum256(p)
	}
	return bits, uint64(len(all)), digests, nil
}

// setHead adds writer w's head h to b.
func (s *Store) setHead(b interface{ Set(k, v []byte) }, w string, h headRecord) error {
	hv, err := s.sealSys(headKey(w), RecordJournalHead, h.encode(), h.lastSeq)
	if err != nil {
		return err
	}
	b.Set(headKey(w), hv)
	return nil
}

// Checkpoint folds this writer's journal into its checkpoint now (it also
// runs by itself; see the top of this file). The work is done on a
// consistent view of the engine; only the commit is a write transaction,
// which reads this writer's head and writes the buckets and the new head, so
// writers wait for one transaction, not for the checkpoint. On an engine
// with transaction limits (etcd) a checkpoint folds only as many entries as
// fit in one transaction (see fitCheckpoint); the rest wait for the next.
func (s *Store) Checkpoint() error {
	s.fr.ckptMu.Lock()
	defer s.fr.ckptMu.Unlock()
	if !s.fr.on.Load() {
		return nil
	}
	release, err := s.read()
	if err != nil {
		return err
	}
	defer release()
	return s.checkpoint(s.update)
}

// checkpoint prepares a checkpoint on a view and commits it through run
// (update, or transact when the caller holds the store exclusively). A head
// that changed its checkpoint meanwhile (another checkpoint, a rebaseline)
// or buckets re-sealed meanwhile drop the prepared checkpoint: the next run
// redoes it.
func (s *Store) checkpoint(run func(string, func(*writer) error) error) error {
	fr := &s.fr
	fr.mu.Lock()
	w, gen, digests := fr.writer, fr.gen, fr.digests // digests are replaced, never changed in place
	fr.mu.Unlock()
	view, err := s.eng.View()
	if err != nil {
		return s.engineErr("journal checkpoint: view", err)
	}
	h, found, reason, err := s.readHead(view, w)
	if err == nil && (!found || reason != "") {
		err = fmt.Errorf("keystore: the journal head of %s is missing or failed its check (%s): %w", w, reason, ErrJournalDamaged)
	}
	if err != nil || h.lastSeq == h.ckptSeq {
		return errors.Join(err, view.Close())
	}
	if digests != nil && rootOf(h.bits, digests) != h.root {
		digests = nil // another checkpoint of this writer since: read them from the view
	}
	plan, err := s.fitCheckpoint(view, w, h, digests)
	if err = errors.Join(err, view.Close()); err != nil {
		return err
	}
	var nh headRecord
	stale := false
	root := rootOf(plan.bits, plan.digests) // outside the transaction: writers wait for it
	err = run("journal checkpoint", func(tx *writer) error {
		stale = false
		cur, found, reason, err := s.readHead(tx.b, w)
		if err != nil {
			return err
		}
		fr.mu.Lock()
		g := fr.gen
		fr.mu.Unlock()
		if !found || reason != "" || cur.ckptSeq != h.ckptSeq || cur.bits != h.bits || cur.root != h.root || g != gen {
			stale = true
			return nil
		}
		nh = headRecord{lastSeq: cur.lastSeq, ckptSeq: plan.upto, bits: plan.bits, count: plan.count, root: root}
		b := batch{ops: slices.Clip(plan.b.ops)} // setHead appends to a copy: plan.b serves the next attempt as it is
		if err := s.setHead(&b, w, nh); err != nil {
			return err
		}
		return b.apply(tx.b)
	})
	if err != nil || stale {
		return err
	}
	fr.mu.Lock()
	if nh.lastSeq >= fr.head.lastSeq {
		fr.head = nh
	} else {
		fr.head.ckptSeq, fr.head.bits, fr.head.count, fr.head.root = nh.ckptSeq, nh.bits, nh.count, nh.root
	}
	fr.digests, fr.gen = plan.digests, fr.gen+1
	fr.pending = int(min(fr.head.lastSeq-nh.ckptSeq, 1<<30))
	for seq := range fr.mem {
		if seq <= nh.ckptSeq {
			delete(fr.mem, seq)
		}
	}
	fr.mu.Unlock()
	s.log.Debug("keystore journal checkpoint", zap.String("writer", w), zap.Uint64("seq", nh.ckptSeq), zap.Uint64("records", nh.count))
	return nil
}

// fitCheckpoint prepares the checkpoint of h's entries, or of as many of
// the first of them as fit in one transaction of the engine (halving until
// they do; one entry always fits, as it came from one transaction's records
// and the buckets they touch are bounded by the re-bucketing).
func (s *Store) fitCheckpoint(r kv.Reader, w string, h headRecord, digests map[uint32][sha256.Size]byte) (*ckptPlan, error) {
	lim := s.eng.Limits()
	upto := h.lastSeq
	mem := s.memEntries(h.ckptSeq, h.lastSeq)
	if len(mem) > 0 {
		// This process's own entries, from memory: as many of the first as
		// it holds (an entry committed but not yet noted waits for the next
		// checkpoint).
		upto = h.ckptSeq + uint64(len(mem))
	}
	for {
		plan, err := s.prepareCheckpoint(r, w, h, upto, digests, lim.MaxOps > 0 || lim.MaxBytes > 0, mem)
		if err != nil {
			return nil, err
		}
		ops, bytes := plan.b.size()
		ops++                  // the head
		bytes += headLen + 200 // the head's key and frame
		fits := (lim.MaxOps == 0 || ops <= lim.MaxOps) && (lim.MaxBytes == 0 || bytes <= lim.MaxBytes)
		if fits || upto == h.ckptSeq+1 {
			return plan, nil // one entry that does not fit: the commit reports kv.ErrTooLarge
		}
		upto = h.ckptSeq + (upto-h.ckptSeq)/2
	}
}

func (s *Store) checkpointLoop(stop, wake <-chan struct{}, done chan<- struct{}, interval time.Duration) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-wake:
			// Writers that committed while the last checkpoint ran woke
			// the loop again: run only if enough entries are pending
			// still, not for the few written meanwhile (a checkpoint of
			// a store with fewer buckets than entries rewrites nearly
			// every bucket, however few its entries).
			s.fr.mu.Lock()
			due := s.fr.pending >= s.fr.every
			s.fr.mu.Unlock()
			if !due {
				continue
			}
		case <-t.C:
		}
		if err := s.Checkpoint(); err != nil && !errors.Is(err, ErrClosed) {
			s.log.Error("keystore journal checkpoint failed; the journal keeps every entry until one succeeds", zap.Error(err))
		}
	}
}

// haltJournal stops the checkpoint loop (Close calls it before taking the
// store exclusively, which would wait for the loop's checkpoint).
func (s *Store) haltJournal() {
	s.fr.mu.Lock()
	stop, done := s.fr.stop, s.fr.done
	s.fr.stop = nil
	s.fr.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// finalCheckpoint is Close's checkpoint; the caller holds the store
// exclusively (life), so no write runs meanwhile.
func (s *Store) finalCheckpoint() {
	if !s.fr.on.Load() || s.Failed() != nil {
		return
	}
	s.fr.ckptMu.Lock()
	defer s.fr.ckptMu.Unlock()
	if err := s.checkpoint(s.transact); err != nil {
		s.log.Error("keystore journal checkpoint at close failed; the journal keeps its entries", zap.Error(err))
	}
}

// ckptPlan is a prepared checkpoint: the writes of the buckets rewritten and
// of the deletion of the journal entries up to upto, and the new
// checkpoint's shape.
type ckptPlan struct {
	b       batch
	upto    uint64
	bits    uint8
	count   uint64
	digests map[uint32][sha256.Size]byte
}

// prepareCheckpoint prepares the checkpoint of writer w's journal entries
// after h's checkpoint up to upto (at most h.lastSeq), reading r (a view at
// least as recent as h); digests are the current buckets' (nil: read them
// from r). limited (an engine with transaction limits): re-bucket only when
// all of the entries are folded, and not when the full rewrite would exceed
// the limits.
func (s *Store) prepareCheckpoint(r kv.Reader, w string, h headRecord, upto uint64, digests map[uint32][sha256.Size]byte, limited bool, mem [][]jop) (*ckptPlan, error) {
	entries := mem
	if len(entries) == 0 {
		var (
			probs []Failure
			err   error
		)
		entries, probs, err = s.scanJournal(r, w, h, true)
		if err != nil {
			return nil, err
		}
		if len(probs) > 0 {
			return nil, fmt.Errorf("keystore: journal %s: %s %s: %s: %w", w, probs[0].Type, probs[0].Name, probs[0].Reason, ErrJournalDamaged)
		}
	}
	if n := upto - h.ckptSeq; n < uint64(len(entries)) {
		entries = entries[:n]
	}
	if digests == nil {
		d, reason, err := s.loadDigests(r, w, h)
		if err != nil {
			return nil, err
		}
		if reason != "" {
			return nil, fmt.Errorf("keystore: checkpoint of %s: %s: %w", w, reason, ErrJournalDamaged)
		}
		digests = d
	}
	plan := &ckptPlan{upto: upto}
	// The records after this checkpoint: at most the count plus what the
	// entries add (deciding on the count before them alone would leave a
	// store that stops writing under-bucketed until its next checkpoint).
	upper := h.count
	for _, ops := range entries {
		upper += uint64(len(ops))
	}
	if upper > uint64(s.fr.target*bucketGrow)<<h.bits && h.bits < maxBucketBits && (upto == h.lastSeq || !limited) { //nolint:gosec // target > 0
		// Re-bucket: the average bucket has grown past bucketGrow times the target.
		all, probs, err := s.readWriter(r, w, h, true)
		if err == nil && len(probs) > 0 {
			err = fmt.Errorf("keystore: journal %s: %s: %w", w, probs[0].Reason, ErrJournalDamaged)
		}
		if err != nil {
			return nil, err
		}
		plan.upto = h.lastSeq // every entry the view holds, whatever upto said
		plan.bits, plan.count, plan.digests, err = s.writeFull(&plan.b, r, w, all, h.lastSeq, h.lastSeq)
		if err != nil {
			return nil, err
		}
		lim := s.eng.Limits()
		ops, bytes := plan.b.size()
		if (lim.MaxOps == 0 || ops < lim.MaxOps) && (lim.MaxBytes == 0 || bytes+headLen+200 <= lim.MaxBytes) {
			return plan, nil
		}
		// Too large for one transaction of this engine: fold into the
		// current buckets instead (they grow past the target).
		plan = &ckptPlan{upto: upto}
	}
	plan.bits = h.bits
	var err error
	plan.count, plan.digests, err = s.checkpointBuckets(&plan.b, r, w, h, upto, entries, digests)
	return plan, err
}

// memEntriesMax bounds freshness.mem (a checkpoint that keeps failing).
const memEntriesMax = 1 << 16

// memEntries returns the ops of the entries after from, up to to, that
// this process holds in memory, from from+1 on without a gap (nil when it
// does not hold from+1).
func (s *Store) memEntries(from, to uint64) [][]jop {
	fr := &s.fr
	fr.mu.Lock()
	defer fr.mu.Unlock()
	var out [][]jop
	for seq := from + 1; seq <= to; seq++ {
		ops, ok := fr.mem[seq]
		if !ok {
			break
		}
		out = append(out, ops)
	}
	return out
}

// checkpointBuckets adds to b the rewrite of the buckets entries touch and
// the deletion of the entries, and returns the new count and digests. A
// bucket is rewritten by merging its sorted encoding with its few changed
// records (mergeBucket): the records that did not change are copied as
// they are, not decoded.
func (s *Store) checkpointBuckets(b *batch, r kv.Reader, w string, h headRecord, upto uint64, entries [][]jop, cur map[uint32][sha256.Size]byte) (uint64, map[uint32][sha256.Size]byte, error) {
	dirty := map[uint32][]jop{}
	for _, ops := range entries {
		for _, o := range ops {
			i := bucketOf(o.key, h.bits)
			dirty[i] = append(dirty[i], o)
		}
	}
	digests := make(map[uint32][sha256.Size]byte, len(cur)+len(dirty))
	for i, d := range cur {
		digests[i] = d
	}
	count := h.count
	for i, ops := range dirty {
		k := ckptKey(w, i)
		old, err := s.readBucket(r, k, h.bits, i, cur)
		if err != nil {
			return 0, nil, err
		}
		p, before, after, err := rewriteBucket(h.bits, i, old, ops)
		if err != nil {
			return 0, nil, fmt.Errorf("keystore: checkpoint bucket %d: %v: %w", i, err, ErrJournalDamaged)
		}
		count = count - uint64(before) + uint64(after) //nolint:gosec // counts of records
		if after == 0 {
			b.Delete(k)
			delete(digests, i)
			continue
		}
		v, err := s.sealSys(k, RecordCheckpoint, p, upto)
		if err != nil {
			return 0, nil, err
		}
		b.Set(k, v)
		digests[i] = sha256.Sum256(p)
	}
	for seq := h.ckptSeq + 1; seq <= upto; seq++ {
		b.Delete(journalKey(w, seq))
	}
	return count, digests, nil
}

// rewriteBucket is bucket i's payload old (nil: absent, empty) with ops
// applied in journal order (the later state of a record wins; the other
// records of a key whose key record ops delete are dropped), and the
// number of its records before and after (none: p is nil).
func rewriteBucket(bits uint8, i uint32, old []byte, ops []jop) (p []byte, before, after int, err error) {
	var gone map[string]bool // keys deleted: their other records are dropped
	for _, o := range ops {
		if o.del && strings.HasPrefix(o.key, pfxKey) {
			if gone == nil {
				gone = map[string]bool{}
			}
			gone[o.key[len(pfxKey):]] = true
		}
	}
	changes := slices.Clone(ops)
	slices.SortStableFunc(changes, func(a, b jop) int { return strings.Compare(a.key, b.key) })
	n := 0
	for j := range changes { // of several states of one key, the last (in journal order) wins
		if j+1 < len(changes) && changes[j+1].key == changes[j].key {
			continue
		}
		changes[n] = changes[j]
		n++
	}
	changes = changes[:n]
	return mergeBucket(bits, i, old, changes, gone)
}

// mergeBucket merges bucket i's payload old (nil: empty), whose records
// are in strictly increasing key order as encodeBucket writes them, with
// changes (sorted by key, one state per key, replacing a record's state or
// adding one), dropping the records of the keys in gone but their key
// records. Records out of that order are refused: every checkpoint has
// written its buckets sorted (sortOps), and a bucket is authenticated.
func mergeBucket(bits uint8, i uint32, old []byte, changes []jop, gone map[string]bool) (p []byte, before, after int, err error) {
	var rest []byte
	if old != nil {
		if len(old) < 6 || old[0] != opsVersion || old[1] != bits || binary.BigEndian.Uint32(old[2:]) != i {
			return nil, 0, 0, errors.New("malformed, or not this bucket")
		}
		n, m := binary.Uvarint(old[6:])
		if m <= 0 || n > uint64(len(old)) {
			return nil, 0, 0, errors.New("malformed record count")
		}
		before, rest = int(n), old[6+m:] //nolint:gosec // n <= len(old)
	}
	dropped := func(k string) bool {
		if len(gone) == 0 {
			return false
		}
		id := ownerID(k)
		return gone[id] && k != pfxKey+id
	}
	body := make([]byte, 0, len(rest)+len(changes)*(IDLen+48))
	c := 0
	emit := func(o jop) {
		if !dropped(o.key) {
			body = appendOp(body, o)
			after++
		}
	}
	var prev []byte
	for j := 0; j < before; j++ {
		key, end, err := opAt(rest)
		if err != nil {
			return nil, 0, 0, err
		}
		if prev != nil && bytes.Compare(prev, key) >= 0 {
			return nil, 0, 0, errors.New("records out of order")
		}
		prev = key
		for c < len(changes) && changes[c].key < string(key) {
			emit(changes[c])
			c++
		}
		if c < len(changes) && changes[c].key == string(key) {
			emit(changes[c])
			c++
		} else if !dropped(string(key)) {
			body = append(body, rest[:end]...)
			after++
		}
		rest = rest[end:]
	}
	if len(rest) != 0 {
		return nil, 0, 0, errors.New("trailing bytes")
	}
	for ; c < len(changes); c++ {
		emit(changes[c])
	}
	if after == 0 {
		return nil, before, 0, nil
	}
	p = make([]byte, 0, 6+binary.MaxVarintLen64+len(body))
	p = append(p, opsVersion, bits)
	p = binary.BigEndian.AppendUint32(p, i)
	p = binary.AppendUvarint(p, uint64(after)) //nolint:gosec // a count
	return append(p, body...), before, after, nil
}

// opAt is the key of the encoded record state at the start of b and the
// length of its encoding (the layout readOp decodes).
func opAt(b []byte) (key []byte, end int, err error) {
	bad := errors.New("malformed checkpoint bucket")
	if len(b) < 1 || b[0]&^(opDeleted|opDigest) != 0 {
		return nil, 0, bad
	}
	fl := b[0]
	kl, m := binary.Uvarint(b[1:])
	if m <= 0 || kl == 0 || kl > maxRecordKeyLen || int(kl) > len(b)-1-m {
		return nil, 0, bad
	}
	key = b[1+m : 1+m+int(kl)]
	end = 1 + m + int(kl)
	_, m2 := binary.Uvarint(b[end:])
	if m2 <= 0 {
		return nil, 0, bad
	}
	end += m2
	if fl&opDigest != 0 {
		if len(b)-end < sha256.Size {
			return nil, 0, bad
		}
		end += sha256.Size
	}
	return key, end, nil
}

// readBucket reads bucket i (at k) and checks it against the digest the
// root covers; it returns its payload, nil when the bucket is absent (and
// the root covers none).
func (s *Store) readBucket(r kv.Reader, k []byte, bits uint8, i uint32, digests map[uint32][sha256.Size]byte) ([]byte, error) {
	v, ok, err := get(r, k)
	if err != nil {
		return nil, err
	}
	want, listed := digests[i]
	if !ok {
		if listed {
			return nil, fmt.Errorf("keystore: checkpoint bucket %d is missing: %w", i, ErrJournalDamaged)
		}
		return nil, nil
	}
	f, reason, err := s.openSys(k, v, RecordCheckpoint)
	if err != nil {
		return nil, err
	}
	if reason == "" && (!listed || sha256.Sum256(f.payload) != want) {
		reason = "it is not the bucket the head's root covers"
	}
	if reason == "" && (len(f.payload) < 6 || f.payload[1] != bits || binary.BigEndian.Uint32(f.payload[2:]) != i) {
		reason = "malformed"
	}
	if reason != "" {
		return nil, fmt.Errorf("keystore: checkpoint bucket %d: %s: %w", i, reason, ErrJournalDamaged)
	}
	return f.payload, nil
}

// loadDigests reads the digests of writer w's checkpoint buckets and checks
// them against the head's root.
func (s *Store) loadDigests(r kv.Reader, w string, h headRecord) (map[uint32][sha256.Size]byte, string, error) {
	digests := map[uint32][sha256.Size]byte{}
	reason := ""
	p := ckptPrefix(w)
	err := s.eachRecord(r, p, func(k, v []byte) error {
		f, why, err := s.openSys(k, v, RecordCheckpoint)
		if err != nil {
			return err
		}
		if why == "" && len(k) != len(p)+4 {
			why = "not a checkpoint bucket key"
		}
		if why != "" {
			if reason == "" {
				reason = fmt.Sprintf("bucket %q: %s", k[len(p):], why)
			}
			return nil
		}
		digests[binary.BigEndian.Uint32(k[len(p):])] = sha256.Sum256(f.payload)
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if reason == "" && rootOf(h.bits, digests) != h.root {
		reason = "the checkpoint is not the one its head covers (a bucket replaced, added or removed)"
	}
	return digests, reason, nil
}

// scanJournal reads writer w's journal entries: the ops of those after the
// checkpoint, in order, and the problems found (an entry missing, failing
// its check, left over from before the checkpoint, or beyond the head).
//
// With later, entries beyond the head are no problem: a checkpoint reads a
// snapshot taken after it read the head, and writers may have gone on.
func (s *Store) scanJournal(r kv.Reader, w string, h headRecord, later bool) (entries [][]jop, probs []Failure, err error) {
	p := journalPrefix(w)
	next := h.ckptSeq + 1
	prob := func(name, format string, args ...any) {
		probs = append(probs, Failure{Type: RecordJournal, Name: w + "/" + name, Reason: fmt.Sprintf(format, args...)})
	}
	missing := func(from, to uint64) {
		if from == to {
			prob(fmt.Sprint(from), "the entry is missing (deleted, or the journal rolled back)")
		} else {
			prob(fmt.Sprintf("%d-%d", from, to), "the entries are missing (deleted, or the journal rolled back)")
		}
	}
	err = s.eachRecord(r, p, func(k, v []byte) error {
		if len(k) != len(p)+8 {
			prob(fmt.Sprintf("%q", k[len(p):]), "not a journal entry key")
			return nil
		}
		seq := binary.BigEndian.Uint64(k[len(p):])
		f, reason, err := s.openSys(k, v, RecordJournal)
		if err != nil {
			return err
		}
		if reason == "" && f.revision != seq {
			reason = fmt.Sprintf("it carries sequence number %d", f.revision)
		}
		switch {
		case seq <= h.ckptSeq:
			prob(fmt.Sprint(seq), "the checkpoint (at sequence %d) already covers it: an old entry put back", h.ckptSeq)
			return nil
		case seq > h.lastSeq:
			if !later {
				prob(fmt.Sprint(seq), "it is beyond the head (sequence %d): the head was rolled back", h.lastSeq)
			}
			return nil
		}
		if seq > next {
			missing(next, seq-1)
		}
		next = seq + 1
		if reason != "" {
			prob(fmt.Sprint(seq), "%s", reason)
			return nil
		}
		ops, derr := decodeOps(f.payload)
		if derr != nil {
			prob(fmt.Sprint(seq), "the authenticated entry does not decode: %v", derr)
			return nil
		}
		entries = append(entries, ops)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if next <= h.lastSeq {
		missing(next, h.lastSeq)
	}
	return entries, probs, nil
}

// readWriter reads writer w's whole state: its checkpoint, then its journal
// applied in order.
func (s *Store) readWriter(r kv.Reader, w string, h headRecord, later bool) (map[string]jop, []Failure, error) {
	ws, probs, err := s.readWriterSel(r, w, h, later, nil)
	if err != nil {
		return nil, nil, err
	}
	return ws.all, probs, nil
}

// writerState is what readWriterSel read of one writer.
type writerState struct {
	all     map[string]jop               // the checkpoint's records keep selects, then every journal entry's, applied in order
	digests map[uint32][sha256.Size]byte // the checkpoint's bucket digests (checked against the root unless a problem is reported)
	overlay map[string]jop               // the journal entries after the checkpoint alone, applied in order
}

// readWriterSel is readWriter that keeps, of the checkpoint's records, only
// those keep selects (nil: all), and returns the bucket digests and the
// journal entries apart too. Every bucket is still read and checked (its
// seal, its shape, and the root over the digests of all of them).
func (s *Store) readWriterSel(r kv.Reader, w string, h headRecord, later bool, keep func(k []byte) bool) (*writerState, []Failure, error) {
	var probs []Failure
	all := map[string]jop{}
	digests := map[uint32][sha256.Size]byte{}
	p := ckptPrefix(w)
	err := s.eachRecord(r, p, func(k, v []byte) error {
		f, why, err := s.openSys(k, v, RecordCheckpoint)
		if err != nil {
			return err
		}
		var (
			bits uint8
			i    uint32
		)
		if why == "" {
			var derr error
			bits, i, derr = scanBucket(f.payload, keep, func(o jop) { all[o.key] = o })
			if derr != nil || len(k) != len(p)+4 || bits != h.bits || i != binary.BigEndian.Uint32(k[len(p):]) {
				why = "malformed, or not this checkpoint's"
			}
		}
		if why != "" {
			probs = append(probs, Failure{Type: RecordCheckpoint, Name: w + "/" + fmt.Sprintf("%x", k[len(p):]), Reason: why})
			return nil
		}
		digests[i] = sha256.Sum256(f.payload)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(probs) == 0 && rootOf(h.bits, digests) != h.root {
		probs = append(probs, Failure{Type: RecordCheckpoint, Name: w, Reason: "the checkpoint is not the one its head covers (a bucket replaced, added or removed)"})
	}
	entries, jp, err := s.scanJournal(r, w, h, later)
	if err != nil {
		return nil, nil, err
	}
	probs = append(probs, jp...)
	overlay := map[string]jop{}
	for _, ops := range entries {
		for _, o := range ops {
			all[o.key] = o
			overlay[o.key] = o
		}
	}
	return &writerState{all: all, digests: digests, overlay: overlay}, probs, nil
}

// scanBucket checks the shape of checkpoint bucket payload p as
// decodeBucket does, and calls fn with each of its records' states that keep
// selects (nil: all); the others are skipped without being decoded.
func scanBucket(p []byte, keep func(k []byte) bool, fn func(jop)) (bits uint8, i uint32, err error) {
	bad := errors.New("malformed checkpoint bucket")
	if len(p) < 6 || p[0] != opsVersion {
		return 0, 0, bad
	}
	bits, i = p[1], binary.BigEndian.Uint32(p[2:])
	b := p[6:]
	n, m := binary.Uvarint(b)
	if m <= 0 || n > uint64(len(b)) {
		return 0, 0, bad
	}
	b = b[m:]
	for range n {
		// The layout readOp decodes: flags, key length, key, revision, digest.
		if len(b) < 1 || b[0]&^(opDeleted|opDigest) != 0 {
			return 0, 0, bad
		}
		fl := b[0]
		kl, m := binary.Uvarint(b[1:])
		if m <= 0 || kl == 0 || kl > maxRecordKeyLen || int(kl) > len(b)-1-m {
			return 0, 0, bad
		}
		key := b[1+m : 1+m+int(kl)]
		rest := b[1+m+int(kl):]
		rev, m2 := binary.Uvarint(rest)
		if m2 <= 0 {
			return 0, 0, bad
		}
		end := len(b) - len(rest) + m2
		if fl&opDigest != 0 {
			if len(rest)-m2 < sha256.Size {
				return 0, 0, bad
			}
			end += sha256.Size
		}
		if keep == nil || keep(key) {
			o := jop{key: string(key), rev: rev, del: fl&opDeleted != 0}
			if fl&opDigest != 0 {
				o.digest = new([sha256.Size]byte)
				copy(o.digest[:], rest[m2:])
			}
			fn(o)
		}
		b = b[end:]
	}
	if len(b) != 0 {
		return 0, 0, bad
	}
	return bits, i, nil
}

// resealJournal re-authenticates the freshness records of every writer
// that are under profile but not under its active main key version
// (Reseal: a rotation of the namespace profile's main key). A record that
// fails its check is left as it is. The stale records are listed on a view
// and re-sealed in transactions of at most batchSize records (and, on an
// engine with a byte limit, half of it), each re-reading its records inside
// the transaction: a record is re-sealed alone (its seal covers its own
// bytes; a bucket's digest in the head covers its payload, not its seal),
// and a checkpoint committed meanwhile makes the transaction that read what
// it rewrote conflict and run again. Every transaction bumps the bucket
// generation, so that a checkpoint prepared before it, with buckets sealed
// under the old version, is dropped.
func (s *Store) resealJournal(profile string) (int, error) {
	ver, key, err := s.auth.Load().a.ActiveRecordKey(profile)
	if err != nil {
		return 0, err
	}
	clear(key)
	s.fr.sealed.Store(nil) // sealed under the old version: checked again when read back
	type stale struct {
		k    []byte
		typ  RecordType
		size int
	}
	var list []stale
	release, err := s.read()
	if err != nil {
		return 0, err
	}
	view, err := s.eng.View()
	if err != nil {
		release()
		return 0, s.engineErr("re-seal the journal: view", err)
	}
	for _, p := range []struct {
		prefix string
		typ    RecordType
	}{{pfxHead, RecordJournalHead}, {pfxJournal, RecordJournal}, {pfxCkpt, RecordCheckpoint}} {
		err = s.eachRecord(view, p.prefix, func(k, v []byte) error {
			if f, _, _, perr := parseFrame(v); perr == nil && f.profile == profile && f.mkVersion != ver {
				list = append(list, stale{k, p.typ, len(k) + len(v)})
			}
			return nil
		})
		if err != nil {
			break
		}
	}
	err = errors.Join(err, view.Close())
	release()
	if err != nil {
		return 0, err
	}
	maxBytes := s.eng.Limits().MaxBytes / 2
	n := 0
	for len(list) > 0 {
		end, bytes := 0, 0
		for end < len(list) && end < s.batchSize() && (maxBytes == 0 || end == 0 || bytes+list[end].size <= maxBytes) {
			bytes += list[end].size
			end++
		}
		batch := list[:end]
		list = list[end:]
		m := 0
		err := s.update("re-seal the journal of profile "+profile, func(tx *writer) error {
			m = 0
			s.fr.mu.Lock()
			s.fr.gen++ // a checkpoint prepared before holds buckets sealed under the old version
			s.fr.mu.Unlock()
			for _, r := range batch {
				v, ok, err := get(tx.b, r.k)
				if err != nil {
					return err
				}
				if !ok {
					continue // folded or deleted by a checkpoint meanwhile
				}
				f, _, _, perr := parseFrame(v)
				if perr != nil || f.profile != profile || f.mkVersion == ver {
					continue
				}
				if _, reason, err := s.openSys(r.k, v, r.typ); err != nil || reason != "" {
					if err != nil {
						return err
					}
					continue
				}
				nv, err := s.sealV2(r.k, r.typ, profile, f.payload, f.revision)
				if err != nil {
					return err
				}
				if err := tx.b.Set(r.k, nv); err != nil {
					return err
				}
				m++
			}
			return nil
		})
		n += m
		if err != nil {
			return n, err
		}
		s.fr.mu.Lock()
		s.fr.gen++
		s.fr.mu.Unlock()
	}
	return n, nil
}
