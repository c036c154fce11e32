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
