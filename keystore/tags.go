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
	done, err := s.write()
	if err != nil {
		return err
	}
	defer done()

	if _, err := loadKey(s.db, id); err != nil {
		return err
	}
	have := map[string]bool{}
	if err := s.eachKey(s.db, tagPrefix(id), func(k string) { have[k] = true }); err != nil {
		return fmt.Errorf("keystore: tag key %s: %w", id, err)
	}
	for _, t := range tags {
		have[t.Key] = true
	}
	if maxTags > 0 && len(have) > maxTags {
		return fmt.Errorf("keystore: tag key %s: %d tags exceed the limit of %d: %w", id, len(have), maxTags, ErrTooManyTags)
	}
	b := s.db.NewBatch()
	for _, t := range tags {
		_ = b.Set(tagKey(id, t.Key), []byte(t.Value), nil)
	}
	if err := s.commit(b, "tag key "+id); err != nil {
		return err
	}
	s.log.Debug("key tagged", zap.String("id", id), zap.Int("tags", len(tags)))
	return nil
}

// UntagKey removes the named tags from key id; names without a tag are
// ignored. ErrNotFound when the key does not exist.
func (s *Store) UntagKey(id string, keys []string) error {
	done, err := s.write()
	if err != nil {
		return err
	}
	defer done()

	if _, err := loadKey(s.db, id); err != nil {
		return err
	}
	b := s.db.NewBatch()
	for _, k := range keys {
		if validName(k) {
			_ = b.Delete(tagKey(id, k), nil)
		}
	}
	if err := s.commit(b, "untag key "+id); err != nil {
		return err
	}
	s.log.Debug("key untagged", zap.String("id", id), zap.Int("tags", len(keys)))
	return nil
}

// ListTags returns up to max (default 50 when max <= 0) of key id's tags in
// tag-key order, starting after nextToken. ErrNotFound when the key does not
// exist.
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

	snap := s.db.NewSnapshot()
	defer closeJoin(&err, snap)
	if _, err := loadKey(snap, id); err != nil {
		return nil, "", err
	}
	tags, last, more, err := scan(snap, tagPrefix(id), cursor, max, func(k string, v []byte) (Tag, bool, error) {
		return Tag{Key: k, Value: string(v)}, true, nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("keystore: list tags %s: %w", id, err)
	}
	next := ""
	if more {
		next = encodeToken(listTags, id, last)
	}
	return tags, next, nil
}
