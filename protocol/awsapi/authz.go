package awsapi

import (
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"sync/atomic"

	"payhsm/access"
)

// Authorization on the AWS API happens at one point of the request path
// (serve, after the request is authenticated, decoded and validated, before
// the operation runs): the principal is the owner of the SigV4 access key,
// the action is the operation, and the resources are every key the request
// names. Which members name keys is read from the model's shapes, not
// listed by hand: every string member of the input, at any depth, whose name
// ends in Identifier or Arn (KeyIdentifier, WrappingKeyIdentifier,
// IncomingKeyIdentifier, ResourceArn, KeyArn, …) names a key or alias, and
// AliasName names an alias; the MPA ARNs are not keys. A new operation is
// covered without a change here.

// authz is an operation's authorization plan.
type authz struct {
	action access.Action
	keys   [][]int // field index paths (through pointers) of key identifiers
	alias  [][]int // field index paths of alias names
}

// SetAuthorizer makes the server authorize every request with az (nil: no
// authorization, every authenticated request is allowed). Call before serving.
func (s *Server) SetAuthorizer(az *access.Authorizer) {
	s.az = az
	for name, op := range s.control {
		op.authz = planFor(name, op.newInput())
		s.control[name] = op
	}
	for i := range s.routes {
		s.routes[i].op.authz = planFor(s.routes[i].name, s.routes[i].op.newInput())
	}
}

func planFor(name string, in validator) *authz {
	a, ok := access.ActionOf(name)
	if !ok {
		panic("awsapi: operation " + name + " is not an access.Action")
	}
	p := &authz{action: a}
	walkMembers(reflect.TypeOf(in), nil, p, 0)
	return p
}

var stringPtr = reflect.TypeOf((*string)(nil))

func walkMembers(t reflect.Type, path []int, p *authz, depth int) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || depth > 8 {
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		fp := append(append([]int(nil), path...), i)
		switch {
		case f.Type == stringPtr && f.Name == "AliasName":
			p.alias = append(p.alias, fp)
		case f.Type == stringPtr && (strings.HasSuffix(f.Name, "Identifier") || strings.HasSuffix(f.Name, "Arn")) && !strings.HasPrefix(f.Name, "Mpa"):
			p.keys = append(p.keys, fp)
		case f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct, f.Type.Kind() == reflect.Struct:
			walkMembers(f.Type, fp, p, depth+1)
		}
	}
}

// member follows a field index path through pointers; "" when a pointer on
// the way is nil.
func member(v reflect.Value, path []int) (string, bool) {
	for _, i := range path {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return "", false
			}
			v = v.Elem()
		}
		v = v.Field(i)
	}
	if v.IsNil() {
		return "", false
	}
	return v.Elem().String(), true
}

// authorize decides the request of principal akid (the SigV4 access key)
// for operation op with decoded input in; a refusal is AccessDeniedException.
// A key named by an alias that does not exist is authorized on the alias
// alone, so the answer (AccessDeniedException or, when allowed,
// ResourceNotFoundException) never tells an unauthorized caller whether it exists.
//
// An allowed request's members that named an alias are pinned (p): set to
// the ARN of the key the alias named at the decision, so that the
// operation runs on exactly the key that was authorized even if the alias
// is re-pointed meanwhile; p.restore puts the caller's names back.
func (s *Server) authorize(r *http.Request, akid string, op *operation, in validator, p *pins) error {
	plan := op.authz
	if plan == nil {
		return nil
	}
	var buf [4]access.Resource
	res := buf[:0]
	v := reflect.ValueOf(in)
	var pathBuf [4][]int
	paths := pathBuf[:0] // the member of each key resource
	for _, path := range plan.keys {
		if ident, ok := member(v, path); ok && ident != "" {
			paths = append(paths, path)
			res = append(res, s.resource(ident))
		}
	}
	for _, path := range plan.alias {
		if name, ok := member(v, path); ok && name != "" {
			res = append(res, access.Resource{ARN: s.ops.AliasARN(name)})
		}
	}
	c := access.Context{Secure: r.TLS != nil, Region: s.verifier.Region}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		c.SourceIP = ap.Addr().Unmap()
	}
	pr := s.az.ByAccessKey(akid)
	d := s.az.Authorize(pr, plan.action, res, &c)
	if !d.Allowed {
		return access.AccessDenied(pr, plan.action, d)
	}
	for i, path := range paths {
		if rs := res[i]; rs.Alias != "" && rs.ARN != "" && rs.ARN != "*" {
			p.set(v, path, rs.ARN)
		}
	}
	return nil
}

// pins are the key members of a request that named an alias, each with the
// name the caller gave, while the operation runs on the key the alias
// resolved to (authorize).
type pins struct {
	v    reflect.Value
	n    int
	buf  [4]pinned
	more []pinned
}

type pinned struct {
	path []int
	name string
}

// afterAuthorize, when set (by tests only), runs between a request's
// authorization and its operation.
var afterAuthorize atomic.Pointer[func()] // atomic: a test sets it while requests may run

// set sets the member at path of v to keyARN, remembering its value.
func (p *pins) set(v reflect.Value, path []int, keyARN string) {
	f := memberValue(v, path)
	e := pinned{path: path, name: f.String()}
	if p.n < len(p.buf) {
		p.buf[p.n] = e
	} else {
		p.more = append(p.more, e)
	}
	p.v = v
	p.n++
	f.SetString(keyARN)
}

// restore puts back the names the caller gave (for the audit record).
func (p *pins) restore() {
	for i := range p.n {
		var e pinned
		if i < len(p.buf) {
			e = p.buf[i]
		} else {
			e = p.more[i-len(p.buf)]
		}
		memberValue(p.v, e.path).SetString(e.name)
	}
	p.n, p.more = 0, nil
}

// memberValue is the string a member path names (member found it set).
func memberValue(v reflect.Value, path []int) reflect.Value {
	for _, i := range path {
		for v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		v = v.Field(i)
	}
	return v.Elem()
}

// resource is the authorization resource of a key identifier, with the
// key's resource-based policy.
func (s *Server) resource(ident string) access.Resource { return s.ops.AuthzResource(ident) }
