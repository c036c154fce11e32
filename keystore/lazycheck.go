package keystore

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"go.uber.org/zap"

	"payhsm/keystore/kv"
)

// Start-up verification of a large store (issue #20): Verify reads and
// compares every record, about 12 µs each, so a store of a million keys
// would take a minute before the daemon could serve. VerifyStart instead
// checks, before serving, what does not grow with the keys, and leaves the
// rest to the first read of each record and to a full Verify run in the
// background:
//
//   - at start: every writer's head, the seal and shape of every checkpoint
//     bucket and the root over their digests (the buckets are read and
//     hashed, not decoded), the journal entries after the checkpoints, and
//     every record of owner metadata, service metadata and the purge index
//     (compared with the journals, missing ones included), so custody's
//     records are judged before the start goes on and the background purge
//     never acts on a stale entry;
//   - on first read, until the full Verify installs its findings: the record
//     read (or found absent), or, for GetKey and ListTags, every record of
//     the key (its key record, tags and alias index entries as they were at
//     start, and every record of it the journals expect), is compared with
//     the state the journals expect as of the start — the same comparison
//     Verify makes, on the same snapshot — and one out of date is refused
//     like one Verify found;
//   - the full Verify then compares every record, checks the invariants
//     between records, reports, and replaces the findings.
//
// So no record is used before it has been compared with the journal.

// lazyCacheBytes bounds the checked checkpoint buckets kept for the
// comparisons on first read (about 26 bytes a record: the checkpoint of a
// million records is 26 MB).
const lazyCacheBytes = 64 << 20

// lazyWriter is one writer's expected state as of VerifyStart's snapshot:
// its head, its checkpoint's bucket digests (checked against the head's
// root), and its journal entries after the checkpoint, folded.
type lazyWriter struct {
	w       string
	h       headRecord
	digests map[uint32][sha256.Size]byte
	overlay map[string]jop
	byOwner map[string][]string // key id -> the overlay's records of the key
}

func newLazyWriter(w string, h headRecord, ws *writerState) *lazyWriter {
	lw := &lazyWriter{w: w, h: h, digests: ws.digests, overlay: ws.overlay, byOwner: map[string][]string{}}
	for k := range ws.overlay {
		if id := ownerID(k); id != "" {
			lw.byOwner[id] = append(lw.byOwner[id], k)
		}
	}
	return lw
}

type lazyBucket struct {
	w int // index in writers
	i uint32
}

// lazyCheck is VerifyStart's state: the snapshot the comparisons read and
// what has been compared.
type lazyCheck struct {
	writers []*lazyWriter
	checked sync.Map // engine key (string) -> struct{}: compared
	keys    sync.Map // key id -> struct{}: every record of the key compared

	smu    sync.RWMutex // comparisons hold it shared; close exclusively
	snap   kv.View
	closed bool

	bmu     sync.Mutex
	buckets map[lazyBucket][]byte // checked bucket payloads (nil: an absent bucket)
	cached  int                   // their bytes
}

// close releases the snapshot once the comparisons in progress are done.
func (lz *lazyCheck) close() {
	lz.smu.Lock()
	defer lz.smu.Unlock()
	if !lz.closed {
		lz.closed = true
		_ = lz.snap.Close()
	}
}

