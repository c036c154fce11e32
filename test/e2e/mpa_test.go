package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestMpaRootCertificateImport drives Multi-Party Approval end to end with
// the real daemon, the AWS CLI and the ceremony tool: a team of three
// custodians (2 of 3) is associated with IMPORT_ROOT_PUBLIC_KEY_CERTIFICATE;
// a root certificate import is refused until two custodians approve its
// session through `payhsm ceremony mpa-approve`, then succeeds once; the
// disassociation waits for the team's approval, then the import is free again.
func TestMpaRootCertificateImport(t *testing.T) {
	if _, err := exec.LookPath("aws"); err != nil {
		t.Skip("the AWS CLI is not installed")
	}
	t.Parallel()
	dir := t.TempDir()
	spec := filepath.Join(t.TempDir(), "ceremony.json")
	check(t, os.WriteFile(spec, []byte(`{"custodians":["alice","bob","carol"],"profiles":[{"name":"default"}]}`), 0o600))
	if out, err := runCeremony(t, dir, "alice-passphrase\nalice-passphrase\nbob-passphrase!\nbob-passphrase!\ncarol-passphrase\ncarol-passphrase\n",
		"init", "--ceremony", spec); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	d := startDaemon(t, dir)
	cli := func(args ...string) (map[string]any, string, error) {
		cmd := exec.Command("aws", append([]string{"payment-cryptography", "--endpoint-url", d.httpURL, "--output", "json"}, args...)...)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+d.keyID, "AWS_SECRET_ACCESS_KEY="+d.secret, "AWS_MAX_ATTEMPTS=1",
			"AWS_DEFAULT_REGION=us-east-1", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var m map[string]any
		_ = json.Unmarshal(stdout.Bytes(), &m)
		return m, stderr.String(), err
	}
	assoc := func(m map[string]any) map[string]any {
		a, _ := m["MpaTeamAssociation"].(map[string]any)
		return a
	}
	const action = "IMPORT_ROOT_PUBLIC_KEY_CERTIFICATE"

	// The team, formed under dual control through the daemon's admin socket.
	out, err := runCeremony(t, dir, approvalsInput, "mpa-team-create", "--team", "root-ca", "--members", "alice,bob,carol", "--threshold", "2")
	teamARN := regexp.MustCompile(`arn:aws:mpa:[a-z0-9-]+:[0-9]{12}:approval-team/root-ca`).FindString(out)
	if err != nil || teamARN == "" {
		t.Fatalf("mpa-team-create: %v\n%s", err, out)
	}
	// Not associated yet: the model's ResourceNotFoundException.
	if _, stderr, err := cli("get-mpa-team-association", "--action", action); err == nil || !strings.Contains(stderr, "ResourceNotFoundException") {
		t.Fatalf("get-mpa-team-association before associating: %v %s", err, stderr)
	}
	// A team that does not exist on the appliance.
	if _, stderr, err := cli("associate-mpa-team", "--action", action, "--mpa-team-arn", "arn:aws:mpa:us-east-1:000000000000:approval-team/nobody"); err == nil ||
		!strings.Contains(stderr, "ResourceNotFoundException") {
		t.Fatalf("associate an unknown team: %v %s", err, stderr)
	}
	m, stderr, err := cli("associate-mpa-team", "--action", action, "--mpa-team-arn", teamARN, "--requester-comment", "protect the trust anchors")
	if a := assoc(m); err != nil || a["AssociationState"] != "ACTIVE" || a["MpaTeamArn"] != teamARN || a["Action"] != action {
		t.Fatalf("associate-mpa-team: %v %v %s", m, err, stderr)
	}
	if m, stderr, err := cli("get-mpa-team-association", "--action", action); err != nil || assoc(m)["AssociationState"] != "ACTIVE" {
		t.Fatalf("get-mpa-team-association: %v %v %s", m, err, stderr)
	}

	ca := newPartnerCA(t)
	material := func(c string) string {
		b, _ := json.Marshal(map[string]any{"RootCertificatePublicKey": map[string]any{"KeyAttributes": map[string]any{
			"KeyAlgorithm": "RSA_2048", "KeyClass": "PUBLIC_KEY", "KeyModesOfUse": map[string]any{"Verify": true},
			"KeyUsage": "TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE"}, "PublicKeyCertificate": c}})
		return string(b)
	}
	root := material(certB64(ca.cert))
	// Without a comment: the guide makes RequesterComment required for a protected import.
	if _, stderr, err := cli("import-key", "--key-material", root); err == nil || !strings.Contains(stderr, "ValidationException") ||
		!strings.Contains(stderr, "RequesterComment") {
		t.Fatalf("import without a comment: %v %s", err, stderr)
	}
	sessionRe := regexp.MustCompile(`arn:aws:mpa:[a-z0-9-]+:[0-9]{12}:session/root-ca/[a-zA-Z0-9_-]+`)
	refused := func(want string) string {
		t.Helper()
		_, stderr, err := cli("import-key", "--key-material", root, "--requester-comment", "partner root for TR-34")
		s := sessionRe.FindString(stderr)
		if err == nil || !strings.Contains(stderr, "AccessDeniedException") || s == "" || !strings.Contains(stderr, want) {
			t.Fatalf("import before approval: want AccessDeniedException naming a session and %q: %v %s", want, err, stderr)
		}
		return s
	}
	session := refused("PENDING (0 of 2 approvals)")
	if again := refused("PENDING (0 of 2 approvals)"); again != session {
		t.Fatalf("the same certificate opened a second session: %s, then %s", session, again)
	}

	// One approval is not enough; a custodian cannot approve twice; a wrong passphrase is refused.
	if out, err := runCeremony(t, dir, "alice\nalice-passphrase\ny\n\n", "mpa-approve", "--session", session); err != nil || !strings.Contains(out, "1 of 2 approvals") {
		t.Fatalf("first approval: %v\n%s", err, out)
	}
	refused("PENDING (1 of 2 approvals)")
	if out, err := runCeremony(t, dir, "alice\nalice-passphrase\ny\n", "mpa-approve", "--session", session); err == nil || !strings.Contains(out, "already approved") {
		t.Fatalf("a second approval by alice: %v\n%s", err, out)
	}
	if out, err := runCeremony(t, dir, "bob\nwrong-passphrase\ny\n", "mpa-approve", "--session", session); err == nil || !strings.Contains(out, "authentication failed") {
		t.Fatalf("a wrong passphrase: %v\n%s", err, out)
	}
	refused("PENDING (1 of 2 approvals)")
	if out, err := runCeremony(t, dir, "bob\nbob-passphrase!\ny\n", "mpa-approve", "--session", session); err != nil || !strings.Contains(out, "status: APPROVED") {
		t.Fatalf("second approval: %v\n%s", err, out)
	}

	// Approved: the import succeeds once, and says under which session.
	m, stderr, err = cli("import-key", "--key-material", root, "--requester-comment", "partner root for TR-34")
	k, _ := m["Key"].(map[string]any)
	st, _ := k["MpaStatus"].(map[string]any)
	if err != nil || k["KeyState"] != "CREATE_COMPLETE" || st["Status"] != "APPROVED" || st["MpaSessionArn"] != session || st["InitiationDate"] == nil {
		t.Fatalf("import after approval: %v %v %s", m, err, stderr)
	}
	if m, stderr, err := cli("get-key", "--key-identifier", k["KeyArn"].(string)); err != nil ||
		m["Key"].(map[string]any)["MpaStatus"].(map[string]any)["MpaSessionArn"] != session {
		t.Fatalf("get-key: %v %v %s", m, err, stderr)
	}
	if again := refused("PENDING (0 of 2 approvals)"); again == session {
		t.Fatalf("the used session %s was accepted again", session)
	}

	// Disassociation needs the team's approval.
	m, stderr, err = cli("disassociate-mpa-team", "--action", action, "--requester-comment", "ceremony done")
	a := assoc(m)
	ds, _ := a["MpaStatus"].(map[string]any)
	dsARN, _ := ds["MpaSessionArn"].(string)
	if err != nil || a["AssociationState"] != "DELETE_PENDING" || ds["Status"] != "PENDING" || !sessionRe.MatchString(dsARN) {
		t.Fatalf("disassociate-mpa-team: %v %v %s", m, err, stderr)
	}
	if m, _, err := cli("get-mpa-team-association", "--action", action); err != nil || assoc(m)["AssociationState"] != "DELETE_PENDING" {
		t.Fatalf("get-mpa-team-association while the disassociation waits: %v %v", m, err)
	}
	refused("PENDING") // still protected while the disassociation waits
	if out, err := runCeremony(t, dir, "carol\ncarol-passphrase\ny\nbob\nbob-passphrase!\ny\n", "mpa-approve", "--session", dsARN); err != nil ||
		!strings.Contains(out, "status: APPROVED") {
		t.Fatalf("approve the disassociation: %v\n%s", err, out)
	}
	if _, stderr, err := cli("get-mpa-team-association", "--action", action); err == nil || !strings.Contains(stderr, "ResourceNotFoundException") {
		t.Fatalf("get-mpa-team-association after the disassociation: %v %s", err, stderr)
	}
	m, stderr, err = cli("import-key", "--key-material", material(certB64(newPartnerCA(t).cert)))
	if k, _ := m["Key"].(map[string]any); err != nil || k["KeyState"] != "CREATE_COMPLETE" || k["MpaStatus"] != nil {
		t.Fatalf("import once no team is associated: %v %v %s", m, err, stderr)
	}

	// Six requests were refused for want of approval, one approval was used.
	if fams := d.scrape(t); metricValue(fams, "payhsm_mpa_refused_total") != 6 || metricValue(fams, "payhsm_mpa_approvals_used_total") != 1 {
		t.Errorf("MPA metrics: refused %v, used %v; want 6, 1", metricValue(fams, "payhsm_mpa_refused_total"), metricValue(fams, "payhsm_mpa_approvals_used_total"))
	}

	// The trail has the denials and each approval.
	b, err := os.ReadFile(filepath.Join(dir, "audit", "audit.log"))
	check(t, err)
	log := string(b)
	for _, want := range []string{`"kind":"denial"`, `"operation":"mpa-approve"`, `"operation":"mpa-team-create"`, `"operation":"DisassociateMpaTeam"`, `"outcome":"refused"`} {
		if !strings.Contains(log, want) {
			t.Errorf("the audit trail has no %s", want)
		}
	}
	// The entries of the protected requests (protocol aws; a session's
	// approval is the console's) name the caller (an IAM ARN) and the
	// request id of the ImportKey call's own entry.
	type entry struct{ Operation, Principal, RequestID string }
	calls := map[string]bool{}
	var protected []entry
	for line := range strings.SplitSeq(log, "\n") {
		var e struct {
			Protocol  string `json:"protocol"`
			Operation string `json:"operation"`
			Principal string `json:"principal"`
			RequestID string `json:"requestId"`
		}
		if json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		switch e.Operation {
		case "ImportKey":
			calls[e.RequestID] = true
		case action:
			if e.Protocol != "aws" {
				continue
			}
			protected = append(protected, entry{e.Operation, e.Principal, e.RequestID})
		}
	}
	if len(protected) == 0 {
		t.Error("the audit trail has no entry of a protected request")
	}
	for _, e := range protected {
		if !strings.HasPrefix(e.Principal, "arn:aws:iam::") || e.RequestID == "" || !calls[e.RequestID] {
			t.Errorf("a protected request's entry names principal %q, request %q (an ImportKey call's: %t)", e.Principal, e.RequestID, calls[e.RequestID])
		}
	}
}
