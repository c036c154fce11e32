package access

import (
	"encoding/json"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"

	"payhsm/fault"
)

const (
	home    = "111122223333"
	partner = "444455556666"
	keyC    = "arn:aws:payment-cryptography:us-east-1:111122223333:key/cccccccccccccccc"
)

func pol(stmts string) string { return `{"Version":"2012-10-17","Statement":[` + stmts + `]}` }

func mustRP(t testing.TB, key, doc string) *ResourcePolicy {
	t.Helper()
	rp, err := ParseResourcePolicy(key, doc)
	if err != nil {
		t.Fatal(err)
	}
	return rp
}

func principal(t testing.TB, name, account string, docs ...string) *Principal {
	t.Helper()
	var pols []*Policy
	for i, d := range docs {
		p, err := ParsePolicy("id"+string(rune('0'+i)), []byte(d))
		if err != nil {
			t.Fatal(err)
		}
		pols = append(pols, p)
	}
	p, err := NewPrincipal(Principal{Name: name, Account: account}, pols...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseResourcePolicyErrors(t *testing.T) {
	allow := `"Effect":"Allow","Action":"payment-cryptography:DecryptData","Resource":"*"`
	for _, tc := range []struct{ doc, want string }{
		{``, "empty"},
		{`{"Version":"2012-10-17","Statement":{` + allow + `}}`, "Statement[0].Principal: is required in a resource-based policy"},
		{pol(`{"NotPrincipal":{"AWS":"*"},` + allow + `}`), "Statement[0].NotPrincipal: NotPrincipal is not supported"},
		{pol(`{"Principal":"someone",` + allow + `}`), `Statement[0].Principal: must be "*"`},
		{pol(`{"Principal":{"Service":"kms.amazonaws.com"},` + allow + `}`), "Statement[0].Principal.Service: unsupported principal type"},
		{pol(`{"Principal":{},` + allow + `}`), "Statement[0].Principal: names no principal"},
		{pol(`{"Principal":{"AWS":["arn:aws:iam::444455556666:group/ops"]},` + allow + `}`), `Statement[0].Principal.AWS[0]: "arn:aws:iam::444455556666:group/ops" is not "*", an account id or an IAM principal ARN`},
		{pol(`{"Principal":{"AWS":"arn:aws:iam::444455556666:user/app*"},` + allow + `}`), "cannot hold wildcards"},
		{pol(`{"Principal":{"AWS":"44445555666"},` + allow + `}`), "is not \"*\", an account id"},
		{pol(`{"Principal":{"AWS":[]},` + allow + `}`), "Statement[0].Principal.AWS: must not be an empty array"},
		{pol(`{"Principal":"*","Effect":"Allow","Action":"*","Resource":"` + keyB + `"}`), `Statement[0].Resource[0]: "` + keyB + `" does not name this key`},
		{pol(`{"Principal":"*","Effect":"Allow","Action":"kms:*","Resource":"*"}`), "names service kms"},
		{pol(`{"Principal":"*","Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/x":"y"}}}`), "unsupported condition key"},
		{pol(`{"Principal":"*","Effect":"Allow","Action":"*","Resource":"*","Colour":"red"}`), "Statement[0].Colour: unknown statement element (expected Sid, Effect, Principal,"},
		{pol(`{"Principal":"*",`+allow+`}`) + strings.Repeat(" ", MaxResourcePolicyChars), "at most 20480 are allowed"},
		{"{\"Version\":\"2012-10-17\",\"Statement\":[{\"Sid\":\"\xff\"}]}", "not valid UTF-8"},
	} {
		_, err := ParseResourcePolicy(keyA, tc.doc)
		if err == nil {
			t.Errorf("%.70s: accepted, want an error containing %q", tc.doc, tc.want)
			continue
		}
		if fault.KindOf(err) != fault.Validation {
			t.Errorf("%.70s: kind %v, want Validation", tc.doc, fault.KindOf(err))
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "resource policy: ") {
			t.Errorf("%.70s:\n got %q\nwant it to contain %q", tc.doc, err, tc.want)
		}
	}
	// A policy of MaxPolicyBytes..MaxResourcePolicyChars is fine (the
	// identity-policy limit does not apply).
	long := pol(`{"Principal":{"AWS":"444455556666"},` + allow + `}`)
	long += strings.Repeat(" ", MaxResourcePolicyChars-len(long))
	if _, err := ParseResourcePolicy(keyA, long); err != nil {
		t.Errorf("a %d-character policy: %v", len(long), err)
	}
}

func TestCheckPublic(t *testing.T) {
	act := `"Action":"payment-cryptography:DecryptData","Resource":"*"`
	for _, tc := range []struct {
		name, stmts string
		public      bool
	}{
		{"star principal", `{"Effect":"Allow","Principal":"*",` + act + `}`, true},
		{"AWS star", `{"Effect":"Allow","Principal":{"AWS":["444455556666","*"]},` + act + `}`, true},
		{"AWS star, one of two statements", `{"Effect":"Allow","Principal":{"AWS":"444455556666"},` + act + `},{"Sid":"Open","Effect":"Allow","Principal":{"AWS":"*"},` + act + `}`, true},
		{"star with a wildcard account condition", `{"Effect":"Allow","Principal":"*",` + act + `,"Condition":{"StringLike":{"aws:PrincipalAccount":"4444*"}}}`, true},
		{"star with a negated condition", `{"Effect":"Allow","Principal":"*",` + act + `,"Condition":{"StringNotEquals":{"aws:PrincipalAccount":"444455556666"}}}`, true},
		{"star with IfExists", `{"Effect":"Allow","Principal":"*",` + act + `,"Condition":{"StringEqualsIfExists":{"aws:PrincipalAccount":"444455556666"}}}`, true},
		{"star with a /0 source", `{"Effect":"Allow","Principal":"*",` + act + `,"Condition":{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}}`, true},
		{"star with a /4 source", `{"Effect":"Allow","Principal":"*",` + act + `,"Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","0.0.0.0/4"]}}}`, true},
		{"star with a secure-transport condition only", `{"Effect":"Allow","Principal":"*",` + act + `,"Condition":{"Bool":{"aws:SecureTransport":"true"}}}`, true},
		{"star with a wildcard ARN account", `{"Effect":"Allow","Principal":"*",` + act + `,"Condition":{"StringLike":{"aws:PrincipalArn":"arn:aws:iam::*:role/x"}}}`, true},

		{"account", `{"Effect":"Allow","Principal":{"AWS":"444455556666"},` + act + `}`, false},
		{"principal ARN", `{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:role/acq"},` + act + `}`, false},
		{"root ARN", `{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},` + act + `}`, false},
		{"star denied", `{"Effect":"Deny","Principal":"*",` + act + `}`, false},
		{"star narrowed by account", `{"Effect":"Allow","Principal":"*",` + act + `,"Condition":{"StringEquals":{"aws:PrincipalAccount":["444455556666","111122223333"]}}}`, false},
		{"star narrowed by ARN", `{"Effect":"Allow","Principal":"*",` + act + `,"Condition":{"StringLike":{"aws:PrincipalArn":"arn:aws:iam::444455556666:role/acq-*"}}}`, false},
		{"star narrowed by network", `{"Effect":"Allow","Principal":"*",` + act + `,"Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","fd00::/48"]}}}`, false},
	} {
		rp := mustRP(t, keyA, pol(tc.stmts))
		err := rp.CheckPublic()
		if (err != nil) != tc.public {
			t.Errorf("%s: CheckPublic = %v, want public %v", tc.name, err, tc.public)
			continue
		}
		if err != nil && fault.KindOf(err) != fault.PublicPolicy {
			t.Errorf("%s: kind %v, want PublicPolicy", tc.name, fault.KindOf(err))
		}
	}
}

// TestResourcePolicyMatrix checks IAM's combination of identity and
// resource-based policies over same-account and cross-account principals.
func TestResourcePolicyMatrix(t *testing.T) {
	dec, enc, get, exp := MustAction("DecryptData"), MustAction("EncryptData"), MustAction("GetKey"), MustAction("ExportKey")
	reenc, delRP, list, create := MustAction("ReEncryptData"), MustAction("DeleteResourcePolicy"), MustAction("ListKeys"), MustAction("CreateKey")

	rpA := mustRP(t, keyA, pol(`
		{"Sid":"BobDecrypts","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/bob"},"Action":"payment-cryptography:DecryptData","Resource":"*"},
		{"Sid":"HomeAccount","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"payment-cryptography:EncryptData","Resource":"*"},
		{"Sid":"Partner","Effect":"Allow","Principal":{"AWS":"444455556666"},"Action":["payment-cryptography:DecryptData","payment-cryptography:GetKey","payment-cryptography:ExportKey","payment-cryptography:DeleteResourcePolicy","payment-cryptography:ReEncryptData"],"Resource":"*"},
		{"Sid":"PartnerRole","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:role/issuer"},"Action":"payment-cryptography:EncryptData","Resource":"*",
		 "Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}},
		{"Sid":"NoExport","Effect":"Deny","Principal":"*","Action":"payment-cryptography:ExportKey","Resource":"*"},
		{"Sid":"NoErin","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::111122223333:user/erin"},"Action":"*","Resource":"*"}`))
	// keyC's policy grants through the alias it is named by.
	rpC := mustRP(t, keyC, pol(`{"Sid":"ByAlias","Effect":"Allow","Principal":{"AWS":"444455556666"},"Action":"payment-cryptography:DecryptData","Resource":"`+aliasA+`"}`))

	everything := pol(`{"Effect":"Allow","Action":"*","Resource":"*"}`)
	alice := principal(t, "alice", home, pol(`{"Sid":"Use","Effect":"Allow","Action":["payment-cryptography:DecryptData","payment-cryptography:ExportKey"],"Resource":"`+keyA+`"}`))
	bob := principal(t, "bob", home)
	erin := principal(t, "erin", home, everything)
	frank := principal(t, "frank", home, everything, pol(`{"Sid":"NoDecrypt","Effect":"Deny","Action":"payment-cryptography:DecryptData","Resource":"*"}`))
	carol := principal(t, "carol", partner, everything)
	dave := principal(t, "dave", partner)
	issuer, err := NewPrincipal(Principal{Name: "issuer", Account: partner, Kind: Role}, must(ParsePolicy("all", []byte(everything))))
	if err != nil {
		t.Fatal(err)
	}

	A := Resource{ARN: keyA, Policy: rpA}
	B := Resource{ARN: keyB}
	C := Resource{ARN: keyC, Alias: aliasA, Policy: rpC}
	CnoAlias := Resource{ARN: keyC, Policy: rpC}
	inside := &Context{SourceIP: netip.MustParseAddr("10.1.2.3")}
	outside := &Context{SourceIP: netip.MustParseAddr("203.0.113.9")}

	type want struct {
		allowed, explicit, inResource, cross bool
		stmt                                 string
	}
	for _, tc := range []struct {
		name string
		p    *Principal
		a    Action
		res  []Resource
		c    *Context
		want want
	}{
		// Same account.
		{"identity allows", alice, dec, []Resource{A}, inside, want{allowed: true, stmt: "id0/Use"}},
		{"nothing allows", alice, enc, []Resource{B}, inside, want{}},
		{"resource Deny beats identity Allow", alice, exp, []Resource{A}, inside, want{explicit: true, inResource: true, stmt: "ResourcePolicy/NoExport"}},
		{"resource grant to the principal ARN allows alone", bob, dec, []Resource{A}, inside, want{allowed: true, stmt: "ResourcePolicy/BobDecrypts"}},
		{"resource grant to the account only delegates", bob, enc, []Resource{A}, inside, want{}},
		{"the delegated account's identity policy allows", erin, get, []Resource{B}, inside, want{allowed: true, stmt: "id0/Statement[0]"}},
		{"resource Deny naming the principal", erin, get, []Resource{A}, inside, want{explicit: true, inResource: true, stmt: "ResourcePolicy/NoErin"}},
		{"identity Deny beats resource Allow", frank, dec, []Resource{A}, inside, want{explicit: true, stmt: "id1/NoDecrypt"}},
		{"same account without a resource policy", erin, dec, []Resource{B}, inside, want{allowed: true, stmt: "id0/Statement[0]"}},
		{"same account, operation on no key", erin, list, nil, inside, want{allowed: true, stmt: "id0/Statement[0]"}},

		// Cross account.
		{"cross-account: both allow", carol, dec, []Resource{A}, inside, want{allowed: true, cross: true, stmt: "id0/Statement[0]"}},
		{"cross-account GetKey", carol, get, []Resource{A}, outside, want{allowed: true, cross: true, stmt: "id0/Statement[0]"}},
		{"cross-account: resource Deny", carol, exp, []Resource{A}, inside, want{explicit: true, inResource: true, stmt: "ResourcePolicy/NoExport"}},
		{"cross-account: operation not usable across accounts", carol, delRP, []Resource{A}, inside, want{cross: true, stmt: stmtCrossAccountUnsupported}},
		{"cross-account: no resource grant for the action", carol, enc, []Resource{A}, inside, want{cross: true, inResource: true, stmt: stmtNoResourceGrant}},
		{"cross-account: key without a policy", carol, dec, []Resource{B}, inside, want{cross: true, inResource: true, stmt: stmtNoResourceGrant}},
		{"cross-account: identity does not allow", dave, dec, []Resource{A}, inside, want{cross: true, stmt: stmtNoIdentityGrant}},
		{"cross-account: every key must allow", carol, reenc, []Resource{A, B}, inside, want{cross: true, inResource: true, stmt: stmtNoResourceGrant}},
		{"cross-account: role grant with its condition", issuer, enc, []Resource{A}, inside, want{allowed: true, cross: true, stmt: "all/Statement[0]"}},
		{"cross-account: role grant, condition fails", issuer, enc, []Resource{A}, outside, want{cross: true, inResource: true, stmt: stmtNoResourceGrant}},
		{"cross-account: grant by the alias named", carol, dec, []Resource{C}, inside, want{allowed: true, cross: true, stmt: "id0/Statement[0]"}},
		{"cross-account: alias grant, key named by ARN", carol, dec, []Resource{CnoAlias}, inside, want{cross: true, inResource: true, stmt: stmtNoResourceGrant}},
		{"cross-account: CreateKey acts in the appliance's account", carol, create, nil, inside, want{cross: true, stmt: stmtCrossAccountUnsupported}},
		{"cross-account: ListKeys", carol, list, []Resource{AnyResource}, inside, want{cross: true, stmt: stmtCrossAccountUnsupported}},
	} {
		az := NewAuthorizer(must(NewDirectory([]*Principal{tc.p})))
		az.SetAccount(home)
		d := az.Authorize(tc.p, tc.a, tc.res, tc.c)
		got := want{d.Allowed, d.Explicit, d.InResource, d.CrossAccount, d.Statement}
		if got != tc.want {
			t.Errorf("%s: %s %s: got %+v, want %+v", tc.name, tc.p.Name, tc.a, got, tc.want)
		}
		if !d.Allowed && az.Denials() != 1 {
			t.Errorf("%s: denial not counted", tc.name)
		}
	}
}

func TestAccessDeniedWording(t *testing.T) {
	carol := principal(t, "carol", partner)
	dec := MustAction("DecryptData")
	for _, tc := range []struct {
		d    Decision
		want string
	}{
		{Decision{Explicit: true, InResource: true, Statement: "ResourcePolicy/X", Resource: keyA}, "with an explicit deny in a resource-based policy"},
		{Decision{Explicit: true, Statement: "p/X", Resource: keyA}, "with an explicit deny in an identity-based policy"},
		{Decision{CrossAccount: true, InResource: true, Statement: stmtNoResourceGrant, Resource: keyA}, "because no resource-based policy allows the payment-cryptography:DecryptData action"},
		{Decision{CrossAccount: true, Statement: stmtCrossAccountUnsupported, Resource: keyA}, "cannot be used across accounts"},
		{Decision{CrossAccount: true, Statement: stmtNoIdentityGrant, Resource: keyA}, "because no identity-based policy allows"},
	} {
		err := AccessDenied(carol, dec, tc.d)
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "arn:aws:iam::444455556666:user/carol") {
			t.Errorf("%+v: %q, want it to contain %q", tc.d, err, tc.want)
		}
	}
}

// TestCrossAccountActionsFollowTheModel reads the two service models (the
// copies tools/apigen generates from) and checks crossAccountActions against
// each operation's documented "Cross-account use".
func TestCrossAccountActionsFollowTheModel(t *testing.T) {
	re := regexp.MustCompile(`Cross-account use:?</b>:? *([^<]*)`)
	n := 0
	for _, f := range []string{"payment-cryptography-2021-09-14.json", "payment-cryptography-data-2022-02-03.json"} {
		b, err := os.ReadFile("../tools/apigen/testdata/" + f)
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			Operations map[string]struct{ Documentation string } `json:"operations"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for op, o := range m.Operations {
			a, ok := ActionOf(op)
			if !ok {
				t.Errorf("%s: no Action", op)
				continue
			}
			sm := re.FindStringSubmatch(o.Documentation)
			supported := sm != nil && strings.HasPrefix(sm[1], "This operation supports cross-account use")
			if sm != nil && !supported && !strings.HasPrefix(sm[1], "This operation can't be used across") {
				t.Errorf("%s: unrecognised cross-account text %q", op, sm[1])
			}
			if a.CrossAccount() != supported {
				t.Errorf("%s: CrossAccount() = %v, the model says %v", op, a.CrossAccount(), supported)
			}
			if supported {
				n++
			}
		}
	}
	if n == 0 {
		t.Fatal("the models mark no operation as usable across accounts: the documentation pattern no longer matches")
	}
}

func TestArnAccount(t *testing.T) {
	for in, want := range map[string]string{
		keyA: home, aliasA: home, "*": "", "": "", "arn:aws:iam::444455556666:user/x": partner, "arn:aws:x": "",
	} {
		if got := arnAccount(in); got != want {
			t.Errorf("arnAccount(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseResourcePolicy(f *testing.F) {
	f.Add(pol(`{"Sid":"P","Effect":"Allow","Principal":{"AWS":["444455556666","arn:aws:iam::111122223333:role/r","*"]},"Action":"payment-cryptography:*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalAccount":"444455556666"}}}`))
	f.Add(pol(`{"Effect":"Deny","Principal":"*","NotAction":"payment-cryptography:Get*","NotResource":"` + keyB + `","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}`))
	f.Add(pol(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"*","Resource":"` + aliasA + `"}`))
	f.Add(`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*"}}`)
	carol := principal(f, "carol", partner, pol(`{"Effect":"Allow","Action":"*","Resource":"*"}`))
	alice := principal(f, "alice", home)
	f.Fuzz(func(t *testing.T, doc string) {
		rp, err := ParseResourcePolicy(keyA, doc)
		if err != nil {
			if k := fault.KindOf(err); k != fault.Validation {
				t.Fatalf("error kind %v: %v", k, err)
			}
			if !strings.HasPrefix(fault.ClientMessage(err), "resource policy: ") {
				t.Fatalf("message %q does not say what is wrong where", fault.ClientMessage(err))
			}
			return
		}
		if rp.Document() != doc || rp.Key() != keyA {
			t.Fatal("the policy does not keep its document and key")
		}
		if err := rp.CheckPublic(); err != nil && fault.KindOf(err) != fault.PublicPolicy {
			t.Fatalf("CheckPublic: kind %v", fault.KindOf(err))
		}
		res := []Resource{{ARN: keyA, Alias: aliasA, Policy: rp}}
		for a := range Action(len(operations)) {
			for _, p := range []*Principal{carol, alice} {
				d := p.evaluate(a, res, &Context{SourceIP: netip.MustParseAddr("10.0.0.1")}, home)
				if !d.Explicit && d.CrossAccount != (p == carol) {
					t.Fatalf("%s %s: CrossAccount %v", p.Name, a, d.CrossAccount)
				}
				if d.Allowed && p == carol && !a.CrossAccount() {
					t.Fatalf("%s allowed across accounts", a)
				}
			}
		}
	})
}
