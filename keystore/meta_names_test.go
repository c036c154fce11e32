package keystore

import (
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
