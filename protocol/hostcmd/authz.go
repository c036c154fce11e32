package hostcmd

import (
	"crypto/x509"
	"net/netip"
	"sync/atomic"

	"payhsm/access"
)

// hostActions maps every host command onto the AWS Payment Cryptography
// action it performs: a connection's principal needs that action on every
// key the command names (an "@" reference or an "S" block, whose binding
// block names its key; a block bound to no stored key is the resource "*"),
// or on "*" when it names none. The diagnostics (NC, NO, B2) use no key and
// need no action. Every code of the decoders table must be here
// (TestEveryCommandHasAnAction).
var hostActions = map[string]string{
	"NC": "", "NO": "", "B2": "",
	"A0": "CreateKey", "A6": "ImportKey", "A8": "ExportKey", "BU": "GetKey",
	"CW": "GenerateCardValidationData", "CY": "VerifyCardValidationData",
	"KQ": "VerifyAuthRequestCryptogram",
	// RY generates (mode 3) or verifies (mode 4): the table names the
	// generation, and a verification asks for its own action (actionByMode).
	"RY": "GenerateCardValidationData",
	"CA": "TranslatePinData", "CC": "TranslatePinData", "G0": "TranslatePinData",
	"DC": "VerifyPinData", "EC": "VerifyPinData", "DA": "VerifyPinData", "EA": "VerifyPinData",
	"DG": "GeneratePinData", "DE": "GeneratePinData", "EE": "GeneratePinData",
	"M6": "GenerateMac", "M8": "VerifyMac",
	"M0": "EncryptData", "M2": "DecryptData", "M4": "ReEncryptData",
}

// Refusals. A key named by "@" that the principal may not use is answered
// exactly as a key that does not exist (12), so a client without access
// cannot learn which keys and aliases exist; any other refusal (an "S"
// block's key, or the command itself) is 17, payShield's "not authorized".
const codeNotAuthorized = codeProhibited

// actionByMode is implemented by a command whose action depends on a field
// of the request (RY: generate or verify); it returns the action's name,
// which must be a Payment Cryptography operation.
type actionByMode interface{ action() string }

// modeActions are the compiled actions of the commands that choose theirs.
var modeActions = map[string]access.Action{
	"VerifyCardValidationData": access.MustAction("VerifyCardValidationData"),
}

// hostAuthz is a compiled entry of hostActions.
type hostAuthz struct {
	action access.Action
	check  bool
}

func compileHostActions() map[string]hostAuthz {
	out := make(map[string]hostAuthz, len(hostActions))
	for code, op := range hostActions {
		if op == "" {
			out[code] = hostAuthz{}
			continue
		}
		out[code] = hostAuthz{action: access.MustAction(op), check: true}
	}
	return out
}

// bind gives a new connection its principal: the one its mTLS client
// certificate maps to, else the listener's (Config.Principal). The name is
// kept, and looked up for each command, so that a principal's change or
// removal applies to open connections at once.
func (s *Server) bind(x *call, cert *x509.Certificate, remote string, secure bool) {
	x.allowed, x.allowedNext = [allowMemo]allowEntry{}, 0
	if s.cfg.Authorizer == nil {
		return
	}
	x.principal = s.cfg.Principal
	if p := s.cfg.Authorizer.ByCertificate(cert); p != nil {
		x.principal = p.Name
	}
	x.actx = access.Context{Secure: secure}
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		x.actx.SourceIP = ap.Addr().Unmap()
	}
}

// authorize decides a decoded command of x's principal; it returns the
// error code of a refusal, or "".
func (s *Server) authorize(x *call, code string, cmd command, c *cursor) string {
	az := s.cfg.Authorizer
	if az == nil {
		return ""
	}
	plan, ok := s.authz[code]
	if !ok {
		return codeNotAuthorized
	}
	if !plan.check {
		return ""
	}
	if m, ok := cmd.(actionByMode); ok {
		if a, ok := modeActions[m.action()]; ok {
			plan.action = a
		}
	}
	var buf [maxKeysPerCommand]access.Resource
	var viaRef [maxKeysPerCommand]bool
	res := buf[:0]
	for i := range c.nkeys {
		k := c.keys[i]
		res = append(res, x.resource(k))
		viaRef[i] = !k.block
	}
	p := az.ByName(x.principal)
	if x.allowedBefore(p, plan.action, res) {
		x.pin(c, res)
		return ""
	}
	d := az.Authorize(p, plan.action, res, &x.actx)
	if d.Allowed {
		x.remember(p, plan.action, res)
		x.pin(c, res)
		return ""
	}
	for i := range res {
		if viaRef[i] && (res[i].ARN == d.Resource || d.Resource == "") {
			return codeNotStored
		}
	}
	return codeNotAuthorized
}

