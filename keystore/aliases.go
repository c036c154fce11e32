package keystore

import (
	"errors"
	"fmt"

	"go.uber.org/zap"

	"payhsm/keystore/kv"
)

func checkAlias(name, keyID string) error {
	if !validName(name) {
		return fmt.Errorf("alias name must be 1 to %d bytes: %w", maxNameLen, ErrInvalid)
	}
	if keyID != "" && !ValidID(keyID) {
		return fmt.Errorf("alias %q: key %q: %w", name, keyID, ErrNotFound)
	}
	return nil
}

// CreateAlias creates alias name pointing at keyID ("" = not associated).
// ErrExists when the alias exists; ErrNotFound when keyID names no key.
func (s *Store) CreateAlias(name, keyID string) error {
	if err := checkAlias(name, keyID); err != nil {
		return fmt.Errorf("keystore: create alias: %w", err)
	}
	err := s.update(fmt.Sprintf("create alias %q", name), func(w *writer) error {
		if _, ok, err := get(w.b, aliasKey(name)); err != nil {
			return fmt.Errorf("keystore: create alias %q: %w", name, err)
		} else if ok {
			return fmt.Errorf("keystore: create alias %q: %w", name, ErrExists)
		}
		if err := s.attachAlias(w, keyID); err != nil {
			return fmt.Errorf("keystore: create alias %q: %w", name, err)
		}
		if _, err := w.set(aliasKey(name), RecordAlias, "", encodeAlias(keyID), 0); err != nil {
			return fmt.Errorf("keystore: create alias %q: %w", name, err)
		}
		if keyID != "" {
			if _, err := w.set(byKeyKey(keyID, name), RecordAliasIndex, "", nil, 0); err != nil {
				return fmt.Errorf("keystore: create alias %q: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.log.Debug("alias created", zap.String("alias", name), zap.String("key", keyID))
	return nil
}

// attachAlias is keyExists for a key an alias is about to name: it also
// clears the key's "no tags or aliases" mark (attach), for which it reads
// and checks the key's record.
func (s *Store) attachAlias(w *writer, id string) error {
	if err := s.keyExists(w.b, id); err != nil || id == "" {
		return err
	}
	k, err := s.loadKey(w.b, id)
	if err != nil {
		return err
	}
	return s.attach(w, k)
}

// keyExists returns nil when id is "" or names a key, else ErrNotFound.
// Writers read through their transaction.
func (s *Store) keyExists(r kv.Reader, id string) error {
	if id == "" {
		return nil
	}
	_, ok, err := get(r, keyKey(id))
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("key %s: %w", id, ErrNotFound)
	}
	return nil
}

// GetAlias returns alias name, or ErrNotFound; an error matching
// ErrIntegrity when its record fails its integrity check.
func (s *Store) GetAlias(name string) (Alias, error) {
	done, err := s.read()
	if err != nil {
		return Alias{}, err
	}
	defer done()
	a, _, err := s.loadAlias(s.eng, name)
	return a, err
}

// loadAlias reads and checks alias name; it also returns its revision.
func (s *Store) loadAlias(r kv.Reader, name string) (Alias, uint64, error) {
	if !validName(name) {
		return Alias{}, 0, fmt.Errorf("keystore: alias %q: %w", name, ErrNotFound)
	}
	ak := aliasKey(name)
	f, ok, err := s.readRecord(r, ak)
	if err != nil {
		return Alias{}, 0, storeErr(fmt.Sprintf("get alias %q", name), err)
	}
	if !ok {
		if err := s.damagedRecord(ak); err != nil { // missing, as Verify found
			return Alias{}, 0, err
		}
		return Alias{}, 0, fmt.Errorf("keystore: alias %q: %w", name, ErrNotFound)
	}
	a, err := decodeAlias(name, f.payload)
	if err != nil {
		return Alias{}, 0, s.integrityFailure(ak, "the authenticated payload is not a key id")
	}
	return a, f.revision, nil
}

// UpdateAlias points alias name at keyID; keyID "" removes the association.
// ErrNotFound when the alias, or a non-empty keyID, does not exist.
func (s *Store) UpdateAlias(name, keyID string) (Alias, error) {
	if err := checkAlias(name, keyID); err != nil {
		return Alias{}, fmt.Errorf("keystore: update alias: %w", err)
	}
	var old Alias
	err := s.update(fmt.Sprintf("update alias %q", name), func(w *writer) error {
		var (
			rev uint64
			err error
		)
		if old, rev, err = s.loadAlias(w.b, name); err != nil {
			return err
		}
		if old.KeyID != keyID {
			err = s.attachAlias(w, keyID)
		} else {
			err = s.keyExists(w.b, keyID)
		}
		if err != nil {
			return fmt.Errorf("keystore: update alias %q: %w", name, err)
		}
		if _, err := w.set(aliasKey(name), RecordAlias, "", encodeAlias(keyID), rev); err != nil {
			return fmt.Errorf("keystore: update alias %q: %w", name, err)
		}
		if old.KeyID != keyID {
			if old.KeyID != "" {
				if err := w.delAt(byKeyKey(old.KeyID, name)); err != nil {
					return fmt.Errorf("keystore: update alias %q: %w", name, err)
				}
			}
			if keyID != "" {
				if _, err := w.set(byKeyKey(keyID, name), RecordAliasIndex, "", nil, 0); err != nil {
					return fmt.Errorf("keystore: update alias %q: %w", name, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return Alias{}, err
	}
	s.log.Debug("alias updated", zap.String("alias", name), zap.String("from", old.KeyID), zap.String("to", keyID))
	return Alias{Name: name, KeyID: keyID}, nil
}

// DeleteAlias removes alias name, or returns ErrNotFound.
func (s *Store) DeleteAlias(name string) error {
	var old Alias
	err := s.update(fmt.Sprintf("delete alias %q", name), func(w *writer) error {
		var err error
		if old, _, err = s.loadAlias(w.b, name); err != nil {
			return err
		}
		if err := w.delAt(aliasKey(name)); err != nil {
			return fmt.Errorf("keystore: delete alias %q: %w", name, err)
		}
		if old.KeyID != "" {
			if err := w.delAt(byKeyKey(old.KeyID, name)); err != nil {
				return fmt.Errorf("keystore: delete alias %q: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.log.Debug("alias deleted", zap.String("alias", name), zap.String("key", old.KeyID))
	return nil
}

// ListAliases returns up to max aliases (default 50 when max <= 0) in name
// order, starting after nextToken: every alias when keyID is "", else those
// naming keyID. A token from one listing is refused (ErrBadToken) by another.
// A record that fails its integrity check is left out (and logged and
// counted).
func (s *Store) ListAliases(keyID string, nextToken string, max int) ([]Alias, string, error) {
	list := listAliases
	if keyID != "" {
		list = listKeyAliases
	}
	cursor, err := decodeToken(nextToken, list, keyID)
	if err != nil {
		return nil, "", fmt.Errorf("keystore: list aliases: %w", err)
	}
	if keyID != "" && !ValidID(keyID) {
		return nil, "", nil // names no key, so no alias names it
	}
	done, err := s.read()
	if err != nil {
		return nil, "", err
	}
	defer done()

	var (
		out  []Alias
		last string
		more bool
	)
	if keyID == "" {
		out, last, more, err = scan(s.eng, pfxAlias, cursor, max, func(name string, v []byte) (Alias, bool, error) {
			ak := aliasKey(name)
			f, ok, err := s.verified(ak, v)
			if err == nil && ok {
				a, derr := decodeAlias(name, f.payload)
				if derr == nil {
					return a, true, nil
				}
				err = s.integrityFailure(ak, "the authenticated payload is not a key id")
			}
			return Alias{}, false, skipDamaged(err)
		})
	} else {
		out, last, more, err = scan(s.eng, byKeyPrefix(keyID), cursor, max, func(name string, v []byte) (Alias, bool, error) {
			f, ok, err := s.verified(byKeyKey(keyID, name), v)
			if err == nil && ok && len(f.payload) == 0 {
				return Alias{Name: name, KeyID: keyID}, true, nil
			}
			if err == nil && ok {
				err = s.integrityFailure(byKeyKey(keyID, name), "an alias index entry carries a payload")
			}
			return Alias{}, false, skipDamaged(err)
		})
	}
	if err != nil {
		return nil, "", fmt.Errorf("keystore: list aliases: %w", err)
	}
	next := ""
	if more {
		next = encodeToken(list, keyID, last)
	}
	return out, next, nil
}

// skipDamaged turns an integrity failure (already reported) into nil, for
// listings that go on without the damaged record.
func skipDamaged(err error) error {
	if errors.Is(err, ErrIntegrity) {
		return nil
	}
	return err
}

// AliasesOf returns the names of every alias naming keyID, in name order:
// the names of its alias index entries that pass their integrity check.
func (s *Store) AliasesOf(keyID string) ([]string, error) {
	if !ValidID(keyID) {
		return nil, nil
	}
	done, err := s.read()
	if err != nil {
		return nil, err
	}
	defer done()
	var names []string
	err = s.eachRecord(s.eng, byKeyPrefix(keyID), func(xk, xv []byte) error {
		_, ok, err := s.verified(xk, xv)
		if err == nil && ok {
			names = append(names, string(xk[len(byKeyPrefix(keyID)):]))
		}
		return skipDamaged(err)
	})
	if err != nil {
		return nil, fmt.Errorf("keystore: aliases of %s: %w", keyID, err)
	}
	return names, nil
}
