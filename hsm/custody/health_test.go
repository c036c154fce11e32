package custody_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"payhsm/fault"
	"payhsm/hsm/custody"
	"payhsm/hsm/custody/memtoken"
	"payhsm/hsm/softhsm"
)

// clock is a settable time for the loss grace.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// unavailable reports whether err is the clean failure of a lost token.
func unavailable(err error) bool {
	return errors.Is(err, custody.ErrTokenUnavailable) && fault.KindOf(err) == fault.Unavailable &&
		fault.ClientMessage(err) == custody.TokenUnavailableMessage
}

func countLogs(logs *observer.ObservedLogs, substr string) int {
	n := 0
	for _, e := range logs.All() {
		if strings.Contains(e.Message, substr) {
			n++
		}
	}
	return n
}

// TestTokenLoss follows a token that goes away and comes back: the first
// failed probe makes it unavailable and is logged once; what needs the token
// fails cleanly at once; the unsealed main keys serve for the loss grace and
// are refused after it (logged once); a successful probe restores it all.
func TestTokenLoss(t *testing.T) {
	t.Parallel()
	mod := memtoken.New()
	if err := mod.InitToken("tok", "1234"); err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	core, logs := observer.New(zapcore.DebugLevel)
	meta := newMeta()
	cfg := custody.Config{Module: mod, TokenLabel: "tok", PIN: "1234", LossGrace: time.Minute, Now: clk.Now}
	c, err := custody.Open(initialized(cfg), meta, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if _, err := c.CreateProfile("default"); err != nil {
		t.Fatal(err)
	}
	sealed, err := c.Seal([]byte("secret"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	c2 := open(t, cfg, meta) // a second start: its profile is still sealed

	if err := c.Probe(); err != nil {
		t.Fatalf("probe of a healthy token: %v", err)
	}
	if st := c.TokenStatus(); !st.Available || st.Probes != 1 || st.Failures != 0 {
		t.Fatalf("healthy status %+v", st)
	}

	mod.SetDead(true)
	for range 3 {
		if err := c.Probe(); err == nil {
			t.Fatal("probe of a dead token succeeded")
		}
	}
	if err := c2.Probe(); err == nil {
		t.Fatal("probe of a dead token succeeded")
	}
	st := c.TokenStatus()
	if st.Available || !st.Since.Equal(clk.Now()) || st.Err == nil || st.Failures != 3 || st.Refusing {
		t.Fatalf("status of a lost token %+v", st)
	}
	if n := countLogs(logs, "PKCS#11 token unavailable:"); n != 1 {
		t.Errorf("the loss was logged %d times, want once", n)
	}
	if _, err := c.Seal([]byte("x"), nil); !unavailable(err) {
		t.Errorf("Seal on a lost token: %v", err)
	}
	if _, err := c.Unseal(sealed, []byte("aad")); !unavailable(err) {
		t.Errorf("Unseal on a lost token: %v", err)
	}
	if _, err := c2.Profile("default"); !unavailable(err) {
		t.Errorf("unsealing a profile on a lost token: %v", err)
	}
	// Within the grace the unsealed main keys serve.
	clk.Add(59 * time.Second)
	if err := c.Available(); err != nil {
		t.Errorf("Available within the grace: %v", err)
	}
	if _, err := c.Profile("default"); err != nil {
		t.Errorf("an unsealed profile within the grace: %v", err)
	}
	if _, err := c.RecordKey("default", 1); err != nil {
		t.Errorf("a record key within the grace: %v", err)
	}
	// After it, refused.
	clk.Add(time.Second)
	if err := c.Available(); !unavailable(err) {
		t.Errorf("Available after the grace: %v", err)
	}
	if _, err := c.Profile("default"); !unavailable(err) {
		t.Errorf("Profile after the grace: %v", err)
	}
	if _, err := c.RecordKey("default", 1); !unavailable(err) {
		t.Errorf("RecordKey after the grace: %v", err)
	}
	if st := c.TokenStatus(); !st.Refusing {
		t.Errorf("status after the grace %+v", st)
	}
	_ = c.Probe()
	_ = c.Probe()
	if n := countLogs(logs, "longer than the loss grace"); n != 1 {
		t.Errorf("the end of the grace was logged %d times, want once", n)
	}

	mod.SetDead(false)
	if err := c.Probe(); err != nil {
		t.Fatalf("probe of the revived token: %v", err)
	}
	if st := c.TokenStatus(); !st.Available || st.Recoveries != 1 || st.Err != nil || st.Refusing {
		t.Errorf("status after the return %+v", st)
	}
	if n := countLogs(logs, "available again"); n != 1 {
		t.Errorf("the return was logged %d times, want once", n)
	}
	if pt, err := c.Unseal(sealed, []byte("aad")); err != nil || string(pt) != "secret" {
		t.Errorf("Unseal after the return: %q %v", pt, err)
	}
	if err := c.Available(); err != nil {
		t.Errorf("Available after the return: %v", err)
	}
	if err := c2.Probe(); err != nil {
		t.Fatalf("second custodian's probe: %v", err)
	}
	if _, err := c2.Profile("default"); err != nil {
		t.Errorf("unsealing a profile after the return: %v", err)
	}
}

// TestTokenLossNoGrace: with a loss grace of zero, the first failed probe
// refuses at once.
func TestTokenLossNoGrace(t *testing.T) {
	t.Parallel()
	mod := memtoken.New()
	if err := mod.InitToken("tok", "1234"); err != nil {
		t.Fatal(err)
	}
	c := open(t, custody.Config{Module: mod, TokenLabel: "tok", PIN: "1234", Initialize: true}, newMeta())
	if _, err := c.CreateProfile("default"); err != nil {
		t.Fatal(err)
	}
	mod.SetDead(true)
	_ = c.Probe()
	if _, err := c.Profile("default"); !unavailable(err) {
		t.Errorf("Profile at once after the loss: %v", err)
	}
	if st := c.TokenStatus(); !st.Refusing {
		t.Errorf("status %+v", st)
	}
}

// TestTokenReplaced: a token under the same label whose region main key is
// another key (a re-initialized or swapped token) is not taken for the
// right one: the probe fails and keeps failing, and sealing is refused.
func TestTokenReplaced(t *testing.T) {
	t.Parallel()
	mod := memtoken.New()
	if err := mod.InitToken("tok", "1234"); err != nil {
		t.Fatal(err)
	}
	c := open(t, custody.Config{Module: mod, TokenLabel: "tok", PIN: "1234", Initialize: true}, newMeta())
	other, err := mod.Login("tok", "1234")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := other.FindKeys(custody.DefaultRegionKeyLabel)
	if err != nil || len(keys) != 1 {
		t.Fatal(keys, err)
	}
	if err := keys[0].Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.GenerateAESKey([]byte("id"), custody.DefaultRegionKeyLabel, 256); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		err := c.Probe()
		if err == nil || !strings.Contains(err.Error(), "a different token") {
			t.Fatalf("probe of a replaced key: %v", err)
		}
	}
	if _, err := c.Seal([]byte("x"), nil); !unavailable(err) {
		t.Errorf("Seal under a replaced key: %v", err)
	}
}

// TestSoftHSMTokenDirectory: the failure the issue describes, on SoftHSM2:
// the token directory moved away is found by the next probe, and the
// token, moved back, is taken up again by a new session. Not parallel: the
// module is recovered by closing its last session, which needs no other
// session open in the process.
func TestSoftHSMTokenDirectory(t *testing.T) {
	if _, err := os.Stat(softhsm.DefaultModule); err != nil {
		t.Skip("SoftHSM2 is not installed")
	}
	dir := t.TempDir()
	tok, err := softhsm.Provision(dir, "", "moved", true)
	if err != nil {
		t.Fatal(err)
	}
	c := open(t, custody.Config{ModulePath: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, Initialize: true}, newMeta())
	sealed, err := c.Seal([]byte("secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Probe(); err != nil {
		t.Fatalf("probe: %v", err)
	}
	tokens := filepath.Join(dir, "softhsm", "tokens")
	if err := os.Rename(tokens, tokens+".away"); err != nil {
		t.Fatal(err)
	}
	if err := c.Probe(); err == nil {
		t.Fatal("probe with the token directory moved away succeeded")
	}
	if _, err := c.Unseal(sealed, nil); !unavailable(err) {
		t.Errorf("Unseal with the token gone: %v", err)
	}
	if err := os.Rename(tokens+".away", tokens); err != nil {
		t.Fatal(err)
	}
	if err := c.Probe(); err != nil {
		t.Fatalf("probe with the token directory back: %v", err)
	}
	if pt, err := c.Unseal(sealed, nil); err != nil || string(pt) != "secret" {
		t.Errorf("Unseal with the token back: %q %v", pt, err)
	}
}
