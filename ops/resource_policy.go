package ops

import (
	"errors"
	"strings"
	"time"

	"go.uber.org/zap"

	"payhsm/access"
	"payhsm/fault"
	"payhsm/keystore"
)

// Resource-based policies (PutResourcePolicy, GetResourcePolicy,
// DeleteResourcePolicy). A key's policy is kept in its key record (so the
// store authenticates it with the key, and it goes when the key is purged)
// as the JSON the caller gave; its compiled form is cached by key id in the
// working-key cache, dropped with every change of the key, so that
// authorizing a data operation costs one map lookup and no store read or
// allocation. A replica does not carry its primary's policy (as KMS
// multi-region keys do not share key policies): a change to a replica is
// refused, and a replication update replaces the record.

// PutResourcePolicy attaches (or replaces) the resource-based policy of the
// key keyARN. A malformed policy is a Validation fault naming the problem;
// one granting public access is a PublicPolicy fault.
func (s *Service) PutResourcePolicy(keyARN, doc string) (string, error) {
	k, err := s.resolveARN(keyARN)
	if err != nil {
		return "", err
	}
	arn := s.keyARN(k.ID)
	rp, err := access.ParseResourcePolicy(arn, doc)
	if err != nil {
		return "", err
	}
	if err := rp.CheckPublic(); err != nil {
		return "", err
	}
	if _, err := s.update(arn, func(k *keystore.Key, _ time.Time) error {
		if k.State == StateDeletePending {
			return fault.Conflictf("key %s is pending deletion", arn)
		}
		k.ResourcePolicy = doc
		return nil
	}); err != nil {
		return "", err
	}
	return arn, nil
}

// GetResourcePolicy returns the key's resource-based policy as it was put;
// NotFound when the key has none.
func (s *Service) GetResourcePolicy(keyARN string) (arn, doc string, err error) {
	k, err := s.resolveARN(keyARN)
	if err != nil {
		return "", "", err
	}
	arn = s.keyARN(k.ID)
	if k.ResourcePolicy == "" {
		return "", "", fault.NotFoundf(keyARN, "key %s has no resource-based policy", arn)
	}
	return arn, k.ResourcePolicy, nil
}

// DeleteResourcePolicy removes the key's resource-based policy; removing
// none is not an error (the operation is idempotent in the model).
func (s *Service) DeleteResourcePolicy(keyARN string) error {
	k, err := s.resolveARN(keyARN)
	if err != nil {
		return err
	}
	if k.ResourcePolicy == "" {
		return nil
	}
	_, err = s.update(s.keyARN(k.ID), func(k *keystore.Key, _ time.Time) error {
		k.ResourcePolicy = ""
		return nil
	})
	return err
}

// AuthzResource is the authorization resource of a key identifier (see
// KeyResource) with the key's compiled resource-based policy, if it has
// one. The policy comes from the cache; a miss reads the key record once
// (a key that does not exist has none, so the decision does not depend on
// whether it exists).
func (s *Service) AuthzResource(ident string) access.Resource {
	keyARN, aliasARN := s.KeyResource(ident)
	return s.withPolicy(keyARN, aliasARN)
}

// withPolicy makes the resource of a key ARN and alias ARN as KeyResource
// returned them.
func (s *Service) withPolicy(keyARN, aliasARN string) access.Resource {
	if keyARN == "" {
		return access.Resource{ARN: aliasARN}
	}
	return access.Resource{ARN: keyARN, Alias: aliasARN, Policy: s.ResourcePolicyOf(keyARN)}
}

// ResourcePolicyOf is the compiled resource-based policy of the key keyARN
// (nil when it has none, or is not a key of this site), for an edge that
// keeps a resource's ARN across requests but must see policy changes.
func (s *Service) ResourcePolicyOf(keyARN string) *access.ResourcePolicy {
	if keyARN == "*" {
		return nil
	}
	return s.resourcePolicy(keyARN)
}

// policyEntry is a cached compiled policy (rp nil: the key has none).
type policyEntry struct{ rp *access.ResourcePolicy }

// resourcePolicy is the compiled policy of the key keyARN: the cached
// working key's (found without a reference: only its policy is read), or
// from the cache of keys that are not cached, else read from the store and
// kept with the working key it caches, or in that cache. A key that does
// not exist here, or cannot be read, has none (the operation then fails on
// the key itself).
func (s *Service) resourcePolicy(keyARN string) *access.ResourcePolicy {
	id, ok := s.localKeyID(keyARN)
	if !ok {
		return nil
	}
	if w := s.cache.find(keyARN); w != nil {
		if e := w.policy.Load(); e != nil {
			return e.rp
		}
	}
	if v, ok := s.cache.policies.Load(id); ok {
		return v.(*policyEntry).rp
	}
	k, w, gen, err := s.policyRecord(keyARN, id)
	if err != nil {
		if !errors.Is(err, keystore.ErrNotFound) {
			s.log.Debug("key read for authorization failed", zap.String("key", keyARN))
		}
		return nil
	}
	e := &policyEntry{}
	if k.ResourcePolicy != "" {
		if e.rp, err = access.ParseResourcePolicy(keyARN, k.ResourcePolicy); err != nil {
			s.log.Error("stored resource policy does not compile: the key refuses everyone until it is replaced",
				zap.String("key", keyARN), zap.Error(err))
			e.rp = access.UnreadableResourcePolicy(keyARN)
		}
	}
	if w != nil {
		// Its record is k. Were w dropped meanwhile (a change to the key),
		// nobody finds it any more: the next request reads the key again.
		w.policy.Store(e)
	} else {
		s.cache.putPolicy(id, e, gen)
	}
	return e.rp
}

// policyRecord is the record of key id (ARN keyARN) whose policy is not
// cached: the cached working key's, else read from the store, the key then
// opened and cached as Working would (the operation that follows uses it),
// so that a key not in the cache is read once per request, not twice. w is
// the working key holding the record, when one is or was just cached (its
// reference already given back: the caller may set its policy only); gen is
// the cache generation read before the record.
func (s *Service) policyRecord(keyARN, id string) (k *keystore.Key, w *WorkingKey, gen uint64, err error) {
	w, gen = s.cache.get(keyARN)
	if w != nil {
		w.Release()
		return w.Record, w, gen, nil
	}
	if k, err = s.store.GetKey(id); err != nil {
		return nil, nil, gen, err
	}
	// Only a key usable now: any other goes through Working's own read
	// (resolve purges a key whose deletion is due, for one).
	if s.cust.Available() == nil && s.store.Stale() == nil && s.usable(k, keyARN) == nil {
		if w, err := s.open(k); err == nil {
			s.cache.put(keyARN, w, gen)
			w.Release()
			return k, w, gen, nil
		}
	}
	return k, nil, gen, nil
}

// localKeyID is the id of a key ARN of this region and account.
func (s *Service) localKeyID(arn string) (string, bool) {
	rest, ok := s.cutARNPrefix(arn)
	if !ok {
		return "", false
	}
	id, ok := strings.CutPrefix(rest, "key/")
	if !ok || !keystore.ValidID(id) {
		return "", false
	}
	return id, true
}
