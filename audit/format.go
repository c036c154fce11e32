package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// The line format (version 1; docs/audit.md). Each line is one JSON object:
//
//	{"v":1,"seq":N,"time":"…","kind":"…","prev":"<64 hex>", …fields…,"hash":"<64 hex>"}
//
// The body of a line is the line without its final `,"hash":"…"` member
// (with the closing brace kept): exactly the bytes the writer marshalled.
// hash = SHA-256(previous entry's hash, 32 bytes || body), lower-case hex.
// The first entry of a trail has prev = 64 zeros. Nothing is re-encoded to
// check a line: the verifier hashes the bytes it reads.

// Version is the line format version (the "v" member).
const Version = 1

// HashSize is the size of an entry hash.
const HashSize = sha256.Size

// zeroHash is the prev of a trail's first entry.
var zeroHash [HashSize]byte

// hashSuffixLen is len(`,"hash":"` + 64 hex + `"}`).
const hashSuffixLen = len(`,"hash":"`) + 2*HashSize + len(`"}`)

// MaxLineBytes bounds an entry line; the writer refuses a larger event (it
// is a bug: events carry names and identifiers, never payloads).
const MaxLineBytes = 64 << 10

// Kind is what an entry records.
type Kind string

// Kinds.
const (
	// KindControl is a control-plane call (AWS API control plane).
	KindControl Kind = "control"
	// KindData is a data-plane call (AWS API data plane, host port); written
	// only for accounts that opted in.
	KindData Kind = "data"
	// KindCeremony is a ceremony step (offline or through the admin socket).
	KindCeremony Kind = "ceremony"
	// KindDenial is an access-control decision that denied a request.
	KindDenial Kind = "denial"
	// KindSeal authenticates the chain up to the entry before it with a MAC.
	KindSeal Kind = "seal"
	// KindStart is the first entry a writer appends: when it opens the
	// trail, and at the top of each file after a rotation.
	KindStart Kind = "start"
	// KindNotice records something the writer itself did: data events it
	// dropped, a failed write it discarded, a change of seal key.
	KindNotice Kind = "notice"
)

func (k Kind) valid() bool {
	switch k {
	case KindControl, KindData, KindCeremony, KindDenial, KindSeal, KindStart, KindNotice:
		return true
	}
	return false
}

// Outcome is how a call or step ended, or that it started.
type Outcome string

// Outcomes.
const (
	// Started is written before a long or destructive ceremony step begins,
	// so that the trail shows it even if the process dies during it.
	Started Outcome = "started"
	OK      Outcome = "ok"
	// Refused: the call or step was not allowed (dual control, a check value
	// that differs, invalid input, …); nothing was changed.
	Refused Outcome = "refused"
	// Failed: the call or step was allowed but did not complete.
	Failed Outcome = "failed"
	// Denied: access control refused the request (KindDenial).
	Denied Outcome = "denied"
)

