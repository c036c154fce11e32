package dpshape

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"payhsm/protocol/awsapi/internal/shapetest"
)

// allStructs are every structure of the model: operation inputs and
// outputs, error shapes, and everything they contain.
func allStructs() []reflect.Type {
	var roots []any
	for _, op := range Operations {
		roots = append(roots, op.NewInput(), op.NewOutput())
	}
	for _, e := range ErrorShapes {
		roots = append(roots, e.New())
	}
	return shapetest.Structs(roots...)
}

// hotTypes are decoded on every data-plane request the benchmarks send.
var hotTypes = map[reflect.Type]bool{
	reflect.TypeFor[TranslatePinDataInput](): true, reflect.TypeFor[VerifyCardValidationDataInput](): true,
	reflect.TypeFor[VerifyMacInput](): true, reflect.TypeFor[GenerateMacInput](): true, reflect.TypeFor[EncryptDataInput](): true,
}

// TestDecodeJSONMatchesUnmarshal: on random documents for every structure,
// valid and not, DecodeJSON gives what json.Unmarshal gives through the
// reflective UnmarshalJSON (values and errors).
func TestDecodeJSONMatchesUnmarshal(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(20, 1))
	types := allStructs()
	if len(types) < 50 {
		t.Fatalf("only %d structures", len(types))
	}
	for _, typ := range types {
		n := 250
		if hotTypes[typ] {
			n = 2500
		}
		for i := range n {
			shapetest.CheckDecode(t, typ, shapetest.Doc(r, typ, []float64{0, 0.01, 0.05, 0.3}[i%4]))
		}
	}
}

// TestAppendJSONMatchesMarshal: on random values of every structure,
// AppendJSON writes what json.Marshal writes.
func TestAppendJSONMatchesMarshal(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(20, 2))
	for _, typ := range allStructs() {
		for range 200 {
			shapetest.CheckEncode(t, shapetest.Value(r, typ))
		}
		shapetest.CheckEncode(t, reflect.New(typ).Interface())                     // empty
		shapetest.CheckEncode(t, reflect.Zero(reflect.PointerTo(typ)).Interface()) // nil
	}
}

// TestFastPathTaken: the requests SDKs send for the hot operations decode
// without falling back to reflection.
func TestFastPathTaken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   interface{ decodeFast(*fastDecoder) bool }
		body string
	}{
		{new(TranslatePinDataInput), `{"EncryptedPinBlock":"230B4C43B8BA2C5C","IncomingKeyIdentifier":"arn:aws:payment-cryptography:us-east-1:000000000000:key/abcdefghijklmnop","IncomingTranslationAttributes":{"IsoFormat0":{"PrimaryAccountNumber":"5555555551234567"}},"OutgoingKeyIdentifier":"alias/b","OutgoingTranslationAttributes":{"IsoFormat3":{"PrimaryAccountNumber":"5555555551234567"}}}`},
		{new(VerifyCardValidationDataInput), ` {"KeyIdentifier": "alias/cvk", "PrimaryAccountNumber": "4123456789012345", "ValidationData": "561",
			"VerificationAttributes": {"CardVerificationValue1": {"CardExpiryDate": "8701", "ServiceCode": "101"}}} `},
		{new(VerifyMacInput), `{"KeyIdentifier":"alias/m","Mac":"0011223344556677","MacLength":8,"MessageData":"00","VerificationAttributes":{"Algorithm":"ISO9797_ALGORITHM3"},"Unknown":[1,{"a":null},true,-1.5e3,"\u00e9"]}`},
		{new(GenerateMacInput), `{"GenerationAttributes":{"EmvMac":{"MajorKeyDerivationMode":"EMV_OPTION_A","PanSequenceNumber":"00","PrimaryAccountNumber":"4111111111111111","SessionKeyDerivationMode":"EMV_COMMON_SESSION_KEY","SessionKeyDerivationValue":{"ApplicationCryptogram":"0000000000000000"}}},"KeyIdentifier":"k","MessageData":"00"}`},
		{new(EncryptDataInput), `{"PlainText":"00112233","EncryptionAttributes":{"Symmetric":{"Mode":"CBC","InitializationVector":"0000000000000000"}}}`},
		{new(TranslatePinDataInput), `null`},
	} {
		if !fastDecode([]byte(tc.body), tc.in.decodeFast) {
			t.Errorf("%T: %s took the reflective path", tc.in, tc.body)
		}
		shapetest.CheckDecode(t, reflect.TypeOf(tc.in).Elem(), []byte(tc.body))
	}
	// Nesting at encoding/json's limit (10000) in an unknown member, and past it.
	for _, depth := range []int{10000 - 1, 10000} {
		body := `{"x":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`
		shapetest.CheckDecode(t, reflect.TypeFor[TranslatePinDataInput](), []byte(body))
	}
	// And these do not: they must not be decoded differently.
	for _, body := range []string{`{"EncryptedPinBlock":"\u0041"}`, `{"EncryptedPinBlock":"é"}`, `{"EncryptedPinBlock":1}`,
		`{"EncryptedPinBlock":"A","EncryptedPinBlock":"B"}`, `{"EncryptedPinBlock":"A"} x`, `{"Encrypted\u0050inBlock":"A"}`, `{"x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`} {
		if fastDecode([]byte(body), new(TranslatePinDataInput).decodeFast) {
			t.Errorf("%s took the fast path", body)
		}
		shapetest.CheckDecode(t, reflect.TypeFor[TranslatePinDataInput](), []byte(body))
	}
}

