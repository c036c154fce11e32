// Package audit owns payhsm's tamper-evident audit trail: one writer for the
// daemon (control-plane calls, access-control denials, online ceremony steps
// and, for accounts that opt in, data-plane calls) and for the offline
// ceremonies. Entries are JSON lines with no secret in them (names, key
// identifiers, check values, outcomes; a PAN only masked and as a keyed
// hash; never a key, PIN or passphrase).
//
// Every entry is chained to the one before it by SHA-256, and the chain is
// sealed — every SealEvery entries, every SealInterval, at rotation and at
// close — with an HMAC under a key derived in the PKCS#11 token from the
// region main key (custody.AuditKey), so that an edited, removed, reordered
// or truncated entry is found by VerifyFiles (`payhsm audit verify`) and
// named by file, line and sequence number. The active file DIR/audit.log is
// rotated by size and age to DIR/audit-<first sequence number>.log, the
// chain continuing across files. The format: format.go and docs/audit.md.
//
// Synchronous events (Record, Deny) are appended and synced before the call
// returns, the fsync shared by every caller waiting at the time (group
// commit); a call whose record cannot be written gets the error and must not
// report success. A staged event (outbox.go) is one whose caller made it
// durable with the change it records: it is appended without a sync of its
// own, and Adopt appends after a crash what did not reach the files.
// Data-plane events (Data) go through a bounded queue and are never waited
// for: when the queue is full they are dropped and counted (Lag, and a
// notice entry in the trail), so the crypto hot path never blocks on the
// disk.
//
// After a failed write or sync the trail refuses records (Ready reports it)
// and, at most once a second, tries again: it cuts the file back to its last
// durable entry, notes the discarded (never acknowledged) entries, and goes
// on — so a full disk stops control-plane calls only until space is freed.
package audit

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// ActiveName is the name of the file being written, in Config.Dir.
const ActiveName = "audit.log"

