package access

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"payhsm/fault"
)

// Resource-based policies (PutResourcePolicy) are IAM policies attached to a
// key whose statements name the principals they apply to. They are compiled
// like identity policies, once, when put or when their key is first
// authorized after a change, and evaluated with IAM's rules for the two
// kinds of policy together (evaluate):
//
//   - an explicit Deny in either refuses;
//   - a principal of the key's own account is allowed when its identity
//     policies or the key's resource policy allow (a grant to the principal's
//     ARN, or to "*", allows by itself; a grant to the account only delegates
//     to the account's identity policies, as in IAM);
//   - a principal of another account is allowed only for the operations the
//     model marks as usable across accounts (crossAccountActions), and only
//     when the resource policy grants it (by ARN, account or "*") and its
//     identity policies allow it too.

// MaxResourcePolicyChars bounds a resource-based policy (the model's
// ResourcePolicy shape: 1 to 20480 characters).
const MaxResourcePolicyChars = 20480

// principals is a resource-policy statement's Principal.
type principals struct {
	any      bool     // "*" or {"AWS":"*"}
	accounts []string // 12-digit account ids ("…:root" or the bare id): delegation to the account
	arns     []string // principal ARNs: arn:aws:iam::<account>:user/<name> or role/<name>
}

// match says whether p is named directly (by ARN or "*") or through its
// account.
func (w *principals) match(p *Principal) (direct, account bool) {
	if w.any {
		return true, false
	}
	for _, a := range w.arns {
		if a == p.arn {
			return true, false
		}
	}
	for _, a := range w.accounts {
		if a == p.Account {
			return false, true
		}
	}
	return false, false
}

// parsePrincipal decodes a Principal element: "*", or an object whose only
// member is AWS, holding "*", account ids, account root ARNs or user and
// role ARNs.
func parsePrincipal(raw json.RawMessage, path string) (principals, error) {
	var w principals
	if firstByte(raw) == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || s != "*" {
			return w, perr(path, `must be "*" or {"AWS": [principal ARNs or account ids]}`)
		}
		w.any = true
		return w, nil
	}
	ms, err := members(raw, path)
	if err != nil {
		return w, err
	}
	if len(ms) == 0 {
		return w, perr(path, "names no principal")
	}
	for _, m := range ms {
		mp := joinPath(path, m.name)
		if m.name != "AWS" {
			return w, perr(mp, "unsupported principal type (payhsm has only AWS principals: accounts, users and roles)")
		}
		l, err := stringList(m.value, mp)
		if err != nil {
			return w, err
		}
		for i, v := range l {
			vp := fmt.Sprintf("%s[%d]", mp, i)
			switch {
			case v == "*":
				w.any = true
			case accountRe.MatchString(v):
				w.accounts = append(w.accounts, v)
			default:
				acct, rest, ok := principalARN(v)
				switch {
				case !ok:
					return w, perr(vp, "%q is not \"*\", an account id or an IAM principal ARN (arn:aws:iam::<account>:root, …:user/<name>, …:role/<name>)", v)
				case strings.ContainsAny(v, "*?"):
					return w, perr(vp, "%q: a principal ARN cannot hold wildcards (use \"*\" alone, with a condition on aws:PrincipalArn)", v)
				case rest == "root":
					w.accounts = append(w.accounts, acct)
				default:
					w.arns = append(w.arns, v)
				}
			}
		}
	}
	return w, nil
}

// principalARN splits arn:aws:iam::<account>:<rest> where rest is root,
// user/<name> or role/<name>.
func principalARN(v string) (account, rest string, ok bool) {
	tail, ok := strings.CutPrefix(v, "arn:aws:iam::")
	if !ok {
		return "", "", false
	}
	account, rest, ok = strings.Cut(tail, ":")
	if !ok || !accountRe.MatchString(account) {
		return "", "", false
	}
	if rest == "root" {
		return account, rest, true
	}
	kind, name, ok := strings.Cut(rest, "/")
	if !ok || (kind != string(User) && kind != string(Role)) || name == "" {
		return "", "", false
	}
	return account, rest, true
}

