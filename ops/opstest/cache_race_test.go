package opstest

import (
	"fmt"
	"payhsm/fault"
	"sync"
	"testing"

	"payhsm/keyspec"
)

// TestWorkingKeyCacheConcurrent runs lookups of the working-key cache (by key
// ARN and by alias) against concurrent state and alias changes, for the race
// detector (`make race`), then checks that the cache did not keep a stale
// entry: once the writers stop, every lookup sees the last write.
func TestWorkingKeyCacheConcurrent(t *testing.T) {
	svc := New(t)
	attrs := keyspec.Attributes{Usage: keyspec.P0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
		Modes: keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}
	arnA := Import(t, svc, attrs, "0123456789ABCDEFFEDCBA9876543210")
	arnB := Import(t, svc, attrs, "FEDCBA98765432100123456789ABCDEF")
	const alias = "alias/hot"
	if _, err := svc.CreateAlias(alias, arnA); err != nil {
		t.Fatal(err)
	}

	const rounds = 25
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, 1)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				// A may be stopped at any moment: an error is a valid answer,
				// a key other than A is not.
				if w, err := svc.Working(arnA, fault.SubjectKey, fault.SideNone); err == nil && w.ARN != arnA {
					report(fmt.Errorf("lookup of %s returned %s", arnA, w.ARN))
				}
				if w, err := svc.Working(alias, fault.SubjectKey, fault.SideNone); err == nil && w.ARN != arnA && w.ARN != arnB {
					report(fmt.Errorf("alias lookup returned %s", w.ARN))
				}
				if _, err := svc.Working(arnB, fault.SubjectKey, fault.SideNone); err != nil {
					report(err)
				}
			}
		})
	}
	for i := range rounds {
		target := arnB
		if i == rounds-1 {
			target = arnA
		}
		for _, step := range []func() error{
			func() error { _, err := svc.StopKeyUsage(arnA); return err },
			func() error { _, err := svc.UpdateAlias(alias, target); return err },
			func() error { _, err := svc.StartKeyUsage(arnA); return err },
		} {
			if err := step(); err != nil {
				close(done)
				wg.Wait()
				t.Fatal(err)
			}
		}
	}
	close(done)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}

	// Quiescent: the cache must agree with the store.
	w, err := svc.Working(alias, fault.SubjectKey, fault.SideNone)
	if err != nil {
		t.Fatalf("alias after the last update: %v", err)
	}
	if w.ARN != arnA {
		t.Fatalf("alias after the last update reaches %s, want %s", w.ARN, arnA)
	}
	if _, err := svc.StopKeyUsage(arnA); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Working(arnA, fault.SubjectKey, fault.SideNone); err == nil {
		t.Fatal("a stopped key is still usable from the cache")
	}
	if _, err := svc.Working(alias, fault.SubjectKey, fault.SideNone); err == nil {
		t.Fatal("a stopped key is still usable through its alias")
	}
}