// Config configures a Trail.
type Config struct {
	// Dir holds the trail (created 0700 if absent).
	Dir string
	// Key is the trail's root key (RootKeySize bytes, custody.AuditKey).
	// The trail derives its own keys from it and keeps no reference to Key.
	Key []byte
	// Writer names the process in start entries: "daemon" or "ceremony".
	Writer string
	// SealEvery seals after this many entries (default 1000).
	SealEvery int
	// SealInterval seals unsealed entries this often (default 1 minute).
	SealInterval time.Duration
	// RotateBytes rotates the active file when it would pass this size
	// (default 64 MiB); RotateAge when its first entry is this old (default
	// 24 hours).
	RotateBytes int64
	RotateAge   time.Duration
	// SyncInterval is how often entries nobody waits for (data events,
	// notices) are written and synced (default 200 ms).
	SyncInterval time.Duration
	// DataQueue is the capacity of the data-event queue (default 16384).
	DataQueue int
	// DenyRate and DenyBurst bound the denials recorded one by one (default
	// 100 a second, bursts of 1000): beyond them a flood of refused requests
	// (no credentials needed to send them) is counted, and the count
	// recorded every SyncInterval, so that it cannot fill the disk or keep
	// the trail's syncs busy.
	DenyRate  float64
	DenyBurst int
	// Settled, if set, is called with the request ids of staged entries
	// (AppendStaged) once a sync of the trail holds them, from a goroutine of
	// its own, one call at a time, the last before Close returns.
	Settled func(requestIDs []string)
	// Legacy is the path of a pre-chain audit log; a new trail's first
	// entry records its size and SHA-256.
	Legacy string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Log reports what the caller cannot be told (a failed background
	// write); default none.
	Log *zap.Logger
}

func (c *Config) defaults() {
	if c.SealEvery <= 0 {
		c.SealEvery = 1000
	}
	if c.SealInterval <= 0 {
		c.SealInterval = time.Minute
	}
	if c.RotateBytes <= 0 {
		c.RotateBytes = 64 << 20
	}
	if c.RotateAge <= 0 {
		c.RotateAge = 24 * time.Hour
	}
	if c.SyncInterval <= 0 {
		c.SyncInterval = 200 * time.Millisecond
	}
	if c.DataQueue <= 0 {
		c.DataQueue = 16384
	}
	if c.DenyRate <= 0 {
		c.DenyRate = 100
	}
	if c.DenyBurst <= 0 {
		c.DenyBurst = 1000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
}

// retryEvery bounds how often a failed trail tries to write again.
const retryEvery = time.Second

// flushAt is the amount of unwritten asynchronous entries that wakes the
// flusher before its next SyncInterval tick.
const flushAt = 256 << 10

// Trail is an open audit trail. It is safe for concurrent use.
type Trail struct {
	cfg Config

	mu         sync.Mutex
	keys       *keys
	f          *os.File // nil after a failed rotation, until recovery makes the file
	durable    int64    // the size of f known to be on disk
	fileFirst  uint64   // the first sequence number in f
	fileStart  time.Time
	seq        uint64         // the last entry appended (to buf or f)
	hash       [HashSize]byte // its hash
	dSeq       uint64         // the last durable entry
	dHash      [HashSize]byte
	lastSeal   uint64 // the last seal appended, and the last durable one
	dLastSeal  uint64
	lastSealAt time.Time
	buf        []byte // appended entries not yet written
	cur        *batch // the callers waiting for buf
	broken     error  // the last write or sync failed; cleared by a successful retry
	lastTry    time.Time
	discarded  uint64 // entries discarded since the last successful write
	closed     bool
	prevFile   string // the file the active one continues (for a start entry re-made after a failure)
	needStart  bool   // the active file has nothing durable: its start entry comes first
	needNotice bool   // a failure discarded entries: a notice comes first
	noRotate   time.Time
	adopting   int       // Adopts searching the files: no rotation meanwhile
	orphans    []*Staged // staged entries a failed write discarded, or that came while the trail could not write: appended first once it can
	spare      []byte    // the previous buffer, reused

	kick     chan struct{}
	stop     chan struct{}
	flushed  chan struct{} // closed when the flusher has stopped
	data     chan queued
	stopData chan struct{}
	drained  chan struct{} // closed when the data drainer has stopped
	dropped  atomic.Uint64 // data events dropped since Open
	toNote   atomic.Uint64 // dropped data events not yet noted in the trail
	syncs    atomic.Uint64 // syncs of the active file (tests: group commit)
	lock     *os.File      // holds the directory's lock (flock) while open

	denyMu     sync.Mutex // the denial token bucket
	denyTokens float64
	denyAt     time.Time
	suppressed atomic.Uint64 // denials counted, not recorded one by one, not yet noted

	settleMu   sync.Mutex // the staged entries synced, not yet settled (outbox.go)
	toSettle   []string
	settleKick chan struct{}
	stopSettle chan struct{}
	settled    chan struct{} // closed when the settler has stopped
}

// batch is the callers waiting for one write and sync.
type batch struct {
	done chan struct{}
	err  error
	last uint64 // the last entry in the batch
	hash [HashSize]byte
	seal uint64 // the last seal in the batch, or 0
	// staged are the staged entries in the batch (AppendStaged), for
	// Config.Settled, or to append again after a failed write.
	staged []*Staged
}

func newBatch() *batch { return &batch{done: make(chan struct{})} }

type queued struct {
	ev Event
	at time.Time
}

// Open opens the trail in cfg.Dir, continuing the chain of what is there,
// and appends (and syncs) a start entry that says what it found: a trail
// that did not end with a closing seal (its writer was killed), an
// incomplete last line it cut off, a change of seal key. It refuses a trail
// whose last entry is not a valid entry (an altered file: move it away,
// keeping it as evidence, to start a new chain).
func Open(cfg Config) (*Trail, error) {
	cfg.defaults()
	k, err := deriveKeys(cfg.Key)
	if err != nil {
		return nil, err
	}
	if cfg.Dir == "" {
		return nil, errors.New("audit: no directory")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		k.destroy()
		return nil, err
	}
	st, err := scanTrail(cfg.Dir)
	if err != nil {
		k.destroy()
		return nil, errors.Join(err, lock.Close())
	}
	t := &Trail{cfg: cfg, keys: k, cur: newBatch(), kick: make(chan struct{}, 1), stop: make(chan struct{}),
		flushed: make(chan struct{}), data: make(chan queued, cfg.DataQueue), stopData: make(chan struct{}), drained: make(chan struct{}),
		lock: lock, denyTokens: float64(cfg.DenyBurst), denyAt: cfg.Now(),
		settleKick: make(chan struct{}, 1), stopSettle: make(chan struct{}), settled: make(chan struct{})}
	if err := t.openActive(st); err != nil {
		k.destroy()
		return nil, errors.Join(err, lock.Close())
	}
	go t.flusher()
	go t.drainer()
	go t.settler()
	return t, nil
}

// openActive opens (or creates) the active file after st and writes the
// start entry.
func (t *Trail) openActive(st *tailState) error {
	path := filepath.Join(t.cfg.Dir, ActiveName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600) //nolint:gosec // G304: the trail's own file in the operator's data directory.
	if err != nil {
		return fmt.Errorf("audit trail: %w", err)
	}
	if st.activeLen >= 0 && st.torn != nil {
		if err := f.Truncate(st.activeLen); err != nil {
			return errors.Join(fmt.Errorf("audit trail: cut the incomplete last line of %s: %w", path, err), f.Close())
		}
	}
	if err := errors.Join(f.Sync(), syncDir(t.cfg.Dir)); err != nil {
		return errors.Join(fmt.Errorf("audit trail: %w", err), f.Close())
	}
	now := t.cfg.Now().UTC()
	t.f = f
	t.durable = max(st.activeLen, 0)
	t.seq, t.hash, t.dSeq, t.dHash = st.lastSeq, st.lastHash, st.lastSeq, st.lastHash
	t.lastSeal, t.dLastSeal, t.lastSealAt = st.lastSeal, st.lastSeal, now
	t.fileFirst, t.fileStart = st.activeFirst, st.activeStart
	if st.activeLen <= 0 {
		t.fileFirst, t.fileStart = st.lastSeq+1, now
		t.prevFile = st.lastFile
	}
	start := &Start{Reason: StartOpen, Writer: t.cfg.Writer, PID: os.Getpid(), File: ActiveName, KeyID: t.keys.id, Torn: st.torn}
	if st.activeLen <= 0 {
		start.PrevFile = st.lastFile
	}
	start.ActiveMissing = st.activeLen < 0 && st.lastSeq > 0
	if st.lastSeq > 0 {
		switch {
		case st.lastKind == KindSeal && st.lastSealReason == SealClose:
		case st.lastKind == KindSeal && st.lastSealReason == SealRotate && st.activeLen <= 0:
			start.Reason = StartRotate // a rotation stopped between the rename and the new file's first entry
		default:
			start.Unclean, start.LastSealed = true, st.lastSeal
		}
		if st.lastSealKeyID != "" && st.lastSealKeyID != t.keys.id {
			start.PrevKeyID = st.lastSealKeyID
		}
	} else if t.cfg.Legacy != "" {
		lg, err := digestLegacy(t.cfg.Legacy)
		if err != nil {
			return errors.Join(err, f.Close())
		}
		start.Legacy = lg
	}
	t.mu.Lock()
	b, err := t.appendLocked(&Entry{Kind: KindStart, Start: start})
	t.mu.Unlock()
	if err != nil {
		return errors.Join(err, f.Close())
	}
	if err := t.writeSync(t.buf); err != nil {
		return errors.Join(fmt.Errorf("audit trail %s: %w", path, err), f.Close())
	}
	t.commitLocked(b, len(t.buf))
	t.buf = t.buf[:0]
	t.cur = newBatch()
	return nil
}

// Record appends a synchronous event (KindControl, KindCeremony or
// KindDenial; zero means KindControl) and returns once it is on disk. An
// error means it is not recorded: the caller must not report success.
func (t *Trail) Record(kind Kind, e Event) error {
	if kind == "" {
		kind = KindControl
	}
	switch kind {
	case KindControl, KindCeremony, KindDenial:
	default:
		return fmt.Errorf("audit: Record of a %s entry", kind)
	}
	if e.Operation == "" || e.Outcome == "" {
		return errors.New("audit: an event needs an operation and an outcome")
	}
	entry := &Entry{Kind: kind, Event: &e}
	if e.PAN != "" {
		entry.MaskedPAN, entry.PANHash = t.maskPAN(e.PAN)
	}
	t.mu.Lock()
	if err := t.usableLocked(); err != nil {
		t.mu.Unlock()
		return err
	}
	b, err := t.appendLocked(entry)
	t.mu.Unlock()
	if err != nil {
		return err
	}
	t.wake()
	<-b.done
	return b.err
}

// Denial is an access-control decision that denied a request.
type Denial struct {
	Protocol  string // aws, host, admin
	Principal string // who asked, as far as known
	Source    string // the peer address
	RequestID string
	Action    string   // what was asked (an operation, a host command)
	Keys      []string // the keys it named
	Reason    string   // why it was denied (no secret: a rule, not the input)
}

// Deny records an access-control decision that denied a request, synced
// before it returns. It is the hook of the authorization layer: every deny
// it decides goes through here (today: SigV4 authentication failures and
// host clients outside the allow-list). A failure to record is returned;
// the request stays denied either way.
func (t *Trail) Deny(d Denial) error {
	if !t.denyAllowed() {
		t.suppressed.Add(1)
		return nil
	}
	return t.Record(KindDenial, Event{Protocol: d.Protocol, Operation: d.Action, Principal: d.Principal, Source: d.Source,
		RequestID: d.RequestID, Keys: d.Keys, Outcome: Denied, Detail: d.Reason})
}

// denyAllowed takes a token of the denial bucket.
func (t *Trail) denyAllowed() bool {
	t.denyMu.Lock()
	defer t.denyMu.Unlock()
	now := t.cfg.Now()
	if el := now.Sub(t.denyAt).Seconds(); el > 0 {
		t.denyTokens = min(float64(t.cfg.DenyBurst), t.denyTokens+el*t.cfg.DenyRate)
	}
	t.denyAt = now
	if t.denyTokens < 1 {
		return false
	}
	t.denyTokens--
	return true
}

// Data queues a data-plane event and returns at once: it never waits for
// the disk. When the queue is full (the writer is behind, or the trail
// cannot write) the event is dropped and counted (Lag.Dropped), and the
// trail records how many were dropped. Callers call it only for accounts
// that opted in; the check is theirs (a nil test on the hot path).
func (t *Trail) Data(e Event) {
	select {
	case t.data <- queued{ev: e, at: t.cfg.Now()}:
	default:
		t.dropped.Add(1)
		t.toNote.Add(1)
	}
}

// Ready reports whether a synchronous record can be attempted now: nil,
// or why not (the trail is closed, or failed less than a second ago).
// The daemon refuses control-plane calls while it is not ready.
func (t *Trail) Ready() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.usableLocked()
}

func (t *Trail) usableLocked() error {
	if t.closed {
		return errors.New("audit trail: closed")
	}
	if t.broken != nil && t.cfg.Now().Sub(t.lastTry) < retryEvery {
		return fmt.Errorf("audit trail cannot write: %w", t.broken)
	}
	return nil
}

// Lag is the part of the trail not yet durable or sealed, for metrics.
type Lag struct {
	Unsynced uint64 // entries appended but not yet synced to disk
	Unsealed uint64 // entries after the last seal
	Queued   int    // data events waiting in the queue
	Dropped  uint64 // data events dropped since Open
	Failed   bool   // the last write failed: synchronous records are refused
	Seq      uint64 // the last sequence number
	// Suppressed is the denials beyond DenyRate not yet noted in the trail.
	Suppressed uint64
}

// Lag reports the trail's lag.
func (t *Trail) Lag() Lag {
	t.mu.Lock()
	l := Lag{Unsynced: t.seq - t.dSeq, Unsealed: t.seq - t.lastSeal, Failed: t.broken != nil, Seq: t.seq}
	t.mu.Unlock()
	l.Queued, l.Dropped, l.Suppressed = len(t.data), t.dropped.Load(), t.suppressed.Load()
	return l
}

// Head is the last durable entry: its sequence number and hash. Logged
// where the trail's files are not (the daemon's journal), it is a
// checkpoint that a trail rolled back to an earlier point cannot match.
func (t *Trail) Head() (uint64, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dSeq, hex.EncodeToString(t.dHash[:])
}

// KeyID names the key the trail seals under now.
func (t *Trail) KeyID() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.keys.id
}

