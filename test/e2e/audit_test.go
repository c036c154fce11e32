package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography/types"
)

const auditPAN = "4123456789012345"

// auditEntry is the part of an audit trail line the tests read.
type auditEntry struct {
	Seq       uint64   `json:"seq"`
	Kind      string   `json:"kind"`
	Protocol  string   `json:"protocol"`
	Operation string   `json:"operation"`
	Principal string   `json:"principal"`
	Keys      []string `json:"keys"`
	Outcome   string   `json:"outcome"`
	Error     string   `json:"error"`
	PAN       string   `json:"pan"`
	PANHash   string   `json:"panHash"`
	Detail    string   `json:"detail"`
}

func readTrail(t *testing.T, dir string) ([]byte, []auditEntry) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "audit", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var out []auditEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<16), 1<<16)
	for sc.Scan() {
		var e auditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("trail line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return b, out
}

// readTrailFiles parses every entry of dir's trail, rotated files first.
func readTrailFiles(t *testing.T, dir string) []auditEntry {
	t.Helper()
	rotated, err := filepath.Glob(filepath.Join(dir, "audit", "audit-*.log"))
	check(t, err)
	var out []auditEntry
	for _, path := range append(rotated, filepath.Join(dir, "audit", "audit.log")) {
		b, err := os.ReadFile(path)
		check(t, err)
		for line := range bytes.Lines(b) {
			var e auditEntry
			if err := json.Unmarshal(line, &e); err != nil {
				t.Fatalf("%s: line %q: %v", path, line, err)
			}
			out = append(out, e)
		}
	}
	return out
}

// auditVerify runs payhsm audit verify on dir's trail.
func auditVerify(t *testing.T, dir string) (int, string) {
	t.Helper()
	cmd := exec.Command(binPath, "audit", "verify", "--dev", "--data-dir", dir)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, string(out)
}

// auditTraffic makes a CVK, a key that does not exist, a call with a bad
// signature, a data-plane CVV and host CVVs (with a key block from A0) on d.
// It returns the CVK's ARN and the key block.
func auditTraffic(t *testing.T, d *daemon) (string, string) {
	t.Helper()
	ctx := context.Background()
	out, err := d.client().CreateKey(ctx, &pc.CreateKeyInput{Exportable: aws.Bool(true), KeyAttributes: &types.KeyAttributes{
		KeyUsage: types.KeyUsageTr31C0CardVerificationKey, KeyClass: types.KeyClassSymmetricKey, KeyAlgorithm: types.KeyAlgorithmTdes2key,
		KeyModesOfUse: &types.KeyModesOfUse{Generate: true, Verify: true}}})
	check(t, err)
	arn := *out.Key.KeyArn
	missing := arn[:len(arn)-16] + "zzzzzzzzzzzzzzzz"
	if _, err := d.client().GetKey(ctx, &pc.GetKeyInput{KeyIdentifier: aws.String(missing)}); err == nil {
		t.Fatal("GetKey of a missing key succeeded")
	}
	status, _, _ := d.rawCall(t, "PaymentCryptographyControlPlane.DeleteKey", []byte(`{"KeyIdentifier":"`+arn+`"}`), func(r *http.Request) {
		r.Header.Set("Authorization", regexp.MustCompile(`Signature=[0-9a-f]+`).ReplaceAllString(r.Header.Get("Authorization"), "Signature="+strings.Repeat("0", 64)))
	})
	if status != 403 {
		t.Fatalf("a bad signature answered %d", status)
	}
	if status, m, _ := d.dataCall(t, "/cardvalidationdata/generate", map[string]any{"KeyIdentifier": arn, "PrimaryAccountNumber": auditPAN,
		"GenerationAttributes": map[string]any{"CardVerificationValue1": map[string]any{"CardExpiryDate": "8701", "ServiceCode": "101"}}}); status != 200 {
		t.Fatalf("CVV: %d %v", status, m)
	}
	a0 := hostSend(t, d.hostAddr, "0000A00FFFS#C0T2C00N00")
	m := regexp.MustCompile(`^0000A100S([A-Z0-9]+)[0-9A-F]{6}$`).FindStringSubmatch(a0)
	if m == nil {
		t.Fatalf("A0 %q", a0)
	}
	if cw := hostSend(t, d.hostAddr, "0000CWS"+m[1]+auditPAN+";8701101"); !strings.HasPrefix(cw, "0000CX00") {
		t.Fatalf("CW %q", cw)
	}
	return arn, m[1]
}

// TestAuditTrail: the real daemon records control-plane calls (principal,
// operation, key) and denials; data-plane calls only when the account opted
// in, with masked PANs; no PAN, key block or secret is in the trail; and
// payhsm audit verify passes on the trail (through the running daemon, and
// offline) and fails, saying where, after a one-byte edit.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	for _, optIn := range []bool{false, true} {
		name := "data events off"
		if optIn {
			name = "data events on"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			args := []string{"serve", "--dev", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--host-addr", "127.0.0.1:0"}
			if optIn {
				cfg := filepath.Join(t.TempDir(), "payhsm.json")
				check(t, os.WriteFile(cfg, []byte(`{"audit":{"dataEventAccounts":["000000000000"]}}`), 0o600))
				args = append(args, "--config", cfg)
			}
			d := startDaemonArgs(t, args...)
			d.dir = dir
			d.keyID, d.secret = readCreds(t, filepath.Join(dir, "credentials"))
			arn, block := auditTraffic(t, d)

			// Verified through the running daemon: its active file is not closed yet.
			if code, out := auditVerify(t, dir); code != 0 || !strings.Contains(out, "through the daemon") || !strings.Contains(out, "intact") {
				t.Fatalf("audit verify while serving: exit %d\n%s", code, out)
			}
			d.stop()
			raw, entries := readTrail(t, dir)
			for _, secret := range []string{auditPAN, block, d.secret} {
				if bytes.Contains(raw, []byte(secret)) {
					t.Errorf("the audit trail holds %q", secret)
				}
			}
			var control, denials, data []auditEntry
			for _, e := range entries {
				switch e.Kind {
				case "control":
					control = append(control, e)
				case "denial":
					denials = append(denials, e)
				case "data":
					data = append(data, e)
				}
			}
			if len(control) != 2 || control[0].Operation != "CreateKey" || control[0].Principal != d.keyID || control[0].Outcome != "ok" ||
				len(control[0].Keys) != 1 || control[0].Keys[0] != arn {
				t.Errorf("control-plane entries %+v", control)
			}
			if len(control) == 2 && (control[1].Operation != "GetKey" || control[1].Error != "ResourceNotFoundException") {
				t.Errorf("GetKey entry %+v", control[1])
			}
			if len(denials) != 1 || denials[0].Operation != "DeleteKey" || denials[0].Principal != d.keyID {
				t.Errorf("denials %+v", denials)
			}
			if !optIn {
				if len(data) != 0 {
					t.Errorf("%d data events without opting in", len(data))
				}
			} else {
				ops := map[string]auditEntry{}
				for _, e := range data {
					ops[e.Protocol+" "+e.Operation] = e
				}
				cvv, cw := ops["aws GenerateCardValidationData"], ops["host CW"]
				if cvv.PAN != "412345******2345" || len(cvv.Keys) != 1 || cvv.Keys[0] != arn || cvv.Principal != d.keyID {
					t.Errorf("data-plane CVV event %+v", cvv)
				}
				if cw.PAN != "412345******2345" || cw.PANHash != cvv.PANHash || len(cw.Keys) != 1 || cw.Keys[0] != "S"+block[:16] {
					t.Errorf("host CW event %+v", cw)
				}
				if _, ok := ops["host A0"]; !ok || len(data) != 3 {
					t.Errorf("data events %+v", data)
				}
			}

			if code, out := auditVerify(t, dir); code != 0 || !strings.Contains(out, "offline") || !strings.Contains(out, "intact") {
				t.Fatalf("audit verify offline: exit %d\n%s", code, out)
			}
			// One byte edited: the CreateKey entry's principal.
			path := filepath.Join(dir, "audit", "audit.log")
			i := bytes.Index(raw, []byte(`"principal":"`+d.keyID))
			if i < 0 {
				t.Fatal("no principal in the trail")
			}
			line := bytes.Count(raw[:i], []byte{'\n'}) + 1
			edited := bytes.Clone(raw)
			edited[i+len(`"principal":"`)] ^= 0x01
			check(t, os.WriteFile(path, edited, 0o600))
			code, out := auditVerify(t, dir)
			if want := regexp.MustCompile(`ERROR \S*audit\.log:` + strconv.Itoa(line) + ` \(seq [0-9]+\): entry altered`); code != 1 || !want.MatchString(out) {
				t.Fatalf("audit verify after a one-byte edit at line %d: exit %d\n%s", line, code, out)
			}
		})
	}
}
