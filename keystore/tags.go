package keystore

import (
	"fmt"

	"go.uber.org/zap"
)

func checkTags(tags []Tag) error {
	for _, t := range tags {
		if !validName(t.Key) {
			return fmt.Errorf("tag key must be 1 to %d bytes: %w", maxNameLen, ErrInvalid)
		}
		if len(t.Value) > maxTagValueLen {
			return fmt.Errorf("tag %q: value longer than %d bytes: %w", t.Key, maxTagValueLen, ErrInvalid)
		}
	}
	return nil
}

// TagKey merges tags into key id's tags (a tag key already present gets the
// new value). ErrNotFound when the key does not exist; ErrTooManyTags, with
// nothing written, when the result would hold more than maxTags tags
// (maxTags <= 0 means no limit).
func (s *Store) TagKey(id string, tags []Tag, maxTags int) error {
	if err := checkTags(tags); err != nil {
		return fmt.Errorf("keystore: tag key %s: %w", id, err)
	}
	err := s.update("tag key "+id, func(w *writer) error {
		k, err := s.loadKey(w.b, id)
		if err != nil {
			return err
		}
		if len(tags) > 0 {
			if err := s.attach(w, k); err != nil {
				return err
			}
		}
		have := map[string]uint64{} // tag key -> revision of its record
		err = s.eachRecord(w.b, tagPrefix(id), func(tk, tv []byte) error {
			have[string(tk[len(tagPrefix(id)):])] = headerRevision(tv)
			return nil
		})
		if err != nil {
			return fmt.Errorf("keystore: tag key %s: %w", id, err)
		}
		n := len(have)
		for _, t := range tags {
			if _, ok := have[t.Key]; !ok {
				have[t.Key] = 0
				n++
			}
		}
		if maxTags > 0 && n > maxTags {
			return fmt.Errorf("keystore: tag key %s: %d tags exceed the limit of %d: %w", id, n, maxTags, ErrTooManyTags)
		}
		for _, t := range tags {
			rev, err := w.set(tagKey(id, t.Key), RecordTag, "", []byte(t.Value), have[t.Key])
			if err != nil {
				return fmt.Errorf("keystore: tag key %s: %w", id, err)
			}
			have[t.Key] = rev // a duplicate tag key in tags keeps the last value
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.log.Debug("key tagged", zap.String("id", id), zap.Int("tags", len(tags)))
	return nil
}

// UntagKey removes the named tags from key id; names without a tag are
// ignored. ErrNotFound when the key does not exist.
func (s *Store) UntagKey(id string, keys []string) error {
	err := s.update("untag key "+id, func(w *writer) error {
		if _, err := s.loadKey(w.b, id); err != nil {
			return err
		}
		for _, k := range keys {
			if validName(k) {
				if err := w.delAt(tagKey(id, k)); err != nil {
					return fmt.Errorf("keystore: untag key %s: %w", id, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.log.Debug("key untagged", zap.String("id", id), zap.Int("tags", len(keys)))
	return nil
}

// ListTags returns up to max (default 50 when max <= 0) of key id's tags in
// tag-key order, starting after nextToken. ErrNotFound when the key does not
// exist; an error matching ErrIntegrity when its key record or a tag on the
// page fails its integrity check.
func (s *Store) ListTags(id string, nextToken string, max int) (_ []Tag, _ string, err error) {
	cursor, err := decodeToken(nextToken, listTags, id)
	if err != nil {
		return nil, "", fmt.Errorf("keystore: list tags: %w", err)
	}
	done, err := s.read()
	if err != nil {
		return nil, "", err
	}
	defer done()

	snap, err := s.eng.View()
	if err != nil {
		return nil, "", storeErr("list tags "+id, err)
	}
	defer closeJoin(&err, snap)
	if _, err := s.loadKey(snap, id); err != nil {
		return nil, "", err
	}
	if err := s.damagedKey(id); err != nil { // a record of it Verify found out of date or missing
		return nil, "", err
	}
	tags, last, more, err := scan(snap, tagPrefix(id), cursor, max, func(k string, v []byte) (Tag, bool, error) {
		f, ok, err := s.verified(tagKey(id, k), v)
		if err != nil || !ok {
			return Tag{}, false, err
		}
		return Tag{Key: k, Value: string(f.payload)}, true, nil
	})
	if err != nil {
		return nil, "", storeErr("list tags "+id, err)
	}
	next := ""
	if more {
		next = encodeToken(listTags, id, last)
	}
	return tags, next, nil
}