// CheckSeals checks seals with the trail's current key (a SealChecker for
// `payhsm audit verify` through the daemon).
func (t *Trail) CheckSeals(reqs []SealRequest) ([]SealStatus, error) {
	t.mu.Lock()
	k := t.keys
	t.mu.Unlock()
	return checkSeals(k, reqs), nil
}

// Rekey seals the trail under its current key and continues under the key
// derived from root: the ceremony that replaces the region main key calls
// it. A notice entry names both key ids, so verify knows that seals under
// the old one can no longer be checked.
func (t *Trail) Rekey(root []byte) error {
	nk, err := deriveKeys(root)
	if err != nil {
		return err
	}
	t.mu.Lock()
	if err := t.usableLocked(); err != nil {
		t.mu.Unlock()
		nk.destroy()
		return err
	}
	old := t.keys
	if _, err := t.appendSealLocked(SealRekey); err != nil {
		t.mu.Unlock()
		nk.destroy()
		return err
	}
	t.keys = nk
	b, err := t.appendLocked(&Entry{Kind: KindNotice, Notice: &Notice{KeyID: nk.id, PrevKeyID: old.id}})
	t.mu.Unlock()
	if err != nil {
		return err
	}
	t.wake()
	<-b.done
	if b.err == nil {
		old.destroy()
	}
	return b.err
}

