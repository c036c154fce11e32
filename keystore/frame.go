package keystore

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"go.uber.org/zap"

	"payhsm/fault"
	"payhsm/keystore/kv"
)

// RecordType is the kind of a stored record. Each record's type follows from
// where it is stored (its Pebble key's prefix, and for metadata its name) and
// is also written in, and authenticated with, its header.
type RecordType byte

// Record types.
const (
	RecordKey        RecordType = 'K' // "k/" key record
	RecordAlias      RecordType = 'A' // "a/" alias record
	RecordAliasIndex RecordType = 'X' // "x/" alias-by-key index entry
	RecordTag        RecordType = 'T' // "t/" tag
	RecordPurgeIndex RecordType = 'P' // "p/" purge index entry
	RecordMeta       RecordType = 'M' // "m/" metadata of the service (import tokens, the profile CA, certificate issuers)
	// RecordOwnerMeta is metadata its owner protects itself and needs before
	// record authentication can start: custody's region and profile records
	// and the ceremonies' records (see ownerMetaPrefixes). The store frames
	// it but does not authenticate it.
	RecordOwnerMeta RecordType = 'O'
)

var recordTypeNames = map[RecordType]string{
	RecordKey: "key", RecordAlias: "alias", RecordAliasIndex: "alias-index", RecordTag: "tag",
	RecordPurgeIndex: "purge-index", RecordMeta: "meta", RecordOwnerMeta: "owner-meta",
	RecordJournal: "journal", RecordJournalHead: "journal-head", RecordCheckpoint: "checkpoint",
}

func (t RecordType) String() string {
	if n, ok := recordTypeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("unknown(%q)", byte(t))
}

// ownerMetaPrefixes are the metadata names whose records their owners
// protect: custody's ("custody/": the region main key's record, checked
// against the token at every start, and the profile records, whose main keys
// are sealed under the region main key with AES-GCM and associated data
// naming the profile and check value) and the ceremonies' ("ceremony/": the
// custodian record sealed under the region main key; the device identity,
// whose private key is sealed and whose certificate must match it; the TR-34
// nonce). Custody reads its records before it can hand the store any key, so
// they cannot be authenticated by keys custody derives.
var ownerMetaPrefixes = []string{"custody/", "ceremony/"}

