package awsapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"go.uber.org/zap"

	"payhsm/audit"
	"payhsm/ops"
	"payhsm/ops/opstest"
	"payhsm/protocol/awsapi/sigv4"
)

const (
	testAccessKey = "AKPHAUDITTEST"
	testSecret    = "audit-test-secret"
	testPAN       = "4123456789012345"
)

// auditedServer is a Server over a test operations layer whose calls are
// recorded in a trail in dir.
func auditedServer(t *testing.T, dir string, data bool) (*Server, *audit.Trail) {
	t.Helper()
	svc := opstest.New(t)
	v := &sigv4.Verifier{Creds: sigv4.StaticCredentials{testAccessKey: testSecret}, Region: "us-east-1", Service: "payment-cryptography"}
	s := New(svc, v, zap.NewNop())
	trail, err := audit.Open(audit.Config{Dir: dir, Key: bytes.Repeat([]byte{3}, audit.RootKeySize), Writer: "test"})
	if err != nil {
		t.Fatal(err)
	}
	s.SetAudit(trail, "000000000000", data)
	return s, trail
}

// call sends a signed request (target "" for the data plane at path) and
// returns the status, the decoded body and the request id.
func call(t *testing.T, s *Server, secret, target, path string, body any) (int, map[string]any, string) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "http://payhsm"+path, bytes.NewReader(b))
	if target != "" {
		req.Header.Set("X-Amz-Target", controlTargetPrefix+target)
		req.Header.Set("Content-Type", controlContentType)
	}
	sum := sha256.Sum256(b)
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testAccessKey, SecretAccessKey: secret},
		req, hex.EncodeToString(sum[:]), "payment-cryptography", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	var m map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &m)
	return w.Code, m, w.Header().Get("X-Amzn-RequestId")
}

