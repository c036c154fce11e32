//go:build linux

package awsapi

// LoopConns counts the connections s serves in its event loops now (for
// the external tests).
func (s *HTTPServer) LoopConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		if _, ok := c.rwc.(*loopRWC); ok {
			n++
		}
	}
	return n
}
