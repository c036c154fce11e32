package ops

import (
	"errors"
	"strings"

	"payhsm/hsm/tr31"
	"payhsm/keystore"
)

// KeyResource names, for authorization (package access), the key a key
// identifier refers to. keyARN is the key's ARN: ident itself when it is a
// key ARN (nothing is read: a policy decides on the ARN named, whether or
// not the key exists); the ARN of the key an alias is associated with (""
// when the alias does not exist or has no key); for a key block carried in
// a host request (BlockIdent), the key its binding block names, or "*" for a
// block that names no stored key. aliasARN is the alias ARN when ident is an
// alias. It checks nothing else: the operation still resolves the key and
// verifies a block's integrity (a forged binding fails there).
func (s *Service) KeyResource(ident string) (keyARN, aliasARN string) {
	if _, block, ok := parseBlockIdent(ident); ok {
		h, err := tr31.ParseHeader(block)
		if err != nil {
			return "*", ""
		}
		if id, ok := blockData(h, bindingBlock); ok && keystore.ValidID(id) {
			return s.keyARN(id), ""
		}
		return "*", ""
	}
	name, ok := s.aliasName(ident)
	if !ok {
		return ident, ""
	}
	aliasARN = ident
	if !strings.HasPrefix(ident, "arn:") {
		aliasARN = s.cache.aliasARN(s.arnPrefix(), name)
	}
	w, gen := s.cache.get(ident)
	if w != nil {
		keyARN = w.ARN
		w.Release()
		return keyARN, aliasARN
	}
	// Cache the alias's working key, as Working would: the operation that
	// follows runs on the key's ARN (the front ends pin an alias to the key
	// authorized), so it does not, and without this every request naming the
	// alias would read the store here.
	if s.cust.Available() == nil {
		if rec, err := s.resolve(ident); err == nil {
			if w, err := s.open(rec); err == nil {
				keyARN = w.ARN
				s.cache.put(ident, w, gen)
				w.Release()
				return keyARN, aliasARN
			}
		}
	}
	a, err := s.store.GetAlias(name)
	if err != nil || a.KeyID == "" {
		if err != nil && !errors.Is(err, keystore.ErrNotFound) {
			s.log.Debug("alias lookup for authorization failed")
		}
		return "", aliasARN
	}
	return s.keyARN(a.KeyID), aliasARN
}

// AliasARN is the ARN of an alias name in this region and account.
func (s *Service) AliasARN(name string) string { return s.arnPrefix() + name }

// aliasARN is prefix+name, remembered per name so that authorizing a
// request that names an alias allocates nothing. The memo is bounded: it
// is emptied when it reaches memoKeys names (names come from requests).
func (c *keyCache) aliasARN(prefix, name string) string {
	if v, ok := c.aliasARNs.Load(name); ok {
		return v.(string)
	}
	arn := prefix + name
	c.aliasARNs.Store(name, arn)
	return arn
}
