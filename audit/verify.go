package audit

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// VerifyOptions tune VerifyFiles.
type VerifyOptions struct {
	// Seals checks the seals' MACs; nil checks the chain only (and says so).
	Seals SealChecker
	// Live: the last file is being written (the daemon runs), so entries
	// after its last seal are not yet sealed and its last line may be
	// incomplete; neither is an error.
	Live bool
}

// Finding is one thing VerifyFiles found, and where.
type Finding struct {
	File    string `json:"file"`
	Line    int    `json:"line"` // 1-based; 0 for the file as a whole
	Seq     uint64 `json:"seq,omitempty"`
	Message string `json:"message"`
}

func (f Finding) String() string {
	var b strings.Builder
	b.WriteString(f.File)
	if f.Line > 0 {
		fmt.Fprintf(&b, ":%d", f.Line)
	}
	if f.Seq > 0 {
		fmt.Fprintf(&b, " (seq %d)", f.Seq)
	}
	b.WriteString(": ")
	b.WriteString(f.Message)
	return b.String()
}

// Report is the result of VerifyFiles. The trail is intact when Errors is
// empty; Warnings are recorded events an auditor should know of (a writer
// that was killed, dropped data events, seals under a retired key).
type Report struct {
	Files        int
	Entries      int
	First, Last  uint64 // the sequence numbers of the first and last entries
	Seals        int
	SealsChecked int // seals whose MAC was verified
	Unsealed     uint64
	Errors       []Finding
	Warnings     []Finding
}

// OK reports whether no error was found.
func (r *Report) OK() bool { return len(r.Errors) == 0 }

// item is one line of a verified file.
type item struct {
	file string
	line int
	p    *Parsed // nil: the line is not an entry
}

// VerifyFiles checks the trail files at paths, given in chain order (a
// shell glob of the trail's directory gives it: rotated files sort before
// audit.log). It finds an edited entry (its hash does not match its
// content, or the next entry does not chain to it, or a later seal does not
// verify), a deleted entry or file (a gap in the sequence numbers, named by
// the files around it), reordered entries, and a truncated file (an
// incomplete last line, or a trail that does not end with a closing seal),
// and names each by file, line and sequence number. The error is for a
// file it cannot read.
func VerifyFiles(paths []string, opt VerifyOptions) (*Report, error) {
	r := &Report{Files: len(paths)}
	var items []item
	for fi, path := range paths {
		b, err := os.ReadFile(path) //nolint:gosec // G304: the operator names the files to verify.
		if err != nil {
			return nil, fmt.Errorf("audit verify: %w", err)
		}
		name := path
		lines := bytes.Split(b, []byte{'\n'})
		last := lines[len(lines)-1]
		lines = lines[:len(lines)-1]
		if len(last) > 0 {
			if opt.Live && fi == len(paths)-1 {
				r.Warnings = append(r.Warnings, Finding{File: name, Line: len(lines) + 1,
					Message: fmt.Sprintf("incomplete last line (%d bytes): being written, not checked", len(last))})
			} else {
				r.Errors = append(r.Errors, Finding{File: name, Line: len(lines) + 1,
					Message: fmt.Sprintf("incomplete last line (%d bytes, no newline): the file was truncated or cut mid-write", len(last))})
			}
		}
		if len(lines) == 0 && len(last) == 0 {
			r.Errors = append(r.Errors, Finding{File: name, Message: "empty file: every trail file starts with a start entry"})
		}
		for i, ln := range lines {
			it := item{file: name, line: i + 1}
			p, err := ParseLine(ln)
			switch {
			case err != nil:
				r.Errors = append(r.Errors, Finding{File: name, Line: i + 1, Message: err.Error() + ": the line was edited or corrupted"})
			case p.Computed != p.Stated:
				r.Errors = append(r.Errors, Finding{File: name, Line: i + 1, Seq: p.Seq,
					Message: "entry altered: its content does not match its hash"})
				it.p = p
			default:
				it.p = p
			}
			items = append(items, it)
		}
	}
	v := &verifier{r: r, opt: opt, items: items}
	v.chain()
	v.seals()
	v.end()
	sort.SliceStable(r.Errors, func(i, j int) bool { return v.pos(r.Errors[i]) < v.pos(r.Errors[j]) })
	return r, nil
}

type verifier struct {
	r     *Report
	opt   VerifyOptions
	items []item

	fileIdx map[string]int // file order, for sorting findings
	seen    map[uint64]int // seq -> index in items
	later   map[uint64]int // seq -> index of its first occurrence
	sealsAt []int          // indexes of seal entries, in order
	retired map[string]uint64
	lastIdx int // the last entry (by position)
	maxSeq  uint64
}

func (v *verifier) pos(f Finding) int {
	return v.fileIdx[f.File]<<32 | f.Line
}

func (v *verifier) errf(it item, format string, a ...any) {
	v.r.Errors = append(v.r.Errors, Finding{File: it.file, Line: it.line, Seq: seqOf(it), Message: fmt.Sprintf(format, a...)})
}

