package cpshape

import (
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

// hotTypes have members of every kind the fast path decodes (booleans,
// integers, timestamps, lists, maps).
var hotTypes = map[reflect.Type]bool{
	reflect.TypeFor[CreateKeyInput](): true, reflect.TypeFor[ListKeysInput](): true, reflect.TypeFor[GetKeyOutput](): true,
	reflect.TypeFor[TagResourceInput](): true, reflect.TypeFor[ImportKeyInput](): true, reflect.TypeFor[KeyBlockHeaders](): true,
}

// TestDecodeJSONMatchesUnmarshal: on random documents for every structure,
// valid and not, DecodeJSON gives what json.Unmarshal gives through the
// reflective UnmarshalJSON (values and errors).
func TestDecodeJSONMatchesUnmarshal(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(21, 1))
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
	r := rand.New(rand.NewPCG(21, 2))
	for _, typ := range allStructs() {
		for range 200 {
			shapetest.CheckEncode(t, shapetest.Value(r, typ))
		}
		shapetest.CheckEncode(t, reflect.New(typ).Interface())                     // empty
		shapetest.CheckEncode(t, reflect.Zero(reflect.PointerTo(typ)).Interface()) // nil
	}
}

// TestFastPathTaken: the requests SDKs send for common operations decode
// without falling back to reflection.
func TestFastPathTaken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   interface{ decodeFast(*fastDecoder) bool }
		body string
	}{
		{new(CreateKeyInput), `{"Exportable":true,"KeyAttributes":{"KeyAlgorithm":"TDES_2KEY","KeyClass":"SYMMETRIC_KEY","KeyModesOfUse":{"Decrypt":true,"Encrypt":true,"Unwrap":true,"Wrap":true},"KeyUsage":"TR31_P0_PIN_ENCRYPTION_KEY"},"Tags":[{"Key":"a","Value":"b"},null]}`},
		{new(ListKeysInput), `{"MaxResults":10,"NextToken":null}`},
		{new(GetKeyInput), `{"KeyIdentifier":"alias/k"}`},
	} {
		if !fastDecode([]byte(tc.body), tc.in.decodeFast) {
			t.Errorf("%T: %s took the reflective path", tc.in, tc.body)
		}
		shapetest.CheckDecode(t, reflect.TypeOf(tc.in).Elem(), []byte(tc.body))
	}
	for _, depth := range []int{10000 - 1, 10000} {
		body := `{"x":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`
		shapetest.CheckDecode(t, reflect.TypeFor[GetKeyInput](), []byte(body))
	}
}

// FuzzDecodeJSON compares DecodeJSON with json.Unmarshal on arbitrary
// bytes for common inputs.
func FuzzDecodeJSON(f *testing.F) {
	r := rand.New(rand.NewPCG(21, 3))
	types := []reflect.Type{reflect.TypeFor[CreateKeyInput](), reflect.TypeFor[ImportKeyInput](), reflect.TypeFor[ListKeysInput](),
		reflect.TypeFor[TagResourceInput](), reflect.TypeFor[GetKeyOutput]()}
	for i := range 40 {
		f.Add(shapetest.Doc(r, types[i%len(types)], 0.02))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, typ := range types {
			shapetest.CheckDecode(t, typ, data)
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
// the regexp package (key ARNs, aliases, regions) matches exactly what regexp matches.
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
