package access

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"payhsm/fault"
)

// MaxPolicyBytes bounds an identity policy document (IAM's limit for an
// inline policy of a role).
const MaxPolicyBytes = 10240

// PolicyVersion is the only policy language version accepted.
const PolicyVersion = "2012-10-17"

// Policy is a compiled IAM identity policy: parsed and checked once when it
// is loaded or changed, so that evaluating it allocates nothing.
type Policy struct {
	name  string
	doc   string
	stmts []statement
	timed bool // a condition tests the time (testsTime)
}

// testsTime reports whether a statement of p has a condition on the time
// (aws:CurrentTime, aws:EpochTime): a decision under such a policy may
// change from one request to the next with nothing else changing.
func (p *Policy) testsTime() bool {
	for i := range p.stmts {
		for _, c := range p.stmts[i].conds {
			if c.key == keyCurrentTime || c.key == keyEpochTime {
				return true
			}
		}
	}
	return false
}

// Name is the policy's name (unique among a principal's policies).
func (p *Policy) Name() string { return p.name }

// Document is the policy's JSON text as it was given.
func (p *Policy) Document() string { return p.doc }

// statement is one compiled Statement.
type statement struct {
	label       string // "<policy>/<Sid>" or "<policy>/Statement[<n>]": names it in decisions
	deny        bool
	actions     actionSet // NotAction already complemented
	anyResource bool      // Resource holds "*"
	resources   []string  // patterns (Resource or NotResource)
	notResource bool
	conds       []cond
	// A resource-based policy's statements name whom they apply to.
	who principals
}

// condOp is a condition operator family.
type condOp uint8

const (
	opStringEquals condOp = iota
	opStringEqualsIgnoreCase
	opStringLike
	opDateEquals
	opDateLessThan
	opDateLessThanEquals
	opDateGreaterThan
	opDateGreaterThanEquals
	opIPAddress
	opBool
)

// condKey is a supported condition key.
type condKey uint8

const (
	keySourceIP condKey = iota
	keyCurrentTime
	keyEpochTime
	keyPrincipalARN
	keyPrincipalAccount
	keyRequestedRegion
	keySecureTransport
)

type keyType uint8

const (
	typeString keyType = iota
	typeDate
	typeIP
	typeBool
)

// condKeys are the supported condition keys (lower case: IAM's condition
// key names are case-insensitive) and the type of value each holds.
var condKeys = map[string]struct {
	key condKey
	typ keyType
}{
	"aws:sourceip":         {keySourceIP, typeIP},
	"aws:currenttime":      {keyCurrentTime, typeDate},
	"aws:epochtime":        {keyEpochTime, typeDate},
	"aws:principalarn":     {keyPrincipalARN, typeString},
	"aws:principalaccount": {keyPrincipalAccount, typeString},
	"aws:requestedregion":  {keyRequestedRegion, typeString},
	"aws:securetransport":  {keySecureTransport, typeBool},
}

// condOps are the supported condition operators: family, negation and the
// type of key each tests. Each may also be written with an IfExists suffix.
var condOps = map[string]struct {
	op     condOp
	negate bool
	typ    keyType
}{
	"StringEquals":              {opStringEquals, false, typeString},
	"StringNotEquals":           {opStringEquals, true, typeString},
	"StringEqualsIgnoreCase":    {opStringEqualsIgnoreCase, false, typeString},
	"StringNotEqualsIgnoreCase": {opStringEqualsIgnoreCase, true, typeString},
	"StringLike":                {opStringLike, false, typeString},
	"StringNotLike":             {opStringLike, true, typeString},
	"DateEquals":                {opDateEquals, false, typeDate},
	"DateNotEquals":             {opDateEquals, true, typeDate},
	"DateLessThan":              {opDateLessThan, false, typeDate},
	"DateLessThanEquals":        {opDateLessThanEquals, false, typeDate},
	"DateGreaterThan":           {opDateGreaterThan, false, typeDate},
	"DateGreaterThanEquals":     {opDateGreaterThanEquals, false, typeDate},
	"IpAddress":                 {opIPAddress, false, typeIP},
	"NotIpAddress":              {opIPAddress, true, typeIP},
	"Bool":                      {opBool, false, typeBool},
}

// cond is one compiled condition: an operator applied to one key with one or
// more values (any may match).
type cond struct {
	op       condOp
	negate   bool
	ifExists bool
	key      condKey
	strs     []string
	times    []time.Time
	nets     []netip.Prefix
	b        bool
}