// bucket returns the payload of writer wi's checkpoint bucket i as of the
// snapshot (nil: absent and empty), checked: its seal, the digest the root
// covers, its shape. Checked payloads are kept (up to lazyCacheBytes), and
// searched without being decoded. The caller holds smu shared.
func (lz *lazyCheck) bucket(s *Store, wi int, i uint32) ([]byte, error) {
	id := lazyBucket{wi, i}
	lz.bmu.Lock()
	p, ok := lz.buckets[id]
	lz.bmu.Unlock()
	if ok {
		return p, nil
	}
	lw := lz.writers[wi]
	k := ckptKey(lw.w, i)
	v, present, err := lz.snap.Get(k)
	if err != nil {
		return nil, storeErr("compare a record with the journal", err)
	}
	want, listed := lw.digests[i]
	reason := ""
	switch {
	case !present && listed:
		reason = "missing"
	case present:
		var f frame
		if f, reason, err = s.openSys(k, v, RecordCheckpoint); err != nil {
			return nil, err
		}
		if reason == "" && (!listed || sha256.Sum256(f.payload) != want) {
			reason = "it is not the bucket the head's root covers"
		}
		if reason == "" {
			if bits, bi, err := scanBucket(f.payload, func([]byte) bool { return false }, nil); err != nil || bits != lw.h.bits || bi != i {
				reason = "malformed"
			}
		}
		p = f.payload
	}
	if reason != "" {
		return nil, fmt.Errorf("keystore: checkpoint bucket %d of %s: %s: %w", i, lw.w, reason, ErrJournalDamaged)
	}
	lz.bmu.Lock()
	if lz.cached+len(p) > lazyCacheBytes {
		clear(lz.buckets)
		lz.cached = 0
	}
	lz.buckets[id] = p
	lz.cached += len(p)
	lz.bmu.Unlock()
	return p, nil
}

// expected is the state the journals expect of the record at key as of
// the snapshot; ok is false when they have none. The caller holds smu
// shared.
func (lz *lazyCheck) expected(s *Store, key string) (o jop, ok bool, err error) {
	for wi, lw := range lz.writers {
		wo, wok := lw.overlay[key]
		if !wok {
			p, err := lz.bucket(s, wi, bucketOf(key, lw.h.bits))
			if err != nil {
				return jop{}, false, err
			}
			if _, _, err := scanBucket(p, func(k []byte) bool { return string(k) == key }, func(f jop) { wo, wok = f, true }); err != nil && p != nil {
				return jop{}, false, err
			}
		}
		if wok && (!ok || laterState(wo, o)) {
			o, ok = wo, true
		}
	}
	return o, ok, nil
}

// lazyRecord compares the record at k, unless it already has been, with the
// state the journals expect (see VerifyStart), and adds it to the damage
// when it is out of date.
func (s *Store) lazyRecord(k []byte) error {
	lz := s.fr.lazy.Load()
	if lz == nil {
		return nil
	}
	if _, done := lz.checked.Load(string(k)); done {
		return nil
	}
	lz.smu.RLock()
	defer lz.smu.RUnlock()
	if lz.closed { // the full Verify's findings are installed
		return nil
	}
	return s.lazyCompare(lz, string(k))
}

// lazyKey compares every record of key id, unless they already have been:
// its key record, its tags and alias index entries as of the snapshot, and
// every record of it the journals expect (its purge index entries are
// compared by VerifyStart).
func (s *Store) lazyKey(id string) error {
	lz := s.fr.lazy.Load()
	if lz == nil {
		return nil
	}
	if _, done := lz.keys.Load(id); done {
		return nil
	}
	lz.smu.RLock()
	defer lz.smu.RUnlock()
	if lz.closed {
		return nil
	}
	recs := map[string]bool{pfxKey + id: true}
	for wi, lw := range lz.writers {
		for _, k := range lw.byOwner[id] {
			recs[k] = true
		}
		p, err := lz.bucket(s, wi, bucketOf(pfxKey+id, lw.h.bits))
		if err != nil {
			return err
		}
		idb := []byte(id)
		mine := func(k []byte) bool { return bytes.Contains(k, idb) && ownerID(string(k)) == id }
		if _, _, err := scanBucket(p, mine, func(o jop) { recs[o.key] = true }); err != nil && p != nil {
			return err
		}
	}
	for _, p := range []string{tagPrefix(id), byKeyPrefix(id)} {
		err := lz.snap.Scan([]byte(p), upperBound(p), func(k, _ []byte) (bool, error) {
			recs[string(k)] = true
			return true, nil
		})
		if err != nil {
			return storeErr("compare key "+id+" with the journal", err)
		}
	}
	for k := range recs {
		if _, done := lz.checked.Load(k); done {
			continue
		}
		if err := s.lazyCompare(lz, k); err != nil {
			return err
		}
	}
	lz.keys.Store(id, struct{}{})
	return nil
}

