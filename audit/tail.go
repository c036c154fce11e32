package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// tailState is what Open needs of the trail on disk: where the chain ends,
// its last seal, and the state of the active file.
type tailState struct {
	activeLen   int64 // the active file's length without a torn tail; -1 when absent, 0 when it has no entry
	activeFirst uint64
	activeStart time.Time
	torn        *Torn

	lastSeq        uint64
	lastHash       [HashSize]byte
	lastKind       Kind
	lastSealReason string // when lastKind is KindSeal
	lastSeal       uint64
	lastSealKeyID  string
	lastFile       string // the rotated file holding the last entry, when the active file holds none
}

// tailChunk is how much of a file's end is read to find its last entries.
const tailChunk = 1 << 20

// scanTrail reads the ends of the active file and, when it holds no entry
// (or no seal), of the last rotated file.
func scanTrail(dir string) (*tailState, error) {
	st := &tailState{activeLen: -1}
	active := filepath.Join(dir, ActiveName)
	ends, err := readEnds(active)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		st.activeLen, st.torn = ends.goodLen, ends.torn
		if ends.last != nil {
			st.take(ends)
			st.activeFirst, st.activeStart = ends.first.Seq, ends.first.Time
		}
	}
	if st.lastSeq > 0 && st.lastSealKeyID != "" {
		return st, nil
	}
	rotated, err := rotatedFiles(dir)
	if err != nil {
		return nil, err
	}
	if len(rotated) == 0 {
		return st, nil
	}
	name := rotated[len(rotated)-1]
	prev, err := readEnds(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	if prev.torn != nil {
		return nil, fmt.Errorf("audit trail: %s ends with an incomplete line: the file was altered (keep it as evidence; run payhsm audit verify)", filepath.Join(dir, name))
	}
	if st.lastSeq == 0 && prev.last != nil {
		st.take(prev)
		st.lastFile = name
	} else if prev.seal != nil && st.lastSealKeyID == "" {
		st.lastSeal, st.lastSealKeyID = prev.seal.Seq, prev.seal.Seal.KeyID
	}
	return st, nil
}

func (st *tailState) take(e *fileEnds) {
	st.lastSeq, st.lastHash, st.lastKind = e.last.Seq, e.last.Stated, e.last.Kind
	if e.last.Kind == KindSeal {
		st.lastSealReason = e.last.Seal.Reason
	}
	if e.seal != nil {
		st.lastSeal, st.lastSealKeyID = e.seal.Seq, e.seal.Seal.KeyID
	}
}

// rotatedFiles lists the rotated files of dir in chain order.
func rotatedFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if e.Type().IsRegular() && strings.HasPrefix(n, "audit-") && strings.HasSuffix(n, ".log") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// fileEnds is what readEnds finds in a file.
type fileEnds struct {
	first, last *Parsed
	seal        *Parsed // the last seal, if any
	goodLen     int64   // the length up to the last newline
	torn        *Torn   // bytes after the last newline
}

// readEnds reads a trail file's first and last entries and its last seal.
// The last entry must be valid (form and hash): a writer continues the
// chain from it.
func readEnds(path string) (*fileEnds, error) {
	f, err := os.Open(path) //nolint:gosec // G304: a file of the trail's own directory.
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // read-only
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	size := fi.Size()
	out := &fileEnds{}
	if size == 0 || !fi.Mode().IsRegular() {
		return out, nil
	}
	off := max(0, size-tailChunk)
	for {
		chunk := make([]byte, size-off)
		if _, err := f.ReadAt(chunk, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("audit trail: read %s: %w", path, err)
		}
		nl := bytes.LastIndexByte(chunk, '\n')
		if out.last == nil {
			tail := chunk[nl+1:]
			if len(tail) > 0 {
				sum := sha256.Sum256(tail)
				out.torn = &Torn{Bytes: len(tail), SHA256: hex.EncodeToString(sum[:])}
			}
			if nl < 0 {
				if off == 0 {
					return out, nil // one incomplete line and nothing else
				}
				off = max(0, off-tailChunk)
				continue
			}
			out.goodLen = off + int64(nl) + 1
		}
		lines := bytes.Split(chunk[:max(nl, 0)], []byte{'\n'})
		if off > 0 {
			lines = lines[1:] // the first may be cut
		}
		for i := len(lines) - 1; i >= 0; i-- {
			if out.last == nil {
				p, err := ParseLine(lines[i])
				if err != nil || p.Computed != p.Stated {
					if err == nil {
						err = errors.New("its hash does not match its content")
					}
					return nil, fmt.Errorf("audit trail: the last entry of %s is not valid (%v): the file was altered; keep it as evidence (payhsm audit verify says where) and move it away to start a new chain", path, err)
				}
				out.last = p
			}
			if out.seal == nil && bytes.Contains(lines[i], []byte(`"kind":"seal"`)) {
				if p, err := ParseLine(lines[i]); err == nil && p.Kind == KindSeal {
					out.seal = p
				}
			}
			if out.seal != nil {
				break
			}
		}
		if out.seal != nil || off == 0 {
			break
		}
		size, off = off+int64(bytes.IndexByte(chunk, '\n'))+1, max(0, off-tailChunk)
	}
	first, err := readFirst(f)
	if err != nil {
		return nil, fmt.Errorf("audit trail: %s: %w", path, err)
	}
	out.first = first
	return out, nil
}

// readFirst parses a file's first line.
func readFirst(f *os.File) (*Parsed, error) {
	buf := make([]byte, MaxLineBytes+1)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	nl := bytes.IndexByte(buf[:n], '\n')
	if nl < 0 {
		return nil, errors.New("the first line is incomplete")
	}
	p, err := ParseLine(buf[:nl])
	if err != nil {
		return nil, fmt.Errorf("the first line: %w", err)
	}
	return p, nil
}

// digestLegacy identifies a pre-chain log by size and SHA-256; nil when absent.
func digestLegacy(path string) (*Legacy, error) {
	f, err := os.Open(path) //nolint:gosec // G304: the earlier release's log in the operator's data directory.
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	defer func() { _ = f.Close() }() // read-only
	d := sha256.New()
	n, err := io.Copy(d, f)
	if err != nil {
		return nil, fmt.Errorf("audit trail: digest %s: %w", path, err)
	}
	return &Legacy{File: filepath.Base(path), Bytes: n, SHA256: hex.EncodeToString(d.Sum(nil))}, nil
}
