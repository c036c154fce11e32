package keystore

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// The journal: what every write batch appends so that the expected revision
// of every record survives a restart (see "Rollback" in the package comment
// and freshness.go). Its records live under "sys/", outside the record
// space, and are authenticated like every record (frame.go: the same header
// and HMAC-SHA256 over the Pebble key, header and payload) under the
// namespace profile's record key:
//
//	"sys/head/" + writer                 the writer's head: last sequence number, checkpoint, root
//	"sys/j/" + writer + "/" + be64(seq)  journal entry seq: the records batch seq wrote or deleted
//	"sys/ckpt/" + writer + "/" + be32(b) checkpoint bucket b: the expected state of its records
//
// A writer is one appliance (one node once the store is shared): its journal
// and head are its own, so no key is written by every node.

// Freshness record types (their records are under "sys/").
const (
	RecordJournal     RecordType = 'J' // "sys/j/" journal entry
	RecordJournalHead RecordType = 'H' // "sys/head/" a writer's journal head
	RecordCheckpoint  RecordType = 'C' // "sys/ckpt/" checkpoint bucket
)

const (
	pfxJournal = "sys/j/"
	pfxHead    = "sys/head/"
	pfxCkpt    = "sys/ckpt/"
)

func journalPrefix(w string) string { return pfxJournal + w + "/" }
func ckptPrefix(w string) string    { return pfxCkpt + w + "/" }
func headKey(w string) []byte       { return []byte(pfxHead + w) }
func journalKey(w string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(journalPrefix(w)), seq)
}
func ckptKey(w string, b uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte(ckptPrefix(w)), b)
}

// maxWriterLen bounds a writer id.
const maxWriterLen = 64

