package ops

// DropWorkingKeys empties s's working-key cache, so that the next use of
// every key loads and unwraps it (cold-key benchmarks).
func DropWorkingKeys(s *Service) { s.cache.dropAll() }
