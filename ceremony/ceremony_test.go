package ceremony

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"payhsm/appliance"
	"payhsm/audit"
	"payhsm/hsm/softhsm"
)

func TestParseFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string // "" for valid; else a substring of the error
	}{
		{"generated", `{"custodians":["alice","bob"],"profiles":[{"name":"default"}]}`, ""},
		{"components", `{"custodians":["alice","bob","carol"],"profiles":[{"name":"lmk01","components":3,"componentKCVs":["ABCDEF","012345","6789AB"],"kcv":"FEDCBA"}]}`, ""},
		{"one custodian", `{"custodians":["alice"],"profiles":[{"name":"default"}]}`, "at least two custodians"},
		{"custodian name", `{"custodians":["Alice","bob"],"profiles":[{"name":"default"}]}`, `custodian name "Alice"`},
		{"custodian twice", `{"custodians":["alice","alice"],"profiles":[{"name":"default"}]}`, "listed twice"},
		{"profile starts with a digit", `{"custodians":["alice","bob"],"profiles":[{"name":"1default"}]}`, `profile name "1default"`},
		{"profile too long", `{"custodians":["alice","bob"],"profiles":[{"name":"` + strings.Repeat("a", 33) + `"}]}`, "profiles[0].name"},
		{"profile twice", `{"custodians":["alice","bob"],"profiles":[{"name":"a"},{"name":"a"}]}`, "listed twice"},
		{"no profiles", `{"custodians":["alice","bob"]}`, "no profiles"},
		{"four components", `{"custodians":["alice","bob"],"profiles":[{"name":"a","components":4}]}`, "2 or 3"},
		{"more components than custodians", `{"custodians":["alice","bob"],"profiles":[{"name":"a","components":3}]}`, "need 3 custodians"},
		{"check values for a generated key", `{"custodians":["alice","bob"],"profiles":[{"name":"a","kcv":"ABCDEF"}]}`, "generated key"},
		{"lower-case check value", `{"custodians":["alice","bob"],"profiles":[{"name":"a","components":2,"kcv":"abcdef"}]}`, "upper-case hex"},
		{"unknown member", `{"custodians":["alice","bob"],"profiles":[{"name":"a"}],"extra":1}`, "unknown field"},
		{"trailing data", `{"custodians":["alice","bob"],"profiles":[{"name":"a"}]} {}`, "trailing data"},
	}
	for _, tc := range tests {
		_, err := ParseFile([]byte(tc.in))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

// TestStepsStopWhenAuditFails runs ceremonies on a --dev appliance whose
// audit trail cannot be written (its file is /dev/full): nothing is done —
// no custodian enrolled, no rotation begun, no component shown — and the
// ceremony says why.
func TestStepsStopWhenAuditFails(t *testing.T) {
	if _, err := os.Stat(softhsm.DefaultModule); err != nil {
		t.Skipf("SoftHSM2 is not installed: %v", err)
	}
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skipf("/dev/full: %v", err)
	}
	dir := t.TempDir()
	spec := filepath.Join(t.TempDir(), "ceremony.json")
	if err := os.WriteFile(spec, []byte(`{"custodians":["alice","bob"],"profiles":[{"name":"default"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(stdin string, args ...string) (int, string) {
		var out bytes.Buffer
		code := Main(append(args, "--dev", "--data-dir", dir), strings.NewReader(stdin), &out, &out)
		return code, out.String()
	}
	trailDir := filepath.Join(dir, "audit")
	active := filepath.Join(trailDir, audit.ActiveName)
	toFull := func() {
		if err := os.MkdirAll(trailDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(active, active+".saved"); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if err := os.Symlink("/dev/full", active); err != nil {
			t.Fatal(err)
		}
	}
	restore := func() {
		if err := os.Remove(active); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(active+".saved", active); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}

	// init: the trail cannot be written, so no custodian is enrolled.
	toFull()
	if code, out := run(enrol, "init", "--ceremony", spec); code != 1 || !strings.Contains(out, "audit trail") || strings.Contains(out, "passphrase") {
		t.Fatalf("init with a full audit trail: exit %d\n%s", code, out)
	}
	restore()
	if code, out := run("", "status"); code != 0 || strings.Contains(out, "Profile default") || strings.Contains(out, "alice") {
		t.Fatalf("status after the stopped init: exit %d\n%s", code, out)
	}

	// A working trail: init, then init --overwrite, which moves the trail
	// to the new region main key.
	if code, out := run(enrol, "init", "--ceremony", spec); code != 0 {
		t.Fatalf("init: exit %d\n%s", code, out)
	}
	_, out := run("", "status")
	i := strings.Index(out, "Region main key KCV: ")
	if i < 0 {
		t.Fatalf("status:\n%s", out)
	}
	kcv := out[i+len("Region main key KCV: "):][:6]
	if code, out := run(approve+"ERASE "+kcv+"\n"+enrol, "init", "--overwrite", "--ceremony", spec); code != 0 {
		t.Fatalf("init --overwrite: exit %d\n%s", code, out)
	}
	b, err := os.ReadFile(active)
	if err != nil || !strings.Contains(string(b), `"operation":"init-overwrite","custodians":["alice","bob"],"kcvs":{"region":"`+kcv+`"},"outcome":"started"`) ||
		!strings.Contains(string(b), `"prevKeyId"`) {
		t.Fatalf("audit trail: %v\n%s", err, b)
	}

	// rotate (offline): the trail cannot be written, so the rotation does not begin.
	toFull()
	if code, out := run(approve, "rotate", "--profile", "default"); code != 1 || !strings.Contains(out, "audit trail") {
		t.Fatalf("rotate with a full audit trail: exit %d\n%s", code, out)
	}
	restore()
	if code, out := run("", "status"); code != 0 || !strings.Contains(out, "(version 1)") || strings.Contains(out, "rotation in progress") {
		t.Fatalf("status after the stopped rotation: exit %d\n%s", code, out)
	}
	// backup-components: no component is shown.
	toFull()
	if code, out := run(approve, "backup-components", "--profile", "default"); code != 1 || strings.Contains(out, "component 1 of 2") {
		t.Fatalf("backup-components with a full audit trail: exit %d\n%s", code, out)
	}
	restore()
}

const (
	enrol   = "alice-passphrase\nalice-passphrase\nbob-passphrase!\nbob-passphrase!\n"
	approve = "alice\nalice-passphrase\nbob\nbob-passphrase!\n"
)

// TestStepStopsWhenItsRecordFails: a ceremony step whose own record cannot
// be written stops the ceremony there: enrolled custodians get no profile
// key, and a backup shows no component.
func TestStepStopsWhenItsRecordFails(t *testing.T) {
	if _, err := os.Stat(softhsm.DefaultModule); err != nil {
		t.Skipf("SoftHSM2 is not installed: %v", err)
	}
	cfg := &appliance.Config{DataDir: t.TempDir()}
	cfg.Defaults()
	app, err := appliance.Open(cfg, true, true, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	trail, err := cfg.OpenAudit(app.Custody, "ceremony", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := trail.Close(); err != nil { // a closed trail refuses every record
		t.Fatal(err)
	}
	var out bytes.Buffer
	s := &session{con: NewConsole(strings.NewReader(enrol), &out), app: app, audit: trail, cfg: cfg, dev: true}
	defer func() {
		if err := s.close(); err != nil {
			t.Error(err)
		}
	}()
	spec, err := ParseFile([]byte(`{"custodians":["alice","bob"],"profiles":[{"name":"default"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.init(spec, false); err == nil || !strings.Contains(err.Error(), "enroll-custodians (ok) could not be recorded") {
		t.Fatalf("init: %v\n%s", err, &out)
	}
	if _, err := app.Custody.Profile("default"); err == nil {
		t.Fatal("a profile main key was made after its ceremony could not be recorded")
	}
	if _, err := app.Custody.CreateProfile("default"); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	s.con = NewConsole(strings.NewReader(approve), &out)
	if err := s.backupComponents("default", 2); err == nil || !strings.Contains(err.Error(), "backup-components (started) could not be recorded") ||
		strings.Contains(out.String(), "component 1 of 2") {
		t.Fatalf("backup-components: %v\n%s", err, &out)
	}
}

// TestExampleCeremonyFile: the documented example (docs/examples/ceremony.json,
// explained in docs/ceremony-file.md) is a valid ceremony file.
func TestExampleCeremonyFile(t *testing.T) {
	t.Parallel()
	f, err := LoadFile("../docs/examples/ceremony.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Custodians) != 3 || len(f.Profiles) != 2 || f.Profiles[1].Components != 3 {
		t.Errorf("example parsed as %+v", f)
	}
}

// TestInitOnDevAppliance: an appliance made by `payhsm serve --dev` (make
// run) has a profile main key but no custodians. init enrols custodians on
// it, keeps the existing key and creates the missing ones; a file that would
// replace the existing key is refused before anyone is prompted; and rotate
// says there are no custodians before prompting for approvers.
func TestInitOnDevAppliance(t *testing.T) {
	if _, err := os.Stat(softhsm.DefaultModule); err != nil {
		t.Skipf("SoftHSM2 is not installed: %v", err)
	}
	dir := t.TempDir()
	cfg := &appliance.Config{DataDir: dir}
	cfg.Defaults()
	app, err := appliance.Open(cfg, true, true, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	prof, err := app.Custody.CreateProfile("default") // as serve --dev does
	if err != nil {
		t.Fatal(err)
	}
	devKCV := prof.KCV()
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	run := func(stdin string, args ...string) (int, string) {
		var out bytes.Buffer
		code := Main(append(args, "--dev", "--data-dir", dir), strings.NewReader(stdin), &out, &out)
		return code, out.String()
	}
	writeSpec := func(s string) string {
		p := filepath.Join(t.TempDir(), "ceremony.json")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const enrol = "alice-passphrase\nalice-passphrase\nbob-passphrase!\nbob-passphrase!\n"
	const approve = "alice\nalice-passphrase\nbob\nbob-passphrase!\n"

	if code, out := run(approve, "rotate", "--profile", "default"); code != 1 || !strings.Contains(out, "no custodians are enrolled") || strings.Contains(out, "Approver 1") {
		t.Errorf("rotate without custodians: exit %d, want the error before any prompt:\n%s", code, out)
	}
	replace := writeSpec(`{"custodians":["alice","bob"],"profiles":[{"name":"default","components":2}]}`)
	if code, out := run(enrol, "init", "--ceremony", replace); code != 1 || !strings.Contains(out, "would replace it") || strings.Contains(out, "passphrase") {
		t.Errorf("init replacing the dev profile key: exit %d, want a refusal before any prompt:\n%s", code, out)
	}
	spec := writeSpec(`{"custodians":["alice","bob"],"profiles":[{"name":"default"},{"name":"lmk01"}]}`)
	code, out := run(enrol, "init", "--ceremony", spec)
	if code != 0 || !strings.Contains(out, "Profile default: main key already present, KCV "+devKCV+"; kept") ||
		!strings.Contains(out, "Profile lmk01: main key generated") {
		t.Fatalf("init on the dev appliance: exit %d\n%s", code, out)
	}
	if code, out := run("", "status"); code != 0 || !strings.Contains(out, devKCV) || !strings.Contains(out, "alice") {
		t.Errorf("status after init: exit %d\n%s", code, out)
	}
	if code, out := run(approve, "rotate", "--profile", "default"); code != 0 {
		t.Errorf("rotate with the enrolled custodians: exit %d\n%s", code, out)
	}
	if code, out := run(enrol, "init", "--ceremony", spec); code != 1 || !strings.Contains(out, "already initialized") {
		t.Errorf("init again: exit %d\n%s", code, out)
	}
}
