package awsapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"go.uber.org/zap"

	"payhsm/access"
	"payhsm/ops"
	"payhsm/ops/opstest"
	"payhsm/protocol/awsapi/sigv4"
)

// callerApprovals records the callers Approvals is told.
type callerApprovals struct{ callers []ops.Caller }

func (f *callerApprovals) Associate(op, arn, _ string, by ops.Caller) (*ops.MpaAssociation, error) {
	f.callers = append(f.callers, by)
	return &ops.MpaAssociation{Operation: op, TeamARN: arn, State: "ACTIVE"}, nil
}

func (f *callerApprovals) Disassociate(op, _ string, by ops.Caller) (*ops.MpaAssociation, error) {
	f.callers = append(f.callers, by)
	return &ops.MpaAssociation{Operation: op, TeamARN: "arn:aws:mpa:us-east-1:000000000000:approval-team/t", State: "DELETE_PENDING"}, nil
}

func (f *callerApprovals) GetAssociation(string) (*ops.MpaAssociation, error) { return nil, nil }

func (f *callerApprovals) Authorize(_ string, _ []byte, _ string, by ops.Caller) (*ops.MpaStatus, func(), error) {
	f.callers = append(f.callers, by)
	return nil, nil, nil
}

// TestMpaCallerIsThePrincipal: the Multi-Party Approval operations reach
// Approvals with the calling principal's ARN, the peer address and the
// request id the response (and the call's own audit entry) carries.
func TestMpaCallerIsThePrincipal(t *testing.T) {
	svc := opstest.New(t)
	fa := &callerApprovals{}
	svc.SetApprovals(fa)
	pol, err := access.ParsePolicy("all", []byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	admin, err := access.NewPrincipal(access.Principal{Name: "pki-admin", Account: "000000000000", AccessKeyID: benchKeyID, Secret: benchSecret}, pol)
	if err != nil {
		t.Fatal(err)
	}
	az := access.NewAuthorizer(must(access.NewDirectory([]*access.Principal{admin})))
	az.SetAccount("000000000000")
	s := New(svc, &sigv4.Verifier{Creds: az, Region: benchRegion, Service: "payment-cryptography"}, zap.NewNop())
	s.SetAuthorizer(az)
	for _, c := range []struct{ target, body string }{
		{"AssociateMpaTeam", `{"Action":"IMPORT_ROOT_PUBLIC_KEY_CERTIFICATE","MpaTeamArn":"arn:aws:mpa:us-east-1:000000000000:approval-team/t"}`},
		{"DisassociateMpaTeam", `{"Action":"IMPORT_ROOT_PUBLIC_KEY_CERTIFICATE","RequesterComment":"retire"}`},
	} {
		fa.callers = nil
		r := signedControl(t, c.target, c.body)
		r.RemoteAddr = "192.0.2.9:4711"
		w := &discardWriter{h: http.Header{}, status: 200}
		s.ServeHTTP(w, r)
		if w.status != 200 {
			t.Fatalf("%s: %d %s", c.target, w.status, w.body.Bytes())
		}
		want := ops.Caller{Protocol: "aws", Principal: admin.ARN(), Source: "192.0.2.9:4711", RequestID: w.h.Get("X-Amzn-RequestId")}
		if want.RequestID == "" || len(fa.callers) != 1 || fa.callers[0] != want {
			t.Errorf("%s: Approvals was told %+v; want %+v", c.target, fa.callers, want)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// signedControl is a control-plane request signed now.
func signedControl(t *testing.T, op, body string) *http.Request {
	t.Helper()
	r, _ := http.NewRequest(http.MethodPost, "http://"+benchHost+"/", bytes.NewReader([]byte(body)))
	r.Header.Set("Content-Type", controlContentType)
	r.Header.Set("X-Amz-Target", controlTargetPrefix+op)
	sum := sha256.Sum256([]byte(body))
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: benchKeyID, SecretAccessKey: benchSecret},
		r, hex.EncodeToString(sum[:]), "payment-cryptography", benchRegion, time.Now()); err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	if err := r.Write(&raw); err != nil {
		t.Fatal(err)
	}
	rr, err := http.ReadRequest(bufio.NewReader(&raw))
	if err != nil {
		t.Fatal(err)
	}
	return rr
}
