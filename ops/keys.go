package ops

import (
	"errors"
	"time"

	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/keystore"
)

// CreateKey generates a key inside the appliance and stores it as an X9.143
// key block under the profile main key. A K3 key pair created without a
// DeriveKeyUsage derives keyspec.DefaultDeriveKeyUsage keys.
func (s *Service) CreateKey(in CreateKeyInput) (*Key, error) {
	a := in.Attributes
	if err := keyspec.ValidateCreate(a, in.DeriveKeyUsage); err != nil {
		return nil, err
	}
	id, err := newKeyID()
	if err != nil {
		return nil, fault.Internalf("key id", err)
	}
	derive := in.DeriveKeyUsage
	if a.Usage == keyspec.K3 && derive == "" {
		derive = keyspec.DefaultDeriveKeyUsage
	}
	rec := &keystore.Key{
		ID: id, Profile: s.cfg.Profile, Attributes: a, DeriveKeyUsage: derive,
		Exportable: in.Exportable, Origin: OriginService,
	}
	if a.Algorithm.IsSymmetric() {
		method, err := kcvMethod(a.Algorithm, in.KCVAlgorithm)
		if err != nil {
			return nil, err
		}
		key, err := newSymmetricKey(a.Algorithm)
		if err != nil {
			return nil, fault.Internalf("generate key", err)
		}
		defer clear(key)
		if rec.KCV, err = symmetricKCV(a.Algorithm, method, key); err != nil {
			return nil, err
		}
		rec.KCVAlgorithm = method
		if rec.KeyBlock, err = s.wrapStored(id, a, in.Exportable, key); err != nil {
			return nil, err
		}
	} else {
		if in.KCVAlgorithm != "" && in.KCVAlgorithm != keyspec.KCVSHA1 {
			return nil, fault.About(fault.SubjectKeyCheckValueAlgorithm, "asymmetric keys use the SHA_1 check value")
		}
		priv, pub, err := s.newKeyPair(a.Algorithm)
		if err != nil {
			return nil, fault.Internalf("generate key pair", err)
		}
		defer clear(priv)
		rec.PublicKey = pub
		rec.KCV, rec.KCVAlgorithm = publicKCV(pub), keyspec.KCVSHA1
		if rec.KeyBlock, err = s.wrapStored(id, a, in.Exportable, priv); err != nil {
			return nil, err
		}
	}
	return s.finishCreate(rec, in.Enabled, in.Tags, in.ReplicationRegions, in.AuditOutbox)
}

// finishCreate sets the lifecycle fields of a new record and stores it with
// its tags; it replicates the key to regions (nil: the site's default
// replication regions; see planCreate). outbox, if set, gives the key's
// CreatedBy (CreateKeyInput.AuditOutbox).
func (s *Service) finishCreate(rec *keystore.Key, enabled *bool, tags []Tag, regions []string,
	outbox func(string) (string, error)) (*Key, error) {
	if err := s.checkNewTags(tags); err != nil {
		return nil, err
	}
	replMetas, err := s.planCreate(rec, regions)
	if err != nil {
		return nil, err
	}
	now := s.now()
	rec.State = StateCreateComplete
	rec.Created = now
	rec.Enabled = enabled == nil || *enabled
	if rec.Enabled {
		rec.UsageStart = now
	} else {
		rec.UsageStop = now
	}
	if outbox != nil {
		if rec.CreatedBy, err = outbox(s.keyARN(rec.ID)); err != nil {
			return nil, fault.Internalf("audit entry", err)
		}
	}
	if err := s.store.CreateKeyMetas(rec, storeTags(tags), "", replMetas); err != nil {
		return nil, storeErr("store key", err, s.keyARN(rec.ID))
	}
	if replMetas != nil {
		s.wakeSender()
	}
	return s.describe(rec), nil
}

// wrapStored wraps clear key material (symmetric key or PKCS#8 private key) under the profile main key.
func (s *Service) wrapStored(id string, a keyspec.Attributes, exportable bool, material []byte) (string, error) {
	h, err := storedHeader(id, a, exportable)
	if err != nil {
		return "", err
	}
	p, err := s.cust.Profile(s.cfg.Profile)
	if err != nil {
		return "", fault.Internalf("profile main key", err)
	}
	block, err := p.Wrap(h, material)
	if err != nil {
		return "", fault.Internalf("wrap key under profile main key", err)
	}
	return block, nil
}

