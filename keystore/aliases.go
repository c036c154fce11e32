package keystore

import (
	"fmt"

	"go.uber.org/zap"
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
	done, err := s.write()
	if err != nil {
		return err
	}
	defer done()

	if _, ok, err := get(s.db, aliasKey(name)); err != nil {
		return fmt.Errorf("keystore: create alias %q: %w", name, err)
	} else if ok {
		return fmt.Errorf("keystore: create alias %q: %w", name, ErrExists)
	}
	if err := s.keyExists(keyID); err != nil {
		return fmt.Errorf("keystore: create alias %q: %w", name, err)
	}
	b := s.db.NewBatch()
	_ = b.Set(aliasKey(name), encodeAlias(keyID), nil)
	if keyID != "" {
		_ = b.Set(byKeyKey(keyID, name), nil, nil)
	}
	if err := s.commit(b, fmt.Sprintf("create alias %q", name)); err != nil {
		return err
	}
	s.log.Debug("alias created", zap.String("alias", name), zap.String("key", keyID))
	return nil
}

// keyExists returns nil when id is "" or names a key, else ErrNotFound.
// Callers hold the write lock.
func (s *Store) keyExists(id string) error {
	if id == "" {
		return nil
	}
	_, ok, err := get(s.db, keyKey(id))
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("key %s: %w", id, ErrNotFound)
	}
	return nil
}

// GetAlias returns alias name, or ErrNotFound.
func (s *Store) GetAlias(name string) (Alias, error) {
	done, err := s.read()
	if err != nil {
		return Alias{}, err
	}
	defer done()
	return s.loadAlias(name)
}

func (s *Store) loadAlias(name string) (Alias, error) {
	if !validName(name) {
		return Alias{}, fmt.Errorf("keystore: alias %q: %w", name, ErrNotFound)
	}
	v, ok, err := get(s.db, aliasKey(name))
	if err != nil {
		return Alias{}, fmt.Errorf("keystore: get alias %q: %w", name, err)
	}
	if !ok {
		return Alias{}, fmt.Errorf("keystore: alias %q: %w", name, ErrNotFound)
	}
	return decodeAlias(name, v)
}

// UpdateAlias points alias name at keyID; keyID "" removes the association.
// ErrNotFound when the alias, or a non-empty keyID, does not exist.
func (s *Store) UpdateAlias(name, keyID string) (Alias, error) {
	if err := checkAlias(name, keyID); err != nil {
		return Alias{}, fmt.Errorf("keystore: update alias: %w", err)
	}
	done, err := s.write()
	if err != nil {
		return Alias{}, err
	}
	defer done()

	old, err := s.loadAlias(name)
	if err != nil {
		return Alias{}, err
	}
	if err := s.keyExists(keyID); err != nil {
		return Alias{}, fmt.Errorf("keystore: update alias %q: %w", name, err)
	}
	b := s.db.NewBatch()
	_ = b.Set(aliasKey(name), encodeAlias(keyID), nil)
	if old.KeyID != "" && old.KeyID != keyID {
		_ = b.Delete(byKeyKey(old.KeyID, name), nil)
	}
	if keyID != "" {
		_ = b.Set(byKeyKey(keyID, name), nil, nil)
	}
	if err := s.commit(b, fmt.Sprintf("update alias %q", name)); err != nil {
		return Alias{}, err
	}
	s.log.Debug("alias updated", zap.String("alias", name), zap.String("from", old.KeyID), zap.String("to", keyID))
	return Alias{Name: name, KeyID: keyID}, nil
}

// DeleteAlias removes alias name, or returns ErrNotFound.
func (s *Store) DeleteAlias(name string) error {
	done, err := s.write()
	if err != nil {
		return err
	}
	defer done()

	old, err := s.loadAlias(name)
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	_ = b.Delete(aliasKey(name), nil)
	if old.KeyID != "" {
		_ = b.Delete(byKeyKey(old.KeyID, name), nil)
	}
	if err := s.commit(b, fmt.Sprintf("delete alias %q", name)); err != nil {
		return err
	}
	s.log.Debug("alias deleted", zap.String("alias", name), zap.String("key", old.KeyID))
	return nil
}

// ListAliases returns up to max aliases (default 50 when max <= 0) in name
// order, starting after nextToken: every alias when keyID is "", else those
// naming keyID. A token from one listing is refused (ErrBadToken) by another.
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
		out, last, more, err = scan(s.db, pfxAlias, cursor, max, func(name string, v []byte) (Alias, bool, error) {
			a, err := decodeAlias(name, v)
			return a, err == nil, err
		})
	} else {
		out, last, more, err = scan(s.db, byKeyPrefix(keyID), cursor, max, func(name string, _ []byte) (Alias, bool, error) {
			return Alias{Name: name, KeyID: keyID}, true, nil
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

// AliasesOf returns the names of every alias naming keyID, in name order.
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
	if err := s.eachKey(s.db, byKeyPrefix(keyID), func(n string) { names = append(names, n) }); err != nil {
		return nil, fmt.Errorf("keystore: aliases of %s: %w", keyID, err)
	}
	return names, nil
}