// Close writes the queued data events and a closing seal, syncs and closes
// the file. Later records fail. Closing again does nothing.
func (t *Trail) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	close(t.stopData)
	<-t.drained
	close(t.stop)
	<-t.flushed
	// The flusher has stopped: this goroutine alone does I/O now.
	t.mu.Lock()
	defer t.mu.Unlock()
	var err error
	if t.f != nil && t.broken == nil {
		t.noteDropsLocked()
		if _, err = t.appendSealLocked(SealClose); err == nil {
			err = t.writeSync(t.buf)
		}
		if err == nil {
			t.commitLocked(t.cur, len(t.buf))
		} else {
			err = fmt.Errorf("audit trail: closing seal: %w", err)
		}
	} else if t.broken != nil {
		err = fmt.Errorf("audit trail closed after a failed write (%v): its last entries were not written", t.broken)
	}
	t.failWaiters(t.cur, errors.New("audit trail: closed"))
	close(t.stopSettle) // the last refs settled before Close returns
	<-t.settled
	t.buf = nil
	if t.f != nil {
		err = errors.Join(err, t.f.Close())
		t.f = nil
	}
	t.keys.destroy()
	return errors.Join(err, t.lock.Close())
}

func (t *Trail) wake() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// appendLocked chains e onto the trail and appends it to buf, sealing when
// SealEvery entries are unsealed. It returns the batch e will be written
// in.
func (t *Trail) appendLocked(e *Entry) (*batch, error) {
	t.prefixLocked()
	now := t.cfg.Now().UTC()
	e.Seq = t.seq + 1
	if e.Time.IsZero() {
		e.Time = now
	}
	buf, h, err := appendEntryLine(t.buf, e, t.hash)
	if err != nil {
		return nil, err
	}
	t.buf = buf
	t.seq, t.hash = e.Seq, h
	t.cur.last, t.cur.hash = t.seq, h
	if e.Kind == KindSeal {
		t.lastSeal, t.lastSealAt, t.cur.seal = t.seq, now, t.seq
	} else if t.seq-t.lastSeal >= uint64(t.cfg.SealEvery) { //nolint:gosec // G115: SealEvery is positive (defaults).
		if _, err := t.appendSealLocked(SealCount); err != nil {
			return nil, err
		}
	}
	return t.cur, nil
}

