package keystore

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"go.uber.org/zap/zapcore"

	"payhsm/internal/jsontext"
	"payhsm/keyspec"
)

// stateDeletePending is the AWS KeyState the purge index keys on.
const stateDeletePending = "DELETE_PENDING"

// IDLen is the length of a key id.
const IDLen = 16

// Key is one stored key: its X9.143 block under the profile main key and its
// non-secret metadata.
type Key struct {
	ID             string // 16 lowercase alphanumerics, unique
	Profile        string // key space (like a payShield LMK id), e.g. "default"
	Attributes     keyspec.Attributes
	DeriveKeyUsage keyspec.KeyUsage // K3 keys only
	KCV            string
	KCVAlgorithm   keyspec.KCVAlgorithm
	Exportable     bool
	Enabled        bool
	State          string // AWS KeyState: CREATE_COMPLETE, DELETE_PENDING, ...
	Origin         string // AWS KeyOrigin

	// Zero means unset.
	Created, UsageStart, UsageStop, DeletePending, Deleted time.Time

	KeyBlock    string // X9.143 block under the profile main key; empty for public-only keys
	PublicKey   []byte // DER SubjectPublicKeyInfo, asymmetric keys
	Certificate []byte // DER certificate, when the key came from a certificate
	// ResourcePolicy is the key's resource-based policy (IAM JSON, as
	// PutResourcePolicy gave it; "" for none). It lives in the key record,
	// so it is authenticated with the key and goes when the key goes.
	ResourcePolicy string
	// CreatedBy names who created the key, for the audit trail: what the
	// layer above needs to write the creation's entry again after a crash
	// (the daemon's audit outbox: principal, source and request id). It is
	// authenticated with the key and kept for its life; "" when not given.
	CreatedBy string
	Revision  uint64 // bumped on every write of the key record by the store

	// bare: the key record says, authenticated with it, that the key has
	// no tags and no alias index entries, so reading the key needs no scan
	// for them (GetKey). The store alone sets it: CreateKey when the key
	// comes without tags and alias, UpdateKey keeps it whatever fn does,
	// and the first tag or alias given to the key clears it, in the same
	// transaction (attach). Removing the last tag or alias does not set it
	// again. Records written before it existed do not carry it: their keys
	// are scanned as before.
	bare bool
}

// Alias is a named reference to a key.
type Alias struct {
	Name  string
	KeyID string // "" when not associated
}

// Tag is one resource tag.
type Tag struct{ Key, Value string }

// String describes k without its key block.
func (k Key) String() string {
	return fmt.Sprintf("Key{ID:%s Profile:%s Usage:%s Algorithm:%s State:%s Revision:%d KeyBlock:[redacted]}",
		k.ID, k.Profile, k.Attributes.Usage, k.Attributes.Algorithm, k.State, k.Revision)
}

// GoString is String, so %#v does not print the key block either.
func (k Key) GoString() string { return k.String() }

// MarshalLogObject lets zap log a Key (zap.Object, zap.Any) without its key block.
func (k Key) MarshalLogObject(e zapcore.ObjectEncoder) error {
	e.AddString("id", k.ID)
	e.AddString("profile", k.Profile)
	e.AddString("usage", string(k.Attributes.Usage))
	e.AddString("algorithm", string(k.Attributes.Algorithm))
	e.AddString("state", k.State)
	e.AddUint64("revision", k.Revision)
	return nil
}

