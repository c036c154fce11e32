package keystore

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"payhsm/internal/jsontext"
	"payhsm/keyspec"
)

// randKeyRecord is a key record with random fields; with plain, every
// string is printable ASCII that encoding/json does not escape, otherwise
// one string, drawn at random, also holds characters it escapes.
func randKeyRecord(r *rand.Rand, plain bool) keyRecord {
	plainRunes := []rune("abcXYZ019-_:/.+= TR31")
	specials := []rune("\"\\<>&\n\t\x00\x7f\u00e9\u2028")
	special := -1 // the string field that draws from specials too
	if !plain {
		special = r.IntN(17)
	}
	field := 0
	str := func() string {
		field++
		if r.IntN(3) == 0 {
			return ""
		}
		n := 1 + r.IntN(40)
		out := make([]rune, n)
		for i := range out {
			out[i] = plainRunes[r.IntN(len(plainRunes))]
		}
		if field-1 == special {
			out[r.IntN(n)] = specials[r.IntN(len(specials))]
		}
		return string(out)
	}
	bs := func() []byte {
		switch r.IntN(3) {
		case 0:
			return nil
		case 1:
			return []byte{}
		}
		b := make([]byte, r.IntN(300))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return b
	}
	flag := func() bool { return r.IntN(2) == 0 }
	return keyRecord{
		V: r.IntN(3), ID: str(), Profile: str(),
		Attributes: attrRecord{Usage: str(), Class: str(), Algorithm: str(),
			Modes: modesRecord{flag(), flag(), flag(), flag(), flag(), flag(), flag(), flag(), flag()}},
		DeriveKeyUsage: str(), KCV: str(), KCVAlgorithm: str(), Exportable: flag(), Enabled: flag(),
		State: str(), Origin: str(), Created: str(), UsageStart: str(), UsageStop: str(),
		DeletePending: str(), Deleted: str(), KeyBlock: str(), PublicKey: bs(), Certificate: bs(),
		ResourcePolicy: str(), NoTagsOrAliases: flag(),
	}
}

// TestAppendKeyRecordMatchesJSON: appendKeyRecord writes what json.Marshal
// writes, byte for byte, whenever it accepts a record; it accepts every
// record whose strings need no escaping and refuses, appending nothing, the
// others (and format 1 records, which carry a revision).
func TestAppendKeyRecordMatchesJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(20, 2))
	accepted := 0
	for i := range 20000 {
		plain := i%2 == 0
		rec := randKeyRecord(r, plain)
		if i%97 == 0 {
			rev := uint64(i)
			rec.Revision = &rev
		}
		want, err := json.Marshal(&rec)
		if err != nil {
			t.Fatal(err)
		}
		prefix := []byte("prefix")
		got, ok := appendKeyRecord(prefix, &rec)
		if plain && rec.Revision == nil && !ok {
			t.Fatalf("record %d: a plain record refused: %s", i, want)
		}
		if !ok {
			if string(got) != "prefix" {
				t.Fatalf("record %d: refused but appended %q", i, got)
			}
			continue
		}
		accepted++
		if !bytes.Equal(got[len(prefix):], want) || string(got[:len(prefix)]) != "prefix" {
			t.Fatalf("record %d:\n got %s\nwant %s", i, got[len(prefix):], want)
		}
	}
	if accepted < 9000 {
		t.Fatalf("only %d records took the fast path", accepted)
	}
}

// TestEncodeKeyRoundTrip: a key as the daemon creates it takes the fast
// path and decodes back to itself.
func TestEncodeKeyRoundTrip(t *testing.T) {
	k := testKey(testID(7))
	k.KCVAlgorithm = keyspec.KCVCMAC
	k.Created = time.Date(2026, 12, 5, 17, 4, 5, 123456789, time.UTC)
	k.PublicKey = []byte{1, 2, 3, 250}
	k.bare = true
	r := keyRecordOf(k)
	if _, ok := appendKeyRecord(nil, &r); !ok {
		t.Fatal("a created key's record did not take the fast path")
	}
	b, err := encodeKey(k)
	if err != nil {
		t.Fatal(err)
	}
	want, err := json.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("encodeKey:\n got %s\nwant %s", b, want)
	}
	got, err := decodeKey(k.ID, b)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != k.ID || got.KCV != k.KCV || !got.Created.Equal(k.Created) || !bytes.Equal(got.PublicKey, k.PublicKey) ||
		got.KeyBlock != k.KeyBlock || got.Attributes != k.Attributes || !got.bare {
		t.Fatalf("decoded %+v, want %+v", got, k)
	}
}

// FuzzAppendKeyRecord: for any strings, appendKeyRecord either refuses or
// writes exactly what json.Marshal writes.
func FuzzAppendKeyRecord(f *testing.F) {
	f.Add("abc", "TR31_K0", "<policy>", []byte{1, 2}, true)
	f.Add("", "", "", []byte(nil), false)
	f.Add("k\u2028", "\"", "&", []byte{}, true)
	f.Fuzz(func(t *testing.T, id, block, policy string, pub []byte, bare bool) {
		rec := keyRecord{V: keyRecordVersion, ID: id, KeyBlock: block, ResourcePolicy: policy, PublicKey: pub,
			NoTagsOrAliases: bare, State: "Enabled", Attributes: attrRecord{Modes: modesRecord{Wrap: bare}}}
		want, err := json.Marshal(&rec)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := appendKeyRecord(nil, &rec)
		if ok && !bytes.Equal(got, want) {
			t.Fatalf("got %s\nwant %s", got, want)
		}
		if !ok && jsontext.Plain(id) && jsontext.Plain(block) && jsontext.Plain(policy) {
			t.Fatalf("plain strings refused: %q %q %q", id, block, policy)
		}
	})
}

// TestAppendKeyRecordEveryField: a record with every field set (found by
// reflection, so that a field added to keyRecord later is set too) is
// written as json.Marshal writes it: a field appendKeyRecord does not know
// would otherwise be dropped from every stored record without a word.
func TestAppendKeyRecordEveryField(t *testing.T) {
	var rec keyRecord
	var fill func(v reflect.Value)
	fill = func(v reflect.Value) {
		for i := range v.NumField() {
			f := v.Field(i)
			switch {
			case v.Type().Field(i).Name == "Revision" && v.Type() == reflect.TypeFor[keyRecord]():
				// format 1 only: appendKeyRecord refuses such records
			case f.Kind() == reflect.Struct:
				fill(f)
			case f.Kind() == reflect.String:
				f.SetString("s" + v.Type().Field(i).Name)
			case f.Kind() == reflect.Bool:
				f.SetBool(true)
			case f.CanInt():
				f.SetInt(int64(i + 1))
			case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Uint8:
				f.SetBytes([]byte{byte(i), 0xff, 0x10})
			default:
				t.Fatalf("keyRecord field %s of kind %s: teach this test and appendKeyRecord", v.Type().Field(i).Name, f.Kind())
			}
		}
	}
	fill(reflect.ValueOf(&rec).Elem())
	want, err := json.Marshal(&rec)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := appendKeyRecord(nil, &rec)
	if !ok || !bytes.Equal(got, want) {
		t.Fatalf("appendKeyRecord = %s (%v), want %s", got, ok, want)
	}
}
