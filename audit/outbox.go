package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
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
// transaction as the change it records (the key store's outbox), so that
// the caller waits for one fsync, the store's, instead of the store's and
// then the trail's, and a crash can no longer leave a change without its
// entry. The order:
//
//  1. Stage encodes the event (outcome "ok", the caller's request id) before
//     the change commits; the caller writes the bytes beside the change.
//  2. Once the change has committed, AppendStaged chains the entry onto the
//     trail like any other and returns without waiting for the file: the
//     entry is already durable in the store.
//  3. Once a sync of the active file holds it, Config.Settled is called with
//     its ref, and the caller deletes it from the store.
//  4. At start, Adopt appends what the store still holds and the files do
//     not (a crash between 1 and 3): each staged entry is found in the files
//     by its request id, so none is appended twice.
//
// A staged entry's time is when it was staged; its sequence number and hash
// are given when it is appended, so the chain is the file's order.

// Staged is a control-plane event encoded for an outbox (Stage).
type Staged struct {
	ev  Event
	at  time.Time
	enc []byte
}

// Bytes is what the caller stores beside its change.
func (s *Staged) Bytes() []byte { return s.enc }

// Stage encodes e, a control-plane call that will succeed if its change
// commits, for the caller's outbox. e needs an operation, outcome OK and a
// request id (which finds it in the files at Adopt), and no PAN.
func (t *Trail) Stage(e Event) (*Staged, error) {
	if e.Operation == "" || e.Outcome != OK || e.RequestID == "" {
		return nil, errors.New("audit: a staged event needs an operation, outcome ok and a request id")
	}
	if e.PAN != "" {
		return nil, errors.New("audit: a staged event names no PAN")
	}
	// Stored as an entry without its place in the chain (seq 0, no prev).
	at := t.cfg.Now().UTC()
	entry := &Entry{V: Version, Time: at, Kind: KindControl, Event: &e}
	enc, ok := appendEntryJSON(nil, entry)
	if !ok {
		var err error
		if enc, err = json.Marshal(entry); err != nil {
			return nil, fmt.Errorf("audit: stage: %w", err)
		}
	}
	return &Staged{ev: e, at: at, enc: enc}, nil
}

// AppendStaged appends s, whose change has committed with it, and returns
// without waiting for the file; ref names it to Config.Settled once a sync
// holds it. While the trail cannot write (Ready), the entry is left to the
// store, and appended by the next start's Adopt.
func (t *Trail) AppendStaged(s *Staged, ref string) {
	ev := s.ev
	e := &Entry{Kind: KindControl, Time: s.at, Event: &ev}
	t.mu.Lock()
	if t.usableLocked() != nil {
		t.mu.Unlock()
		return
	}
	b, err := t.appendLocked(e)
	if err == nil {
		b.refs = append(b.refs, ref)
	}
	big := len(t.buf) >= flushAt
	t.mu.Unlock()
	if err != nil {
		t.cfg.Log.Error("audit trail: a staged entry could not be appended; it stays in the key store until the next start", zap.String("ref", ref), zap.Error(err))
		return
	}
	if big { // else the next sync takes it, within SyncInterval
		t.wake()
	}
}

// settleLocked hands the refs of durable batch b to the settler.
func (t *Trail) settleLocked(b *batch) {
	if len(b.refs) == 0 || t.cfg.Settled == nil {
		return
	}
	t.settleMu.Lock()
	t.toSettle = append(t.toSettle, b.refs...)
	t.settleMu.Unlock()
	select {
	case t.settleKick <- struct{}{}:
	default:
	}
}

// settler calls Config.Settled with the refs made durable, coalesced, one
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
		refs := t.toSettle
		t.toSettle = nil
		t.settleMu.Unlock()
		if len(refs) > 0 {
			t.cfg.Settled(refs)
		}
		if stopping {
			return
		}
	}
}

// Adopt appends the staged entries of staged (ref → Staged.Bytes) that the
// trail's files do not hold, in the order of their times, and returns once
// they are synced, with the refs of every entry now in the files (those it
// appended and those it found): the caller deletes them from its store. An
// entry that does not decode is left out of both (logged): the caller keeps
// it as evidence. Call it after Open, before the daemon serves.
func (t *Trail) Adopt(staged map[string][]byte) (settled []string, err error) {
	if len(staged) == 0 {
		return nil, nil
	}
	type adoptee struct {
		ref string
		rec Entry
	}
	var list []adoptee
	ids := make(map[string]bool, len(staged))
	oldest := time.Time{}
	for ref, b := range staged {
		var a adoptee
		a.ref = ref
		if err := json.Unmarshal(b, &a.rec); err != nil || a.rec.Event == nil || a.rec.Kind != KindControl || a.rec.RequestID == "" ||
			a.rec.Seq != 0 || a.rec.Prev != "" || a.rec.Hash != "" || a.rec.Seal != nil || a.rec.Start != nil || a.rec.Notice != nil ||
			a.rec.MaskedPAN != "" || a.rec.PANHash != "" {
			t.cfg.Log.Error("audit trail: a staged entry in the key store does not decode; left there", zap.String("ref", ref), zap.Error(err))
			continue
		}
		list = append(list, a)
		ids[a.rec.RequestID] = false
		if oldest.IsZero() || a.rec.Time.Before(oldest) {
			oldest = a.rec.Time
		}
	}
	if err := findRequestIDs(t.cfg.Dir, ids, oldest.Add(-time.Hour)); err != nil {
		return nil, fmt.Errorf("audit trail: adopt staged entries: %w", err)
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].rec.Time.Before(list[j].rec.Time) })
	var b *batch
	appended := 0
	t.mu.Lock()
	if err := t.usableLocked(); err != nil {
		t.mu.Unlock()
		return nil, err
	}
	for _, a := range list {
		if ids[a.rec.RequestID] {
			settled = append(settled, a.ref)
			continue
		}
		e := &Entry{Kind: KindControl, Time: a.rec.Time.UTC(), Event: a.rec.Event}
		if b, err = t.appendLocked(e); err != nil {
			t.mu.Unlock()
			return nil, err
		}
		ids[a.rec.RequestID] = true
		settled = append(settled, a.ref)
		appended++
	}
	t.mu.Unlock()
	if b != nil {
		t.wake()
		<-b.done
		if b.err != nil {
			return nil, b.err
		}
	}
	t.cfg.Log.Info("audit trail: staged entries taken from the key store", zap.Int("appended", appended),
		zap.Int("alreadyInTrail", len(settled)-appended))
	return settled, nil
}

// findRequestIDs marks in ids (request id → found) those that a control
// entry of the trail's files names: the active file, then the rotated
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
		if _, ok := ids[string(rest[:j])]; ok && bytes.Contains(line, []byte(`"kind":"control"`)) {
			ids[string(rest[:j])] = true
		}
	}
	if err := sc.Err(); err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", path, err)
	}
	return first, nil
}
