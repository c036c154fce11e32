package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const approveAndConfirm = "alice\nalice-passphrase\nbob\nbob-passphrase!\ny\n"

func initAppliance(t *testing.T, dir, profiles string) {
	t.Helper()
	spec := filepath.Join(t.TempDir(), "ceremony.json")
	check(t, os.WriteFile(spec, []byte(`{"custodians":["alice","bob"],"profiles":[`+profiles+`]}`), 0o600))
	if out, err := runCeremony(t, dir, "alice-passphrase\nalice-passphrase\nbob-passphrase!\nbob-passphrase!\n", "init", "--ceremony", spec); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
}

var kcvLine = regexp.MustCompile(`Profile lmk01 main key KCV: ([0-9A-F]{6})`)

func profileKCV(t *testing.T, dir string) string {
	t.Helper()
	out, err := runCeremony(t, dir, "", "status")
	m := kcvLine.FindStringSubmatch(out)
	if err != nil || m == nil {
		return ""
	}
	return m[1]
}

// TestMainKeySyncTR34: appliance A (KDH) sends its lmk01 profile main key to
// appliance B (KRD) as a TR-34 token; both then report the same KCV, and the
// same key answers the same way on both. Replays, tampering and unconfirmed
// peers are refused. A split-component backup restores onto a third appliance.
func TestMainKeySyncTR34(t *testing.T) {
	t.Parallel()
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	initAppliance(t, a, `{"name":"default"},{"name":"lmk01"}`)
	initAppliance(t, b, `{"name":"default"}`)
	initAppliance(t, c, `{"name":"default"}`)
	want := profileKCV(t, a)
	if want == "" || profileKCV(t, b) != "" {
		t.Fatalf("before sync: A %q, B %q", want, profileKCV(t, b))
	}
	files := t.TempDir()
	krdCert, nonceFile, token := filepath.Join(files, "b.pem"), filepath.Join(files, "nonce.hex"), filepath.Join(files, "lmk01.tr34")
	if out, err := runCeremony(t, b, "", "krd-request", "--cert-out", krdCert, "--nonce-out", nonceFile); err != nil {
		t.Fatalf("krd-request: %v\n%s", err, out)
	}
	nonce, _ := os.ReadFile(nonceFile)
	// An unconfirmed fingerprint stops the export.
	if out, err := runCeremony(t, a, "alice\nalice-passphrase\nbob\nbob-passphrase!\nn\n", "export-main-key", "--profile", "lmk01",
		"--krd", krdCert, "--nonce", string(nonce), "--out", token); err == nil {
		t.Fatalf("export without a confirmed peer:\n%s", out)
	}
	out, err := runCeremony(t, a, approveAndConfirm, "export-main-key", "--profile", "lmk01", "--krd", krdCert, "--nonce", string(nonce), "--out", token)
	if err != nil || !strings.Contains(out, "KCV "+want) {
		t.Fatalf("export: %v\n%s", err, out)
	}
	// A tampered token is refused and stores nothing.
	der, _ := os.ReadFile(token)
	bad := append([]byte{}, der...)
	bad[len(bad)-10] ^= 1
	badFile := filepath.Join(files, "bad.tr34")
	check(t, os.WriteFile(badFile, bad, 0o600))
	if out, err := runCeremony(t, b, approveAndConfirm, "import-main-key", "--profile", "lmk01", "--kdh", token+".kdh.pem", "--token", badFile); err == nil {
		t.Fatalf("tampered token imported:\n%s", out)
	}
	if profileKCV(t, b) != "" {
		t.Fatalf("a refused import stored a key")
	}
	out, err = runCeremony(t, b, approveAndConfirm, "import-main-key", "--profile", "lmk01", "--kdh", token+".kdh.pem", "--token", token, "--kcv", want)
	if err != nil || !strings.Contains(out, "KCV "+want) {
		t.Fatalf("import: %v\n%s", err, out)
	}
	if got := profileKCV(t, b); got != want {
		t.Fatalf("B's lmk01 KCV %s, A's %s", got, want)
	}
	// The nonce is single-use: the same token cannot be imported again (as another profile).
	if out, err := runCeremony(t, b, approveAndConfirm, "import-main-key", "--profile", "lmk09", "--kdh", token+".kdh.pem", "--token", token); err == nil {
		t.Fatalf("replayed token imported:\n%s", out)
	}
	// The serving daemons agree: NC with LMK identifier 01 reports the same KCV on both.
	da, db := startDaemon(t, a), startDaemon(t, b)
	for _, d := range []*daemon{da, db} {
		if got := ncLMK(t, d, "01"); got != want {
			t.Errorf("daemon reports lmk01 KCV %s, want %s", got, want)
		}
	}
	// A key made on A under lmk01 (A0: a C0 key block under the profile main
	// key) works on B: the same CVV from both appliances.
	resp := hostSend(t, da.hostAddr, "0000A00FFFS%01#C0T2C00E00")
	if !strings.HasPrefix(resp, "0000A100S") {
		t.Fatalf("A0 on A: %q", resp)
	}
	block := resp[len("0000A100S") : len(resp)-6]
	cw := "0000CWS" + block + "4123456789012345;1226000%01"
	onA, onB := hostSend(t, da.hostAddr, cw), hostSend(t, db.hostAddr, cw)
	if !strings.HasPrefix(onA, "0000CX00") || onA != onB {
		t.Errorf("CVV on A %q, on B %q", onA, onB)
	}
	// Under B's default profile (another main key) the block does not verify.
	if got := hostSend(t, db.hostAddr, "0000CWS"+block+"4123456789012345;1226000"); strings.HasPrefix(got, "0000CX00") {
		t.Errorf("key block accepted under another profile: %q", got)
	}
	da.stop()
	db.stop()

	// Backup as two components on A, restore onto C with load-components.
	out, err = runCeremony(t, a, "alice\nalice-passphrase\nbob\nbob-passphrase!\nalice\nalice-passphrase\ny\nbob\nbob-passphrase!\ny\n",
		"backup-components", "--profile", "lmk01", "--components", "2")
	if err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	comps := regexp.MustCompile(`component \d of 2 \(write it down, then clear the screen\):\s+([0-9A-F]{64})\s+KCV ([0-9A-F]{6})`).FindAllStringSubmatch(out, -1)
	if len(comps) != 2 {
		t.Fatalf("backup output:\n%s", out)
	}
	spec := filepath.Join(files, "restore.json")
	check(t, os.WriteFile(spec, []byte(`{"custodians":["alice","bob"],"profiles":[{"name":"lmk01","components":2,"componentKCVs":["`+comps[0][2]+`","`+comps[1][2]+`"],"kcv":"`+want+`"}]}`), 0o600))
	in := "alice\nalice-passphrase\nbob\nbob-passphrase!\n" +
		"alice\nalice-passphrase\n" + comps[0][1] + "\ny\n" + "bob\nbob-passphrase!\n" + comps[1][1] + "\ny\n"
	if out, err := runCeremony(t, c, in, "load-components", "--ceremony", spec, "--profile", "lmk01"); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	if got := profileKCV(t, c); got != want {
		t.Fatalf("restored KCV %s, want %s", got, want)
	}
	// No component reaches the data directory or the audit log.
	for _, dir := range []string{a, c} {
		check(t, filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range comps {
				if strings.Contains(string(data), m[1]) {
					t.Errorf("component found in %s", p)
				}
			}
			return nil
		}))
	}
}