// ValidID reports whether id is 16 characters of [a-z0-9].
func ValidID(id string) bool {
	if len(id) != IDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// Name limits: generous bounds above the API's own (alias 256, tag key 128,
// tag value 256), so a runaway caller cannot write huge Pebble keys.
const (
	maxNameLen     = 1024
	maxTagValueLen = 4096
)

func validName(n string) bool { return n != "" && len(n) <= maxNameLen }

// keyRecord is the payload of a key record: JSON, version 2 ("v": 2), the
// record's revision being in its header. Version 1, the whole value of a
// format 1 key record, also carried "revision". Field names are fixed here
// so that renaming a Go field never changes the format silently.
type keyRecord struct {
	V              int        `json:"v"`
	ID             string     `json:"id"`
	Profile        string     `json:"profile"`
	Attributes     attrRecord `json:"attributes"`
	DeriveKeyUsage string     `json:"deriveKeyUsage,omitempty"`
	KCV            string     `json:"kcv,omitempty"`
	KCVAlgorithm   string     `json:"kcvAlgorithm,omitempty"`
	Exportable     bool       `json:"exportable"`
	Enabled        bool       `json:"enabled"`
	State          string     `json:"state"`
	Origin         string     `json:"origin"`
	Created        string     `json:"created,omitempty"`
	UsageStart     string     `json:"usageStart,omitempty"`
	UsageStop      string     `json:"usageStop,omitempty"`
	DeletePending  string     `json:"deletePending,omitempty"`
	Deleted        string     `json:"deleted,omitempty"`
	KeyBlock       string     `json:"keyBlock,omitempty"`
	PublicKey      []byte     `json:"publicKey,omitempty"`
	Certificate    []byte     `json:"certificate,omitempty"`
	ResourcePolicy string     `json:"resourcePolicy,omitempty"`
	CreatedBy      string     `json:"createdBy,omitempty"`
	// NoTagsOrAliases is Key.bare, written only when true (so the record
	// of a key with tags or aliases reads as before it existed); version 2
	// only.
	NoTagsOrAliases bool    `json:"noTagsOrAliases,omitempty"`
	Revision        *uint64 `json:"revision,omitempty"` // version 1 only
}

type attrRecord struct {
	Usage     string      `json:"usage"`
	Class     string      `json:"class"`
	Algorithm string      `json:"algorithm"`
	Modes     modesRecord `json:"modes"`
}

type modesRecord struct {
	Encrypt        bool `json:"encrypt,omitempty"`
	Decrypt        bool `json:"decrypt,omitempty"`
	Wrap           bool `json:"wrap,omitempty"`
	Unwrap         bool `json:"unwrap,omitempty"`
	Generate       bool `json:"generate,omitempty"`
	Sign           bool `json:"sign,omitempty"`
	Verify         bool `json:"verify,omitempty"`
	DeriveKey      bool `json:"deriveKey,omitempty"`
	NoRestrictions bool `json:"noRestrictions,omitempty"`
}

// Key record payload versions.
const (
	keyRecordV1      = 1 // format 1
	keyRecordVersion = 2
)

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

// encodeKey returns k's record. encoding/json writes struct fields in
// declaration order, so the encoding is deterministic.
func encodeKey(k *Key) ([]byte, error) {
	r := keyRecordOf(k)
	if b, ok := appendKeyRecord(make([]byte, 0, 512+len(r.KeyBlock)+len(r.PublicKey)*4/3+len(r.Certificate)*4/3), &r); ok {
		return b, nil
	}
	b, err := json.Marshal(&r)
	if err != nil {
		return nil, fmt.Errorf("keystore: encode key %s: %w", k.ID, err) // no field values: the block must not leak
	}
	return b, nil
}

// keyRecordOf is k's record (format 2).
func keyRecordOf(k *Key) keyRecord {
	m := k.Attributes.Modes
	return keyRecord{
		V: keyRecordVersion, ID: k.ID, Profile: k.Profile,
		Attributes: attrRecord{
			Usage: string(k.Attributes.Usage), Class: string(k.Attributes.Class), Algorithm: string(k.Attributes.Algorithm),
			Modes: modesRecord{m.Encrypt, m.Decrypt, m.Wrap, m.Unwrap, m.Generate, m.Sign, m.Verify, m.DeriveKey, m.NoRestrictions},
		},
		DeriveKeyUsage: string(k.DeriveKeyUsage), KCV: k.KCV, KCVAlgorithm: string(k.KCVAlgorithm),
		Exportable: k.Exportable, Enabled: k.Enabled, State: k.State, Origin: k.Origin,
		Created: fmtTime(k.Created), UsageStart: fmtTime(k.UsageStart), UsageStop: fmtTime(k.UsageStop),
		DeletePending: fmtTime(k.DeletePending), Deleted: fmtTime(k.Deleted),
		KeyBlock: k.KeyBlock, PublicKey: k.PublicKey, Certificate: k.Certificate, ResourcePolicy: k.ResourcePolicy, CreatedBy: k.CreatedBy,
		NoTagsOrAliases: k.bare,
	}
}

// appendKeyRecord appends r as encoding/json would write it, byte for byte
// (TestAppendKeyRecordMatchesJSON), without reflection: every CreateKey
// encodes one (json.Marshal was about 1.5% of its CPU in the daemon). ok is
// false, and nothing is appended, when a string needs escaping (a resource
// policy holds quotes): encodeKey then uses encoding/json.
func appendKeyRecord(b []byte, r *keyRecord) (_ []byte, ok bool) {
	if r.Revision != nil {
		return b, false
	}
	for _, s := range [...]string{r.ID, r.Profile, r.Attributes.Usage, r.Attributes.Class, r.Attributes.Algorithm,
		r.DeriveKeyUsage, r.KCV, r.KCVAlgorithm, r.State, r.Origin, r.Created, r.UsageStart, r.UsageStop,
		r.DeletePending, r.Deleted, r.KeyBlock, r.ResourcePolicy, r.CreatedBy} {
		if !jsontext.Plain(s) {
			return b, false
		}
	}
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(r.V), 10)
	b = appendJSONField(b, `,"id":`, r.ID)
	b = appendJSONField(b, `,"profile":`, r.Profile)
	b = appendJSONField(b, `,"attributes":{"usage":`, r.Attributes.Usage)
	b = appendJSONField(b, `,"class":`, r.Attributes.Class)
	b = appendJSONField(b, `,"algorithm":`, r.Attributes.Algorithm)
	b = append(b, `,"modes":{`...)
	m := &r.Attributes.Modes
	sep := ""
	for _, f := range [...]struct {
		name string
		on   bool
	}{{"encrypt", m.Encrypt}, {"decrypt", m.Decrypt}, {"wrap", m.Wrap}, {"unwrap", m.Unwrap}, {"generate", m.Generate},
		{"sign", m.Sign}, {"verify", m.Verify}, {"deriveKey", m.DeriveKey}, {"noRestrictions", m.NoRestrictions}} {
		if f.on {
			b = append(b, sep...)
			b = append(b, '"')
			b = append(b, f.name...)
			b = append(b, `":true`...)
			sep = ","
		}
	}
	b = append(b, "}}"...)
	b = appendJSONOmitEmpty(b, `,"deriveKeyUsage":`, r.DeriveKeyUsage)
	b = appendJSONOmitEmpty(b, `,"kcv":`, r.KCV)
	b = appendJSONOmitEmpty(b, `,"kcvAlgorithm":`, r.KCVAlgorithm)
	b = append(b, `,"exportable":`...)
	b = strconv.AppendBool(b, r.Exportable)
	b = append(b, `,"enabled":`...)
	b = strconv.AppendBool(b, r.Enabled)
	b = appendJSONField(b, `,"state":`, r.State)
	b = appendJSONField(b, `,"origin":`, r.Origin)
	b = appendJSONOmitEmpty(b, `,"created":`, r.Created)
	b = appendJSONOmitEmpty(b, `,"usageStart":`, r.UsageStart)
	b = appendJSONOmitEmpty(b, `,"usageStop":`, r.UsageStop)
	b = appendJSONOmitEmpty(b, `,"deletePending":`, r.DeletePending)
	b = appendJSONOmitEmpty(b, `,"deleted":`, r.Deleted)
	b = appendJSONOmitEmpty(b, `,"keyBlock":`, r.KeyBlock)
	b = appendJSONBytes(b, `,"publicKey":`, r.PublicKey)
	b = appendJSONBytes(b, `,"certificate":`, r.Certificate)
	b = appendJSONOmitEmpty(b, `,"resourcePolicy":`, r.ResourcePolicy)
	b = appendJSONOmitEmpty(b, `,"createdBy":`, r.CreatedBy)
	if r.NoTagsOrAliases {
		b = append(b, `,"noTagsOrAliases":true`...)
	}
	return append(b, '}'), true
}

