package ops

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"payhsm/fault"
	"payhsm/keystore"
)

// Multi-Party Approval: the operations layer asks an Approvals (package
// ceremony/mpa, wired in by the daemon) before a protected operation runs,
// and passes the three association operations of the API through to it.
// Protected today: ImportKey with RootCertificatePublicKey
// (MpaImportRootCertificate), bound to the certificate's digest.

// MpaImportRootCertificate is the model's MpaOperation for root certificate imports.
const MpaImportRootCertificate = "IMPORT_ROOT_PUBLIC_KEY_CERTIFICATE"

// MpaStatus is an approval session's status (the model's MpaStatus).
type MpaStatus struct {
	SessionARN string    `json:"arn"`
	Status     string    `json:"status"` // PENDING, APPROVED, FAILED, CANCELLED
	Message    string    `json:"message,omitempty"`
	Initiated  time.Time `json:"initiated"`
}

// MpaAssociation is a team protecting an operation (the model's MpaTeamAssociation).
type MpaAssociation struct {
	Operation string
	TeamARN   string
	State     string // ACTIVE, UPDATE_PENDING, DELETE_PENDING
	Status    *MpaStatus
}

// Approvals decides protected operations and keeps their associations.
// by is the caller of the request, for the audit trail.
type Approvals interface {
	Associate(op, teamARN, comment string, by Caller) (*MpaAssociation, error)
	Disassociate(op, comment string, by Caller) (*MpaAssociation, error)
	GetAssociation(op string) (*MpaAssociation, error)
	// Authorize returns (nil, nil, nil) when op is not protected; the
	// approved session it consumed and a function that gives it back if
	// the operation then fails; or the refusal (AccessDenied naming the
	// session to approve).
	Authorize(op string, subject []byte, comment string, by Caller) (*MpaStatus, func(), error)
}

// Caller is who sent a request, as its front end knows it, for the audit
// entries the operations layer (or what it calls) writes about the request:
// the same principal and request id as the front end's own entry of the
// call. The zero Caller is an unknown one (an internal call, a test).
type Caller struct {
	Protocol  string // "aws", "host"
	Principal string // the principal's ARN; its access key id or host client name when it has none
	Source    string // the peer address
	RequestID string
}

type callerKey struct{}

// WithCaller returns ctx carrying the caller c (CallerFrom).
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom is the caller ctx carries (WithCaller), or the zero Caller.
func CallerFrom(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}

// SetApprovals installs Multi-Party Approval. Call it before serving.
func (s *Service) SetApprovals(a Approvals) { s.approvals = a }

var errNoApprovals = fault.Conflictf("Multi-Party Approval is not available on this service")

// AssociateMpaTeam associates an approval team with a protected operation.
func (s *Service) AssociateMpaTeam(op, teamARN, comment string, by Caller) (*MpaAssociation, error) {
	if s.approvals == nil {
		return nil, errNoApprovals
	}
	return s.approvals.Associate(op, teamARN, comment, by)
}

// DisassociateMpaTeam asks to remove a protected operation's association.
func (s *Service) DisassociateMpaTeam(op, comment string, by Caller) (*MpaAssociation, error) {
	if s.approvals == nil {
		return nil, errNoApprovals
	}
	return s.approvals.Disassociate(op, comment, by)
}

// GetMpaTeamAssociation returns a protected operation's association.
func (s *Service) GetMpaTeamAssociation(op string) (*MpaAssociation, error) {
	if s.approvals == nil {
		return nil, errNoApprovals
	}
	return s.approvals.GetAssociation(op)
}

// authorizeMpa asks whether op on subject may run now; see Approvals.Authorize.
func (s *Service) authorizeMpa(op string, subject []byte, comment string, by Caller) (*MpaStatus, func(), error) {
	if s.approvals == nil {
		return nil, func() {}, nil
	}
	st, release, err := s.approvals.Authorize(op, subject, comment, by)
	if release == nil {
		release = func() {}
	}
	return st, release, err
}

func mpaStatusMeta(id string) string { return "mpa-status/" + id }

// keepMpaStatus records the session a key was created under, for GetKey.
func (s *Service) keepMpaStatus(id string, st *MpaStatus) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return s.store.PutMeta(mpaStatusMeta(id), b)
}

// mpaStatusOf is the session a key was created under, or nil.
func (s *Service) mpaStatusOf(id string) *MpaStatus {
	b, err := s.store.GetMeta(mpaStatusMeta(id))
	if errors.Is(err, keystore.ErrNotFound) || err != nil {
		return nil
	}
	var st MpaStatus
	if json.Unmarshal(b, &st) != nil {
		return nil
	}
	return &st
}
