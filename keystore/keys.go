package keystore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"payhsm/keystore/kv"
)

// defaultPageSize is used when a listing's max is <= 0.
const defaultPageSize = 50

// checkKey validates what the store relies on: the id's shape, a profile,
// and UTF-8 strings (encoding/json would silently replace invalid bytes, so
// a record would not read back as written).
func checkKey(k *Key) error {
	if k == nil || !ValidID(k.ID) {
		return fmt.Errorf("key id must be %d characters of [a-z0-9]: %w", IDLen, ErrInvalid)
	}
	if !validProfile(k.Profile) {
		return fmt.Errorf("key %s: profile must be 1 to %d bytes: %w", k.ID, maxProfileLen, ErrInvalid)
	}
	for _, s := range []string{k.Profile, string(k.Attributes.Usage), string(k.Attributes.Class), string(k.Attributes.Algorithm),
		string(k.DeriveKeyUsage), k.KCV, string(k.KCVAlgorithm), k.State, k.Origin, k.KeyBlock, k.ResourcePolicy, k.CreatedBy} {
		if !utf8.ValidString(s) {
			return fmt.Errorf("key %s: a text field is not valid UTF-8: %w", k.ID, ErrInvalid)
		}
	}
	return nil
}

// CreateKey stores k (setting its Revision), its tags, and, when alias is
// not "", a new alias naming it, in one durable batch. It returns ErrExists
// (wrapped with what exists) when the id or the alias is taken. Duplicate tag
// keys keep the last value.
func (s *Store) CreateKey(k *Key, tags []Tag, alias string) error {
	return s.CreateKeyMetas(k, tags, alias, nil)
}

