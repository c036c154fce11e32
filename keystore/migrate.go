package keystore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"go.uber.org/zap"
)

// Migration from format 1 (records as plain JSON or raw bytes, not
// authenticated) to format 2 (every record framed and authenticated; see
// frame.go). Migrate walks the records in Pebble key order and rewrites
// them in batches of migrateBatch; each batch also records the last key it
// rewrote ("sys/migration"), and commits durably and atomically, so a crash
// at any point leaves every record either in its old form (after the
// cursor) or in its new one (up to it), never neither, and the next Migrate
// resumes after the cursor. Reads and writes during the migration use the
// cursor to tell the two forms apart. When every record is rewritten, one
// last batch sets the format record to 2 and removes the cursor. Running
// Migrate on a format 2 store does nothing.
//
// What the migration cannot do: format 1 records carry no authentication,
// so it authenticates whatever they say. An edit made to a format 1 store
// before it is upgraded is authenticated with it (except that a key record
// that disagrees with its key block's authenticated header is still refused
// by the operations layer whenever the key is loaded). A record that does
// not decode as format 1 is not rewritten: it stays as it is and fails its
// integrity check in format 2, loudly.

// migrateBatch is how many records one migration batch rewrites.
const migrateBatch = 64

// MigrationReport describes a finished migration.
type MigrationReport struct {
	Records   int // records in the store
	Rewritten int // records rewritten in format 2 by this run
	Resumed   int // records an earlier, interrupted run had rewritten
	Left      int // records left as they were (they did not decode as format 1, or name a profile without a main key); they fail their integrity check
}

// Migrate upgrades a format 1 store to format 2 (see above). It needs the
// authenticator (SetAuthenticator); progress, if not nil, is called after
// every batch with the records done so far and the total. It returns nil and
// no error when the store is already format 2.
func (s *Store) Migrate(progress func(done, total int)) (*MigrationReport, error) {
	if s.formatState().version == FormatVersion {
		return nil, nil
	}
	st := s.auth.Load()
	if st == nil {
		return nil, errNoAuthenticator
	}
	if _, key, err := st.a.ActiveRecordKey(st.namespace); err != nil || key == nil {
		return nil, fmt.Errorf("keystore: cannot migrate: the namespace profile %q has no main key to authenticate records under (%v)", st.namespace, err)
	} else {
		clear(key)
	}
	total, resumed, err := s.migrationCounts()
	if err != nil {
		return nil, err
	}
	rep := &MigrationReport{Records: total, Resumed: resumed}
	if resumed > 0 {
		s.log.Info("keystore migration resumed", zap.Int("done", resumed), zap.Int("records", total))
	} else {
		s.log.Info("keystore migration started", zap.Int("fromFormat", 1), zap.Int("toFormat", FormatVersion), zap.Int("records", total))
	}
	for {
		n, more, err := s.migrateNext(rep)
		if err != nil {
			return rep, err
		}
		if progress != nil && n > 0 {
			progress(rep.Resumed+rep.Rewritten+rep.Left, total)
		}
		if !more {
			break
		}
	}
	if err := s.finishMigration(); err != nil {
		return rep, err
	}
	s.log.Info("keystore migration finished", zap.Int("records", total), zap.Int("rewritten", rep.Rewritten),
		zap.Int("resumed", rep.Resumed), zap.Int("left", rep.Left))
	return rep, nil
}

// migrationCounts counts the records, and those before the cursor.
func (s *Store) migrationCounts() (total, done int, err error) {
	release, err := s.read()
	if err != nil {
		return 0, 0, err
	}
	defer release()
	cursor := s.formatState().cursor
	err = s.eng.Scan(nil, nil, func(k, _ []byte) (bool, error) {
		if typeAt(k) == 0 {
			return true, nil
		}
		total++
		if string(k) <= cursor {
			done++
		}
		return true, nil
	})
	return total, done, err
}

