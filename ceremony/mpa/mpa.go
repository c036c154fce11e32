// Package mpa owns Multi-Party Approval (MPA) on the appliance: approval
// teams formed from the enrolled key custodians with an M-of-N threshold,
// the association of a team with a protected operation (the AWS API's
// AssociateMpaTeam, DisassociateMpaTeam, GetMpaTeamAssociation), and the
// approval sessions a protected request opens and the custodians approve
// through the ceremony tool (`payhsm ceremony mpa-approve`). Its whole state
// is one sealed record (the key store is not trusted): altered on disk, it
// is refused. It is sealed for every node of a fleet (Sealer), so an
// association made on one node protects the operation on all of them. Every decision — a session
// opened, an approval, a rejection, a refused request, a session consumed,
// an association changed — is written to the audit trail through Registry's
// Audit hook before it takes effect; a decision that cannot be recorded is
// not taken. The daemon (serving) and the ceremony tool (offline) both use it.
//
// Protected operations are named by the model's MpaOperation enum; adding
// one is a new Operation constant and a call to Registry.Authorize where the
// operation runs, with the digest of what the approvers approve.
package mpa

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"payhsm/audit"
	"payhsm/ceremony/custodian"
	"payhsm/fault"
	"payhsm/keystore"
)

// Operation is a protected operation (the model's MpaOperation enum).
type Operation string

// Protected operations.
const (
	// ImportRootCertificate is ImportKey with RootCertificatePublicKey: a
	// root CA certificate becomes a trust anchor for TR-34 and certificate
	// imports. Its sessions are bound to the certificate's SHA-256 digest.
	ImportRootCertificate Operation = "IMPORT_ROOT_PUBLIC_KEY_CERTIFICATE"
)

// Operations lists the protected operations.
func Operations() []Operation { return []Operation{ImportRootCertificate} }

func (o Operation) known() bool { return slices.Contains(Operations(), o) }

// Association states (the model's AssociationState enum).
const (
	StateActive        = "ACTIVE"
	StateUpdatePending = "UPDATE_PENDING" // a change of team awaits the current team's approval
	StateDeletePending = "DELETE_PENDING" // a disassociation awaits the current team's approval
)

// Session statuses (the model's SessionStatus enum).
const (
	StatusPending   = "PENDING"
	StatusApproved  = "APPROVED"
	StatusFailed    = "FAILED"    // rejected by a team member, or expired before the threshold
	StatusCancelled = "CANCELLED" // superseded: the association it served changed
)

// Session purposes besides a protected operation itself: changes of the
// association, which the associated team approves.
const (
	purposeDisassociate = "DisassociateMpaTeam"
	purposeAssociate    = "AssociateMpaTeam"
)

// SessionTTL is how long a session waits for its threshold, and how long an
// approved session waits to be used.
const SessionTTL = 24 * time.Hour

// Limits.
const (
	MaxTeams       = 32
	maxSessions    = 256 // finished sessions beyond this are forgotten, oldest first
	maxLive        = 64  // open sessions (pending, or approved and unused): requests beyond are refused
	maxComment     = 200 // the model's MpaRequesterComment
	metaName       = "mpa/state"
	stateVersion   = 1
	teamNamePatStr = `^[a-zA-Z0-9._-]{1,64}$`
)

var (
	aad         = []byte("payhsm/mpa/state/v1")
	teamNamePat = regexp.MustCompile(teamNamePatStr)
	// teamARNPat and sessionARNPat are the model's MpaTeamArn and MpaSessionArn patterns, anchored.
	teamARNPat    = regexp.MustCompile(`^arn:aws(-[^:]+)?:mpa:[a-z0-9-]{1,20}:[0-9]{12}:approval-team/[a-zA-Z0-9._-]+$`)
	sessionARNPat = regexp.MustCompile(`^arn:aws(-[^:]+)?:mpa:[a-z0-9-]{1,20}:[0-9]{12}:session/[a-zA-Z0-9._-]+/[a-zA-Z0-9_-]+$`)
)

