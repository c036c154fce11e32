package daemon

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"payhsm/access"
	"payhsm/admin"
	"payhsm/appliance/diskguard"
	"payhsm/audit"
	"payhsm/ceremony/custodian"
	"payhsm/ceremony/mainkey"
	"payhsm/ceremony/mpa"
	"payhsm/fault"
	"payhsm/hsm/custody"
	"payhsm/keystore"
	"payhsm/ops"
)

// adminServer runs online ceremony steps for the admin socket (package
// admin): one at a time, each under dual control checked here, each step
// recorded in the audit log before its result is released.
type adminServer struct {
	ln     net.Listener
	svc    *ops.Service
	store  *keystore.Store
	cust   *custody.Custodian
	audit  *audit.Trail
	access *access.Manager
	mpa    *mpa.Registry // Multi-Party Approval (mpa.go)
	log    *zap.Logger
	disk   *diskguard.Watchdog // refuses steps that write while the disk is below its reserve
	mu     sync.Mutex          // one ceremony at a time
	wg     sync.WaitGroup
	// nonce is the online sync's pending KRD nonce (guarded by mu): kept
	// in memory between the KRD request and the import, used once.
	nonce []byte
}

// listenAdmin creates the admin socket at path (mode 0600), replacing a stale
// one left by a crash. It does not serve yet.
func listenAdmin(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, errors.Join(fmt.Errorf("admin socket: %w", err), ln.Close())
	}
	return ln, nil
}

func (a *adminServer) serve() {
	for {
		c, err := a.ln.Accept()
		if err != nil {
			return
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			defer func() {
				if err := c.Close(); err != nil {
					a.log.Warn("admin connection close", zap.Error(err))
				}
			}()
			a.handle(c)
		}()
	}
}

// close stops accepting and waits for the step in progress: the key store
// must not close beneath it. A rotation cut short by a harder stop resumes
// when run again.
func (a *adminServer) close(ctx context.Context) {
	if err := a.ln.Close(); err != nil {
		a.log.Warn("admin socket close", zap.Error(err))
	}
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		a.log.Warn("waiting for the online ceremony step in progress")
		<-done
	}
}

func (a *adminServer) handle(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	var resp *admin.Response
	if req, err := admin.DecodeRequest(c); err != nil {
		resp = &admin.Response{Error: err.Error()}
	} else {
		resp = a.run(req)
	}
	_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
	if err := json.NewEncoder(c).Encode(resp); err != nil {
		a.log.Warn("admin response not delivered", zap.Error(err))
	}
}

// record writes one online step to the audit log.
func (a *adminServer) record(op admin.Op, profile string, who []string, outcome audit.Outcome, detail string, kcvs map[string]string) error {
	err := a.audit.Record(audit.KindCeremony, audit.Event{Protocol: "admin", Operation: string(op), Profile: profile, Custodians: who,
		Outcome: outcome, Detail: detail, KCVs: kcvs, Online: true})
	if err != nil {
		a.log.Error("audit log", zap.Error(err))
	}
	return err
}

// fail answers a step that did not go on: err, joined with the failure to audit it.
func (a *adminServer) fail(op admin.Op, profile string, who []string, outcome audit.Outcome, err error) *admin.Response {
	if aerr := a.record(op, profile, who, outcome, err.Error(), nil); aerr != nil {
		err = errors.Join(err, aerr)
	}
	return &admin.Response{Error: err.Error()}
}

