package opstest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"payhsm/fault"
	"payhsm/ops"

	"payhsm/hsm/custody"
	"payhsm/hsm/custody/memtoken"
	"payhsm/keyspec"
)

// TestWorkingKeyHotPath shows the working-key path makes no PKCS#11 call after
// the first use of a key (the counter counts every token operation). Not
// parallel: the counter is process-wide.
func TestWorkingKeyHotPath(t *testing.T) {
	svc := New(t)
	arn := Import(t, svc, keyspec.Attributes{Usage: keyspec.P0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
		Modes: keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}, "0123456789ABCDEFFEDCBA9876543210")
	w, err := svc.Working(arn, fault.SubjectKey, fault.SideNone)
	if err != nil {
		t.Fatal(err)
	}
	if w.KCV() != "08D7B4" || w.Block == nil {
		t.Fatalf("working key KCV %s", w.KCV())
	}
	before := custody.TokenOperations()
	for i := 0; i < 1000; i++ {
		if _, err := svc.Working(arn, fault.SubjectKey, fault.SideNone); err != nil {
			t.Fatal(err)
		}
	}
	if n := custody.TokenOperations() - before; n != 0 {
		t.Fatalf("%d PKCS#11 calls for 1000 working-key lookups", n)
	}
	if _, err := svc.StopKeyUsage(arn); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Working(arn, fault.SubjectKey, fault.SideNone); err == nil {
		t.Fatal("a stopped key is still usable from the cache")
	}
}