// ParsePolicy parses and compiles an identity policy named name. Its errors
// are Validation faults whose message names the policy, the member at fault
// (as a path such as Statement[1].Condition.IpAddress) and what is wrong.
func ParsePolicy(name string, doc []byte) (*Policy, error) {
	p := &Policy{name: name, doc: string(doc)}
	if err := p.parse(doc, false); err != nil {
		return nil, fault.Validationf("policy %s: %s", name, err.Error())
	}
	p.timed = p.testsTime()
	return p, nil
}

// pathError is a parse error at a member path.
type pathError struct {
	path string
	msg  string
}

func (e *pathError) Error() string {
	if e.path == "" {
		return e.msg
	}
	return e.path + ": " + e.msg
}

func perr(path, format string, a ...any) error {
	return &pathError{path: path, msg: fmt.Sprintf(format, a...)}
}

// parse compiles an identity policy, or a resource-based policy (whose
// statements name a Principal) when resource is set.
func (p *Policy) parse(doc []byte, resource bool) error {
	if len(doc) == 0 {
		return perr("", "the policy document is empty")
	}
	if !resource && len(doc) > MaxPolicyBytes {
		return perr("", "the policy document is %d bytes; at most %d are allowed", len(doc), MaxPolicyBytes)
	}
	top, err := members(doc, "")
	if err != nil {
		return err
	}
	var stmtRaw json.RawMessage
	var version string
	for _, m := range top {
		switch m.name {
		case "Version":
			if err := json.Unmarshal(m.value, &version); err != nil {
				return perr("Version", "must be a string")
			}
		case "Id":
			var id string
			if err := json.Unmarshal(m.value, &id); err != nil {
				return perr("Id", "must be a string")
			}
		case "Statement":
			stmtRaw = m.value
		default:
			return perr(m.name, "unknown policy element (expected Version, Id, Statement)")
		}
	}
	if version != PolicyVersion {
		if version == "" {
			return perr("Version", "is required and must be %q", PolicyVersion)
		}
		return perr("Version", "%q is not supported; use %q", version, PolicyVersion)
	}
	if stmtRaw == nil {
		return perr("Statement", "is required")
	}
	var list []json.RawMessage
	switch firstByte(stmtRaw) {
	case '{':
		list = []json.RawMessage{stmtRaw}
	case '[':
		if err := json.Unmarshal(stmtRaw, &list); err != nil {
			return perr("Statement", "must be an object or an array of objects")
		}
		if len(list) == 0 {
			return perr("Statement", "must hold at least one statement")
		}
	default:
		return perr("Statement", "must be an object or an array of objects")
	}
	sids := map[string]bool{}
	for i, raw := range list {
		path := fmt.Sprintf("Statement[%d]", i)
		st, sid, err := parseStatement(raw, path, resource)
		if err != nil {
			return err
		}
		if sid != "" {
			if sids[sid] {
				return perr(path+".Sid", "%q is used by another statement; Sids must be unique", sid)
			}
			sids[sid] = true
			st.label = p.name + "/" + sid
		} else {
			st.label = p.name + "/" + path
		}
		p.stmts = append(p.stmts, st)
	}
	return nil
}

func firstByte(b []byte) byte {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// member is one member of a JSON object, in document order.
type member struct {
	name  string
	value json.RawMessage
}

// members decodes a JSON object into its members, refusing duplicate names
// (encoding/json would silently keep the last) and anything after it.
func members(raw []byte, path string) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	where := path
	if where == "" {
		where = "the policy"
	}
	t, err := dec.Token()
	if d, ok := t.(json.Delim); err != nil || !ok || d != '{' {
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, perr(path, "malformed JSON")
		}
		return nil, &pathError{path: path, msg: where + " must be a JSON object"}
	}
	var out []member
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, perr(path, "malformed JSON")
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, perr(joinPath(path, name), "malformed JSON")
		}
		if seen[name] {
			return nil, perr(joinPath(path, name), "appears twice")
		}
		seen[name] = true
		out = append(out, member{name, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, perr(path, "malformed JSON")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, perr(path, "unexpected data after the JSON object")
	}
	return out, nil
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// stringList decodes a string or a non-empty array of strings.
func stringList(raw json.RawMessage, path string) ([]string, error) {
	switch firstByte(raw) {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, perr(path, "malformed string")
		}
		return []string{s}, nil
	case '[':
		var l []string
		if err := json.Unmarshal(raw, &l); err != nil {
			return nil, perr(path, "must be a string or an array of strings")
		}
		if len(l) == 0 {
			return nil, perr(path, "must not be an empty array")
		}
		return l, nil
	}
	return nil, perr(path, "must be a string or an array of strings")
}

