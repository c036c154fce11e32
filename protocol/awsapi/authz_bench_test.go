package awsapi

import (
	"bufio"
	"bytes"
	"flag"
	"net/http"
	"strconv"
	"testing"

	"go.uber.org/zap"

	"payhsm/access"
	"payhsm/keyspec"
	"payhsm/ops/opstest"
	"payhsm/protocol/awsapi/sigv4"
)

// BenchmarkHandlerAuthz measures a hot data-plane request through the
// handler (as BenchmarkHandler: parse, SigV4, decode, validate, operation on
// cached keys, response) with authorization off (no Authorizer: every
// authenticated request is allowed) and on (a principal with two identity
// policies, four statements, a source-IP condition and Denys to scan; each
// key with a three-statement resource policy). The two alternate within one
// run, so that the ratio on/off is comparable on a loaded machine: -count
// repeats each sub-benchmark in a row, so the rounds are -authz.rounds
// (sub-benchmarks round=1, round=2, …, each off then on). cpu-ns/op (the
// process's CPU time per request) varies less than ns/op on a shared machine. TranslatePinData names its two keys by ARN, GenerateMac its
// key by alias (the alias is resolved, authorized and pinned).
func BenchmarkHandlerAuthz(b *testing.B) {
	svc := opstest.New(b)
	pin := keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}
	sym := func(u keyspec.KeyUsage, m keyspec.ModesOfUse) keyspec.Attributes {
		return keyspec.Attributes{Usage: u, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key, Modes: m}
	}
	zpkA := opstest.Import(b, svc, sym(keyspec.P0, pin), "0123456789ABCDEFFEDCBA9876543210")
	zpkB := opstest.Import(b, svc, sym(keyspec.P0, pin), "89ABCDEF0123456776543210FEDCBA98")
	mak := opstest.Import(b, svc, sym(keyspec.M3, keyspec.ModesOfUse{Generate: true, Verify: true}), "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
	if _, err := svc.CreateAlias("alias/acq-mac", mak); err != nil {
		b.Fatal(err)
	}
	const acct = "000000000000"
	for _, k := range []string{zpkA, zpkB, mak} {
		if _, err := svc.PutResourcePolicy(k, `{"Version":"2012-10-17","Statement":[
			{"Sid":"Switch","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::`+acct+`:user/switch"},"Action":["payment-cryptography:TranslatePinData","payment-cryptography:GenerateMac","payment-cryptography:VerifyMac"],"Resource":"*"},
			{"Sid":"Ops","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::`+acct+`:role/ops"},"Action":"payment-cryptography:Get*","Resource":"*"},
			{"Sid":"NoExport","Effect":"Deny","Principal":"*","Action":"payment-cryptography:ExportKey","Resource":"*"}]}`); err != nil {
			b.Fatal(err)
		}
	}
	var pols []*access.Policy
	for i, d := range []string{`{"Version":"2012-10-17","Statement":[
		{"Sid":"Keys","Effect":"Allow","Action":["payment-cryptography:Get*","payment-cryptography:List*"],"Resource":"*"},
		{"Sid":"Data","Effect":"Allow","Action":["payment-cryptography:TranslatePinData","payment-cryptography:GenerateMac","payment-cryptography:VerifyMac"],
		 "Resource":["arn:aws:payment-cryptography:us-east-1:` + acct + `:alias/acq-*","arn:aws:payment-cryptography:us-east-1:` + acct + `:key/*"],
		 "Condition":{"IpAddress":{"aws:SourceIp":["127.0.0.0/8","10.0.0.0/8"]}}}]}`,
		`{"Version":"2012-10-17","Statement":[
		{"Sid":"NoExport","Effect":"Deny","Action":["payment-cryptography:ExportKey","payment-cryptography:Delete*"],"Resource":"*"},
		{"Sid":"NoIss","Effect":"Deny","Action":"*","Resource":"arn:aws:payment-cryptography:us-east-1:` + acct + `:alias/iss-*"}]}`} {
		p, err := access.ParsePolicy(string(rune('a'+i)), []byte(d))
		if err != nil {
			b.Fatal(err)
		}
		pols = append(pols, p)
	}
	sw, err := access.NewPrincipal(access.Principal{Name: "switch", Account: acct, AccessKeyID: benchKeyID, Secret: benchSecret}, pols...)
	if err != nil {
		b.Fatal(err)
	}
	az := access.NewAuthorizer(must(access.NewDirectory([]*access.Principal{sw})))
	az.SetAccount(acct)
	off := New(svc, &sigv4.Verifier{Creds: sigv4.StaticCredentials{benchKeyID: benchSecret}, Region: benchRegion, Service: "payment-cryptography"}, zap.NewNop())
	on := New(svc, &sigv4.Verifier{Creds: az, Region: benchRegion, Service: "payment-cryptography"}, zap.NewNop())
	on.SetAuthorizer(az)

	iso0 := map[string]any{"IsoFormat0": map[string]any{"PrimaryAccountNumber": "5555555551234567"}}
	msg := "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
	reqs := []struct {
		name string
		raw  []byte
	}{
		{"TranslatePinData", signed(b, "/pindata/translate", map[string]any{"IncomingKeyIdentifier": zpkA, "IncomingTranslationAttributes": iso0,
			"OutgoingKeyIdentifier": zpkB, "OutgoingTranslationAttributes": iso0, "EncryptedPinBlock": "230B4C43B8BA2C5C"})},
		{"GenerateMacByAlias", signed(b, "/mac/generate", map[string]any{"KeyIdentifier": "alias/acq-mac", "MessageData": msg,
			"GenerationAttributes": map[string]any{"Algorithm": "ISO9797_ALGORITHM3"}})},
	}
	for _, rq := range reqs {
		for _, s := range []*Server{off, on} { // warm the key and policy caches
			if status, body := serveOnce(b, s, rq.raw); status != 200 {
				b.Fatalf("%s: %d %s", rq.name, status, body)
			}
		}
	}
	for round := 1; round <= *authzRounds; round++ {
		b.Run("round="+strconv.Itoa(round), func(b *testing.B) {
			for _, rq := range reqs {
				for _, v := range []struct {
					name string
					s    *Server
				}{{"authz=off", off}, {"authz=on", on}} {
					raw, s := rq.raw, v.s
					b.Run(rq.name+"/"+v.name, func(b *testing.B) { benchServe(b, s, raw) })
				}
			}
		})
	}
}

// authzRounds is how many off/on pairs BenchmarkHandlerAuthz runs.
var authzRounds = flag.Int("authz.rounds", 1, "BenchmarkHandlerAuthz: off/on rounds, alternating")

// benchServe serves raw through s, parsed anew each time.
func benchServe(b *testing.B, s *Server, raw []byte) {
	b.ReportAllocs()
	rd := bytes.NewReader(raw)
	br := bufio.NewReader(rd)
	w := &discardWriter{h: http.Header{}}
	cpu := processCPU()
	for b.Loop() {
		rd.Reset(raw)
		br.Reset(rd)
		r, err := http.ReadRequest(br)
		if err != nil {
			b.Fatal(err)
		}
		r.RemoteAddr = "127.0.0.1:40000"
		clear(w.h)
		w.status = 200
		w.body.Reset()
		s.ServeHTTP(w, r)
		if w.status != 200 {
			b.Fatalf("%d %s", w.status, w.body.Bytes())
		}
	}
	reportCPU(b, cpu)
}
