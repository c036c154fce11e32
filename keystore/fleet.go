package keystore

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"payhsm/fault"
	"payhsm/keystore/kv"
)

// A store on a shared engine (etcd) is written by every node of a fleet.
// What a node caches from it (the operations layer's working keys) must
// follow the others' writes, and a node cut off from the engine must stop
// trusting its cache after a bound. Follow does both; on an engine with one
// process (Pebble) it does nothing, and the store is always current.

// DefaultStaleness is how long a node cut off from a shared store serves
// from what it cached (see Follow).
const DefaultStaleness = 30 * time.Second

// MaxStaleness bounds the configured staleness.
const MaxStaleness = time.Hour

// ErrStale: the node has not been in contact with the shared store for
// longer than its staleness bound, so a key it cached may have been
// disabled or deleted elsewhere; data-plane operations are refused until
// contact is back.
var ErrStale = &fault.Error{Kind: fault.Unavailable, Message: "the key store has been unreachable for longer than the staleness bound; cached keys are not used until it is back"}

// ErrUnreachable: a call refused at once because the shared store is not
// reachable now (no contact for several probes): a write was not made,
// and nothing is queued.
var ErrUnreachable = &fault.Error{Kind: fault.Unavailable, Message: "the key store is unreachable (etcd down or without quorum); the call was refused, nothing was written or queued"}

// Change is what changed in the store, as Follow reports it. The fields
// name what a cache of the store may have to drop.
type Change struct {
	// KeyIDs are keys whose key record was written or deleted (a state,
	// enabled, usage period or key block change, a deletion, a purge).
	KeyIDs []string
	// Aliases are alias names that were created, re-pointed or deleted.
	Aliases []string
	// MainKeys: a profile main key record changed (a rotation, a new
	// version, a retirement; any node's copy): every key opened under the
	// old one is suspect.
	MainKeys bool
	// Meta are the names of the other metadata records written or deleted
	// (principals, the approval state ...), for whoever caches them.
	Meta []string
	// Reset: changes may have been missed (the engine's history was
	// compacted while the watch was away): drop everything cached.
	Reset bool
}

// empty reports whether c names nothing.
func (c *Change) empty() bool {
	return len(c.KeyIDs) == 0 && len(c.Aliases) == 0 && !c.MainKeys && len(c.Meta) == 0 && !c.Reset
}

// follow is the state of Follow: the staleness bound and the last contact.
type follow struct {
	staleness   time.Duration
	unreachable time.Duration // no contact for this long: writes are refused at once
	contact     atomic.Int64  // Unix nanoseconds of the last confirmed contact
}

// mainKeyMeta is where custody keeps profile main key records (owner
// metadata); a change under it, or under a fleet node's copy
// (custody/node/<node>/profile/), is a main key change.
const (
	mainKeyMeta     = "custody/profile/"
	nodeMainKeyMeta = "custody/node/"
)

// isMainKeyMeta reports whether the metadata record name is a profile main
// key record: custody/profile/<p> or custody/node/<node>/profile/<p>.
func isMainKeyMeta(name string) bool {
	if strings.HasPrefix(name, mainKeyMeta) {
		return true
	}
	rest, ok := strings.CutPrefix(name, nodeMainKeyMeta)
	if !ok {
		return false
	}
	_, rest, ok = strings.Cut(rest, "/")
	return ok && strings.HasPrefix(rest, "profile/")
}

// Follow follows the writes of the other processes on a shared engine
// until ctx ends, and reports whether it does: false (at once) on an engine
// with one process, where it is not needed.
//
// It calls fn, from one goroutine, with what every transaction committed
// by any process (this one included) changed, within the watch's latency
// of the commit (docs/fleet.md gives the measured bound), and with Reset
// when changes may have been missed: first once the watch has begun (what
// was cached before may predate a change it does not deliver), then
// whenever it could not resume. A probe, every staleness/30 (at least
// 100 ms, at most one second), confirms that the engine answers with a
// quorum and that the watch has delivered everything committed before it:
// the store's contact time. Stale then fails once the last contact is older
// than staleness, and every call on the store (writes, and reads of what is
// not cached) is refused at once (ErrUnreachable) once it is older than
// three probes or the engine's request timeout, whichever is longer,
// instead of each waiting for that timeout; a call made before then fails
// after the timeout (a write's outcome is then unknown). staleness 0 means
// DefaultStaleness.
func (s *Store) Follow(ctx context.Context, staleness time.Duration, fn func(Change)) bool {
	w, ok := s.eng.(kv.Watcher)
	if !ok {
		return false
	}
	if staleness <= 0 {
		staleness = DefaultStaleness
	}
	probe := min(time.Second, max(100*time.Millisecond, staleness/30))
	// Unreachable once no probe has answered for three probes, or for the
	// engine's request timeout when that is longer: on a slow but live
	// cluster a probe may take up to that, and a call waits that long anyway.
	unreachable := 3 * probe
	if rt, ok := s.eng.(interface{ RequestTimeout() time.Duration }); ok {
		unreachable = max(unreachable, rt.RequestTimeout())
	}
	f := &follow{staleness: staleness, unreachable: unreachable}
	f.contact.Store(time.Now().UnixNano()) // the store answered a linearizable read at open
	if !s.follow.CompareAndSwap(nil, f) {
		s.log.Error("keystore: Follow called twice; the second is ignored")
		return true
	}
	var lost atomic.Bool // the loss of contact was logged
	contact := func(t time.Time) {
		if lost.CompareAndSwap(true, false) {
			s.log.Info("key store contact back: cached keys are served again", zap.Duration("after", time.Since(time.Unix(0, f.contact.Load()))))
		}
		f.contact.Store(t.UnixNano())
	}
	go func() { // log the loss of contact once
		t := time.NewTicker(probe)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := s.Stale(); err != nil && lost.CompareAndSwap(false, true) {
				s.log.Error("key store unreachable for longer than the staleness bound: data-plane operations are refused", zap.Duration("staleness", staleness))
			}
		}
	}()
	go w.Watch(ctx, probe, func(ev kv.WatchEvent) {
		if c := changeOf(ev); !c.empty() {
			fn(c)
		}
	}, contact)
	return true
}