func parseStatement(raw json.RawMessage, path string, resource bool) (statement, string, error) {
	var st statement
	ms, err := members(raw, path)
	if err != nil {
		return st, "", err
	}
	var sid, effect string
	var haveAction, haveResource, havePrincipal bool
	for _, m := range ms {
		mp := joinPath(path, m.name)
		switch m.name {
		case "Sid":
			if err := json.Unmarshal(m.value, &sid); err != nil {
				return st, "", perr(mp, "must be a string")
			}
			for _, c := range sid {
				if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
					return st, "", perr(mp, "%q: a Sid holds only letters and digits", sid)
				}
			}
		case "Effect":
			if err := json.Unmarshal(m.value, &effect); err != nil {
				return st, "", perr(mp, "must be a string")
			}
			if effect != "Allow" && effect != "Deny" {
				return st, "", perr(mp, "%q: must be Allow or Deny", effect)
			}
		case "Action", "NotAction":
			if haveAction {
				return st, "", perr(mp, "a statement has exactly one of Action and NotAction")
			}
			haveAction = true
			l, err := stringList(m.value, mp)
			if err != nil {
				return st, "", err
			}
			for i, a := range l {
				set, why := matchActions(a)
				if why != "" {
					return st, "", perr(fmt.Sprintf("%s[%d]", mp, i), "%q %s", a, why)
				}
				st.actions |= set
			}
			if m.name == "NotAction" {
				st.actions = allActions &^ st.actions
			}
		case "Resource", "NotResource":
			if haveResource {
				return st, "", perr(mp, "a statement has exactly one of Resource and NotResource")
			}
			haveResource = true
			l, err := stringList(m.value, mp)
			if err != nil {
				return st, "", err
			}
			for i, r := range l {
				if why := checkResource(r); why != "" {
					return st, "", perr(fmt.Sprintf("%s[%d]", mp, i), "%q %s", r, why)
				}
				if r == "*" {
					st.anyResource = true
				}
			}
			st.resources, st.notResource = l, m.name == "NotResource"
		case "Condition":
			if st.conds, err = parseConditions(m.value, mp); err != nil {
				return st, "", err
			}
		case "Principal", "NotPrincipal":
			if !resource {
				return st, "", perr(mp, "an identity policy names no principal (the policy applies to the principal it is attached to)")
			}
			if m.name == "NotPrincipal" {
				return st, "", perr(mp, "NotPrincipal is not supported: name the principals in Principal, or use a Deny with a condition on aws:PrincipalArn")
			}
			havePrincipal = true
			if st.who, err = parsePrincipal(m.value, mp); err != nil {
				return st, "", err
			}
		default:
			if resource {
				return st, "", perr(mp, "unknown statement element (expected Sid, Effect, Principal, Action, NotAction, Resource, NotResource, Condition)")
			}
			return st, "", perr(mp, "unknown statement element (expected Sid, Effect, Action, NotAction, Resource, NotResource, Condition)")
		}
	}
	switch {
	case effect == "":
		return st, "", perr(path+".Effect", "is required")
	case !haveAction:
		return st, "", perr(path+".Action", "is required (or NotAction)")
	case !haveResource:
		return st, "", perr(path+".Resource", "is required (or NotResource)")
	case resource && !havePrincipal:
		return st, "", perr(path+".Principal", "is required in a resource-based policy")
	}
	st.deny = effect == "Deny"
	if st.notResource {
		st.anyResource = false
	}
	return st, sid, nil
}

// checkResource explains why r is not a resource pattern payhsm can match.
func checkResource(r string) string {
	if r == "*" {
		return ""
	}
	if strings.Contains(r, "${") {
		return "uses a policy variable; payhsm does not support policy variables"
	}
	parts := strings.SplitN(r, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" {
		return "must be \"*\" or an ARN (arn:aws:payment-cryptography:<region>:<account>:key/<id> or …:alias/<name>)"
	}
	if !glob(parts[2], Service) {
		return "names service " + parts[2] + "; payhsm's resources are payment-cryptography keys and aliases"
	}
	if parts[5] == "" {
		return "has no resource part (key/<id> or alias/<name>)"
	}
	return ""
}

