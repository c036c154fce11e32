package keystore

import (
	"crypto/sha256"
	"fmt"
	"sort"
	"strings"

	"go.uber.org/zap"

	"payhsm/keystore/kv"
)

// The comparison Verify makes between every record and the state the
// journals expect (freshness.go), and what it leaves behind: the records
// it found out of date are refused on every read until the store rewrites
// them.

// JournalReport says what Verify's rollback check covered.
type JournalReport struct {
	// Checked: every record was compared with the state the journal
	// expects. False when the store has no journal yet (a store written by
	// an older build, before its first start with this one) or when the
	// journal itself failed its check.
	Checked bool
	// Writers is the number of journals (one per appliance writing the store).
	Writers int
	// Damaged: a journal, its head or its checkpoint failed its check, or
	// the journal ends before this appliance's anchor (the failures are
	// listed). Rollback cannot be ruled out: the daemon refuses to start.
	Damaged bool
}

// expectations is the state every record should be in, as the journals say.
type expectations struct {
	compare  bool // records are compared (there is a journal, and it passed)
	state    map[string]jop
	seen     map[string]bool
	problems []Failure
	report   JournalReport
	findings []finding
	marks    []pendingMark // marks to raise once Verify is done
}

// finding is a record Verify found out of date, as it was found (so that a
// rewrite since is not taken for it).
type finding struct {
	key     string
	why     string
	rev     uint64
	present bool
}

