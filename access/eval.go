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
// applies, so a policy may grant a key by its ARN or by its alias.
type Resource struct {
	ARN   string
	Alias string
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

// evaluate applies IAM's logic for one principal's identity policies: every
// resource must be allowed by some Allow statement and denied by no Deny
// statement; an explicit Deny anywhere decides the request. It allocates
// nothing.
func (p *Principal) evaluate(a Action, res []Resource, c *Context) Decision {
	if len(res) == 0 {
		res = anyResources[:]
	}
	var denied Decision
	haveDenied := false
	var allowed string
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
		if allow == "" && !haveDenied {
			denied, haveDenied = Decision{Resource: r.ARN}, true
		}
		if allowed == "" {
			allowed = allow
		}
	}
	if haveDenied {
		return denied
	}
	return Decision{Allowed: true, Statement: allowed}
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
