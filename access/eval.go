package access

import (
	"net/netip"
	"strings"
	"time"
)

// Resource is one resource a request acts on: a key ARN, or "*" for an
// operation on no particular key (CreateKey, ListKeys, a host command on a
// key block that names no stored key). Alias is the alias ARN the request
// named the key by, if it did: a statement whose Resource matches either
// applies, so a policy may grant a key by its ARN or by its alias. Policy
// is the key's resource-based policy (nil when it has none or the key does
// not exist). The account that owns the resource is read from its ARN.
type Resource struct {
	ARN    string
	Alias  string
	Policy *ResourcePolicy
}

// AnyResource is the resource of an operation on no particular key.
var AnyResource = Resource{ARN: "*"}

// Context is what a request's conditions can test beside the principal.
type Context struct {
	SourceIP netip.Addr // the client's address (unmapped); invalid when unknown
	Now      time.Time  // zero: time.Now
	Secure   bool       // the request came over TLS
	Region   string     // the region the request addressed
}

// Decision is the result of evaluating a request: which statement decided,
// or that none allowed it (default deny).
type Decision struct {
	Allowed bool
	// Explicit: an explicit Deny decided (it beats every Allow).
	Explicit bool
	// Statement names the deciding statement ("<policy>/<Sid>"): the Deny
	// that refused, or the first Allow that granted; "" for a default deny.
	Statement string
	// Resource is the resource refused (for a denial).
	Resource string
	// InResource: the deciding statement (or, for a default deny, the
	// missing grant) is in the key's resource-based policy.
	InResource bool
	// CrossAccount: the principal's account does not own the resource.
	CrossAccount bool
}

// Reason is a short text for logs: "allowed by P/S", "explicitly denied by
// P/S", "no statement allows it".
func (d Decision) Reason() string {
	switch {
	case d.Allowed:
		return "allowed by " + d.Statement
	case d.Explicit:
		return "explicitly denied by " + d.Statement
	case d.Statement != "":
		return "denied: " + d.Statement
	}
	return "no statement allows it (default deny)"
}

// Statements of denials that no statement decided.
const (
	stmtCrossAccountUnsupported = "cross-account use of this operation is not supported"
	stmtNoResourceGrant         = "no resource-based policy grants cross-account access"
	stmtNoIdentityGrant         = "no identity-based policy allows it (cross-account use needs both)"
)

// evaluate applies IAM's logic to one principal's identity policies and the
// resource-based policies of the request's keys (see resource.go): every
// resource must be allowed and none denied; an explicit Deny anywhere
// decides the request. home is the appliance's account, which owns the
// resource "*" (an operation on no particular key acts in it); "" lets it
// be the principal's own. It allocates nothing.
func (p *Principal) evaluate(a Action, res []Resource, c *Context, home string) Decision {
	if len(res) == 0 {
		res = anyResources[:]
	}
	var denied Decision
	haveDenied := false
	var allowed string
	cross := false
	for _, r := range res {
		allow := ""
		for _, pol := range p.policies {
			for i := range pol.stmts {
				st := &pol.stmts[i]
				if !st.actions.has(a) || !st.matchResource(r) || !st.holds(p, c) {
					continue
				}
				if st.deny {
					return Decision{Explicit: true, Statement: st.label, Resource: r.ARN}
				}
				if allow == "" {
					allow = st.label
				}
			}
		}
		var rm resourceMatch
		if r.Policy != nil {
			rm = r.Policy.evaluate(p, a, r, c)
			if rm.deny != "" {
				return Decision{Explicit: true, Statement: rm.deny, Resource: r.ARN, InResource: true}
			}
		}
		var d Decision
		owner := r.owner()
		if owner == "" {
			owner = home
		}
		if owner == "" || owner == p.Account {
			// Same account: either kind of policy may allow.
			switch {
			case allow != "":
				d = Decision{Allowed: true, Statement: allow}
			case rm.allow != "":
				d = Decision{Allowed: true, Statement: rm.allow, InResource: true}
			default:
				d = Decision{Resource: r.ARN}
			}
		} else {
			// Another account's key: both must allow, for the
			// operations that may cross accounts.
			d = Decision{Resource: r.ARN, CrossAccount: true}
			switch {
			case !crossAccountActions.has(a):
				d.Statement = stmtCrossAccountUnsupported
			case rm.allow == "" && rm.account == "":
				d.Statement, d.InResource = stmtNoResourceGrant, true
			case allow == "":
				d.Statement = stmtNoIdentityGrant
			default:
				d = Decision{Allowed: true, Statement: allow, CrossAccount: true}
			}
		}
		if !d.Allowed && !haveDenied {
			denied, haveDenied = d, true
		}
		if allowed == "" && d.Allowed {
			allowed = d.Statement
		}
		cross = cross || d.CrossAccount
	}
	if haveDenied {
		return denied
	}
	return Decision{Allowed: true, Statement: allowed, CrossAccount: cross}
}

