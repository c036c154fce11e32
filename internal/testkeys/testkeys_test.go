package testkeys

import (
	"testing"
)

func TestRSA(t *testing.T) {
	a, b := RSA(t, 2048), RSA(t, 2048)
	if a.Equal(b) {
		t.Fatal("two calls in one test returned the same key")
	}
	t.Run("subtest", func(t *testing.T) {
		// The test's two keys are taken: a subtest gets none of them, and
		// testdata holds no third key.
		ft := &fakeTB{TB: t}
		func() {
			defer func() { _ = recover() }()
			RSA(ft, 2048)
		}()
		if !ft.failed {
			t.Fatal("a third key was handed out from a pool of two")
		}
	})
}

func TestRSAAgain(t *testing.T) {
	// Another top-level test starts from key 1 again.
	k := RSA(t, 2048)
	if err := k.Validate(); err != nil {
		t.Fatal(err)
	}
}

// fakeTB records Fatalf instead of ending the test.
type fakeTB struct {
	testing.TB
	failed bool
}

func (f *fakeTB) Fatalf(string, ...any) { f.failed = true; panic("fatal") }
func (f *fakeTB) Helper()               {}
