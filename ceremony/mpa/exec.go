package mpa

import (
	"errors"
	"fmt"
)

// Commands of Request: the steps of `payhsm ceremony mpa-*`, run by the
// daemon for its admin socket or by the ceremony tool offline.
const (
	CmdTeamCreate = "team-create" // Team, Custodians, Threshold; under dual control (Approvals)
	CmdTeamRemove = "team-remove" // Team; under dual control (Approvals)
	CmdStatus     = "status"      // the teams and the pending (All: every) sessions
	CmdDecide     = "decide"      // Session, Votes
)

// Request is one MPA step.
type Request struct {
	Command    string   `json:"command"`
	Team       string   `json:"team,omitempty"`
	Custodians []string `json:"custodians,omitempty"`
	Threshold  int      `json:"threshold,omitempty"`
	Session    string   `json:"session,omitempty"`
	All        bool     `json:"all,omitempty"`
	Votes      []Vote   `json:"votes,omitempty"`
}

// Result answers a Request.
type Result struct {
	Teams    []Team    `json:"teams,omitempty"`
	Sessions []Session `json:"sessions,omitempty"`
	Session  *Session  `json:"session,omitempty"`
	// Approvers are the dual-control approvers of a team change.
	Approvers []string `json:"approvers,omitempty"`
}

// Clear zeroes the passphrases req carries.
func (req *Request) Clear() {
	for _, v := range req.Votes {
		clear(v.Passphrase)
	}
}

// Exec runs req against the registry; rec is the enrolled custodians, and
// dual are the two custodians approving a team change (zeroed here). The
// steps record themselves in the audit trail (Registry.Audit).
func (r *Registry) Exec(rec custodians, req *Request, dual func() ([]string, error)) (*Result, error) {
	defer req.Clear()
	switch req.Command {
	case CmdStatus:
		teams, err := r.Teams()
		if err != nil {
			return nil, err
		}
		sessions, err := r.Sessions(req.All)
		if err != nil {
			return nil, err
		}
		return &Result{Teams: teams, Sessions: sessions}, nil
	case CmdDecide:
		if req.Session == "" {
			return nil, errors.New("no session named")
		}
		if len(req.Votes) == 0 {
			return nil, errors.New("no votes")
		}
		s, err := r.Decide(rec, req.Session, req.Votes)
		if s == nil && err != nil {
			return nil, err
		}
		return &Result{Session: s}, err
	case CmdTeamCreate, CmdTeamRemove:
		who, err := dual()
		if err != nil {
			return nil, r.refuse(req, err)
		}
		if req.Command == CmdTeamRemove {
			return &Result{Approvers: who}, r.RemoveTeam(req.Team, who)
		}
		t, err := r.CreateTeam(rec, req.Team, req.Custodians, req.Threshold, who)
		if err != nil {
			return nil, err
		}
		return &Result{Teams: []Team{*t}, Approvers: who}, nil
	}
	return nil, fmt.Errorf("unknown MPA command %q", req.Command)
}