// expectations reads every writer's head, checkpoint and journal from r.
func (s *Store) expectations(r kv.Reader) (*expectations, error) {
	e := &expectations{seen: map[string]bool{}}
	if p := s.fr.problems.Load(); p != nil {
		e.problems = append(e.problems, *p...)
	}
	writers := map[string]bool{}
	var states []map[string]jop
	err := s.eachRecord(r, pfxHead, func(k, v []byte) error {
		w := string(k[len(pfxHead):])
		writers[w] = true
		if !ValidWriter(w) {
			e.problems = append(e.problems, Failure{Type: RecordJournalHead, Name: fmt.Sprintf("%q", w), Reason: "not a journal writer id"})
			return nil
		}
		h, _, reason, err := s.readHead(r, w)
		if err != nil {
			return err
		}
		if reason != "" {
			e.problems = append(e.problems, Failure{Type: RecordJournalHead, Name: w, Reason: reason})
			return nil
		}
		st, probs, err := s.readWriter(r, w, h, false)
		if err != nil {
			return err
		}
		e.problems = append(e.problems, probs...)
		states = append(states, st)
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Journal or checkpoint records of a writer without a head.
	for _, p := range []struct {
		prefix string
		typ    RecordType
	}{{pfxJournal, RecordJournal}, {pfxCkpt, RecordCheckpoint}} {
		stray := map[string]bool{}
		err := s.eachKey(r, p.prefix, func(name string) {
			w, _, _ := strings.Cut(name, "/")
			if !writers[w] && !stray[w] {
				stray[w] = true
				e.problems = append(e.problems, Failure{Type: p.typ, Name: w, Reason: "records of a journal that has no head (its head deleted?)"})
			}
		})
		if err != nil {
			return nil, err
		}
	}
	for _, p := range e.problems {
		s.journalFailure(p)
	}
	e.report = JournalReport{Writers: len(writers), Damaged: len(e.problems) > 0}
	structural := len(e.problems) - len(derefFailures(s.fr.problems.Load()))
	e.compare = len(states) > 0 && structural == 0
	e.report.Checked = e.compare
	switch len(states) {
	case 0:
	case 1:
		e.state = states[0]
	default:
		e.state = map[string]jop{}
		for _, st := range states { // several writers: the latest state of each record wins
			for k, o := range st {
				if d, ok := e.state[k]; !ok || o.rev > d.rev || (o.rev == d.rev && o.del && !d.del) {
					e.state[k] = o
				}
			}
		}
	}
	return e, nil
}

func derefFailures(p *[]Failure) []Failure {
	if p == nil {
		return nil
	}
	return *p
}

// journalFailure logs and counts a failure of the journal itself.
func (s *Store) journalFailure(f Failure) {
	s.failures.Add(1)
	s.log.Error("the key store's journal failed its integrity check; records may have been rolled back",
		zap.String("type", f.Type.String()), zap.String("record", f.Name), zap.String("reason", f.Reason))
}

// check compares the record stored at k (value v) with the state the
// journals expect, and returns why it is out of date ("" when it is not).
func (e *expectations) check(k, v []byte) string {
	if !e.compare {
		return ""
	}
	key := string(k)
	e.seen[key] = true
	o, ok := e.state[key]
	rev := headerRevision(v)
	why := ""
	switch {
	case !ok:
		if id := ownerID(key); id != "" {
			if ko, kok := e.state[pfxKey+id]; kok && ko.del {
				why = fmt.Sprintf("it belongs to key %s, which was deleted: a deleted record put back", id)
				break
			}
		}
		why = "the store's journal has no record of it: not written by this store (put back from an old copy, or copied from another store)"
	case o.del:
		why = fmt.Sprintf("it was deleted (its last revision was %d) and is back: a deleted record put back", o.rev)
	case o.digest != nil:
		if sha256.Sum256(v) != *o.digest {
			why = "its content is not what the store's journal recorded: replaced (an older copy put back?)"
		}
	case rev < o.rev:
		why = fmt.Sprintf("revision %d is older than revision %d the store's journal recorded: an older copy put back", rev, o.rev)
		e.marks = append(e.marks, pendingMark{key, o.rev})
	case rev > o.rev:
		why = fmt.Sprintf("revision %d is newer than revision %d the store's journal recorded: not written by this store", rev, o.rev)
	}
	if why != "" {
		e.findings = append(e.findings, finding{key: key, why: why, rev: rev, present: true})
	}
	return why
}

// missing lists, in order, the records the journals expect that are not in
// the store, and records them as findings.
func (e *expectations) missing() []finding {
	if !e.compare {
		return nil
	}
	var out []finding
	for k, o := range e.state {
		switch {
		case !o.del && !e.seen[k]:
			out = append(out, finding{key: k, why: fmt.Sprintf("the record is missing: the store's journal recorded revision %d (deleted while the daemon was stopped?)", o.rev)})
			e.marks = append(e.marks, pendingMark{k, o.rev})
		case o.del && !e.seen[k] && !strings.HasPrefix(k, pfxKey):
			// A deleted record that may be written again (an alias, a tag):
			// its next revision comes after its last.
			e.marks = append(e.marks, pendingMark{k, o.rev + 1})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	e.findings = append(e.findings, out...)
	return out
}

// damage is what Verify found out of date: Pebble key -> why, and for each
// key id, one of its records that is (GetKey refuses the key).
type damage struct {
	recs  map[string]string
	byKey map[string]string
}

// install replaces the store's damage with e's findings, leaving out a
// record the store has rewritten since Verify's snapshot, and raises the
// marks. Verify calls it in its read section.
func (e *expectations) install(s *Store) error {
	if !e.compare {
		return nil
	}
	s.fr.dmu.Lock()
	defer s.fr.dmu.Unlock()
	d := &damage{recs: map[string]string{}, byKey: map[string]string{}}
	for _, f := range e.findings {
		v, ok, err := get(s.eng, []byte(f.key))
		if err != nil {
			return err
		}
		if ok != f.present || (ok && headerRevision(v) != f.rev) {
			continue // rewritten since
		}
		d.recs[f.key] = f.why
		if id := ownerID(f.key); id != "" {
			if _, dup := d.byKey[id]; !dup {
				d.byKey[id] = f.key
			}
		}
	}
	if len(d.recs) == 0 {
		d = nil
	}
	s.fr.damage.Store(d)
	for _, m := range e.marks {
		s.raise([]byte(m.k), m.rev)
	}
	return nil
}

// damagedRecord fails when Verify found the record at k out of date (also
// when it is missing). One atomic load when nothing is.
func (s *Store) damagedRecord(k []byte) error {
	d := s.fr.damage.Load()
	if d == nil {
		return nil
	}
	why, ok := d.recs[string(k)]
	if !ok {
		return nil
	}
	return s.integrityFailure(k, "%s", why)
}

// damagedKey fails when Verify found a record of key id out of date.
func (s *Store) damagedKey(id string) error {
	d := s.fr.damage.Load()
	if d == nil {
		return nil
	}
	k, ok := d.byKey[id]
	if !ok {
		return nil
	}
	return s.integrityFailure([]byte(k), "%s", d.recs[k])
}

// repaired forgets the damage of records a committed transaction rewrote or
// deleted.
func (s *Store) repaired(ops []jop) {
	if s.fr.damage.Load() == nil {
		return
	}
	s.fr.dmu.Lock()
	defer s.fr.dmu.Unlock()
	d := s.fr.damage.Load()
	if d == nil {
		return
	}
	hit := false
	for _, o := range ops {
		if _, ok := d.recs[o.key]; ok {
			hit = true
		}
	}
	if !hit {
		return
	}
	nd := &damage{recs: map[string]string{}, byKey: map[string]string{}}
	for k, why := range d.recs {
		nd.recs[k] = why
	}
	for _, o := range ops {
		delete(nd.recs, o.key)
	}
	keys := make([]string, 0, len(nd.recs))
	for k := range nd.recs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if id := ownerID(k); id != "" {
			if _, dup := nd.byKey[id]; !dup {
				nd.byKey[id] = k
			}
		}
	}
	if len(nd.recs) == 0 {
		nd = nil
	}
	s.fr.damage.Store(nd)
}
