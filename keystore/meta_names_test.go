package keystore

import (
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
)

func TestMetaNames(t *testing.T) {
	t.Parallel()
	s, err := Open("keystore", opts(Options{FS: vfs.NewMem(), Logger: zap.NewNop()}))
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, s)
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