// Team is an approval team.
type Team struct {
	Name       string    `json:"name"`
	ARN        string    `json:"arn"`
	Custodians []string  `json:"custodians"`
	Threshold  int       `json:"threshold"` // M: approvals needed
	Created    time.Time `json:"created"`
}

// Session is an approval session.
type Session struct {
	ID        string    `json:"id"`
	ARN       string    `json:"arn"`
	Team      string    `json:"team"`      // the team's name
	Operation Operation `json:"operation"` // the protected operation it belongs to
	Purpose   string    `json:"purpose"`   // what it approves: the operation itself, or a change of its association
	// Subject is the hex SHA-256 digest of what is approved: for
	// ImportRootCertificate the certificate (DER); for a change of team, the new team's ARN.
	Subject   string    `json:"subject"`
	Comment   string    `json:"comment,omitempty"` // the requester's comment, shown to the approvers
	Status    string    `json:"status"`
	Message   string    `json:"message,omitempty"`
	Initiated time.Time `json:"initiated"`
	Expires   time.Time `json:"expires"`
	Approvals []string  `json:"approvals,omitempty"` // the custodians who approved, in order
	Threshold int       `json:"threshold"`
	Used      bool      `json:"used,omitempty"` // an approved session is used once
}

// Association is a team protecting an operation.
type Association struct {
	Operation Operation `json:"operation"`
	TeamARN   string    `json:"teamArn"`
	State     string    `json:"state"`
	// Pending is the session of a pending change (UPDATE_PENDING, DELETE_PENDING).
	Pending string `json:"pending,omitempty"`
	// NewTeam is the team an UPDATE_PENDING change moves to.
	NewTeam string `json:"newTeam,omitempty"`
	// Status is the session of the pending change, or of the last one (filled on read).
	Status *Session `json:"-"`
}

type state struct {
	Version      int                        `json:"v"`
	Teams        []Team                     `json:"teams"`
	Associations map[Operation]*Association `json:"associations"`
	Sessions     []*Session                 `json:"sessions"`
	LastChange   map[Operation]string       `json:"lastChange,omitempty"` // the last finished change session per operation
}

// custodians is the enrolled custodians (*custodian.Record).
type custodians interface {
	Names() []string
	Verify(name string, pass []byte) bool
}

// refuse records a step refused before it ran, and returns err.
func (r *Registry) refuse(req *Request, err error) error {
	return errors.Join(err, r.record(audit.Event{Operation: "mpa-" + req.Command, Outcome: audit.Refused, Detail: err.Error()}))
}

// Registry is the appliance's MPA state. Its methods are safe for concurrent use.
type Registry struct {
	mu              sync.Mutex
	store           *keystore.Store
	sealer          Sealer
	region, account string
	now             func() time.Time
	// Audit records one decision; it is set by the owner (the daemon or the
	// ceremony tool), which fills in the protocol. A decision whose record
	// fails is not taken. Nil records nothing (tests).
	Audit func(audit.Kind, audit.Event) error

	refused, used atomic.Uint64 // protected requests refused for want of approval; approvals used
}

// Counts reports the protected requests refused for want of an approved
// session, and the approved sessions used, since Open.
func (r *Registry) Counts() (refused, used uint64) { return r.refused.Load(), r.used.Load() }

// Sealer seals the approval state for every node that shares the key
// store (custody.FleetSealer): under a data key carried as a key block
// under the namespace profile's main key, so that a team associated on one
// node of a fleet protects the operation on every node, and a profile main
// key rotation re-wraps the block with the other internal key blocks.
type Sealer interface {
	SealBlock(plaintext, aad []byte) (keyBlock string, sealed []byte, err error)
	UnsealBlock(keyBlock string, sealed, aad []byte) ([]byte, error)
}

// sealedState is the stored form of the approval state; its "keyBlock"
// member is what a rotation re-wraps (ops.RotateProfile).
type sealedState struct {
	KeyBlock string `json:"keyBlock"`
	Sealed   []byte `json:"sealed"`
}

