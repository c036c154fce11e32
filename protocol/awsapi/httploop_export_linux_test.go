//go:build linux

package awsapi

import (
	"time"

	"payhsm/internal/uring"
)

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

// HTTPRingAvailable reports whether an io_uring event loop can be set up
// here (nil), or why not.
func HTTPRingAvailable() error {
	g, err := newHTTPRing()
	if err != nil {
		return err
	}
	g.r.Close()
	return nil
}

// FailHTTPRingSetup makes every io_uring ring setup fail with err until the
// returned function restores it (TestEventLoopRingFallback; not parallel).
func FailHTTPRingSetup(err error) (restore func()) {
	old := setupHTTPRing
	setupHTTPRing = func(uint32, uint32) (*uring.Ring, error) { return nil, err }
	return func() { setupHTTPRing = old }
}

// LoopsEnded waits up to d for every event loop to end (after Close or
// Shutdown) and reports whether they did.
func (s *HTTPServer) LoopsEnded(d time.Duration) bool {
	end := time.After(d)
	for _, l := range s.loops {
		select {
		case <-l.done:
		case <-end:
			return false
		}
	}
	return true
}

// RingStats sums the io_uring loops' counters of rarer paths: partial
// sends, completions held while a send was in flight, recvs paused, failed
// sends, connections that left with their recv armed. Call it once the
// loops run (LoopDriver is set).
func (s *HTTPServer) RingStats() (partial, held, paused, sendErrors, leftArmed int64) {
	for _, l := range s.loops {
		if g := l.ring; g != nil {
			partial += g.stats.partialSends.Load()
			held += g.stats.heldInput.Load()
			paused += g.stats.pauses.Load()
			sendErrors += g.stats.sendErrors.Load()
			leftArmed += g.stats.leftArmed.Load()
		}
	}
	return
}
