package keystore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// defaultPageSize is used when a listing's max is <= 0.
const defaultPageSize = 50

// checkKey validates what the store relies on: the id's shape, and UTF-8
// strings (encoding/json would silently replace invalid bytes, so a record
// would not read back as written).
func checkKey(k *Key) error {
	if k == nil || !ValidID(k.ID) {
		return fmt.Errorf("key id must be %d characters of [a-z0-9]: %w", IDLen, ErrInvalid)
	}
	for _, s := range []string{k.Profile, string(k.Attributes.Usage), string(k.Attributes.Class), string(k.Attributes.Algorithm),
		string(k.DeriveKeyUsage), k.KCV, string(k.KCVAlgorithm), k.State, k.Origin, k.KeyBlock} {
		if !utf8.ValidString(s) {
			return fmt.Errorf("key %s: a text field is not valid UTF-8: %w", k.ID, ErrInvalid)
		}
	}
	return nil
}

// CreateKey stores k (with Revision set to 1), its tags, and, when alias is
// not "", a new alias naming it, in one durable batch. It returns ErrExists
// (wrapped with what exists) when the id or the alias is taken. Duplicate tag
// keys keep the last value.
func (s *Store) CreateKey(k *Key, tags []Tag, alias string) error {
	if err := checkKey(k); err != nil {
		return fmt.Errorf("keystore: create key: %w", err)
	}
	if err := checkTags(tags); err != nil {
		return fmt.Errorf("keystore: create key %s: %w", k.ID, err)
	}
	if alias != "" && !validName(alias) {
		return fmt.Errorf("keystore: create key %s: alias name: %w", k.ID, ErrInvalid)
	}
	done, err := s.write()
	if err != nil {
		return err
	}
	defer done()

	if _, ok, err := get(s.db, keyKey(k.ID)); err != nil {
		return fmt.Errorf("keystore: create key %s: %w", k.ID, err)
	} else if ok {
		return fmt.Errorf("keystore: create key %s: key: %w", k.ID, ErrExists)
	}
	if alias != "" {
		if _, ok, err := get(s.db, aliasKey(alias)); err != nil {
			return fmt.Errorf("keystore: create key %s: %w", k.ID, err)
		} else if ok {
			return fmt.Errorf("keystore: create key %s: alias %q: %w", k.ID, alias, ErrExists)
		}
	}

	rec := *k
	rec.Revision = 1
	val, err := encodeKey(&rec)
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	_ = b.Set(keyKey(rec.ID), val, nil)
	if p := purgeEntry(&rec); p != nil {
		_ = b.Set(p, nil, nil)
	}
	for _, t := range tags {
		_ = b.Set(tagKey(rec.ID, t.Key), []byte(t.Value), nil)
	}
	if alias != "" {
		_ = b.Set(aliasKey(alias), encodeAlias(rec.ID), nil)
		_ = b.Set(byKeyKey(rec.ID, alias), nil, nil)
	}
	if err := s.commit(b, "create key "+rec.ID); err != nil {
		return err
	}
	k.Revision = rec.Revision
	s.log.Debug("key created", zap.String("id", rec.ID), zap.Int("tags", len(tags)), zap.String("alias", alias))
	return nil
}

// GetKey returns the key with id, or ErrNotFound.
func (s *Store) GetKey(id string) (*Key, error) {
	done, err := s.read()
	if err != nil {
		return nil, err
	}
	defer done()
	return loadKey(s.db, id)
}

func loadKey(r getter, id string) (*Key, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("keystore: key %q: %w", id, ErrNotFound)
	}
	v, ok, err := get(r, keyKey(id))
	if err != nil {
		return nil, fmt.Errorf("keystore: get key %s: %w", id, err)
	}
	if !ok {
		return nil, fmt.Errorf("keystore: key %s: %w", id, ErrNotFound)
	}
	return decodeKey(id, v)
}

// UpdateKey applies fn to a copy of key id under the write lock and stores
// the result with Revision bumped, in one durable batch that also keeps the
// purge index in step. An error from fn is returned as is and nothing is
// written. fn must not change ID (the store sets Revision) and must not call
// the Store: it runs under the write lock.
func (s *Store) UpdateKey(id string, fn func(*Key) error) (*Key, error) {
	done, err := s.write()
	if err != nil {
		return nil, err
	}
	defer done()

	old, err := loadKey(s.db, id)
	if err != nil {
		return nil, err
	}
	k, err := decodeKey(id, mustEncode(old)) // a deep copy for fn
	if err != nil {
		return nil, err
	}
	if err := fn(k); err != nil {
		return nil, err
	}
	if k.ID != id {
		return nil, fmt.Errorf("keystore: update key %s: the id cannot change: %w", id, ErrInvalid)
	}
	if err := checkKey(k); err != nil {
		return nil, fmt.Errorf("keystore: update key: %w", err)
	}
	k.Revision = old.Revision + 1
	val, err := encodeKey(k)
	if err != nil {
		return nil, err
	}
	b := s.db.NewBatch()
	_ = b.Set(keyKey(id), val, nil)
	oldP, newP := purgeEntry(old), purgeEntry(k)
	if oldP != nil && !bytes.Equal(oldP, newP) {
		_ = b.Delete(oldP, nil)
	}
	if newP != nil {
		_ = b.Set(newP, nil, nil)
	}
	if err := s.commit(b, "update key "+id); err != nil {
		return nil, err
	}
	s.log.Debug("key updated", zap.String("id", id), zap.Uint64("revision", k.Revision), zap.String("state", k.State))
	return k, nil
}

