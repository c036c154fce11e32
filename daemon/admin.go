package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"payhsm/ceremony/custodian"
	"payhsm/ceremony/mainkey"
	"payhsm/fault"
	"payhsm/hsm/custody"
	"payhsm/keystore"
	"payhsm/ops"
)

// AdminSocket is the name, under the data directory, of the unix socket
// (mode 0600, owner only) through which `payhsm ceremony` runs online
// ceremonies against a serving daemon. Every request carries two custodians'
// credentials; the daemon checks dual control itself.
const AdminSocket = "admin.sock"

// AuditLog is the name, under the data directory, of the append-only ceremony audit log.
const AuditLog = "ceremony-audit.log"

// AdminRequest is one online ceremony request.
type AdminRequest struct {
	Op          string               `json:"op"` // rotate, krd-request, export-main-key, import-main-key
	Profile     string               `json:"profile,omitempty"`
	Approvals   []custodian.Approval `json:"approvals,omitempty"`
	Certificate []byte               `json:"certificate,omitempty"` // PEM: the KRD's (export) or the KDH's (import)
	Nonce       []byte               `json:"nonce,omitempty"`       // the KRD's one-time nonce (export)
	Token       []byte               `json:"token,omitempty"`       // the TR-34 token (import)
	KCV         string               `json:"kcv,omitempty"`         // the expected check value (import)
}

// AdminResponse answers an AdminRequest.
type AdminResponse struct {
	Error       string              `json:"error,omitempty"`
	Rotate      *ops.RotationReport `json:"rotate,omitempty"`
	Certificate []byte              `json:"certificate,omitempty"` // PEM: this appliance's device certificate
	Nonce       []byte              `json:"nonce,omitempty"`
	Token       []byte              `json:"token,omitempty"`
	KCV         string              `json:"kcv,omitempty"`
}

type admin struct {
	ln    net.Listener
	svc   *ops.Service
	store *keystore.Store
	cust  *custody.Custodian
	audit string
	log   *zap.Logger
	mu    sync.Mutex // one ceremony at a time
	wg    sync.WaitGroup
}

func startAdmin(dir string, svc *ops.Service, store *keystore.Store, cust *custody.Custodian, log *zap.Logger) (*admin, error) {
	path := filepath.Join(dir, AdminSocket)
	_ = os.Remove(path) // a stale socket from a crash
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	a := &admin{ln: ln, svc: svc, store: store, cust: cust, audit: filepath.Join(dir, AuditLog), log: log}
	go a.serve()
	return a, nil
}

func (a *admin) serve() {
	for {
		c, err := a.ln.Accept()
		if err != nil {
			return
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			defer c.Close()
			a.handle(c)
		}()
	}
}

func (a *admin) close(ctx context.Context) {
	a.ln.Close()
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func (a *admin) handle(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	var req AdminRequest
	if err := json.NewDecoder(io.LimitReader(c, 256<<10)).Decode(&req); err != nil {
		_ = json.NewEncoder(c).Encode(AdminResponse{Error: "malformed request"})
		return
	}
	resp := a.run(&req)
	_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
	_ = json.NewEncoder(c).Encode(resp)
}

func (a *admin) run(req *AdminRequest) AdminResponse {
	a.mu.Lock()
	defer a.mu.Unlock()
	if req.Op == "krd-request" { // no secret leaves: the certificate and a fresh nonce
		cert, nonce, err := mainkey.KRDRequest(a.store, a.cust)
		if err != nil {
			return AdminResponse{Error: err.Error()}
		}
		a.record("krd-request", "", nil, "ok", "certificate "+mainkey.Fingerprint(cert), nil)
		return AdminResponse{Certificate: mainkey.CertPEM(cert), Nonce: nonce}
	}
	rec, err := custodian.Load(a.store, a.cust)
	if err != nil {
		return AdminResponse{Error: err.Error()}
	}
	who, err := rec.DualControl(req.Approvals)
	if err != nil {
		a.record(req.Op, req.Profile, nil, "refused", err.Error(), nil)
		return AdminResponse{Error: err.Error()}
	}
	switch req.Op {
	case "rotate":
		a.record("rotate", req.Profile, who, "started", "online", nil)
		rep, err := a.svc.RotateProfile(req.Profile, nil, time.Second)
		if err != nil {
			msg := fault.ClientMessage(err)
			a.log.Error("rotation failed", zap.String("profile", req.Profile), zap.Error(err))
			a.record("rotate", req.Profile, who, "failed", msg, nil)
			return AdminResponse{Error: msg}
		}
		a.record("rotate", req.Profile, who, "ok", fmt.Sprintf("version %d, %d blocks re-wrapped, %d verified", rep.Version, rep.Rewrapped, rep.Verified),
			map[string]string{"profile": rep.KCV})
		return AdminResponse{Rotate: rep}
	case "export-main-key":
		krd, err := mainkey.ParseCertPEM(req.Certificate)
		if err != nil {
			return AdminResponse{Error: "the receiving appliance's certificate: " + err.Error()}
		}
		tok, kdh, kcv, err := mainkey.Export(a.store, a.cust, req.Profile, krd, req.Nonce)
		if err != nil {
			a.record("export-main-key", req.Profile, who, "failed", err.Error(), nil)
			return AdminResponse{Error: err.Error()}
		}
		a.record("export-main-key", req.Profile, who, "ok", "TR-34 token for "+mainkey.Fingerprint(krd), map[string]string{"profile": kcv})
		return AdminResponse{Token: tok, Certificate: mainkey.CertPEM(kdh), KCV: kcv}
	case "import-main-key":
		kdh, err := mainkey.ParseCertPEM(req.Certificate)
		if err != nil {
			return AdminResponse{Error: "the sending appliance's certificate: " + err.Error()}
		}
		kcv, err := mainkey.Import(a.store, a.cust, req.Profile, kdh, req.Token, req.KCV)
		if err != nil {
			a.record("import-main-key", req.Profile, who, "refused", err.Error(), nil)
			return AdminResponse{Error: err.Error()}
		}
		a.record("import-main-key", req.Profile, who, "ok", "TR-34 token from "+mainkey.Fingerprint(kdh), map[string]string{"profile": kcv})
		return AdminResponse{KCV: kcv}
	}
	return AdminResponse{Error: fmt.Sprintf("unknown operation %q", req.Op)}
}

// record appends to the audit log (the ceremony tool's format).
func (a *admin) record(op, profile string, who []string, outcome, detail string, kcvs map[string]string) {
	f, err := os.OpenFile(a.audit, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		a.log.Error("audit log", zap.Error(err))
		return
	}
	defer f.Close()
	b, _ := json.Marshal(map[string]any{"time": time.Now().UTC(), "operation": op, "profile": profile, "custodians": who,
		"outcome": outcome, "detail": detail, "kcvs": kcvs, "online": true})
	_, _ = f.Write(append(b, '\n'))
	_ = f.Sync()
}

// CallAdmin sends req to the daemon serving dir. ok is false when no daemon listens there.
func CallAdmin(dir string, req *AdminRequest) (resp AdminResponse, ok bool, err error) {
	return CallAdminSocket(filepath.Join(dir, AdminSocket), req)
}

// CallAdminSocket sends req to the admin socket at path (a daemon's, possibly
// forwarded over SSH). ok is false when nothing listens there.
func CallAdminSocket(path string, req *AdminRequest) (resp AdminResponse, ok bool, err error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return resp, false, nil
	}
	defer c.Close()
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return resp, true, err
	}
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return resp, true, errors.New("the daemon closed the admin connection without an answer")
	}
	return resp, true, nil
}
