package hostcmd

import (
	"flag"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"payhsm/access"
	"payhsm/keyspec"
	"payhsm/ops/opstest"
)

// BenchmarkDispatchAuthz measures one M0 (EncryptData, the key named by
// "@alias/…;") through the dispatcher without the network, with
// authorization off (no Authorizer) and on (a principal with two identity
// policies, four statements, a source-IP condition and Denys to scan; the
// key with a three-statement resource policy; the alias resolved, authorized
// and pinned). The two alternate within one run (-count N gives N pairs),
// so that the ratio on/off is comparable on a loaded machine: -count repeats
// each sub-benchmark in a row, so the rounds are -authz.rounds (sub-benchmarks
// round=1, round=2, …, each off then on). cpu-ns/op (the process's CPU time
// per command) varies less than ns/op on a shared machine.
func BenchmarkDispatchAuthz(b *testing.B) {
	svc := opstest.New(b)
	const acct = "000000000000"
	attrs := keyspec.Attributes{Usage: keyspec.D0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
		Modes: keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}
	key := opstest.Import(b, svc, attrs, "0123456789ABCDEFFEDCBA9876543210")
	if _, err := svc.CreateAlias("alias/acq-zek", key); err != nil {
		b.Fatal(err)
	}
	if _, err := svc.PutResourcePolicy(key, `{"Version":"2012-10-17","Statement":[
		{"Sid":"Switch","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::`+acct+`:user/sw"},"Action":["payment-cryptography:EncryptData","payment-cryptography:DecryptData"],"Resource":"*"},
		{"Sid":"Ops","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::`+acct+`:role/ops"},"Action":"payment-cryptography:Get*","Resource":"*"},
		{"Sid":"NoExport","Effect":"Deny","Principal":"*","Action":"payment-cryptography:ExportKey","Resource":"*"}]}`); err != nil {
		b.Fatal(err)
	}
	var pols []*access.Policy
	for i, d := range []string{`{"Version":"2012-10-17","Statement":[
		{"Sid":"Keys","Effect":"Allow","Action":["payment-cryptography:Get*","payment-cryptography:List*"],"Resource":"*"},
		{"Sid":"Data","Effect":"Allow","Action":["payment-cryptography:EncryptData","payment-cryptography:DecryptData","payment-cryptography:TranslatePinData"],
		 "Resource":["arn:aws:payment-cryptography:*:` + acct + `:alias/acq-*","arn:aws:payment-cryptography:*:` + acct + `:key/*"],
		 "Condition":{"IpAddress":{"aws:SourceIp":["127.0.0.0/8","10.0.0.0/8"]}}}]}`,
		`{"Version":"2012-10-17","Statement":[
		{"Sid":"NoExport","Effect":"Deny","Action":["payment-cryptography:ExportKey","payment-cryptography:Delete*"],"Resource":"*"},
		{"Sid":"NoIss","Effect":"Deny","Action":"*","Resource":"arn:aws:payment-cryptography:*:` + acct + `:alias/iss-*"}]}`} {
		p, err := access.ParsePolicy(string(rune('a'+i)), []byte(d))
		if err != nil {
			b.Fatal(err)
		}
		pols = append(pols, p)
	}
	sw, err := access.NewPrincipal(access.Principal{Name: "sw", Account: acct}, pols...)
	if err != nil {
		b.Fatal(err)
	}
	dir, err := access.NewDirectory([]*access.Principal{sw})
	if err != nil {
		b.Fatal(err)
	}
	az := access.NewAuthorizer(dir)
	az.SetAccount(acct)
	off := startServer(b, svc, Config{})
	on := startServer(b, svc, Config{Authorizer: az, Principal: "sw"})
	msg := []byte("0001M0001100B@alias/acq-zek;0010" + "0123456789ABCDEF")
	for round := 1; round <= *authzRounds; round++ {
		b.Run("round="+strconv.Itoa(round), func(b *testing.B) {
			for _, v := range []struct {
				name string
				ts   *testServer
			}{{"authz=off", off}, {"authz=on", on}} {
				srv := v.ts.srv
				b.Run("M0ByAlias/"+v.name, func(b *testing.B) {
					x, out := srv.newCall(), make([]byte, 0, 64) // one per connection, as the server does
					srv.bind(x, nil, "127.0.0.1:4000", false)
					if got := string(srv.dispatch(x, out[:0], msg)); !strings.HasPrefix(got, "0001M100") {
						b.Fatal(got)
					}
					b.ReportAllocs()
					cpu := processCPU()
					for b.Loop() {
						out = srv.dispatch(x, out[:0], msg)
					}
					b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
					if !strings.HasPrefix(string(out), "0001M100") {
						b.Fatal(string(out))
					}
				})
			}
		})
	}
}

// authzRounds is how many off/on pairs BenchmarkDispatchAuthz runs.
var authzRounds = flag.Int("authz.rounds", 1, "BenchmarkDispatchAuthz: off/on rounds, alternating")

// processCPU is the CPU time (user + system, every thread) of this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
