// Package admin owns the wire of the daemon's admin socket: the request and
// response of an online ceremony step and the client that sends one. A unix
// socket (mode 0600, owner only) under the data directory carries one JSON
// request and one JSON response per connection; every request that changes
// a key carries two custodians' credentials, and the daemon checks dual
// control itself. The daemon serves it; `payhsm ceremony` calls it.
package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"syscall"

	"payhsm/access"
	"payhsm/audit"
	"payhsm/ceremony/mpa"
)

// Op is an online ceremony step.
type Op string

// Ops.
const (
	// OpRotate moves a profile onto a new main key (resumable).
	OpRotate Op = "rotate"
	// OpKRDRequest returns this appliance's device certificate and a fresh
	// one-time nonce (TR-34, receiving side). It needs no approval: no secret leaves.
	OpKRDRequest Op = "krd-request"
	// OpExportMainKey builds a TR-34 token carrying a profile main key for the
	// receiving appliance's certificate and nonce.
	OpExportMainKey Op = "export-main-key"
	// OpImportMainKey verifies, opens and installs a TR-34 token as a profile main key.
	OpImportMainKey Op = "import-main-key"
	// OpVerifyKeystore checks every record of the key store (payhsm keystore
	// verify). It needs no approval: it changes nothing, and its report names
	// records (key ids, alias names, tag keys), never their content.
	OpVerifyKeystore Op = "keystore-verify"
	// OpAuditSeals checks audit trail seals with the daemon's trail key
	// (payhsm audit verify while the daemon runs). It needs no approval: it
	// answers whether each MAC is right, never what it should be, so it
	// cannot be used to forge a seal.
	OpAuditSeals Op = "audit-seals"
	// OpPrincipals manages the principals and their identity policies
	// (payhsm principals; Request.Principals). Secrets are in the response
	// once, never stored in the clear or logged.
	OpPrincipals Op = "principals"
	// OpMpa runs a Multi-Party Approval step (payhsm ceremony mpa-*;
	// Request.Mpa): team changes need dual control (Approvals); a decision
	// carries each voting custodian's credentials (Request.Mpa.Votes).
	OpMpa Op = "mpa"
)

// MaxSeals bounds the seals of one OpAuditSeals request.
const MaxSeals = 500

// AuditSeal is one seal to check: its key id, the hash of the entry it
// seals and its MAC (hex).
type AuditSeal struct {
	KeyID string `json:"keyId"`
	Prev  string `json:"prev"`
	MAC   string `json:"mac"`
}

// Seal statuses on the wire (audit.SealStatus).
const (
	SealValid      = "valid"
	SealInvalid    = "invalid"
	SealUnknownKey = "unknown-key"
)

// SealStatusName is the wire name of a seal status.
func SealStatusName(s audit.SealStatus) string {
	switch s {
	case audit.SealValid:
		return SealValid
	case audit.SealInvalid:
		return SealInvalid
	default:
		return SealUnknownKey
	}
}

// ParseSealStatus reverses SealStatusName.
func ParseSealStatus(name string) (audit.SealStatus, error) {
	switch name {
	case SealValid:
		return audit.SealValid, nil
	case SealInvalid:
		return audit.SealInvalid, nil
	case SealUnknownKey:
		return audit.SealUnknownKey, nil
	}
	return 0, fmt.Errorf("unknown seal status %q", name)
}

// PrincipalsRequest is one principals command.
type PrincipalsRequest struct {
	// Command is add, list, rotate-secret, disable, enable, remove or put-policy.
	Command     string            `json:"command"`
	Name        string            `json:"name,omitempty"`
	Kind        string            `json:"kind,omitempty"`      // add: user (default) or role
	Account     string            `json:"account,omitempty"`   // add: the principal's account (default: the appliance's)
	AccessKey   bool              `json:"accessKey,omitempty"` // add: issue a SigV4 key pair
	HostClients []string          `json:"hostClients,omitempty"`
	Policies    map[string]string `json:"policies,omitempty"` // add, put-policy: name → IAM JSON
}

// PrincipalsResult answers a PrincipalsRequest.
type PrincipalsResult struct {
	Principals  []access.Info       `json:"principals,omitempty"`
	Credentials *access.Credentials `json:"credentials,omitempty"` // add, rotate-secret: shown once
}

