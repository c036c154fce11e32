package ops

import (
	"payhsm/fault"
	"payhsm/keystore"
)

func storeTags(tags []Tag) []keystore.Tag {
	out := make([]keystore.Tag, len(tags))
	for i, t := range tags {
		out[i] = keystore.Tag{Key: t.Key, Value: t.Value}
	}
	return out
}

// checkNewTags refuses duplicate tag keys and too many tags.
func (s *Service) checkNewTags(tags []Tag) error {
	if len(tags) > s.cfg.MaxTagsPerKey {
		return fault.QuotaExceededf("a key can have at most %d tags", s.cfg.MaxTagsPerKey)
	}
	seen := make(map[string]bool, len(tags))
	for _, t := range tags {
		if seen[t.Key] {
			return fault.About(fault.SubjectTags, "duplicate tag key %q", t.Key)
		}
		seen[t.Key] = true
	}
	return nil
}

func (s *Service) taggable(arn string) (*keystore.Key, error) {
	k, err := s.resolveARN(arn)
	if err != nil {
		return nil, err
	}
	if k.State == StateDeletePending {
		return nil, fault.Conflictf("key %s is pending deletion and cannot be tagged or untagged", arn)
	}
	return k, nil
}

// TagResource adds or replaces tags on a key.
func (s *Service) TagResource(arn string, tags []Tag) error {
	if err := s.checkNewTags(tags); err != nil {
		return err
	}
	k, err := s.taggable(arn)
	if err != nil {
		return err
	}
	replicated, err := s.beginChange(k.ID)
	if err != nil {
		return err
	}
	defer replicated()
	if err := s.store.TagKey(k.ID, storeTags(tags), s.cfg.MaxTagsPerKey); err != nil {
		return storeErr("tag key", err, arn)
	}
	return nil
}

// UntagResource removes tags from a key; absent keys are ignored.
func (s *Service) UntagResource(arn string, keys []string) error {
	k, err := s.taggable(arn)
	if err != nil {
		return err
	}
	replicated, err := s.beginChange(k.ID)
	if err != nil {
		return err
	}
	defer replicated()
	if err := s.store.UntagKey(k.ID, keys); err != nil {
		return storeErr("untag key", err, arn)
	}
	return nil
}

// ListTags lists a key's tags.
func (s *Service) ListTags(arn string, page Page) ([]Tag, string, error) {
	k, err := s.resolveARN(arn)
	if err != nil {
		return nil, "", err
	}
	ts, next, err := s.store.ListTags(k.ID, page.NextToken, page.Max)
	if err != nil {
		return nil, "", storeErr("list tags", err, arn)
	}
	out := make([]Tag, len(ts))
	for i, t := range ts {
		out[i] = Tag{Key: t.Key, Value: t.Value}
	}
	return out, next, nil
}
