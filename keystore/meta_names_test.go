package keystore

import (
	"errors"
	"slices"
	"testing"
)

func testMetaNames(t *testing.T, env *storeEnv) {
	s := env.store(t)
	for _, n := range []string{"custody/profile/b", "custody/profile/a", "custody/region", "ca/x"} {
		if err := s.PutMeta(n, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.MetaNames("custody/profile/")
	if err != nil || !slices.Equal(got, []string{"custody/profile/a", "custody/profile/b"}) {
		t.Fatalf("MetaNames = %v, %v", got, err)
	}
}

// testPutMetas: several meta blobs set and deleted in one call; deleting an
// absent blob is no error; a name both set and deleted, or an invalid name,
// is refused and nothing is written.
func testPutMetas(t *testing.T, env *storeEnv) {
	s := env.store(t)
	if err := s.PutMeta("q/old", []byte("o")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMetas(map[string][]byte{"q/a": []byte("1"), "q/b": []byte("2")}, []string{"q/old", "q/absent"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.MetaNames("q/")
	if err != nil || !slices.Equal(got, []string{"q/a", "q/b"}) {
		t.Fatalf("MetaNames after PutMetas = %v, %v", got, err)
	}
	if v, err := s.GetMeta("q/b"); err != nil || string(v) != "2" {
		t.Fatalf("q/b = %q %v", v, err)
	}
	for _, bad := range []struct {
		puts map[string][]byte
		dels []string
	}{
		{map[string][]byte{"q/c": []byte("3")}, []string{"q/c"}},
		{map[string][]byte{"q/c": []byte("3"), "": []byte("x")}, nil},
		{map[string][]byte{"q/c": []byte("3")}, []string{""}},
	} {
		if err := s.PutMetas(bad.puts, bad.dels); !errors.Is(err, ErrInvalid) {
			t.Errorf("PutMetas(%v, %q) = %v, want ErrInvalid", bad.puts, bad.dels, err)
		}
	}
	if got, _ := s.MetaNames("q/"); !slices.Equal(got, []string{"q/a", "q/b"}) {
		t.Fatalf("refused PutMetas wrote: %v", got)
	}
}

// testCreateKeyMetas: the metas given with a new key are written in the
// key's transaction: present with the key (replacing older values), and
// absent when the key is refused (its id exists) or a meta name is invalid.
func testCreateKeyMetas(t *testing.T, env *storeEnv) {
	s := env.store(t)
	k1, k2 := testID(1), testID(2)
	if err := s.PutMeta("r/key/old", []byte("before")); err != nil {
		t.Fatal(err)
	}
	metas := map[string][]byte{"r/key/k1": []byte("rec"), "r/pending/k1": []byte("1"), "r/key/old": []byte("after")}
	if err := s.CreateKeyMetas(testKey(k1), []Tag{{Key: "t", Value: "v"}}, "", metas); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetKey(k1); err != nil {
		t.Fatal(err)
	}
	for name, want := range metas {
		if v, err := s.GetMeta(name); err != nil || string(v) != string(want) {
			t.Fatalf("%s = %q %v, want %q", name, v, err, want)
		}
	}
	// The id exists: the key is refused and none of its metas is written.
	err := s.CreateKeyMetas(testKey(k1), nil, "", map[string][]byte{"r/key/k1": []byte("second"), "r/other": []byte("x")})
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second create = %v, want ErrExists", err)
	}
	if v, _ := s.GetMeta("r/key/k1"); string(v) != "rec" {
		t.Fatalf("a refused create rewrote r/key/k1: %q", v)
	}
	if _, err := s.GetMeta("r/other"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused create wrote r/other: %v", err)
	}
	// An invalid meta name: neither the key nor the metas.
	if err := s.CreateKeyMetas(testKey(k2), nil, "", map[string][]byte{"": []byte("x"), "r/k2": []byte("y")}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid meta name = %v, want ErrInvalid", err)
	}
	if _, err := s.GetKey(k2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("key of a refused create: %v", err)
	}
	if _, err := s.GetMeta("r/k2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("meta of a refused create: %v", err)
	}
}