// MaxRequest bounds a request's encoded size.
const MaxRequest = 256 << 10

// Approval is one custodian's credentials for a step. The receiver zeroes Passphrase.
type Approval struct {
	Name       string `json:"name"`
	Passphrase []byte `json:"passphrase"`
}

// Request is one online ceremony step.
type Request struct {
	Op          Op                 `json:"op"`
	Principals  *PrincipalsRequest `json:"principals,omitempty"`
	Mpa         *mpa.Request       `json:"mpa,omitempty"`
	Profile     string             `json:"profile,omitempty"`
	Approvals   []Approval         `json:"approvals,omitempty"`
	Certificate []byte             `json:"certificate,omitempty"` // PEM: the KRD's (export) or the KDH's (import)
	Nonce       []byte             `json:"nonce,omitempty"`       // the KRD's one-time nonce (export)
	Token       []byte             `json:"token,omitempty"`       // the TR-34 token (import)
	KCV         string             `json:"kcv,omitempty"`         // the expected check value (import)
	Seals       []AuditSeal        `json:"seals,omitempty"`       // OpAuditSeals
	Isolated    bool               `json:"isolated,omitempty"`    // OpRotate: not carried to the fleet's other nodes
}

// Rotation reports a finished profile main key rotation.
type Rotation struct {
	Profile   string `json:"Profile"`
	Version   int    `json:"Version"`   // the new active main key version
	KCV       string `json:"KCV"`       // its check value
	Rewrapped int    `json:"Rewrapped"` // key blocks moved onto it by this run
	Verified  int    `json:"Verified"`  // key blocks verified under it before the old versions were retired
}

// VerifyReport is the result of OpVerifyKeystore (keystore.VerifyReport on the wire).
type VerifyReport struct {
	Format   int             `json:"Format"`
	Records  int             `json:"Records"`
	Failures []VerifyFailure `json:"Failures"`
}

// VerifyFailure is one record that failed its check.
type VerifyFailure struct {
	Type   string `json:"Type"` // key, alias, alias-index, tag, purge-index, meta
	Name   string `json:"Name"`
	KeyID  string `json:"KeyID,omitempty"`
	Reason string `json:"Reason"`
}

// Response answers a Request: Error, or the step's results.
type Response struct {
	Error       string            `json:"error,omitempty"`
	Principals  *PrincipalsResult `json:"principals,omitempty"`
	Mpa         *mpa.Result       `json:"mpa,omitempty"`
	Rotate      *Rotation         `json:"rotate,omitempty"`
	Verify      *VerifyReport     `json:"verify,omitempty"`
	Certificate []byte            `json:"certificate,omitempty"` // PEM: this appliance's device certificate
	Nonce       []byte            `json:"nonce,omitempty"`
	Token       []byte            `json:"token,omitempty"`
	KCV         string            `json:"kcv,omitempty"`
	SealStatus  []string          `json:"sealStatus,omitempty"` // OpAuditSeals: one per seal
	AuditKeyID  string            `json:"auditKeyId,omitempty"` // OpAuditSeals: the daemon's trail key id
}

// ErrNoDaemon reports that no daemon listens on the socket.
var ErrNoDaemon = errors.New("no daemon listens on the admin socket")

// DecodeRequest reads one request of at most MaxRequest bytes.
func DecodeRequest(r io.Reader) (*Request, error) {
	var req Request
	if err := json.NewDecoder(io.LimitReader(r, MaxRequest)).Decode(&req); err != nil {
		return nil, errors.New("malformed request")
	}
	return &req, nil
}

// Call sends req to the admin socket at path (a daemon's, possibly forwarded
// over SSH) and returns its response. It returns an error wrapping
// ErrNoDaemon when nothing listens there, and the daemon's error when it
// refused or failed the step.
func Call(path string, req *Request) (*Response, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		if _, serr := os.Stat(path); errors.Is(err, syscall.ECONNREFUSED) || errors.Is(serr, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", path, ErrNoDaemon)
		}
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	// The answer is read, or the call has failed, before this runs: a failure
	// to close the connection loses nothing.
	defer func() { _ = c.Close() }()
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return nil, errors.New("the daemon closed the admin connection without an answer")
	}
	if resp.Error != "" {
		return nil, errors.New(resp.Error)
	}
	return &resp, nil
}
