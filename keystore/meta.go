package keystore

import (
	"fmt"

	"go.uber.org/zap"
)

// Meta blobs are small named values for the layers above: the service's
// (import and export tokens, the profile CA, certificate issuers), which the
// store authenticates like every record (RecordMeta), and the owner
// metadata of custody and the ceremonies (RecordOwnerMeta; see
// ownerMetaPrefixes), which their owners seal or check themselves. The store
// never logs their contents.

// maxMetaLen bounds one meta blob.
const maxMetaLen = 1 << 20

// GetMeta returns a copy of meta blob name, or ErrNotFound; an error matching
// ErrIntegrity when a service record fails its integrity check.
func (s *Store) GetMeta(name string) ([]byte, error) {
	if !validName(name) {
		return nil, fmt.Errorf("keystore: meta %q: %w", name, ErrNotFound)
	}
	done, err := s.read()
	if err != nil {
		return nil, err
	}
	defer done()
	f, ok, err := s.readRecord(s.eng, metaKey(name))
	if err != nil {
		return nil, storeErr(fmt.Sprintf("get meta %q", name), err)
	}
	if !ok {
		if err := s.damagedRecord(metaKey(name)); err != nil { // missing, as Verify found
			return nil, err
		}
		return nil, fmt.Errorf("keystore: meta %q: %w", name, ErrNotFound)
	}
	return f.payload, nil
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
	typ := RecordMeta
	if isOwnerMeta(name) {
		typ = RecordOwnerMeta
	}
	mk := metaKey(name)
	err := s.update(fmt.Sprintf("put meta %q", name), func(w *writer) error {
		old, ok, err := get(w.b, mk)
		if err != nil {
			return fmt.Errorf("keystore: put meta %q: %w", name, err)
		}
		if ok && ifAbsent {
			return fmt.Errorf("keystore: put meta %q: %w", name, ErrExists)
		}
		if _, err := w.set(mk, typ, "", value, headerRevision(old)); err != nil {
			return fmt.Errorf("keystore: put meta %q: %w", name, err)
		}
		return nil
	})
	if err != nil {
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
	if err := s.eachKey(s.eng, pfxMeta+prefix, func(n string) { names = append(names, prefix+n) }); err != nil {
		return nil, fmt.Errorf("keystore: list meta %q: %w", prefix, err)
	}
	return names, nil
}

// checkMetas checks the names and sizes of a batch of meta changes.
func checkMetas(puts map[string][]byte, deletes []string) error {
	for name, value := range puts {
		if !validName(name) {
			return fmt.Errorf("keystore: put meta: name must be 1 to %d bytes: %w", maxNameLen, ErrInvalid)
		}
		if len(value) > maxMetaLen {
			return fmt.Errorf("keystore: put meta %q: value longer than %d bytes: %w", name, maxMetaLen, ErrInvalid)
		}
	}
	for _, name := range deletes {
		if !validName(name) {
			return fmt.Errorf("keystore: delete meta: name must be 1 to %d bytes: %w", maxNameLen, ErrInvalid)
		}
		if _, both := puts[name]; both {
			return fmt.Errorf("keystore: meta %q both set and deleted: %w", name, ErrInvalid)
		}
	}
	return nil
}

// putMetas sets the meta blobs of puts inside a write transaction.
func (w *writer) putMetas(puts map[string][]byte) error {
	for name, value := range puts {
		typ := RecordMeta
		if isOwnerMeta(name) {
			typ = RecordOwnerMeta
		}
		mk := metaKey(name)
		old, _, err := get(w.b, mk)
		if err != nil {
			return fmt.Errorf("keystore: put meta %q: %w", name, err)
		}
		if _, err := w.set(mk, typ, "", value, headerRevision(old)); err != nil {
			return fmt.Errorf("keystore: put meta %q: %w", name, err)
		}
	}
	return nil
}

// PutMetas durably sets the meta blobs of puts and deletes those named in
// deletes (absent ones are no error), all in one transaction: a crash
// leaves either every change or none. A name must not be in both.
func (s *Store) PutMetas(puts map[string][]byte, deletes []string) error {
	if err := checkMetas(puts, deletes); err != nil {
		return err
	}
	err := s.update("put metas", func(w *writer) error {
		if err := w.putMetas(puts); err != nil {
			return err
		}
		for _, name := range deletes {
			if err := w.delAt(metaKey(name)); err != nil {
				return fmt.Errorf("keystore: delete meta %q: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.log.Debug("metas written", zap.Int("set", len(puts)), zap.Int("deleted", len(deletes)))
	return nil
}