// ResourcePolicy is a compiled resource-based policy of one key.
type ResourcePolicy struct {
	Policy
	key string // the key's ARN
}

// Key is the ARN of the key the policy is attached to.
func (rp *ResourcePolicy) Key() string { return rp.key }

// resourcePolicyName names a resource policy's statements in decisions:
// "ResourcePolicy/<Sid>" (the key is the decision's Resource).
const resourcePolicyName = "ResourcePolicy"

// ParseResourcePolicy parses and compiles the resource-based policy of the
// key keyARN. Its errors are Validation faults naming the member at fault;
// it does not judge whether the policy is public (CheckPublic does, when a
// policy is put: a stored one is evaluated as it is).
func ParseResourcePolicy(keyARN, doc string) (*ResourcePolicy, error) {
	rp := &ResourcePolicy{Policy: Policy{name: resourcePolicyName, doc: doc}, key: keyARN}
	if err := rp.parseResource(doc); err != nil {
		return nil, fault.Validationf("resource policy: %s", err.Error())
	}
	rp.timed = rp.testsTime()
	return rp, nil
}

func (rp *ResourcePolicy) parseResource(doc string) error {
	if n := utf8.RuneCountInString(doc); n > MaxResourcePolicyChars {
		return perr("", "the policy document is %d characters; at most %d are allowed", n, MaxResourcePolicyChars)
	}
	if !utf8.ValidString(doc) {
		return perr("", "the policy document is not valid UTF-8")
	}
	if err := rp.parse([]byte(doc), true); err != nil {
		return err
	}
	for i := range rp.stmts {
		st := &rp.stmts[i]
		if st.notResource || st.anyResource {
			continue
		}
		for j, r := range st.resources {
			// A key pattern that cannot match this key is a mistake;
			// alias patterns match the alias a request names the key by.
			if strings.Contains(r, ":key/") && !matchARN(r, rp.key) {
				return perr(fmt.Sprintf("Statement[%d].Resource[%d]", i, j), "%q does not name this key (%s); a resource-based policy applies to its own key only", r, rp.key)
			}
		}
	}
	return nil
}

// CheckPublic refuses a policy that grants public access: an Allow
// statement whose Principal is "*" (or {"AWS":"*"}) with no condition that
// narrows it to known principals. As IAM Access Analyzer and S3 judge it, a
// condition narrows when it tests, with a positive operator and without
// IfExists, aws:PrincipalAccount against fixed account ids,
// aws:PrincipalArn against ARNs of fixed accounts, or aws:SourceIp against
// address blocks no wider than /8 (IPv4) or /32 (IPv6).
func (rp *ResourcePolicy) CheckPublic() error {
	for i := range rp.stmts {
		st := &rp.stmts[i]
		if st.deny || !st.who.any {
			continue
		}
		narrowed := false
		for j := range st.conds {
			if st.conds[j].narrows() {
				narrowed = true
				break
			}
		}
		if !narrowed {
			return fault.PublicPolicyf("the resource-based policy would grant public access to the key: statement %s allows Principal \"*\" with no condition on aws:PrincipalAccount, aws:PrincipalArn or aws:SourceIp that narrows it", st.label)
		}
	}
	return nil
}

// narrows reports whether a condition restricts a "*" principal to known
// accounts or networks (see CheckPublic).
func (cd *cond) narrows() bool {
	if cd.negate || cd.ifExists {
		return false
	}
	switch cd.key {
	case keyPrincipalAccount:
		for _, v := range cd.strs {
			if !accountRe.MatchString(v) {
				return false
			}
		}
		return len(cd.strs) > 0
	case keyPrincipalARN:
		for _, v := range cd.strs {
			acct, _, ok := strings.Cut(strings.TrimPrefix(v, "arn:aws:iam::"), ":")
			if !strings.HasPrefix(v, "arn:aws:iam::") || !ok || !accountRe.MatchString(acct) {
				return false
			}
		}
		return len(cd.strs) > 0
	case keySourceIP:
		for _, n := range cd.nets {
			if (n.Addr().Is4() && n.Bits() < 8) || (!n.Addr().Is4() && n.Bits() < 32) {
				return false
			}
		}
		return len(cd.nets) > 0
	}
	return false
}

