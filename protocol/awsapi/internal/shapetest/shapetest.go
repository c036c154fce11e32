// Package shapetest owns the differential checks of the generated shape
// packages (cpshape, dpshape): it writes random JSON documents and random
// values for any generated structure, by reflection over its fields and
// JSON tags, and checks that the generated fast paths (DecodeJSON,
// AppendJSON) give exactly what encoding/json gives through the reflective
// UnmarshalJSON and json.Marshal. Only tests import it.
package shapetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Decoder is a generated structure as the fast decode path sees it.
type Decoder interface {
	DecodeJSON(data []byte) error
}

// Appender is a generated structure as the fast encode path sees it.
type Appender interface {
	AppendJSON(b []byte) ([]byte, error)
}

// CheckDecode decodes data into two new values of typ's structure, one
// with json.Unmarshal (the reflective path) and one with DecodeJSON, and
// fails unless the results and the errors are identical.
func CheckDecode(t testing.TB, typ reflect.Type, data []byte) {
	t.Helper()
	want := reflect.New(typ)
	got := reflect.New(typ)
	werr := json.Unmarshal(data, want.Interface())
	gerr := got.Interface().(Decoder).DecodeJSON(data)
	if !sameError(werr, gerr) {
		t.Fatalf("%s: DecodeJSON(%q) error %v (%T), json.Unmarshal %v (%T)", typ.Name(), data, gerr, gerr, werr, werr)
	}
	if werr == nil && !reflect.DeepEqual(want.Interface(), got.Interface()) {
		wj, _ := json.Marshal(want.Interface())
		gj, _ := json.Marshal(got.Interface())
		t.Fatalf("%s: DecodeJSON(%q) = %s, json.Unmarshal = %s", typ.Name(), data, gj, wj)
	}
}

func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	if reflect.TypeOf(a) != reflect.TypeOf(b) || a.Error() != b.Error() {
		return false
	}
	var sa, sb *json.SyntaxError
	if errors.As(a, &sa) && errors.As(b, &sb) {
		return sa.Offset == sb.Offset
	}
	return reflect.DeepEqual(a, b)
}

// CheckEncode fails unless AppendJSON of v (a pointer to a generated
// structure) equals json.Marshal(v), errors included.
func CheckEncode(t testing.TB, v any) {
	t.Helper()
	want, werr := json.Marshal(v)
	got, gerr := v.(Appender).AppendJSON([]byte("prefix"))
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%T: AppendJSON error %v, json.Marshal %v", v, gerr, werr)
	}
	if werr == nil && !bytes.Equal(got, append([]byte("prefix"), want...)) {
		t.Fatalf("%T: AppendJSON = %s, json.Marshal = %s", v, got[len("prefix"):], want)
	}
}

// strs are string values that exercise the decoders and encoders: plain
// ASCII, escapes, HTML characters, non-ASCII, invalid UTF-8, surrogates.
var strs = []string{
	"", "alias/test-key", "k", "AB", "0000000000000000", "ECB", "arn:aws:payment-cryptography:us-east-1:111122223333:key/abc", "0123456789ABCDEF",
	"4111111111111111", "ISO_FORMAT_0", "TDES_2KEY", "CBC", "TR31_P0_PIN_ENCRYPTION_KEY", "A5A5", "12", "x y",
	"<&>", "a&b", "x>y", "quote\"back\\slash", "tab\tnew\nline", "\x00\x1f\x7f", "é", "日本", "\u2028\u2029", "\xff\xfe",
	"\xed\xa0\x80", "😀", "/slash/", "\\u0041",
}

// rawStrings are JSON string literals for the decoders: escapes the
// encoder never writes, invalid escapes, surrogate pairs and halves.
var rawStrings = []string{
	`"\u0041BC"`, `"\/"`, `"\ud83d\ude00"`, `"\ud83d"`, `"\ude00x"`, `"\ud83d\u0041"`, `"\b\f\r"`, `"\x"`, `"\u12"`,
	`"` + "\x01" + `"`, `"a` + "\xff" + `b"`, `"unterminated`, `"\'"`,
}

var numbers = []string{
	"0", "1", "-1", "-0", "42", "2147483647", "2147483648", "-2147483648", "-2147483649", "9223372036854775807",
	"9223372036854775808", "-9223372036854775808", "123456789012345678", "1234567890123456789", "1.5", "1e3",
	"1E+2", "1.0", "01", "-", "1.", ".5", "1e", "1686938393.123", "1.686938393123E9", "-62135596800",
	"253402300800", "1e400", "00", "+1",
}

