package custody_test

import (
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"payhsm/hsm/custody"
	"payhsm/hsm/custody/memtoken"
	"payhsm/hsm/kcv"
	"payhsm/hsm/softhsm"
	"payhsm/hsm/tr31"
)

// Every behaviour test runs on two modules: SoftHSM2 through crypto11 (the
// real PKCS#11 path; skipped when SoftHSM2 is not installed) and memtoken, so
// the fake that the layers above test with is held to the same behaviour.

// env is a PKCS#11 module holding two initialized tokens, A and B.
type env struct {
	name     string
	cfg      func(token int) custody.Config // token 0 is A, 1 is B
	module   custody.Module
	setDead  func(bool) // nil when the module cannot simulate a dead token
	parallel bool       // SoftHSM2 is configured per process (SOFTHSM2_CONF): not parallel
}

type tokenCred struct{ label, pin string }

func envs(t *testing.T) []env {
	t.Helper()
	mem := memtoken.New()
	creds := [2]tokenCred{{"token-a", "1234"}, {"token-b", "5678"}}
	for _, c := range creds {
		if err := mem.InitToken(c.label, c.pin); err != nil {
			t.Fatal(err)
		}
	}
	out := []env{{
		name: "memtoken",
		cfg: func(i int) custody.Config {
			return custody.Config{Module: mem, TokenLabel: creds[i].label, PIN: creds[i].pin}
		},
		module: mem, setDead: mem.SetDead, parallel: true,
	}}
	if _, err := os.Stat(softhsm.DefaultModule); err != nil {
		t.Log("SoftHSM2 is not installed: testing on memtoken only")
		return out
	}
	dir := t.TempDir()
	var toks [2]*softhsm.Token
	for i, label := range []string{"token-a", "token-b"} {
		tok, err := softhsm.Provision(dir, "", label, true)
		if err != nil {
			t.Fatal(err)
		}
		toks[i] = tok
	}
	return append(out, env{
		name: "softhsm2",
		cfg: func(i int) custody.Config {
			return custody.Config{ModulePath: toks[i].Module, TokenLabel: toks[i].Label, PIN: toks[i].PIN}
		},
		module: custody.PKCS11Module(toks[0].Module),
	})
}

// forEach runs f on every module.
func forEach(t *testing.T, f func(t *testing.T, e env)) {
	for _, e := range envs(t) {
		t.Run(e.name, func(t *testing.T) {
			if e.parallel {
				t.Parallel()
			}
			f(t, e)
		})
	}
}

// memMeta is a MetaStore in a map.
type memMeta struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newMeta() *memMeta { return &memMeta{m: map[string][]byte{}} }

func (s *memMeta) GetMeta(name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[name]
	if !ok {
		return nil, fmt.Errorf("meta %q: %w", name, custody.ErrMetaNotFound)
	}
	return bytes.Clone(v), nil
}

func (s *memMeta) PutMeta(name string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[name] = bytes.Clone(value)
	return nil
}

func (s *memMeta) PutMetaIfAbsent(name string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[name]; ok {
		return fmt.Errorf("meta %q exists", name)
	}
	s.m[name] = bytes.Clone(value)
	return nil
}

func (s *memMeta) MetaNames(prefix string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.m {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out, nil
}

func open(t *testing.T, cfg custody.Config, meta custody.MetaStore) *custody.Custodian {
	t.Helper()
	c, err := custody.Open(cfg, meta, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func initialized(cfg custody.Config) custody.Config {
	cfg.Initialize = true
	return cfg
}

// TestRegionKeyLifecycle: the first start creates the region main key and
// records its check value; a later start finds the same key, and what was
// sealed before opens after.
func TestRegionKeyLifecycle(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		meta := newMeta()
		c1, err := custody.Open(initialized(e.cfg(0)), meta, nil)
		if err != nil {
			t.Fatal(err)
		}
		kcv1 := c1.RegionKeyKCV()
		if len(kcv1) != 6 || strings.ToUpper(kcv1) != kcv1 {
			t.Fatalf("region key KCV %q", kcv1)
		}
		sealed, err := c1.Seal([]byte("secret"), []byte("purpose"))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(sealed, []byte("secret")) {
			t.Fatal("sealed blob holds the plaintext")
		}
		if err := c1.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := c1.Seal([]byte("secret"), nil); err == nil { // an error, not a panic
			t.Fatal("Seal after Close succeeded")
		}
		if err := c1.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}

		c2 := open(t, e.cfg(0), meta) // no Initialize: the record and the key exist
		if c2.RegionKeyKCV() != kcv1 {
			t.Fatalf("KCV %s after reopening, %s before", c2.RegionKeyKCV(), kcv1)
		}
		pt, err := c2.Unseal(sealed, []byte("purpose"))
		if err != nil || string(pt) != "secret" {
			t.Fatalf("Unseal after reopening: %q, %v", pt, err)
		}
		if _, err := c2.Unseal(sealed, []byte("another purpose")); err == nil {
			t.Fatal("Unseal accepted another purpose's associated data")
		}
		tampered := bytes.Clone(sealed)
		tampered[len(tampered)-1] ^= 1
		if _, err := c2.Unseal(tampered, []byte("purpose")); err == nil {
			t.Fatal("Unseal accepted a tampered blob")
		}
		if _, err := c2.Unseal(sealed[:10], []byte("purpose")); err == nil {
			t.Fatal("Unseal accepted a truncated blob")
		}
	})
}

