package ops_test

import (
	"crypto/aes"
	"strings"
	"testing"

	"payhsm/hsm/symmetric"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// BenchmarkEncryptDataSteps takes AppendEncryptData (AES-128 CBC, 64
// bytes, key cached) apart: the whole call, each step of its path on its
// own, and the ceiling of BenchmarkPrimitives, in one run (cpu-ns/op as
// there). Where the operations layer's overhead goes (docs/performance.md,
// "Fourth pass" and "Fifth pass").
//
//	go test ./ops -run '^$' -bench EncryptDataSteps -count 5
func BenchmarkEncryptDataSteps(b *testing.B) {
	svc := opstest.New(b)
	const keyHex = "2B7E151628AED2A6ABF7158809CF4F3C"
	aesKey := opstest.Import(b, svc, sym(keyspec.D0, keyspec.AES128, encDec), keyHex)
	data := hb(strings.Repeat("A5", 64))
	a := ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC}}
	encIn := ops.EncryptDataInput{KeyIdentifier: aesKey, PlainText: data, Attributes: a}
	out := make([]byte, 0, 256)
	aesB, err := aes.NewCipher(hb(keyHex))
	if err != nil {
		b.Fatal(err)
	}
	iv := make([]byte, 16)
	var buf [64]byte
	if _, _, err := svc.AppendEncryptData(out[:0], encIn); err != nil { // caches the key
		b.Fatal(err)
	}
	p, err := ops.PrepareBlocks(svc, aesKey, a)
	if err != nil {
		b.Fatal(err)
	}
	pf, err := ops.PrepareFast(svc, aesKey)
	if err != nil {
		b.Fatal(err)
	}
	if _, ok := pf.Encrypt(out[:0], a.Symmetric, data); !ok {
		b.Fatal("fastCBC did not take the request")
	}
	cases := []struct {
		name string
		f    func()
	}{
		{"AppendEncryptData", func() { _, _, _ = svc.AppendEncryptData(out[:0], encIn) }},
		{"referenced-lookup", func() { ops.StepGet(svc, aesKey) }},
		{"Working", func() { _ = ops.StepWorking(svc, aesKey) }},
		{"peekWorking", func() { ops.StepPeek(svc, aesKey) }},
		{"peekWorking+params", func() { _ = ops.StepPeekParams(svc, aesKey, a) }},
		{"fastCBC", func() { _, _ = pf.Encrypt(out[:0], a.Symmetric, data) }},
		{"appendBlocks", func() { _, _ = p.Append(out[:0], data) }},
		{"symmetric.EncryptTo", func() { _ = symmetric.EncryptTo(aesB, symmetric.CBC, iv, buf[:], data) }},
		{"ceiling", func() { cbcEncryptCeiling(aesB, iv, buf[:], data) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			start := cpuTime()
			for b.Loop() {
				c.f()
			}
			reportCPU(b, start)
		})
	}
}