func isOwnerMeta(name string) bool {
	for _, p := range ownerMetaPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// typeAt returns the type of the record stored at Pebble key k, or 0 for a
// key outside the record space ("sys/") or unknown.
func typeAt(k []byte) RecordType {
	switch {
	case bytes.HasPrefix(k, []byte(pfxKey)):
		return RecordKey
	case bytes.HasPrefix(k, []byte(pfxAlias)):
		return RecordAlias
	case bytes.HasPrefix(k, []byte(pfxByKey)):
		return RecordAliasIndex
	case bytes.HasPrefix(k, []byte(pfxTag)):
		return RecordTag
	case bytes.HasPrefix(k, []byte(pfxPurge)):
		return RecordPurgeIndex
	case bytes.HasPrefix(k, []byte(pfxMeta)):
		if isOwnerMeta(string(k[len(pfxMeta):])) {
			return RecordOwnerMeta
		}
		return RecordMeta
	}
	return 0
}

// recordName names the record at Pebble key k for errors and logs (never its
// content): the type, a name and, for a record that belongs to a key, the
// key id.
func recordName(k []byte) (typ RecordType, name, keyID string) {
	typ = typeAt(k)
	switch typ {
	case RecordKey:
		name = string(k[len(pfxKey):])
		keyID = name
	case RecordAlias:
		name = string(k[len(pfxAlias):])
	case RecordAliasIndex, RecordTag:
		name = string(k[len(pfxByKey):]) // both prefixes are two bytes
		keyID, _, _ = strings.Cut(name, "/")
	case RecordPurgeIndex:
		if len(k) == len(pfxPurge)+8+IDLen {
			keyID = string(k[len(pfxPurge)+8:])
			// deadlineNanos writes at most math.MaxInt64; a larger deadline
			// is not one this store wrote and is shown in hex.
			if ns := binary.BigEndian.Uint64(k[len(pfxPurge):]); ns <= math.MaxInt64 {
				name = keyID + "@" + time.Unix(0, int64(ns)).UTC().Format(time.RFC3339)
			} else {
				name = fmt.Sprintf("%s@%#x", keyID, ns)
			}
		} else {
			name = fmt.Sprintf("%q", k[len(pfxPurge):])
		}
	case RecordMeta, RecordOwnerMeta:
		name = string(k[len(pfxMeta):])
	default:
		name = fmt.Sprintf("%q", k)
	}
	return typ, name, keyID
}

// Authenticator supplies the keys records are authenticated under: one per
// profile main key version (custody.Custodian implements it; see
// SetAuthenticator). Keys are copies the store may keep no longer than a call.
type Authenticator interface {
	// RecordKey returns the record-authentication key of profile's main key
	// version, or nil and no error when this appliance holds no such
	// version (an unknown profile or a retired version).
	RecordKey(profile string, version int) ([]byte, error)
	// ActiveRecordKey returns profile's active main key version and its
	// record-authentication key, for new records; 0, nil and no error when
	// the profile has no main key.
	ActiveRecordKey(profile string) (version int, key []byte, err error)
}

// The record format (format version 2). Every value the store writes is
//
//	version   1 byte   2
//	type      1 byte   RecordType
//	n         1 byte   length of the profile name
//	profile   n bytes  the profile whose main key authenticates the record ("" for owner metadata)
//	mkVersion 4 bytes  that main key's version, big-endian (0 for owner metadata)
//	revision  8 bytes  big-endian, bumped by every write of the record
//	payload
//	tag       32 bytes HMAC-SHA256, absent for owner metadata
//
// and the tag is HMAC-SHA256 under the profile main key version's record key
// (Authenticator) over macContext, the Pebble key's length (4 bytes,
// big-endian) and the Pebble key, and every byte of the value before the
// tag. A record edited, truncated, moved to another Pebble key, given
// another type, or attributed to another profile or main key version no
// longer verifies. Records are not secret (key blocks are encrypted by
// their own format), so a MAC is enough; no AEAD encrypts them.
const (
	recordVersion = 2
	headerFixed   = 1 + 1 + 1 + 4 + 8 // version, type, n, mkVersion, revision
	tagLen        = sha256.Size
	macContext    = "payhsm keystore record v2\x00"
)

// frame is a record's decoded header and payload.
type frame struct {
	typ       RecordType
	profile   string
	mkVersion int
	revision  uint64
	payload   []byte
}

// appendFrame appends the unauthenticated part of a record (header and
// payload) to dst. f.profile is at most maxProfileLen bytes and f.mkVersion
// in [0, math.MaxUint32]: sealV2, which frames every record the store
// writes, checks both.
func appendFrame(dst []byte, f frame) []byte {
	dst = append(dst, recordVersion, byte(f.typ), byte(len(f.profile))) //nolint:gosec // len(f.profile) <= maxProfileLen (255): sealV2 checks validProfile before framing
	dst = append(dst, f.profile...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(f.mkVersion)) //nolint:gosec // 0 <= f.mkVersion <= math.MaxUint32: sealV2 checks the authenticator's version before framing
	dst = binary.BigEndian.AppendUint64(dst, f.revision)
	return append(dst, f.payload...)
}

// parseFrame splits a value into its frame and, for authenticated types, the
// signed bytes and the tag. It checks structure only.
func parseFrame(v []byte) (f frame, signed, tag []byte, err error) {
	if len(v) < 3 || v[0] != recordVersion {
		return frame{}, nil, nil, errors.New("not a format 2 record")
	}
	f.typ = RecordType(v[1])
	n := int(v[2])
	if len(v) < headerFixed+n {
		return frame{}, nil, nil, errors.New("truncated header")
	}
	f.profile = string(v[3 : 3+n])
	rest := v[3+n:]
	f.mkVersion = int(binary.BigEndian.Uint32(rest))
	f.revision = binary.BigEndian.Uint64(rest[4:])
	body := rest[12:]
	signed = v
	if f.typ != RecordOwnerMeta {
		if len(body) < tagLen {
			return frame{}, nil, nil, errors.New("truncated tag")
		}
		signed, tag = v[:len(v)-tagLen], v[len(v)-tagLen:]
		body = body[:len(body)-tagLen]
	}
	f.payload = body
	return f, signed, tag, nil
}

// recordMAC is a record's tag (recordTag) as a slice.
func recordMAC(key, pebbleKey, signed []byte) []byte {
	t := recordTag(key, pebbleKey, signed)
	return t[:]
}

// recordTag is HMAC-SHA256 under key over macContext, the Pebble key's
// length (4 bytes, big-endian), the Pebble key and signed (RFC 2104,
// computed here as two SHA-256 sums of contiguous buffers). Every record
// read is checked by it, so it allocates nothing for a record of up to
// about 900 bytes (crypto/hmac allocates two digests, its pads and the
// sum: a third of a key read's allocations), and it clears its copies of
// the padded key before returning (TestRecordTagMatchesHMAC checks it
// against crypto/hmac).
func recordTag(key, pebbleKey, signed []byte) [sha256.Size]byte {
	var kb [sha256.BlockSize]byte // the key, zero-padded (hashed first when longer than a block)
	if len(key) > sha256.BlockSize {
		h := sha256.Sum256(key)
		copy(kb[:], h[:])
		clear(h[:])
	} else {
		copy(kb[:], key)
	}
	n := sha256.BlockSize + len(macContext) + 4 + len(pebbleKey) + len(signed)
	buf := make([]byte, 0, 1024) // on the stack
	if n > cap(buf) {
		buf = make([]byte, 0, n)
	}
	for _, b := range kb {
		buf = append(buf, b^0x36)
	}
	buf = append(buf, macContext...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(pebbleKey))) //nolint:gosec // every Pebble key is shorter than math.MaxUint32 bytes: Pebble's batches, which carry every write, are limited to that size
	buf = append(buf, pebbleKey...)
	buf = append(buf, signed...)
	inner := sha256.Sum256(buf)
	clear(buf[:sha256.BlockSize])
	var outer [sha256.BlockSize + sha256.Size]byte
	for i, b := range kb {
		outer[i] = b ^ 0x5c
	}
	clear(kb[:])
	copy(outer[sha256.BlockSize:], inner[:])
	tag := sha256.Sum256(outer[:])
	clear(outer[:sha256.BlockSize])
	return tag
}