// lazyCompare compares the record at key as of the snapshot with the state
// the journals expect, as Verify does, and records what it finds (unless
// the record has been rewritten since). The caller holds smu shared.
func (s *Store) lazyCompare(lz *lazyCheck, key string) error {
	v, present, err := lz.snap.Get([]byte(key))
	if err != nil {
		return storeErr("compare a record with the journal", err)
	}
	o, ok, err := lz.expected(s, key)
	if err != nil {
		return err
	}
	var why string
	var mark uint64
	if present {
		why, mark = staleWhy(key, v, o, ok, func(id string) (jop, bool) {
			ko, kok, kerr := lz.expected(s, pfxKey+id)
			if kerr != nil {
				err = kerr
			}
			return ko, kok
		})
		if err != nil {
			return err
		}
	} else {
		why, mark = absentWhy(key, o, ok)
	}
	f := finding{key: key, why: why, present: present}
	if present {
		f.rev = headerRevision(v)
	}
	if err := s.addFinding(lz, f, mark); err != nil {
		return err
	}
	lz.checked.Store(key, struct{}{})
	return nil
}

// addFinding adds f to the damage (when it says why and the record has not
// been rewritten since the snapshot) and raises its mark, unless a full
// Verify has installed its own findings meanwhile.
func (s *Store) addFinding(lz *lazyCheck, f finding, mark uint64) error {
	if f.why == "" && mark == 0 {
		return nil
	}
	s.fr.dmu.Lock()
	defer s.fr.dmu.Unlock()
	if s.fr.lazy.Load() != lz {
		return nil
	}
	if mark > 0 {
		s.raise([]byte(f.key), mark)
	}
	if f.why == "" {
		return nil
	}
	v, ok, err := get(s.eng, []byte(f.key))
	if err != nil {
		return storeErr("compare a record with the journal", err)
	}
	if ok != f.present || (ok && headerRevision(v) != f.rev) {
		return nil // rewritten since
	}
	d := s.fr.damage.Load()
	nd := &damage{recs: map[string]string{}, byKey: map[string]string{}}
	if d != nil {
		for k, why := range d.recs {
			nd.recs[k] = why
		}
		for id, k := range d.byKey {
			nd.byKey[id] = k
		}
	}
	nd.recs[f.key] = f.why
	if id := ownerID(f.key); id != "" {
		if cur, dup := nd.byKey[id]; !dup || f.key < cur {
			nd.byKey[id] = f.key
		}
	}
	s.fr.damage.Store(nd)
	return nil
}

// startChecked selects the records VerifyStart compares before serving:
// metadata (custody's and the ceremonies' among it) and the purge index.
func startChecked(k []byte) bool {
	return bytes.HasPrefix(k, []byte(pfxMeta)) || bytes.HasPrefix(k, []byte(pfxPurge))
}

// VerifyStart is the daemon's start-up check of a store of at least
// eagerBelow records (by its checkpoints' counts); a smaller one, or one
// whose journal cannot be compared with (none, or damaged), gets a full
// Verify. It checks, before it returns, every journal's structure and every
// record of metadata and of the purge index, and arranges for every other
// record to be compared with the journals on its first read (see the top
// of this file); the report covers what it checked (Partial). Run Verify
// next, in the background: until it has installed its findings, reads
// compare as they go.
func (s *Store) VerifyStart(eagerBelow int) (_ *VerifyReport, err error) {
	if s.formatState().version != FormatVersion {
		return nil, ErrNeedsMigration
	}
	if n, err := s.checkpointCount(); err != nil || n < uint64(max(eagerBelow, 0)) {
		if err != nil {
			return nil, err
		}
		return s.Verify()
	}
	rep, done, err := s.verifyStart()
	if err != nil || done {
		return rep, err
	}
	return s.Verify()
}

