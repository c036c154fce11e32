package access

import (
	"net/netip"
	"testing"
)

// BenchmarkAuthorize measures one data-plane decision against a realistic
// principal: four statements over two policies, with a source-IP condition
// and a Deny to scan past.
func BenchmarkAuthorize(b *testing.B) {
	p := mustPrincipal(b,
		`{"Version":"2012-10-17","Statement":[
		 {"Sid":"Keys","Effect":"Allow","Action":["payment-cryptography:Get*","payment-cryptography:List*"],"Resource":"*"},
		 {"Sid":"Data","Effect":"Allow","Action":["payment-cryptography:DecryptData","payment-cryptography:EncryptData","payment-cryptography:TranslatePinData"],
		  "Resource":["arn:aws:payment-cryptography:us-east-1:111122223333:alias/acq-*","`+keyA+`"],
		  "Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","192.168.0.0/16"]}}}]}`,
		`{"Version":"2012-10-17","Statement":[
		 {"Sid":"NoExport","Effect":"Deny","Action":["payment-cryptography:ExportKey","payment-cryptography:Delete*"],"Resource":"*"},
		 {"Sid":"NoB","Effect":"Deny","Action":"*","Resource":"`+keyB+`"}]}`)
	az := NewAuthorizer(must(NewDirectory([]*Principal{p})))
	res := []Resource{{ARN: keyA, Alias: aliasA}}
	c := &Context{SourceIP: netip.MustParseAddr("10.9.8.7")}
	a := MustAction("DecryptData")
	b.ReportAllocs()
	for b.Loop() {
		if d := az.Authorize(p, a, res, c); !d.Allowed {
			b.Fatal(d.Reason())
		}
	}
}

// BenchmarkAuthorizeResourcePolicy is BenchmarkAuthorize's decision on a key
// that carries a resource-based policy (three statements, a Deny to scan),
// for a principal of the key's account and for one of another account.
func BenchmarkAuthorizeResourcePolicy(b *testing.B) {
	rp := mustRP(b, keyA, pol(`
		{"Sid":"Partner","Effect":"Allow","Principal":{"AWS":["444455556666","arn:aws:iam::777788889999:role/acq"]},"Action":["payment-cryptography:DecryptData","payment-cryptography:GetKey"],"Resource":"*"},
		{"Sid":"Ops","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/ops"},"Action":"payment-cryptography:*","Resource":"*"},
		{"Sid":"NoExport","Effect":"Deny","Principal":"*","Action":"payment-cryptography:ExportKey","Resource":"*"}`))
	same := mustPrincipal(b, `{"Version":"2012-10-17","Statement":[
		 {"Sid":"Data","Effect":"Allow","Action":["payment-cryptography:DecryptData","payment-cryptography:EncryptData"],
		  "Resource":["arn:aws:payment-cryptography:us-east-1:111122223333:alias/acq-*","`+keyA+`"],
		  "Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","192.168.0.0/16"]}}}]}`)
	cross := principal(b, "partner", partner, `{"Version":"2012-10-17","Statement":[
		 {"Sid":"Data","Effect":"Allow","Action":"payment-cryptography:DecryptData","Resource":"arn:aws:payment-cryptography:*:111122223333:key/*"}]}`)
	c := &Context{SourceIP: netip.MustParseAddr("10.9.8.7")}
	a := MustAction("DecryptData")
	for _, bc := range []struct {
		name string
		p    *Principal
	}{{"same-account", same}, {"cross-account", cross}} {
		b.Run(bc.name, func(b *testing.B) {
			az := NewAuthorizer(must(NewDirectory([]*Principal{bc.p})))
			az.SetAccount(home)
			res := []Resource{{ARN: keyA, Alias: aliasA, Policy: rp}}
			b.ReportAllocs()
			for b.Loop() {
				if d := az.Authorize(bc.p, a, res, c); !d.Allowed {
					b.Fatal(d.Reason())
				}
			}
		})
	}
}
