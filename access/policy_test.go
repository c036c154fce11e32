package access

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"payhsm/fault"
)

const (
	keyA   = "arn:aws:payment-cryptography:us-east-1:111122223333:key/aaaaaaaaaaaaaaaa"
	keyB   = "arn:aws:payment-cryptography:us-east-1:111122223333:key/bbbbbbbbbbbbbbbb"
	aliasA = "arn:aws:payment-cryptography:us-east-1:111122223333:alias/acq-zpk"
)

func mustPrincipal(t testing.TB, docs ...string) *Principal {
	t.Helper()
	var pols []*Policy
	for i, d := range docs {
		p, err := ParsePolicy("p"+string(rune('0'+i)), []byte(d))
		if err != nil {
			t.Fatal(err)
		}
		pols = append(pols, p)
	}
	p, err := NewPrincipal(Principal{Name: "app", Account: "111122223333"}, pols...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParsePolicyErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{``, "empty"},
		{`[]`, "must be a JSON object"},
		{`{"Version":"2012-10-17"}`, "Statement: is required"},
		{`{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`, "Version: is required"},
		{`{"Version":"2008-10-17","Statement":[]}`, `Version: "2008-10-17" is not supported`},
		{`{"Version":"2012-10-17","Statement":[]}`, "at least one statement"},
		{`{"Version":"2012-10-17","Statement":{"Effect":"Permit","Action":"*","Resource":"*"}}`, `Statement[0].Effect: "Permit": must be Allow or Deny`},
		{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Resource":"*"}}`, "Statement[0].Action: is required"},
		{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*"}}`, "Statement[0].Resource: is required"},
		{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","NotAction":"*","Resource":"*"}}`, "exactly one of Action and NotAction"},
		{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"payment-cryptography:DecryptDta","Resource":"*"}}`, `Statement[0].Action[0]: "payment-cryptography:DecryptDta" no Payment Cryptography operation is called DecryptDta`},
		{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":["kms:Decrypt"],"Resource":"*"}}`, "names service kms"},
		{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"key/abc"}}`, "must be \"*\" or an ARN"},
		{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"arn:aws:s3:::bucket/x"}}`, "names service s3"},
		{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"arn:aws:payment-cryptography:us-east-1:${aws:PrincipalAccount}:key/*"}}`, "policy variable"},
		{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*","Principal":"*"}}`, "names no principal"},
		{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*","Effect":"Deny"}}`, "Statement[0].Effect: appears twice"},
		{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"300.1.1.1"}}}}`, `Condition.IpAddress.aws:SourceIp[0]: "300.1.1.1" is not an IP address`},
		{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:SourceIp":"2020-01-01"}}}}`, "operator DateLessThan cannot test this key (it holds an IP address)"},
		{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":{"kms:ViaService":"x"}}}}`, "unsupported condition key"},
		{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"NumericLessThan":{"aws:EpochTime":"1"}}}}`, "unsupported condition operator"},
		{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"ForAnyValue:StringEquals":{"aws:PrincipalArn":"x"}}}}`, "set operators"},
		{`{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":"*","Resource":"*"},{"Sid":"A","Effect":"Deny","Action":"*","Resource":"*"}]}`, "Statement[1].Sid: \"A\" is used by another statement"},
		{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}} x`, "unexpected data after"},
		{`{"Version":"2012-10-17","Statment":[]}`, "Statment: unknown policy element"},
		{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":[],"Resource":"*"}}`, "Action: must not be an empty array"},
		{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}` + strings.Repeat(" ", MaxPolicyBytes), "at most 10240"},
	} {
		_, err := ParsePolicy("pol", []byte(tc.doc))
		if err == nil {
			t.Errorf("%.60s: accepted, want an error containing %q", tc.doc, tc.want)
			continue
		}
		if fault.KindOf(err) != fault.Validation {
			t.Errorf("%.60s: kind %v, want Validation", tc.doc, fault.KindOf(err))
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "policy pol: ") {
			t.Errorf("%.60s:\n got %q\nwant it to contain %q", tc.doc, err, tc.want)
		}
	}
}

func TestEvaluate(t *testing.T) {
	dec := MustAction("DecryptData")
	enc := MustAction("EncryptData")
	list := MustAction("ListKeys")
	create := MustAction("CreateKey")
	in := netip.MustParseAddr("10.1.2.3")
	out := netip.MustParseAddr("192.0.2.7")
	day := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		docs     []string
		a        Action
		res      []Resource
		c        Context
		allowed  bool
		explicit bool
		stmt     string
	}{
		{"no policy: default deny", nil, dec, []Resource{{ARN: keyA}}, Context{}, false, false, ""},
		{"allow exact key", []string{`{"Version":"2012-10-17","Statement":{"Sid":"K","Effect":"Allow","Action":"payment-cryptography:DecryptData","Resource":"` + keyA + `"}}`},
			dec, []Resource{{ARN: keyA}}, Context{}, true, false, "p0/K"},
		{"other key: default deny", []string{`{"Version":"2012-10-17","Statement":{"Sid":"K","Effect":"Allow","Action":"payment-cryptography:DecryptData","Resource":"` + keyA + `"}}`},
			dec, []Resource{{ARN: keyB}}, Context{}, false, false, ""},
		{"other action: default deny", []string{`{"Version":"2012-10-17","Statement":{"Sid":"K","Effect":"Allow","Action":"payment-cryptography:DecryptData","Resource":"` + keyA + `"}}`},
			enc, []Resource{{ARN: keyA}}, Context{}, false, false, ""},
		{"action wildcard, case-insensitive", []string{`{"Version":"2012-10-17","Statement":{"Sid":"K","Effect":"Allow","Action":"Payment-Cryptography:*crypt*","Resource":"*"}}`},
			enc, []Resource{{ARN: keyA}}, Context{}, true, false, "p0/K"},
		{"alias grants the key named by it", []string{`{"Version":"2012-10-17","Statement":{"Sid":"Al","Effect":"Allow","Action":"*","Resource":"arn:aws:payment-cryptography:*:*:alias/acq-*"}}`},
			dec, []Resource{{ARN: keyA, Alias: aliasA}}, Context{}, true, false, "p0/Al"},
		{"alias grant does not cover the key by ARN", []string{`{"Version":"2012-10-17","Statement":{"Sid":"Al","Effect":"Allow","Action":"*","Resource":"arn:aws:payment-cryptography:*:*:alias/acq-*"}}`},
			dec, []Resource{{ARN: keyA}}, Context{}, false, false, ""},
		{"explicit deny beats allow (other policy)", []string{
			`{"Version":"2012-10-17","Statement":{"Sid":"All","Effect":"Allow","Action":"*","Resource":"*"}}`,
			`{"Version":"2012-10-17","Statement":{"Sid":"NoB","Effect":"Deny","Action":"payment-cryptography:DecryptData","Resource":"` + keyB + `"}}`},
			dec, []Resource{{ARN: keyA}, {ARN: keyB}}, Context{}, false, true, "p1/NoB"},
		{"every resource must be allowed", []string{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"` + keyA + `"}}`},
			dec, []Resource{{ARN: keyA}, {ARN: keyB}}, Context{}, false, false, ""},
		{"resource-less action needs Resource *", []string{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"arn:aws:payment-cryptography:*:*:key/*"}}`},
			list, nil, Context{}, false, false, ""},
		{"Resource * covers resource-less action", []string{`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"payment-cryptography:List*","Resource":"*"}}`},
			list, nil, Context{}, true, false, "p0/Statement[0]"},
		{"NotAction", []string{`{"Version":"2012-10-17","Statement":{"Sid":"N","Effect":"Allow","NotAction":["payment-cryptography:Create*","payment-cryptography:Delete*"],"Resource":"*"}}`},
			create, nil, Context{}, false, false, ""},
		{"NotResource deny", []string{
			`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},{"Sid":"OnlyA","Effect":"Deny","Action":"*","NotResource":"` + keyA + `"}]}`},
			dec, []Resource{{ARN: keyB}}, Context{}, false, true, "p0/OnlyA"},
		{"source IP inside", []string{`{"Version":"2012-10-17","Statement":{"Sid":"Net","Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","2001:db8::/32"]}}}}`},
			dec, []Resource{{ARN: keyA}}, Context{SourceIP: in}, true, false, "p0/Net"},
		{"source IP outside", []string{`{"Version":"2012-10-17","Statement":{"Sid":"Net","Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}}`},
			dec, []Resource{{ARN: keyA}}, Context{SourceIP: out}, false, false, ""},
		{"NotIpAddress deny", []string{
			`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},{"Sid":"Far","Effect":"Deny","Action":"*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}`},
			dec, []Resource{{ARN: keyA}}, Context{SourceIP: out}, false, true, "p0/Far"},
		{"date window open", []string{`{"Version":"2012-10-17","Statement":{"Sid":"W","Effect":"Allow","Action":"*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2026-01-01T00:00:00Z"},"DateLessThan":{"aws:CurrentTime":"2026-06-01"}}}}`},
			dec, []Resource{{ARN: keyA}}, Context{Now: day}, true, false, "p0/W"},
		{"date window closed", []string{`{"Version":"2012-10-17","Statement":{"Sid":"W","Effect":"Allow","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:CurrentTime":"1767225600"}}}}`},
			dec, []Resource{{ARN: keyA}}, Context{Now: day}, false, false, ""},
		{"principal ARN like", []string{`{"Version":"2012-10-17","Statement":{"Sid":"P","Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/a*"}}}}`},
			dec, []Resource{{ARN: keyA}}, Context{}, true, false, "p0/P"},
		{"secure transport required", []string{`{"Version":"2012-10-17","Statement":{"Sid":"T","Effect":"Allow","Action":"*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}}`},
			dec, []Resource{{ARN: keyA}}, Context{}, false, false, ""},
		{"missing key with IfExists", []string{`{"Version":"2012-10-17","Statement":{"Sid":"I","Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddressIfExists":{"aws:SourceIp":"10.0.0.0/8"}}}}`},
			dec, []Resource{{ARN: keyA}}, Context{}, true, false, "p0/I"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustPrincipal(t, tc.docs...)
			az := NewAuthorizer(must(NewDirectory([]*Principal{p})))
			var told int
			az.OnDeny = func(*Principal, Action, Decision) { told++ }
			d := az.Authorize(p, tc.a, tc.res, &tc.c)
			if d.Allowed != tc.allowed || d.Explicit != tc.explicit || d.Statement != tc.stmt {
				t.Errorf("decision %+v, want allowed %v explicit %v statement %q", d, tc.allowed, tc.explicit, tc.stmt)
			}
			if want := map[bool]int{true: 0, false: 1}[tc.allowed]; told != want || az.Denials() != uint64(want) {
				t.Errorf("denials reported %d counted %d, want %d", told, az.Denials(), want)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestDisabledAndNil(t *testing.T) {
	p := mustPrincipal(t, AllowAllPolicy)
	p.Disabled = true
	az := NewAuthorizer(must(NewDirectory(nil)))
	if d := az.Authorize(p, MustAction("GetKey"), nil, nil); d.Allowed {
		t.Error("a disabled principal was allowed")
	}
	if d := az.Authorize(nil, MustAction("GetKey"), nil, nil); d.Allowed {
		t.Error("no principal was allowed")
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"*", "", true}, {"a*", "abc", true}, {"a*c", "abbbc", true}, {"a*c", "abbb", false},
		{"a?c", "abc", true}, {"a?c", "ac", false}, {"*key/*", "arn:x:key/abc", true},
		{"a*b*c", "aXbYbZc", true}, {"a*b*c", "aXbYbZ", false}, {"", "", true}, {"", "a", false},
	} {
		if got := glob(tc.p, tc.s); got != tc.want {
			t.Errorf("glob(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
}

func TestDirectory(t *testing.T) {
	a := must(NewPrincipal(Principal{Name: "a", Account: "111122223333", AccessKeyID: "AKIAAAAAAAAAAAAAAAAA", Secret: "s", HostClients: []string{"switch1"}}))
	b := must(NewPrincipal(Principal{Name: "b", Account: "111122223333", Kind: Role, HostClients: []string{"sha256:" + strings.Repeat("ab", 32)}}))
	d, err := NewDirectory([]*Principal{a, b})
	if err != nil {
		t.Fatal(err)
	}
	az := NewAuthorizer(d)
	if s, ok := az.SecretFor("AKIAAAAAAAAAAAAAAAAA"); !ok || s != "s" {
		t.Error("secret by access key")
	}
	if b.ARN() != "arn:aws:iam::111122223333:role/b" || a.ARN() != "arn:aws:iam::111122223333:user/a" {
		t.Errorf("ARNs %s %s", a.ARN(), b.ARN())
	}
	if _, err := NewDirectory([]*Principal{a, a}); err == nil {
		t.Error("duplicate names accepted")
	}
	c := must(NewPrincipal(Principal{Name: "c", Account: "111122223333", HostClients: []string{"switch1"}}))
	if _, err := NewDirectory([]*Principal{a, c}); err == nil {
		t.Error("shared host client accepted")
	}
	for _, bad := range []Principal{{Name: "", Account: "111122223333"}, {Name: "x", Account: "1"}, {Name: "x", Account: "111122223333", Kind: "group"},
		{Name: "x", Account: "111122223333", AccessKeyID: "AKIAAAAAAAAAAAAAAAAA"}, {Name: "x", Account: "111122223333", HostClients: []string{"sha256:zz"}}} {
		if _, err := NewPrincipal(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(AllowAllPolicy))
	f.Add([]byte(`{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Deny","NotAction":"payment-cryptography:Get*","NotResource":["arn:aws:payment-cryptography:*:*:key/*"],"Condition":{"IpAddressIfExists":{"aws:SourceIp":["10.0.0.0/8","::1"]},"DateLessThan":{"aws:CurrentTime":"2030-01-01"},"Bool":{"aws:SecureTransport":true}}}]}`))
	f.Add([]byte(`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringLike":{"aws:PrincipalArn":["a*",1,false]}}}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := ParsePolicy("f", doc)
		if err != nil {
			if fault.KindOf(err) != fault.Validation {
				t.Fatalf("error kind %v: %v", fault.KindOf(err), err)
			}
			return
		}
		pr := must(NewPrincipal(Principal{Name: "f", Account: "111122223333"}, p))
		for a := range Action(len(operations)) {
			_ = pr.evaluate(a, []Resource{{ARN: keyA, Alias: aliasA}, AnyResource}, &Context{SourceIP: netip.MustParseAddr("10.0.0.1")}, "")
		}
	})
}

// TestGlobStarsAgreesWithBacktrack: the segment matcher for '*'-only
// patterns answers as the backtracking one on every pattern and string
// built from a small alphabet (exhaustive up to the lengths below).
func TestGlobStarsAgreesWithBacktrack(t *testing.T) {
	alpha := []string{"a", "b", "*"}
	var pats, strs []string
	var gen func(prefix string, n int, letters []string, out *[]string)
	gen = func(prefix string, n int, letters []string, out *[]string) {
		*out = append(*out, prefix)
		if n == 0 {
			return
		}
		for _, l := range letters {
			gen(prefix+l, n-1, letters, out)
		}
	}
	gen("", 5, alpha, &pats)
	gen("", 6, alpha[:2], &strs)
	for _, p := range pats {
		for _, s := range strs {
			if got, want := globStars(p, s), globBacktrack(p, s); got != want {
				t.Fatalf("globStars(%q, %q) = %v, backtracking says %v", p, s, got, want)
			}
		}
	}
}

// TestRepeatable: an Allow is repeatable unless a policy of the principal
// or of a resource tests the time.
func TestRepeatable(t *testing.T) {
	t.Parallel()
	const plain = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"payment-cryptography:*","Resource":"*",
		"Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}`
	const timed = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"payment-cryptography:*","Resource":"*",
		"Condition":{"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}}]}`
	principal := func(doc string) *Principal {
		pol, err := ParsePolicy("p", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		p, err := NewPrincipal(Principal{Name: "app", Account: "111122223333"}, pol)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	const key = "arn:aws:payment-cryptography:us-east-1:111122223333:key/abcdefghijklmnop"
	rpTimed, err := ParseResourcePolicy(key, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"111122223333"},
		"Action":"payment-cryptography:EncryptData","Resource":"*","Condition":{"DateGreaterThan":{"aws:EpochTime":"1700000000"}}}]}`)
	if err != nil {
		t.Fatal(err)
	}
	disabled := principal(plain)
	disabled.Disabled = true
	for _, c := range []struct {
		name string
		p    *Principal
		res  []Resource
		want bool
	}{
		{"plain", principal(plain), []Resource{{ARN: key}}, true},
		{"identity policy tests the time", principal(timed), []Resource{{ARN: key}}, false},
		{"resource policy tests the time", principal(plain), []Resource{{ARN: key, Policy: rpTimed}}, false},
		{"no principal", nil, nil, false},
		{"disabled", disabled, nil, false},
	} {
		if got := Repeatable(c.p, c.res); got != c.want {
			t.Errorf("%s: Repeatable %v, want %v", c.name, got, c.want)
		}
	}
}