func BenchmarkWorkingKey(b *testing.B) {
	svc := New(b)
	arn := Import(b, svc, keyspec.Attributes{Usage: keyspec.P0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
		Modes: keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}, "0123456789ABCDEFFEDCBA9876543210")
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := svc.Working(arn, fault.SubjectKey, fault.SideNone); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestBlockIdent: a key carried as a block under the profile main key (the
// host protocol's "S" form) works like a stored key, with the same checks.
func TestBlockIdent(t *testing.T) {
	t.Parallel()
	svc := New(t)
	a := keyspec.Attributes{Usage: keyspec.C0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key, Modes: keyspec.ModesOfUse{Generate: true, Verify: true}}
	block, kcv, err := svc.GenerateKeyBlock("default", a, false)
	if err != nil {
		t.Fatal(err)
	}
	w, err := svc.Working(ops.BlockIdent("default", block), fault.SubjectKey, fault.SideNone)
	if err != nil {
		t.Fatal(err)
	}
	if w.KCV() != kcv || w.Attributes() != a || w.Block == nil || w.Record.Exportable {
		t.Fatalf("block key: %+v KCV %s want %s", w.Attributes(), w.KCV(), kcv)
	}
	tampered := block[:len(block)-1] + string("0123456789ABCDEF"[(strings.IndexByte("0123456789ABCDEF", block[len(block)-1])+1)%16])
	if _, err := svc.Working(ops.BlockIdent("default", tampered), fault.SubjectKey, fault.SideNone); err == nil {
		t.Fatal("a tampered key block was accepted")
	}
	if _, err := svc.Working(ops.BlockIdent("nope", block), fault.SubjectKey, fault.SideNone); err == nil {
		t.Fatal("a block under an unknown profile was accepted")
	}
	if _, _, err := svc.GenerateKeyBlock("default", keyspec.Attributes{Usage: keyspec.C0, Class: keyspec.Symmetric, Algorithm: keyspec.AES128,
		Modes: keyspec.ModesOfUse{Encrypt: true}}, false); err == nil {
		t.Fatal("a disallowed attribute combination was generated")
	}
}

// TestRotateProfile: every key of the profile is re-wrapped under a new main
// key, keeps its check value and stays usable; every record (aliases, tags,
// metadata too) is re-sealed under the new version; the old key is retired.
func TestRotateProfile(t *testing.T) {
	t.Parallel()
	svc, store := NewWithStore(t)
	var arns []string
	for i := 0; i < 25; i++ {
		k, err := svc.CreateKey(ops.CreateKeyInput{Exportable: true, Attributes: keyspec.Attributes{Usage: keyspec.C0, Class: keyspec.Symmetric,
			Algorithm: keyspec.TDES2Key, Modes: keyspec.ModesOfUse{Generate: true, Verify: true}}, Tags: []ops.Tag{{Key: "n", Value: "v"}}})
		if err != nil {
			t.Fatal(err)
		}
		arns = append(arns, k.ARN)
	}
	if _, err := svc.CreateAlias("alias/rotated", arns[0]); err != nil {
		t.Fatal(err)
	}
	imported := Import(t, svc, keyspec.Attributes{Usage: keyspec.P0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
		Modes: keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}, "0123456789ABCDEFFEDCBA9876543210")
	before, _ := svc.ProfileKCV("default")
	rep, err := svc.RotateProfile("default", nil, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := svc.ProfileKCV("default")
	if rep.Version != 2 || after == before || rep.KCV != after {
		t.Fatalf("rotation %+v, KCV %s → %s", rep, before, after)
	}
	// 26 keys plus the CA key and the import token's key.
	if rep.Rewrapped != 28 || rep.Verified != 28 {
		t.Errorf("rewrapped %d, verified %d, want 28", rep.Rewrapped, rep.Verified)
	}
	for _, arn := range append(arns, imported, "alias/rotated") {
		w, err := svc.Working(arn, fault.SubjectKey, fault.SideNone)
		if err != nil {
			t.Fatalf("%s after rotation: %v", arn, err)
		}
		if arn == imported && w.KCV() != "08D7B4" {
			t.Errorf("imported key KCV %s after rotation", w.KCV())
		}
	}
	// Tags, the alias and its index, the token records: re-sealed, not re-wrapped.
	if rep.Resealed < 25+2 {
		t.Errorf("resealed %d records", rep.Resealed)
	}
	vrep, err := store.Verify()
	if err != nil || len(vrep.Failures) != 0 {
		t.Fatalf("records after rotation: %+v %v", vrep, err)
	}
	// A second rotation starts from version 2.
	if rep, err := svc.RotateProfile("default", nil, time.Millisecond); err != nil || rep.Version != 3 || rep.Rewrapped != 28 {
		t.Fatalf("second rotation %+v %v", rep, err)
	}
	if _, err := svc.GetParametersForImport(ops.MaterialKeyCryptogram, keyspec.RSA3072, true); err != nil {
		t.Fatalf("import token after rotation: %v", err)
	}
}

// TestDeadToken: once started, the operations layer needs the token only to
// seal new main keys. With the token gone, working keys still serve, a
// rotation fails with an error and changes nothing, and it succeeds once the
// token is back.
func TestDeadToken(t *testing.T) {
	t.Parallel()
	svc, tok := NewWithToken(t)
	arn := Import(t, svc, keyspec.Attributes{Usage: keyspec.P0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
		Modes: keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}, "0123456789ABCDEFFEDCBA9876543210")
	before, err := svc.ProfileKCV("default")
	if err != nil {
		t.Fatal(err)
	}

	tok.SetDead(true)
	if w, err := svc.Working(arn, fault.SubjectKey, fault.SideNone); err != nil || w.KCV() != "08D7B4" {
		t.Fatalf("working key with the token dead: %v", err)
	}
	if _, err := svc.RotateProfile("default", nil, time.Millisecond); err == nil {
		t.Fatal("a rotation succeeded with the token dead")
	} else if !errors.Is(err, memtoken.ErrDeviceRemoved) {
		t.Errorf("rotation error does not carry the token's: %v", err)
	}
	if kcv, err := svc.ProfileKCV("default"); err != nil || kcv != before {
		t.Fatalf("profile KCV %s after a failed rotation, %s before (%v)", kcv, before, err)
	}

	tok.SetDead(false)
	rep, err := svc.RotateProfile("default", nil, time.Millisecond)
	if err != nil || rep.Version != 2 {
		t.Fatalf("rotation with the token back: %+v %v", rep, err)
	}
	if w, err := svc.Working(arn, fault.SubjectKey, fault.SideNone); err != nil || w.KCV() != "08D7B4" {
		t.Fatalf("working key after rotation: %v", err)
	}
}

// TestWorkingKeyZeroedWhenDropped: a working key's clear material is zeroed
// once the cache has dropped it and the last operation using it has given
// it back, not before: a holder keeps a usable key through a drop, and the
// data operations give back every reference they take (else the material
// would outlive the drop).
func TestWorkingKeyZeroedWhenDropped(t *testing.T) {
	t.Parallel()
	svc := New(t)
	m1 := keyspec.Attributes{Usage: keyspec.M1, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
		Modes: keyspec.ModesOfUse{Generate: true, Verify: true}}
	arn := Import(t, svc, m1, "0123456789ABCDEFFEDCBA9876543210")
	mac := func() {
		t.Helper()
		if _, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: arn, MessageData: []byte("12345678"),
			Attributes: ops.MacAttributes{Algorithm: ops.MacISO9797Alg1}}); err != nil {
			t.Fatal(err)
		}
	}
	mac() // caches the key
	w, err := svc.Working(arn, fault.SubjectKey, fault.SideNone)
	if err != nil {
		t.Fatal(err)
	}
	zero := func() bool {
		for _, b := range w.Material {
			if b != 0 {
				return false
			}
		}
		return true
	}
	mac() // uses the same cached key, and gives it back
	if _, err := svc.StopKeyUsage(arn); err != nil {
		t.Fatal(err)
	}
	if zero() || len(w.Material) != 16 {
		t.Fatal("the material was zeroed while a holder still used the key")
	}
	if s := fmt.Sprintf("%v %+v %#v %s", w, w, w, w); strings.Contains(strings.ToUpper(s), "0123456789ABCDEF") || !strings.Contains(s, arn) {
		t.Errorf("a working key prints as %s", s)
	}
	w.Release()
	if !zero() {
		t.Fatal("the material outlived the cache's drop and the last release")
	}
}

// TestTokenLoss: once a probe finds the token gone (loss grace zero), every
// working key is refused with an Unavailable fault, cached or not, and the
// cache is emptied; once the token is back, keys serve again. The cache's
// counters count hits, misses and those drops.
func TestTokenLoss(t *testing.T) {
	t.Parallel()
	svc, mod, cust := NewWithCustody(t)
	arn := Import(t, svc, keyspec.Attributes{Usage: keyspec.P0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
		Modes: keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}, "0123456789ABCDEFFEDCBA9876543210")
	use := func() error {
		w, err := svc.Working(arn, fault.SubjectKey, fault.SideNone)
		if err == nil {
			w.Release()
		}
		return err
	}
	before := svc.CacheStats()
	for range 3 {
		if err := use(); err != nil {
			t.Fatal(err)
		}
	}
	st := svc.CacheStats()
	if st.Misses-before.Misses != 1 || st.Hits-before.Hits != 2 || st.Entries < 1 {
		t.Errorf("cache stats %+v after 3 uses of one key (before %+v)", st, before)
	}

	mod.SetDead(true)
	if err := cust.Probe(); err == nil {
		t.Fatal("the probe of a dead token succeeded")
	}
	err := use()
	if !errors.Is(err, custody.ErrTokenUnavailable) || fault.KindOf(err) != fault.Unavailable ||
		fault.ClientMessage(err) != custody.TokenUnavailableMessage {
		t.Fatalf("a cached key on a lost token: %v", err)
	}
	if st := svc.CacheStats(); st.Entries != 0 || st.Invalidations == 0 {
		t.Errorf("the cache was not emptied: %+v", st)
	}
	if _, _, err := svc.ListKeys("", ops.Page{}); fault.KindOf(err) != fault.Unavailable {
		t.Errorf("ListKeys on a lost token: %v", err)
	}

	mod.SetDead(false)
	if err := cust.Probe(); err != nil {
		t.Fatalf("the probe of the revived token: %v", err)
	}
	if err := use(); err != nil {
		t.Fatalf("after the token came back: %v", err)
	}
}
