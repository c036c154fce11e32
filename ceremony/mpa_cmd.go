package ceremony

import (
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"payhsm/admin"
	"payhsm/appliance"
	"payhsm/audit"
	"payhsm/ceremony/custodian"
	"payhsm/ceremony/mpa"
	"payhsm/keystore"
)

// The Multi-Party Approval commands (package ceremony/mpa): approval teams
// are formed and removed under dual control; each approver of a session
// authenticates with their own passphrase. Through the serving daemon's
// admin socket when one runs, else offline on the data directory.

type mpaOptions struct {
	team, members, session string
	threshold              int
	reject, all            bool
}

// mpaCommand runs one mpa-* command.
func mpaCommand(con *Console, cfg *appliance.Config, dev bool, cmd string, o *mpaOptions) (err error) {
	req := &mpa.Request{}
	var dual []admin.Approval
	defer func() { clearApprovals(dual) }()
	switch cmd {
	case "mpa-team-create":
		if o.team == "" || o.members == "" {
			return errors.New("--team, --members and --threshold are required")
		}
		req.Command, req.Team, req.Threshold = mpa.CmdTeamCreate, o.team, o.threshold
		for _, m := range strings.Split(o.members, ",") {
			req.Custodians = append(req.Custodians, strings.TrimSpace(m))
		}
	case "mpa-team-remove":
		if o.team == "" {
			return errors.New("--team is required")
		}
		req.Command, req.Team = mpa.CmdTeamRemove, o.team
	case "mpa-status":
		req.Command, req.All = mpa.CmdStatus, o.all
	case "mpa-approve":
		if o.session == "" {
			return errors.New("--session is required (payhsm ceremony mpa-status lists the pending sessions)")
		}
		req.Command, req.Session = mpa.CmdDecide, o.session
	}
	run, closeRun, err := mpaRunner(cfg, dev)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeRun()) }()
	switch req.Command {
	case mpa.CmdTeamCreate, mpa.CmdTeamRemove:
		con.Printf("Changing approval teams needs two custodians (dual control).\n")
		if dual, err = approvals(con); err != nil {
			return err
		}
	case mpa.CmdDecide:
		if err := collectVotes(con, run, req, o.reject); err != nil {
			return err
		}
	}
	res, err := run(req, dual)
	if res != nil {
		printMpa(con, res)
	}
	return err
}

// mpaRun runs a request: through the daemon or offline.
type mpaRun func(req *mpa.Request, dual []admin.Approval) (*mpa.Result, error)

// mpaRunner picks the daemon's admin socket when the key store is in use, else opens the appliance.
func mpaRunner(cfg *appliance.Config, dev bool) (mpaRun, func() error, error) {
	app, err := appliance.Open(cfg, dev, false, zap.NewNop())
	if errors.Is(err, keystore.ErrInUse) {
		run := func(req *mpa.Request, dual []admin.Approval) (*mpa.Result, error) {
			resp, err := admin.Call(cfg.AdminSocketPath(), &admin.Request{Op: admin.OpMpa, Mpa: req, Approvals: dual})
			if errors.Is(err, admin.ErrNoDaemon) {
				return nil, fmt.Errorf("the key store is in use, but no daemon answers on %s: is a ceremony running?", cfg.AdminSocketPath())
			}
			if err != nil {
				return nil, err
			}
			return resp.Mpa, nil
		}
		return run, func() error { return nil }, nil
	}
	if err != nil {
		return nil, nil, err
	}
	trail, err := cfg.OpenAudit(app.Custody, "ceremony", nil)
	if err != nil {
		return nil, nil, errors.Join(err, app.Close())
	}
	reg := mpa.Open(app.Store, app.Custody.FleetSealer(cfg.Profile), cfg.Region, cfg.Account)
	reg.Audit = func(kind audit.Kind, e audit.Event) error {
		if e.Protocol == "" {
			e.Protocol = "console"
		}
		return trail.Record(kind, e)
	}
	run := func(req *mpa.Request, dual []admin.Approval) (*mpa.Result, error) {
		rec, err := custodian.Load(app.Store, app.Custody)
		if err != nil {
			req.Clear()
			return nil, err
		}
		return reg.Exec(rec, req, func() ([]string, error) { return rec.DualControl(custodianApprovals(dual)) })
	}
	return run, func() error { return errors.Join(trail.Close(), app.Close()) }, nil
}

// collectVotes shows the session and asks its approvers, one after
// another, until the threshold would be reached or a name is left empty.
func collectVotes(con *Console, run mpaRun, req *mpa.Request, reject bool) error {
	st, err := run(&mpa.Request{Command: mpa.CmdStatus, All: true}, nil)
	if err != nil {
		return err
	}
	var s *mpa.Session
	for i := range st.Sessions {
		if st.Sessions[i].ID == req.Session || st.Sessions[i].ARN == req.Session {
			s = &st.Sessions[i]
		}
	}
	if s == nil {
		return fmt.Errorf("no approval session %q", req.Session)
	}
	printSession(con, s)
	if s.Status != mpa.StatusPending {
		return fmt.Errorf("session %s is %s, not PENDING", s.ARN, s.Status)
	}
	need := s.Threshold - len(s.Approvals)
	if reject {
		need = 1
	}
	verb := "approve"
	if reject {
		verb = "REJECT"
	}
	for i := 1; len(req.Votes) < need; i++ {
		name, err := con.Ask(fmt.Sprintf("Approver %d, custodian name (empty to stop): ", i))
		if err != nil {
			return err
		}
		if name == "" {
			break
		}
		pass, err := con.Secret("Passphrase: ")
		if err != nil {
			return err
		}
		ok, err := con.Confirm(fmt.Sprintf("Custodian %s, %s session %s (%s, subject sha256:%s)?", name, verb, s.ID, s.Purpose, s.Subject))
		if err != nil || !ok {
			clear(pass)
			if err != nil {
				return err
			}
			con.Printf("Not counted.\n")
			continue
		}
		req.Votes = append(req.Votes, mpa.Vote{Approval: custodian.Approval{Name: name, Passphrase: pass}, Approve: !reject})
	}
	if len(req.Votes) == 0 {
		return errors.New("no votes were given; nothing was changed")
	}
	return nil
}

func printSession(con *Console, s *mpa.Session) {
	con.Printf("Session %s\n  for: %s (%s), team %s\n  subject: sha256:%s\n  status: %s, %d of %d approvals%s\n  opened %s, expires %s\n",
		s.ARN, s.Purpose, s.Operation, s.Team, s.Subject, s.Status, len(s.Approvals), s.Threshold, approvedBy(s),
		s.Initiated.Format("2006-01-02 15:04:05Z"), s.Expires.Format("2006-01-02 15:04:05Z"))
	if s.Comment != "" {
		con.Printf("  requester's comment: %q\n", s.Comment)
	}
	if s.Message != "" {
		con.Printf("  %s\n", s.Message)
	}
}

func approvedBy(s *mpa.Session) string {
	if len(s.Approvals) == 0 {
		return ""
	}
	return " (" + strings.Join(s.Approvals, ", ") + ")"
}

func printMpa(con *Console, res *mpa.Result) {
	for _, t := range res.Teams {
		con.Printf("Approval team %s: %d of %s\n", t.ARN, t.Threshold, strings.Join(t.Custodians, ", "))
	}
	for i := range res.Sessions {
		printSession(con, &res.Sessions[i])
	}
	if res.Session != nil {
		printSession(con, res.Session)
	}
	if len(res.Approvers) > 0 {
		con.Printf("Approved by %s.\n", strings.Join(res.Approvers, ", "))
	}
}
