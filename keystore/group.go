package keystore

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"payhsm/keystore/kv"
)

// Grouped writes on an optimistic engine with the journal on (etcd).
//
// There every write transaction of this process reads and rewrites this
// writer's journal head, so two of them always conflict, and update runs
// them one at a time (attempt, alone): one etcd round trip after another, a
// few milliseconds each, whatever the number of writers. updateGrouped lets
// the writers queued meanwhile share one transaction instead: the first
// becomes the leader and, holding writing exclusively as a lone writer
// would, runs the functions of everyone queued, in order, in one engine
// transaction with one journal entry and one head write, commits it, gives
// each its outcome, and hands the lead to the first writer still queued.
//
// Each member's function runs in a transaction of its own inside the
// group's (memberTxn): its writes are staged, and join the group's only if
// the function succeeds, so a member that fails (a key that exists, a bad
// argument) leaves nothing behind and the others commit without it. A
// member reads its own staged writes, then those of the members before it,
// then the engine through the group's transaction, which checks at commit
// that what it read is unchanged (etcdkv's transactions do not read their
// own writes, so the group keeps them until the commit). A member that
// scans leaves the group and runs alone (a scan through staged writes is
// not worth its code for the writes that are grouped). When the group does
// not commit, every member gets the group's error, the failed ones too (one
// may have failed on what a member before it staged): on a conflict every
// member runs again, as a lone writer would. A group too large for the
// engine's transaction limits runs its members one at a time. A member
// whose function panics is left out and panics again in its own goroutine
// (the HTTP server answers that request alone); a panic of the group's own
// fails every member, and the lead still passes on.
//
// Only operations whose function does nothing but read and write records
// are grouped (CreateKey); the checkpoint, which writes the head itself,
// and everything else keep update.

// maxGroup bounds the members of one group: on etcd (128 operations and
// 1.5 MiB per transaction by default) 16 key creations with a tag and an
// alias each are 16 × 5 writes and 16 × 2 reads, with the entry and head.
const maxGroup = 16

// errGroupScan is a member's scan: the member runs alone instead.
var errGroupScan = errors.New("keystore: a scan in a grouped write")

// errGroupPanic is the error of a member whose group ended in a panic; the
// member whose own function panicked panics again in its own goroutine.
var errGroupPanic = errors.New("keystore: a grouped write panicked")

// groupMember is one write waiting for its group.
type groupMember struct {
	what   string
	fn     func(w *writer) error
	queued time.Time
	err    error
	panic  any           // what its function panicked with, to panic with again in its own goroutine
	lead   bool          // woken to lead, not with its outcome
	done   chan struct{} // closed when err is set, or lead
}

// writeGroups is the queue of grouped writes.
type writeGroups struct {
	mu      sync.Mutex
	queue   []*groupMember
	leading bool
}

// updateGrouped is update for fn that only reads and writes records (no
// scan, nothing written by the journal's own code): on an optimistic engine
// with the journal on it shares a transaction with the writes of this
// process queued at the same time; elsewhere it is update.
func (s *Store) updateGrouped(what string, fn func(w *writer) error) error {
	return s.updateIn(what, s.optimistic && s.fr.on.Load(), fn)
}

// grouped queues fn and returns its outcome. The first writer to find no
// group running leads: it runs the group of up to maxGroup writers queued
// first (itself among them), gives each its outcome, and hands the lead to
// the first writer still queued, so that no caller leads for long.
func (s *Store) grouped(what string, fn func(w *writer) error) error {
	m := &groupMember{what: what, fn: fn, queued: time.Now(), done: make(chan struct{})}
	g := &s.groups
	g.mu.Lock()
	g.queue = append(g.queue, m)
	if g.leading {
		g.mu.Unlock()
		<-m.done
		if !m.lead {
			return m.outcome()
		}
		g.mu.Lock() // handed the lead: m is first in the queue
	}
	g.leading = true
	n := min(len(g.queue), maxGroup)
	group := g.queue[:n:n]
	g.queue = g.queue[n:]
	g.mu.Unlock()
	s.leadGroup(group, m)
	return m.outcome()
}

// leadGroup runs group, led by m, gives the others their outcome and hands
// the lead on, even when the group panics (the members fail, the panic goes
// on in m's goroutine, and no writer waits for ever behind it).
func (s *Store) leadGroup(group []*groupMember, m *groupMember) {
	g := &s.groups
	ran := false
	defer func() {
		if !ran {
			for _, gm := range group {
				gm.err = errGroupPanic
			}
		}
		for _, gm := range group {
			if gm != m {
				close(gm.done)
			}
		}
		g.mu.Lock()
		if len(g.queue) > 0 {
			next := g.queue[0]
			next.lead = true
			close(next.done)
		} else {
			g.leading = false
		}
		g.mu.Unlock()
	}()
	s.runGroup(group)
	ran = true
}

// outcome is m's error, or m's function's panic again.
func (m *groupMember) outcome() error {
	if m.panic != nil {
		panic(m.panic)
	}
	return m.err
}