// allowMemo is how many Allow decisions a connection remembers.
const allowMemo = 4

// allowEntry is an Allow decision: of principal p (the directory's object,
// replaced when the principal or its policies change), for action, on
// resources (each with its key's resource policy object, replaced when
// that policy changes).
type allowEntry struct {
	p      *access.Principal
	action access.Action
	n      int
	res    [maxKeysPerCommand]access.Resource
}

// allowedBefore reports whether the connection was allowed action on res
// by p before, with nothing since that could change the answer: the same
// principal and resource policy objects, the same resources, and the same
// connection context (its address and transport); decisions that depend
// on the time are never remembered (remember). It saves the policy
// evaluation of a switch's repeated commands.
func (x *call) allowedBefore(p *access.Principal, action access.Action, res []access.Resource) bool {
	if p == nil {
		return false
	}
next:
	for i := range x.allowed {
		e := &x.allowed[i]
		if e.p != p || e.action != action || e.n != len(res) {
			continue
		}
		for j := range res {
			if e.res[j] != res[j] {
				continue next
			}
		}
		return true
	}
	return false
}

// remember keeps an Allow decision for allowedBefore, unless it could
// differ for the next request (access.Repeatable).
func (x *call) remember(p *access.Principal, action access.Action, res []access.Resource) {
	if !access.Repeatable(p, res) || len(res) > maxKeysPerCommand {
		return
	}
	e := &x.allowed[x.allowedNext]
	x.allowedNext = (x.allowedNext + 1) % allowMemo
	e.p, e.action, e.n = p, action, len(res)
	copy(e.res[:], res)
}

// resource is the authorization resource of a key field, with the key's
// resource-based policy.
func (x *call) resource(k keyRef) access.Resource {
	ident, m, memo := x.identOf(k)
	if !k.block {
		// An alias's key can change: a reference is resolved each
		// time, from the working-key cache.
		return x.svc.AuthzResource(ident)
	}
	// A block's binding cannot change: remember the key it names with
	// its identifier. Its key's policy can: look it up each time (from
	// the policy cache).
	if !memo {
		// Resolved earlier in this command: take the memo's entry.
		m, memo = x.idents[string(k.raw)]
		memo = memo && m.ident == ident
	}
	if memo && m.hasRes {
		r := m.res
		r.Policy = x.svc.ResourcePolicyOf(r.ARN)
		return r
	}
	keyARN, aliasARN := x.svc.KeyResource(ident)
	r := access.Resource{ARN: keyARN, Alias: aliasARN}
	if keyARN == "" {
		r = access.Resource{ARN: aliasARN}
	}
	if memo {
		m.res, m.hasRes = r, true
		x.idents[string(k.raw)] = m
	}
	r.Policy = x.svc.ResourcePolicyOf(r.ARN)
	return r
}

// aliasPin is a key reference that named an alias, and the ARN of the key
// the alias resolved to when the command was authorized.
type aliasPin struct{ ref, keyARN string }

// afterAuthorize, when set (by tests only), runs between a command's
// authorization and its operation. Atomic: a test sets it while the
// server's goroutines read it.
var afterAuthorize atomic.Pointer[func()]

// pin makes the command run on the keys it was authorized on: every "@"
// reference that named an alias is resolved, from now on, to the key the
// alias named at the decision (res, in the order of c.keys). An alias with
// no key is not pinned (the operation then finds no key, as authorized).
func (x *call) pin(c *cursor, res []access.Resource) {
	x.npins = 0
	for i := range c.nkeys {
		k, r := c.keys[i], res[i]
		if k.block || r.Alias == "" || r.ARN == "" || r.ARN == "*" {
			continue
		}
		var ref string
		if m, ok := x.idents[string(k.raw)]; ok && !m.block {
			ref = m.ident // the memo's copy: no allocation
		} else {
			ref = string(k.raw)
		}
		x.pins[x.npins] = aliasPin{ref: ref, keyARN: r.ARN}
		x.npins++
	}
}
