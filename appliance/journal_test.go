package appliance

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"payhsm/hsm/softhsm"
	"payhsm/keystore"
)

// devConfig is a --dev appliance in a new data directory.
func devConfig(t *testing.T) *Config {
	t.Helper()
	if _, err := os.Stat(softhsm.DefaultModule); err != nil {
		t.Skip("SoftHSM2 not installed")
	}
	cfg := &Config{DataDir: t.TempDir()}
	cfg.Defaults()
	return cfg
}

// copyDir copies the directory tree src to dst (a backup, taken while the
// appliance is stopped).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.RemoveAll(dst); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// TestJournalAnchor: a new appliance's journal starts once its profile
// exists and is anchored in the token at close; the key store put back to
// a copy taken earlier is refused with the one-line message naming the
// accept command; inspection opens it; accepting it moves the anchor past
// both, and the appliance opens again.
func TestJournalAnchor(t *testing.T) {
	t.Parallel()
	cfg := devConfig(t)
	log := zap.NewNop()
	a, err := Open(cfg, true, true, log)
	if err != nil {
		t.Fatal(err)
	}
	if a.Store.JournalSeq() != 0 || a.anchor.on {
		t.Fatal("journal started before the profile exists")
	}
	if _, err := a.Custody.CreateProfile(cfg.Profile); err != nil {
		t.Fatal(err)
	}
	if err := a.StartJournal(); err != nil {
		t.Fatal(err)
	}
	if err := a.Store.PutMeta("one", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "keystore")
	copyDir(t, cfg.KeystoreDir(), backup)

	a, err = Open(cfg, true, false, log)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"two", "three"} {
		if err := a.Store.PutMeta(n, []byte(n)); err != nil {
			t.Fatal(err)
		}
	}
	seq := a.Store.JournalSeq()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a, err = Open(cfg, true, false, log)
	if err != nil {
		t.Fatal(err)
	}
	if anc, found, err := a.Custody.StoreAnchor(); !found || err != nil || anc.Seq != seq {
		t.Fatalf("anchor %+v %v %v, want sequence %d", anc, found, err, seq)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	copyDir(t, backup, cfg.KeystoreDir())
	_, err = Open(cfg, true, false, log)
	if !errors.Is(err, keystore.ErrRolledBack) || strings.Contains(err.Error(), "\n") ||
		!strings.Contains(err.Error(), "older than this appliance's token (restored from a backup?)") ||
		!strings.Contains(err.Error(), "payhsm keystore accept-restore --dev --data-dir "+cfg.DataDir) {
		t.Fatalf("the restored store: %v", err)
	}
	insp, err := OpenForInspection(cfg, true, log)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := insp.Store.Verify()
	if err != nil || !rep.Journal.Damaged || len(rep.Failures) != 1 || !strings.Contains(rep.Failures[0].Reason, "older than the token") {
		t.Fatalf("inspection: %+v %v", rep, err)
	}
	if err := insp.Close(); err != nil {
		t.Fatal(err)
	}
	acc, rr, err := OpenAcceptingRestore(cfg, true, log)
	if err != nil {
		t.Fatal(err)
	}
	if rr.Anchor != seq || rr.Seq != seq+1 {
		t.Fatalf("accepted: %+v", rr)
	}
	if err := acc.Close(); err != nil {
		t.Fatal(err)
	}
	a, err = Open(cfg, true, false, log)
	if err != nil {
		t.Fatalf("after accepting: %v", err)
	}
	if _, err := a.Store.GetMeta("two"); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("a record written after the backup: %v", err)
	}
	if rep, err := a.Store.Verify(); err != nil || len(rep.Failures) != 0 || !rep.Journal.Checked {
		t.Fatalf("Verify after accepting: %+v %v", rep, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}