// TestOpenRefuses: every way a start can find the wrong token, key or record
// fails with an error that says what is wrong.
func TestOpenRefuses(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		// A keystore sealed under token A's region key.
		sealedA := newMeta()
		c := open(t, initialized(e.cfg(0)), sealedA)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		// Token B gets a different key under the same label for a keystore of its own.
		sealedB := newMeta()
		cb := open(t, initialized(e.cfg(1)), sealedB)
		if err := cb.Close(); err != nil {
			t.Fatal(err)
		}
		corrupt := newMeta()
		_ = corrupt.PutMeta("custody/region-main-key", []byte("{not json"))

		tests := []struct {
			name string
			cfg  custody.Config
			meta custody.MetaStore
			want string
		}{
			{"empty keystore without Initialize", e.cfg(0), newMeta(), "no region main key"},
			{"wrong PIN", withPIN(e.cfg(0), "0000"), sealedA, "open PKCS#11 token"},
			{"unknown token", withToken(e.cfg(0), "no-such-token"), sealedA, "open PKCS#11 token"},
			{"no module", custody.Config{TokenLabel: "token-a"}, sealedA, "module path and token label are required"},
			{"key of another token", e.cfg(1), sealedA, "wrong token"},
			{"key missing from the token", withLabel(e.cfg(0), "another-label"), sealedA, "is not in token"},
			{"corrupt record", e.cfg(0), corrupt, "record is corrupt"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				c, err := custody.Open(tc.cfg, tc.meta, nil)
				if err == nil {
					_ = c.Close()
					t.Fatal("Open succeeded")
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %q does not say %q", err, tc.want)
				}
			})
		}
	})
}

func withPIN(c custody.Config, pin string) custody.Config          { c.PIN = pin; return c }
func withToken(c custody.Config, label string) custody.Config      { c.TokenLabel = label; return c }
func withLabel(c custody.Config, label string) custody.Config      { c.RegionKeyLabel = label; return c }
func withModule(c custody.Config, m custody.Module) custody.Config { c.Module = m; return c }

// TestDuplicateRegionKeyLabel: two keys under the region key's label are refused.
func TestDuplicateRegionKeyLabel(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		cfg := withModule(e.cfg(1), e.module)
		tok, err := e.module.Login(cfg.TokenLabel, cfg.PIN)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"one", "two"} {
			if _, err := tok.GenerateAESKey([]byte(id), "twice", 256); err != nil {
				t.Fatal(err)
			}
		}
		keys, err := tok.FindKeys("twice")
		if err != nil || len(keys) != 2 {
			t.Fatalf("FindKeys: %d keys, %v", len(keys), err)
		}
		if err := tok.Close(); err != nil {
			t.Fatal(err)
		}
		c, err := custody.Open(initialized(withLabel(cfg, "twice")), newMeta(), nil)
		if err == nil {
			_ = c.Close()
			t.Fatal("Open accepted two region main keys")
		}
		if !strings.Contains(err.Error(), "must be unique") {
			t.Fatalf("error %q", err)
		}
	})
}

// TestDestroyRegionKey: after the ceremony's destruction the keystore no
// longer opens.
func TestDestroyRegionKey(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		meta := newMeta()
		cfg := withLabel(e.cfg(0), "destroy-me")
		c := open(t, initialized(cfg), meta)
		if err := c.DestroyRegionKey(); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if c, err := custody.Open(cfg, meta, nil); err == nil || !strings.Contains(err.Error(), "is not in token") {
			if c != nil {
				_ = c.Close()
			}
			t.Fatalf("Open after destruction: %v", err)
		}
	})
}

func aesKCV(t *testing.T, key []byte) string {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ToUpper(hex.EncodeToString(kcv.CMAC(b)))
}

