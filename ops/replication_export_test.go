package ops

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