// Open returns the registry of an open key store.
func Open(store *keystore.Store, sealer Sealer, region, account string) *Registry {
	return &Registry{store: store, sealer: sealer, region: region, account: account, now: func() time.Time { return time.Now().UTC() }}
}

// SetClock replaces the clock (tests).
func (r *Registry) SetClock(now func() time.Time) { r.now = now }

// TeamARN is the ARN of the team name on this appliance.
func (r *Registry) TeamARN(name string) string {
	return fmt.Sprintf("arn:aws:mpa:%s:%s:approval-team/%s", r.region, r.account, name)
}

func (r *Registry) sessionARN(team, id string) string {
	return fmt.Sprintf("arn:aws:mpa:%s:%s:session/%s/%s", r.region, r.account, team, id)
}

// ValidTeamARN and ValidSessionARN check ARNs against the model's patterns.
func ValidTeamARN(arn string) bool {
	return len(arn) >= 20 && len(arn) <= 2048 && teamARNPat.MatchString(arn)
}
func ValidSessionARN(arn string) bool {
	return len(arn) >= 20 && len(arn) <= 2048 && sessionARNPat.MatchString(arn)
}

func (r *Registry) record(e audit.Event) error { return r.recordAs(audit.KindCeremony, e) }

// Requester is who asked, through a front end, for a step of the registry
// (an association change, a protected operation): its entries name them as
// the front end's own entry of the call does, so the two can be joined by
// request id. The zero Requester is a step asked by no front end.
type Requester struct {
	Protocol  string // "aws"
	Principal string // the principal's ARN (its access key id when it has none)
	Source    string // the peer address
	RequestID string
}

// stamp sets e's requester fields (those by knows).
func (by Requester) stamp(e audit.Event) audit.Event {
	if by.Protocol != "" {
		e.Protocol = by.Protocol
	}
	if by.Principal != "" {
		e.Principal = by.Principal
	}
	e.Source, e.RequestID = by.Source, by.RequestID
	return e
}

// recordAs records e as kind: ceremony steps, and for protected requests
// a denial (KindDenial) or the use of an approval (KindControl).
func (r *Registry) recordAs(kind audit.Kind, e audit.Event) error {
	if r.Audit == nil {
		return nil
	}
	if e.Account == "" {
		e.Account = r.account
	}
	if err := r.Audit(kind, e); err != nil {
		return fmt.Errorf("multi-party approval: the decision could not be recorded, so it is not taken: %w", err)
	}
	return nil
}

func (r *Registry) load() (*state, error) {
	sealed, err := r.store.GetMeta(metaName)
	if errors.Is(err, keystore.ErrNotFound) {
		return &state{Version: stateVersion, Associations: map[Operation]*Association{}}, nil
	}
	if err != nil {
		return nil, fault.Internalf("read the approval state", err)
	}
	var ss sealedState
	if err := json.Unmarshal(sealed, &ss); err != nil {
		return nil, fault.Internalf("approval state", fmt.Errorf("the stored approval state is not a sealed record: %w", err))
	}
	raw, err := r.sealer.UnsealBlock(ss.KeyBlock, ss.Sealed, aad)
	if err != nil {
		return nil, fault.Internalf("approval state", fmt.Errorf("the sealed approval state does not open (altered, or another appliance's): %w", err))
	}
	defer clear(raw)
	var st state
	if err := json.Unmarshal(raw, &st); err != nil || st.Version != stateVersion {
		return nil, fault.Internalf("approval state", errors.New("the approval state is corrupt or of an unknown version"))
	}
	if st.Associations == nil {
		st.Associations = map[Operation]*Association{}
	}
	return &st, nil
}

