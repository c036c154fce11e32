package ops

// ReplicationOutboxReadsForTest is how many replication records
// ReplicationOutbox has read.
func (s *Service) ReplicationOutboxReadsForTest() int64 { return s.repl.outboxReads.Load() }
