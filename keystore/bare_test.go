package keystore

import (
	"errors"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// testBareKeys: a key created without tags or an alias says so in its
// authenticated record (Key.bare), and GetKey then skips the scan of its
// tags and alias index entries: a record stored under those prefixes is not
// the key's and does not make it unusable (Verify reports it). The first tag
// or alias clears the mark in the same transaction, after which the key's
// belongings are checked as before; UpdateKey's fn cannot set or clear it;
// a record without the mark (as written before it existed) is scanned.
func testBareKeys(t *testing.T, env *storeEnv) {
	fx := newIntegrityFixture(t, env)
	s := fx.s
	bare := func(id string) bool {
		t.Helper()
		k, err := s.GetKey(id)
		if err != nil {
			t.Fatalf("GetKey(%s): %v", id, err)
		}
		return k.bare
	}
	refused := func(id string) {
		t.Helper()
		if _, err := s.GetKey(id); !errors.Is(err, ErrIntegrity) {
			t.Fatalf("GetKey(%s) with a damaged belonging: %v, want an integrity failure", id, err)
		}
	}
	if !bare(fx.d) || bare(fx.a) {
		t.Fatalf("bare: key without tags %v, key with tags and an alias %v; want true, false", bare(fx.d), bare(fx.a))
	}

	// Damaged records under a bare key's prefixes are not its own; under
	// another key's they still refuse it.
	junkD := [][]byte{tagKey(fx.d, "junk"), byKeyKey(fx.d, "alias/junk")}
	for _, k := range junkD {
		rawSet(t, s, k, []byte("junk"))
	}
	if bare(fx.d) != true {
		t.Fatal("the bare key lost its mark")
	}
	junkA := tagKey(fx.a, "junk")
	rawSet(t, s, junkA, []byte("junk"))
	refused(fx.a)

	// A record that verifies (a stale copy, say) under a bare key: GetKey
	// passes, Verify names it with the reason.
	stale := tagKey(fx.e, "stale")
	if err := s.update("plant", func(w *writer) error {
		_, err := w.set(stale, RecordTag, "", []byte("v"), 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !bare(fx.e) {
		t.Fatal("planting a tag record cleared the mark")
	}
	fx.verifyLists(t, append(junkD, junkA, stale)...)
	rep, err := s.Verify()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range rep.Failures {
		found = found || (f.Name == fx.e+"/stale" && strings.Contains(f.Reason, "no tags or aliases"))
	}
	if !found {
		t.Errorf("Verify does not say why the stale tag is refused: %+v", rep.Failures)
	}

	// The first tag or alias clears the mark, and the key's belongings are
	// checked from then on.
	ids := []string{testID(10), testID(11), testID(12), testID(13)}
	for _, id := range ids {
		if err := s.CreateKey(testKey(id), nil, ""); err != nil {
			t.Fatal(err)
		}
		if !bare(id) {
			t.Fatalf("%s created without tags or alias is not bare", id)
		}
	}
	if err := s.TagKey(ids[0], nil, 0); err != nil || !bare(ids[0]) {
		t.Fatalf("no tags given: %v, bare %v; want still bare", err, bare(ids[0]))
	}
	attach := []func() error{
		func() error { return s.TagKey(ids[0], []Tag{{"env", "x"}}, 0) },
		func() error { return s.CreateAlias("alias/"+ids[1], ids[1]) },
		func() error {
			if err := s.CreateAlias("alias/later", ""); err != nil {
				return err
			}
			_, err := s.UpdateAlias("alias/later", ids[2])
			return err
		},
	}
	for i, fn := range attach {
		if err := fn(); err != nil {
			t.Fatal(err)
		}
		k, err := s.GetKey(ids[i])
		if err != nil || k.bare || k.Revision != 2 {
			t.Fatalf("key %s after its first belonging: %v, bare %v revision %d; want not bare, revision 2", ids[i], err, k.bare, k.Revision)
		}
		rawSet(t, s, tagKey(ids[i], "junk"), []byte("junk"))
		refused(ids[i])
	}

	// fn cannot set or clear the mark.
	for _, c := range []struct {
		id   string
		want bool
	}{{fx.b, false}, {ids[3], true}} {
		k, err := s.UpdateKey(c.id, func(k *Key) error { k.bare = !k.bare; k.KCV = "ABCDEF"; return nil })
		if err != nil || k.bare != c.want || bare(c.id) != c.want {
			t.Fatalf("UpdateKey(%s) flipping bare: %v, stored bare %v, want %v", c.id, err, bare(c.id), c.want)
		}
	}

	// A key record without the mark (as written before it existed) is
	// scanned: a damaged tag refuses it.
	old := testID(20)
	if err := s.CreateKey(testKey(old), nil, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.update("unmark", func(w *writer) error {
		k, err := s.loadKey(w.b, old)
		if err != nil {
			return err
		}
		k.bare = false
		val, err := encodeKey(k)
		if err != nil {
			return err
		}
		if strings.Contains(string(val), "noTagsOrAliases") {
			t.Errorf("a record without the mark names it: %s", val)
		}
		_, err = w.set(keyKey(old), RecordKey, k.Profile, val, k.Revision)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rawSet(t, s, tagKey(old, "junk"), []byte("junk"))
	refused(old)
}

// TestBareMarkDecoding: the mark reads back from a version 2 record and is
// refused in a version 1 record (format 1 never wrote it; migration must
// not take a key's word for having no tags).
func TestBareMarkDecoding(t *testing.T) {
	id := testID(1)
	k, err := decodeKey(id, []byte(`{"v":2,"id":"`+id+`","noTagsOrAliases":true}`))
	if err != nil || !k.bare {
		t.Fatalf("v2 with the mark: %v, bare %v", err, k != nil && k.bare)
	}
	if k, err := decodeKey(id, []byte(`{"v":2,"id":"`+id+`"}`)); err != nil || k.bare {
		t.Fatalf("v2 without the mark: %v", err)
	}
	if _, err := decodeKeyV1(id, []byte(`{"v":1,"id":"`+id+`","revision":1,"noTagsOrAliases":true}`)); err == nil {
		t.Fatal("v1 record with the mark accepted")
	}
	if _, err := decodeKeyV1(id, []byte(`{"v":1,"id":"`+id+`","revision":1}`)); err != nil {
		t.Fatalf("v1 record: %v", err)
	}
}

// TestNoBareKeyMarks: a store told not to mark bare keys (a fleet that may
// still run a release before the mark) writes none, and still reads a key
// another writer marked.
func TestNoBareKeyMarks(t *testing.T) {
	fs := vfs.NewMem()
	marking := openTest(t, fs, "marking")
	if err := marking.CreateKey(testKey(testID(1)), nil, ""); err != nil {
		t.Fatal(err)
	}
	if k, err := marking.GetKey(testID(1)); err != nil || !k.bare {
		t.Fatalf("a marking store: %v, bare %v", err, k != nil && k.bare)
	}
	if err := marking.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open("marking", opts(Options{FS: fs, NoBareKeyMarks: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if k, err := s.GetKey(testID(1)); err != nil || !k.bare {
		t.Fatalf("a marked key read by a store that does not mark: %v", err)
	}
	if err := s.CreateKey(testKey(testID(2)), nil, ""); err != nil {
		t.Fatal(err)
	}
	if k, err := s.GetKey(testID(2)); err != nil || k.bare {
		t.Fatalf("a key created by a store that does not mark: %v, bare %v", err, k != nil && k.bare)
	}
}