func (r *Registry) save(st *state) error {
	// Forget the oldest finished sessions beyond the bound; pending, and
	// approved but unused, sessions are kept.
	if n := len(st.Sessions) - maxSessions; n > 0 {
		kept := st.Sessions[:0]
		for _, s := range st.Sessions {
			if n > 0 && !s.live() {
				n--
				continue
			}
			kept = append(kept, s)
		}
		st.Sessions = kept
	}
	raw, err := json.Marshal(st)
	if err != nil {
		return fault.Internalf("encode the approval state", err)
	}
	block, sealed, err := r.sealer.SealBlock(raw, aad)
	clear(raw)
	if err != nil {
		return fault.Internalf("seal the approval state", err)
	}
	rec, err := json.Marshal(sealedState{KeyBlock: block, Sealed: sealed})
	if err != nil {
		return fault.Internalf("encode the approval state", err)
	}
	if err := r.store.PutMeta(metaName, rec); err != nil {
		return fault.Internalf("store the approval state", err)
	}
	return nil
}

func countLive(st *state) int {
	n := 0
	for _, s := range st.Sessions {
		if s.live() {
			n++
		}
	}
	return n
}

func (s *Session) live() bool {
	return s.Status == StatusPending || s.Status == StatusApproved && !s.Used
}

// expire fails pending sessions past their time and forgets approvals not used in time.
func (r *Registry) expire(st *state) bool {
	now, changed := r.now(), false
	for _, s := range st.Sessions {
		if s.live() && !now.Before(s.Expires) {
			if s.Status == StatusPending {
				s.Status, s.Message = StatusFailed, "expired before the approval threshold was reached"
				r.finishChange(st, s)
			} else {
				s.Status, s.Message = StatusFailed, "approved, but not used before it expired"
			}
			changed = true
		}
	}
	return changed
}

func (st *state) team(name string) *Team {
	for i := range st.Teams {
		if st.Teams[i].Name == name {
			return &st.Teams[i]
		}
	}
	return nil
}

func (st *state) teamByARN(arn string) *Team {
	for i := range st.Teams {
		if st.Teams[i].ARN == arn {
			return &st.Teams[i]
		}
	}
	return nil
}

func (st *state) session(id string) *Session {
	for _, s := range st.Sessions {
		if s.ID == id || s.ARN == id {
			return s
		}
	}
	return nil
}

// teamOfARN resolves a team ARN of this appliance.
func (r *Registry) teamOfARN(st *state, arn string) (*Team, error) {
	if !ValidTeamARN(arn) {
		return nil, fault.Validationf("MpaTeamArn: does not match the approval team ARN pattern")
	}
	for i := range st.Teams {
		if st.Teams[i].ARN == arn {
			return &st.Teams[i], nil
		}
	}
	return nil, fault.NotFoundf(arn, "approval team %s does not exist on this appliance", arn)
}

