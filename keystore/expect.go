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
	e, _, err := s.expectationsSel(r, nil)
	return e, err
}

// expectationsSel is expectations keeping in the state only the records
// keep selects (nil: all), and returning each writer's state apart (for
// VerifyStart's later comparisons).
func (s *Store) expectationsSel(r kv.Reader, keep func(k []byte) bool) (*expectations, []*lazyWriter, error) {
	e := &expectations{seen: map[string]bool{}}
	var lws []*lazyWriter
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
		ws, probs, err := s.readWriterSel(r, w, h, false, keep)
		if err != nil {
			return err
		}
		e.problems = append(e.problems, probs...)
		states = append(states, ws.all)
		lws = append(lws, newLazyWriter(w, h, ws))
		return nil
	})
	if err != nil {
		return nil, nil, err
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
			return nil, nil, err
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
				if d, ok := e.state[k]; !ok || laterState(o, d) {
					e.state[k] = o
				}
			}
		}
	}
	if keep != nil { // the journal entries' records are all there: keep only the selected
		for k := range e.state {
			if !keep([]byte(k)) {
				delete(e.state, k)
			}
		}
	}
	return e, lws, nil
}

// laterState reports whether o, one writer's state of a record, wins over
// d, another's: the later revision, and of the same revision a deletion.
func laterState(o, d jop) bool { return o.rev > d.rev || (o.rev == d.rev && o.del && !d.del) }

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
	why, mark := staleWhy(key, v, o, ok, func(id string) (jop, bool) { ko, kok := e.state[pfxKey+id]; return ko, kok })
	if mark > 0 {
		e.marks = append(e.marks, pendingMark{key, mark})
	}
	if why != "" {
		e.findings = append(e.findings, finding{key: key, why: why, rev: headerRevision(v), present: true})
	}
	return why
}

// staleWhy compares the record stored at key (value v) with o, the state
// the journals expect of it (ok false: they have none; owner gives the
// state of a key's record by id), and returns why it is out of date ("" when
// it is not) and, for an older copy, the revision its mark is raised to (0
// otherwise).
func staleWhy(key string, v []byte, o jop, ok bool, owner func(id string) (jop, bool)) (string, uint64) {
	rev := headerRevision(v)
	switch {
	case !ok:
		if id := ownerID(key); id != "" {
			if ko, kok := owner(id); kok && ko.del {
				return fmt.Sprintf("it belongs to key %s, which was deleted: a deleted record put back", id), 0
			}
		}
		return "the store's journal has no record of it: not written by this store (put back from an old copy, or copied from another store)", 0
	case o.del:
		return fmt.Sprintf("it was deleted (its last revision was %d) and is back: a deleted record put back", o.rev), 0
	case o.digest != nil:
		if sha256.Sum256(v) != *o.digest {
			return "its content is not what the store's journal recorded: replaced (an older copy put back?)", 0
		}
	case rev < o.rev:
		return fmt.Sprintf("revision %d is older than revision %d the store's journal recorded: an older copy put back", rev, o.rev), o.rev
	case rev > o.rev:
		return fmt.Sprintf("revision %d is newer than revision %d the store's journal recorded: not written by this store", rev, o.rev), 0
	}
	return "", 0
}

// absentWhy is staleWhy for a record that is not in the store: why that is
// out of date (the journals expect it), and the revision its mark is raised
// to (0: none).
func absentWhy(key string, o jop, ok bool) (string, uint64) {
	switch {
	case ok && !o.del:
		return fmt.Sprintf("the record is missing: the store's journal recorded revision %d (deleted while the daemon was stopped?)", o.rev), o.rev
	case ok && o.del && !strings.HasPrefix(key, pfxKey):
		// A deleted record that may be written again (an alias, a tag):
		// its next revision comes after its last.
		return "", o.rev + 1
	}
	return "", 0
}

// missing lists, in order, the records the journals expect that are not in
// the store, and records them as findings.
func (e *expectations) missing() []finding {
	if !e.compare {
		return nil
	}
	var out []finding
	for k, o := range e.state {
		if e.seen[k] {
			continue
		}
		why, mark := absentWhy(k, o, true)
		if why != "" {
			out = append(out, finding{key: k, why: why})
		}
		if mark > 0 {
			e.marks = append(e.marks, pendingMark{k, mark})
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
// marks; a full Verify's ends VerifyStart's comparisons on first read.
// Verify calls it in its read section.
func (e *expectations) install(s *Store) error { return e.installWith(s, nil) }

// installWith is install that makes lz (nil: none) the comparisons on
// first read.
func (e *expectations) installWith(s *Store, lz *lazyCheck) error {
	if !e.compare {
		return nil
	}
	s.fr.dmu.Lock()
	d := &damage{recs: map[string]string{}, byKey: map[string]string{}}
	for _, f := range e.findings {
		v, ok, err := get(s.eng, []byte(f.key))
		if err != nil {
			s.fr.dmu.Unlock()
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
	old := s.fr.lazy.Swap(lz)
	for _, m := range e.marks {
		s.raise([]byte(m.k), m.rev)
	}
	s.fr.dmu.Unlock()
	if old != nil && old != lz {
		old.close() // after dmu: a comparison in progress holds the view and may wait for dmu
	}
	return nil
}

// damagedRecord fails when Verify found the record at k out of date (also
// when it is missing). One atomic load when nothing is.
func (s *Store) damagedRecord(k []byte) error {
	if s.fr.lazy.Load() != nil {
		if err := s.lazyRecord(k); err != nil {
			return err
		}
	}
	return s.damagedOnly(k)
}

// damagedOnly is damagedRecord without VerifyStart's comparison on first
// read (Verify's own pass compares every record).
func (s *Store) damagedOnly(k []byte) error {
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
	if s.fr.lazy.Load() != nil {
		if err := s.lazyKey(id); err != nil {
			return err
		}
	}
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
