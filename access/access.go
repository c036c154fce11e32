// Package access owns who may do what on the appliance: the principals of
// each account (SigV4 access keys, and host-port client identities by mTLS
// certificate common name or SHA-256 fingerprint), their IAM identity
// policies and the keys' resource-based policies (resource.go; parsed
// strictly and compiled once, evaluated together with IAM's logic: an
// explicit Deny wins, otherwise some Allow must match — from both kinds of
// policy for another account's principal — otherwise the default is deny),
// the directory that finds a request's principal, and the
// Authorizer both front ends call before an operation touches a key. It
// stores principals sealed in the key store's authenticated meta records
// (store.go). It knows no transport: the edges build the Action, the
// Resources and the Context of a request.
package access

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"

	"payhsm/fault"
)

// Kind is a principal's IAM type.
type Kind string

// Kinds.
const (
	User Kind = "user"
	Role Kind = "role"
)

// DefaultPrincipal is the all-powerful principal of a development appliance
// (--dev) and of the configuration's credentialsFile keys.
const DefaultPrincipal = "default"

// AllowAllPolicy is the policy of DefaultPrincipal.
const AllowAllPolicy = `{"Version":"2012-10-17","Statement":[{"Sid":"All","Effect":"Allow","Action":"*","Resource":"*"}]}`

// Principal is one identity: its name and account, its SigV4 access key (if
// any), the host-port client identities that map to it, and its compiled
// identity policies. A Principal is immutable once in a Directory.
type Principal struct {
	Name    string
	Account string
	Kind    Kind
	// AccessKeyID and Secret are the SigV4 credentials ("" for a principal
	// used only on the host port).
	AccessKeyID string
	Secret      string
	// HostClients are the mTLS client identities that map to the principal:
	// a certificate's subject common name, or "sha256:" and the 64 hex
	// digits of its DER certificate's SHA-256.
	HostClients []string
	Disabled    bool

	arn      string
	policies []*Policy
	timed    bool // a policy tests the time (Repeatable)
}

// ARN is the principal's IAM ARN, arn:aws:iam::<account>:user/<name> or role/<name>.
func (p *Principal) ARN() string { return p.arn }

// Policies are the principal's identity policies.
func (p *Principal) Policies() []*Policy { return p.policies }

var (
	nameRe    = regexp.MustCompile(`^[A-Za-z0-9+=,.@_-]{1,64}$`)
	accountRe = regexp.MustCompile(`^[0-9]{12}$`)
	akidRe    = regexp.MustCompile(`^[A-Z0-9]{16,128}$`)
)

// NewPrincipal checks a principal's fields and attaches its policies.
func NewPrincipal(p Principal, policies ...*Policy) (*Principal, error) {
	if !nameRe.MatchString(p.Name) {
		return nil, fault.Validationf("principal name %q: 1 to 64 letters, digits or +=,.@_-", p.Name)
	}
	if !accountRe.MatchString(p.Account) {
		return nil, fault.Validationf("principal %s: account %q must be 12 digits", p.Name, p.Account)
	}
	if p.Kind == "" {
		p.Kind = User
	}
	if p.Kind != User && p.Kind != Role {
		return nil, fault.Validationf("principal %s: kind %q must be user or role", p.Name, p.Kind)
	}
	if p.AccessKeyID != "" && !akidRe.MatchString(p.AccessKeyID) {
		return nil, fault.Validationf("principal %s: access key id must be 16 to 128 upper-case letters or digits", p.Name)
	}
	if (p.AccessKeyID == "") != (p.Secret == "") {
		return nil, fault.Validationf("principal %s: an access key id and its secret go together", p.Name)
	}
	for _, c := range p.HostClients {
		if err := checkHostClient(c); err != nil {
			return nil, fault.Validationf("principal %s: host client %q: %v", p.Name, c, err)
		}
	}
	names := map[string]bool{}
	for _, pol := range policies {
		if names[pol.name] {
			return nil, fault.Validationf("principal %s: two policies are named %s", p.Name, pol.name)
		}
		names[pol.name] = true
	}
	p.arn = "arn:aws:iam::" + p.Account + ":" + string(p.Kind) + "/" + p.Name
	p.HostClients = append([]string(nil), p.HostClients...)
	p.policies = append([]*Policy(nil), policies...)
	for _, pol := range policies {
		p.timed = p.timed || pol.timed
	}
	return &p, nil
}

// Repeatable reports whether an Allow of p on res is the same answer for
// every later request of one connection with the same action, the same
// resources (ARN, alias, resource policy) and the same context (source
// address, transport): true unless p's policies or a resource's policy
// test the time. p itself and each resource policy are immutable (a change
// makes new ones), so whoever keeps such a decision compares them by
// identity.
func Repeatable(p *Principal, res []Resource) bool {
	if p == nil || p.Disabled || p.timed {
		return false
	}
	for i := range res {
		if rp := res[i].Policy; rp != nil && rp.timed {
			return false
		}
	}
	return true
}

func checkHostClient(c string) error {
	if fp, ok := strings.CutPrefix(c, "sha256:"); ok {
		if len(fp) != 64 {
			return fmt.Errorf("a fingerprint is 64 hex digits")
		}
		if _, err := hex.DecodeString(fp); err != nil {
			return fmt.Errorf("a fingerprint is 64 hex digits")
		}
		return nil
	}
	if c == "" || len(c) > 64 {
		return fmt.Errorf("a certificate common name is 1 to 64 characters")
	}
	return nil
}

// Directory is an immutable index of principals.
type Directory struct {
	byName map[string]*Principal
	byKey  map[string]*Principal
	byCN   map[string]*Principal
	byFP   map[string]*Principal
}