// TestMainKeySyncOnline synchronizes a profile main key between two serving
// daemons through their admin sockets: each side's custodians approve their
// step, the operator confirms both fingerprints, and the receiving daemon
// serves the profile at once.
func TestMainKeySyncOnline(t *testing.T) {
	t.Parallel()
	a, b := t.TempDir(), t.TempDir()
	initAppliance(t, a, `{"name":"default"},{"name":"lmk01"}`)
	initAppliance(t, b, `{"name":"default"}`)
	want := profileKCV(t, a)
	da, db := startDaemon(t, a), startDaemon(t, b)
	if got := hostSend(t, db.hostAddr, "0000NC%01"); got != "0000ND13" {
		t.Fatalf("B serves lmk01 before the sync: %q", got)
	}
	approvals := "alice\nalice-passphrase\nbob\nbob-passphrase!\n"
	// A wrong approval on the sending side stops the sync before any key moves.
	bad := exec.Command(binPath, "ceremony", "sync", "--from-admin", filepath.Join(a, "admin.sock"), "--to-admin", filepath.Join(b, "admin.sock"), "--profile", "lmk01")
	bad.Stdin = strings.NewReader("y\nalice\nalice-passphrase\nalice\nalice-passphrase\n")
	if out, err := bad.CombinedOutput(); err == nil {
		t.Fatalf("sync approved by one custodian:\n%s", out)
	}
	cmd := exec.Command(binPath, "ceremony", "sync", "--from-admin", filepath.Join(a, "admin.sock"), "--to-admin", filepath.Join(b, "admin.sock"), "--profile", "lmk01")
	cmd.Stdin = strings.NewReader("y\n" + approvals + "y\n" + approvals)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "synchronized online: KCV "+want) {
		t.Fatalf("online sync: %v\n%s", err, out)
	}
	if got := ncLMK(t, db, "01"); got != want {
		t.Errorf("B reports lmk01 KCV %s, want %s", got, want)
	}
	resp := hostSend(t, da.hostAddr, "0000A00FFFS%01#C0T2C00E00")
	block := resp[len("0000A100S") : len(resp)-6]
	cw := "0000CWS" + block + "4123456789012345;1226000%01"
	if onA, onB := hostSend(t, da.hostAddr, cw), hostSend(t, db.hostAddr, cw); !strings.HasPrefix(onA, "0000CX00") || onA != onB {
		t.Errorf("CVV on A %q, on B %q", onA, onB)
	}
	// Both audit logs record their side.
	for _, dir := range []string{a, b} {
		log, _ := os.ReadFile(filepath.Join(dir, "audit", "audit.log"))
		if !strings.Contains(string(log), "main-key") || !strings.Contains(string(log), want) {
			t.Errorf("audit log of %s:\n%s", dir, log)
		}
	}
}
