package awsapi

import (
	"testing"
	"time"

	"payhsm/ops"
	cp "payhsm/protocol/awsapi/cpshape"
)

// TestMpaShapes: the association and the key's MpaStatus map onto the
// model's shapes and satisfy its constraints (required members, enums, the
// ARN patterns); a missing status is left out, not sent empty.
func TestMpaShapes(t *testing.T) {
	t.Parallel()
	st := &ops.MpaStatus{SessionARN: "arn:aws:mpa:us-east-1:111122223333:session/root-ca/0a1b2c", Status: "PENDING",
		Initiated: time.Date(2026, 12, 5, 7, 0, 0, 0, time.UTC), Message: "0 of 2 approvals"}
	for _, c := range []struct {
		name string
		in   *ops.MpaAssociation
		ok   bool
	}{
		{"active", &ops.MpaAssociation{Operation: ops.MpaImportRootCertificate, TeamARN: "arn:aws:mpa:us-east-1:111122223333:approval-team/root-ca", State: "ACTIVE"}, true},
		{"pending", &ops.MpaAssociation{Operation: ops.MpaImportRootCertificate, TeamARN: "arn:aws:mpa:us-east-1:111122223333:approval-team/root-ca", State: "DELETE_PENDING", Status: st}, true},
		{"bad state", &ops.MpaAssociation{Operation: ops.MpaImportRootCertificate, TeamARN: "arn:aws:mpa:us-east-1:111122223333:approval-team/root-ca", State: "GONE"}, false},
		{"bad team ARN", &ops.MpaAssociation{Operation: ops.MpaImportRootCertificate, TeamARN: "arn:aws:mpa:us-east-1:1:approval-team/x", State: "ACTIVE"}, false},
	} {
		out := &cp.AssociateMpaTeamOutput{MpaTeamAssociation: mpaAssociation(c.in)}
		if err := out.Validate(""); (err == nil) != c.ok {
			t.Errorf("%s: Validate = %v", c.name, err)
		}
		if c.in.Status == nil && out.MpaTeamAssociation.MpaStatus != nil {
			t.Errorf("%s: an absent status was sent", c.name)
		}
	}
	k := key(&ops.Key{ARN: "arn:aws:payment-cryptography:us-east-1:111122223333:key/abcdefghijklmnop", Mpa: st})
	if k.MpaStatus == nil || *k.MpaStatus.MpaSessionArn != st.SessionARN || *k.MpaStatus.Status != cp.SessionStatusPending ||
		!k.MpaStatus.InitiationDate.Equal(st.Initiated) || k.MpaStatus.Validate("") != nil {
		t.Errorf("Key.MpaStatus = %+v", k.MpaStatus)
	}
	if key(&ops.Key{}).MpaStatus != nil {
		t.Error("a key imported without approval has an MpaStatus")
	}
}