// checkpointCount is the number of records every writer's head says its
// checkpoint holds.
func (s *Store) checkpointCount() (uint64, error) {
	release, err := s.read()
	if err != nil {
		return 0, err
	}
	defer release()
	var n uint64
	err = s.eachRecord(s.eng, pfxHead, func(k, _ []byte) error {
		h, _, reason, err := s.readHead(s.eng, string(k[len(pfxHead):]))
		if err == nil && reason == "" {
			n += h.count
		}
		return err
	})
	return n, err
}

// verifyStart is VerifyStart's check; done is false when the journal
// cannot be compared with (Verify reports it).
func (s *Store) verifyStart() (_ *VerifyReport, done bool, err error) {
	release, err := s.read()
	if err != nil {
		return nil, false, err
	}
	defer release()
	snap, err := s.eng.View()
	if err != nil {
		return nil, false, storeErr("verify", err)
	}
	kept := false
	defer func() {
		if !kept {
			closeJoin(&err, snap)
		}
	}()
	exp, writers, err := s.expectationsSel(snap, startChecked)
	if err != nil {
		return nil, false, err
	}
	if !exp.compare {
		return nil, false, nil
	}
	lz := &lazyCheck{writers: writers, snap: snap, buckets: map[lazyBucket][]byte{}}
	rep := &VerifyReport{Format: FormatVersion, ByType: map[RecordType]int{}, Partial: true}
	for _, p := range []string{pfxMeta, pfxPurge} {
		err := snap.Scan([]byte(p), upperBound(p), func(key, v []byte) (bool, error) {
			k := bytes.Clone(key)
			typ := typeAt(k)
			rep.Records++
			rep.ByType[typ]++
			f, ok, cerr := s.verifiedLz(k, v, false)
			if why := exp.check(k, v); why != "" && cerr == nil && ok {
				cerr = s.integrityFailure(k, "%s", why)
			}
			if cerr == nil && ok {
				cerr = s.checkPayload(k, f, nil, nil)
			}
			lz.checked.Store(string(k), struct{}{})
			var ie *IntegrityError
			switch {
			case cerr == nil:
			case errors.As(cerr, &ie):
				rep.Failures = append(rep.Failures, Failure{Type: ie.Type, Name: ie.Name, KeyID: ie.KeyID, Reason: ie.Reason})
			default:
				return false, cerr
			}
			return true, nil
		})
		if err != nil {
			return nil, false, storeErr("verify", err)
		}
	}
	for _, m := range exp.missing() {
		k := []byte(m.key)
		lz.checked.Store(m.key, struct{}{})
		ie := &IntegrityError{}
		if errors.As(s.integrityFailure(k, "%s", m.why), &ie) {
			rep.Failures = append(rep.Failures, Failure{Type: ie.Type, Name: ie.Name, KeyID: ie.KeyID, Reason: ie.Reason})
		}
	}
	for k := range exp.state { // present ones compared above, absent ones by missing
		lz.checked.Store(k, struct{}{})
	}
	rep.Failures = append(rep.Failures, exp.problems...)
	rep.Journal = exp.report
	if err := exp.installWith(s, lz); err != nil {
		return nil, false, err
	}
	kept = true
	s.log.Info("keystore checked at start: the journal, metadata and the purge index; every other record is compared with the journal on its first read until a full verify completes",
		zap.Int("records", rep.Records), zap.Int("failures", len(rep.Failures)), zap.Int("writers", rep.Journal.Writers))
	return rep, true, nil
}

// Comparing reports whether VerifyStart's comparisons on first read are on
// (no full Verify has completed since).
func (s *Store) Comparing() bool { return s.fr.lazy.Load() != nil }
