package hostcmd

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Connection limits. The port holds at most MaxConnections connections, and
// at most MaxConnectionsPerAddress from one source address (IPv6: one /64,
// which one host can fill with addresses at will). A connection that would
// exceed a limit is not refused: the longest-idle connection is closed to
// make room for it, from the newcomer's own address when that address is at
// its limit, else from the whole port. Idle is the time since a connection
// last sent anything (or since it was accepted).
//
// Why this policy holds against idle sockets. Refusing newcomers at the limit
// let a few hundred idle sockets lock every switch out until the idle timeout
// (a switch reconnects after a failure and finds the port full). With
// eviction, a newcomer is always served, so a flood of idle sockets cannot
// keep a switch out; and the per-address limit keeps one source from pushing
// out the connections of others: a single address at its limit only ever
// evicts its own connections. A busy switch connection is the least idle, so
// it is the last one evicted. What remains possible is churn from many
// addresses faster than a switch sends requests; that is a flood for the
// network's own defences (a firewall, SYN cookies), as on any TCP service.
//
// Evictions and refusals are counted (Stats) and summarised in the log at
// most once a minute, never one line per connection.

// limitLogEvery is how often at most the log summarises evictions and refusals.
const limitLogEvery = time.Minute

// tracked is one connection's place in the limits.
type tracked struct {
	src     netip.Addr   // the source key: the address, or its /64 for IPv6
	fd      int          // its descriptor in an event loop (Linux), -1 otherwise
	last    atomic.Int64 // Unix nanoseconds of its last received bytes (or acceptance)
	evicted atomic.Bool  // evicted: its owner closes it as soon as it can
	// evict asks the connection's owner (an event loop or its goroutine) to
	// close it; set before the connection is tracked.
	evict func()
}

// touch records activity on the connection. t may be nil (tests that build
// sessions by hand).
func (t *tracked) touch(now time.Time) {
	if t != nil {
		t.last.Store(now.UnixNano())
	}
}

// isEvicted reports whether the connection was evicted to make room.
func (t *tracked) isEvicted() bool { return t != nil && t.evicted.Load() }

// limits is the set of open connections, by source.
type limits struct {
	max, perAddr int

	mu    sync.Mutex
	all   map[*tracked]struct{}
	bySrc map[netip.Addr]map[*tracked]struct{}

	accepted, evictedAddr, evictedAll, refused atomic.Uint64

	logMu   sync.Mutex
	lastLog time.Time
	logged  [3]uint64 // evictedAddr, evictedAll, refused at the last summary
}

func newLimits(max, perAddr int) *limits {
	return &limits{max: max, perAddr: perAddr, all: map[*tracked]struct{}{}, bySrc: map[netip.Addr]map[*tracked]struct{}{}}
}

// sourceKey is the address the per-address limit counts: the IP address of
// a TCP peer, its /64 for IPv6, and the zero Addr for anything else.
func sourceKey(a net.Addr) netip.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip := ta.AddrPort().Addr().Unmap()
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// admit makes room for t (evicting the longest-idle connection of its
// source, or of the port, when a limit is reached) and tracks it.
func (l *limits) admit(t *tracked, now time.Time) {
	t.touch(now)
	l.accepted.Add(1)
	l.mu.Lock()
	var victim *tracked
	same := l.bySrc[t.src]
	switch {
	case l.perAddr > 0 && len(same) >= l.perAddr:
		victim = longestIdle(same)
		l.evictedAddr.Add(1)
	case len(l.all) >= l.max:
		victim = longestIdle(l.all)
		l.evictedAll.Add(1)
	}
	if victim != nil {
		l.removeLocked(victim)
		victim.evicted.Store(true)
	}
	l.all[t] = struct{}{}
	same = l.bySrc[t.src] // the eviction may have removed the set
	if same == nil {
		same = map[*tracked]struct{}{}
		l.bySrc[t.src] = same
	}
	same[t] = struct{}{}
	l.mu.Unlock()
	if victim != nil {
		victim.evict()
	}
}

// longestIdle returns the member of set with the oldest activity.
func longestIdle(set map[*tracked]struct{}) *tracked {
	var v *tracked
	var oldest int64
	for t := range set {
		if at := t.last.Load(); v == nil || at < oldest {
			v, oldest = t, at
		}
	}
	return v
}

// release forgets t when its connection closes (a no-op for an evicted one,
// whose place was given to the connection that evicted it).
func (l *limits) release(t *tracked) {
	if t == nil {
		return
	}
	l.mu.Lock()
	l.removeLocked(t)
	l.mu.Unlock()
}

func (l *limits) removeLocked(t *tracked) {
	if _, ok := l.all[t]; !ok {
		return
	}
	delete(l.all, t)
	same := l.bySrc[t.src]
	delete(same, t)
	if len(same) == 0 {
		delete(l.bySrc, t.src)
	}
}

// open is the number of connections counted against the limits.
func (l *limits) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.all)
}

// summarise logs, at most once per limitLogEvery, how many connections were
// evicted or refused since the last summary. It is called after each such
// event; a burst is summarised by the first event after the interval.
func (l *limits) summarise(log *zap.Logger, now time.Time) {
	l.logMu.Lock()
	defer l.logMu.Unlock()
	if !l.lastLog.IsZero() && now.Sub(l.lastLog) < limitLogEvery {
		return
	}
	cur := [3]uint64{l.evictedAddr.Load(), l.evictedAll.Load(), l.refused.Load()}
	log.Warn("host port connection limits reached: longest-idle connections evicted to admit new ones (a summary, at most one a minute)",
		zap.Uint64("evictedPerAddressLimit", cur[0]-l.logged[0]), zap.Uint64("evictedOverallLimit", cur[1]-l.logged[1]),
		zap.Uint64("refused", cur[2]-l.logged[2]), zap.Int("maxConnections", l.max), zap.Int("maxConnectionsPerAddress", l.perAddr),
		zap.Duration("since", sinceOr(now, l.lastLog)))
	l.logged, l.lastLog = cur, now
}

func sinceOr(now, t time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return now.Sub(t)
}

// ConnStats are the host port's connection counters (for metrics).
type ConnStats struct {
	Open     int    // connections open now (counted against the limits)
	Accepted uint64 // connections accepted since start
	// EvictedPerAddress and EvictedOverall count the longest-idle
	// connections closed to admit a newcomer, at the per-address and at the
	// overall limit.
	EvictedPerAddress uint64
	EvictedOverall    uint64
	// Refused counts connections closed at once without being served (the
	// server was shutting down).
	Refused uint64
}

// ConnStats returns the connection counters.
func (s *Server) ConnStats() ConnStats {
	l := s.limits
	return ConnStats{Open: l.open(), Accepted: l.accepted.Load(), EvictedPerAddress: l.evictedAddr.Load(),
		EvictedOverall: l.evictedAll.Load(), Refused: l.refused.Load()}
}