// migrateNext rewrites the next batch after the cursor; more is false once
// no record is left.
func (s *Store) migrateNext(rep *MigrationReport) (n int, more bool, err error) {
	var (
		last     []byte
		rewrote  int
		left     int
		batchMax = s.batchSize()
	)
	err = s.update("migrate to format 2", func(w *writer) error {
		n, more, last, rewrote, left = 0, false, nil, 0, 0
		cursor := s.formatState().cursor
		var lo []byte
		if cursor != "" {
			lo = append([]byte(cursor), 0)
		}
		err := w.b.Scan(lo, nil, func(key, v []byte) (bool, error) {
			k := append([]byte(nil), key...)
			if typeAt(k) == 0 {
				return true, nil
			}
			if n == batchMax {
				more = true
				return false, nil
			}
			last = k
			n++
			typ, profile, payload, rev, cerr := convertV1(k, v)
			if cerr != nil {
				_, name, keyID := recordName(k)
				s.log.Error("format 1 record does not decode; left as it is, it will fail its integrity check",
					zap.String("type", typeAt(k).String()), zap.String("record", name), zap.String("key", keyID), zap.String("reason", cerr.Error()))
				left++
				return true, nil
			}
			sv, serr := s.sealV2(k, typ, profile, payload, rev)
			if errors.Is(serr, ErrInvalid) && typ == RecordKey {
				_, name, _ := recordName(k)
				s.log.Error("format 1 key record names a profile without a main key on this appliance; left as it is, it will fail its integrity check",
					zap.String("key", name), zap.String("profile", profile))
				left++
				return true, nil
			}
			if serr != nil {
				return false, fmt.Errorf("keystore: migrate %s: %w", typeAt(k), serr)
			}
			rewrote++
			return true, w.b.Set(k, sv)
		})
		if err != nil || n == 0 {
			return err
		}
		return w.b.Set(migrationKey, last)
	})
	if err != nil || n == 0 {
		return 0, false, err
	}
	rep.Rewritten += rewrote
	rep.Left += left
	s.fstate.Store(&formatState{version: 1, cursor: string(last)})
	return n, more, nil
}

// finishMigration sets the format record to 2 and drops the cursor.
func (s *Store) finishMigration() error {
	rec, _ := json.Marshal(formatRecord{Format: formatName, Version: FormatVersion})
	err := s.update("finish migration", func(w *writer) error {
		return errors.Join(w.b.Set(formatKey, rec), w.b.Delete(migrationKey))
	})
	if err != nil {
		return err
	}
	s.fstate.Store(&formatState{version: FormatVersion})
	return nil
}

// batchSize is how many records one migration or re-sealing transaction
// rewrites: migrateBatch, or fewer when the engine limits a transaction to
// fewer operations (each record is one read checked at commit and one write).
func (s *Store) batchSize() int {
	if l := s.eng.Limits().MaxOps; l > 0 && l-1 < migrateBatch {
		return max(l-1, 1)
	}
	return migrateBatch
}

// convertV1 decodes the format 1 value v at Pebble key k into what its
// format 2 record holds.
func convertV1(k, v []byte) (typ RecordType, profile string, payload []byte, rev uint64, err error) {
	typ = typeAt(k)
	rev = 1
	switch typ {
	case RecordKey:
		id := string(k[len(pfxKey):])
		key, err := decodeKeyV1(id, v)
		if err != nil {
			return 0, "", nil, 0, err
		}
		if !validProfile(key.Profile) {
			return 0, "", nil, 0, errors.New("no profile")
		}
		if payload, err = encodeKey(key); err != nil {
			return 0, "", nil, 0, err
		}
		return typ, key.Profile, payload, max(key.Revision, 1), nil
	case RecordAlias:
		a, err := decodeAliasV1(string(k[len(pfxAlias):]), v)
		if err != nil {
			return 0, "", nil, 0, err
		}
		return typ, "", encodeAlias(a.KeyID), rev, nil
	case RecordAliasIndex, RecordPurgeIndex:
		if len(v) != 0 {
			return 0, "", nil, 0, errors.New("an index entry with a value")
		}
		return typ, "", nil, rev, nil
	case RecordTag, RecordMeta, RecordOwnerMeta:
		return typ, "", bytes.Clone(v), rev, nil
	}
	return 0, "", nil, 0, errors.New("not a record")
}