// Doc writes a random JSON document for a value of type typ (a generated
// structure, or any type its fields use). bad is the chance, per value, of
// writing something of the wrong kind, malformed, or otherwise unusual; with
// bad 0 the document is valid JSON of plain values, mostly of the right
// kinds (what the fast path decodes), with some repeated members.
func Doc(r *rand.Rand, typ reflect.Type, bad float64) []byte {
	var b bytes.Buffer
	w := docWriter{r: r, bad: bad, b: &b}
	w.space()
	w.value(typ, 0)
	w.space()
	if r.Float64() < bad/4 {
		b.WriteString([]string{"x", "{}", ",", "]", "\x00"}[r.IntN(5)])
	}
	return b.Bytes()
}

type docWriter struct {
	r   *rand.Rand
	bad float64
	b   *bytes.Buffer
}

func (w *docWriter) chance(p float64) bool { return w.r.Float64() < p }

func (w *docWriter) space() {
	if w.chance(0.2) {
		w.b.WriteString([]string{" ", "\n", "\t", "\r\n  "}[w.r.IntN(4)])
	}
	if w.chance(w.bad / 20) { // not JSON white space
		w.b.WriteString([]string{"\v", "\u00a0", "\f"}[w.r.IntN(3)])
	}
}

// junk writes an arbitrary value, usually valid JSON.
func (w *docWriter) junk(depth int) {
	switch n := w.r.IntN(9); {
	case n == 0 && depth < 6:
		w.b.WriteByte('[')
		for i := range w.r.IntN(3) {
			if i > 0 {
				w.b.WriteByte(',')
			}
			w.junk(depth + 1)
		}
		w.b.WriteByte(']')
	case n == 1 && depth < 6:
		w.b.WriteByte('{')
		for i := range w.r.IntN(3) {
			if i > 0 {
				w.b.WriteByte(',')
			}
			w.str(strs[w.r.IntN(len(strs))])
			w.b.WriteByte(':')
			w.junk(depth + 1)
		}
		w.b.WriteByte('}')
	case n == 2:
		w.b.WriteString(numbers[w.r.IntN(len(numbers))])
	case n == 3:
		w.b.WriteString([]string{"true", "false", "null", "nul", "tru", "True"}[w.r.IntN(6)])
	case n == 4:
		w.b.WriteString(rawStrings[w.r.IntN(len(rawStrings))])
	case n == 5:
		w.b.WriteString([]string{"{", "[", "}", "]", "", ",", ":", `{"a":}`, `[1,]`, `{"a" 1}`, `{,}`}[w.r.IntN(11)])
	default:
		w.str(strs[w.r.IntN(len(strs))])
	}
}

func (w *docWriter) str(s string) {
	q, _ := json.Marshal(s)
	if w.chance(0.1) { // without HTML escaping, as most clients send it
		q = bytes.ReplaceAll(bytes.ReplaceAll(bytes.ReplaceAll(q, []byte(`\u003c`), []byte("<")), []byte(`\u003e`), []byte(">")), []byte(`\u0026`), []byte("&"))
	}
	w.b.Write(q)
}

var tsType = reflect.TypeFor[json.Marshaler]()

func (w *docWriter) value(t reflect.Type, depth int) {
	if w.chance(w.bad) || (depth > 8 && w.bad > 0) {
		w.junk(depth)
		return
	}
	if w.chance(0.05) {
		w.b.WriteString("null")
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		w.value(t.Elem(), depth)
	case reflect.String:
		switch {
		case w.bad == 0: // what the fast path takes
			w.str(strs[w.r.IntN(12)])
		case w.chance(0.1):
			w.b.WriteString(rawStrings[w.r.IntN(len(rawStrings))])
		case w.chance(0.6):
			w.str(strs[w.r.IntN(12)]) // plain ASCII
		default:
			w.str(strs[w.r.IntN(len(strs))])
		}
	case reflect.Bool:
		w.b.WriteString(strconv.FormatBool(w.chance(0.5)))
	case reflect.Int32, reflect.Int64, reflect.Float32, reflect.Float64:
		if w.bad == 0 || w.chance(0.7) {
			w.b.WriteString(strconv.Itoa(w.r.IntN(200) - 20))
			return
		}
		w.b.WriteString(numbers[w.r.IntN(len(numbers))])
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 { // blob: base64
			w.str([]string{"", "AAEC", "not base64!", "AA=="}[w.r.IntN(4)])
			return
		}
		w.b.WriteByte('[')
		for i := range w.r.IntN(4) {
			if i > 0 {
				w.b.WriteByte(',')
			}
			w.space()
			w.value(t.Elem(), depth+1)
		}
		w.b.WriteByte(']')
	case reflect.Map:
		w.b.WriteByte('{')
		for i := range w.r.IntN(4) {
			if i > 0 {
				w.b.WriteByte(',')
			}
			w.str([]string{"k", "k", "key-2", "é", "<a>"}[w.r.IntN(5)])
			w.b.WriteByte(':')
			w.value(t.Elem(), depth+1)
		}
		w.b.WriteByte('}')
	case reflect.Struct:
		if reflect.PointerTo(t).Implements(tsType) && t.NumField() == 1 { // Timestamp
			w.b.WriteString(numbers[w.r.IntN(len(numbers))])
			return
		}
		w.object(t, depth)
	default:
		panic(fmt.Sprintf("shapetest: kind %s", t.Kind()))
	}
}