var anyResources = [1]Resource{AnyResource}

func (st *statement) matchResource(r Resource) bool {
	if st.anyResource {
		return true
	}
	m := false
	for _, pat := range st.resources {
		if matchARN(pat, r.ARN) || (r.Alias != "" && matchARN(pat, r.Alias)) {
			m = true
			break
		}
	}
	return m != st.notResource
}

// matchARN matches a Resource pattern against a resource ARN ("*" for an
// operation on no key, which only the pattern "*" matches).
func matchARN(pat, arn string) bool {
	if pat == "*" {
		return true
	}
	if arn == "*" {
		return false
	}
	if pat == arn {
		return true
	}
	return strings.ContainsAny(pat, "*?") && glob(pat, arn)
}

// holds reports whether every condition of the statement holds.
func (st *statement) holds(p *Principal, c *Context) bool {
	for i := range st.conds {
		if !st.conds[i].holds(p, c) {
			return false
		}
	}
	return true
}

func (cd *cond) holds(p *Principal, c *Context) bool {
	var present, match bool
	switch cd.key {
	case keySourceIP:
		if present = c != nil && c.SourceIP.IsValid(); present {
			for _, n := range cd.nets {
				if n.Contains(c.SourceIP) {
					match = true
					break
				}
			}
		}
	case keyCurrentTime, keyEpochTime:
		present = true
		now := time.Now()
		if c != nil && !c.Now.IsZero() {
			now = c.Now
		}
		for _, t := range cd.times {
			if dateOp(cd.op, now, t) {
				match = true
				break
			}
		}
	case keyPrincipalARN:
		present, match = true, cd.matchString(p.arn)
	case keyPrincipalAccount:
		present, match = true, cd.matchString(p.Account)
	case keyRequestedRegion:
		if present = c != nil && c.Region != ""; present {
			match = cd.matchString(c.Region)
		}
	case keySecureTransport:
		present = c != nil
		match = present && c.Secure == cd.b
	}
	if !present {
		// IAM: a missing key makes a condition false, but IfExists and
		// the negated operators hold.
		return cd.ifExists || cd.negate
	}
	return match != cd.negate
}

func (cd *cond) matchString(v string) bool {
	for _, s := range cd.strs {
		switch cd.op {
		case opStringEquals:
			if s == v {
				return true
			}
		case opStringEqualsIgnoreCase:
			if strings.EqualFold(s, v) {
				return true
			}
		case opStringLike:
			if glob(s, v) {
				return true
			}
		}
	}
	return false
}

func dateOp(op condOp, now, t time.Time) bool {
	switch op {
	case opDateEquals:
		return now.Equal(t)
	case opDateLessThan:
		return now.Before(t)
	case opDateLessThanEquals:
		return !now.After(t)
	case opDateGreaterThan:
		return now.After(t)
	case opDateGreaterThanEquals:
		return !now.Before(t)
	}
	return false
}
