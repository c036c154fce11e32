package hostcmd

import (
	"bytes"
	"strings"
	"testing"

	"payhsm/access"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

func TestEveryCommandHasAnAction(t *testing.T) {
	for code := range decoders {
		if _, ok := hostActions[code]; !ok {
			t.Errorf("command %s has no entry in hostActions", code)
		}
	}
	for code, op := range hostActions {
		if _, ok := decoders[code]; !ok {
			t.Errorf("hostActions names %s, which is no command", code)
		}
		if _, ok := access.ActionOf(op); op != "" && !ok {
			t.Errorf("%s: %s is no action", code, op)
		}
	}
}

func policyPrincipal(t *testing.T, name, doc string) *access.Principal {
	t.Helper()
	pol, err := access.ParsePolicy(name+"-policy", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	p, err := access.NewPrincipal(access.Principal{Name: name, Account: "000000000000"}, pol)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHostAuthorization is the attack of issue 17 on the host port: a
// client whose principal has no access to a key created through the API
// cannot use it by @alias, by @ARN or by its S block, and the answer to an
// alias it may not use is the answer to an alias that does not exist.
func TestHostAuthorization(t *testing.T) {
	forDrivers(t, func(t *testing.T, drv string) {
		svc, store := opstest.NewWithStore(t)
		attrs := keyspec.Attributes{Usage: keyspec.D0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
			Modes: keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}
		mine, err := svc.CreateKey(ops.CreateKeyInput{Attributes: attrs})
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := svc.CreateKey(ops.CreateKeyInput{Attributes: attrs})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.CreateAlias("alias/mine", mine.ARN); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.CreateAlias("alias/theirs", theirs.ARN); err != nil {
			t.Fatal(err)
		}
		theirsRec, err := store.GetKey(theirs.ARN[strings.LastIndex(theirs.ARN, "/")+1:])
		if err != nil {
			t.Fatal(err)
		}
		mineRec, err := store.GetKey(mine.ARN[strings.LastIndex(mine.ARN, "/")+1:])
		if err != nil {
			t.Fatal(err)
		}
		app := policyPrincipal(t, "app", `{"Version":"2012-10-17","Statement":[
			{"Sid":"Mine","Effect":"Allow","Action":["payment-cryptography:EncryptData","payment-cryptography:DecryptData","payment-cryptography:GetKey"],"Resource":"`+mine.ARN+`"},
			{"Sid":"NoDecryptViaAlias","Effect":"Deny","Action":"payment-cryptography:ReEncryptData","Resource":"*"}]}`)
		dir, err := access.NewDirectory([]*access.Principal{app})
		if err != nil {
			t.Fatal(err)
		}
		az := access.NewAuthorizer(dir)
		ts := startServer(t, svc, Config{Driver: drv, Authorizer: az, Principal: "app"})
		c := ts.dial(t, nil)
		const pt = "0123456789ABCDEF"
		enc := func(key string) string { return c.call("0001M0001100B" + key + "0010" + pt) }
		for _, tc := range []struct{ key, want string }{
			{"@alias/mine;", "0001M100"},
			{"@" + mine.ARN + ";", "0001M100"},
			{"S" + mineRec.KeyBlock, "0001M100"},
			{"@alias/theirs;", "0001M112"},
			{"@" + theirs.ARN + ";", "0001M112"},
			{"@alias/nonexistent;", "0001M112"},
			{"S" + theirsRec.KeyBlock, "0001M117"},
		} {
			if got := enc(tc.key); !strings.HasPrefix(got, tc.want) {
				t.Errorf("M0 with %.40s: %q, want %s…", tc.key, got, tc.want)
			}
		}
		// BU would tell which aliases exist: it answers alike.
		if a, b := c.call("0002BU02"+"1@alias/theirs;"), c.call("0002BU02"+"1@alias/nonexistent;"); a != b || !strings.HasPrefix(a, "0002BV12") {
			t.Errorf("BU existing-but-denied %q vs nonexistent %q", a, b)
		}
		// A command the principal may not perform at all (A0: CreateKey) is 17.
		if got := c.call("0003A00FFFS#D0T2B00N00"); got != "0003A117" {
			t.Errorf("A0 %q, want 17", got)
		}
		// Explicit deny: M4 between two of its own keys.
		if got := c.call("0004M4000000" + "00B@alias/mine;" + "00B@alias/mine;" + "0010" + pt); !strings.HasPrefix(got, "0004M512") {
			t.Errorf("M4 under an explicit deny %q", got)
		}
		if az.Denials() == 0 {
			t.Error("no denial counted")
		}
		// Diagnostics need no action.
		if got := c.call("0005NO00"); !strings.HasPrefix(got, "0005NP00") {
			t.Errorf("NO %q", got)
		}
	})
}

// TestHostNoPrincipal: a listener without a principal refuses every keyed command.
func TestHostNoPrincipal(t *testing.T) {
	dir, err := access.NewDirectory(nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, nil, Config{Authorizer: access.NewAuthorizer(dir)})
	c := ts.dial(t, nil)
	if got := c.call("0001A00FFFS#D0T2B00N00"); got != "0001A117" {
		t.Errorf("A0 without a principal %q", got)
	}
}

// BenchmarkDispatchCCAuthz is BenchmarkDispatchCC without and with an
// Authorizer (a principal with a two-policy, four-statement identity
// policy): the cost of authorizing a host command.
func BenchmarkDispatchCCAuthz(b *testing.B) {
	pols := []string{`{"Version":"2012-10-17","Statement":[
		{"Sid":"Keys","Effect":"Allow","Action":["payment-cryptography:Get*","payment-cryptography:List*"],"Resource":"*"},
		{"Sid":"Pin","Effect":"Allow","Action":["payment-cryptography:TranslatePinData","payment-cryptography:VerifyPinData","payment-cryptography:GeneratePinData"],"Resource":"*",
		 "Condition":{"IpAddress":{"aws:SourceIp":["127.0.0.0/8","10.0.0.0/8"]}}}]}`,
		`{"Version":"2012-10-17","Statement":[
		{"Sid":"NoExport","Effect":"Deny","Action":["payment-cryptography:ExportKey","payment-cryptography:Delete*"],"Resource":"*"},
		{"Sid":"Gen","Effect":"Allow","Action":"payment-cryptography:CreateKey","Resource":"*"}]}`}
	var ps []*access.Policy
	for i, d := range pols {
		p, err := access.ParsePolicy(string(rune('a'+i)), []byte(d))
		if err != nil {
			b.Fatal(err)
		}
		ps = append(ps, p)
	}
	pr, err := access.NewPrincipal(access.Principal{Name: "sw", Account: "000000000000"}, ps...)
	if err != nil {
		b.Fatal(err)
	}
	dir, err := access.NewDirectory([]*access.Principal{pr})
	if err != nil {
		b.Fatal(err)
	}
	for _, withAuthz := range []bool{false, true} {
		b.Run(map[bool]string{false: "none", true: "authorized"}[withAuthz], func(b *testing.B) {
			cfg := Config{}
			if withAuthz {
				cfg.Authorizer, cfg.Principal = access.NewAuthorizer(dir), "sw"
			}
			ts := startServer(b, nil, cfg)
			c := ts.dial(b, nil)
			gen := func(a string) string { r := c.call("0000A00FFFS#" + a); return r[8 : len(r)-6] }
			zpka, zpkb, pvk := gen("P0T2B00N00"), gen("P0T2B00N00"), gen("V1T2C00N00")
			r := c.call("0001EE" + zpka + "01" + pvk + "1234FFFFFFFF04555555123456" + "0123456789012345" + "1234567N8901")
			if !strings.HasPrefix(r, "0001EF00") {
				b.Fatal(r)
			}
			msg := []byte("0002CC" + zpka + zpkb + "12" + r[8:] + "0101555555123456")
			b.ReportAllocs()
			b.ResetTimer()
			defer reportCPU(b)()
			b.RunParallel(func(pb *testing.PB) {
				x, out := ts.srv.newCall(), make([]byte, 0, 64)
				ts.srv.bind(x, nil, "127.0.0.1:4000", false)
				for pb.Next() {
					out = ts.srv.dispatch(x, out[:0], msg)
				}
				if len(out) > 0 && !bytes.HasPrefix(out, []byte("0002CD00")) {
					b.Error(string(out))
				}
			})
		})
	}
}

// TestModeActionsCompiled: every action a command chooses by its mode is
// compiled (else authorize would silently fall back to the table's action).
func TestModeActionsCompiled(t *testing.T) {
	for _, cmd := range []actionByMode{ryCmd{verify: false}, ryCmd{verify: true}} {
		name := cmd.action()
		if _, ok := modeActions[name]; !ok && name != hostActions["RY"] {
			t.Errorf("%T chooses %s, which is neither compiled in modeActions nor the table's action", cmd, name)
		}
	}
	if (ryCmd{verify: true}).action() != "VerifyCardValidationData" {
		t.Error("RY mode 4 must need VerifyCardValidationData")
	}
}