func (w *docWriter) object(t reflect.Type, depth int) {
	type field struct {
		name string
		typ  reflect.Type
	}
	var fields []field
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		fields = append(fields, field{name, f.Type})
	}
	w.b.WriteByte('{')
	n := 0
	member := func(name string) {
		if n > 0 {
			w.b.WriteByte(',')
		}
		n++
		w.space()
		if name != "" && w.bad > 0 && w.chance(0.03) { // an escaped or differently cased name
			name = []string{strings.ToLower(name), `\u00` + strconv.FormatInt(int64(name[0]), 16) + name[1:]}[w.r.IntN(2)]
			w.b.WriteString(`"` + name + `"`)
		} else {
			w.b.WriteString(strconv.Quote(name))
		}
		w.space()
		w.b.WriteByte(':')
		w.space()
	}
	for _, f := range fields {
		if !w.chance(0.7) {
			continue
		}
		member(f.name)
		w.value(f.typ, depth+1)
		if w.chance(0.04) { // the same member twice
			member(f.name)
			w.value(f.typ, depth+1)
		}
		if w.chance(0.05) { // an unknown member
			member([]string{"Unknown", "x", "", "KeyIdentifier"}[w.r.IntN(4)])
			if w.bad == 0 {
				w.b.WriteString([]string{`[1,{"a":null},true,-1.5e3,"\u00e9"]`, `{}`, `"x"`, `null`, `[]`}[w.r.IntN(5)])
			} else {
				w.junk(depth + 1)
			}
		}
	}
	w.space()
	w.b.WriteByte('}')
}

// Value fills a new value of typ (a generated structure) at random and
// returns a pointer to it.
func Value(r *rand.Rand, typ reflect.Type) any {
	v := reflect.New(typ)
	fill(r, v.Elem(), 0)
	return v.Interface()
}

func fill(r *rand.Rand, v reflect.Value, depth int) {
	switch v.Kind() {
	case reflect.Pointer:
		if r.IntN(3) == 0 || depth > 6 {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(r, v.Elem(), depth+1)
	case reflect.String:
		v.SetString(strs[r.IntN(len(strs))])
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Int32, reflect.Int64:
		v.SetInt(r.Int64N(1<<40) - 1<<39)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(r.NormFloat64() * 1e6)
	case reflect.Slice:
		if r.IntN(3) == 0 || depth > 6 {
			return
		}
		n := r.IntN(3)
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		for i := range n {
			fill(r, v.Index(i), depth+1)
		}
	case reflect.Map:
		if r.IntN(3) == 0 || depth > 6 {
			return
		}
		v.Set(reflect.MakeMap(v.Type()))
		for range r.IntN(4) {
			e := reflect.New(v.Type().Elem()).Elem()
			fill(r, e, depth+1)
			v.SetMapIndex(reflect.ValueOf(strs[r.IntN(len(strs))]).Convert(v.Type().Key()), e)
		}
	case reflect.Struct:
		if reflect.PointerTo(v.Type()).Implements(tsType) && v.NumField() == 1 { // Timestamp
			v.Field(0).Set(reflect.ValueOf(randomTime(r)))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(r, v.Field(i), depth+1)
			}
		}
	}
}

func randomTime(r *rand.Rand) time.Time {
	return time.UnixMilli(r.Int64N(253402300799000+62135596800000) - 62135596800000).UTC()
}

// Structs returns the structure types reachable from the roots (values or
// pointers of generated structures), each once, in a stable order;
// Timestamp, which has its own codec, is left out.
func Structs(roots ...any) []reflect.Type {
	seen := map[reflect.Type]bool{}
	var out []reflect.Type
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] || (reflect.PointerTo(t).Implements(tsType) && t.NumField() == 1) {
			return
		}
		seen[t] = true
		out = append(out, t)
		for i := range t.NumField() {
			walk(t.Field(i).Type)
		}
	}
	for _, r := range roots {
		walk(reflect.TypeOf(r))
	}
	slices.SortFunc(out, func(a, b reflect.Type) int { return strings.Compare(a.Name(), b.Name()) })
	return out
}
