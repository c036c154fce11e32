package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCeremonyOnMakeRunAppliance: the appliance `make run` starts (serve
// --dev) has a profile main key but no custodians. With the daemon stopped,
// ceremony init enrols custodians on it and keeps its key; started again,
// the daemon serves the same key, and a dual-control ceremony (rotate,
// online through the admin socket) runs.
func TestCeremonyOnMakeRunAppliance(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	d := startDaemon(t, dir)
	_, kcv := ncKCV(t, d)
	d.stop()

	spec := filepath.Join(t.TempDir(), "c.json")
	check(t, os.WriteFile(spec, []byte(`{"custodians":["alice","bob"],"profiles":[{"name":"default"}]}`), 0o600))
	out, err := runCeremony(t, dir, "alice-passphrase\nalice-passphrase\nbob-passphrase!\nbob-passphrase!\n", "init", "--ceremony", spec)
	if err != nil || !strings.Contains(out, "main key already present, KCV "+kcv+"; kept") {
		t.Fatalf("init on the make run appliance: %v\n%s", err, out)
	}

	d = startDaemon(t, dir)
	if _, again := ncKCV(t, d); again != kcv {
		t.Fatalf("profile main key KCV %s after init, was %s", again, kcv)
	}
	out, err = runCeremony(t, dir, "alice\nalice-passphrase\nbob\nbob-passphrase!\n", "rotate", "--profile", "default")
	if err != nil || !strings.Contains(out, "online") {
		t.Fatalf("rotate on the serving appliance: %v\n%s", err, out)
	}
	if _, rotated := ncKCV(t, d); rotated == kcv {
		t.Errorf("profile main key KCV unchanged by the rotation")
	}
}