func trailEntries(t *testing.T, dir string) []*audit.Parsed {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, audit.ActiveName))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(testPAN)) || bytes.Contains(b, []byte(testSecret)) {
		t.Errorf("the trail holds the PAN or the secret:\n%s", b)
	}
	var out []*audit.Parsed
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte{'\n'}) {
		p, err := audit.ParseLine(l)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

var cvkAttributes = map[string]any{"KeyUsage": "TR31_C0_CARD_VERIFICATION_KEY", "KeyClass": "SYMMETRIC_KEY", "KeyAlgorithm": "TDES_2KEY",
	"KeyModesOfUse": map[string]any{"Generate": true, "Verify": true}}

func cvvBody(key string) map[string]any {
	return map[string]any{"KeyIdentifier": key, "PrimaryAccountNumber": testPAN,
		"GenerationAttributes": map[string]any{"CardVerificationValue1": map[string]any{"CardExpiryDate": "8701", "ServiceCode": "101"}}}
}

// TestAuditRecordsCalls: control-plane calls (made and refused) are on
// record with principal, operation, keys and request id before they are
// answered; a SigV4 failure is a denial; data-plane calls are recorded only
// when the account opted in, with the PAN masked.
func TestAuditRecordsCalls(t *testing.T) {
	for _, data := range []bool{false, true} {
		dir := t.TempDir()
		s, trail := auditedServer(t, dir, data)
		status, m, createID := call(t, s, testSecret, "CreateKey", "/", map[string]any{"Exportable": true, "KeyAttributes": cvkAttributes})
		if status != 200 {
			t.Fatalf("CreateKey: %d %v", status, m)
		}
		arn := m["Key"].(map[string]any)["KeyArn"].(string)
		missing := strings.Replace(arn, arn[len(arn)-16:], "zzzzzzzzzzzzzzzz", 1)
		if status, _, _ := call(t, s, testSecret, "GetKey", "/", map[string]any{"KeyIdentifier": missing}); status != 404 {
			t.Fatalf("GetKey of a missing key: %d", status)
		}
		if status, _, _ := call(t, s, "wrong-secret", "DeleteKey", "/", map[string]any{"KeyIdentifier": arn}); status != 403 {
			t.Fatalf("a bad signature: %d", status)
		}
		if status, m, _ := call(t, s, testSecret, "", "/cardvalidationdata/generate", cvvBody(arn)); status != 200 {
			t.Fatalf("CVV: %d %v", status, m)
		}
		if err := trail.Close(); err != nil {
			t.Fatal(err)
		}
		var control, denials, datas []*audit.Parsed
		for _, e := range trailEntries(t, dir) {
			switch e.Kind {
			case audit.KindControl:
				control = append(control, e)
			case audit.KindDenial:
				denials = append(denials, e)
			case audit.KindData:
				datas = append(datas, e)
			}
		}
		if len(control) != 2 || len(denials) != 1 {
			t.Fatalf("%d control entries, %d denials", len(control), len(denials))
		}
		c := control[0]
		if c.Operation != "CreateKey" || c.Principal != testAccessKey || c.Outcome != audit.OK || c.RequestID != createID ||
			c.Protocol != "aws" || c.Account != "000000000000" || len(c.Keys) != 1 || c.Keys[0] != arn {
			t.Errorf("CreateKey entry %+v", c.Event)
		}
		if g := control[1]; g.Operation != "GetKey" || g.Outcome != audit.Refused || g.Error != "ResourceNotFoundException" || len(g.Keys) != 1 || g.Keys[0] != missing {
			t.Errorf("GetKey entry %+v", g.Event)
		}
		if d := denials[0]; d.Operation != "DeleteKey" || d.Principal != testAccessKey || d.Outcome != audit.Denied || !strings.Contains(d.Detail, "signature") {
			t.Errorf("denial %+v", d.Event)
		}
		switch {
		case !data && len(datas) != 0:
			t.Errorf("data events without opting in: %+v", datas[0].Event)
		case data && len(datas) != 1:
			t.Errorf("%d data events", len(datas))
		case data:
			if d := datas[0]; d.Operation != "GenerateCardValidationData" || d.MaskedPAN != "412345******2345" || len(d.PANHash) != 16 ||
				len(d.Keys) != 1 || d.Keys[0] != arn || d.Principal != testAccessKey {
				t.Errorf("data event %+v pan %q", d.Event, d.MaskedPAN)
			}
		}
	}
}

// TestAuditFailsClosed: while the trail cannot write, control-plane calls
// are refused before they run; data-plane calls go on.
func TestAuditFailsClosed(t *testing.T) {
	dir := t.TempDir()
	s, trail := auditedServer(t, dir, true)
	status, m, _ := call(t, s, testSecret, "CreateKey", "/", map[string]any{"Exportable": true, "KeyAttributes": cvkAttributes})
	if status != 200 {
		t.Fatalf("CreateKey: %d %v", status, m)
	}
	arn := m["Key"].(map[string]any)["KeyArn"].(string)
	if err := trail.Close(); err != nil {
		t.Fatal(err)
	}
	status, m, _ = call(t, s, testSecret, "CreateKey", "/", map[string]any{"Exportable": true, "KeyAttributes": cvkAttributes})
	if status != 503 || m["__type"] != controlNamespace+"ServiceUnavailableException" {
		t.Fatalf("CreateKey with a closed trail: %d %v", status, m)
	}
	if keys, _, err := s.ops.ListKeys("", ops.Page{}); err != nil || len(keys) != 1 {
		t.Fatalf("a refused CreateKey made a key: %d keys, %v", len(keys), err)
	}
	if status, m, _ := call(t, s, testSecret, "", "/cardvalidationdata/generate", cvvBody(arn)); status != 200 {
		t.Fatalf("data plane with a closed trail: %d %v", status, m)
	}
}

// TestAuditRecordsPanic: a call whose handler panics is recorded as failed,
// not as made, and answered InternalServerException.
func TestAuditRecordsPanic(t *testing.T) {
	dir := t.TempDir()
	s, trail := auditedServer(t, dir, false)
	op := s.control["ListAliases"]
	op.call = func(context.Context, any) (any, error) { panic("a bug") }
	s.control["ListAliases"] = op
	if status, m, _ := call(t, s, testSecret, "ListAliases", "/", map[string]any{}); status != 500 {
		t.Fatalf("a panicking call answered %d %v", status, m)
	}
	if err := trail.Close(); err != nil {
		t.Fatal(err)
	}
	var got []*audit.Parsed
	for _, e := range trailEntries(t, dir) {
		if e.Kind == audit.KindControl {
			got = append(got, e)
		}
	}
	if len(got) != 1 || got[0].Operation != "ListAliases" || got[0].Outcome != audit.Failed || got[0].Error != "InternalServerException" {
		t.Fatalf("entries %+v", got)
	}
}