// ErrIntegrity is matched (errors.Is) by every integrity failure of a
// stored record; the error itself is an *IntegrityError. It carries
// fault.ViolationRecordIntegrity, so the edges answer it with their
// record-integrity error.
var ErrIntegrity = &fault.Error{Kind: fault.Internal, Violation: fault.ViolationRecordIntegrity, Message: fault.RecordIntegrityMessage}

// ErrNeedsMigration: the store is format 1 and must be migrated (Migrate)
// before its records can be used.
var ErrNeedsMigration = &fault.Error{Kind: fault.Unavailable, Message: "key store records are in format 1 and must be upgraded first"}

// errNoAuthenticator: authenticated records are read or written before
// SetAuthenticator.
var errNoAuthenticator = errors.New("keystore: no record authenticator is set")

// IntegrityError is a record that failed its integrity check.
type IntegrityError struct {
	Type   RecordType
	Name   string // the record's name: key id, alias name, "<key id>/<tag key>", metadata name...
	KeyID  string // the key the record belongs to, when it belongs to one
	Reason string
}

func (e *IntegrityError) Error() string {
	return fmt.Sprintf("keystore: %s record %s failed its integrity check: %s", e.Type, e.Name, e.Reason)
}

// Unwrap makes errors.Is(err, ErrIntegrity) hold.
func (e *IntegrityError) Unwrap() error { return ErrIntegrity }