// Event is what a caller records: who did what to which key, and how it
// ended. It holds names, identifiers and check values, never key material,
// PINs or passphrases; a PAN given in PAN is written masked and as a keyed
// hash, never in full.
type Event struct {
	// Protocol is where the event came in: "aws" (HTTP API), "host" (host
	// port), "admin" (admin socket), "console" (an offline ceremony).
	Protocol  string `json:"protocol,omitempty"`
	Operation string `json:"operation"`
	// Principal is who: the SigV4 access key id, the host client (TLS
	// certificate common name, or its address), or the custodians.
	Principal string `json:"principal,omitempty"`
	Source    string `json:"source,omitempty"` // the peer address
	RequestID string `json:"requestId,omitempty"`
	Account   string `json:"account,omitempty"`
	Profile   string `json:"profile,omitempty"`
	// Keys are the keys the call names or made: key ARNs, alias names, host
	// key references (a key block is named by its X9.143 header only).
	Keys       []string          `json:"keys,omitempty"`
	Custodians []string          `json:"custodians,omitempty"`
	KCVs       map[string]string `json:"kcvs,omitempty"`
	Outcome    Outcome           `json:"outcome"`
	// Error is the error's class: the AWS exception name or the host error
	// code. Error messages are not recorded (they may quote input).
	Error  string `json:"error,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Online is true for ceremony steps the daemon ran for its admin socket.
	Online bool `json:"online,omitempty"`
	// PAN is the primary account number a data-plane call named. It is never
	// written: the entry holds MaskedPAN and PANHash instead.
	PAN string `json:"-"`
}

// Entry is one line of the trail.
type Entry struct {
	V    int       `json:"v"`
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Kind Kind      `json:"kind"`
	Prev string    `json:"prev"`
	*Event
	// MaskedPAN shows the first six and last four digits of the PAN at most
	// (secret.MaskPAN); PANHash is a keyed hash of the whole PAN (16 hex
	// digits of HMAC-SHA256 under a key of the trail's key hierarchy), so
	// that one card's events can be found without the PAN being written.
	MaskedPAN string  `json:"pan,omitempty"`
	PANHash   string  `json:"panHash,omitempty"`
	Seal      *Seal   `json:"seal,omitempty"`
	Start     *Start  `json:"start,omitempty"`
	Notice    *Notice `json:"notice,omitempty"`
	Hash      string  `json:"hash,omitempty"`
}

// Seal authenticates every entry before it: MAC is HMAC-SHA256, under the
// trail's seal key, of the label "payhsm audit seal v1", a zero byte and the
// 32-byte hash of the entry just before the seal (which commits to the whole
// chain up to it).
type Seal struct {
	// From and To are the sequence numbers this seal adds to the sealed
	// part of the trail: the entries after the previous seal, up to the one
	// just before this seal.
	From   uint64 `json:"from"`
	To     uint64 `json:"to"`
	Reason string `json:"reason"` // count, interval, rotate, close, rekey
	KeyID  string `json:"keyId"`
	MAC    string `json:"mac"`
}

// Seal reasons.
const (
	SealCount    = "count"
	SealInterval = "interval"
	SealRotate   = "rotate"
	SealClose    = "close"
	SealRekey    = "rekey"
)

// Start is what a writer found and is: written as the first entry when it
// opens the trail, and at the top of every file after a rotation.
type Start struct {
	Reason string `json:"reason"` // open, rotate, recover
	Writer string `json:"writer,omitempty"`
	PID    int    `json:"pid,omitempty"`
	// File is this file's name; PrevFile the file the chain continues from
	// (the previous file's last entry is this entry's prev).
	File     string `json:"file"`
	PrevFile string `json:"prevFile,omitempty"`
	// Unclean: the trail did not end with a closing seal (the last writer
	// was killed or crashed); LastSealed is the last sealed sequence number
	// the writer found.
	Unclean    bool   `json:"unclean,omitempty"`
	LastSealed uint64 `json:"lastSealed,omitempty"`
	// ActiveMissing: there was no active file, though the trail had
	// entries (in rotated files): a rotation cut short by a crash between
	// its rename and the new file, or the active file was removed.
	ActiveMissing bool `json:"activeMissing,omitempty"`
	// Torn is an incomplete last line the writer found and cut off (a
	// write the process did not finish; it was never acknowledged).
	Torn  *Torn  `json:"torn,omitempty"`
	KeyID string `json:"keyId"`
	// PrevKeyID is the key id of the trail's last seal when it is not
	// KeyID: the trail continues under another seal key (a new region main
	// key). Seals under PrevKeyID cannot be checked with this one.
	PrevKeyID string `json:"prevKeyId,omitempty"`
	// Legacy anchors the unchained ceremony log of earlier releases
	// (DATA/ceremony-audit.log) in the chain by its digest.
	Legacy *Legacy `json:"legacy,omitempty"`
}

// Start reasons.
const (
	StartOpen    = "open"
	StartRotate  = "rotate"
	StartRecover = "recover"
)

// Torn describes the bytes cut from the end of a file.
type Torn struct {
	Bytes  int    `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Legacy identifies a pre-chain audit log by its digest.
type Legacy struct {
	File   string `json:"file"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Notice is something the writer did to the trail.
type Notice struct {
	// Dropped data-plane events (the queue was full or the trail could not
	// write): their number since the previous such notice.
	Dropped uint64 `json:"dropped,omitempty"`
	// SuppressedDenials: denials beyond the trail's rate, counted instead of
	// recorded one by one, since the previous such notice.
	SuppressedDenials uint64 `json:"suppressedDenials,omitempty"`
	// Discarded: a write or sync failed, and the entries it held (never
	// acknowledged) were discarded; the trail continues after the last
	// durable entry. Error is the failure.
	Discarded uint64 `json:"discarded,omitempty"`
	Error     string `json:"error,omitempty"`
	// Rekey: seals from here on are under KeyID; earlier ones under PrevKeyID.
	KeyID     string `json:"keyId,omitempty"`
	PrevKeyID string `json:"prevKeyId,omitempty"`
}

// appendEntryLine appends the line of e (whose Hash must be empty),
// chained onto prev, with its newline, to dst, and returns it and the
// entry's hash; on error dst is returned as it was.
func appendEntryLine(dst []byte, e *Entry, prev [HashSize]byte) ([]byte, [HashSize]byte, error) {
	e.V = Version
	e.Prev = hex.EncodeToString(prev[:])
	e.Hash = ""
	start := len(dst)
	line, ok := appendEntryJSON(dst, e)
	if !ok {
		body, err := json.Marshal(e)
		if err != nil {
			return dst, [HashSize]byte{}, fmt.Errorf("audit: encode entry: %w", err)
		}
		line = append(dst[:start], body...)
	}
	body := line[start:]
	if len(body)+hashSuffixLen+1 > MaxLineBytes {
		return dst[:start], [HashSize]byte{}, fmt.Errorf("audit: a %s entry of %d bytes exceeds %d", e.Kind, len(body), MaxLineBytes)
	}
	h := chainHash(prev, body)
	line = line[:len(line)-1] // the closing brace, after the hash member
	line = append(line, `,"hash":"`...)
	line = hex.AppendEncode(line, h[:])
	line = append(line, "\"}\n"...)
	return line, h, nil
}

func chainHash(prev [HashSize]byte, body []byte) [HashSize]byte {
	d := sha256.New()
	d.Write(prev[:])
	d.Write(body)
	var h [HashSize]byte
	d.Sum(h[:0])
	return h
}

// Parsed is an entry read back by ParseLine.
type Parsed struct {
	Entry
	// Computed is the hash of the line's bytes chained onto the entry's own
	// prev; it equals Stated unless the line was altered.
	Computed, Stated, PrevHash [HashSize]byte
}

// Errors of ParseLine.
var (
	ErrNotEntry = errors.New("not an audit entry")
)

// ParseLine parses one line (without its newline) of a trail file. It checks
// the line's form, not its place in the chain: Computed is what its hash
// should be given its prev, Stated what it says. It never panics, whatever
// the input (FuzzParseLine).
func ParseLine(line []byte) (*Parsed, error) {
	if len(line) > MaxLineBytes {
		return nil, fmt.Errorf("%w: line of %d bytes exceeds %d", ErrNotEntry, len(line), MaxLineBytes)
	}
	if len(line) < hashSuffixLen+2 || line[0] != '{' {
		return nil, fmt.Errorf("%w: too short or not a JSON object", ErrNotEntry)
	}
	suffix := line[len(line)-hashSuffixLen:]
	if !bytes.HasPrefix(suffix, []byte(`,"hash":"`)) || !bytes.HasSuffix(suffix, []byte(`"}`)) {
		return nil, fmt.Errorf("%w: the line does not end with its hash member", ErrNotEntry)
	}
	var p Parsed
	hexHash := suffix[len(`,"hash":"`) : len(suffix)-2]
	if !isLowerHex(hexHash) {
		return nil, fmt.Errorf("%w: hash is not lower-case hex", ErrNotEntry)
	}
	_, _ = hex.Decode(p.Stated[:], hexHash) // checked above
	body := make([]byte, 0, len(line)-hashSuffixLen+1)
	body = append(body, line[:len(line)-hashSuffixLen]...)
	body = append(body, '}')
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p.Entry); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotEntry, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the object", ErrNotEntry)
	}
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotEntry, err)
	}
	_, _ = hex.Decode(p.PrevHash[:], []byte(p.Prev)) // checked by check
	p.Computed = chainHash(p.PrevHash, body)
	p.Hash = string(hexHash)
	return &p, nil
}

