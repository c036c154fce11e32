package daemon

import (
	"net"
	"slices"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"payhsm/access"
	"payhsm/admin"
	"payhsm/appliance"
	"payhsm/audit"
	"payhsm/fault"
)

// Principals runs one principals command against m: through the admin
// socket (adminServer) or, with the daemon stopped, from payhsm principals.
func Principals(m *access.Manager, req *admin.PrincipalsRequest) (*admin.PrincipalsResult, error) {
	if req == nil {
		return nil, fault.Validationf("no principals command")
	}
	switch req.Command {
	case "list":
		return &admin.PrincipalsResult{Principals: m.List()}, nil
	case "add":
		inf, creds, err := m.Add(access.AddInput{Name: req.Name, Account: req.Account, Kind: access.Kind(req.Kind), AccessKey: req.AccessKey,
			HostClients: req.HostClients, Policies: req.Policies})
		if err != nil {
			return nil, err
		}
		return &admin.PrincipalsResult{Principals: []access.Info{*inf}, Credentials: creds}, nil
	case "rotate-secret":
		creds, err := m.RotateSecret(req.Name)
		if err != nil {
			return nil, err
		}
		return &admin.PrincipalsResult{Credentials: creds}, nil
	case "disable", "enable":
		return &admin.PrincipalsResult{}, m.SetDisabled(req.Name, req.Command == "disable")
	case "remove":
		return &admin.PrincipalsResult{}, m.Remove(req.Name)
	case "put-policy":
		names := make([]string, 0, len(req.Policies))
		for n := range req.Policies {
			names = append(names, n)
		}
		slices.Sort(names)
		if len(names) == 0 {
			return nil, fault.Validationf("put-policy needs a policy")
		}
		for _, n := range names {
			if err := m.PutPolicy(req.Name, n, req.Policies[n]); err != nil {
				return nil, err
			}
		}
		return &admin.PrincipalsResult{}, nil
	}
	return nil, fault.Validationf("unknown principals command %q (add, list, rotate-secret, disable, enable, remove, put-policy)", req.Command)
}

// principals serves OpPrincipals: the socket is the owner's only (mode
// 0600), so no custodian approval is asked; every change is audited (never
// a secret).
func (a *adminServer) principals(req *admin.Request) *admin.Response {
	pr := req.Principals
	res, err := Principals(a.access, pr)
	if pr != nil && pr.Command != "list" {
		outcome, detail := audit.OK, "principal "+pr.Name
		if err != nil {
			outcome, detail = audit.Refused, detail+": "+err.Error()
		}
		if aerr := a.record(admin.Op("principals-"+pr.Command), "", nil, outcome, detail, nil); aerr != nil && err == nil {
			return &admin.Response{Error: aerr.Error()}
		}
	}
	if err != nil {
		return &admin.Response{Error: err.Error()}
	}
	return &admin.Response{Principals: res}
}

// OpenAccess loads the principals of an opened appliance: the stored ones
// and the built-in all-powerful principals of its configured credentials
// (--dev's default, or credentialsFile's).
func OpenAccess(cfg *appliance.Config, app *appliance.Appliance) (*access.Manager, error) {
	builtIn, err := access.BuiltIn(cfg.Account, app.Credentials)
	if err != nil {
		return nil, err
	}
	var sealer access.Sealer = app.Custody
	if app.Custody.Node() != "" {
		// A fleet's nodes share the stored principals; each has its own
		// region main key, so secrets are sealed for all of them.
		sealer = app.Custody.FleetSealer(cfg.Profile)
	}
	return access.NewManager(app.Store, sealer, cfg.Account, builtIn)
}

// hostPrincipal is the principal of the host port's plain clients (and of
// TLS clients whose certificate maps to none): host.principal, or on a
// loopback address the built-in default principal when there is one, as
// before principals existed. Config validation requires host.principal for
// plain TCP on any other address.
func hostPrincipal(cfg *appliance.Config, m *access.Manager) string {
	if cfg.Host.Principal != "" {
		return cfg.Host.Principal
	}
	host, _, err := net.SplitHostPort(cfg.Host.Addr)
	if ip := net.ParseIP(host); err == nil && (host == "localhost" || ip != nil && ip.IsLoopback()) {
		if m.Authorizer().ByName(access.DefaultPrincipal) != nil {
			return access.DefaultPrincipal
		}
	}
	return ""
}

// logDenials reports every access-control denial: a log line and an audit
// entry (principal, action, resource, deciding statement; never key
// material), written off the request path. When the audit writer falls
// behind, entries are dropped and counted, never the request delayed (an
// event loop must not wait for the trail's fsync).
func logDenials(az *access.Authorizer, trail *audit.Trail, log *zap.Logger) (stop func()) {
	ch := make(chan audit.Denial, 1024)
	var (
		mu      sync.RWMutex // closed and the channel's close
		closed  bool
		dropped atomic.Uint64
	)
	az.OnDeny = func(p *access.Principal, a access.Action, d access.Decision) {
		who := "(none)"
		if p != nil {
			who = p.ARN()
		}
		log.Info("access denied", zap.String("principal", who), zap.String("action", a.String()),
			zap.String("resource", d.Resource), zap.String("decision", d.Reason()))
		e := audit.Denial{Protocol: "access", Principal: who, Action: a.String(),
			Keys: []string{d.Resource}, Reason: d.Reason()}
		mu.RLock()
		defer mu.RUnlock()
		if closed {
			return
		}
		select {
		case ch <- e:
		default:
			dropped.Add(1)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range ch {
			if err := trail.Deny(e); err != nil {
				log.Error("audit log", zap.Error(err))
			}
		}
	}()
	return func() {
		mu.Lock()
		closed = true
		close(ch)
		mu.Unlock()
		<-done
		if n := dropped.Load(); n > 0 {
			log.Warn("access denials not written to the audit log (it fell behind)", zap.Uint64("dropped", n))
		}
	}
}
