package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"go.uber.org/zap"
)

// Staged entries: a control-plane event made durable in the same
// transaction as the change it records (by the caller's store: the daemon
// keeps what it needs in the new key's record), so that the caller waits
// for one fsync, the store's, instead of the store's and then the trail's,
// and a crash can no longer leave a change without its entry. The order:
//
//  1. NewStaged makes the entry (outcome "ok", the caller's request id)
//     before the change commits, and the caller stores what it needs to
//     make it again beside the change.
//  2. Once the change has committed, AppendStaged chains the entry onto the
//     trail like any other and returns without waiting for the file: the
//     change, and so the entry, is already durable.
//  3. Once a sync of the active file holds it, Config.Settled is called with
//     its request id.
//  4. At start, Adopt appends the entries the store says may not have
//     reached the files (a crash between 1 and 3): each is found in the
//     files by its request id, so none is appended twice.
//
// A staged entry's time is the one it was made with; its sequence number
// and hash are given when it is appended, so the chain is the file's order.

// Staged is a control-plane event whose durability comes from the caller's
// store (NewStaged).
type Staged struct {
	ev Event
	at time.Time
}

// NewStaged makes the entry of e, a control-plane call that succeeds if its
// change commits, at time at. e needs an operation, outcome OK and a
// request id (which finds it in the files at Adopt), and no PAN.
func NewStaged(e Event, at time.Time) (*Staged, error) {
	if e.Operation == "" || e.Outcome != OK || e.RequestID == "" {
		return nil, errors.New("audit: a staged event needs an operation, outcome ok and a request id")
	}
	if e.PAN != "" {
		return nil, errors.New("audit: a staged event names no PAN")
	}
	return &Staged{ev: e, at: at.UTC()}, nil
}

// RequestID is the request id of s's event: Config.Settled names it so.
func (s *Staged) RequestID() string { return s.ev.RequestID }

// entry is s's entry, to chain onto the trail.
func (s *Staged) entry() *Entry {
	ev := s.ev
	return &Entry{Kind: KindControl, Time: s.at, Event: &ev}
}

// AppendStaged appends s, whose change has committed, and returns without
// waiting for the file; Config.Settled names it by its request id once a
// sync holds it. While the trail cannot write (Ready), and when a write that held it
// fails, the entry waits in memory and is appended first once the trail
// writes again (after the failure's notice); if the process ends first,
// the next start's Adopt appends it.
func (t *Trail) AppendStaged(s *Staged) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	if t.usableLocked() != nil {
		t.orphans = append(t.orphans, s)
		t.mu.Unlock()
		return
	}
	b, err := t.appendLocked(s.entry())
	if err == nil {
		b.staged = append(b.staged, s)
	}
	big := len(t.buf) >= flushAt
	t.mu.Unlock()
	if err != nil {
		t.cfg.Log.Error("audit trail: a staged entry could not be appended; the next start appends it", zap.String("requestId", s.ev.RequestID), zap.Error(err))
		return
	}
	if big { // else the next sync takes it, within SyncInterval
		t.wake()
	}
}

// settleLocked hands the request ids of durable batch b's staged entries
// to the settler.
func (t *Trail) settleLocked(b *batch) {
	if len(b.staged) == 0 || t.cfg.Settled == nil {
		return
	}
	t.settleMu.Lock()
	for _, s := range b.staged {
		t.toSettle = append(t.toSettle, s.ev.RequestID)
	}
	t.settleMu.Unlock()
	select {
	case t.settleKick <- struct{}{}:
	default:
	}
}

// settler calls Config.Settled with the request ids made durable, coalesced, one
// call at a time, so that the flusher never waits for the store.
func (t *Trail) settler() {
	defer close(t.settled)
	for {
		stopping := false
		select {
		case <-t.settleKick:
		case <-t.stopSettle:
			stopping = true
		}
		t.settleMu.Lock()
		ids := t.toSettle
		t.toSettle = nil
		t.settleMu.Unlock()
		if len(ids) > 0 {
			t.cfg.Settled(ids)
		}
		if stopping {
			return
		}
	}
}

// Adopt appends the staged entries of staged that the trail's files do not
// hold (found by request id), in the order of their times, and returns how
// many it appended once they are synced. It may run while other entries are
// recorded (the files are not rotated while it searches them); none of
// staged may be appended otherwise meanwhile.
func (t *Trail) Adopt(staged []*Staged) (appended int, err error) {
	if len(staged) == 0 {
		return 0, nil
	}
	t.mu.Lock()
	t.adopting++
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.adopting--
		t.mu.Unlock()
	}()
	ids := make(map[string]bool, len(staged))
	oldest := staged[0].at
	for _, s := range staged {
		ids[s.ev.RequestID] = false
		if s.at.Before(oldest) {
			oldest = s.at
		}
	}
	if err := findRequestIDs(t.cfg.Dir, ids, oldest.Add(-time.Minute)); err != nil {
		return 0, fmt.Errorf("audit trail: adopt staged entries: %w", err)
	}
	list := slices.Clone(staged)
	sort.SliceStable(list, func(i, j int) bool { return list[i].at.Before(list[j].at) })
	var b *batch
	t.mu.Lock()
	if err := t.usableLocked(); err != nil {
		t.mu.Unlock()
		return 0, err
	}
	for _, s := range list {
		if ids[s.ev.RequestID] {
			continue
		}
		if b, err = t.appendLocked(s.entry()); err != nil {
			t.mu.Unlock()
			return 0, err
		}
		ids[s.ev.RequestID] = true
		appended++
	}
	t.mu.Unlock()
	if b != nil {
		t.wake()
		<-b.done
		if b.err != nil {
			return 0, b.err
		}
	}
	return appended, nil
}

// findRequestIDs marks in ids (request id → found) those that a successful
// control entry of the trail's files names: the active file, then the rotated
// files newest first, down to the first that begins before since.
func findRequestIDs(dir string, ids map[string]bool, since time.Time) error {
	rotated, err := rotatedFiles(dir)
	if err != nil {
		return err
	}
	slices.Reverse(rotated)
	for _, name := range append([]string{ActiveName}, rotated...) {
		first, err := scanRequestIDs(filepath.Join(dir, name), ids)
		if err != nil {
			return err
		}
		if !first.IsZero() && first.Before(since) {
			return nil
		}
	}
	return nil
}

// scanRequestIDs marks the request ids of ids that path's lines name, and
// returns the time of its first entry (zero if none).
func scanRequestIDs(path string, ids map[string]bool) (first time.Time, err error) {
	f, err := os.Open(path) //nolint:gosec // G304: a file of the trail's own directory.
	if errors.Is(err, os.ErrNotExist) {
		return time.Time{}, nil
	} else if err != nil {
		return time.Time{}, err
	}
	defer func() { _ = f.Close() }() // read-only
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes+1)
	key := []byte(`"requestId":"`)
	for sc.Scan() {
		line := sc.Bytes()
		if first.IsZero() {
			if p, perr := ParseLine(line); perr == nil {
				first = p.Time
			}
		}
		i := bytes.Index(line, key)
		if i < 0 {
			continue
		}
		rest := line[i+len(key):]
		j := bytes.IndexByte(rest, '"')
		if j < 0 {
			continue
		}
		if _, ok := ids[string(rest[:j])]; ok && bytes.Contains(line, []byte(`"kind":"control"`)) && bytes.Contains(line, []byte(`"outcome":"ok"`)) {
			ids[string(rest[:j])] = true
		}
	}
	if err := sc.Err(); err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", path, err)
	}
	return first, nil
}