// ValidWriter reports whether w can name a journal writer: 1 to 64
// characters of [a-z0-9-].
func ValidWriter(w string) bool {
	if w == "" || len(w) > maxWriterLen {
		return false
	}
	for i := 0; i < len(w); i++ {
		if c := w[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// jop is one record's state in a journal entry or a checkpoint: written at
// revision rev, or deleted when its last revision was rev. Owner metadata,
// whose revision the store does not authenticate, also carries the SHA-256
// of its stored value.
type jop struct {
	key    string
	rev    uint64
	del    bool
	digest *[sha256.Size]byte
}

// Flags of an encoded jop.
const (
	opDeleted = 1 << 0
	opDigest  = 1 << 1
)

// appendOp encodes o: flags, key length (uvarint), key, revision (uvarint),
// and the digest when flagged.
func appendOp(dst []byte, o jop) []byte {
	var fl byte
	if o.del {
		fl |= opDeleted
	}
	if o.digest != nil {
		fl |= opDigest
	}
	dst = append(dst, fl)
	dst = binary.AppendUvarint(dst, uint64(len(o.key)))
	dst = append(dst, o.key...)
	dst = binary.AppendUvarint(dst, o.rev)
	if o.digest != nil {
		dst = append(dst, o.digest[:]...)
	}
	return dst
}

// readOp decodes one jop from b and returns the rest.
func readOp(b []byte) (jop, []byte, error) {
	bad := errors.New("malformed entry")
	if len(b) < 1 || b[0]&^(opDeleted|opDigest) != 0 {
		return jop{}, nil, bad
	}
	fl := b[0]
	b = b[1:]
	n, m := binary.Uvarint(b)
	if m <= 0 || n == 0 || n > maxRecordKeyLen || int(n) > len(b)-m {
		return jop{}, nil, bad
	}
	end := m + int(n)
	o := jop{key: string(b[m:end]), del: fl&opDeleted != 0}
	b = b[end:]
	if o.rev, m = binary.Uvarint(b); m <= 0 {
		return jop{}, nil, bad
	}
	b = b[m:]
	if fl&opDigest != 0 {
		if len(b) < sha256.Size {
			return jop{}, nil, bad
		}
		o.digest = new([sha256.Size]byte)
		copy(o.digest[:], b)
		b = b[sha256.Size:]
	}
	return o, b, nil
}

// maxRecordKeyLen bounds the Pebble key of a record (a prefix, a key id and
// a name of at most maxNameLen bytes).
const maxRecordKeyLen = maxNameLen + 64

// opsVersion is the version byte of a journal entry's and a checkpoint
// bucket's payload.
const opsVersion = 1

// encodeOps is a journal entry's payload: the version and the ops.
func encodeOps(ops []jop) []byte {
	b := []byte{opsVersion}
	b = binary.AppendUvarint(b, uint64(len(ops)))
	for _, o := range ops {
		b = appendOp(b, o)
	}
	return b
}

func decodeOps(b []byte) ([]jop, error) {
	if len(b) < 1 || b[0] != opsVersion {
		return nil, errors.New("unknown entry version")
	}
	n, m := binary.Uvarint(b[1:])
	if m <= 0 || n > uint64(len(b)) {
		return nil, errors.New("malformed entry count")
	}
	b = b[1+m:]
	ops := make([]jop, 0, n)
	for range n {
		o, rest, err := readOp(b)
		if err != nil {
			return nil, err
		}
		ops, b = append(ops, o), rest
	}
	if len(b) != 0 {
		return nil, errors.New("trailing bytes")
	}
	return ops, nil
}

// headRecord is a writer's journal head: the last sequence number written,
// the one the checkpoint covers (entries after it are in the journal), the
// checkpoint's bucket bits and entry count, and its root (rootOf).
type headRecord struct {
	lastSeq, ckptSeq uint64
	bits             uint8
	count            uint64
	root             [sha256.Size]byte
}

const headLen = 1 + 8 + 8 + 1 + 8 + sha256.Size

func (h headRecord) encode() []byte {
	b := make([]byte, 0, headLen)
	b = append(b, opsVersion)
	b = binary.BigEndian.AppendUint64(b, h.lastSeq)
	b = binary.BigEndian.AppendUint64(b, h.ckptSeq)
	b = append(b, h.bits)
	b = binary.BigEndian.AppendUint64(b, h.count)
	return append(b, h.root[:]...)
}

func decodeHead(b []byte) (headRecord, error) {
	if len(b) != headLen || b[0] != opsVersion {
		return headRecord{}, errors.New("malformed head")
	}
	h := headRecord{lastSeq: binary.BigEndian.Uint64(b[1:]), ckptSeq: binary.BigEndian.Uint64(b[9:]), bits: b[17],
		count: binary.BigEndian.Uint64(b[18:])}
	copy(h.root[:], b[26:])
	if h.ckptSeq > h.lastSeq || h.bits < minBucketBits || h.bits > maxBucketBits {
		return headRecord{}, errors.New("inconsistent head")
	}
	return h, nil
}

// sealSys frames and authenticates a freshness record under the namespace
// profile's active record key; rev is its sequence number.
func (s *Store) sealSys(k []byte, typ RecordType, payload []byte, rev uint64) ([]byte, error) {
	return s.sealV2(k, typ, "", payload, rev)
}

// openSys checks a freshness record. A failure is returned as reason (the
// record is damaged); err is for anything else (no authenticator, a token
// error).
func (s *Store) openSys(k, v []byte, typ RecordType) (f frame, reason string, err error) {
	f, signed, tag, perr := parseFrame(v)
	if perr != nil {
		return frame{}, perr.Error(), nil
	}
	if f.typ != typ {
		return frame{}, fmt.Sprintf("header says type %s, stored as %s", f.typ, typ), nil
	}
	st := s.auth.Load()
	if st == nil {
		return frame{}, "", errNoAuthenticator
	}
	key, err := st.a.RecordKey(f.profile, f.mkVersion)
	if err != nil {
		return frame{}, "", fmt.Errorf("keystore: record key of profile %q version %d: %w", f.profile, f.mkVersion, err)
	}
	if key == nil {
		return frame{}, fmt.Sprintf("authenticated under profile %q main key version %d, which this appliance does not hold", f.profile, f.mkVersion), nil
	}
	ok := hmac.Equal(recordMAC(key, k, signed), tag)
	clear(key)
	if !ok {
		return frame{}, "the authentication tag does not verify", nil
	}
	return f, "", nil
}

// The writer's part: every write transaction notes what it writes and
// deletes, and commit adds one journal entry and the new head to the
// transaction (see writer in frame.go). A transaction that writes no record (a format 1
// migration's, whose records the first checkpoint covers) adds nothing.

// note records that the batch writes value v of type typ at k, revision rev.
func (w *writer) note(k []byte, typ RecordType, rev uint64, v []byte) {
	if !w.s.fr.on.Load() {
		return
	}
	o := jop{key: string(k), rev: rev}
	if typ == RecordOwnerMeta {
		d := sha256.Sum256(v)
		o.digest = &d
	}
	w.ops = append(w.ops, o)
}

// noteDel records that the batch deletes the record at k, whose last
// revision was rev (0 when unknown).
func (w *writer) noteDel(k []byte, rev uint64) {
	if w.s.fr.on.Load() {
		w.ops = append(w.ops, jop{key: string(k), rev: rev, del: true})
	}
}

// journal adds the transaction's journal entry and the writer's new head
// to the transaction; it returns the entry's sequence number, 0 when there
// is none. The head is read inside the transaction: the entry's sequence
// number follows the head the transaction commits over (two transactions
// of this process that would take the same number conflict on the head, and
// one runs again; on Pebble they never run at once). The head is this
// writer's own key, so writers on different appliances sharing an etcd
// cluster never touch one another's.
func (w *writer) journal() (uint64, error) {
	fr := &w.s.fr
	if !fr.on.Load() || len(w.ops) == 0 {
		return 0, nil
	}
	txn := txnSerial(w.b)
	h, err := w.currentHead(fr, txn)
	if err != nil {
		return 0, err
	}
	seq := h.lastSeq + 1
	jk := journalKey(fr.writer, seq)
	jv, err := w.s.sealSys(jk, RecordJournal, encodeOps(w.ops), seq)
	if err != nil {
		return 0, fmt.Errorf("keystore: journal entry: %w", err)
	}
	h.lastSeq = seq
	hk := headKey(fr.writer)
	hv, err := w.s.sealSys(hk, RecordJournalHead, h.encode(), seq)
	if err != nil {
		return 0, fmt.Errorf("keystore: journal head: %w", err)
	}
	if err := w.b.Set(jk, jv); err != nil {
		return 0, err
	}
	if err := w.b.Set(hk, hv); err != nil {
		return 0, err
	}
	fr.sealed.Store(&sealedHead{w: fr.writer, h: h, v: hv, txn: txn})
	w.head = h
	return seq, nil
}

// currentHead is writer fr.writer's head as transaction txn (txnSerial)
// finds it. When the transaction just before this one wrote the head, on an
// engine where this one would read exactly that back, it is taken from
// memory instead of a read (a memtable seek, about 4% of a CreateKey's
// CPU); any other transaction in between (a checkpoint, a re-baseline, a
// write without journal entry) breaks the run, and the head is read and
// checked again.
func (w *writer) currentHead(fr *freshness, txn uint64) (headRecord, error) {
	if c := fr.sealed.Load(); txn > 1 && c != nil && c.txn == txn-1 && c.w == fr.writer {
		return c.h, nil
	}
	h, found, reason, err := w.s.readHead(w.b, fr.writer)
	if err != nil {
		return headRecord{}, fmt.Errorf("keystore: journal head: %w", err)
	}
	if !found || reason != "" {
		if reason == "" {
			reason = "missing"
		}
		return headRecord{}, fmt.Errorf("keystore: the journal head of %s: %s: %w", fr.writer, reason, ErrJournalDamaged)
	}
	return h, nil
}

// journaled records that entry seq committed (with head w.head).
func (w *writer) journaled(seq uint64) {
	if seq == 0 {
		return
	}
	fr := &w.s.fr
	fr.mu.Lock()
	if seq > fr.head.lastSeq {
		fr.head = w.head
	}
	fr.pending++
	if fr.mem != nil && len(fr.mem) < memEntriesMax {
		fr.mem[seq] = w.ops
	}
	kick := fr.pending >= fr.every
	fr.mu.Unlock()
	for cur := fr.seq.Load(); seq > cur && !fr.seq.CompareAndSwap(cur, seq); cur = fr.seq.Load() {
	}
	w.s.repaired(w.ops)
	if kick {
		fr.kick()
	}
}

// sortOps sorts ops by key.
func sortOps(ops []jop) {
	sort.Slice(ops, func(i, j int) bool { return ops[i].key < ops[j].key })
}

// ownerID is the key id a record belongs to (its key record, tags, alias
// index entries and purge index entry), or "" for a record of no key.
func ownerID(k string) string {
	switch {
	case strings.HasPrefix(k, pfxKey):
		return k[len(pfxKey):]
	case strings.HasPrefix(k, pfxTag), strings.HasPrefix(k, pfxByKey):
		if len(k) > len(pfxTag)+IDLen && k[len(pfxTag)+IDLen] == '/' {
			return k[len(pfxTag) : len(pfxTag)+IDLen]
		}
	case strings.HasPrefix(k, pfxPurge):
		if len(k) == len(pfxPurge)+8+IDLen {
			return k[len(pfxPurge)+8:]
		}
	}
	return ""
}
