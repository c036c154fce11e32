package keystore

import (
	"bytes"
	"errors"
	"fmt"

	"go.uber.org/zap"
)

// Failure is one record that failed Verify.
type Failure struct {
	Type   RecordType
	Name   string // see IntegrityError.Name
	KeyID  string // the key the record belongs to, if any
	Reason string
}

// VerifyReport is the result of Verify.
type VerifyReport struct {
	Format   int
	Records  int                // records checked
	ByType   map[RecordType]int // records checked by type
	Failures []Failure          // records that failed on their own, in Pebble key order, then records missing, then disagreements between records, then the journal's own failures
	Journal  JournalReport      // what the rollback check covered (expect.go)
	// Partial: VerifyStart checked only the journals, metadata and the
	// purge index (lazycheck.go); the other records are compared on first
	// read until a full Verify completes.
	Partial bool
}

// Verify checks every record in the store: its authentication (owner
// metadata excepted), its revision against what this process has seen
// before, that its payload decodes, and the invariants between records (an
// alias and its index entry agree, tags and index entries belong to keys
// that exist, a key pending deletion has its purge index entry and the
// entry its key). A record whose counterpart failed is not reported again
// for the disagreement. It loads every record's revision as the high-water
// mark later reads are held to, so the daemon calls it at start. Failures
// are logged and counted like any other integrity failure. A format 1
// store is not verified (ErrNeedsMigration).
func (s *Store) Verify() (_ *VerifyReport, err error) {
	if s.formatState().version != FormatVersion {
		return nil, ErrNeedsMigration
	}
	release, err := s.read()
	if err != nil {
		return nil, err
	}
	defer release()
	snap, err := s.eng.View()
	if err != nil {
		return nil, storeErr("verify", err)
	}
	defer closeJoin(&err, snap)

	rep := &VerifyReport{Format: FormatVersion, ByType: map[RecordType]int{}}
	exp, err := s.expectations(snap) // the state the journals expect of every record
	if err != nil {
		return nil, err
	}
	failed := map[string]bool{} // Pebble keys that failed on their own
	fail := func(err error, k []byte) error {
		var ie *IntegrityError
		if !errors.As(err, &ie) {
			return err
		}
		failed[string(k)] = true
		rep.Failures = append(rep.Failures, Failure{Type: ie.Type, Name: ie.Name, KeyID: ie.KeyID, Reason: ie.Reason})
		return nil
	}
	var (
		keys    = map[string]*Key{}   // key id -> its record, for keys that passed
		aliases = map[string]string{} // alias name -> key id, for aliases that passed
		present = map[string]bool{}   // Pebble keys of every record, passed or not
		order   [][]byte
	)
	err = snap.Scan(nil, nil, func(key, v []byte) (bool, error) {
		k := append([]byte(nil), key...)
		typ := typeAt(k)
		if typ == 0 {
			if !bytes.HasPrefix(k, []byte("sys/")) {
				rep.Records++
				_ = fail(s.integrityFailure(k, "a record outside the store's layout"), k)
			}
			return true, nil
		}
		rep.Records++
		rep.ByType[typ]++
		present[string(k)] = true
		order = append(order, k)
		if rep.Records%4096 == 0 && s.closing.Load() {
			return false, ErrClosed // Close waits for this read section: a large store's pass stops
		}
		f, ok, cerr := s.verifiedLz(k, v, false)
		if why := exp.check(k, v); why != "" && cerr == nil && ok {
			cerr = s.integrityFailure(k, "%s", why)
		}
		if cerr == nil && ok {
			cerr = s.checkPayload(k, f, keys, aliases)
		}
		if cerr != nil {
			if err := fail(cerr, k); err != nil {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, storeErr("verify", err)
	}
	// Records the journals expect that are gone: each fails on its own, and
	// counts as present for the invariants (a key's tags are not reported
	// again because its key record is missing).
	for _, m := range exp.missing() {
		k := []byte(m.key)
		present[m.key] = true
		_ = fail(s.integrityFailure(k, "%s", m.why), k)
	}

	// Invariants between records that each passed.
	for _, k := range order {
		if failed[string(k)] {
			continue
		}
		var why string
		switch typeAt(k) {
		case RecordAliasIndex, RecordTag:
			_, name, keyID := recordName(k)
			if !present[string(keyKey(keyID))] {
				why = "it belongs to a key that does not exist"
			} else if key := keys[keyID]; key != nil && key.bare {
				why = "its key's record says the key has no tags or aliases"
			} else if typeAt(k) == RecordAliasIndex {
				alias := name[len(keyID)+1:]
				target, ok := aliases[alias]
				if !failed[string(aliasKey(alias))] && (!ok || target != keyID) {
					why = "its alias does not name this key"
				}
			}
		case RecordAlias:
			name := string(k[len(pfxAlias):])
			if id := aliases[name]; id != "" && !failed[string(byKeyKey(id, name))] {
				if !present[string(byKeyKey(id, name))] {
					why = "the alias index has no entry for it"
				} else if !present[string(keyKey(id))] {
					why = "it names a key that does not exist"
				}
			}
		case RecordPurgeIndex:
			_, _, keyID := recordName(k)
			if kk := keyKey(keyID); !failed[string(kk)] {
				if key := keys[keyID]; key == nil || !bytes.Equal(purgeEntry(key), k) {
					why = "it disagrees with its key record (missing, not pending deletion, or another deadline)"
				}
			}
		case RecordKey:
			if p := purgeEntry(keys[string(k[len(pfxKey):])]); p != nil && !present[string(p)] {
				why = "it is pending deletion but the purge index has no entry for it"
			}
		}
		if why != "" {
			_ = fail(s.integrityFailure(k, "%s", why), k)
		}
	}
	rep.Failures = append(rep.Failures, exp.problems...)
	rep.Journal = exp.report
	if err := exp.install(s); err != nil {
		return nil, err
	}
	s.log.Info("keystore verified", zap.Int("records", rep.Records), zap.Int("failures", len(rep.Failures)),
		zap.Bool("rollbackChecked", rep.Journal.Checked), zap.Bool("journalDamaged", rep.Journal.Damaged))
	return rep, nil
}

// checkPayload checks that a record that passed its integrity check holds
// what its type says, and collects keys and aliases for the invariants.
func (s *Store) checkPayload(k []byte, f frame, keys map[string]*Key, aliases map[string]string) error {
	switch f.typ {
	case RecordKey:
		id := string(k[len(pfxKey):])
		if !ValidID(id) {
			return s.integrityFailure(k, "not a key id")
		}
		key, err := s.keyFromFrame(k, id, f)
		if err != nil {
			return err
		}
		keys[id] = key
	case RecordAlias:
		name := string(k[len(pfxAlias):])
		a, err := decodeAlias(name, f.payload)
		if err != nil {
			return s.integrityFailure(k, "the authenticated payload is not a key id")
		}
		aliases[name] = a.KeyID
	case RecordAliasIndex, RecordPurgeIndex:
		if len(f.payload) != 0 {
			return s.integrityFailure(k, "an index entry carries a payload")
		}
		if _, name, keyID := recordName(k); !ValidID(keyID) || (f.typ == RecordAliasIndex && len(name) <= IDLen+1) {
			return s.integrityFailure(k, "malformed index entry")
		}
	case RecordTag:
		if _, name, keyID := recordName(k); !ValidID(keyID) || len(name) <= IDLen+1 {
			return s.integrityFailure(k, "malformed tag record")
		}
	}
	return nil
}

// Reseal re-authenticates every record of profile that is not under its
// active main key version, in batches, each one write transaction
// committed durably; it returns how many records it rewrote. A profile main
// key rotation calls it (with the key blocks' re-wrap) until a pass rewrites
// nothing, before it retires the old version: records still under a retired
// version would fail their integrity check. A record that fails its check is
// left as it is (and reported).
func (s *Store) Reseal(profile string) (int, error) {
	st := s.auth.Load()
	if st == nil {
		return 0, errNoAuthenticator
	}
	if s.Comparing() {
		// VerifyStart's comparisons read the checkpoint as of the start,
		// sealed under the versions of then: finish the full pass before a
		// rotation can retire one.
		if _, err := s.Verify(); err != nil {
			return 0, err
		}
	}
	ver, key, err := st.a.ActiveRecordKey(profile)
	if err != nil {
		return 0, err
	}
	if key == nil {
		return 0, fmt.Errorf("keystore: reseal: profile %q has no main key: %w", profile, ErrNotFound)
	}
	clear(key)
	stale, err := s.staleRecords(profile, ver)
	if err != nil {
		return 0, err
	}
	n := 0
	for len(stale) > 0 {
		batch := stale[:min(len(stale), s.batchSize())]
		stale = stale[len(batch):]
		m, err := s.resealBatch(profile, batch)
		n += m
		if err != nil {
			return n, err
		}
	}
	m, err := s.resealJournal(profile) // the journal's own records (freshness.go)
	n += m
	if err != nil {
		return n, err
	}
	if n > 0 {
		s.log.Info("records re-sealed under the active main key", zap.String("profile", profile), zap.Int("records", n))
	}
	return n, nil
}

// staleRecords lists the records of profile under another version than ver.
func (s *Store) staleRecords(profile string, ver int) ([][]byte, error) {
	release, err := s.read()
	if err != nil {
		return nil, err
	}
	defer release()
	var out [][]byte
	err = s.eng.Scan(nil, nil, func(k, v []byte) (bool, error) {
		if t := typeAt(k); t == 0 || t == RecordOwnerMeta {
			return true, nil
		}
		if f, _, _, err := parseFrame(v); err == nil && f.profile == profile && f.mkVersion != ver {
			out = append(out, append([]byte(nil), k...))
		}
		return true, nil
	})
	return out, err
}

// resealBatch re-seals the listed records that still need it, in one write
// transaction.
func (s *Store) resealBatch(profile string, keys [][]byte) (int, error) {
	n := 0
	err := s.update("re-seal records of profile "+profile, func(w *writer) error {
		ver, key, err := s.auth.Load().a.ActiveRecordKey(profile)
		if err != nil {
			return err
		}
		clear(key)
		n = 0
		for _, k := range keys {
			f, ok, err := s.readRecord(w.b, k)
			if errors.Is(err, ErrIntegrity) || (err == nil && !ok) {
				continue
			}
			if err != nil {
				return err
			}
			if f.profile != profile || f.mkVersion == ver {
				continue
			}
			if _, err := w.set(k, f.typ, f.profile, f.payload, f.revision); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
