package ops

import (
	"encoding/json"

	"payhsm/keystore"
)

// ReplicationOutboxReadsForTest is how many replication records
// ReplicationOutbox has read.
func (s *Service) ReplicationOutboxReadsForTest() int64 { return s.repl.outboxReads.Load() }

// DropReplicationIndexForTest deletes the outbox index and its marker, as
// in a store written before the index existed.
func (s *Service) DropReplicationIndexForTest() error {
	names, err := s.store.MetaNames(metaReplPending)
	if err != nil {
		return err
	}
	return s.store.PutMetas(nil, append(names, metaReplIndexBuilt))
}

// HoldReplicationLockForTest takes the lock that serializes the changes of
// replicated keys with the sender's snapshots, until release is called.
func (s *Service) HoldReplicationLockForTest() (release func()) {
	s.repl.mu.Lock()
	return s.repl.mu.Unlock
}

// SetDefaultsAsAnotherNodeForTest writes the default replication regions
// straight into the store, as another node of a shared store would, and,
// when notify, delivers the change as Follow would.
func (s *Service) SetDefaultsAsAnotherNodeForTest(regions []string, notify bool) error {
	b, err := json.Marshal(regions)
	if err != nil {
		return err
	}
	if err := s.store.PutMeta(metaReplDefaults, b); err != nil {
		return err
	}
	if notify {
		s.storeChanged(keystore.Change{Meta: []string{metaReplDefaults}})
	}
	return nil
}
