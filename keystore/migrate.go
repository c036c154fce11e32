package keystore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
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
	it, err := s.db.NewIter(nil)
	if err != nil {
		return 0, 0, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		if typeAt(it.Key()) == 0 {
			continue
		}
		total++
		if string(it.Key()) <= cursor {
			done++
		}
	}
	return total, done, errors.Join(it.Error(), it.Close())
}

// migrateNext rewrites the next batch after the cursor; more is false once
// no record is left.
func (s *Store) migrateNext(rep *MigrationReport) (n int, more bool, err error) {
	release, err := s.write()
	if err != nil {
		return 0, false, err
	}
	defer release()
	cursor := s.formatState().cursor
	opts := &pebble.IterOptions{}
	if cursor != "" {
		opts.LowerBound = append([]byte(cursor), 0)
	}
	it, err := s.db.NewIter(opts)
	if err != nil {
		return 0, false, err
	}
	w := s.newWriter()
	defer w.close()
	var last []byte
	for ok := it.First(); ok && n < migrateBatch; ok = it.Next() {
		k := append([]byte(nil), it.Key()...)
		if typeAt(k) == 0 {
			continue
		}
		v, verr := it.ValueAndErr()
		if verr != nil {
			return 0, false, errors.Join(verr, it.Close())
		}
		last = k
		n++
		typ, profile, payload, rev, cerr := convertV1(k, v)
		if cerr != nil {
			_, name, keyID := recordName(k)
			s.log.Error("format 1 record does not decode; left as it is, it will fail its integrity check",
				zap.String("type", typeAt(k).String()), zap.String("record", name), zap.String("key", keyID), zap.String("reason", cerr.Error()))
			rep.Left++
			continue
		}
		sv, serr := s.sealV2(k, typ, profile, payload, rev)
		if errors.Is(serr, ErrInvalid) && typ == RecordKey {
			_, name, _ := recordName(k)
			s.log.Error("format 1 key record names a profile without a main key on this appliance; left as it is, it will fail its integrity check",
				zap.String("key", name), zap.String("profile", profile))
			rep.Left++
			continue
		}
		if serr != nil {
			return 0, false, errors.Join(fmt.Errorf("keystore: migrate %s: %w", typeAt(k), serr), it.Close())
		}
		_ = w.b.Set(k, sv, nil)
		rep.Rewritten++
	}
	more = it.Valid()
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, false, err
	}
	if n == 0 {
		return 0, false, nil
	}
	_ = w.b.Set(migrationKey, last, nil)
	if err := w.commit("migrate to format 2"); err != nil {
		return 0, false, err
	}
	s.fstate.Store(&formatState{version: 1, cursor: string(last)})
	return n, more, nil
}

// finishMigration sets the format record to 2 and drops the cursor.
func (s *Store) finishMigration() error {
	release, err := s.write()
	if err != nil {
		return err
	}
	defer release()
	rec, _ := json.Marshal(formatRecord{Format: formatName, Version: FormatVersion})
	b := s.db.NewBatch()
	_ = b.Set(formatKey, rec, nil)
	_ = b.Delete(migrationKey, nil)
	if err := s.commit(b, "finish migration"); err != nil {
		return err
	}
	s.fstate.Store(&formatState{version: FormatVersion})
	return nil
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
