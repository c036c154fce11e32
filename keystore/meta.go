package keystore

import (
	"fmt"

	"go.uber.org/zap"
)

// Meta blobs are small named values for the custody layer (sealed profile
// main keys, the region key's check value, import-token state). The store
// treats them as opaque bytes and never logs their contents.

// maxMetaLen bounds one meta blob.
const maxMetaLen = 1 << 20

// GetMeta returns a copy of meta blob name, or ErrNotFound.
func (s *Store) GetMeta(name string) ([]byte, error) {
	if !validName(name) {
		return nil, fmt.Errorf("keystore: meta %q: %w", name, ErrNotFound)
	}
	done, err := s.read()
	if err != nil {
		return nil, err
	}
	defer done()
	v, ok, err := get(s.db, metaKey(name))
	if err != nil {
		return nil, fmt.Errorf("keystore: get meta %q: %w", name, err)
	}
	if !ok {
		return nil, fmt.Errorf("keystore: meta %q: %w", name, ErrNotFound)
	}
	return v, nil
}

// PutMeta durably sets meta blob name to value.
func (s *Store) PutMeta(name string, value []byte) error {
	return s.putMeta(name, value, false)
}

// PutMetaIfAbsent durably sets meta blob name to value unless it exists
// (ErrExists).
func (s *Store) PutMetaIfAbsent(name string, value []byte) error {
	return s.putMeta(name, value, true)
}

func (s *Store) putMeta(name string, value []byte, ifAbsent bool) error {
	if !validName(name) {
		return fmt.Errorf("keystore: put meta: name must be 1 to %d bytes: %w", maxNameLen, ErrInvalid)
	}
	if len(value) > maxMetaLen {
		return fmt.Errorf("keystore: put meta %q: value longer than %d bytes: %w", name, maxMetaLen, ErrInvalid)
	}
	done, err := s.write()
	if err != nil {
		return err
	}
	defer done()
	if ifAbsent {
		if _, ok, err := get(s.db, metaKey(name)); err != nil {
			return fmt.Errorf("keystore: put meta %q: %w", name, err)
		} else if ok {
			return fmt.Errorf("keystore: put meta %q: %w", name, ErrExists)
		}
	}
	b := s.db.NewBatch()
	_ = b.Set(metaKey(name), value, nil)
	if err := s.commit(b, fmt.Sprintf("put meta %q", name)); err != nil {
		return err
	}
	s.log.Debug("meta written", zap.String("name", name), zap.Int("bytes", len(value)))
	return nil
}

// MetaNames lists the names of the meta blobs that start with prefix, in order.
func (s *Store) MetaNames(prefix string) ([]string, error) {
	done, err := s.read()
	if err != nil {
		return nil, err
	}
	defer done()
	var names []string
	if err := s.eachKey(s.db, pfxMeta+prefix, func(n string) { names = append(names, prefix+n) }); err != nil {
		return nil, fmt.Errorf("keystore: list meta %q: %w", prefix, err)
	}
	return names, nil
}