// appendJSONField appends name (with its separator and colon) and the
// plain string s quoted.
func appendJSONField(b []byte, name, s string) []byte {
	b = append(b, name...)
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendJSONOmitEmpty is appendJSONField for an omitempty field.
func appendJSONOmitEmpty(b []byte, name, s string) []byte {
	if s == "" {
		return b
	}
	return appendJSONField(b, name, s)
}

// appendJSONBytes appends an omitempty []byte field: standard base64, as
// encoding/json writes it.
func appendJSONBytes(b []byte, name string, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = append(b, name...)
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

// decodeKey parses a key record's payload (version 2); the caller sets
// Revision from its header. Errors name the id only, never content.
func decodeKey(id string, b []byte) (*Key, error) {
	return decodeKeyVersion(id, b, keyRecordVersion)
}

// decodeKeyV1 parses a format 1 key record, with its revision.
func decodeKeyV1(id string, b []byte) (*Key, error) {
	return decodeKeyVersion(id, b, keyRecordV1)
}

func decodeKeyVersion(id string, b []byte, version int) (*Key, error) {
	var r keyRecord
	if err := decodeKeyRecord(id, b, &r); err != nil {
		return nil, fmt.Errorf("keystore: key %s: corrupt record", id)
	}
	if r.V != version || (r.Revision != nil) != (version == keyRecordV1) || (r.NoTagsOrAliases && version == keyRecordV1) {
		return nil, fmt.Errorf("keystore: key %s: unsupported record version %d", id, r.V)
	}
	if r.ID != id {
		return nil, fmt.Errorf("keystore: key %s: record carries a different id", id)
	}
	m := r.Attributes.Modes
	k := &Key{
		ID: r.ID, Profile: r.Profile,
		Attributes: keyspec.Attributes{
			Usage: keyspec.KeyUsage(r.Attributes.Usage), Class: keyspec.Class(r.Attributes.Class),
			Algorithm: keyspec.Algorithm(r.Attributes.Algorithm),
			Modes:     keyspec.ModesOfUse{Encrypt: m.Encrypt, Decrypt: m.Decrypt, Wrap: m.Wrap, Unwrap: m.Unwrap, Generate: m.Generate, Sign: m.Sign, Verify: m.Verify, DeriveKey: m.DeriveKey, NoRestrictions: m.NoRestrictions},
		},
		DeriveKeyUsage: keyspec.KeyUsage(r.DeriveKeyUsage), KCV: r.KCV, KCVAlgorithm: keyspec.KCVAlgorithm(r.KCVAlgorithm),
		Exportable: r.Exportable, Enabled: r.Enabled, State: r.State, Origin: r.Origin,
		KeyBlock: r.KeyBlock, PublicKey: r.PublicKey, Certificate: r.Certificate, ResourcePolicy: r.ResourcePolicy, CreatedBy: r.CreatedBy,
		bare: r.NoTagsOrAliases,
	}
	if r.Revision != nil {
		k.Revision = *r.Revision
	}
	for _, f := range []struct {
		dst *time.Time
		src string
	}{{&k.Created, r.Created}, {&k.UsageStart, r.UsageStart}, {&k.UsageStop, r.UsageStop}, {&k.DeletePending, r.DeletePending}, {&k.Deleted, r.Deleted}} {
		t, err := parseTime(f.src)
		if err != nil {
			return nil, fmt.Errorf("keystore: key %s: corrupt timestamp", id)
		}
		*f.dst = t
	}
	return k, nil
}

// strictUnmarshal decodes exactly one JSON object with only known fields.
func strictUnmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("trailing data")
	}
	return nil
}