// Integrity failures are logged at error level the first time a record fails
// and then at most once per reportEvery for the same record, so a client
// hammering a damaged key cannot flood the log; the counter counts them all.
const reportEvery = time.Minute

// integrityFailure counts, logs and returns the failure of the record at
// Pebble key k.
func (s *Store) integrityFailure(k []byte, format string, args ...any) error {
	typ, name, keyID := recordName(k)
	e := &IntegrityError{Type: typ, Name: name, KeyID: keyID, Reason: fmt.Sprintf(format, args...)}
	s.failures.Add(1)
	now := time.Now()
	s.reportMu.Lock()
	last, seen := s.reported[string(k)]
	if !seen || now.Sub(last) >= reportEvery {
		s.reported[string(k)] = now
	}
	s.reportMu.Unlock()
	if !seen || now.Sub(last) >= reportEvery {
		s.log.Error("record failed its integrity check; it is refused until repaired",
			zap.String("type", typ.String()), zap.String("record", name), zap.String("key", keyID), zap.String("reason", e.Reason))
	}
	return e
}

// IntegrityFailures is how many record integrity failures this store has
// detected since it was opened (every detection, including repeats of the
// same record), for metrics.
func (s *Store) IntegrityFailures() uint64 { return s.failures.Load() }

// authState is the authenticator and the namespace: the profile whose main
// key authenticates the records that belong to the AWS API's one key space
// rather than to a key's profile (aliases, tags, index entries, service
// metadata).
type authState struct {
	a         Authenticator
	namespace string
}

// SetAuthenticator gives the store its record-authentication keys and the
// namespace profile (see the package comment). Until it is called, only
// owner metadata can be read or written. Call it once custody is open,
// before anything else uses the store.
func (s *Store) SetAuthenticator(a Authenticator, namespace string) error {
	if a == nil || !validProfile(namespace) {
		return fmt.Errorf("keystore: an authenticator and a namespace profile of 1 to %d characters are required: %w", maxProfileLen, ErrInvalid)
	}
	s.auth.Store(&authState{a: a, namespace: namespace})
	return nil
}

const maxProfileLen = 255 // it is written in one byte

func validProfile(p string) bool { return p != "" && len(p) <= maxProfileLen }

// formatState is the on-disk format and, in a format 1 store being migrated,
// the last Pebble key already rewritten in format 2.
type formatState struct {
	version int
	cursor  string
}

func (s *Store) formatState() *formatState { return s.fstate.Load() }

// legacy reports whether the value at Pebble key k is still in format 1.
func (s *Store) legacy(k []byte) bool {
	st := s.formatState()
	return st.version == 1 && string(k) > st.cursor
}

// check checks the value v stored at Pebble key k and returns its frame. It
// does not check the revision (see verified). A format 1 value is returned
// as its payload for owner metadata and refused for every other type.
func (s *Store) check(k, v []byte) (frame, error) {
	want := typeAt(k)
	if s.legacy(k) {
		if want != RecordOwnerMeta {
			return frame{}, ErrNeedsMigration
		}
		return frame{typ: RecordOwnerMeta, payload: v}, nil
	}
	f, signed, tag, err := parseFrame(v)
	if err != nil {
		return frame{}, s.integrityFailure(k, "%v", err)
	}
	if f.typ != want {
		return frame{}, s.integrityFailure(k, "header says type %s, stored as %s", f.typ, want)
	}
	if f.typ == RecordOwnerMeta {
		if f.profile != "" || f.mkVersion != 0 {
			return frame{}, s.integrityFailure(k, "owner metadata names a profile")
		}
		return f, nil
	}
	st := s.auth.Load()
	if st == nil {
		return frame{}, errNoAuthenticator
	}
	key, err := st.a.RecordKey(f.profile, f.mkVersion)
	if err != nil {
		return frame{}, fmt.Errorf("keystore: record key of profile %q version %d: %w", f.profile, f.mkVersion, err)
	}
	if key == nil {
		return frame{}, s.integrityFailure(k, "authenticated under profile %q main key version %d, which this appliance does not hold", f.profile, f.mkVersion)
	}
	sum := recordTag(key, k, signed)
	ok := hmac.Equal(sum[:], tag)
	clear(key)
	if !ok {
		return frame{}, s.integrityFailure(k, "the authentication tag does not verify")
	}
	return f, nil
}

