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