// CreateTeam forms an approval team of enrolled custodians needing threshold of their approvals.
// approvers are the custodians who approved the step (dual control), for the audit trail.
func (r *Registry) CreateTeam(rec custodians, name string, members []string, threshold int, approvers []string) (*Team, error) {
	if !teamNamePat.MatchString(name) {
		return nil, fmt.Errorf("team name %q: 1 to 64 of a-z A-Z 0-9 . _ -", name)
	}
	enrolled := rec.Names()
	seen := map[string]bool{}
	for _, m := range members {
		if !slices.Contains(enrolled, m) {
			return nil, fmt.Errorf("%q is not an enrolled custodian (enrolled: %s)", m, strings.Join(enrolled, ", "))
		}
		if seen[m] {
			return nil, fmt.Errorf("custodian %q is listed twice", m)
		}
		seen[m] = true
	}
	if threshold < 2 || threshold > len(members) {
		return nil, fmt.Errorf("the threshold must be at least 2 (no single custodian approves alone) and at most the team's %d members", len(members))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	if st.team(name) != nil {
		return nil, fmt.Errorf("approval team %q already exists", name)
	}
	if len(st.Teams) >= MaxTeams {
		return nil, fmt.Errorf("at most %d approval teams", MaxTeams)
	}
	t := Team{Name: name, ARN: r.TeamARN(name), Custodians: append([]string(nil), members...), Threshold: threshold, Created: r.now()}
	if !ValidTeamARN(t.ARN) {
		return nil, fmt.Errorf("team ARN %s does not match the model's pattern (check the region and account)", t.ARN)
	}
	if err := r.record(audit.Event{Operation: "mpa-team-create", Custodians: approvers, Outcome: audit.OK,
		Detail: fmt.Sprintf("team %s: %d of %s", t.ARN, threshold, strings.Join(members, ", "))}); err != nil {
		return nil, err
	}
	st.Teams = append(st.Teams, t)
	return &t, r.save(st)
}

// RemoveTeam removes a team no operation is associated with; approvers as for CreateTeam.
func (r *Registry) RemoveTeam(name string, approvers []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.load()
	if err != nil {
		return err
	}
	t := st.team(name)
	if t == nil {
		return fmt.Errorf("approval team %q does not exist", name)
	}
	for op, a := range st.Associations {
		if a.TeamARN == t.ARN || a.NewTeam == t.ARN {
			return fmt.Errorf("approval team %q is associated with %s; disassociate it first", name, op)
		}
	}
	if err := r.record(audit.Event{Operation: "mpa-team-remove", Custodians: approvers, Outcome: audit.OK, Detail: "team " + t.ARN}); err != nil {
		return err
	}
	st.Teams = slices.DeleteFunc(st.Teams, func(x Team) bool { return x.Name == name })
	return r.save(st)
}

// Teams lists the approval teams.
func (r *Registry) Teams() ([]Team, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	return st.Teams, nil
}

// Sessions lists the sessions, newest first; pending only, unless all.
func (r *Registry) Sessions(all bool) ([]Session, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	if r.expire(st) {
		if err := r.save(st); err != nil {
			return nil, err
		}
	}
	var out []Session
	for _, s := range st.Sessions {
		if all || s.Status == StatusPending {
			out = append(out, *s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Initiated.After(out[j].Initiated) })
	return out, nil
}

func (r *Registry) newSession(st *state, t *Team, op Operation, purpose string, subject []byte, comment string) (*Session, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fault.Internalf("session id", err)
	}
	id := hex.EncodeToString(b[:])
	now := r.now()
	d := sha256.Sum256(subject)
	s := &Session{ID: id, ARN: r.sessionARN(t.Name, id), Team: t.Name, Operation: op, Purpose: purpose,
		Subject: hex.EncodeToString(d[:]), Comment: comment, Status: StatusPending, Initiated: now,
		Expires: now.Add(SessionTTL), Threshold: t.Threshold}
	st.Sessions = append(st.Sessions, s)
	return s, nil
}

func checkComment(c string) error {
	if len(c) > maxComment {
		return fault.Validationf("RequesterComment: at most %d characters", maxComment)
	}
	return nil
}

func (st *state) view(a *Association) *Association {
	out := *a
	if a.Pending != "" {
		out.Status = st.session(a.Pending)
	} else if id := st.LastChange[a.Operation]; id != "" {
		out.Status = st.session(id)
	}
	if out.Status != nil {
		c := *out.Status
		out.Status = &c
	}
	return &out
}

// Associate associates the team with op. The first association is active
// at once; moving an associated operation to another team needs the
// current team's approval (UPDATE_PENDING until then).
func (r *Registry) Associate(op Operation, teamARN, comment string, by Requester) (*Association, error) {
	if err := checkChange(op, comment); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	r.expire(st)
	t, err := r.teamOfARN(st, teamARN)
	if err != nil {
		return nil, err
	}
	a := st.Associations[op]
	if a != nil && a.Pending != "" {
		if s := st.session(a.Pending); s != nil && s.Status == StatusPending {
			return nil, fault.Conflictf("a change of the %s association awaits approval (session %s)", op, s.ARN)
		}
		r.settle(st, a)
	}
	if a != nil && a.TeamARN == teamARN {
		return st.view(a), nil // already associated with this team
	}
	if a == nil {
		if err := r.record(by.stamp(audit.Event{Operation: purposeAssociate, Outcome: audit.OK,
			Detail: fmt.Sprintf("%s protected by %s", op, teamARN)})); err != nil {
			return nil, err
		}
		a = &Association{Operation: op, TeamARN: teamARN, State: StateActive}
		st.Associations[op] = a
		return st.view(a), r.save(st)
	}
	return r.askChange(st, a, purposeAssociate, []byte(t.ARN), comment, StateUpdatePending, teamARN,
		fmt.Sprintf("%s: move from %s to %s awaits approval", op, a.TeamARN, teamARN), by)
}

// Disassociate asks to remove op's association; the associated team approves it (DELETE_PENDING until then).
func (r *Registry) Disassociate(op Operation, comment string, by Requester) (*Association, error) {
	if err := checkChange(op, comment); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	r.expire(st)
	a := st.Associations[op]
	if a == nil {
		return nil, fault.NotFoundf(string(op), "no approval team is associated with %s", op)
	}
	if a.Pending != "" {
		s := st.session(a.Pending)
		if s != nil && s.Status == StatusPending && s.Purpose == purposeDisassociate {
			return st.view(a), nil // already asked
		}
		if s != nil && s.Status == StatusPending {
			return nil, fault.Conflictf("a change of the %s association awaits approval (session %s)", op, s.ARN)
		}
		r.settle(st, a)
	}
	return r.askChange(st, a, purposeDisassociate, []byte(a.TeamARN), comment, StateDeletePending, "",
		fmt.Sprintf("%s: removing %s awaits approval", op, a.TeamARN), by)
}

// checkChange checks the operation and comment of an association change.
func checkChange(op Operation, comment string) error {
	if !op.known() {
		return fault.Validationf("Action: %q is not a protected operation", op)
	}
	return checkComment(comment)
}

// askChange opens the session in which a's current team approves a change
// of the association (purpose, approving subject), records it, and leaves
// a in state (pending that session) until then.
func (r *Registry) askChange(st *state, a *Association, purpose string, subject []byte, comment, state, newTeam, detail string, by Requester) (*Association, error) {
	cur := st.teamByARN(a.TeamARN)
	if cur == nil {
		return nil, fault.Internalf("approval state", fmt.Errorf("the associated team %s is missing", a.TeamARN))
	}
	s, err := r.newSession(st, cur, a.Operation, purpose, subject, comment)
	if err != nil {
		return nil, err
	}
	if err := r.record(by.stamp(audit.Event{Operation: purpose, Outcome: audit.Started, Detail: detail + ", session " + s.ARN})); err != nil {
		return nil, err
	}
	a.State, a.Pending, a.NewTeam = state, s.ID, newTeam
	return st.view(a), r.save(st)
}

// settle returns an association whose pending change failed to ACTIVE.
func (r *Registry) settle(st *state, a *Association) {
	if st.LastChange == nil {
		st.LastChange = map[Operation]string{}
	}
	st.LastChange[a.Operation] = a.Pending
	a.State, a.Pending, a.NewTeam = StateActive, "", ""
}

// GetAssociation returns op's association, with the session of its pending (or last) change.
func (r *Registry) GetAssociation(op Operation) (*Association, error) {
	if !op.known() {
		return nil, fault.Validationf("Action: %q is not a protected operation", op)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	a := st.Associations[op]
	if a == nil {
		return nil, fault.NotFoundf(string(op), "no approval team is associated with %s", op)
	}
	if r.expire(st) {
		if err := r.save(st); err != nil {
			return nil, err
		}
	}
	return st.view(a), nil
}

// Grant is an approved session consumed by a protected request.
type Grant struct {
	Session Session
	r       *Registry
}

// Release gives the session back when the protected operation did not
// complete after all (it failed after Authorize), so that it can be retried.
func (g *Grant) Release() {
	if g == nil {
		return
	}
	g.r.mu.Lock()
	defer g.r.mu.Unlock()
	st, err := g.r.load()
	if err != nil {
		return
	}
	if s := st.session(g.Session.ID); s != nil && s.Used {
		s.Used = false
		_ = g.r.save(st)
	}
}

// Authorize decides a request for a protected operation on subject (what
// the approvers approve; for ImportRootCertificate the certificate's DER).
// With no team associated it returns (nil, nil). Else it consumes an
// approved, unused session of the associated team for the same operation
// and subject and returns it; without one it opens a session (or names the
// one pending) and refuses the request with AccessDenied naming it.
// by names the requester for the audit trail.
func (r *Registry) Authorize(op Operation, subject []byte, comment string, by Requester) (*Grant, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	a := st.Associations[op]
	if a == nil {
		return nil, nil
	}
	r.expire(st)
	d := sha256.Sum256(subject)
	digest := hex.EncodeToString(d[:])
	team := st.teamByARN(a.TeamARN)
	if team == nil {
		return nil, fault.Internalf("approval state", fmt.Errorf("the associated team %s is missing", a.TeamARN))
	}
	var pending *Session
	for _, s := range st.Sessions {
		if s.Operation != op || s.Purpose != string(op) || s.Subject != digest || !s.live() {
			continue
		}
		if s.Team != team.Name { // the association moved to another team: its sessions no longer count
			s.Status, s.Message = StatusCancelled, "the operation's approval team changed"
			continue
		}
		if s.Status == StatusApproved {
			if err := r.recordAs(audit.KindControl, by.stamp(audit.Event{Protocol: "aws", Operation: string(op), Custodians: s.Approvals, Outcome: audit.OK,
				Detail: fmt.Sprintf("approved session %s used (subject sha256:%s)", s.ARN, digest)})); err != nil {
				return nil, err
			}
			s.Used = true
			if err := r.save(st); err != nil {
				return nil, err
			}
			r.used.Add(1)
			return &Grant{Session: *s, r: r}, nil
		}
		pending = s
	}
	if comment == "" {
		return nil, fault.Validationf("RequesterComment: required while %s is protected by Multi-Party Approval (it is shown to the approvers)", op)
	}
	if err := checkComment(comment); err != nil {
		return nil, err
	}
	opened := pending == nil
	if opened {
		if live := countLive(st); live >= maxLive {
			return nil, fault.QuotaExceededf("%d Multi-Party Approval sessions are open; approve, reject or let some expire first", live)
		}
		if pending, err = r.newSession(st, team, op, string(op), subject, comment); err != nil {
			return nil, err
		}
	}
	if err := r.recordAs(audit.KindDenial, by.stamp(audit.Event{Protocol: "aws", Operation: string(op), Outcome: audit.Denied, Error: "AccessDeniedException",
		Detail: fmt.Sprintf("needs Multi-Party Approval: session %s %s (%d of %d approvals; subject sha256:%s; opened %t)",
			pending.ARN, pending.Status, len(pending.Approvals), pending.Threshold, digest, opened)})); err != nil {
		return nil, err
	}
	if opened {
		if err := r.save(st); err != nil {
			return nil, err
		}
	}
	r.refused.Add(1)
	return nil, fault.AccessDeniedf("%s needs Multi-Party Approval by approval team %s: session %s is %s (%d of %d approvals); "+
		"the team's custodians approve it with payhsm ceremony mpa-approve, then the request is sent again",
		op, team.ARN, pending.ARN, pending.Status, len(pending.Approvals), pending.Threshold)
}

// Vote is one custodian's answer in a session.
type Vote struct {
	custodian.Approval
	Approve bool `json:"approve"`
}

// Decide records custodians' votes on a pending session: each must
// authenticate and be a member of the session's team who has not voted
// yet. One rejection fails the session; reaching the threshold approves it
// (a change of association then takes effect). It zeroes the passphrases.
// Authentication failures are recorded and stop the votes after them.
func (r *Registry) Decide(rec custodians, sessionID string, votes []Vote) (*Session, error) {
	defer func() {
		for _, v := range votes {
			clear(v.Passphrase)
		}
	}()
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	r.expire(st)
	s := st.session(sessionID)
	if s == nil {
		return nil, fmt.Errorf("no approval session %q", sessionID)
	}
	if s.Status != StatusPending {
		_ = r.save(st)
		return nil, fmt.Errorf("session %s is %s, not PENDING: %s", s.ARN, s.Status, s.Message)
	}
	team := st.team(s.Team)
	if team == nil {
		return nil, fmt.Errorf("session %s: its team %q no longer exists", s.ARN, s.Team)
	}
	var failure error
	for _, v := range votes {
		var why string
		switch {
		case !rec.Verify(v.Name, v.Passphrase):
			why = "authentication failed"
		case !slices.Contains(team.Custodians, v.Name):
			why = "not a member of approval team " + team.Name
		case slices.Contains(s.Approvals, v.Name):
			why = "has already approved this session"
		}
		if why != "" {
			failure = fmt.Errorf("custodian %q: %s", v.Name, why)
			if err := r.record(audit.Event{Operation: "mpa-approve", Custodians: []string{v.Name}, Outcome: audit.Refused,
				Detail: fmt.Sprintf("session %s: %s", s.ARN, why)}); err != nil {
				failure = errors.Join(failure, err)
			}
			break
		}
		if !v.Approve {
			if err := r.record(audit.Event{Operation: "mpa-reject", Custodians: []string{v.Name}, Outcome: audit.OK,
				Detail: fmt.Sprintf("session %s (%s) rejected", s.ARN, s.Purpose)}); err != nil {
				failure = err
				break
			}
			s.Status, s.Message = StatusFailed, "rejected by custodian "+v.Name
			r.finishChange(st, s)
			break
		}
		if err := r.record(audit.Event{Operation: "mpa-approve", Custodians: []string{v.Name}, Outcome: audit.OK,
			Detail: fmt.Sprintf("session %s (%s): approval %d of %d", s.ARN, s.Purpose, len(s.Approvals)+1, s.Threshold)}); err != nil {
			failure = err
			break
		}
		s.Approvals = append(s.Approvals, v.Name)
		if len(s.Approvals) >= s.Threshold {
			if err := r.approved(st, s); err != nil {
				failure = err
			}
			break
		}
	}
	if err := r.save(st); err != nil {
		return nil, errors.Join(failure, err)
	}
	out := *s
	return &out, failure
}

// approved marks s approved; a change of association takes effect now.
func (r *Registry) approved(st *state, s *Session) error {
	a := st.Associations[s.Operation]
	change := s.Purpose == purposeDisassociate || s.Purpose == purposeAssociate
	if change && (a == nil || a.Pending != s.ID) {
		s.Status, s.Message = StatusCancelled, "the association changed meanwhile"
		return nil
	}
	detail := fmt.Sprintf("session %s approved by %s", s.ARN, strings.Join(s.Approvals, ", "))
	switch s.Purpose {
	case purposeDisassociate:
		detail += fmt.Sprintf("; %s no longer protected by %s", s.Operation, a.TeamARN)
	case purposeAssociate:
		detail += fmt.Sprintf("; %s now protected by %s", s.Operation, a.NewTeam)
	}
	if err := r.record(audit.Event{Operation: s.Purpose, Custodians: s.Approvals, Outcome: audit.OK, Detail: detail}); err != nil {
		return err
	}
	s.Status, s.Message = StatusApproved, "approved by "+strings.Join(s.Approvals, ", ")
	s.Expires = r.now().Add(SessionTTL) // an approval waits SessionTTL to be used
	switch s.Purpose {
	case purposeDisassociate:
		s.Used = true
		delete(st.Associations, s.Operation)
		if st.LastChange != nil {
			delete(st.LastChange, s.Operation)
		}
	case purposeAssociate:
		s.Used = true
		a.TeamARN = a.NewTeam
		r.settle(st, a)
	}
	return nil
}

// finishChange returns the association of a failed change to ACTIVE.
func (r *Registry) finishChange(st *state, s *Session) {
	if a := st.Associations[s.Operation]; a != nil && a.Pending == s.ID {
		r.settle(st, a)
	}
}

// Digest is the hex SHA-256 digest a session of subject carries.
func Digest(subject []byte) string {
	d := sha256.Sum256(subject)
	return hex.EncodeToString(d[:])
}