// TestProfiles: profile main keys are sealed under the region key, unsealed
// on the next start with the same check value, wrap and unwrap key blocks,
// and rotate.
func TestProfiles(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		meta := newMeta()
		c1 := open(t, initialized(e.cfg(0)), meta)
		pmk := bytes.Repeat([]byte{0x42}, 32)
		p, err := c1.InstallProfile("default", pmk)
		if err != nil {
			t.Fatal(err)
		}
		if want := aesKCV(t, pmk); p.KCV() != want {
			t.Fatalf("profile KCV %s, want %s", p.KCV(), want)
		}
		if _, err := c1.InstallProfile("default", pmk); err == nil {
			t.Fatal("a profile was installed twice")
		}
		if _, err := c1.CreateProfile("Bad Name"); err == nil {
			t.Fatal("an invalid profile name was accepted")
		}
		if _, err := c1.CreateProfile("second"); err != nil {
			t.Fatal(err)
		}
		h := tr31.Header{KeyUsage: "K0", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'E'}
		clearKey := bytes.Repeat([]byte{7}, 16)
		block, err := p.Wrap(h, clearKey)
		if err != nil {
			t.Fatal(err)
		}
		if err := c1.Close(); err != nil {
			t.Fatal(err)
		}

		c2 := open(t, e.cfg(0), meta)
		if got := c2.ProfileNames(); strings.Join(got, ",") != "default,second" {
			t.Fatalf("ProfileNames %v", got)
		}
		if _, err := c2.Profile("nope"); !errors.Is(err, custody.ErrNoProfile) {
			t.Fatalf("unknown profile: %v", err)
		}
		p2, err := c2.Profile("default")
		if err != nil {
			t.Fatal(err)
		}
		if p2.KCV() != aesKCV(t, pmk) {
			t.Fatalf("KCV %s after reopening", p2.KCV())
		}
		if _, got, err := p2.Unwrap(block); err != nil || !bytes.Equal(got, clearKey) {
			t.Fatalf("Unwrap after reopening: %x, %v", got, err)
		}

		v, err := c2.BeginRotation("default", nil)
		if err != nil || v != 2 || !p2.Rotating() {
			t.Fatalf("BeginRotation: %d %v rotating=%v", v, err, p2.Rotating())
		}
		if _, err := c2.ExportProfileKey("default"); err == nil {
			t.Fatal("a profile key was exported mid-rotation")
		}
		newBlock, err := p2.Wrap(h, clearKey)
		if err != nil {
			t.Fatal(err)
		}
		if bv, err := custody.BlockVersion(newBlock); err != nil || bv != 2 {
			t.Fatalf("new block version %d %v", bv, err)
		}
		if _, _, err := p2.Unwrap(block); err != nil {
			t.Fatalf("old block mid-rotation: %v", err)
		}
		if err := c2.RetireOldVersions("default"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := p2.Unwrap(block); err == nil {
			t.Fatal("a block under a retired version still opens")
		}
		exported, err := c2.ExportProfileKey("default")
		if err != nil || aesKCV(t, exported) != p2.KCV() {
			t.Fatalf("ExportProfileKey: %v", err)
		}
	})
}

// TestDeadToken: a token that stops answering makes custody fail with errors
// (no panic, no partial record), and custody works again once it is back.
func TestDeadToken(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		if e.setDead == nil {
			t.Skip("this module cannot simulate a dead token")
		}
		meta := newMeta()
		c := open(t, initialized(e.cfg(0)), meta)
		if _, err := c.CreateProfile("before"); err != nil {
			t.Fatal(err)
		}
		c2 := open(t, e.cfg(0), meta) // a second start, whose profiles are still sealed

		e.setDead(true)
		if _, err := c.Seal([]byte("x"), nil); err == nil {
			t.Error("Seal on a dead token succeeded")
		}
		if _, err := c.CreateProfile("during"); err == nil {
			t.Error("CreateProfile on a dead token succeeded")
		}
		if _, err := meta.GetMeta("custody/profile/during"); !errors.Is(err, custody.ErrMetaNotFound) {
			t.Errorf("a failed CreateProfile left a record: %v", err)
		}
		if _, err := c2.Profile("before"); err == nil {
			t.Error("a sealed profile was unsealed on a dead token")
		}
		if _, err := custody.Open(e.cfg(0), meta, nil); err == nil || !errors.Is(err, memtoken.ErrDeviceRemoved) {
			t.Errorf("Open on a dead token: %v", err)
		}
		if _, err := custody.Open(initialized(e.cfg(1)), newMeta(), nil); err == nil {
			t.Error("Initialize on a dead token succeeded")
		}
		e.setDead(false)

		if _, err := c2.Profile("before"); err != nil {
			t.Fatalf("profile after the token came back: %v", err)
		}
		if _, err := c.CreateProfile("after"); err != nil {
			t.Fatalf("CreateProfile after the token came back: %v", err)
		}
	})
}