// An alias record's payload is the id of the key it names, or nothing when
// it names none.

func encodeAlias(keyID string) []byte { return []byte(keyID) }

func decodeAlias(name string, b []byte) (Alias, error) {
	if len(b) != 0 && !ValidID(string(b)) {
		return Alias{}, fmt.Errorf("keystore: alias %q: corrupt key id", name)
	}
	return Alias{Name: name, KeyID: string(b)}, nil
}

// aliasRecordV1 is a format 1 alias record.
type aliasRecordV1 struct {
	V   int    `json:"v"`
	Key string `json:"key,omitempty"`
}

func decodeAliasV1(name string, b []byte) (Alias, error) {
	var r aliasRecordV1
	if err := strictUnmarshal(b, &r); err != nil {
		return Alias{}, fmt.Errorf("keystore: alias %q: corrupt record", name)
	}
	if r.V != 1 {
		return Alias{}, fmt.Errorf("keystore: alias %q: unsupported record version %d", name, r.V)
	}
	return decodeAlias(name, []byte(r.Key))
}

// Pebble keys.

func keyKey(id string) []byte         { return []byte(pfxKey + id) }
func aliasKey(name string) []byte     { return []byte(pfxAlias + name) }
func byKeyPrefix(id string) string    { return pfxByKey + id + "/" }
func byKeyKey(id, name string) []byte { return []byte(byKeyPrefix(id) + name) }
func tagPrefix(id string) string      { return pfxTag + id + "/" }
func tagKey(id, key string) []byte    { return []byte(tagPrefix(id) + key) }
func metaKey(name string) []byte      { return []byte(pfxMeta + name) }

// MetaEngineKey is the engine key of meta record name, for a tool that
// asks an engine whether a record exists without opening the store (a
// fleet node's first start).
func MetaEngineKey(name string) []byte { return metaKey(name) }
func purgeKey(t time.Time, id string) []byte {
	b := make([]byte, 0, len(pfxPurge)+8+len(id))
	b = append(b, pfxPurge...)
	b = binary.BigEndian.AppendUint64(b, deadlineNanos(t))
	return append(b, id...)
}

// deadlineNanos maps t onto an order-preserving uint64, clamping times
// outside what UnixNano can represent.
func deadlineNanos(t time.Time) uint64 {
	switch {
	case t.Before(time.Unix(0, 0)):
		return 0
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

// purgeEntry returns k's purge index key, or nil when k is not awaiting purge.
func purgeEntry(k *Key) []byte {
	if k.State != stateDeletePending || k.DeletePending.IsZero() {
		return nil
	}
	return purgeKey(k.DeletePending, k.ID)
}

// upperBound returns the smallest key greater than every key with prefix p.
// Prefixes here end in '/', never 0xff, so incrementing the last byte works.
func upperBound(p string) []byte {
	b := []byte(p)
	b[len(b)-1]++
	return b
}