func (a *adminServer) run(req *admin.Request) *admin.Response {
	a.mu.Lock()
	defer a.mu.Unlock()
	if req.Op != admin.OpVerifyKeystore && a.disk != nil {
		// Every other step writes (the key store, the token, the audit
		// log): none starts on a disk below its reserve.
		if err := a.disk.Check(); err != nil {
			return &admin.Response{Error: fault.ClientMessage(err)}
		}
	}
	switch req.Op {
	case admin.OpKRDRequest: // no secret leaves: the certificate and a fresh nonce
		cert, nonce, err := mainkey.KRDRequestOnline(a.store, a.cust)
		if err != nil {
			return &admin.Response{Error: err.Error()}
		}
		a.nonce = nonce // replaces any pending one
		if err := a.record(req.Op, "", nil, audit.OK, "certificate "+mainkey.Fingerprint(cert), nil); err != nil {
			return &admin.Response{Error: err.Error()}
		}
		return &admin.Response{Certificate: mainkey.CertPEM(cert), Nonce: nonce}
	case admin.OpPrincipals: // the socket owner's; audited
		if a.access == nil {
			return &admin.Response{Error: "this node is waiting to join its fleet (payhsm ceremony join): principals are managed once it serves"}
		}
		return a.principals(req)
	case admin.OpMpa: // team changes under dual control, votes with each custodian's credentials; audited
		if a.mpa == nil {
			return &admin.Response{Error: errNoMpa.Error()}
		}
		return a.runMpa(req)
	case admin.OpVerifyKeystore: // changes nothing and releases no content
		rep, err := a.store.Verify()
		if err != nil {
			return &admin.Response{Error: err.Error()}
		}
		return &admin.Response{Verify: VerifyReport(rep)}
	case admin.OpAuditSeals: // says whether MACs are right, never what they should be
		return a.checkSeals(req.Seals)
	case admin.OpRotate, admin.OpExportMainKey, admin.OpImportMainKey:
		if err := custody.CheckProfileName(req.Profile); err != nil {
			return &admin.Response{Error: err.Error()}
		}
	default:
		return &admin.Response{Error: fmt.Sprintf("unknown operation %q", req.Op)}
	}
	rec, err := custodian.Load(a.store, a.cust)
	if err != nil {
		return &admin.Response{Error: err.Error()}
	}
	apps := make([]custodian.Approval, len(req.Approvals))
	for i, ap := range req.Approvals {
		apps[i] = custodian.Approval{Name: ap.Name, Passphrase: ap.Passphrase} // DualControl zeroes the passphrases
	}
	who, err := rec.DualControl(apps)
	if err != nil {
		return a.fail(req.Op, req.Profile, nil, audit.Refused, err)
	}
	switch req.Op {
	case admin.OpRotate:
		if a.svc == nil {
			return a.fail(req.Op, req.Profile, who, audit.Refused, errors.New("this node is waiting to join its fleet (payhsm ceremony join): it rotates nothing"))
		}
		how, rotate := "online", a.svc.RotateProfile
		if req.Isolated {
			how, rotate = "online, isolated (not carried to the fleet's other nodes)", a.svc.RotateProfileIsolated
		}
		if err := a.record(req.Op, req.Profile, who, audit.Started, how, nil); err != nil {
			return &admin.Response{Error: err.Error()}
		}
		rep, err := rotate(req.Profile, nil, time.Second)
		if err != nil {
			a.log.Error("rotation failed", zap.String("profile", req.Profile), zap.Error(err))
			return a.fail(req.Op, req.Profile, who, audit.Failed, errors.New(fault.ClientMessage(err)))
		}
		if err := a.record(req.Op, req.Profile, who, audit.OK,
			fmt.Sprintf("version %d, %d blocks re-wrapped, %d records re-sealed, %d verified", rep.Version, rep.Rewrapped, rep.Resealed, rep.Verified),
			map[string]string{"profile": rep.KCV}); err != nil {
			return &admin.Response{Error: "the rotation finished, but " + err.Error()}
		}
		return &admin.Response{Rotate: &admin.Rotation{Profile: rep.Profile, Version: rep.Version, KCV: rep.KCV,
			Rewrapped: rep.Rewrapped, Verified: rep.Verified}}
	case admin.OpExportMainKey:
		krd, err := mainkey.ParseCertPEM(req.Certificate)
		if err != nil {
			return &admin.Response{Error: "the receiving appliance's certificate: " + err.Error()}
		}
		tok, kdh, kcv, err := mainkey.Export(a.store, a.cust, req.Profile, krd, req.Nonce)
		if err != nil {
			return a.fail(req.Op, req.Profile, who, audit.Failed, err)
		}
		// The token leaves only once its export is on record.
		if err := a.record(req.Op, req.Profile, who, audit.OK, "TR-34 token for "+mainkey.Fingerprint(krd),
			map[string]string{"profile": kcv}); err != nil {
			clear(tok)
			return &admin.Response{Error: err.Error()}
		}
		return &admin.Response{Token: tok, Certificate: mainkey.CertPEM(kdh), KCV: kcv}
	default: // admin.OpImportMainKey
		kdh, err := mainkey.ParseCertPEM(req.Certificate)
		if err != nil {
			return &admin.Response{Error: "the sending appliance's certificate: " + err.Error()}
		}
		nonce := a.nonce
		a.nonce = nil // used once, whatever the outcome
		kcv, err := mainkey.ImportWithNonce(a.store, a.cust, req.Profile, kdh, req.Token, req.KCV, nonce)
		if err != nil {
			return a.fail(req.Op, req.Profile, who, audit.Refused, err)
		}
		if err := a.record(req.Op, req.Profile, who, audit.OK, "TR-34 token from "+mainkey.Fingerprint(kdh),
			map[string]string{"profile": kcv}); err != nil {
			return &admin.Response{Error: fmt.Sprintf("profile %s main key imported (KCV %s), but %v", req.Profile, kcv, err)}
		}
		return &admin.Response{KCV: kcv}
	}
}