// changeOf translates engine keys into what they mean to a cache.
func changeOf(ev kv.WatchEvent) Change {
	c := Change{Reset: ev.Reset}
	for _, k := range ev.Keys {
		key := string(k)
		switch {
		case strings.HasPrefix(key, pfxKey):
			c.KeyIDs = append(c.KeyIDs, key[len(pfxKey):])
		case strings.HasPrefix(key, pfxAlias):
			c.Aliases = append(c.Aliases, key[len(pfxAlias):])
		case strings.HasPrefix(key, pfxMeta):
			if name := key[len(pfxMeta):]; isMainKeyMeta(name) {
				c.MainKeys = true
			} else {
				c.Meta = append(c.Meta, name)
			}
		}
	}
	return c
}

// Stale returns nil while the store is current enough to serve from what
// was cached of it: always on an engine with one process, and on a shared
// one until the last confirmed contact (see Follow) is older than the
// staleness bound; then an error wrapping ErrStale. It costs an atomic
// load and, when following, a clock read.
func (s *Store) Stale() error {
	if f := s.follow.Load(); f != nil { // small enough to inline at the caller
		return f.stale()
	}
	return nil
}

// stale is Stale for a store that follows a shared one.
func (f *follow) stale() error {
	age := time.Duration(time.Now().UnixNano() - f.contact.Load())
	if age <= f.staleness {
		return nil
	}
	return fmt.Errorf("%w (no contact for %v, bound %v)", ErrStale, age.Round(time.Millisecond), f.staleness)
}

// Contact is the time of the last confirmed contact with a shared store,
// and whether the store follows one (readiness and status).
func (s *Store) Contact() (time.Time, bool) {
	f := s.follow.Load()
	if f == nil {
		return time.Time{}, false
	}
	return time.Unix(0, f.contact.Load()), true
}

// Reachable returns nil unless the store is shared, followed, and has not
// been reached for several probes (readiness): then an error wrapping
// ErrUnreachable.
func (s *Store) Reachable() error { return s.reachable() }

// reachable returns ErrUnreachable, wrapped, when a followed shared store
// has not been reached for several probes: a call is then refused at once
// rather than left to time out.
func (s *Store) reachable() error {
	f := s.follow.Load()
	if f == nil {
		return nil
	}
	age := time.Duration(time.Now().UnixNano() - f.contact.Load())
	if age <= f.unreachable {
		return nil
	}
	return fmt.Errorf("%w (no contact for %v)", ErrUnreachable, age.Round(time.Millisecond))
}

// Shared reports whether the store is on an engine other processes share
// (a fleet's etcd), where Follow and Lead matter.
func (s *Store) Shared() bool {
	_, ok := s.eng.(kv.Elector)
	return ok
}

// Leader names the process that leads role on a shared store now (its
// candidate name); ok is false when none does, or the store is not shared.
func (s *Store) Leader(role string) (candidate string, ok bool, err error) {
	el, shared := s.eng.(kv.Elector)
	if !shared {
		return "", false, nil
	}
	return el.Leader(role)
}

// Lead runs run once per fleet: on a shared engine, only in the process
// elected leader for role among those on the store (candidate names this
// one), with a context that ends when leadership is lost; another process
// takes over within ttl of the leader's loss (see kv.Elector). On an engine
// with one process it runs run(ctx) at once. It returns when ctx ends.
func (s *Store) Lead(ctx context.Context, role, candidate string, ttl time.Duration, run func(context.Context)) {
	if el, ok := s.eng.(kv.Elector); ok {
		el.Lead(ctx, role, candidate, ttl, run)
		return
	}
	run(ctx)
}