// run runs m's function; a panic fails m alone (outcome panics with it in
// m's own goroutine, as its write would have without a group).
func (m *groupMember) run(w *writer) (err error) {
	defer func() {
		if p := recover(); p != nil {
			m.panic, err = p, errGroupPanic
		}
	}()
	return m.fn(w)
}

// runGroup runs the members' functions in one transaction and commits it,
// setting each member's err; it holds writing exclusively, as a lone
// writer does.
func (s *Store) runGroup(group []*groupMember) {
	s.writing.Lock()
	defer s.writing.Unlock()
	live := group[:0:0]
	for _, m := range group {
		if m.err = s.downSince(m.what, m.queued); m.err == nil {
			live = append(live, m)
		}
	}
	if len(live) == 0 {
		return
	}
	err := s.groupIn(live)
	if errors.Is(err, kv.ErrTooLarge) && len(live) > 1 {
		// More than one transaction of the engine holds: one at a time.
		var down error
		for _, m := range live {
			if down != nil {
				m.err = down
				continue
			}
			if m.err = s.attemptIn(m.what, m.run); s.noteUnavailable(m.err) {
				down = m.err
			}
		}
		return
	}
	s.noteUnavailable(err)
	if err != nil {
		// Every member gets the group's error, those whose own function
		// failed too: a member may have failed on what one before it staged
		// (an alias it created), which is not committed now. On a conflict
		// they all run again.
		for _, m := range live {
			m.err = err
		}
	}
}

// groupIn is runGroup's transaction. A member whose function fails gets its
// error and is left out. The error returned is the group's, when it did not
// commit: the engine's, or that of a member that found the engine not
// answering (the rest of the group is then not attempted).
func (s *Store) groupIn(group []*groupMember) error {
	what := group[0].what
	if len(group) > 1 {
		what = fmt.Sprintf("%s and %d more grouped writes", what, len(group)-1)
	}
	gw, err := s.beginWrite(what) // the journal entry and head go straight into the engine's transaction
	if err != nil {
		return err
	}
	defer gw.close()
	staged := &memberTxn{under: gw.b} // the members' writes, until the commit
	joined := 0
	for _, m := range group {
		mt := &memberTxn{under: staged}
		mw := s.newWriter(mt)
		if m.err = m.run(mw); m.err != nil {
			if errors.Is(m.err, kv.ErrUnavailable) {
				// The engine is not answering: the rest of the group is not
				// attempted (each would wait its own timeout), and the
				// members that joined are not committed.
				return m.err
			}
			continue
		}
		if err := mt.mergeInto(staged); err != nil { // staging: never fails
			return err
		}
		gw.marks = append(gw.marks, mw.marks...)
		gw.ops = append(gw.ops, mw.ops...)
		joined++
	}
	if joined == 0 {
		return nil
	}
	if err := staged.mergeInto(gw.b); err != nil {
		return s.engineErr(what, err)
	}
	return gw.commit(what)
}

// memberTxn is a transaction inside another (under): its writes are staged
// in order until mergeInto moves them into under; its reads see its staged
// writes first. It never commits by itself.
type memberTxn struct {
	under  kv.Txn
	writes map[string]stagedWrite
	order  []string
}

type stagedWrite struct {
	val []byte
	del bool
}

var _ kv.Txn = (*memberTxn)(nil)

func (t *memberTxn) Get(key []byte) ([]byte, bool, error) {
	if w, ok := t.writes[string(key)]; ok {
		if w.del {
			return nil, false, nil
		}
		return w.val, true, nil
	}
	return t.under.Get(key)
}

func (t *memberTxn) Scan(_, _ []byte, _ func(k, v []byte) (bool, error)) error { return errGroupScan }

func (t *memberTxn) stage(key []byte, w stagedWrite) {
	if t.writes == nil {
		t.writes = map[string]stagedWrite{}
	}
	k := string(key)
	if _, ok := t.writes[k]; !ok {
		t.order = append(t.order, k)
	}
	t.writes[k] = w
}

func (t *memberTxn) Set(key, value []byte) error {
	t.stage(key, stagedWrite{val: append([]byte(nil), value...)})
	return nil
}

func (t *memberTxn) Delete(key []byte) error {
	t.stage(key, stagedWrite{del: true})
	return nil
}

func (t *memberTxn) Commit() error {
	return errors.New("keystore: a grouped write does not commit by itself")
}

func (t *memberTxn) Discard() { t.writes, t.order = nil, nil }

// mergeInto writes t's staged writes into u, in the order first written.
func (t *memberTxn) mergeInto(u kv.Txn) error {
	for _, k := range t.order {
		w := t.writes[k]
		var err error
		if w.del {
			err = u.Delete([]byte(k))
		} else {
			err = u.Set([]byte(k), w.val)
		}
		if err != nil {
			return err
		}
	}
	t.writes, t.order = nil, nil
	return nil
}
