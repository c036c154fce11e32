package ops

import (
	"context"
	"slices"
	"strconv"
	"time"

	"payhsm/fault"
	"payhsm/keystore"
)

// A fleet: several services over one shared key store (etcd). Each keeps
// its own working-key cache, which must follow the writes made through the
// others (Follow), and the background jobs that change the store on their
// own (the purge of keys past their deletion waiting period, a main key
// rotation) run on one node at a time, the elected leader (Run). On a store
// with one process (Pebble) neither is needed: Follow does nothing, and the
// service always leads.

// DefaultLeaderTTL is how long a fleet waits for a lost leader before
// another node takes its jobs over.
const DefaultLeaderTTL = 10 * time.Second

// leaderRole names the election of the node that runs the fleet's
// background jobs.
const leaderRole = "maintenance"

// Follow makes the working-key cache follow the writes that any process
// makes to a shared store, until ctx ends: a key whose record changed is
// dropped, entries reached through an alias are dropped when an alias
// changes, and everything is dropped when a profile main key record
// changes or when changes may have been missed. While the store has not
// been reached for longer than staleness (keystore.Follow), Working refuses
// every key (fault.Unavailable: ServiceUnavailableException on the AWS API,
// error 41 on the host port). It reports whether the store is shared; on
// one that is not it does nothing.
func (s *Service) Follow(ctx context.Context, staleness time.Duration) bool {
	// What is cached before the watch begins is dropped by the Reset the
	// watch starts with.
	shared := s.store.Follow(ctx, staleness, s.storeChanged)
	if shared {
		s.repl.following.Store(true)
	}
	return shared
}

// OnMetaChange registers fn, called (from Follow's goroutine) with the
// names of the metadata records another process wrote or deleted (other
// than profile main key records), or with reset true when changes may have
// been missed: for whoever caches them (the principals).
func (s *Service) OnMetaChange(fn func(names []string, reset bool)) { s.onMeta.Store(&fn) }

// storeChanged drops what a change to the store makes stale.
func (s *Service) storeChanged(c keystore.Change) {
	if c.Reset || slices.Contains(c.Meta, metaReplDefaults) {
		s.dropDefaults()
	}
	if fn := s.onMeta.Load(); fn != nil && (c.Reset || len(c.Meta) > 0) {
		(*fn)(c.Meta, c.Reset)
	}
	if c.Reset || c.MainKeys {
		s.cache.dropAll()
		return
	}
	if len(c.Aliases) > 0 {
		s.cache.dropAliases()
	}
	switch len(c.KeyIDs) {
	case 0:
	case 1:
		s.cache.dropKey(c.KeyIDs[0])
	default:
		ids := make(map[string]bool, len(c.KeyIDs))
		for _, id := range c.KeyIDs {
			ids[id] = true
		}
		s.cache.dropIf(func(_ string, w *WorkingKey) bool { return w.Record.ID != "" && ids[w.Record.ID] })
		for id := range ids {
			s.cache.policies.Delete(id)
		}
	}
}

// Leading reports whether this service runs the fleet's background jobs
// now: always on a store with one process; on a shared one, while it is
// the elected leader (inside Run).
func (s *Service) Leading() bool {
	return !s.store.Shared() || s.leading.Load()
}

// Leader names the node that runs the fleet's background jobs now (its
// Config.Node): this one on a store with one process; "" when none leads
// or the store cannot tell.
func (s *Service) Leader() string {
	if !s.store.Shared() {
		return s.cfg.Node
	}
	name, ok, err := s.store.Leader(leaderRole)
	if err != nil || !ok {
		return ""
	}
	return name
}

// errNotLeader refuses a fleet job on a node that does not lead.
func (s *Service) errNotLeader(what string) error {
	where := "no node leads right now: retry in a few seconds"
	if l := s.Leader(); l != "" {
		where = "run it on node " + strconv.Quote(l)
	}
	return &fault.Error{Kind: fault.Unavailable, Message: what + " runs on the fleet's leader node only, and this node (" +
		strconv.Quote(s.cfg.Node) + ") does not lead: " + where}
}
