package keystore

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"payhsm/keyspec"
)

// sameAsJSON decodes b with decodeKeyRecord and with strictUnmarshal (the
// reference: encoding/json, unknown fields and trailing data refused) and
// fails unless they agree on accept or refuse and on the decoded record. It
// reports whether the fast path decided.
func sameAsJSON(t *testing.T, id string, b []byte) (fast bool) {
	t.Helper()
	var want keyRecord
	wantErr := strictUnmarshal(b, &want)
	var got keyRecord
	fast = fastKeyRecord(id, b, &got)
	if fast {
		if wantErr != nil {
			t.Fatalf("fast decoder accepted %q, which encoding/json refuses: %v", b, wantErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("fast decoder and encoding/json differ on %q:\n got %#v\nwant %#v", b, got, want)
		}
	}
	var full keyRecord
	err := decodeKeyRecord(id, b, &full)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("decodeKeyRecord(%q) error %v, encoding/json error %v", b, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(full, want) {
		t.Fatalf("decodeKeyRecord and encoding/json differ on %q:\n got %#v\nwant %#v", b, full, want)
	}
	return fast
}

// keyRecordCases are payloads for the decoder tests and the fuzz seeds;
// fast says whether the fast path must decide the case itself (true) or
// leave it to encoding/json (false). Every case must agree with
// encoding/json either way.
func keyRecordCases() []struct {
	name string
	in   string
	fast bool
} {
	id := testID(1)
	full, _ := encodeKey(testKey(id))
	policy := testKey(id)
	policy.ResourcePolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"payment-cryptography:*","Resource":"*","Condition":{"StringLike":{"x":"<a&b>\u2028\t\n"}}}]}`
	withPolicy, _ := encodeKey(policy)
	bare := &Key{ID: id, Profile: "p\u00e9", Attributes: keyspec.Attributes{Usage: "X"}, State: "S", Origin: "O",
		Created: time.Unix(1, 0), KeyBlock: "B", PublicKey: []byte{}, Certificate: []byte{0}}
	bare.bare = true
	bareRec, _ := encodeKey(bare)
	return []struct {
		name string
		in   string
		fast bool
	}{
		{"encodeKey, every field", string(full), true},
		{"encodeKey, resource policy with escapes", string(withPolicy), true},
		{"encodeKey, sparse", string(bareRec), true},
		{"minimal", `{"v":2,"id":"` + id + `"}`, true},
		{"empty object", `{}`, true},
		{"whitespace everywhere", " \t\r\n{ \"v\" : 2 , \"attributes\" : { \"modes\" : { \"sign\" : true } } } \n", true},
		{"v1 with revision", `{"v":1,"id":"` + id + `","revision":18446744073709551615}`, true},
		{"revision 0", `{"revision":0}`, true},
		{"every simple escape", `{"kcv":"\"\\\/\b\f\n\r\t\u0041\u00e9\u20ac\uFFFF\u0000"}`, true},
		{"UTF-8 text", `{"profile":"pr\u00f3fil ` + "pr\u00f3fil \U0001F511" + `"}`, true},
		{"base64 with newline", `{"publicKey":"AAEC\nAw=="}`, true},
		{"empty base64", `{"publicKey":""}`, true},
		{"base64 with non-zero padding bits", `{"publicKey":"AB=="}`, true},
		{"false modes", `{"attributes":{"modes":{"encrypt":false,"noRestrictions":true}}}`, true},
		{"empty nested objects", `{"attributes":{"modes":{}}}`, true},
		{"no tags or aliases", `{"v":2,"noTagsOrAliases":true}`, true},
		{"created by", `{"v":2,"createdBy":"AKPHTEST 127.0.0.1:5555 req-1"}`, true},

		{"empty input", ``, false},
		{"only whitespace", "  \n", false},
		{"null", `null`, false},
		{"array", `[]`, false},
		{"unclosed", `{"v":2`, false},
		{"trailing comma", `{"v":2,}`, false},
		{"trailing garbage", `{"v":2}x`, false},
		{"second value", `{"v":2}{"v":2}`, false},
		{"second null", `{"v":2} null`, false},
		{"unknown field", `{"v":2,"x":1}`, false},
		{"unknown nested field", `{"attributes":{"modes":{"fly":true}}}`, false},
		{"field in another case", `{"V":2,"ID":"` + id + `"}`, false},
		{"field with a Kelvin sign", `{"` + "\u212acv" + `":"x"}`, false},
		{"field name escaped", `{"\u0076":2}`, false},
		{"duplicate field", `{"v":1,"v":2}`, false},
		{"duplicate nested object merges", `{"attributes":{"usage":"a"},"attributes":{"class":"b"}}`, false},
		{"duplicate mode", `{"attributes":{"modes":{"sign":true,"sign":false}}}`, false},
		{"null string", `{"kcv":null}`, false},
		{"null object", `{"attributes":null}`, false},
		{"null revision", `{"revision":null}`, false},
		{"null bytes", `{"publicKey":null}`, false},
		{"null flag", `{"noTagsOrAliases":null}`, false},
		{"duplicate flag", `{"noTagsOrAliases":true,"noTagsOrAliases":false}`, false},
		{"number as string", `{"v":"2"}`, false},
		{"negative", `{"v":-2}`, false},
		{"fraction", `{"v":2.0}`, false},
		{"exponent", `{"v":2e0}`, false},
		{"leading zero", `{"v":02}`, false},
		{"v too big for int", `{"v":99999999999999999999}`, false},
		{"revision overflows", `{"revision":18446744073709551616}`, false},
		{"revision negative", `{"revision":-1}`, false},
		{"bool as string", `{"enabled":"true"}`, false},
		{"truthy number", `{"enabled":1}`, false},
		{"truncated literal", `{"enabled":tru}`, false},
		{"literal run-on", `{"enabled":truex}`, false},
		{"string as number", `{"kcv":12}`, false},
		{"bytes as array", `{"publicKey":[1,2,3]}`, false},
		{"bad base64", `{"publicKey":"!!"}`, false},
		{"lone high surrogate", `{"kcv":"\ud800"}`, false},
		{"surrogate pair", `{"kcv":"\ud83d\udd11"}`, false},
		{"invalid UTF-8", "{\"kcv\":\"\xff\"}", false},
		{"invalid UTF-8 in name", "{\"\xff\":1}", false},
		{"control character", "{\"kcv\":\"a\x01\"}", false},
		{"bad escape", `{"kcv":"\x"}`, false},
		{"short unicode escape", `{"kcv":"\u12"}`, false},
		{"unterminated string", `{"kcv":"abc`, false},
		{"missing colon", `{"v" 2}`, false},
		{"byte order mark", "\uFEFF{}", false},
	}
}

