package ceremony

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/zap"

	"payhsm/appliance"
	"payhsm/ceremony/mpa"
	"payhsm/hsm/softhsm"
)

// TestMpaCommandsOffline runs the mpa-* commands with no daemon: teams
// under dual control, the status listing, and a session approved by two
// team members, one at a time, on the data directory itself.
func TestMpaCommandsOffline(t *testing.T) {
	if _, err := os.Stat(softhsm.DefaultModule); err != nil {
		t.Skipf("SoftHSM2 is not installed: %v", err)
	}
	dir := t.TempDir()
	run := func(stdin string, args ...string) (int, string) {
		var out bytes.Buffer
		code := Main(append(args, "--dev", "--data-dir", dir), strings.NewReader(stdin), &out, &out)
		return code, out.String()
	}
	spec := filepath.Join(t.TempDir(), "ceremony.json")
	if err := os.WriteFile(spec, []byte(`{"custodians":["alice","bob","carol"],"profiles":[{"name":"default"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := run("alice-passphrase\nalice-passphrase\nbob-passphrase!\nbob-passphrase!\ncarol-passphrase\ncarol-passphrase\n",
		"init", "--ceremony", spec); code != 0 {
		t.Fatalf("init: exit %d\n%s", code, out)
	}
	const dual = "alice\nalice-passphrase\nbob\nbob-passphrase!\n"
	if code, out := run("alice\nalice-passphrase\nbob\nnot-bobs-passphrase\n", "mpa-team-create", "--team", "root-ca", "--members", "alice,bob,carol"); code != 1 ||
		!strings.Contains(out, "failed authentication") {
		t.Fatalf("team without dual control: exit %d\n%s", code, out)
	}
	if code, out := run(dual, "mpa-team-create", "--team", "root-ca", "--members", "alice,bob,mallory"); code != 1 || !strings.Contains(out, "not an enrolled custodian") {
		t.Fatalf("team with a stranger: exit %d\n%s", code, out)
	}
	code, out := run(dual, "mpa-team-create", "--team", "root-ca", "--members", "alice,bob,carol", "--threshold", "2")
	teamARN := regexp.MustCompile(`arn:aws:mpa:us-east-1:000000000000:approval-team/root-ca`).FindString(out)
	if code != 0 || teamARN == "" || !mpa.ValidTeamARN(teamARN) {
		t.Fatalf("mpa-team-create: exit %d\n%s", code, out)
	}

	// A root certificate import asks for approval (as the daemon would run it).
	cfg := &appliance.Config{DataDir: dir}
	cfg.Defaults()
	app, err := appliance.Open(cfg, true, false, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	reg := mpa.Open(app.Store, app.Custody.FleetSealer(cfg.Profile), cfg.Region, cfg.Account)
	if _, err := reg.Associate(mpa.ImportRootCertificate, teamARN, "", mpa.Requester{}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Authorize(mpa.ImportRootCertificate, []byte("certificate"), "partner root", mpa.Requester{Principal: "test"}); err == nil {
		t.Fatal("unapproved import allowed")
	}
	ss, err := reg.Sessions(false)
	if err != nil || len(ss) != 1 {
		t.Fatalf("sessions: %v %v", ss, err)
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}

	if code, out := run("", "mpa-status"); code != 0 || !strings.Contains(out, teamARN+": 2 of alice, bob, carol") || !strings.Contains(out, ss[0].ARN) ||
		!strings.Contains(out, `requester's comment: "partner root"`) {
		t.Fatalf("mpa-status: exit %d\n%s", code, out)
	}
	if code, out := run("carol\ncarol-passphrase\nn\n\n", "mpa-approve", "--session", ss[0].ID); code != 1 || !strings.Contains(out, "Not counted") {
		t.Fatalf("a vote not confirmed: exit %d\n%s", code, out)
	}
	if code, out := run("carol\ncarol-passphrase\ny\n\n", "mpa-approve", "--session", ss[0].ID); code != 0 || !strings.Contains(out, "status: PENDING, 1 of 2 approvals (carol)") {
		t.Fatalf("first approval: exit %d\n%s", code, out)
	}
	if code, out := run("alice\nalice-passphrase\ny\n", "mpa-approve", "--session", ss[0].ARN); code != 0 || !strings.Contains(out, "status: APPROVED") {
		t.Fatalf("second approval: exit %d\n%s", code, out)
	}
	if code, out := run(dual, "mpa-team-remove", "--team", "root-ca"); code != 1 || !strings.Contains(out, "disassociate it first") {
		t.Fatalf("removing an associated team: exit %d\n%s", code, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "audit", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"protocol":"console","operation":"mpa-team-create","account":"000000000000","custodians":["alice","bob"],"outcome":"ok"`,
		`"protocol":"console","operation":"mpa-team-create","account":"000000000000","outcome":"refused"`,
		`"operation":"mpa-approve","account":"000000000000","custodians":["carol"],"outcome":"ok"`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the audit trail has no %s", want)
		}
	}
}
