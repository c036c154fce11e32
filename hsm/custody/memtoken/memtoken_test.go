package memtoken

import (
	"bytes"
	"errors"
	"testing"
)

func TestModule(t *testing.T) {
	t.Parallel()
	m := New()
	if err := m.InitToken("t", "pin"); err != nil {
		t.Fatal(err)
	}
	if err := m.InitToken("t", "pin"); err == nil {
		t.Fatal("a token label was initialized twice")
	}
	for _, tc := range []struct {
		name, label, pin string
		want             error
	}{
		{"unknown token", "nope", "pin", ErrTokenNotFound},
		{"wrong PIN", "t", "bad", ErrPINIncorrect},
	} {
		if _, err := m.Login(tc.label, tc.pin); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}

	s, err := m.Login("t", "pin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GenerateAESKey([]byte("1"), "k", 100); !errors.Is(err, ErrKeySize) {
		t.Errorf("AES-100: %v", err)
	}
	k, err := s.GenerateAESKey([]byte("1"), "k", 256)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 12)
	ct, err := k.SealGCM(nonce, []byte("hello"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.SealGCM(nonce[:8], []byte("hello"), nil); !errors.Is(err, ErrDataLen) {
		t.Errorf("short nonce: %v", err)
	}
	if _, err := k.OpenGCM(nonce, ct, []byte("other")); !errors.Is(err, ErrTagInvalid) {
		t.Errorf("wrong aad: %v", err)
	}
	var blk [16]byte
	if err := k.EncryptBlock(blk[:], make([]byte, 16)); err != nil || blk == [16]byte{} {
		t.Fatalf("EncryptBlock: %x %v", blk, err)
	}

	// A second session sees the same persistent key.
	s2, err := m.Login("t", "pin")
	if err != nil {
		t.Fatal(err)
	}
	found, err := s2.FindKeys("k")
	if err != nil || len(found) != 1 {
		t.Fatalf("FindKeys: %d, %v", len(found), err)
	}
	if pt, err := found[0].OpenGCM(nonce, ct, []byte("aad")); err != nil || !bytes.Equal(pt, []byte("hello")) {
		t.Fatalf("OpenGCM in another session: %q %v", pt, err)
	}
	if none, err := s2.FindKeys("other"); err != nil || len(none) != 0 {
		t.Fatalf("FindKeys of an absent label: %d, %v", len(none), err)
	}

	m.SetDead(true)
	for name, err := range map[string]error{
		"Login":     func() error { _, err := m.Login("t", "pin"); return err }(),
		"FindKeys":  func() error { _, err := s2.FindKeys("k"); return err }(),
		"Generate":  func() error { _, err := s2.GenerateAESKey(nil, "x", 128); return err }(),
		"SealGCM":   func() error { _, err := k.SealGCM(nonce, nil, nil); return err }(),
		"OpenGCM":   func() error { _, err := k.OpenGCM(nonce, ct, nil); return err }(),
		"EncryptBl": k.EncryptBlock(blk[:], blk[:]),
		"Delete":    k.Delete(),
	} {
		if !errors.Is(err, ErrDeviceRemoved) {
			t.Errorf("%s on a dead module: %v", name, err)
		}
	}
	m.SetDead(false)

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := k.SealGCM(nonce, nil, nil); !errors.Is(err, ErrSessionClosed) {
		t.Errorf("key of a closed session: %v", err)
	}
	if err := s.Close(); !errors.Is(err, ErrSessionClosed) {
		t.Errorf("second Close: %v", err)
	}
	if err := found[0].Delete(); err != nil {
		t.Fatal(err)
	}
	if err := found[0].EncryptBlock(blk[:], blk[:]); !errors.Is(err, ErrKeyDeleted) {
		t.Errorf("deleted key: %v", err)
	}
	if left, _ := s2.FindKeys("k"); len(left) != 0 {
		t.Errorf("%d keys left after Delete", len(left))
	}
}
