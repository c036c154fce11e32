package keystore

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"

	"payhsm/keyspec"
)

// Decoding a key record without reflection.
//
// Every use of a key the working-key cache does not hold reads its key
// record, and encoding/json (reflection, a buffered Decoder that scans the
// value twice, a Token call for the trailing-data check) was about a third
// of such a miss. decodeKeyRecord decodes the records encodeKey writes, and
// anything like them, in one pass over the payload and without reflection;
// whatever it is not certain to decode exactly as strictUnmarshal would, it
// leaves to strictUnmarshal. So the two agree by construction, on refusals
// as on values:
//
//   - fastKeyRecord accepts only input that encoding/json accepts too: one
//     JSON object, whitespace around it and nothing else, the record's own
//     field names spelled exactly (encoding/json also matches them without
//     regard to case, and refuses unknown ones: both go to it), each at most
//     once (encoding/json lets a repeated field overwrite, or merge into,
//     the earlier one: it decides), values of the field's own JSON type (a
//     null, a negative or fractional number, an out-of-range one: to it),
//     strings of valid UTF-8 without control characters whose escapes are
//     the two-character ones or a \u escape outside the surrogates
//     (encoding/json replaces invalid UTF-8 and lone surrogates with
//     U+FFFD: to it), base64 as encoding/json decodes it (the same
//     base64.StdEncoding);
//   - on what it accepts, its keyRecord is the one encoding/json makes
//     (FuzzKeyRecordDecoders checks this differentially on any input).
//
// Everything encodeKey writes is in the subset: encoding/json never writes
// a surrogate escape or invalid UTF-8 (checkKey refuses invalid UTF-8 before
// a record is written). Records are authenticated before they are decoded,
// so only this appliance's own writes reach here in practice; the decoder
// still treats them as untrusted input: it never panics, and it refuses
// exactly what encoding/json refuses.

// decodeKeyRecord decodes a key record's payload into r.
func decodeKeyRecord(id string, b []byte, r *keyRecord) error {
	if fastKeyRecord(id, b, r) {
		return nil
	}
	*r = keyRecord{}
	return strictUnmarshal(b, r)
}

// recScanner is a cursor over a payload.
type recScanner struct {
	b   []byte
	i   int
	buf []byte // scratch for strings with escapes

	seenKey uint32 // the key record's fields read so far
}

// Field bits of keyRecord, attrRecord and modesRecord, to refuse repeats.
const (
	fV = 1 << iota
	fID
	fProfile
	fAttributes
	fDeriveKeyUsage
	fKCV
	fKCVAlgorithm
	fExportable
	fEnabled
	fState
	fOrigin
	fCreated
	fUsageStart
	fUsageStop
	fDeletePending
	fDeleted
	fKeyBlock
	fPublicKey
	fCertificate
	fResourcePolicy
	fCreatedBy
	fRevision
	fNoTagsOrAliases
)

// fastKeyRecord decodes b into r and reports true, or reports false, with r
// in any state, when b is not in the subset described above.
func fastKeyRecord(id string, b []byte, r *keyRecord) bool {
	*r = keyRecord{}
	p := recScanner{b: b}
	if !p.object(func(name []byte) bool { return p.keyField(id, name, r) }) {
		return false
	}
	p.ws()
	return p.i == len(p.b)
}

func (p *recScanner) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// next skips whitespace and consumes c when it comes next.
func (p *recScanner) next(c byte) bool {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// object parses an object, calling field with each member's name once the
// cursor is at its value (whitespace skipped); field consumes the value.
func (p *recScanner) object(field func(name []byte) bool) bool {
	if !p.next('{') {
		return false
	}
	if p.next('}') {
		return true
	}
	for {
		p.ws()
		name, ok := p.rawName()
		if !ok || !p.next(':') {
			return false
		}
		p.ws()
		if !field(name) {
			return false
		}
		if p.next(',') {
			continue
		}
		return p.next('}')
	}
}

// rawName reads a member name without escapes (a name with one goes to
// encoding/json, which unescapes before it matches).
func (p *recScanner) rawName() ([]byte, bool) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return nil, false
	}
	start := p.i + 1
	for j := start; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			p.i = j + 1
			return p.b[start:j], true
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

