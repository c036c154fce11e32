package awsapi

// Multi-Party Approval: the model's AssociateMpaTeam, DisassociateMpaTeam
// and GetMpaTeamAssociation, and the MpaStatus member of Key. The teams,
// sessions and decisions are package ceremony/mpa's, behind ops.Approvals.

import (
	"context"

	"payhsm/ops"
	cp "payhsm/protocol/awsapi/cpshape"
)

func (s *Server) mpaOperations() map[string]operation {
	o := s.ops
	return map[string]operation{
		"AssociateMpaTeam": handler(func(ctx context.Context, in *cp.AssociateMpaTeamInput) (any, error) {
			a, err := o.AssociateMpaTeam(string(*in.Action), *in.MpaTeamArn, str(in.RequesterComment), ops.CallerFrom(ctx))
			if err != nil {
				return nil, err
			}
			return &cp.AssociateMpaTeamOutput{MpaTeamAssociation: mpaAssociation(a)}, nil
		}),
		"DisassociateMpaTeam": handler(func(ctx context.Context, in *cp.DisassociateMpaTeamInput) (any, error) {
			a, err := o.DisassociateMpaTeam(string(*in.Action), str(in.RequesterComment), ops.CallerFrom(ctx))
			if err != nil {
				return nil, err
			}
			return &cp.DisassociateMpaTeamOutput{MpaTeamAssociation: mpaAssociation(a)}, nil
		}),
		"GetMpaTeamAssociation": handler(func(_ context.Context, in *cp.GetMpaTeamAssociationInput) (any, error) {
			a, err := o.GetMpaTeamAssociation(string(*in.Action))
			if err != nil {
				return nil, err
			}
			return &cp.GetMpaTeamAssociationOutput{MpaTeamAssociation: mpaAssociation(a)}, nil
		}),
	}
}

func mpaAssociation(a *ops.MpaAssociation) *cp.MpaTeamAssociation {
	return &cp.MpaTeamAssociation{Action: enum[cp.MpaOperation](a.Operation), MpaTeamArn: opt(a.TeamARN),
		AssociationState: enum[cp.AssociationState](a.State), MpaStatus: mpaStatus(a.Status)}
}

func mpaStatus(st *ops.MpaStatus) *cp.MpaStatus {
	if st == nil {
		return nil
	}
	return &cp.MpaStatus{MpaSessionArn: opt(st.SessionARN), Status: enum[cp.SessionStatus](st.Status),
		InitiationDate: ts(st.Initiated), StatusMessage: opt(st.Message)}
}