// verified is check plus the revision check: a record older than a revision
// of it this process has already seen (a replayed copy) fails. Writers
// raise a record's high-water mark only after their batch commits, and
// revisions on disk only grow, so a reader that raced a writer (it read the
// record just before a newer revision landed) re-reads it from the database
// and gets at least the mark; a record that still reads older was rolled
// back. ok is false when the record is gone on that re-read.
func (s *Store) verified(k, v []byte) (f frame, ok bool, err error) {
	return s.verifiedLz(k, v, true)
}

// verifiedLz is verified; lazy false leaves out VerifyStart's comparison
// on first read (for Verify's own pass, which compares every record).
func (s *Store) verifiedLz(k, v []byte, lazy bool) (f frame, ok bool, err error) {
	f, err = s.check(k, v)
	if err != nil {
		return frame{}, false, err
	}
	damaged := s.damagedOnly
	if lazy {
		damaged = s.damagedRecord
	}
	if err := damaged(k); err != nil { // out of date, as Verify found (expect.go)
		return frame{}, false, err
	}
	if s.legacy(k) || f.typ == RecordOwnerMeta || s.raise(k, f.revision) {
		return f, true, nil
	}
	seen := s.mark(k)
	v2, ok, err := get(s.eng, k)
	if err != nil || !ok {
		return frame{}, ok, err
	}
	f, err = s.check(k, v2)
	if err != nil {
		return frame{}, false, err
	}
	if f.revision < seen {
		return frame{}, false, s.integrityFailure(k, "revision %d is older than revision %d read or written before: a replayed copy", f.revision, seen)
	}
	s.raise(k, f.revision)
	return f, true, nil
}

// readRecord reads and checks the record at Pebble key k from r; ok is
// false when it is absent.
func (s *Store) readRecord(r kv.Reader, k []byte) (frame, bool, error) {
	v, ok, err := get(r, k)
	if err != nil || !ok {
		return frame{}, ok, err
	}
	return s.verifiedIn(r, k, v)
}

// mark is the highest revision of the record at k this process has seen
// (read, written, or, for a deleted record, the revision after its last).
func (s *Store) mark(k []byte) uint64 { return s.marks.get(k) }

// raise raises k's mark to rev; it reports false when the mark is already
// above rev.
func (s *Store) raise(k []byte, rev uint64) bool { return s.marks.raise(k, rev) }

// headerRevision is the revision in a value's header, without checking it
// (for deleting or overwriting a record that may be damaged); 0 when it has
// none.
func headerRevision(v []byte) uint64 {
	f, _, _, err := parseFrame(v)
	if err != nil {
		return 0
	}
	return f.revision
}

// writer builds one transaction of record writes and raises the written
// records' marks once it has committed. Reads that the writes depend on go
// through b too, so that the engine checks them at commit (see update).
type writer struct {
	s     *Store
	b     kv.Txn
	marks []pendingMark
	ops   []jop      // for the journal entry (journal.go)
	head  headRecord // the head the journal entry writes
	done  bool       // committed or closed
}

type pendingMark struct {
	k   string
	rev uint64
}

func (s *Store) newWriter(tx kv.Txn) *writer { return &writer{s: s, b: tx} }

// set writes payload as the record of type typ at Pebble key k, replacing a
// record of revision prev (0 when none), and returns the new revision.
// profile is the profile whose main key authenticates it ("" for the
// namespace).
func (w *writer) set(k []byte, typ RecordType, profile string, payload []byte, prev uint64) (uint64, error) {
	v, rev, err := w.s.seal(k, typ, profile, payload, prev)
	if err != nil {
		return 0, err
	}
	if err := w.b.Set(k, v); err != nil {
		return 0, err
	}
	w.marks = append(w.marks, pendingMark{string(k), rev})
	w.note(k, typ, rev, v)
	return rev, nil
}