func parseConditions(raw json.RawMessage, path string) ([]cond, error) {
	ops, err := members(raw, path)
	if err != nil {
		return nil, err
	}
	var out []cond
	for _, o := range ops {
		op := o.name
		opPath := joinPath(path, op)
		if strings.Contains(op, ":") {
			return nil, perr(opPath, "set operators (ForAnyValue:, ForAllValues:) are not supported: every supported key holds a single value")
		}
		base, ifExists := strings.CutSuffix(op, "IfExists")
		spec, ok := condOps[base]
		if !ok {
			return nil, perr(opPath, "unsupported condition operator (supported: String*, Date*, IpAddress, NotIpAddress, Bool, each optionally …IfExists)")
		}
		keys, err := members(o.value, opPath)
		if err != nil {
			return nil, err
		}
		if len(keys) == 0 {
			return nil, perr(opPath, "names no condition key")
		}
		for _, k := range keys {
			kp := joinPath(opPath, k.name)
			ks, ok := condKeys[strings.ToLower(k.name)]
			if !ok {
				return nil, perr(kp, "unsupported condition key (supported: aws:SourceIp, aws:CurrentTime, aws:EpochTime, aws:PrincipalArn, aws:PrincipalAccount, aws:RequestedRegion, aws:SecureTransport)")
			}
			if ks.typ != spec.typ {
				return nil, perr(kp, "operator %s cannot test this key (it holds %s)", op, typeName(ks.typ))
			}
			vals, err := condValues(k.value, kp)
			if err != nil {
				return nil, err
			}
			c := cond{op: spec.op, negate: spec.negate, ifExists: ifExists, key: ks.key}
			for i, v := range vals {
				vp := fmt.Sprintf("%s[%d]", kp, i)
				switch spec.typ {
				case typeString:
					c.strs = append(c.strs, v)
				case typeDate:
					t, err := parseDate(v)
					if err != nil {
						return nil, perr(vp, "%q is not a date (use 2026-01-31, 2026-01-31T12:00:00Z or epoch seconds)", v)
					}
					c.times = append(c.times, t)
				case typeIP:
					pfx, err := parsePrefix(v)
					if err != nil {
						return nil, perr(vp, "%q is not an IP address or CIDR block", v)
					}
					c.nets = append(c.nets, pfx)
				case typeBool:
					if len(vals) != 1 {
						return nil, perr(kp, "Bool takes one value")
					}
					b, err := strconv.ParseBool(v)
					if err != nil || (v != "true" && v != "false") {
						return nil, perr(vp, "%q: Bool takes true or false", v)
					}
					c.b = b
				}
			}
			out = append(out, c)
		}
	}
	return out, nil
}

func typeName(t keyType) string {
	switch t {
	case typeDate:
		return "a date"
	case typeIP:
		return "an IP address"
	case typeBool:
		return "a boolean"
	}
	return "a string"
}

// condValues decodes a condition's value: a string, number or boolean, or a
// non-empty array of them.
func condValues(raw json.RawMessage, path string) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, perr(path, "malformed JSON")
	}
	scalar := func(x any) (string, bool) {
		switch x := x.(type) {
		case string:
			return x, true
		case json.Number:
			return x.String(), true
		case bool:
			return strconv.FormatBool(x), true
		}
		return "", false
	}
	if l, ok := v.([]any); ok {
		if len(l) == 0 {
			return nil, perr(path, "must not be an empty array")
		}
		out := make([]string, 0, len(l))
		for i, x := range l {
			s, ok := scalar(x)
			if !ok {
				return nil, perr(fmt.Sprintf("%s[%d]", path, i), "must be a string, number or boolean")
			}
			out = append(out, s)
		}
		return out, nil
	}
	s, ok := scalar(v)
	if !ok {
		return nil, perr(path, "must be a string, number, boolean or an array of them")
	}
	return []string{s}, nil
}

func parseDate(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", v); err == nil {
		return t, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 1<<40 {
		return time.Time{}, errors.New("not a date")
	}
	return time.Unix(n, 0).UTC(), nil
}

func parsePrefix(v string) (netip.Prefix, error) {
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
