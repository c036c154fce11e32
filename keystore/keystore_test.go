package keystore

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/keystore/kv/pebblekv"
)

// openTest opens the store in dir on fs; it is closed when the test ends.
// openMem opens a store on Pebble in memory.
func openMem(t testing.TB) *Store { return openTest(t, vfs.NewMem(), "keystore") }

// pebbleOf is the Pebble database beneath s (a store Open opened).
func pebbleOf(t testing.TB, s *Store) *pebble.DB {
	t.Helper()
	d, ok := s.eng.(*pebblekv.DB)
	if !ok {
		t.Fatalf("the store is on %s, not Pebble", s.eng.Name())
	}
	return d.Pebble()
}

func openTest(t testing.TB, fs vfs.FS, dir string) *Store {
	t.Helper()
	s, err := Open(dir, opts(Options{FS: fs}))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// closeT closes c, failing the test when that fails; for defer.
func closeT(t testing.TB, c io.Closer) {
	t.Helper()
	if err := c.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

// testID returns a valid, ordered key id for n.
func testID(n int) string { return fmt.Sprintf("k%015d", n) }

// testKey returns a fully populated key; every field differs from its zero
// value so that a field dropped by the codec shows up.
func testKey(id string) *Key {
	t0 := time.Date(2026, 11, 22, 17, 30, 1, 123456789, time.FixedZone("CET", 3600))
	return &Key{
		ID:      id,
		Profile: "default",
		Attributes: keyspec.Attributes{
			Usage: keyspec.K3, Class: keyspec.AsymmetricPair, Algorithm: keyspec.ECCP256,
			Modes: keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true, Generate: true,
				Sign: true, Verify: true, DeriveKey: true, NoRestrictions: true},
		},
		DeriveKeyUsage: keyspec.K0,
		KCV:            "0A1B2C",
		KCVAlgorithm:   keyspec.KCVCMAC,
		Exportable:     true,
		Enabled:        true,
		State:          "CREATE_COMPLETE",
		Origin:         "AWS_PAYMENT_CRYPTOGRAPHY",
		Created:        t0,
		UsageStart:     t0.Add(time.Second),
		UsageStop:      t0.Add(time.Hour),
		DeletePending:  t0.Add(2 * time.Hour),
		Deleted:        t0.Add(3 * time.Hour),
		KeyBlock:       "D0144K3EX00E0000" + strings.Repeat("AB", 32) + "-" + id,
		PublicKey:      []byte{0x30, 0x59, 0x30, 0x13},
		Certificate:    []byte{0x30, 0x82, 0x01, 0x00},
		CreatedBy:      "AKPHTEST 127.0.0.1:5555 0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
	}
}

// sameKey compares keys, times by instant.
func sameKey(t *testing.T, got, want *Key) {
	t.Helper()
	g, w := *got, *want
	for _, p := range []struct{ g, w *time.Time }{{&g.Created, &w.Created}, {&g.UsageStart, &w.UsageStart},
		{&g.UsageStop, &w.UsageStop}, {&g.DeletePending, &w.DeletePending}, {&g.Deleted, &w.Deleted}} {
		if !p.g.Equal(*p.w) {
			t.Errorf("time %v, want %v", *p.g, *p.w)
		}
		*p.g, *p.w = time.Time{}, time.Time{}
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("key\n got %+v\nwant %+v", g.debug(), w.debug())
	}
}

// debug prints every field but the key block (tests only).
func (k Key) debug() string {
	k.KeyBlock = fmt.Sprintf("<%d bytes>", len(k.KeyBlock))
	type plain Key
	return fmt.Sprintf("%+v", plain(k))
}

func testKeyCreateGetUpdate(t *testing.T, env *storeEnv) {
	s := env.store(t)
	k := testKey(testID(1))
	if err := s.CreateKey(k, []Tag{{"env", "test"}}, "alias/one"); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if k.Revision != 1 {
		t.Errorf("Revision after create = %d, want 1", k.Revision)
	}

	errFn := errors.New("refused by fn")
	tests := []struct {
		name string
		run  func() error
		want error
	}{
		{"duplicate id", func() error { return s.CreateKey(testKey(testID(1)), nil, "") }, ErrExists},
		{"taken alias", func() error { return s.CreateKey(testKey(testID(2)), nil, "alias/one") }, ErrExists},
		{"short id", func() error { return s.CreateKey(testKey("abc"), nil, "") }, ErrInvalid},
		{"upper-case id", func() error { return s.CreateKey(testKey("K000000000000001"), nil, "") }, ErrInvalid},
		{"nil key", func() error { return s.CreateKey(nil, nil, "") }, ErrInvalid},
		{"empty tag key", func() error { return s.CreateKey(testKey(testID(3)), []Tag{{"", "v"}}, "") }, ErrInvalid},
		{"invalid utf-8", func() error {
			k := testKey(testID(4))
			k.Profile = "\xff"
			return s.CreateKey(k, nil, "")
		}, ErrInvalid},
		{"get missing", func() error { _, err := s.GetKey(testID(9)); return err }, ErrNotFound},
		{"get malformed id", func() error { _, err := s.GetKey("../k/x"); return err }, ErrNotFound},
		{"update missing", func() error {
			_, err := s.UpdateKey(testID(9), func(*Key) error { return nil })
			return err
		}, ErrNotFound},
		{"update fn error", func() error {
			_, err := s.UpdateKey(testID(1), func(k *Key) error { k.Enabled = false; return errFn })
			return err
		}, errFn},
		{"update changes id", func() error {
			_, err := s.UpdateKey(testID(1), func(k *Key) error { k.ID = testID(5); return nil })
			return err
		}, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}

	// Failed calls wrote nothing.
	for _, n := range []int{2, 3, 4, 5} {
		if _, err := s.GetKey(testID(n)); !errors.Is(err, ErrNotFound) {
			t.Errorf("key %d exists after a failed call: %v", n, err)
		}
	}
	got, err := s.GetKey(k.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameKey(t, got, k) // also proves the refused updates wrote nothing (Enabled, Revision 1)

	upd, err := s.UpdateKey(k.ID, func(k *Key) error {
		k.Enabled = false
		k.State = "DELETE_PENDING"
		k.Revision = 99 // the store owns Revision
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateKey: %v", err)
	}
	if upd.Revision != 2 || upd.Enabled || upd.State != "DELETE_PENDING" {
		t.Errorf("UpdateKey returned %s", upd)
	}
	got, err = s.GetKey(k.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameKey(t, got, upd)
	if a, err := s.GetAlias("alias/one"); err != nil || a.KeyID != k.ID {
		t.Errorf("GetAlias = %+v, %v", a, err)
	}
}

func TestErrorsCarryFaultKinds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		kind fault.Kind
	}{
		{ErrNotFound, fault.NotFound}, {ErrExists, fault.Conflict}, {ErrBadToken, fault.Validation},
		{ErrTooManyTags, fault.QuotaExceeded}, {ErrInvalid, fault.Validation}, {ErrClosed, fault.Unavailable},
	} {
		if got := fault.KindOf(fmt.Errorf("ctx: %w", tc.err)); got != tc.kind {
			t.Errorf("%v: kind %v, want %v", tc.err, got, tc.kind)
		}
	}
}

// TestRecordGolden pins the version-2 key record payload and the format 2
// frame. A change here is a format change: bump keyRecordVersion (and
// FormatVersion) with a migration.
func TestRecordGolden(t *testing.T) {
	t.Parallel()
	k := testKey("abcdefghij012345")
	k.KeyBlock = "D0000"
	k.Revision = 7
	k.Attributes.Modes = keyspec.ModesOfUse{Sign: true, Verify: true}
	k.Deleted = time.Time{}
	body := `"id":"abcdefghij012345","profile":"default",` +
		`"attributes":{"usage":"TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT","class":"ASYMMETRIC_KEY_PAIR","algorithm":"ECC_NIST_P256","modes":{"sign":true,"verify":true}},` +
		`"deriveKeyUsage":"TR31_K0_KEY_ENCRYPTION_KEY","kcv":"0A1B2C","kcvAlgorithm":"CMAC","exportable":true,"enabled":true,` +
		`"state":"CREATE_COMPLETE","origin":"AWS_PAYMENT_CRYPTOGRAPHY",` +
		`"created":"2026-11-22T16:30:01.123456789Z","usageStart":"2026-11-22T16:30:02.123456789Z",` +
		`"usageStop":"2026-11-22T17:30:01.123456789Z","deletePending":"2026-11-22T18:30:01.123456789Z",` +
		`"keyBlock":"D0000","publicKey":"MFkwEw==","certificate":"MIIBAA==",` +
		`"createdBy":"AKPHTEST 127.0.0.1:5555 0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"`
	want := `{"v":2,` + body + `}`
	got, err := encodeKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("encoding\n got %s\nwant %s", got, want)
	}
	again, _ := encodeKey(k)
	if !bytes.Equal(got, again) {
		t.Fatal("encoding is not deterministic")
	}
	dec, err := decodeKey(k.ID, got)
	if err != nil {
		t.Fatal(err)
	}
	dec.Revision = k.Revision // the revision is the frame's
	sameKey(t, dec, k)
	// Format 1 (read by the migration): the whole value, with the revision.
	v1, err := decodeKeyV1(k.ID, []byte(`{"v":1,`+body+`,"revision":7}`))
	if err != nil {
		t.Fatal(err)
	}
	sameKey(t, v1, k)

	if got := string(encodeAlias("abcdefghij012345")); got != "abcdefghij012345" {
		t.Errorf("alias payload %s", got)
	}
	if got := string(encodeAlias("")); got != "" {
		t.Errorf("unassociated alias payload %s", got)
	}
	for rec, want := range map[string]string{`{"v":1,"key":"abcdefghij012345"}`: "abcdefghij012345", `{"v":1}`: ""} {
		if a, err := decodeAliasV1("a", []byte(rec)); err != nil || a.KeyID != want {
			t.Errorf("format 1 alias %s: %+v %v", rec, a, err)
		}
	}

	// The frame: header, payload, HMAC-SHA256 over context, Pebble key and both.
	f := frame{typ: RecordAlias, profile: "default", mkVersion: 3, revision: 258, payload: []byte("abcdefghij012345")}
	signed := appendFrame(nil, f)
	wantSigned := "\x02A\x07default\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x01\x02abcdefghij012345"
	if string(signed) != wantSigned {
		t.Fatalf("frame %q, want %q", signed, wantSigned)
	}
	tag := recordMAC(testRecordKey("default", 3), []byte("a/alias/x"), signed)
	m := hmac.New(sha256.New, testRecordKey("default", 3))
	m.Write([]byte("payhsm keystore record v2\x00\x00\x00\x00\x09a/alias/x"))
	m.Write(signed)
	if !bytes.Equal(tag, m.Sum(nil)) {
		t.Fatal("the tag is not HMAC-SHA256(context | len | Pebble key | header | payload)")
	}
	pf, ps, pt, err := parseFrame(append(signed, tag...))
	if err != nil || !bytes.Equal(ps, signed) || !bytes.Equal(pt, tag) || pf.profile != "default" || pf.mkVersion != 3 ||
		pf.revision != 258 || string(pf.payload) != "abcdefghij012345" || pf.typ != RecordAlias {
		t.Fatalf("parseFrame: %+v %v", pf, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	good, _ := encodeKey(testKey(testID(1)))
	tests := []struct{ name, rec string }{
		{"not json", "{"},
		{"version 1", strings.Replace(string(good), `"v":2`, `"v":1`, 1)},
		{"version 3", strings.Replace(string(good), `"v":2`, `"v":3`, 1)},
		{"revision in version 2", strings.Replace(string(good), `"v":2`, `"v":2,"revision":3`, 1)},
		{"other id", strings.Replace(string(good), testID(1), testID(2), 1)},
		{"unknown field", strings.Replace(string(good), `"v":2`, `"v":2,"extra":1`, 1)},
		{"trailing data", string(good) + "{}"},
		{"null", "null"},
		{"bad time", strings.Replace(string(good), `"created":"2026`, `"created":"x2026`, 1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeKey(testID(1), []byte(tc.rec))
			if err == nil {
				t.Fatal("decoded")
			}
			if strings.Contains(err.Error(), "D0144") {
				t.Fatalf("error leaks the key block: %v", err)
			}
		})
	}
	if _, err := decodeKeyV1(testID(1), good); err == nil {
		t.Error("a version 2 payload decoded as format 1")
	}
	for _, rec := range []string{"UPPERCASEXXXXXXX", "short", `{"v":1,"key":"abcdefghij012345"}`} {
		if _, err := decodeAlias("a", []byte(rec)); err == nil {
			t.Errorf("alias payload %s decoded", rec)
		}
	}
	for _, rec := range []string{`{"v":2}`, `{"v":1,"key":"UPPER"}`, `[]`, `{"v":1,"x":1}`} {
		if _, err := decodeAliasV1("a", []byte(rec)); err == nil {
			t.Errorf("format 1 alias record %s decoded", rec)
		}
	}
	for _, v := range []string{"", "\x01K", "\x02K\x05ab", "\x02K\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01short"} {
		if _, _, _, err := parseFrame([]byte(v)); err == nil {
			t.Errorf("frame %q parsed", v)
		}
	}
}

// listAll pages through ListKeys with max and returns the ids in order.
func listAll(t *testing.T, s *Store, filter func(*Key) bool, max int) (ids []string, pages int) {
	t.Helper()
	tok := ""
	for {
		keys, next, err := s.ListKeys(filter, tok, max)
		if err != nil {
			t.Fatalf("ListKeys(%q): %v", tok, err)
		}
		pages++
		for _, k := range keys {
			ids = append(ids, k.ID)
		}
		if next == "" {
			return ids, pages
		}
		if len(keys) == 0 {
			t.Fatal("empty page with a next token")
		}
		tok = next
		if pages > 10000 {
			t.Fatal("paging does not terminate")
		}
	}
}

func testListKeysPaging(t *testing.T, env *storeEnv) {
	s := env.store(t)
	const n = 120
	var want []string
	for i := n; i > 0; i-- { // insert out of order
		k := testKey(testID(i))
		k.Profile = []string{"default", "other"}[i%2]
		if err := s.CreateKey(k, nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= n; i++ {
		want = append(want, testID(i))
	}
	odd := func(k *Key) bool { return k.Profile == "other" }
	var wantOdd []string
	for i := 1; i <= n; i += 2 {
		wantOdd = append(wantOdd, testID(i))
	}
	tests := []struct {
		name      string
		filter    func(*Key) bool
		max       int
		want      []string
		wantPages int
	}{
		{"max 1", nil, 1, want, n},
		{"max 7", nil, 7, want, 18},
		{"exact multiple", nil, 40, want, 3}, // lookahead: no empty fourth page
		{"default 50", nil, 0, want, 3},
		{"negative is default", nil, -3, want, 3},
		{"one page", nil, 500, want, 1},
		{"filter max 1", odd, 1, wantOdd, n / 2},
		{"filter exact", odd, 60, wantOdd, 1}, // last match then only non-matching: next must be ""
		{"filter none", func(*Key) bool { return false }, 5, nil, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, pages := listAll(t, s, tc.filter, tc.max)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("ids = %v, want %v", got, tc.want)
			}
			if pages != tc.wantPages {
				t.Errorf("pages = %d, want %d", pages, tc.wantPages)
			}
		})
	}

	// A token stays valid when its last key is purged between pages.
	page, next, err := s.ListKeys(nil, "", 2)
	if err != nil || len(page) != 2 {
		t.Fatal(page, err)
	}
	if err := s.PurgeKey(page[1].ID); err != nil {
		t.Fatal(err)
	}
	page, _, err = s.ListKeys(nil, next, 1)
	if err != nil || len(page) != 1 || page[0].ID != testID(3) {
		t.Fatalf("after purge: %v, %v", page, err)
	}
}

func testBadTokens(t *testing.T, env *storeEnv) {
	s := env.store(t)
	a, b := testID(1), testID(2)
	for _, id := range []string{a, b} {
		if err := s.CreateKey(testKey(id), []Tag{{"t1", "x"}, {"t2", "y"}}, "alias/"+id); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateAlias("alias/2-"+id, id); err != nil {
			t.Fatal(err)
		}
	}
	_, keysTok, _ := s.ListKeys(nil, "", 1)
	_, aliasTok, _ := s.ListAliases("", "", 1)
	_, aliasATok, _ := s.ListAliases(a, "", 1)
	_, tagsATok, _ := s.ListTags(a, "", 1)
	for _, tok := range []string{keysTok, aliasTok, aliasATok, tagsATok} {
		if tok == "" {
			t.Fatal("expected a next token")
		}
	}
	listKeysFn := func(tok string) error { _, _, err := s.ListKeys(nil, tok, 1); return err }
	listAliasesFn := func(key string) func(string) error {
		return func(tok string) error { _, _, err := s.ListAliases(key, tok, 1); return err }
	}
	listTagsFn := func(key string) func(string) error {
		return func(tok string) error { _, _, err := s.ListTags(key, tok, 1); return err }
	}
	tests := []struct {
		name string
		list func(string) error
		tok  string
	}{
		{"not base64", listKeysFn, "!!!"},
		{"padded base64", listKeysFn, keysTok + "="},
		{"non-canonical base64", listKeysFn, "AB"}, // strict decoding refuses non-zero trailing bits
		{"embedded newline", listKeysFn, keysTok[:4] + "\n" + keysTok[4:]},
		{"empty payload", listKeysFn, tokenEnc.EncodeToString([]byte{1})},
		{"unknown version", listKeysFn, tokenEnc.EncodeToString([]byte{2, 'K', 0, 'x'})},
		{"no separator", listKeysFn, tokenEnc.EncodeToString([]byte{1, 'K', 'x'})},
		{"empty cursor", listKeysFn, encodeToken(listKeys, "", "")},
		{"malformed key id", listKeysFn, encodeToken(listKeys, "", "NOT-AN-ID")},
		{"too long", listKeysFn, strings.Repeat("A", maxTokenLen+1)},
		{"alias token to keys", listKeysFn, aliasTok},
		{"keys token to aliases", listAliasesFn(""), keysTok},
		{"per-key alias token to all aliases", listAliasesFn(""), aliasATok},
		{"alias token of a to b", listAliasesFn(b), aliasATok},
		{"tags token of a to b", listTagsFn(b), tagsATok},
		{"tags token to keys", listKeysFn, tagsATok},
		{"alias token to tags", listTagsFn(a), aliasATok},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.list(tc.tok); !errors.Is(err, ErrBadToken) {
				t.Fatalf("err = %v, want ErrBadToken", err)
			}
		})
	}
	// The right listing accepts each.
	for _, ok := range []struct {
		list func(string) error
		tok  string
	}{{listKeysFn, keysTok}, {listAliasesFn(""), aliasTok}, {listAliasesFn(a), aliasATok}, {listTagsFn(a), tagsATok}} {
		if err := ok.list(ok.tok); err != nil {
			t.Errorf("valid token refused: %v", err)
		}
	}
}

func testAliases(t *testing.T, env *storeEnv) {
	s := env.store(t)
	a, b := testID(1), testID(2)
	for _, id := range []string{a, b} {
		if err := s.CreateKey(testKey(id), nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name string
		run  func() error
		want error
	}{
		{"create on a", func() error { return s.CreateAlias("alias/x", a) }, nil},
		{"create duplicate", func() error { return s.CreateAlias("alias/x", b) }, ErrExists},
		{"create unassociated", func() error { return s.CreateAlias("alias/free", "") }, nil},
		{"create to missing key", func() error { return s.CreateAlias("alias/y", testID(9)) }, ErrNotFound},
		{"create to malformed key", func() error { return s.CreateAlias("alias/y", "nope") }, ErrNotFound},
		{"create empty name", func() error { return s.CreateAlias("", a) }, ErrInvalid},
		{"create second on a", func() error { return s.CreateAlias("alias/a2", a) }, nil},
		{"move x to b", func() error { _, err := s.UpdateAlias("alias/x", b); return err }, nil},
		{"update missing", func() error { _, err := s.UpdateAlias("alias/none", b); return err }, ErrNotFound},
		{"update to missing key", func() error { _, err := s.UpdateAlias("alias/a2", testID(9)); return err }, ErrNotFound},
		{"associate free to a", func() error { _, err := s.UpdateAlias("alias/free", a); return err }, nil},
		{"disassociate a2", func() error { _, err := s.UpdateAlias("alias/a2", ""); return err }, nil},
		{"delete missing", func() error { return s.DeleteAlias("alias/none") }, ErrNotFound},
	}
	for _, st := range steps {
		if err := st.run(); !errors.Is(err, st.want) || (st.want == nil && err != nil) {
			t.Fatalf("%s: err = %v, want %v", st.name, err, st.want)
		}
	}
	wantAll := []Alias{{"alias/a2", ""}, {"alias/free", a}, {"alias/x", b}}
	check := func(key string, want []Alias) {
		t.Helper()
		var got []Alias
		tok := ""
		for {
			page, next, err := s.ListAliases(key, tok, 1)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, page...)
			if next == "" {
				break
			}
			tok = next
		}
		if !slices.Equal(got, want) {
			t.Errorf("ListAliases(%q) = %v, want %v", key, got, want)
		}
		if key != "" {
			var names []string
			for _, a := range want {
				names = append(names, a.Name)
			}
			got, err := s.AliasesOf(key)
			if err != nil || !slices.Equal(got, names) {
				t.Errorf("AliasesOf(%s) = %v, %v; want %v", key, got, err, names)
			}
		}
	}
	check("", wantAll)
	check(a, []Alias{{"alias/free", a}})
	check(b, []Alias{{"alias/x", b}})
	check(testID(9), nil)

	if err := s.DeleteAlias("alias/x"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAlias("alias/x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetAlias after delete: %v", err)
	}
	check(b, nil)
	check("", []Alias{{"alias/a2", ""}, {"alias/free", a}})
}

func testAliasUniquenessConcurrent(t *testing.T, env *storeEnv) {
	s := env.store(t)
	const n = 50
	for i := range n {
		if err := s.CreateKey(testKey(testID(i)), nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"alias/race-plain", "alias/race-create-key"} {
		var (
			wg     sync.WaitGroup
			start  = make(chan struct{})
			errs   = make([]error, n)
			viaKey = name == "alias/race-create-key"
		)
		for i := range n {
			wg.Go(func() {
				<-start
				if viaKey {
					errs[i] = s.CreateKey(testKey(testID(1000+i)), nil, name)
				} else {
					errs[i] = s.CreateAlias(name, testID(i))
				}
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("%s: two successes (%d and %d)", name, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, ErrExists):
				t.Fatalf("%s: goroutine %d: %v", name, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("%s: no success", name)
		}
		wantKey := testID(winner)
		if viaKey {
			wantKey = testID(1000 + winner)
		}
		al, err := s.GetAlias(name)
		if err != nil || al.KeyID != wantKey {
			t.Fatalf("%s: GetAlias = %+v, %v; want key %s", name, al, err, wantKey)
		}
		byKey, _, err := s.ListAliases(wantKey, "", 0)
		if err != nil || len(byKey) != 1 {
			t.Errorf("%s: index of the winner = %v, %v", name, byKey, err)
		}
		if viaKey { // losers' keys were not created
			keys, _, _ := s.ListKeys(func(k *Key) bool { return k.ID >= testID(1000) }, "", 500)
			if len(keys) != 1 {
				t.Errorf("%s: %d keys created, want 1", name, len(keys))
			}
		}
	}
}

// rawKeys returns every engine key in the store.
func rawKeys(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	if err := s.eng.Scan(nil, nil, func(k, _ []byte) (bool, error) { out = append(out, string(k)); return true, nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func testPurgeKey(t *testing.T, env *storeEnv) {
	s := env.store(t)
	victim, other := testID(1), testID(2)
	now := time.Now()
	for _, id := range []string{victim, other} {
		k := testKey(id)
		k.State, k.DeletePending = "DELETE_PENDING", now.Add(-time.Minute)
		if err := s.CreateKey(k, []Tag{{"a", "1"}, {"b", "2"}}, "alias/c-"+id); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"alias/1-" + id, "alias/2-" + id} {
			if err := s.CreateAlias(n, id); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.CreateAlias("alias/free", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMeta("m", []byte("v")); err != nil {
		t.Fatal(err)
	}
	before := rawKeys(t, s)
	if err := s.PurgeKey(victim); err != nil {
		t.Fatalf("PurgeKey: %v", err)
	}
	if err := s.PurgeKey(victim); !errors.Is(err, ErrNotFound) {
		t.Errorf("second PurgeKey: %v", err)
	}
	// Nothing naming the victim is left; everything else is.
	after := rawKeys(t, s)
	var want []string
	for _, k := range before {
		if !strings.Contains(k, victim) {
			want = append(want, k)
		}
	}
	if !slices.Equal(after, want) {
		t.Errorf("raw keys after purge\n got %q\nwant %q", after, want)
	}
	if _, err := s.GetKey(victim); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetKey: %v", err)
	}
	if _, _, err := s.ListTags(victim, "", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("ListTags: %v", err)
	}
	if names, err := s.AliasesOf(victim); err != nil || len(names) != 0 {
		t.Errorf("AliasesOf: %v, %v", names, err)
	}
	if _, err := s.GetAlias("alias/1-" + victim); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetAlias: %v", err)
	}
	if ids, err := s.DueForPurge(now); err != nil || !slices.Equal(ids, []string{other}) {
		t.Errorf("DueForPurge = %v, %v", ids, err)
	}
	if names, err := s.AliasesOf(other); err != nil || len(names) != 3 {
		t.Errorf("other's aliases: %v, %v", names, err)
	}
}

func testDueForPurge(t *testing.T, env *storeEnv) {
	s := env.store(t)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	keys := []struct {
		n        int
		state    string
		deadline time.Time
	}{
		{1, "DELETE_PENDING", base.Add(3 * time.Hour)},
		{2, "DELETE_PENDING", base.Add(1 * time.Hour)},
		{3, "DELETE_PENDING", base.Add(2 * time.Hour)},
		{4, "CREATE_COMPLETE", base},                      // not pending: never due
		{5, "DELETE_PENDING", time.Time{}},                // no deadline: never due
		{6, "DELETE_PENDING", base.Add(2 * time.Hour)},    // same deadline as 3
		{7, "DELETE_PENDING", time.Unix(-100, 0)},         // before 1970: clamps to due
		{8, "DELETE_PENDING", base.AddDate(500, 0, 0)},    // beyond UnixNano: clamps
		{9, "DELETE_COMPLETE", base.Add(-time.Hour)},      // completed: not pending
		{10, "DELETE_PENDING", base.Add(2*time.Hour + 1)}, // one nanosecond later
	}
	for _, k := range keys {
		key := testKey(testID(k.n))
		key.State, key.DeletePending = k.state, k.deadline
		if err := s.CreateKey(key, nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(ns ...int) []string {
		var out []string
		for _, n := range ns {
			out = append(out, testID(n))
		}
		return out
	}
	tests := []struct {
		name string
		now  time.Time
		want []string
	}{
		{"before all", base.Add(-time.Hour), ids(7)},
		{"deadline equal to now is due", base.Add(time.Hour), ids(7, 2)},
		{"ties by id", base.Add(2 * time.Hour), ids(7, 2, 3, 6)},
		{"nanosecond precision", base.Add(2*time.Hour + 1), ids(7, 2, 3, 6, 10)},
		{"all", base.AddDate(1000, 0, 0), ids(7, 2, 3, 6, 10, 1, 8)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.DueForPurge(tc.now)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("DueForPurge = %v, %v; want %v", got, err, tc.want)
			}
		})
	}

	// Restoring a key removes its entry; moving a deadline moves it; a
	// refused update changes nothing.
	if _, err := s.UpdateKey(testID(2), func(k *Key) error {
		k.State, k.DeletePending = "CREATE_COMPLETE", time.Time{}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateKey(testID(1), func(k *Key) error { k.DeletePending = base; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateKey(testID(3), func(k *Key) error { k.DeletePending = base; return errors.New("no") }); err == nil {
		t.Fatal("fn error ignored")
	}
	if _, err := s.UpdateKey(testID(4), func(k *Key) error {
		k.State, k.DeletePending = "DELETE_PENDING", base.Add(90*time.Minute)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err := s.DueForPurge(base.Add(2 * time.Hour))
	if want := ids(7, 1, 4, 3, 6); err != nil || !slices.Equal(got, want) {
		t.Fatalf("after updates: %v, %v; want %v", got, err, want)
	}
	var purge int
	for _, k := range rawKeys(t, s) {
		if strings.HasPrefix(k, pfxPurge) {
			purge++
		}
	}
	if purge != 7 { // 1, 3, 4, 6, 7, 8 and 10 are pending with a deadline

		t.Errorf("purge index has %d entries, want 7 (stale entries left?)", purge)
	}
}

func testTags(t *testing.T, env *storeEnv) {
	s := env.store(t)
	id := testID(1)
	if err := s.CreateKey(testKey(id), []Tag{{"b", "1"}, {"a", "1"}, {"b", "2"}}, ""); err != nil {
		t.Fatal(err)
	}
	list := func() []Tag {
		t.Helper()
		var all []Tag
		tok := ""
		for {
			page, next, err := s.ListTags(id, tok, 1)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, page...)
			if next == "" {
				return all
			}
			tok = next
		}
	}
	steps := []struct {
		name string
		run  func() error
		err  error
		want []Tag
	}{
		{"create kept last duplicate", func() error { return nil }, nil, []Tag{{"a", "1"}, {"b", "2"}}},
		{"merge replaces and adds", func() error { return s.TagKey(id, []Tag{{"a", "9"}, {"c", "3"}}, 3) }, nil,
			[]Tag{{"a", "9"}, {"b", "2"}, {"c", "3"}}},
		{"replace at the limit", func() error { return s.TagKey(id, []Tag{{"c", "4"}}, 3) }, nil,
			[]Tag{{"a", "9"}, {"b", "2"}, {"c", "4"}}},
		{"over the limit writes nothing", func() error { return s.TagKey(id, []Tag{{"a", "0"}, {"d", "5"}}, 3) }, ErrTooManyTags,
			[]Tag{{"a", "9"}, {"b", "2"}, {"c", "4"}}},
		{"no limit", func() error { return s.TagKey(id, []Tag{{"d", "5"}}, 0) }, nil,
			[]Tag{{"a", "9"}, {"b", "2"}, {"c", "4"}, {"d", "5"}}},
		{"empty value", func() error { return s.TagKey(id, []Tag{{"e", ""}}, 0) }, nil,
			[]Tag{{"a", "9"}, {"b", "2"}, {"c", "4"}, {"d", "5"}, {"e", ""}}},
		{"untag some and absent", func() error { return s.UntagKey(id, []string{"b", "zz", "e"}) }, nil,
			[]Tag{{"a", "9"}, {"c", "4"}, {"d", "5"}}},
		{"empty tag key", func() error { return s.TagKey(id, []Tag{{"", "x"}}, 0) }, ErrInvalid,
			[]Tag{{"a", "9"}, {"c", "4"}, {"d", "5"}}},
		{"tag missing key", func() error { return s.TagKey(testID(2), []Tag{{"a", "1"}}, 0) }, ErrNotFound,
			[]Tag{{"a", "9"}, {"c", "4"}, {"d", "5"}}},
		{"untag missing key", func() error { return s.UntagKey(testID(2), []string{"a"}) }, ErrNotFound,
			[]Tag{{"a", "9"}, {"c", "4"}, {"d", "5"}}},
	}
	for _, st := range steps {
		err := st.run()
		if (st.err == nil && err != nil) || !errors.Is(err, st.err) {
			t.Fatalf("%s: err = %v, want %v", st.name, err, st.err)
		}
		if got := list(); !slices.Equal(got, st.want) {
			t.Fatalf("%s: tags = %v, want %v", st.name, got, st.want)
		}
	}
	if _, _, err := s.ListTags(testID(2), "", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("ListTags of a missing key: %v", err)
	}
}

func testMeta(t *testing.T, env *storeEnv) {
	s := env.store(t)
	if _, err := s.GetMeta("pmk/default"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetMeta missing: %v", err)
	}
	if err := s.PutMetaIfAbsent("pmk/default", []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMetaIfAbsent("pmk/default", []byte{9}); !errors.Is(err, ErrExists) {
		t.Fatalf("second PutMetaIfAbsent: %v", err)
	}
	v, err := s.GetMeta("pmk/default")
	if err != nil || !bytes.Equal(v, []byte{1, 2, 3}) {
		t.Fatalf("GetMeta = %x, %v", v, err)
	}
	v[0] = 0xff // the caller's copy
	if err := s.PutMeta("pmk/default", []byte{4}); err != nil {
		t.Fatal(err)
	}
	if v, err := s.GetMeta("pmk/default"); err != nil || !bytes.Equal(v, []byte{4}) {
		t.Fatalf("GetMeta after PutMeta = %x, %v", v, err)
	}
	if err := s.PutMeta("", nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("PutMeta empty name: %v", err)
	}
	if err := s.PutMeta("big", make([]byte, maxMetaLen+1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("PutMeta oversize: %v", err)
	}
}

// TestReopenOnDisk runs Reopen on the operating system's file system: the
// one test of the production path through real files (the conformance
// suite runs it in memory and on etcd).
func TestReopenOnDisk(t *testing.T) {
	t.Parallel()
	reopen(t, pebbleLoc(vfs.Default, t.TempDir()))
}

func testReopen(t *testing.T, env *storeEnv) { reopen(t, env.fresh(t)) }

// reopen writes records, closes the store and checks them in a store opened
// again on the same location.
func reopen(t *testing.T, loc *storeLoc) {
	s, err := loc.open(opts(Options{}))
	if err != nil {
		t.Fatal(err)
	}
	var want []*Key
	for i := range 20 {
		k := testKey(testID(i))
		if i%3 == 0 {
			k.State, k.DeletePending = "DELETE_PENDING", time.Unix(1000+int64(i), 0)
		}
		if err := s.CreateKey(k, []Tag{{"n", fmt.Sprint(i)}}, fmt.Sprintf("alias/%02d", i)); err != nil {
			t.Fatal(err)
		}
		want = append(want, k)
	}
	upd, err := s.UpdateKey(testID(5), func(k *Key) error { k.Enabled = false; return nil })
	if err != nil {
		t.Fatal(err)
	}
	want[5] = upd
	if err := s.PutMeta("kcv", []byte("ABCDEF")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = loc.store(t)
	got, _, err := s.ListKeys(nil, "", 100)
	if err != nil || len(got) != len(want) {
		t.Fatalf("ListKeys after reopen: %d keys, %v", len(got), err)
	}
	for i := range want {
		sameKey(t, got[i], want[i])
		tags, _, err := s.ListTags(want[i].ID, "", 0)
		if err != nil || !slices.Equal(tags, []Tag{{"n", fmt.Sprint(i)}}) {
			t.Errorf("tags of %d: %v, %v", i, tags, err)
		}
		if a, err := s.GetAlias(fmt.Sprintf("alias/%02d", i)); err != nil || a.KeyID != want[i].ID {
			t.Errorf("alias %d: %+v, %v", i, a, err)
		}
	}
	if ids, err := s.DueForPurge(time.Unix(2000, 0)); err != nil || len(ids) != 7 {
		t.Errorf("DueForPurge after reopen: %v, %v", ids, err)
	}
	if v, err := s.GetMeta("kcv"); err != nil || string(v) != "ABCDEF" {
		t.Errorf("meta after reopen: %q, %v", v, err)
	}
}

func TestFormatRecord(t *testing.T) {
	t.Parallel()
	const dir = "keystore"
	setRaw := func(t *testing.T, fs vfs.FS, key, val []byte) {
		t.Helper()
		db, err := pebble.Open(dir, &pebble.Options{FS: fs, FormatMajorVersion: pebble.FormatNewest})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Set(key, val, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		prepare func(t *testing.T, fs vfs.FS)
		wantErr string
	}{
		{"fresh", func(*testing.T, vfs.FS) {}, ""},
		{"unknown version", func(t *testing.T, fs vfs.FS) {
			s := openTest(t, fs, dir)
			closeT(t, s)
			setRaw(t, fs, formatKey, []byte(`{"format":"payhsm-keystore","version":3}`))
		}, "on-disk format version 3 is not supported"},
		{"foreign format record", func(t *testing.T, fs vfs.FS) {
			setRaw(t, fs, formatKey, []byte(`{"format":"other","version":1}`))
		}, "not a payhsm keystore"},
		{"records without format record", func(t *testing.T, fs vfs.FS) {
			setRaw(t, fs, []byte("k/whatever"), []byte("x"))
		}, "no format record"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := vfs.NewMem()
			tc.prepare(t, fs)
			s, err := Open(dir, opts(Options{FS: fs}))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				closeT(t, s)
				openTest(t, fs, dir) // and it reopens
				return
			}
			if err == nil {
				t.Fatalf("opened (Close: %v)", s.Close())
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			// The refused store was closed: Pebble's directory lock is free.
			db, err := pebble.Open(dir, &pebble.Options{FS: fs})
			if err != nil {
				t.Fatalf("directory still locked: %v", err)
			}
			closeT(t, db)
		})
	}
}

func testClosed(t *testing.T, env *storeEnv) {
	s, err := env.fresh(t).open(opts(Options{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for name, err := range map[string]error{
		"GetKey":      func() error { _, err := s.GetKey(testID(1)); return err }(),
		"CreateKey":   s.CreateKey(testKey(testID(1)), nil, ""),
		"ListKeys":    func() error { _, _, err := s.ListKeys(nil, "", 0); return err }(),
		"PutMeta":     s.PutMeta("x", nil),
		"DueForPurge": func() error { _, err := s.DueForPurge(time.Now()); return err }(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}
}

// TestKeyBlockNeverPrinted checks the redacting formatters and that nothing
// the store logs (at debug level, for every operation) carries a key block.
func testKeyBlockNeverPrinted(t *testing.T, env *storeEnv) {
	core, logs := observer.New(zapcore.DebugLevel)
	s := env.fresh(t).storeWith(t, opts(Options{Logger: zap.New(core)}))
	k := testKey(testID(1))
	secret := k.KeyBlock
	if err := s.CreateKey(k, []Tag{{"a", "b"}}, "alias/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateKey(k.ID, func(k *Key) error { k.Enabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	_, _ = s.UpdateAlias("alias/a", "")
	_ = s.TagKey(k.ID, []Tag{{"c", "d"}}, 0)
	_ = s.UntagKey(k.ID, []string{"c"})
	_ = s.PurgeKey(k.ID)
	for _, p := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %s %#v", k, k, k, k), fmt.Sprintf("%v %+v %#v", *k, *k, *k)} {
		if strings.Contains(p, secret) || !strings.Contains(p, k.ID) {
			t.Errorf("formatted key: %s", p)
		}
	}
	zap.New(core).Info("probe", zap.Any("key", k), zap.Any("keyval", *k), zap.Object("obj", k))
	for _, e := range logs.All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		if strings.Contains(line, secret) || strings.Contains(line, "D0144") {
			t.Errorf("log entry carries the key block: %s", line)
		}
	}
	if logs.FilterMessage("probe").Len() != 1 {
		t.Error("probe entry not logged")
	}
}

// TestOpenInUse: a store another process (here: another Open) holds is
// refused with ErrInUse and a message that says so, not Pebble's bare
// "resource temporarily unavailable".
func TestOpenInUse(t *testing.T) {
	t.Parallel()
	if dir := os.Getenv(inUseEnv); dir != "" {
		inUseChild(dir)
		return
	}
	dir := t.TempDir()
	s, err := Open(dir, opts(Options{}))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, opts(Options{}))
	if err == nil {
		closeT(t, s2)
		t.Fatal("a second Open of a store in use succeeded")
	}
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("%v, want ErrInUse", err)
	}
	closeT(t, s)
	// Another process's lock: this test binary, re-executed, holds the store open.
	cmd := exec.Command(os.Args[0], "-test.run=^TestOpenInUse$", "-test.count=1")
	cmd.Env = append(os.Environ(), inUseEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = stdin.Close() // the child exits when its stdin closes
		if err := cmd.Wait(); err != nil {
			t.Errorf("child: %v", err)
		}
	}()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "open\n" {
		t.Fatalf("child: %q, %v", line, err)
	}
	if s3, err := Open(dir, opts(Options{})); !errors.Is(err, ErrInUse) {
		if err == nil {
			closeT(t, s3)
		}
		t.Fatalf("%v, want ErrInUse", err)
	}
}

const inUseEnv = "PAYHSM_KEYSTORE_INUSE_DIR"

// inUseChild holds the store in dir open until its stdin closes.
func inUseChild(dir string) {
	s, err := Open(dir, opts(Options{}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("open")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := s.Close(); err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

// TestResourcePolicyInKeyRecord: a key's resource policy is part of its key
// record, so it reads back as written, is covered by the record's integrity
// check, and is gone with the key.
func TestResourcePolicyInKeyRecord(t *testing.T) {
	s := openMem(t)
	k := testKey(testID(1))
	k.ResourcePolicy = `{"Version":"2012-10-17","Statement":[]}`
	if err := s.CreateKey(k, nil, ""); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetKey(k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ResourcePolicy != k.ResourcePolicy {
		t.Fatalf("policy %q, want %q", got.ResourcePolicy, k.ResourcePolicy)
	}
	if _, err := s.UpdateKey(k.ID, func(k *Key) error { k.ResourcePolicy = ""; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetKey(k.ID); got.ResourcePolicy != "" {
		t.Fatalf("deleted policy reads back as %q", got.ResourcePolicy)
	}
	bad := testKey(testID(2))
	bad.ResourcePolicy = "\xff"
	if err := s.CreateKey(bad, nil, ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid UTF-8 policy: %v, want ErrInvalid", err)
	}
}

// TestCreateKeyExistsAfterReopen: a key written before the store was
// reopened is found by the next creation of its id (and alias) once the
// engine's presence index has loaded, when that check no longer reads the
// engine for a free id; a free id is still created.
func TestCreateKeyExistsAfterReopen(t *testing.T) {
	fs, dir := vfs.NewMem(), "db"
	s := openTest(t, fs, dir)
	if err := s.CreateKey(testKey(testID(1)), nil, "alias/kept"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, fs, dir)
	d, ok := s.eng.(*pebblekv.DB)
	if !ok {
		t.Fatalf("the store is on %s, not Pebble", s.eng.Name())
	}
	for deadline := time.Now().Add(time.Minute); !d.IndexLoaded(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the presence index did not load")
		}
	}
	if err := s.CreateKey(testKey(testID(1)), nil, ""); !errors.Is(err, ErrExists) {
		t.Fatalf("same id: %v, want ErrExists", err)
	}
	if err := s.CreateKey(testKey(testID(2)), nil, "alias/kept"); !errors.Is(err, ErrExists) {
		t.Fatalf("same alias: %v, want ErrExists", err)
	}
	if err := s.CreateKey(testKey(testID(3)), nil, "alias/new"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetKey(testID(3)); err != nil {
		t.Fatal(err)
	}
}