func (v *verifier) warnf(it item, format string, a ...any) {
	v.r.Warnings = append(v.r.Warnings, Finding{File: it.file, Line: it.line, Seq: seqOf(it), Message: fmt.Sprintf(format, a...)})
}

func seqOf(it item) uint64 {
	if it.p == nil {
		return 0
	}
	return it.p.Seq
}

func (v *verifier) where(i int) string {
	it := v.items[i]
	return fmt.Sprintf("%s:%d", filepath.Base(it.file), it.line)
}

// chain checks the sequence and the links between entries.
func (v *verifier) chain() {
	v.fileIdx, v.seen, v.later, v.retired = map[string]int{}, map[uint64]int{}, map[uint64]int{}, map[string]uint64{}
	v.lastIdx = -1
	for i, it := range v.items {
		if _, ok := v.fileIdx[it.file]; !ok {
			v.fileIdx[it.file] = len(v.fileIdx)
		}
		if it.p == nil {
			continue
		}
		if _, ok := v.later[it.p.Seq]; !ok {
			v.later[it.p.Seq] = i
		}
	}
	unknown := 0 // lines that are not entries since the last entry: each may be the missing one
	var prevFile string
	for i, it := range v.items {
		if it.p == nil {
			unknown++
			continue
		}
		e := it.p
		boundary := it.file != prevFile
		prevFile = it.file
		v.r.Entries++
		if v.lastIdx < 0 {
			v.r.First = e.Seq
			if e.Seq == 1 && e.PrevHash != zeroHash {
				v.errf(it, "the first entry of a trail must have a zero prev")
			}
		}
		if j, dup := v.seen[e.Seq]; dup {
			v.errf(it, "sequence number %d repeats %s: an entry was copied or reordered", e.Seq, v.where(j))
			unknown = 0
			continue
		}
		switch {
		case v.lastIdx < 0:
		case e.Seq < v.maxSeq:
			v.errf(it, "sequence number %d comes after %d: entries reordered", e.Seq, v.maxSeq)
		case e.Seq > v.maxSeq+1:
			from, to := v.maxSeq+1, e.Seq-1
			if uint64(unknown) >= to-from+1 {
				break // the lines that are not entries stand where these were: already reported
			}
			if j, ok := v.later[from]; ok && j > i {
				v.errf(it, "sequence number %d where %d was expected: entries reordered (%d is at %s)", e.Seq, from, from, v.where(j))
				break
			}
			what := fmt.Sprintf("entry %d", from)
			if to > from {
				what = fmt.Sprintf("entries %d to %d", from, to)
			}
			if boundary {
				msg := fmt.Sprintf("%s missing before this file (the previous one ends at %d): a file, or the end of one, was removed or replaced", what, v.maxSeq)
				if e.Kind == KindStart && e.Start.PrevFile != "" {
					msg += fmt.Sprintf("; this file continues %s", e.Start.PrevFile)
				}
				v.errf(it, "%s", msg)
			} else {
				v.errf(it, "%s missing before this line: deleted", what)
			}
		}
		unknown = 0
		if j, ok := v.seen[e.Seq-1]; ok && e.Seq > 1 {
			if pj := v.items[j].p; e.PrevHash != pj.Stated {
				v.errf(it, "does not chain to entry %d (%s): one of them was altered or replaced", e.Seq-1, v.where(j))
			}
		}
		v.checkKind(i, it)
		v.seen[e.Seq] = i
		v.maxSeq = max(v.maxSeq, e.Seq)
		v.lastIdx = i
	}
	if v.lastIdx >= 0 {
		v.r.Last = v.items[v.lastIdx].p.Seq
	}
}

