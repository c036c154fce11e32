package ops_test

import (
	"bytes"
	"testing"
	"time"

	"payhsm/fault"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// fakeApprovals refuses until approved, and records what it was asked.
type fakeApprovals struct {
	approved bool
	subjects [][]byte
	comments []string
	released int
	callers  []ops.Caller
}

func (f *fakeApprovals) Associate(op, arn, c string, by ops.Caller) (*ops.MpaAssociation, error) {
	f.callers = append(f.callers, by)
	return &ops.MpaAssociation{Operation: op, TeamARN: arn, State: "ACTIVE"}, nil
}
func (f *fakeApprovals) Disassociate(op, c string, by ops.Caller) (*ops.MpaAssociation, error) {
	f.callers = append(f.callers, by)
	return nil, nil
}
func (f *fakeApprovals) GetAssociation(op string) (*ops.MpaAssociation, error) { return nil, nil }
func (f *fakeApprovals) Authorize(op string, subject []byte, comment string, by ops.Caller) (*ops.MpaStatus, func(), error) {
	f.subjects, f.comments, f.callers = append(f.subjects, subject), append(f.comments, comment), append(f.callers, by)
	if op != ops.MpaImportRootCertificate {
		return nil, nil, fault.Validationf("unexpected operation %s", op)
	}
	if !f.approved {
		return nil, nil, fault.AccessDeniedf("needs approval")
	}
	return &ops.MpaStatus{SessionARN: "arn:aws:mpa:us-east-1:000000000000:session/t/s1", Status: "APPROVED", Initiated: time.Unix(1, 0)},
		func() { f.released++ }, nil
}

// TestImportRootCertificateAsksApprovals: a root certificate import asks
// Approvals with the certificate (after validating the request), is refused
// as it answers, carries the session once approved (ImportKey and GetKey),
// and gives the approval back when the import fails after it; a trusted
// (non-root) certificate import does not ask.
func TestImportRootCertificateAsksApprovals(t *testing.T) {
	t.Parallel()
	svc := opstest.New(t)
	fa := &fakeApprovals{}
	svc.SetApprovals(fa)
	ca := xNewTestCA(t, nil)
	by := ops.Caller{Protocol: "aws", Principal: "arn:aws:iam::000000000000:user/pki", Source: "192.0.2.1:1", RequestID: "r-1"}
	in := ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: ca.cert.Raw, RequesterComment: "why", Caller: by}
	if _, err := svc.ImportCertificate(in); fault.KindOf(err) != fault.AccessDenied {
		t.Fatalf("unapproved import: %v", err)
	}
	if len(fa.callers) != 1 || fa.callers[0] != by {
		t.Fatalf("Approvals was told the caller %+v; want %+v", fa.callers, by)
	}
	if len(fa.subjects) != 1 || !bytes.Equal(fa.subjects[0], ca.cert.Raw) || fa.comments[0] != "why" {
		t.Fatalf("asked about %d subjects, comment %q", len(fa.subjects), fa.comments)
	}
	bad := in
	bad.Attributes.Usage = "TR31_K0_KEY_ENCRYPTION_KEY"
	if _, err := svc.ImportCertificate(bad); fault.KindOf(err) != fault.Validation || len(fa.subjects) != 1 {
		t.Fatalf("an invalid request reached the approval check: %v, %d", err, len(fa.subjects))
	}
	fa.approved = true
	k, err := svc.ImportCertificate(in)
	if err != nil || k.Mpa == nil || k.Mpa.Status != "APPROVED" {
		t.Fatalf("approved import: %+v %v", k, err)
	}
	got, err := svc.GetKey(k.ARN)
	if err != nil || got.Mpa == nil || got.Mpa.SessionARN != k.Mpa.SessionARN {
		t.Fatalf("GetKey: %+v %v", got, err)
	}
	if fa.released != 0 {
		t.Fatalf("a successful import released its approval")
	}
	// Fails after the check (too many tags): the approval is given back.
	many := in
	for i := 0; i < 60; i++ {
		many.Tags = append(many.Tags, ops.Tag{Key: string(rune('a'+i%26)) + string(rune('a'+i/26)), Value: "v"})
	}
	if _, err := svc.ImportCertificate(many); err == nil || fa.released != 1 {
		t.Fatalf("failed import: %v, released %d", err, fa.released)
	}
	// Trusted certificates under the root are not protected.
	leaf := xNewTestCA(t, ca)
	n := len(fa.subjects)
	if _, err := svc.ImportCertificate(ops.ImportCertificateInput{Attributes: xCaAttrs, Certificate: leaf.cert.Raw, CAIdentifier: k.ARN}); err != nil || len(fa.subjects) != n {
		t.Fatalf("trusted import: %v, asked %d times", err, len(fa.subjects)-n)
	}
}