// check checks an entry's members against its kind.
func (p *Parsed) check() error {
	e := &p.Entry
	switch {
	case e.V != Version:
		return fmt.Errorf("version %d, want %d", e.V, Version)
	case e.Seq == 0:
		return errors.New("seq 0")
	case !e.Kind.valid():
		return fmt.Errorf("unknown kind %q", e.Kind)
	case len(e.Prev) != 2*HashSize || !isLowerHex([]byte(e.Prev)):
		return errors.New("prev is not a 64-digit lower-case hex hash")
	case e.Hash != "":
		return errors.New("hash member in the body")
	}
	switch e.Kind {
	case KindSeal:
		if e.Seal == nil || len(e.Seal.MAC) != 2*HashSize || !isLowerHex([]byte(e.Seal.MAC)) || e.Seal.To != e.Seq-1 || e.Seal.From > e.Seal.To+1 {
			return errors.New("malformed seal")
		}
	case KindStart:
		if e.Start == nil {
			return errors.New("start entry without start member")
		}
	case KindNotice:
		if e.Notice == nil {
			return errors.New("notice entry without notice member")
		}
	default:
		if e.Event == nil || e.Operation == "" || e.Outcome == "" {
			return errors.New("event entry without operation or outcome")
		}
	}
	return nil
}

func isLowerHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return len(b) > 0
}

// sealLabel is the MAC's domain separation.
const sealLabel = "payhsm audit seal v1\x00"

// sealMAC is HMAC-SHA256(key, sealLabel || prev).
func sealMAC(key []byte, prev [HashSize]byte) [HashSize]byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(sealLabel))
	m.Write(prev[:])
	var out [HashSize]byte
	m.Sum(out[:0])
	return out
}

// fileName is the name a file is rotated to: its first sequence number, so
// that names sort in chain order (and before the active file, audit.log).
func fileName(first uint64) string {
	return "audit-" + pad16(first) + ".log"
}

func pad16(n uint64) string {
	s := strconv.FormatUint(n, 10)
	for len(s) < 16 {
		s = "0" + s
	}
	return s
}