// VerifyReport puts a key store verification on the admin wire.
func VerifyReport(rep *keystore.VerifyReport) *admin.VerifyReport {
	out := &admin.VerifyReport{Format: rep.Format, Records: rep.Records, Failures: []admin.VerifyFailure{}}
	for _, f := range rep.Failures {
		out.Failures = append(out.Failures, admin.VerifyFailure{Type: f.Type.String(), Name: f.Name, KeyID: f.KeyID, Reason: f.Reason})
	}
	return out
}

// checkSeals answers OpAuditSeals with the trail's key.
func (a *adminServer) checkSeals(seals []admin.AuditSeal) *admin.Response {
	reqs, err := AuditSealRequests(seals)
	if err != nil {
		return &admin.Response{Error: err.Error()}
	}
	st, err := a.audit.CheckSeals(reqs)
	if err != nil {
		return &admin.Response{Error: err.Error()}
	}
	out := make([]string, len(st))
	for i, s := range st {
		out[i] = admin.SealStatusName(s)
	}
	return &admin.Response{SealStatus: out, AuditKeyID: a.audit.KeyID()}
}

// AuditSealRequests decodes seals from the admin wire.
func AuditSealRequests(seals []admin.AuditSeal) ([]audit.SealRequest, error) {
	if len(seals) > admin.MaxSeals {
		return nil, fmt.Errorf("at most %d seals per request", admin.MaxSeals)
	}
	reqs := make([]audit.SealRequest, len(seals))
	for i, s := range seals {
		reqs[i].KeyID = s.KeyID
		if len(s.Prev) != 2*audit.HashSize || len(s.MAC) != 2*audit.HashSize {
			return nil, fmt.Errorf("seal %d: prev and mac are 64 hex digits", i)
		}
		if _, err := hex.Decode(reqs[i].Prev[:], []byte(s.Prev)); err != nil {
			return nil, fmt.Errorf("seal %d: prev: %w", i, err)
		}
		if _, err := hex.Decode(reqs[i].MAC[:], []byte(s.MAC)); err != nil {
			return nil, fmt.Errorf("seal %d: mac: %w", i, err)
		}
	}
	return reqs, nil
}
