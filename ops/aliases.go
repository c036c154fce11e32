package ops

import (
	"errors"

	"payhsm/fault"
	"payhsm/keystore"
)

func (s *Service) alias(a keystore.Alias) *Alias {
	out := &Alias{Name: a.Name}
	if a.KeyID != "" {
		out.KeyARN = s.keyARN(a.KeyID)
	}
	return out
}

// keyIDForAlias resolves the optional KeyArn member of CreateAlias/UpdateAlias.
func (s *Service) keyIDForAlias(keyARN string) (string, error) {
	if keyARN == "" {
		return "", nil
	}
	k, err := s.resolveARN(keyARN)
	if err != nil {
		return "", err
	}
	if k.State == StateDeletePending {
		return "", fault.Conflictf("key %s is pending deletion", keyARN)
	}
	return k.ID, nil
}

// CreateAlias creates an alias, associated with keyARN when it is not "".
func (s *Service) CreateAlias(name, keyARN string) (*Alias, error) {
	defer s.cache.dropAliases()
	id, err := s.keyIDForAlias(keyARN)
	if err != nil {
		return nil, err
	}
	if err := s.store.CreateAlias(name, id); err != nil {
		if errors.Is(err, keystore.ErrNotFound) {
			return nil, fault.NotFoundf(keyARN, "key %s not found", keyARN)
		}
		return nil, storeErr("create alias", err, name)
	}
	return &Alias{Name: name, KeyARN: keyARNOrEmpty(s, id)}, nil
}

func keyARNOrEmpty(s *Service, id string) string {
	if id == "" {
		return ""
	}
	return s.keyARN(id)
}

// GetAlias describes an alias.
func (s *Service) GetAlias(name string) (*Alias, error) {
	a, err := s.store.GetAlias(name)
	if err != nil {
		return nil, storeErr("read alias", err, name)
	}
	return s.alias(a), nil
}

// UpdateAlias associates an alias with keyARN, or with no key when keyARN is "".
func (s *Service) UpdateAlias(name, keyARN string) (*Alias, error) {
	defer s.cache.dropAliases()
	id, err := s.keyIDForAlias(keyARN)
	if err != nil {
		return nil, err
	}
	a, err := s.store.UpdateAlias(name, id)
	if err != nil {
		return nil, storeErr("update alias", err, name)
	}
	return s.alias(a), nil
}

// DeleteAlias deletes an alias; the key is unaffected.
func (s *Service) DeleteAlias(name string) error {
	defer s.cache.dropAliases()
	if err := s.store.DeleteAlias(name); err != nil {
		return storeErr("delete alias", err, name)
	}
	return nil
}

// ListAliases lists aliases, optionally only those of keyARN.
func (s *Service) ListAliases(keyARN string, page Page) ([]*Alias, string, error) {
	id := ""
	if keyARN != "" {
		k, err := s.resolveARN(keyARN)
		if err != nil {
			return nil, "", err
		}
		id = k.ID
	}
	as, next, err := s.store.ListAliases(id, page.NextToken, page.Max)
	if err != nil {
		return nil, "", storeErr("list aliases", err, "")
	}
	out := make([]*Alias, len(as))
	for i, a := range as {
		out[i] = s.alias(a)
	}
	return out, next, nil
}
