package daemon

import (
	"errors"

	"payhsm/admin"
	"payhsm/audit"
	"payhsm/ceremony/custodian"
	"payhsm/ceremony/mpa"
	"payhsm/ops"
)

// approvals puts the appliance's Multi-Party Approval registry behind
// ops.Approvals: the operations layer asks it before a protected operation
// and passes the association operations of the API to it.
type approvals struct{ reg *mpa.Registry }

var _ ops.Approvals = approvals{}

func (a approvals) Associate(op, teamARN, comment string, by ops.Caller) (*ops.MpaAssociation, error) {
	as, err := a.reg.Associate(mpa.Operation(op), teamARN, comment, requester(by))
	return opsAssociation(as), err
}

func (a approvals) Disassociate(op, comment string, by ops.Caller) (*ops.MpaAssociation, error) {
	as, err := a.reg.Disassociate(mpa.Operation(op), comment, requester(by))
	return opsAssociation(as), err
}

func (a approvals) GetAssociation(op string) (*ops.MpaAssociation, error) {
	as, err := a.reg.GetAssociation(mpa.Operation(op))
	return opsAssociation(as), err
}

func (a approvals) Authorize(op string, subject []byte, comment string, by ops.Caller) (*ops.MpaStatus, func(), error) {
	g, err := a.reg.Authorize(mpa.Operation(op), subject, comment, requester(by))
	if err != nil || g == nil {
		return nil, nil, err
	}
	return opsStatus(&g.Session), g.Release, nil
}

// requester is the registry's name for the caller of a request.
func requester(c ops.Caller) mpa.Requester {
	return mpa.Requester{Protocol: c.Protocol, Principal: c.Principal, Source: c.Source, RequestID: c.RequestID}
}

func opsAssociation(a *mpa.Association) *ops.MpaAssociation {
	if a == nil {
		return nil
	}
	return &ops.MpaAssociation{Operation: string(a.Operation), TeamARN: a.TeamARN, State: a.State, Status: opsStatus(a.Status)}
}

func opsStatus(s *mpa.Session) *ops.MpaStatus {
	if s == nil {
		return nil
	}
	return &ops.MpaStatus{SessionARN: s.ARN, Status: s.Status, Message: s.Message, Initiated: s.Initiated}
}

// mpaAudit records the registry's decisions in trail: ceremony steps as the admin socket's.
func mpaAudit(trail *audit.Trail) func(audit.Kind, audit.Event) error {
	return func(kind audit.Kind, e audit.Event) error {
		if e.Protocol == "" {
			e.Protocol, e.Online = "admin", true
		}
		return trail.Record(kind, e)
	}
}

// runMpa answers OpMpa: team changes under dual control (req.Approvals),
// decisions with each voter's credentials.
func (a *adminServer) runMpa(req *admin.Request) *admin.Response {
	defer clearAdminApprovals(req.Approvals)
	if req.Mpa == nil {
		return &admin.Response{Error: "no MPA request"}
	}
	defer req.Mpa.Clear()
	rec, err := custodian.Load(a.store, a.cust)
	if err != nil {
		return &admin.Response{Error: err.Error()}
	}
	dual := func() ([]string, error) {
		apps := make([]custodian.Approval, len(req.Approvals))
		for i, ap := range req.Approvals {
			apps[i] = custodian.Approval{Name: ap.Name, Passphrase: ap.Passphrase}
		}
		return rec.DualControl(apps)
	}
	res, err := a.mpa.Exec(rec, req.Mpa, dual)
	if err != nil {
		if res != nil { // a decision that stopped part way: what it reached, and why it stopped
			return &admin.Response{Mpa: res, Error: err.Error()}
		}
		return &admin.Response{Error: err.Error()}
	}
	return &admin.Response{Mpa: res}
}

func clearAdminApprovals(apps []admin.Approval) {
	for _, a := range apps {
		clear(a.Passphrase)
	}
}

// errNoMpa is the answer of a daemon without the registry (not expected).
var errNoMpa = errors.New("multi-party approval is not available")