// CreateKeyMetas is CreateKey that also sets the meta blobs of metas in the
// same durable transaction: a crash leaves the key and every one of them,
// or none; when the key is refused (ErrExists) none is written. A caller
// whose metas describe the new key (its replication record) needs no lock
// to keep others from seeing one without the other.
func (s *Store) CreateKeyMetas(k *Key, tags []Tag, alias string, metas map[string][]byte) error {
	if err := checkMetas(metas, nil); err != nil {
		return fmt.Errorf("keystore: create key %s: %w", k.ID, err)
	}
	if err := checkKey(k); err != nil {
		return fmt.Errorf("keystore: create key: %w", err)
	}
	if err := checkTags(tags); err != nil {
		return fmt.Errorf("keystore: create key %s: %w", k.ID, err)
	}
	if alias != "" && !validName(alias) {
		return fmt.Errorf("keystore: create key %s: alias name: %w", k.ID, ErrInvalid)
	}
	k.bare = !s.noBareMarks && len(tags) == 0 && alias == ""
	val, err := encodeKey(k)
	if err != nil {
		return err
	}
	var rev uint64
	err = s.updateGrouped("create key "+k.ID, func(w *writer) error {
		if _, ok, err := get(w.b, keyKey(k.ID)); err != nil {
			return fmt.Errorf("keystore: create key %s: %w", k.ID, err)
		} else if ok {
			return fmt.Errorf("keystore: create key %s: key: %w", k.ID, ErrExists)
		}
		if alias != "" {
			if _, ok, err := get(w.b, aliasKey(alias)); err != nil {
				return fmt.Errorf("keystore: create key %s: %w", k.ID, err)
			} else if ok {
				return fmt.Errorf("keystore: create key %s: alias %q: %w", k.ID, alias, ErrExists)
			}
		}
		var err error
		if rev, err = w.set(keyKey(k.ID), RecordKey, k.Profile, val, 0); err != nil {
			return fmt.Errorf("keystore: create key %s: %w", k.ID, err)
		}
		if p := purgeEntry(k); p != nil {
			if _, err := w.set(p, RecordPurgeIndex, "", nil, 0); err != nil {
				return fmt.Errorf("keystore: create key %s: %w", k.ID, err)
			}
		}
		for _, t := range tags {
			if _, err := w.set(tagKey(k.ID, t.Key), RecordTag, "", []byte(t.Value), 0); err != nil {
				return fmt.Errorf("keystore: create key %s: %w", k.ID, err)
			}
		}
		if alias != "" {
			if _, err := w.set(aliasKey(alias), RecordAlias, "", encodeAlias(k.ID), 0); err != nil {
				return fmt.Errorf("keystore: create key %s: %w", k.ID, err)
			}
			if _, err := w.set(byKeyKey(k.ID, alias), RecordAliasIndex, "", nil, 0); err != nil {
				return fmt.Errorf("keystore: create key %s: %w", k.ID, err)
			}
		}
		if err := w.putMetas(metas); err != nil {
			return fmt.Errorf("keystore: create key %s: %w", k.ID, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	k.Revision = rev
	s.log.Debug("key created", zap.String("id", k.ID), zap.Int("tags", len(tags)), zap.String("alias", alias))
	return nil
}

// GetKey returns the key with id, or ErrNotFound. Every record that belongs
// to the key is checked: its key record, tags, alias index entries and purge
// index entry; when one fails its integrity check, GetKey fails with an
// error matching ErrIntegrity (an *IntegrityError naming that record), so
// the key is refused for every operation.
func (s *Store) GetKey(id string) (*Key, error) {
	done, err := s.read()
	if err != nil {
		return nil, err
	}
	defer done()
	k, err := s.loadKey(s.eng, id)
	if err != nil {
		return nil, err
	}
	if err := s.checkBelongings(s.eng, k); err != nil {
		return nil, err
	}
	if err := s.damagedKey(id); err != nil { // a record of it Verify found out of date or missing
		return nil, err
	}
	return k, nil
}

// loadKey reads and checks key id's record (only).
func (s *Store) loadKey(r kv.Reader, id string) (*Key, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("keystore: key %q: %w", id, ErrNotFound)
	}
	k := keyKey(id)
	f, ok, err := s.readRecord(r, k)
	if err != nil {
		return nil, storeErr("get key "+id, err)
	}
	if !ok {
		if err := s.damagedRecord(k); err != nil { // missing, as Verify found
			return nil, err
		}
		return nil, fmt.Errorf("keystore: key %s: %w", id, ErrNotFound)
	}
	return s.keyFromFrame(k, id, f)
}

// keyFromFrame decodes a checked key record.
func (s *Store) keyFromFrame(pk []byte, id string, f frame) (*Key, error) {
	k, err := decodeKey(id, f.payload)
	if err != nil {
		return nil, s.integrityFailure(pk, "the authenticated payload does not decode")
	}
	if k.Profile != f.profile {
		return nil, s.integrityFailure(pk, "authenticated under profile %q, but the record names profile %q", f.profile, k.Profile)
	}
	k.Revision = f.revision
	return k, nil
}

// storeErr wraps a read error with what was being done, and leaves an
// integrity failure as it is (its message names the record).
func storeErr(what string, err error) error {
	var ie *IntegrityError
	if errors.As(err, &ie) {
		return err
	}
	return fmt.Errorf("keystore: %s: %w", what, err)
}

// checkBelongings checks the records that belong to key k besides its key
// record: its tags, its alias index entries and its purge index entry. A
// key whose record says it has no tags or aliases (Key.bare) has only the
// purge index entry to check: a tag or index entry stored under its id is
// not its own (Verify reports one).
func (s *Store) checkBelongings(r kv.Reader, k *Key) error {
	prefixes := []string{tagPrefix(k.ID), byKeyPrefix(k.ID)}
	if k.bare {
		prefixes = nil
	}
	for _, p := range prefixes {
		err := s.eachRecord(r, p, func(pk, v []byte) error {
			f, ok, err := s.verified(pk, v)
			if err == nil && ok && f.typ == RecordAliasIndex && len(f.payload) != 0 {
				err = s.integrityFailure(pk, "an alias index entry carries a payload")
			}
			return err
		})
		if err != nil {
			return storeErr("check key "+k.ID, err)
		}
	}
	if p := purgeEntry(k); p != nil {
		f, ok, err := s.readRecord(r, p)
		if err == nil && ok && len(f.payload) != 0 {
			err = s.integrityFailure(p, "a purge index entry carries a payload")
		}
		if err != nil {
			return storeErr("check key "+k.ID, err)
		}
	}
	return nil
}

// UpdateKey applies fn to a copy of key id and stores the result with
// Revision bumped, in one durable transaction that also keeps the purge
// index in step. An error from fn is returned as is and nothing is written.
// fn must not change ID (the store sets Revision) and must not call the
// Store: it runs inside the write transaction. On a shared store fn may run
// more than once (with the key as another node has just changed it), so it
// must decide from the key alone.
func (s *Store) UpdateKey(id string, fn func(*Key) error) (*Key, error) {
	var k *Key
	err := s.update("update key "+id, func(w *writer) error {
		old, err := s.loadKey(w.b, id)
		if err != nil {
			return err
		}
		if k, err = decodeKey(id, mustEncode(old)); err != nil { // a deep copy for fn
			return err
		}
		if err := fn(k); err != nil {
			return err
		}
		k.bare = old.bare // the store's to say, not fn's (a replica's update copies in another Key)
		if k.ID != id {
			return fmt.Errorf("keystore: update key %s: the id cannot change: %w", id, ErrInvalid)
		}
		if err := checkKey(k); err != nil {
			return fmt.Errorf("keystore: update key: %w", err)
		}
		val, err := encodeKey(k)
		if err != nil {
			return err
		}
		if k.Revision, err = w.set(keyKey(id), RecordKey, k.Profile, val, old.Revision); err != nil {
			return fmt.Errorf("keystore: update key %s: %w", id, err)
		}
		oldP, newP := purgeEntry(old), purgeEntry(k)
		if !bytes.Equal(oldP, newP) {
			if oldP != nil {
				if err := w.delAt(oldP); err != nil {
					return fmt.Errorf("keystore: update key %s: %w", id, err)
				}
			}
			if newP != nil {
				if _, err := w.set(newP, RecordPurgeIndex, "", nil, 0); err != nil {
					return fmt.Errorf("keystore: update key %s: %w", id, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Debug("key updated", zap.String("id", id), zap.Uint64("revision", k.Revision), zap.String("state", k.State))
	return k, nil
}

// attach clears key k's "no tags or aliases" mark (Key.bare) before the
// transaction w gives the key a tag or an alias index entry, rewriting its
// record in w; k is the key as w read it (loadKey), and its Revision
// follows the write.
func (s *Store) attach(w *writer, k *Key) error {
	if !k.bare {
		return nil
	}
	k.bare = false
	val, err := encodeKey(k)
	if err != nil {
		return err
	}
	if k.Revision, err = w.set(keyKey(k.ID), RecordKey, k.Profile, val, k.Revision); err != nil {
		return fmt.Errorf("keystore: key %s: %w", k.ID, err)
	}
	return nil
}

// mustEncode encodes a key that was just decoded, which cannot fail.
func mustEncode(k *Key) []byte {
	b, _ := encodeKey(k)
	return b
}

// PurgeKey removes key id, every alias naming it, its tags and its index
// entries, in one durable batch. ErrNotFound when the key does not exist.
// Its key record must pass its integrity check; its other records need not
// (removing them is safe). An alias whose index entry names the key but
// whose own record does not (a stale or replayed entry) is left in place.
func (s *Store) PurgeKey(id string) error {
	var aliases int
	err := s.update("purge key "+id, func(w *writer) error {
		k, err := s.loadKey(w.b, id)
		if err != nil {
			return err
		}
		aliases = 0
		if err := w.delAt(keyKey(id)); err != nil {
			return fmt.Errorf("keystore: purge key %s: %w", id, err)
		}
		if p := purgeEntry(k); p != nil {
			if err := w.delAt(p); err != nil {
				return fmt.Errorf("keystore: purge key %s: %w", id, err)
			}
		}
		err = s.eachRecord(w.b, byKeyPrefix(id), func(xk, xv []byte) error {
			name := string(xk[len(byKeyPrefix(id)):])
			if err := w.del(xk, xv); err != nil {
				return err
			}
			ak := aliasKey(name)
			av, ok, err := get(w.b, ak)
			if err != nil || !ok {
				return err
			}
			if f, ok, err := s.verifiedIn(w.b, ak, av); err == nil && ok && string(f.payload) == id {
				aliases++
				return w.del(ak, av)
			}
			return nil
		})
		if err == nil {
			err = s.eachRecord(w.b, tagPrefix(id), func(tk, tv []byte) error { return w.del(tk, tv) })
		}
		if err != nil {
			return fmt.Errorf("keystore: purge key %s: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.log.Info("key purged", zap.String("id", id), zap.Int("aliases", aliases))
	return nil
}

// ListKeys returns up to max keys (default 50 when max <= 0) for which filter
// (nil = all) is true, in id order, starting after nextToken. next is "" when
// no further matching key exists. Only key records are checked; one that
// fails its check is left out of the listing (and logged and counted).
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
	keys, last, more, err := scan(s.eng, pfxKey, cursor, max, func(id string, v []byte) (*Key, bool, error) {
		pk := keyKey(id)
		f, ok, err := s.verified(pk, v)
		if err == nil && ok {
			var k *Key
			if k, err = s.keyFromFrame(pk, id, f); err == nil {
				return k, filter == nil || filter(k), nil
			}
		}
		if errors.Is(err, ErrIntegrity) || (err == nil && !ok) {
			return nil, false, nil // reported; listings go on without it
		}
		return nil, false, err
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
// whose DeletePending deadline is at or before now. An index entry is
// trusted only when it passes its integrity check and its key record (which
// must pass too) is DELETE_PENDING with that deadline; any other entry is
// left out, and one that disagrees with its key record is reported as an
// integrity failure.
func (s *Store) DueForPurge(now time.Time) ([]string, error) {
	done, err := s.read()
	if err != nil {
		return nil, err
	}
	defer done()
	hi := binary.BigEndian.Uint64(purgeKey(now, "")[len(pfxPurge):])
	var ids []string
	err = s.eng.Scan([]byte(pfxPurge), upperBound(pfxPurge), func(k, v []byte) (bool, error) {
		pk := append([]byte(nil), k...)
		if len(pk) >= len(pfxPurge)+8 && binary.BigEndian.Uint64(pk[len(pfxPurge):]) > hi {
			return false, nil
		}
		id, ok, err := s.purgeCandidate(pk, append([]byte(nil), v...))
		if ok {
			ids = append(ids, id)
		}
		return err == nil, err
	})
	if err != nil {
		return nil, storeErr("due for purge", err)
	}
	return ids, nil
}

// purgeCandidate checks one purge index entry; see DueForPurge.
func (s *Store) purgeCandidate(pk, v []byte) (string, bool, error) {
	f, ok, err := s.verified(pk, v)
	if errors.Is(err, ErrIntegrity) || (err == nil && !ok) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("keystore: due for purge: %w", err)
	}
	if len(pk) != len(pfxPurge)+8+IDLen || len(f.payload) != 0 {
		_ = s.integrityFailure(pk, "malformed purge index entry")
		return "", false, nil
	}
	id := string(pk[len(pfxPurge)+8:])
	k, err := s.loadKey(s.eng, id)
	if errors.Is(err, ErrIntegrity) {
		return "", false, nil
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return "", false, err
	}
	if err != nil || !bytes.Equal(purgeEntry(k), pk) {
		_ = s.integrityFailure(pk, "the entry disagrees with its key record (missing, not pending deletion, or another deadline)")
		return "", false, nil
	}
	return id, true, nil
}

// scan visits the records under prefix whose name (the key after prefix) is
// greater than cursor, in order. match decodes a record and says whether it
// belongs in the page. scan stops after max matches plus one lookahead match;
// more reports that the lookahead found one, last is the last name returned.
func scan[T any](r kv.Reader, prefix, cursor string, max int, match func(name string, val []byte) (T, bool, error)) (out []T, last string, more bool, err error) {
	if max <= 0 {
		max = defaultPageSize
	}
	lo := []byte(prefix)
	if cursor != "" {
		lo = append([]byte(prefix+cursor), 0) // the least key after prefix+cursor
	}
	err = r.Scan(lo, upperBound(prefix), func(k, v []byte) (bool, error) {
		name := string(k[len(prefix):])
		t, hit, err := match(name, v)
		if err != nil || !hit {
			return err == nil, err
		}
		if len(out) == max {
			more = true
			return false, nil
		}
		out = append(out, t)
		last = name
		return true, nil
	})
	if err != nil {
		return nil, "", false, err
	}
	return out, last, more, nil
}

// eachRecord calls fn with the engine key and value of every record under
// prefix, in order, until fn returns an error. Both slices are copies.
func (s *Store) eachRecord(r kv.Reader, prefix string, fn func(k, v []byte) error) error {
	return r.Scan([]byte(prefix), upperBound(prefix), func(k, v []byte) (bool, error) {
		err := fn(append([]byte(nil), k...), append([]byte(nil), v...))
		return err == nil, err
	})
}

// eachKey calls fn with the name of every record under prefix.
func (s *Store) eachKey(r kv.Reader, prefix string, fn func(name string)) error {
	return r.Scan([]byte(prefix), upperBound(prefix), func(k, _ []byte) (bool, error) {
		fn(string(k[len(prefix):]))
		return true, nil
	})
}

// KeysCreatedSince returns, in id order, the keys created at or after since
// whose records name who created them (Key.CreatedBy): what the daemon's
// audit outbox reads after a crash. It reads every key record but checks
// and decodes only those whose stored bytes name a creator and a creation
// time not before since (rawCreated): a record whose bytes were altered to
// escape that test fails its check wherever else it is read, and Verify
// reports it. A record that fails its check is left out (and reported).
func (s *Store) KeysCreatedSince(since time.Time) ([]*Key, error) {
	done, err := s.read()
	if err != nil {
		return nil, err
	}
	defer done()
	var out []*Key
	err = s.eng.Scan([]byte(pfxKey), upperBound(pfxKey), func(k, v []byte) (bool, error) {
		if !bytes.Contains(v, []byte(`"createdBy":"`)) {
			return true, nil
		}
		if c, ok := rawCreated(v); ok && c.Before(since) {
			return true, nil
		}
		pk, id := append([]byte(nil), k...), string(k[len(pfxKey):])
		f, ok, err := s.verified(pk, append([]byte(nil), v...))
		if err == nil && ok {
			var key *Key
			if key, err = s.keyFromFrame(pk, id, f); err == nil {
				if key.CreatedBy != "" && !key.Created.Before(since) {
					out = append(out, key)
				}
				return true, nil
			}
		}
		if errors.Is(err, ErrIntegrity) || (err == nil && !ok) {
			return true, nil // reported
		}
		return false, err
	})
	if err != nil {
		return nil, fmt.Errorf("keystore: keys created since %s: %w", fmtTime(since), err)
	}
	return out, nil
}

// rawCreated is the creation time an unchecked key record's bytes state;
// ok is false when they state none that parses.
func rawCreated(v []byte) (time.Time, bool) {
	const name = `"created":"`
	i := bytes.Index(v, []byte(name))
	if i < 0 {
		return time.Time{}, false
	}
	rest := v[i+len(name):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(rest[:j]))
	return t, err == nil
}