// checkKind checks what an entry's kind implies about the entries before it.
func (v *verifier) checkKind(i int, it item) {
	e := it.p
	switch e.Kind {
	case KindSeal:
		v.r.Seals++
		v.sealsAt = append(v.sealsAt, i)
		if n := len(v.sealsAt); n > 1 {
			prev := v.items[v.sealsAt[n-2]].p
			if e.Seal.From != prev.Seq+1 {
				v.errf(it, "seal covers entries from %d, but the previous seal (%s) ends at %d", e.Seal.From, v.where(v.sealsAt[n-2]), prev.Seq)
			}
		}
	case KindStart:
		s := e.Start
		if s.PrevKeyID != "" {
			v.retired[s.PrevKeyID] = e.Seq
			v.warnf(it, "the seal key changed from %s to %s when this writer started (a new region main key): earlier seals cannot be checked with this appliance's key", s.PrevKeyID, s.KeyID)
		}
		if s.ActiveMissing {
			v.warnf(it, "the writer found no %s, only rotated files: a rotation cut short by a crash, or the active file was removed (its entries would be lost without a trace here; compare with the forwarded copy or the head the daemon logs)", ActiveName)
		}
		if s.Torn != nil {
			v.warnf(it, "the writer cut an incomplete last line of %d bytes (SHA-256 %s) left by the previous writer (a write it never acknowledged)", s.Torn.Bytes, s.Torn.SHA256)
		}
		if s.Legacy != nil {
			v.warnf(it, "the pre-chain log %s (%d bytes, SHA-256 %s) is anchored here; check it with sha256sum", s.Legacy.File, s.Legacy.Bytes, s.Legacy.SHA256)
		}
		j, ok := v.seen[e.Seq-1]
		if !ok || e.Seq == 1 {
			return
		}
		before := v.items[j].p
		closed := before.Kind == KindSeal && (before.Seal.Reason == SealClose || before.Seal.Reason == SealRotate)
		switch {
		case s.Reason == StartRecover:
		case s.Unclean:
			v.warnf(it, "the previous writer stopped without closing the trail (killed or crashed) after entry %d; %s chained but not sealed when it stopped",
				e.Seq-1, span(s.LastSealed+1, e.Seq-1))
		case !closed:
			v.errf(it, "a writer started here, but the entry before (%s) is not a closing seal and the writer found none missing: the trail's end was altered", v.where(j))
		}
	case KindNotice:
		n := e.Notice
		if n.SuppressedDenials > 0 {
			v.warnf(it, "%d denials beyond the trail's rate were counted, not recorded one by one (a flood of refused requests)", n.SuppressedDenials)
		}
		if n.Dropped > 0 {
			v.warnf(it, "%d data-plane events were dropped (the queue was full or the trail could not write)", n.Dropped)
		}
		if n.Discarded > 0 || n.Error != "" {
			v.warnf(it, "a write failed (%s); %d entries not yet acknowledged were discarded and the trail continued after the last durable one", n.Error, n.Discarded)
		}
		if n.PrevKeyID != "" {
			v.retired[n.PrevKeyID] = e.Seq
			v.warnf(it, "the seal key changed from %s to %s (the region main key was replaced): earlier seals cannot be checked with this appliance's key", n.PrevKeyID, n.KeyID)
		}
	}
}

// sealBatch bounds one CheckSeals call (the admin socket's request size).
const sealBatch = 500

// seals checks the seals' MACs.
func (v *verifier) seals() {
	if len(v.sealsAt) == 0 {
		return
	}
	if v.opt.Seals == nil {
		v.r.Warnings = append(v.r.Warnings, Finding{File: v.items[v.sealsAt[0]].file,
			Message: fmt.Sprintf("seals not checked (no key): %d seals; the chain alone does not prove that nothing was rewritten", len(v.sealsAt))})
		return
	}
	for lo := 0; lo < len(v.sealsAt); lo += sealBatch {
		at := v.sealsAt[lo:min(lo+sealBatch, len(v.sealsAt))]
		reqs := make([]SealRequest, len(at))
		for k, i := range at {
			e := v.items[i].p
			reqs[k] = SealRequest{KeyID: e.Seal.KeyID, Prev: e.PrevHash}
			_, _ = hex.Decode(reqs[k].MAC[:], []byte(e.Seal.MAC)) // ParseLine checked: 64 hex digits
		}
		st, err := v.opt.Seals.CheckSeals(reqs)
		if err != nil || len(st) != len(reqs) {
			v.r.Errors = append(v.r.Errors, Finding{File: v.items[at[0]].file, Line: v.items[at[0]].line,
				Message: fmt.Sprintf("seals could not be checked: %v", err)})
			return
		}
		for k, i := range at {
			it, e := v.items[i], v.items[i].p
			switch st[k] {
			case SealValid:
				v.r.SealsChecked++
			case SealInvalid:
				v.errf(it, "seal does not verify: entries up to %d were rewritten after they were sealed, or the seal was forged", e.Seq-1)
			case SealUnknownKey:
				if at, ok := v.retired[e.Seal.KeyID]; ok && at > e.Seq {
					v.warnf(it, "seal under retired key %s not checked", e.Seal.KeyID)
				} else {
					v.errf(it, "seal under key %s, which is neither this appliance's key nor one the trail retired: not made by this appliance", e.Seal.KeyID)
				}
			}
		}
	}
}

// end checks how the trail ends.
func (v *verifier) end() {
	if v.lastIdx < 0 {
		return
	}
	it := v.items[v.lastIdx]
	e := it.p
	var lastSeal uint64
	if n := len(v.sealsAt); n > 0 {
		lastSeal = v.items[v.sealsAt[n-1]].p.Seq
	}
	v.r.Unsealed = e.Seq - lastSeal
	if e.Kind == KindSeal {
		v.r.Unsealed = 0
	}
	switch {
	case e.Kind == KindSeal && e.Seal.Reason == SealClose:
	case v.opt.Live:
	case e.Kind == KindSeal && e.Seal.Reason == SealRotate:
		v.errf(it, "the trail ends with a rotation seal: the file that follows it (audit.log, or a later rotated file) is missing")
	default:
		v.errf(it, "the trail ends without a closing seal: the file was truncated, or its writer was stopped uncleanly (killed) and has not run since (its next start records that); %s chained but not sealed",
			span(lastSeal+1, e.Seq))
	}
}

// span names entries from..to.
func span(from, to uint64) string {
	switch {
	case from > to:
		return "no entry was"
	case from == to:
		return fmt.Sprintf("entry %d was", from)
	}
	return fmt.Sprintf("entries %d to %d were", from, to)
}