// GetKey describes a key.
func (s *Service) GetKey(ident string) (*Key, error) {
	k, err := s.resolve(ident)
	if err != nil {
		return nil, err
	}
	out := s.describe(k)
	if s.approvals != nil && k.Attributes.Class == keyspec.PublicKey && len(k.Certificate) > 0 {
		out.Mpa = s.mpaStatusOf(k.ID) // root certificates imported under Multi-Party Approval
	}
	return out, nil
}

// ListKeys lists keys, optionally only those in state (an AWS KeyState; "" = all).
func (s *Service) ListKeys(state string, page Page) ([]*Key, string, error) {
	var filter func(*keystore.Key) bool
	if state != "" {
		filter = func(k *keystore.Key) bool { return k.State == state }
	}
	recs, next, err := s.store.ListKeys(filter, page.NextToken, page.Max)
	if err != nil {
		return nil, "", storeErr("list keys", err, "")
	}
	out := make([]*Key, len(recs))
	for i, r := range recs {
		out[i] = s.describe(r)
	}
	return out, next, nil
}

// DeleteKey schedules a key's deletion after days (3..180, default 7): the key
// is disabled at once and deleted, with its aliases, when the period ends.
func (s *Service) DeleteKey(ident string, days *int) (*Key, error) {
	d := 7
	if days != nil {
		d = *days
	}
	if d < 3 || d > 180 {
		return nil, fault.About(fault.SubjectDeletionPeriod, "must be between 3 and 180")
	}
	return s.update(ident, func(k *keystore.Key, now time.Time) error {
		if k.State == StateDeletePending {
			return fault.Conflictf("key %s is already pending deletion", s.keyARN(k.ID))
		}
		k.State = StateDeletePending
		k.DeletePending = now.Add(time.Duration(d) * 24 * time.Hour)
		if k.Enabled {
			k.Enabled = false
			k.UsageStop = now
		}
		return nil
	})
}

// RestoreKey cancels a scheduled deletion. The key stays disabled until StartKeyUsage.
func (s *Service) RestoreKey(ident string) (*Key, error) {
	return s.update(ident, func(k *keystore.Key, now time.Time) error {
		if k.State != StateDeletePending {
			return fault.Conflictf("key %s is not pending deletion", s.keyARN(k.ID))
		}
		k.State = StateCreateComplete
		k.DeletePending = time.Time{}
		return nil
	})
}

// StartKeyUsage enables a key.
func (s *Service) StartKeyUsage(ident string) (*Key, error) {
	return s.update(ident, func(k *keystore.Key, now time.Time) error {
		if k.State == StateDeletePending {
			return fault.Conflictf("key %s is pending deletion; restore it first", s.keyARN(k.ID))
		}
		k.Enabled = true
		k.UsageStart = now
		k.UsageStop = time.Time{}
		return nil
	})
}

// StopKeyUsage disables a key.
func (s *Service) StopKeyUsage(ident string) (*Key, error) {
	return s.update(ident, func(k *keystore.Key, now time.Time) error {
		if k.State == StateDeletePending {
			return fault.Conflictf("key %s is pending deletion", s.keyARN(k.ID))
		}
		k.Enabled = false
		k.UsageStop = now
		k.UsageStart = time.Time{}
		return nil
	})
}

// update resolves ident and applies fn atomically.
func (s *Service) update(ident string, fn func(*keystore.Key, time.Time) error) (*Key, error) {
	k, err := s.resolve(ident)
	if err != nil {
		return nil, err
	}
	replicated, err := s.beginChange(k.ID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	out, err := s.store.UpdateKey(k.ID, func(k *keystore.Key) error { return fn(k, now) })
	replicated()
	s.cache.dropKey(k.ID)
	if err != nil {
		if errors.Is(err, keystore.ErrNotFound) {
			return nil, fault.NotFoundf(ident, "key %s not found", ident)
		}
		return nil, storeErr("update key", err, ident)
	}
	return s.describe(out), nil
}