// crossAccountActions are the operations the models mark "This operation
// supports cross-account use when the key has a resource-based policy that
// grants access" (every data-plane operation; on the control plane the
// operations on one existing key). TestCrossAccountActionsFollowTheModel
// checks the list against the models' documentation.
var crossAccountActions = func() actionSet {
	var s actionSet
	for _, op := range []string{
		"AddKeyReplicationRegions", "DeleteKey", "ExportKey", "GetKey", "GetPublicKeyCertificate", "ImportKey",
		"ListTagsForResource", "RemoveKeyReplicationRegions", "RestoreKey", "StartKeyUsage", "StopKeyUsage",
		"TagResource", "UntagResource",
		"DecryptData", "EncryptData", "GenerateAs2805KekValidation", "GenerateAuthRequestCryptogram",
		"GenerateCardValidationData", "GenerateMac", "GenerateMacEmvPinChange", "GeneratePinData", "ReEncryptData",
		"TranslateKeyMaterial", "TranslatePinData", "VerifyAuthRequestCryptogram", "VerifyCardValidationData",
		"VerifyMac", "VerifyPinData",
	} {
		s |= 1 << MustAction(op)
	}
	return s
}()

// CrossAccount reports whether a may be used on another account's key.
func (a Action) CrossAccount() bool { return crossAccountActions.has(a) }

// arnAccount is the account field of an ARN ("" for "*" or a string that is
// not an ARN). It allocates nothing.
func arnAccount(arn string) string {
	// arn:partition:service:region:account:resource
	f := 0
	start := 0
	for i := 0; i < len(arn); i++ {
		if arn[i] != ':' {
			continue
		}
		f++
		switch f {
		case 4:
			start = i + 1
		case 5:
			return arn[start:i]
		}
	}
	return ""
}

// owner is the account that owns a request's resource: the key's, else the
// alias's ("" for "*": an operation on no key belongs to the caller's
// account).
func (r *Resource) owner() string {
	if a := arnAccount(r.ARN); a != "" {
		return a
	}
	return arnAccount(r.Alias)
}

// resourceMatch is what one resource policy says about one request.
type resourceMatch struct {
	deny    string // label of a Deny that applies
	allow   string // label of an Allow naming the principal (or "*")
	account string // label of an Allow naming only the principal's account
}

func (rp *ResourcePolicy) evaluate(p *Principal, a Action, r Resource, c *Context) resourceMatch {
	var m resourceMatch
	for i := range rp.stmts {
		st := &rp.stmts[i]
		if !st.actions.has(a) {
			continue
		}
		direct, account := st.who.match(p)
		if !direct && !account {
			continue
		}
		if !st.matchResource(r) || !st.holds(p, c) {
			continue
		}
		if st.deny {
			m.deny = st.label
			return m
		}
		if direct && m.allow == "" {
			m.allow = st.label
		} else if account && m.account == "" {
			m.account = st.label
		}
	}
	return m
}

// UnreadableResourcePolicy stands for a stored policy that no longer
// compiles (a record written by a laxer version): it explicitly denies
// every principal everything on the key, so a Deny it held cannot be lost.
// The key's owner replaces it with PutResourcePolicy or removes it.
func UnreadableResourcePolicy(keyARN string) *ResourcePolicy {
	return &ResourcePolicy{Policy: Policy{name: resourcePolicyName, stmts: []statement{{
		label: resourcePolicyName + " (stored policy unreadable)", deny: true, actions: allActions,
		anyResource: true, who: principals{any: true},
	}}}, key: keyARN}
}
