package custody

import (
	"crypto/rand"
	"errors"
	"fmt"

	"go.uber.org/zap"
)

// Record authentication. The key store authenticates every record it holds
// for the layers above (key records, aliases, tags, indexes, service
// metadata) with HMAC-SHA256 under a key derived from a profile main key
// version (keystore.Authenticator): HKDF-SHA256 with the main key as the
// secret, no salt, and recordKeyInfo plus the profile name as the info, so
// the key serves this one purpose, for this one profile. Deriving it from the
// profile main key rather than the region main key means every appliance that
// shares a profile main key (a fleet, each node with its own token) can
// verify the profile's records, and that the derivation runs in memory: the
// token is not called per record. A main key version's record key lives and
// dies with that version: a rotation re-seals the profile's records under the
// new version before the old one is retired.
const recordKeyInfo = "payhsm/keystore/record-authentication/v2/"

// RecordKey returns the record-authentication key of profile's main key
// version (a copy), or nil and no error when the profile has no such
// version: not a profile of this appliance, or a retired version. It
// implements keystore.Authenticator.
func (c *Custodian) RecordKey(profile string, version int) ([]byte, error) {
	if CheckProfileName(profile) != nil || version < 1 {
		return nil, nil
	}
	p, err := c.Profile(profile)
	if errors.Is(err, ErrNoProfile) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	m := p.keys[version]
	if m == nil {
		return nil, nil
	}
	return append([]byte(nil), m.record...), nil
}

// ActiveRecordKey returns profile's active main key version and its
// record-authentication key (a copy), for new records; 0 and nil, with no
// error, when the profile has no main key. It implements
// keystore.Authenticator.
func (c *Custodian) ActiveRecordKey(profile string) (int, []byte, error) {
	if CheckProfileName(profile) != nil {
		return 0, nil, nil
	}
	p, err := c.Profile(profile)
	if errors.Is(err, ErrNoProfile) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	m := p.keys[p.active]
	if m == nil {
		return 0, nil, fmt.Errorf("custody: profile %s has no active main key", profile)
	}
	return p.active, append([]byte(nil), m.record...), nil
}

// StoreFormatLabel labels the marker key custody creates in the token once
// the key store this appliance uses holds authenticated records (keystore
// format 2). The marker is an AES key that is never used: the token is the
// one place a writer of the data directory cannot roll back, so a token that
// holds the marker refuses a store of an older format (a downgrade would make
// the upgrade authenticate whatever the older records say).
const StoreFormatLabel = "payhsm-keystore-format-2"

// StoreFormatMarked reports whether the token holds the store-format marker.
func (c *Custodian) StoreFormatMarked() (bool, error) {
	c.tokMu.RLock()
	defer c.tokMu.RUnlock()
	return c.storeFormatMarked()
}

// storeFormatMarked is StoreFormatMarked; c.tokMu is held.
func (c *Custodian) storeFormatMarked() (bool, error) {
	if c.closed {
		return false, errors.New("custody: closed")
	}
	if c.token == nil {
		return false, c.noSession("find the store format marker")
	}
	found, err := c.token.FindKeys(StoreFormatLabel)
	if err != nil {
		return false, fmt.Errorf("custody: find the store format marker: %w", err)
	}
	return len(found) > 0, nil
}

// MarkStoreFormat creates the store-format marker in the token, unless it is
// there already.
func (c *Custodian) MarkStoreFormat() error {
	c.tokMu.RLock()
	defer c.tokMu.RUnlock()
	marked, err := c.storeFormatMarked()
	if err != nil || marked {
		return err
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return err
	}
	if _, err := c.token.GenerateAESKey(id, StoreFormatLabel, 128); err != nil {
		return fmt.Errorf("custody: create the store format marker in the token: %w", err)
	}
	c.log.Info("store format marker created in the token", zap.String("label", StoreFormatLabel))
	return nil
}