// TestKeyRecordDecoder: the reflection-free decoder agrees with
// encoding/json (accept or refuse, and the decoded record) on every case,
// decides every record encodeKey writes itself, and leaves to encoding/json
// exactly the cases listed as its.
func TestKeyRecordDecoder(t *testing.T) {
	for _, c := range keyRecordCases() {
		t.Run(c.name, func(t *testing.T) {
			if fast := sameAsJSON(t, testID(1), []byte(c.in)); fast != c.fast {
				t.Errorf("fast path decided %v, want %v", fast, c.fast)
			}
		})
	}
}

// TestKeyRecordDecoderKnownText: enumerated values and the id cost no
// allocation and read back as written; an unknown value reads as written too.
func TestKeyRecordDecoderKnownText(t *testing.T) {
	id := testID(3)
	k := testKey(id)
	k.Attributes = keyspec.Attributes{Usage: keyspec.M3, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key}
	k.DeriveKeyUsage, k.KCVAlgorithm, k.PublicKey, k.Certificate, k.CreatedBy = "", keyspec.KCVANSIX924, nil, nil, ""
	k.UsageStart, k.UsageStop, k.DeletePending, k.Deleted = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	b, err := encodeKey(k)
	if err != nil {
		t.Fatal(err)
	}
	var r keyRecord
	// The record's strings that must still allocate: kcv, created, keyBlock.
	if n := testing.AllocsPerRun(100, func() {
		if !fastKeyRecord(id, b, &r) {
			t.Fatal("fast path refused an encodeKey record")
		}
	}); n > 3 {
		t.Errorf("fast decoding allocates %v times, want at most 3", n)
	}
	other := strings.Replace(string(b), string(keyspec.TDES2Key), "TDES_9KEY", 1)
	if !fastKeyRecord(id, []byte(other), &r) || r.Attributes.Algorithm != "TDES_9KEY" {
		t.Errorf("unknown algorithm decoded as %q", r.Attributes.Algorithm)
	}
}

// FuzzKeyRecordDecoders: on any input the reflection-free decoder and
// encoding/json agree on accept or refuse and on the decoded record.
func FuzzKeyRecordDecoders(f *testing.F) {
	for _, c := range keyRecordCases() {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sameAsJSON(t, testID(1), b)
	})
}

// BenchmarkDecodeKey: decoding one key record's payload into a keyRecord (the symmetric key of the
// cold-key benchmark's shape), reflection-free against encoding/json.
func BenchmarkDecodeKey(b *testing.B) {
	id := testID(3)
	k := testKey(id)
	k.Attributes = keyspec.Attributes{Usage: keyspec.M3, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
		Modes: keyspec.ModesOfUse{Generate: true, Verify: true}}
	k.DeriveKeyUsage, k.KCVAlgorithm, k.PublicKey, k.Certificate = "", keyspec.KCVANSIX924, nil, nil
	k.UsageStart, k.UsageStop, k.DeletePending, k.Deleted = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	rec, err := encodeKey(k)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r keyRecord
			if !fastKeyRecord(id, rec, &r) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("decodeKey", func(b *testing.B) { // fast, plus times and the Key
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeKey(id, rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r keyRecord
			if err := strictUnmarshal(rec, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
