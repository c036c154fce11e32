package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"payhsm/admin"
	"payhsm/appliance"
	"payhsm/audit"
	"payhsm/ceremony/custodian"
	"payhsm/hsm/softhsm"
	"payhsm/ops"
)

// These tests open a --dev appliance (SoftHSM2). They do not run in
// parallel: the SoftHSM2 configuration is per process.

func needSoftHSM(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(softhsm.DefaultModule); err != nil {
		t.Skipf("SoftHSM2 is not installed: %v", err)
	}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// closeT closes c, failing the test when that fails; for defer.
func closeT(t *testing.T, c io.Closer) {
	t.Helper()
	if err := c.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

func devConfig(t *testing.T, dir string) *appliance.Config {
	t.Helper()
	cfg := &appliance.Config{DataDir: dir, LogLevel: "error"}
	cfg.HTTP.Addr, cfg.Host.Addr, cfg.Ops.Addr = freeAddr(t), freeAddr(t), freeAddr(t)
	cfg.Defaults()
	if err := cfg.Validate(true); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		_ = c.Close() // a probe: only whether the dial succeeded matters
	}
	return err != nil
}

// reopen checks that Serve released the key store and the token.
func reopen(t *testing.T, cfg *appliance.Config) {
	t.Helper()
	app, err := appliance.Open(cfg, true, false, zap.NewNop())
	if err != nil {
		t.Fatalf("the appliance was not released: %v", err)
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestServeStartFailureLeavesNothingRunning: when the admin socket cannot be
// created, Serve returns with neither port listening and the store closed.
func TestServeStartFailureLeavesNothingRunning(t *testing.T) {
	needSoftHSM(t)
	dir := t.TempDir()
	cfg := devConfig(t, dir)
	// A non-empty directory where the socket goes cannot be replaced.
	if err := os.MkdirAll(filepath.Join(cfg.AdminSocketPath(), "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Serve(context.Background(), cfg, true, zap.NewNop()) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("Serve kept running after its admin socket failed")
	}
	if err == nil || !strings.Contains(err.Error(), "admin socket") {
		t.Fatalf("Serve = %v, want an admin socket error", err)
	}
	for _, addr := range []string{cfg.HTTP.Addr, cfg.Host.Addr, cfg.Ops.Addr} {
		if !refused(addr) {
			t.Errorf("%s still accepts connections", addr)
		}
	}
	reopen(t, cfg)
}

// TestServeStopsInOrder: Serve answers on all three sockets, and on
// cancellation stops them all and releases the appliance.
func TestServeStopsInOrder(t *testing.T) {
	needSoftHSM(t)
	dir := t.TempDir()
	cfg := devConfig(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, true, zap.NewNop()) }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		// No custodians are enrolled: the daemon answers with that refusal.
		_, err := admin.Call(cfg.AdminSocketPath(), &admin.Request{Op: admin.OpRotate, Profile: "default"})
		if err != nil && strings.Contains(err.Error(), "no custodians are enrolled") {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Serve returned %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admin socket never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, addr := range []string{cfg.HTTP.Addr, cfg.Host.Addr} {
		if refused(addr) {
			t.Errorf("%s does not accept connections while serving", addr)
		}
	}
	checkOpsEndpoints(t, "http://"+cfg.Ops.Addr)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve = %v", err)
	}
	for _, addr := range []string{cfg.HTTP.Addr, cfg.Host.Addr, cfg.Ops.Addr} {
		if !refused(addr) {
			t.Errorf("%s still accepts connections", addr)
		}
	}
	if _, err := admin.Call(cfg.AdminSocketPath(), &admin.Request{Op: admin.OpKRDRequest}); !errors.Is(err, admin.ErrNoDaemon) {
		t.Errorf("admin socket after shutdown: %v", err)
	}
	reopen(t, cfg)
}

// TestAdminStepStopsWhenAuditFails: an online rotation whose "started"
// record cannot be written does not begin, and the refusal of a bad approval
// reports the audit failure too.
func TestAdminStepStopsWhenAuditFails(t *testing.T) {
	needSoftHSM(t)
	cfg := devConfig(t, t.TempDir())
	app, err := appliance.Open(cfg, true, true, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, app)
	if _, err := app.Custody.CreateProfile("default"); err != nil {
		t.Fatal(err)
	}
	if err := custodian.Enroll(app.Store, app.Custody, []string{"alice", "bob"}, [][]byte{[]byte("alice-passphrase"), []byte("bob-passphrase!")}); err != nil {
		t.Fatal(err)
	}
	svc, err := ops.New(ops.Config{Region: cfg.Region, Account: cfg.Account, Profile: "default"}, app.Store, app.Custody, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	trail, err := cfg.OpenAudit(app.Custody, "daemon", nil)
	if err != nil {
		t.Fatal(err)
	}
	closeT(t, trail) // a closed trail refuses every record
	a := &adminServer{svc: svc, store: app.Store, cust: app.Custody, audit: trail, log: zap.NewNop()}
	approvals := func(second, pass string) []admin.Approval {
		return []admin.Approval{{Name: "alice", Passphrase: []byte("alice-passphrase")}, {Name: second, Passphrase: []byte(pass)}}
	}
	tests := []struct {
		name string
		req  *admin.Request
		want []string
	}{
		{"refused and not recorded", &admin.Request{Op: admin.OpRotate, Profile: "default", Approvals: approvals("alice", "alice-passphrase")},
			[]string{"dual control needs two different custodians", "audit trail: closed"}},
		{"rotation not started", &admin.Request{Op: admin.OpRotate, Profile: "default", Approvals: approvals("bob", "bob-passphrase!")},
			[]string{"audit trail: closed"}},
		{"bad profile name", &admin.Request{Op: admin.OpRotate, Profile: "Default", Approvals: approvals("bob", "bob-passphrase!")},
			[]string{"profile name"}},
		{"unknown operation", &admin.Request{Op: "erase"}, []string{`unknown operation "erase"`}},
	}
	for _, tc := range tests {
		resp := a.run(tc.req)
		for _, w := range tc.want {
			if !strings.Contains(resp.Error, w) {
				t.Errorf("%s: error %q, want it to contain %q", tc.name, resp.Error, w)
			}
		}
		if resp.Rotate != nil {
			t.Errorf("%s: a rotation report came back", tc.name)
		}
	}
	p, err := app.Custody.Profile("default")
	if err != nil {
		t.Fatal(err)
	}
	if p.Version() != 1 || p.Rotating() {
		t.Errorf("profile at version %d (rotating %v): the rotation began without its audit record", p.Version(), p.Rotating())
	}
}

// TestAdminAuditSeals: the admin socket checks seals with the trail's key —
// valid, altered, or under another key — and refuses malformed requests.
func TestAdminAuditSeals(t *testing.T) {
	needSoftHSM(t)
	cfg := devConfig(t, t.TempDir())
	app, err := appliance.Open(cfg, true, true, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, app)
	trail, err := cfg.OpenAudit(app.Custody, "daemon", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := trail.Record(audit.KindControl, audit.Event{Operation: "CreateKey", Outcome: audit.OK}); err != nil {
		t.Fatal(err)
	}
	closeT(t, trail)
	trail, err = cfg.OpenAudit(app.Custody, "daemon", nil) // the daemon's trail, open while verify runs
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, trail)
	a := &adminServer{store: app.Store, cust: app.Custody, audit: trail, log: zap.NewNop()}
	b, err := os.ReadFile(filepath.Join(cfg.AuditDir(), audit.ActiveName))
	if err != nil {
		t.Fatal(err)
	}
	var seal admin.AuditSeal
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte{'\n'}) {
		p, err := audit.ParseLine(line)
		if err != nil {
			t.Fatal(err)
		}
		if p.Kind == audit.KindSeal {
			seal = admin.AuditSeal{KeyID: p.Seal.KeyID, Prev: p.Prev, MAC: p.Seal.MAC}
			break
		}
	}
	if seal.MAC == "" {
		t.Fatal("no seal in the trail")
	}
	altered, other := seal, seal
	altered.Prev = strings.Repeat("0", 64)
	other.KeyID = "0123456789abcdef"
	resp := a.run(&admin.Request{Op: admin.OpAuditSeals, Seals: []admin.AuditSeal{seal, altered, other}})
	if resp.Error != "" || strings.Join(resp.SealStatus, ",") != "valid,invalid,unknown-key" || resp.AuditKeyID != seal.KeyID {
		t.Fatalf("%+v", resp)
	}
	bad := seal
	bad.MAC = "zz"
	if resp := a.run(&admin.Request{Op: admin.OpAuditSeals, Seals: []admin.AuditSeal{bad}}); !strings.Contains(resp.Error, "64 hex digits") {
		t.Errorf("malformed seal: %+v", resp)
	}
}