// mustEncode encodes a key that was just decoded, which cannot fail.
func mustEncode(k *Key) []byte {
	b, _ := encodeKey(k)
	return b
}

// PurgeKey removes key id, every alias naming it, its tags and its index
// entries, in one durable batch. ErrNotFound when the key does not exist.
func (s *Store) PurgeKey(id string) (err error) {
	done, err := s.write()
	if err != nil {
		return err
	}
	defer done()

	k, err := loadKey(s.db, id)
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer closeJoin(&err, b)
	_ = b.Delete(keyKey(id), nil)
	if p := purgeEntry(k); p != nil {
		_ = b.Delete(p, nil)
	}
	var aliases int
	err = s.eachKey(s.db, byKeyPrefix(id), func(name string) {
		_ = b.Delete(aliasKey(name), nil)
		_ = b.Delete(byKeyKey(id, name), nil)
		aliases++
	})
	if err == nil {
		err = s.eachKey(s.db, tagPrefix(id), func(tk string) { _ = b.Delete(tagKey(id, tk), nil) })
	}
	if err != nil {
		return fmt.Errorf("keystore: purge key %s: %w", id, err)
	}
	if err := s.commitOpen(b, "purge key "+id); err != nil {
		return err
	}
	s.log.Info("key purged", zap.String("id", id), zap.Int("aliases", aliases))
	return nil
}

// ListKeys returns up to max keys (default 50 when max <= 0) for which filter
// (nil = all) is true, in id order, starting after nextToken. next is "" when
// no further matching key exists.
func (s *Store) ListKeys(filter func(*Key) bool, nextToken string, max int) (keys []*Key, next string, err error) {
	cursor, err := decodeToken(nextToken, listKeys, "")
	if err != nil {
		return nil, "", fmt.Errorf("keystore: list keys: %w", err)
	}
	done, err := s.read()
	if err != nil {
		return nil, "", err
	}
	defer done()
	keys, last, more, err := scan(s.db, pfxKey, cursor, max, func(id string, v []byte) (*Key, bool, error) {
		k, err := decodeKey(id, v)
		if err != nil {
			return nil, false, err
		}
		return k, filter == nil || filter(k), nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("keystore: list keys: %w", err)
	}
	if more {
		next = encodeToken(listKeys, "", last)
	}
	return keys, next, nil
}

// DueForPurge returns, in deadline order, the ids of keys in DELETE_PENDING
// whose DeletePending deadline is at or before now.
func (s *Store) DueForPurge(now time.Time) ([]string, error) {
	done, err := s.read()
	if err != nil {
		return nil, err
	}
	defer done()
	hi := purgeKey(now, "")
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(pfxPurge), UpperBound: upperBound(pfxPurge)})
	if err != nil {
		return nil, fmt.Errorf("keystore: due for purge: %w", err)
	}
	var ids []string
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != len(hi)+IDLen {
			return nil, errors.Join(fmt.Errorf("keystore: due for purge: corrupt index entry"), it.Close())
		}
		if binary.BigEndian.Uint64(k[len(pfxPurge):]) > binary.BigEndian.Uint64(hi[len(pfxPurge):]) {
			break
		}
		ids = append(ids, string(k[len(hi):]))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("keystore: due for purge: %w", err)
	}
	return ids, nil
}

// iterMaker is what *pebble.DB and *pebble.Snapshot share.
type iterMaker interface {
	NewIter(*pebble.IterOptions) (*pebble.Iterator, error)
}

// scan visits the records under prefix whose name (the key after prefix) is
// greater than cursor, in order. match decodes a record and says whether it
// belongs in the page. scan stops after max matches plus one lookahead match;
// more reports that the lookahead found one, last is the last name returned.
func scan[T any](r iterMaker, prefix, cursor string, max int, match func(name string, val []byte) (T, bool, error)) (out []T, last string, more bool, err error) {
	if max <= 0 {
		max = defaultPageSize
	}
	lo := []byte(prefix)
	if cursor != "" {
		lo = append([]byte(prefix+cursor), 0) // the least key after prefix+cursor
	}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: upperBound(prefix)})
	if err != nil {
		return nil, "", false, err
	}
	defer func() { err = errors.Join(err, it.Error(), it.Close()) }()
	for ok := it.First(); ok; ok = it.Next() {
		name := string(it.Key()[len(prefix):])
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, "", false, err
		}
		t, hit, err := match(name, v)
		if err != nil {
			return nil, "", false, err
		}
		if !hit {
			continue
		}
		if len(out) == max {
			return out, last, true, nil
		}
		out = append(out, t)
		last = name
	}
	return out, last, false, nil
}

// eachKey calls fn with the name of every record under prefix.
func (s *Store) eachKey(r iterMaker, prefix string, fn func(name string)) (err error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: upperBound(prefix)})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, it.Error(), it.Close()) }()
	for ok := it.First(); ok; ok = it.Next() {
		fn(string(it.Key()[len(prefix):]))
	}
	return nil
}