// appendSealLocked appends a seal of every entry since the last seal.
func (t *Trail) appendSealLocked(reason string) (*batch, error) {
	m := sealMAC(t.keys.seal, t.hash)
	s := &Seal{From: t.lastSeal + 1, To: t.seq, Reason: reason, KeyID: t.keys.id}
	s.MAC = fmt.Sprintf("%x", m[:])
	return t.appendLocked(&Entry{Kind: KindSeal, Seal: s})
}

// noteDropsLocked records the data events dropped, and the denials
// suppressed, since the last notice.
func (t *Trail) noteDropsLocked() {
	n, d := t.toNote.Swap(0), t.suppressed.Swap(0)
	if n == 0 && d == 0 {
		return
	}
	if _, err := t.appendLocked(&Entry{Kind: KindNotice, Notice: &Notice{Dropped: n, SuppressedDenials: d}}); err != nil {
		t.toNote.Add(n)
		t.suppressed.Add(d)
	}
}

func (t *Trail) maskPAN(pan string) (string, string) {
	t.mu.Lock()
	k := t.keys
	t.mu.Unlock()
	return k.maskPAN(pan)
}

// commitLocked marks batch b (n bytes) durable.
func (t *Trail) commitLocked(b *batch, n int) {
	t.durable += int64(n)
	if b.last > 0 {
		t.dSeq, t.dHash = b.last, b.hash
	}
	if b.seal > 0 {
		t.dLastSeal = b.seal
	}
	t.settleLocked(b)
	t.broken, t.discarded = nil, 0
}

// writeSync writes p to the active file and syncs it.
func (t *Trail) writeSync(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if _, err := t.f.Write(p); err != nil {
		return err
	}
	t.syncs.Add(1)
	return t.f.Sync()
}

func (t *Trail) failWaiters(b *batch, err error) {
	if b == nil {
		return
	}
	select {
	case <-b.done:
	default:
		b.err = err
		close(b.done)
	}
}
