package ops

// DropWorkingKeys empties s's working-key cache, so that the next use of
// every key loads and unwraps it (cold-key benchmarks). It drops the
// entries one by one (dropIf) rather than clearing every table (dropAll,
// which also empties every front slot: about a third of the cold
// benchmark's time once the front table came, none of it a miss's).
func DropWorkingKeys(s *Service) {
	s.cache.dropIf(func(string, *WorkingKey) bool { return true })
	s.cache.policies.Clear()
}

// DropPolicies empties s's cache of compiled resource policies only.
func DropPolicies(s *Service) { s.cache.policies.Clear() }

// SetWorkingKeyCapacity sets how many keys s's working-key cache holds, on
// a service that has cached none yet (BenchmarkColdKeysLarge).
func SetWorkingKeyCapacity(s *Service, n int) {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	s.cache.capacity = n
}