// FuzzDecodeJSON compares DecodeJSON with json.Unmarshal on arbitrary
// bytes for the hot inputs.
func FuzzDecodeJSON(f *testing.F) {
	r := rand.New(rand.NewPCG(20, 3))
	types := []reflect.Type{reflect.TypeFor[TranslatePinDataInput](), reflect.TypeFor[VerifyCardValidationDataInput](),
		reflect.TypeFor[VerifyMacInput](), reflect.TypeFor[EncryptDataInput](), reflect.TypeFor[VerifyAuthRequestCryptogramInput]()}
	for i := range 40 {
		f.Add(shapetest.Doc(r, types[i%len(types)], 0.02))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, typ := range types {
			shapetest.CheckDecode(t, typ, data)
		}
	})
}

// BenchmarkDecodeJSON compares the fast path with the reflective one on a
// TranslatePinData request.
func BenchmarkDecodeJSON(b *testing.B) {
	body := []byte(`{"EncryptedPinBlock":"230B4C43B8BA2C5C","IncomingKeyIdentifier":"arn:aws:payment-cryptography:us-east-1:000000000000:key/abcdefghijklmnop","IncomingTranslationAttributes":{"IsoFormat0":{"PrimaryAccountNumber":"5555555551234567"}},"OutgoingKeyIdentifier":"arn:aws:payment-cryptography:us-east-1:000000000000:key/bbcdefghijklmnop","OutgoingTranslationAttributes":{"IsoFormat0":{"PrimaryAccountNumber":"5555555551234567"}}}`)
	b.Run("DecodeJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var in TranslatePinDataInput
			if err := in.DecodeJSON(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var in TranslatePinDataInput
			if err := json.Unmarshal(body, &in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestClassPatterns: every pattern matched without the regexp package
// matches exactly what regexp matches, on strings of the pattern's class
// at lengths around its rules, with and without characters outside it.
func TestClassPatterns(t *testing.T) {
	t.Parallel()
	if len(classPatterns) == 0 {
		t.Fatal("no class patterns")
	}
	r := rand.New(rand.NewPCG(20, 5))
	outside := []string{"g", "G", " ", "-", "\x00", "\x7f", "é", "\xff", "\u2028", "Z", "z", "0", "9", "a", "A", "f", "F"}
	for _, p := range classPatterns {
		re := regexp.MustCompile(p.re)
		var in []byte
		for c := range 128 {
			if p.set[c>>6]&(1<<(c&63)) != 0 {
				in = append(in, byte(c))
			}
		}
		for i := range 4000 {
			n := r.IntN(70)
			if i%4 == 0 {
				n = []int{0, 1, 2, 15, 16, 17, 19, 20, 21, 23, 24, 25, 31, 32, 33, 47, 48, 49}[r.IntN(18)]
			}
			var b strings.Builder
			for range n {
				b.WriteByte(in[r.IntN(len(in))])
			}
			s := b.String()
			if i%3 == 0 && n > 0 {
				k := r.IntN(n)
				s = s[:k] + outside[r.IntN(len(outside))] + s[k+1:]
			}
			if got, want := p.MatchString(s), re.MatchString(s); got != want {
				t.Fatalf("%s: MatchString(%q) = %v, regexp says %v", p.re, s, got, want)
			}
		}
	}
}

// TestSeqPatterns: every pattern of literals and class runs matched without
// the regexp package (the key ARN patterns) matches exactly what regexp matches.
func TestSeqPatterns(t *testing.T) {
	t.Parallel()
	shapetest.CheckPatterns(t, seqPatternsForTest())
}

// FuzzSeqPatterns compares every sequence pattern with regexp on arbitrary
// strings.
func FuzzSeqPatterns(f *testing.F) { shapetest.FuzzPatterns(f, seqPatternsForTest()) }

func seqPatternsForTest() []shapetest.Pattern {
	var out []shapetest.Pattern
	for _, p := range seqPatterns {
		out = append(out, shapetest.Pattern{Re: p.re, Match: p.MatchString})
	}
	return out
}

// BenchmarkKeyArnPattern compares the key ARN pattern matched as a
// seqPattern with the regexp package on a million distinct ARNs (what a
// data plane drawing keys from a large store sees).
func BenchmarkKeyArnPattern(b *testing.B) {
	arns := make([]string, 1<<20)
	for i := range arns {
		arns[i] = fmt.Sprintf("arn:aws:payment-cryptography:us-east-1:111122223333:key/%016x", i*7919)
	}
	re := regexp.MustCompile(reKeyArnOrKeyAliasType.re)
	for _, m := range []struct {
		name  string
		match func(string) bool
	}{{"seqPattern", reKeyArnOrKeyAliasType.MatchString}, {"regexp", re.MatchString}} {
		b.Run(m.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				if !m.match(arns[i&(len(arns)-1)]) {
					b.Fatal("no match")
				}
				i++
			}
		})
	}
}