// NewDirectory indexes principals; names, access key ids and host client
// identities must be unique.
func NewDirectory(ps []*Principal) (*Directory, error) {
	d := &Directory{byName: map[string]*Principal{}, byKey: map[string]*Principal{},
		byCN: map[string]*Principal{}, byFP: map[string]*Principal{}}
	for _, p := range ps {
		if d.byName[p.Name] != nil {
			return nil, fault.Conflictf("principal %s exists", p.Name)
		}
		d.byName[p.Name] = p
		if p.AccessKeyID != "" {
			if q := d.byKey[p.AccessKeyID]; q != nil {
				return nil, fault.Conflictf("principals %s and %s share an access key id", q.Name, p.Name)
			}
			d.byKey[p.AccessKeyID] = p
		}
		for _, c := range p.HostClients {
			m, k := d.byCN, c
			if fp, ok := strings.CutPrefix(c, "sha256:"); ok {
				m, k = d.byFP, strings.ToLower(fp)
			}
			if q := m[k]; q != nil {
				return nil, fault.Conflictf("principals %s and %s share host client %s", q.Name, p.Name, c)
			}
			m[k] = p
		}
	}
	return d, nil
}

// Principals lists the directory's principals (any order).
func (d *Directory) Principals() []*Principal {
	out := make([]*Principal, 0, len(d.byName))
	for _, p := range d.byName {
		out = append(out, p)
	}
	return out
}

// Authorizer finds requests' principals and decides requests. Its directory
// is replaced as a whole when principals change (Swap), so lookups take no
// lock.
type Authorizer struct {
	dir     atomic.Pointer[Directory]
	home    string // the appliance's account (SetAccount)
	denials atomic.Uint64
	// OnDeny, when set before use, is told of every denial (for the audit
	// log). It must not block.
	OnDeny func(p *Principal, a Action, d Decision)
}

// NewAuthorizer returns an Authorizer over d.
func NewAuthorizer(d *Directory) *Authorizer {
	a := &Authorizer{}
	a.dir.Store(d)
	return a
}

// SetAccount names the appliance's account: it owns the keys, and an
// operation on no particular key (CreateKey, ListKeys) acts in it, so a
// principal of another account may not perform one. Call before use.
func (az *Authorizer) SetAccount(account string) { az.home = account }

// Swap replaces the directory.
func (az *Authorizer) Swap(d *Directory) { az.dir.Store(d) }

// Directory is the current directory.
func (az *Authorizer) Directory() *Directory { return az.dir.Load() }

// Denials counts the requests refused since start.
func (az *Authorizer) Denials() uint64 { return az.denials.Load() }

// SecretFor implements sigv4.Credentials: the secret of an enabled
// principal's access key.
func (az *Authorizer) SecretFor(accessKeyID string) (string, bool) {
	p := az.dir.Load().byKey[accessKeyID]
	if p == nil || p.Disabled {
		return "", false
	}
	return p.Secret, true
}

// ByAccessKey is the principal of a SigV4 access key id (nil if none).
func (az *Authorizer) ByAccessKey(accessKeyID string) *Principal {
	return az.dir.Load().byKey[accessKeyID]
}

// ByName is a principal by name (nil if none).
func (az *Authorizer) ByName(name string) *Principal { return az.dir.Load().byName[name] }

// ByCertificate is the principal an mTLS client certificate maps to: by its
// SHA-256 fingerprint first, then by its subject common name (nil if none).
func (az *Authorizer) ByCertificate(cert *x509.Certificate) *Principal {
	if cert == nil {
		return nil
	}
	d := az.dir.Load()
	sum := sha256.Sum256(cert.Raw)
	if p := d.byFP[hex.EncodeToString(sum[:])]; p != nil {
		return p
	}
	if cert.Subject.CommonName != "" {
		return d.byCN[cert.Subject.CommonName]
	}
	return nil
}

// Authorize decides whether p may perform a on res in context c. A nil or
// disabled principal is refused. Every denial is counted and reported to
// OnDeny.
func (az *Authorizer) Authorize(p *Principal, a Action, res []Resource, c *Context) Decision {
	var d Decision
	switch {
	case p == nil:
		d = Decision{Statement: "no principal"}
	case p.Disabled:
		d = Decision{Statement: "principal disabled"}
	default:
		d = p.evaluate(a, res, c, az.home)
	}
	if !d.Allowed {
		if d.Resource == "" && len(res) > 0 {
			d.Resource = res[0].ARN
		}
		az.denials.Add(1)
		if az.OnDeny != nil {
			az.OnDeny(p, a, d)
		}
	}
	return d
}

// AccessDenied is the fault an edge answers a denial with on the AWS API,
// worded as AWS does ("User: … is not authorized to perform: … on resource:
// … because no identity-based policy allows the … action").
func AccessDenied(p *Principal, a Action, d Decision) *fault.Error {
	who := "anonymous"
	if p != nil {
		who = p.arn
	}
	why := "because no identity-based policy allows the " + a.String() + " action"
	switch {
	case d.Explicit && d.InResource:
		why = "with an explicit deny in a resource-based policy"
	case d.Explicit:
		why = "with an explicit deny in an identity-based policy"
	case d.Statement == stmtCrossAccountUnsupported:
		why = "because " + a.String() + " cannot be used across accounts"
	case d.CrossAccount && d.InResource:
		why = "because no resource-based policy allows the " + a.String() + " action"
	}
	res := d.Resource
	if res == "" {
		res = "*"
	}
	return fault.AccessDeniedf("User: %s is not authorized to perform: %s on resource: %s %s", who, a, res, why)
}