// str reads a string value: the bytes themselves when it has no escape
// (aliasing the payload), else its unescaped bytes in p.buf.
func (p *recScanner) str() ([]byte, bool) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return nil, false
	}
	start := p.i + 1
	j := start
	ascii := true
	for ; j < len(p.b); j++ {
		c := p.b[j]
		if c == '"' {
			break
		}
		if c == '\\' {
			return p.escaped(start)
		}
		if c < 0x20 {
			return nil, false
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	if j == len(p.b) {
		return nil, false
	}
	s := p.b[start:j]
	if !ascii && !utf8.Valid(s) {
		return nil, false
	}
	p.i = j + 1
	return s, true
}

// escaped reads a string with escapes from its first byte at start.
func (p *recScanner) escaped(start int) ([]byte, bool) {
	out := p.buf[:0]
	j := start
	for j < len(p.b) {
		c := p.b[j]
		switch {
		case c == '"':
			if !utf8.Valid(out) {
				return nil, false
			}
			p.i, p.buf = j+1, out
			return out, true
		case c < 0x20:
			return nil, false
		case c != '\\':
			out = append(out, c)
			j++
			continue
		}
		if j+1 >= len(p.b) {
			return nil, false
		}
		switch e := p.b[j+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if j+6 > len(p.b) {
				return nil, false
			}
			var r rune
			for _, h := range p.b[j+2 : j+6] {
				var d byte
				switch {
				case '0' <= h && h <= '9':
					d = h - '0'
				case 'a' <= h && h <= 'f':
					d = h - 'a' + 10
				case 'A' <= h && h <= 'F':
					d = h - 'A' + 10
				default:
					return nil, false
				}
				r = r<<4 | rune(d)
			}
			if 0xd800 <= r && r < 0xe000 { // a surrogate: encoding/json pairs or replaces it
				return nil, false
			}
			out = utf8.AppendRune(out, r)
			j += 6
			continue
		default:
			return nil, false
		}
		j += 2
	}
	return nil, false
}

// text reads a string value as a Go string, sharing want's memory when
// equal to it and a constant's when it is a known enumerated value.
func (p *recScanner) text(want string) (string, bool) {
	s, ok := p.str()
	if !ok {
		return "", false
	}
	if string(s) == want {
		return want, true
	}
	if c, ok := knownText[string(s)]; ok {
		return c, true
	}
	return string(s), true
}

// bytes reads a base64 string value as encoding/json decodes a []byte.
func (p *recScanner) bytes() ([]byte, bool) {
	s, ok := p.str()
	if !ok {
		return nil, false
	}
	b := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(b, s)
	if err != nil {
		return nil, false
	}
	return b[:n], true
}

func (p *recScanner) boolean() (bool, bool) {
	switch {
	case p.lit("true"):
		return true, true
	case p.lit("false"):
		return false, true
	}
	return false, false
}

func (p *recScanner) lit(s string) bool {
	if len(p.b)-p.i >= len(s) && string(p.b[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

// num reads an unsigned integer of at most digits digits with no leading
// zero, sign, fraction or exponent (whatever follows it must be a
// delimiter, which the caller checks).
func (p *recScanner) num(digits int) (uint64, bool) {
	j := p.i
	for j < len(p.b) && j-p.i <= digits && '0' <= p.b[j] && p.b[j] <= '9' {
		j++
	}
	n := j - p.i
	if n == 0 || n > digits || (n > 1 && p.b[p.i] == '0') {
		return 0, false
	}
	if j < len(p.b) && (p.b[j] == '.' || p.b[j] == 'e' || p.b[j] == 'E') {
		return 0, false
	}
	v, err := strconv.ParseUint(string(p.b[p.i:j]), 10, 64)
	if err != nil {
		return 0, false
	}
	p.i = j
	return v, true
}

// seen marks field bit f in *set and reports false when it was already set.
func seen(set *uint32, f uint32) bool {
	if *set&f != 0 {
		return false
	}
	*set |= f
	return true
}

// keyField decodes the value of the key record's member name into r.
func (p *recScanner) keyField(id string, name []byte, r *keyRecord) bool {
	var ok bool
	var f uint32
	switch string(name) {
	case "v":
		var v uint64
		v, ok = p.num(9)    // fits any int
		r.V, f = int(v), fV //nolint:gosec // at most nine digits
	case "id":
		r.ID, ok = p.text(id)
		f = fID
	case "profile":
		r.Profile, ok = p.text("")
		f = fProfile
	case "attributes":
		ok, f = p.attributes(&r.Attributes), fAttributes
	case "deriveKeyUsage":
		r.DeriveKeyUsage, ok = p.text("")
		f = fDeriveKeyUsage
	case "kcv":
		r.KCV, ok = p.text("")
		f = fKCV
	case "kcvAlgorithm":
		r.KCVAlgorithm, ok = p.text("")
		f = fKCVAlgorithm
	case "exportable":
		r.Exportable, ok = p.boolean()
		f = fExportable
	case "enabled":
		r.Enabled, ok = p.boolean()
		f = fEnabled
	case "state":
		r.State, ok = p.text("")
		f = fState
	case "origin":
		r.Origin, ok = p.text("")
		f = fOrigin
	case "created":
		r.Created, ok = p.text("")
		f = fCreated
	case "usageStart":
		r.UsageStart, ok = p.text("")
		f = fUsageStart
	case "usageStop":
		r.UsageStop, ok = p.text("")
		f = fUsageStop
	case "deletePending":
		r.DeletePending, ok = p.text("")
		f = fDeletePending
	case "deleted":
		r.Deleted, ok = p.text("")
		f = fDeleted
	case "keyBlock":
		r.KeyBlock, ok = p.text("")
		f = fKeyBlock
	case "publicKey":
		r.PublicKey, ok = p.bytes()
		f = fPublicKey
	case "certificate":
		r.Certificate, ok = p.bytes()
		f = fCertificate
	case "resourcePolicy":
		r.ResourcePolicy, ok = p.text("")
		f = fResourcePolicy
	case "createdBy":
		r.CreatedBy, ok = p.text("")
		f = fCreatedBy
	case "noTagsOrAliases":
		r.NoTagsOrAliases, ok = p.boolean()
		f = fNoTagsOrAliases
	case "revision":
		var v uint64
		if v, ok = p.num(20); ok { // ParseUint refuses what overflows
			r.Revision = &v
		}
		f = fRevision
	default:
		return false
	}
	return ok && seen(&p.seenKey, f)
}

// attributes decodes the "attributes" object.
func (p *recScanner) attributes(a *attrRecord) bool {
	var set uint32
	return p.object(func(name []byte) bool {
		var ok bool
		var f uint32
		switch string(name) {
		case "usage":
			a.Usage, ok = p.text("")
			f = 1
		case "class":
			a.Class, ok = p.text("")
			f = 2
		case "algorithm":
			a.Algorithm, ok = p.text("")
			f = 4
		case "modes":
			ok, f = p.modes(&a.Modes), 8
		default:
			return false
		}
		return ok && seen(&set, f)
	})
}

// modes decodes the "modes" object.
func (p *recScanner) modes(m *modesRecord) bool {
	var set uint32
	return p.object(func(name []byte) bool {
		var dst *bool
		var f uint32
		switch string(name) {
		case "encrypt":
			dst, f = &m.Encrypt, 1
		case "decrypt":
			dst, f = &m.Decrypt, 2
		case "wrap":
			dst, f = &m.Wrap, 4
		case "unwrap":
			dst, f = &m.Unwrap, 8
		case "generate":
			dst, f = &m.Generate, 16
		case "sign":
			dst, f = &m.Sign, 32
		case "verify":
			dst, f = &m.Verify, 64
		case "deriveKey":
			dst, f = &m.DeriveKey, 128
		case "noRestrictions":
			dst, f = &m.NoRestrictions, 256
		default:
			return false
		}
		v, ok := p.boolean()
		*dst = v
		return ok && seen(&set, f)
	})
}

// knownText holds the enumerated values a key record carries (usages,
// classes, algorithms, check value algorithms, states, origins), so that
// decoding one costs no allocation. A value not listed is decoded as
// usual: the table is an optimisation only.
var knownText = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{
		string(keyspec.B0), string(keyspec.C0), string(keyspec.D0), string(keyspec.D1), string(keyspec.E0),
		string(keyspec.E1), string(keyspec.E2), string(keyspec.E4), string(keyspec.E5), string(keyspec.E6),
		string(keyspec.K0), string(keyspec.K1), string(keyspec.K2), string(keyspec.K3), string(keyspec.M0),
		string(keyspec.M1), string(keyspec.M3), string(keyspec.M6), string(keyspec.M7), string(keyspec.P0),
		string(keyspec.P1), string(keyspec.S0), string(keyspec.V1), string(keyspec.V2),
		string(keyspec.TDES2Key), string(keyspec.TDES3Key), string(keyspec.AES128), string(keyspec.AES192),
		string(keyspec.AES256), string(keyspec.HMACSHA224), string(keyspec.HMACSHA256), string(keyspec.HMACSHA384),
		string(keyspec.HMACSHA512), string(keyspec.RSA2048), string(keyspec.RSA3072), string(keyspec.RSA4096),
		string(keyspec.ECCP256), string(keyspec.ECCP384), string(keyspec.ECCP521),
		string(keyspec.Symmetric), string(keyspec.AsymmetricPair), string(keyspec.PrivateKey), string(keyspec.PublicKey),
		string(keyspec.KCVCMAC), string(keyspec.KCVANSIX924), string(keyspec.KCVHMAC), string(keyspec.KCVSHA1),
		"CREATE_IN_PROGRESS", "CREATE_COMPLETE", stateDeletePending, "DELETE_COMPLETE",
		"AWS_PAYMENT_CRYPTOGRAPHY", "EXTERNAL", "default",
	} {
		m[s] = s
	}
	return m
}()