// del deletes the record at k whose value was v (nil when unknown): its
// mark becomes the revision after its last, so that a replayed copy of the
// deleted record is refused.
func (w *writer) del(k, v []byte) error {
	if err := w.b.Delete(k); err != nil {
		return err
	}
	rev := max(headerRevision(v), w.s.mark(k))
	if rev > 0 {
		w.marks = append(w.marks, pendingMark{string(k), rev + 1})
	}
	w.noteDel(k, rev)
	return nil
}

// delAt deletes the record at k, reading its value for del.
func (w *writer) delAt(k []byte) error {
	v, ok, err := get(w.b, k)
	if err != nil || !ok {
		return err
	}
	return w.del(k, v)
}

// commit commits the transaction durably, with its journal entry and
// head, and raises the marks.
func (w *writer) commit(what string) error {
	seq, err := w.journal()
	if err != nil {
		return err // the deferred close releases the batch
	}
	w.done = true
	if err := w.s.commit(w.b, what); err != nil {
		return err
	}
	w.journaled(seq)
	for _, m := range w.marks {
		w.s.raise([]byte(m.k), m.rev)
	}
	return nil
}

// close discards the transaction unless it was committed; deferring it is
// safe.
func (w *writer) close() {
	if !w.done {
		w.done = true
		w.b.Discard()
	}
}

// seal frames and authenticates a record for engine key k. Its revision is
// one more than the larger of prev and k's mark. The caller is in a write
// transaction, so the active main key version it seals under cannot be
// overtaken by a rotation's re-sealing pass (see Reseal): on Pebble the
// pass waits for the transaction; on etcd, of a write and a pass that both
// read the record the later conflicts and runs again, and a record the
// pass did not list is found by the next pass.
func (s *Store) seal(k []byte, typ RecordType, profile string, payload []byte, prev uint64) ([]byte, uint64, error) {
	rev := max(prev, s.mark(k)) + 1
	if s.legacy(k) { // owner metadata written before the migration reaches it
		if typ != RecordOwnerMeta {
			return nil, 0, ErrNeedsMigration
		}
		return append([]byte(nil), payload...), rev, nil
	}
	v, err := s.sealV2(k, typ, profile, payload, rev)
	return v, rev, err
}

// sealV2 frames and authenticates a format 2 record of revision rev.
func (s *Store) sealV2(k []byte, typ RecordType, profile string, payload []byte, rev uint64) ([]byte, error) {
	f := frame{typ: typ, revision: rev, payload: payload}
	if typ == RecordOwnerMeta {
		return appendFrame(make([]byte, 0, headerFixed+len(payload)), f), nil
	}
	st := s.auth.Load()
	if st == nil {
		return nil, errNoAuthenticator
	}
	if profile == "" {
		profile = st.namespace
	}
	if !validProfile(profile) {
		return nil, fmt.Errorf("keystore: profile name %q: %w", profile, ErrInvalid)
	}
	ver, key, err := st.a.ActiveRecordKey(profile)
	if err != nil {
		return nil, fmt.Errorf("keystore: record key of profile %q: %w", profile, err)
	}
	if key == nil {
		return nil, fmt.Errorf("keystore: profile %q has no main key to authenticate records under: %w", profile, ErrInvalid)
	}
	defer clear(key)
	if ver < 0 || ver > math.MaxUint32 {
		return nil, fmt.Errorf("keystore: record key of profile %q: main key version %d does not fit the record header", profile, ver)
	}
	f.profile, f.mkVersion = profile, ver
	v := appendFrame(make([]byte, 0, headerFixed+len(profile)+len(payload)+tagLen), f)
	return append(v, recordMAC(key, k, v)...), nil
}
