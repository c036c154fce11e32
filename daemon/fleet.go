package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"payhsm/appliance"
	"payhsm/audit"
	"payhsm/health"
	"payhsm/hsm/custody"
	"payhsm/internal/version"
	"payhsm/keystore"
	"payhsm/keystore/kv"
	"payhsm/keystore/kv/etcdkv"
)

// A fleet node (fleet.node, docs/fleet.md) writes a heartbeat beside the
// key store it shares with the other nodes, under the etcd prefix at
// heartbeatPrefix+name, attached to a lease of three heartbeat intervals
// (at least 5s):
// a node that stops (or dies) disappears from `payhsm fleet status` once
// its lease runs out. The record is informational (where the node serves,
// what it holds); nothing is decided on it, so it is not authenticated.
// It lives under "sys/", which the key store's verification passes over.
const heartbeatPrefix = "sys/fleet/node/"

// Heartbeat is a fleet node's heartbeat record (JSON).
type Heartbeat struct {
	Node    string `json:"node"`
	Version string `json:"version"`
	// HTTP, Host and Ops are the node's listen addresses ("" before they
	// are open, while the node waits to join).
	HTTP string `json:"http,omitempty"`
	Host string `json:"host,omitempty"`
	Ops  string `json:"ops,omitempty"`
	// Profiles are the profile main key versions the node holds, by
	// profile; KCVs the active version's check value.
	Profiles map[string][]int  `json:"profiles"`
	KCVs     map[string]string `json:"kcvs,omitempty"`
	// State is "joining" (no profile main key yet), "stale" (another node
	// holds a newer version), "serving" or "starting"; Reason says why it
	// is not serving.
	State   string    `json:"state"`
	Reason  string    `json:"reason,omitempty"`
	Started time.Time `json:"started"`
	Time    time.Time `json:"time"`
	// Inbox is where a rotating node carries a new profile main key
	// version to (fleetrotate.go); OfferError why the last offer taken
	// was refused.
	Inbox      *Inbox `json:"inbox,omitempty"`
	OfferError string `json:"offerError,omitempty"`
}

// minHeartbeatTTL is the shortest heartbeat lease: a loaded cluster or
// machine must not make a live node vanish between two heartbeats.
const minHeartbeatTTL = 5 * time.Second

// heartbeatTTL is the lease of a heartbeat written every interval: three
// intervals, at least minHeartbeatTTL.
func heartbeatTTL(interval time.Duration) time.Duration { return max(3*interval, minHeartbeatTTL) }

// fleetNode is this daemon's part in its fleet: its heartbeat and the
// readiness check that its copy of the namespace profile's main key is the
// fleet's current one.
type fleetNode struct {
	cfg   *appliance.Config
	cust  *custody.Custodian
	eng   *etcdkv.Engine // nil outside an etcd fleet: no heartbeat
	log   *zap.Logger
	state *health.State // the profile copy's readiness

	refreshMu sync.Mutex // one refresh at a time (the loop's, serve's first)

	mu       sync.Mutex
	hb       Heartbeat
	lease    int64
	lastErr  string
	kick     chan struct{} // beat now: the addresses changed (setAddrs), a rotation step (watch)
	store    *keystore.Store
	record   func(audit.Event) // the daemon's audit trail (setAudit)
	inbox    *Inbox            // published in the heartbeat until an offer uses its nonce
	offerErr string            // why the last offer taken was refused
}

// checkFleet is the readiness check of the node's profile main key copy.
const checkFleet = "fleet"

// joinMessage is what a node without the fleet's profile main key says.
func joinMessage(node string) string {
	return fmt.Sprintf("node %s has no profile main key: run payhsm ceremony join", node)
}

// newFleetNode prepares the fleet part of a daemon whose configuration
// names a node (nil otherwise). On etcd it connects for the heartbeat.
func newFleetNode(cfg *appliance.Config, cust *custody.Custodian, log *zap.Logger) (*fleetNode, error) {
	if cfg.Fleet.Node == "" {
		return nil, nil
	}
	f := &fleetNode{cfg: cfg, cust: cust, log: log, state: health.NewState(errors.New("starting")), kick: make(chan struct{}, 1),
		hb: Heartbeat{Node: cfg.Fleet.Node, Version: version.String(), State: "starting", Started: time.Now().UTC()}}
	if cfg.Keystore.Engine == appliance.EngineEtcd {
		eng, err := appliance.OpenFleetEngine(cfg, log.Named("etcd"))
		if err != nil {
			return nil, fmt.Errorf("fleet heartbeat: %w", err)
		}
		f.eng = eng
	}
	return f, nil
}

// setAddrs records where the node serves, for its heartbeat.
func (f *fleetNode) setAddrs(http, host, ops string) {
	f.mu.Lock()
	f.hb.HTTP, f.hb.Host, f.hb.Ops = http, host, ops
	f.mu.Unlock()
	select { // the next heartbeat goes now, not an interval later
	case f.kick <- struct{}{}:
	default:
	}
}

// refresh checks the node's profile copy against the fleet's, sets the
// readiness check and the heartbeat's state.
func (f *fleetNode) refresh() {
	f.refreshMu.Lock()
	defer f.refreshMu.Unlock()
	// A rotation made elsewhere: stage what was offered, activate and
	// retire what the rotating node has (fleetrotate.go).
	f.takeOffer()
	f.follow()
	in, ierr := f.currentInbox()
	if ierr != nil {
		f.log.Warn("fleet: no inbox for rotations published", zap.Error(ierr))
	}
	vers, verr := f.cust.ProfileVersions()
	err := f.cust.CheckFleetProfile(f.cfg.Profile)
	state := "serving"
	switch {
	case errors.Is(err, custody.ErrNoProfile):
		state, err = "joining", errors.New(joinMessage(f.cfg.Fleet.Node))
	case errors.Is(err, custody.ErrStaleProfile):
		state = "stale"
	case err != nil:
		state = "error"
	}
	f.state.Set(err)
	f.mu.Lock()
	defer f.mu.Unlock()
	if verr == nil {
		f.hb.Profiles = vers
		kcvs := map[string]string{}
		for name := range vers {
			if copies, err := f.cust.FleetProfile(name); err == nil {
				for _, c := range copies {
					if c.Node == f.cfg.Fleet.Node {
						kcvs[name] = c.KCV
					}
				}
			}
		}
		f.hb.KCVs = kcvs
	}
	f.hb.Inbox, f.hb.OfferError = in, f.offerErr
	f.hb.State, f.hb.Reason = state, ""
	if err != nil {
		f.hb.Reason = err.Error()
	}
	// A change of state is logged once, not at every heartbeat.
	if msg := f.hb.Reason; msg != f.lastErr {
		f.lastErr = msg
		if msg != "" && state != "joining" { // the join wait logs its own line
			f.log.Error("this node is not ready", zap.String("state", state), zap.Error(err))
		} else if msg == "" {
			f.log.Info("this node's profile main key is the fleet's", zap.Any("profiles", vers))
		}
	}
}

// beat writes the heartbeat once.
func (f *fleetNode) beat() error {
	if f.eng == nil {
		return nil
	}
	f.mu.Lock()
	f.hb.Time = time.Now().UTC()
	b, err := json.Marshal(f.hb)
	lease := f.lease
	f.mu.Unlock()
	if err != nil {
		return err
	}
	lease, err = f.eng.PutLeased([]byte(heartbeatPrefix+f.cfg.Fleet.Node), b, lease, heartbeatTTL(f.cfg.Fleet.Heartbeat()))
	f.mu.Lock()
	f.lease = lease
	f.mu.Unlock()
	return err
}

// run refreshes and beats every heartbeat interval until ctx ends, then
// withdraws the heartbeat (a clean stop) and disconnects.
func (f *fleetNode) run(ctx context.Context) {
	t := time.NewTicker(f.cfg.Fleet.Heartbeat())
	defer t.Stop()
	go f.watch(ctx)
	failing := false
	for {
		f.refresh()
		if err := f.beat(); err != nil && !failing {
			failing = true
			f.log.Warn("fleet heartbeat not written", zap.Error(err))
		} else if err == nil && failing {
			failing = false
			f.log.Info("fleet heartbeat written again")
		}
		select {
		case <-ctx.Done():
			f.close()
			return
		case <-t.C:
		case <-f.kick:
		}
	}
}

// close withdraws the heartbeat and disconnects.
func (f *fleetNode) close() {
	if f.eng == nil {
		return
	}
	f.mu.Lock()
	lease := f.lease
	f.lease = 0
	f.mu.Unlock()
	if err := f.eng.Revoke(lease); err != nil {
		f.log.Warn("fleet heartbeat not withdrawn (it expires with its lease)", zap.Error(err))
	}
	if err := f.eng.Close(); err != nil {
		f.log.Warn("fleet connection close", zap.Error(err))
	}
}

// fleetHolders lists the other nodes holding profile's main key.
func fleetHolders(cust *custody.Custodian, profile string) ([]string, error) {
	copies, err := cust.FleetProfile(profile)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range copies {
		if c.Node != cust.Node() {
			out = append(out, c.Node)
		}
	}
	return out, nil
}

// errStoppedJoining is awaitJoin's answer when the daemon is stopped
// before the node joined: a clean stop.
var errStoppedJoining = errors.New("stopped before the node joined its fleet")

// awaitJoin waits, not ready, for this node to receive the namespace
// profile's main key through the admin socket (payhsm ceremony join: the
// TR-34 sync from a node that holds it, each side's custodians approving
// their step). Only the ceremony steps are served meanwhile; the HTTP and
// host ports are not open.
func awaitJoin(ctx context.Context, cfg *appliance.Config, app *appliance.Appliance, tel *telemetry, holders []string, log *zap.Logger) (*custody.Profile, error) {
	msg := joinMessage(cfg.Fleet.Node)
	tel.serving.Set(errors.New(msg))
	trail, err := cfg.OpenAudit(app.Custody, "daemon", log.Named("audit"))
	if err != nil {
		return nil, err
	}
	ln, err := listenAdmin(cfg.AdminSocketPath())
	if err != nil {
		return nil, errors.Join(err, trail.Close())
	}
	adm := &adminServer{ln: ln, store: app.Store, cust: app.Custody, audit: trail, log: log.Named("admin"), disk: app.Disk}
	go adm.serve()
	fields := []zap.Field{zap.String("node", cfg.Fleet.Node), zap.String("profile", cfg.Profile),
		zap.String("heldBy", strings.Join(holders, ",")), zap.String("adminSocket", cfg.AdminSocketPath())}
	if u := tel.url(); u != "" {
		fields = append(fields, zap.String("ops", u))
	}
	log.Warn(msg, fields...)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var prof *custody.Profile
	for prof == nil && err == nil {
		select {
		case <-ctx.Done():
			err = errStoppedJoining
		case <-t.C:
			p, perr := app.Custody.Profile(cfg.Profile)
			switch {
			case perr == nil:
				prof = p
			case !errors.Is(perr, custody.ErrNoProfile):
				err = perr
			}
		}
	}
	shut, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	adm.close(shut) // the import step in progress finishes first
	if cerr := trail.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		return nil, err
	}
	log.Info("node joined its fleet", zap.String("node", cfg.Fleet.Node), zap.String("profile", cfg.Profile),
		zap.String("profileMainKeyKCV", prof.KCV()))
	tel.serving.Set(errors.New("starting"))
	return prof, nil
}

// NodeStatus is one node of a fleet as `payhsm fleet status` shows it.
type NodeStatus struct {
	Node string `json:"node"`
	// Heartbeat is the node's last heartbeat; nil when none is current
	// (the node is stopped, or dead for longer than its lease).
	Heartbeat *Heartbeat `json:"heartbeat,omitempty"`
	// Age is how long ago the heartbeat was written (by this machine's clock).
	Age time.Duration `json:"ageNanos,omitempty"`
	// Profiles are the profiles the node holds a sealed main key copy of
	// in the store (from the record names).
	Profiles []string `json:"storedProfiles"`
}

// FleetStatus lists the nodes of the fleet whose key store cfg names:
// every node with records in the store, and every node with a current
// heartbeat. It needs no token: only names and heartbeats are read.
func FleetStatus(cfg *appliance.Config, log *zap.Logger) ([]NodeStatus, error) {
	eng, err := appliance.OpenFleetEngine(cfg, log)
	if err != nil {
		return nil, err
	}
	defer func() { _ = eng.Close() }()
	nodes := map[string]*NodeStatus{}
	get := func(n string) *NodeStatus {
		if nodes[n] == nil {
			nodes[n] = &NodeStatus{Node: n, Profiles: []string{}}
		}
		return nodes[n]
	}
	now := time.Now()
	hp := []byte(heartbeatPrefix)
	err = eng.Scan(hp, kv.PrefixEnd(hp), func(k, v []byte) (bool, error) {
		var hb Heartbeat
		if json.Unmarshal(v, &hb) != nil || hb.Node != string(k[len(hp):]) {
			return true, nil // not a heartbeat: left out
		}
		ns := get(hb.Node)
		ns.Heartbeat, ns.Age = &hb, now.Sub(hb.Time)
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the heartbeats: %w", err)
	}
	rp := keystore.MetaEngineKey(custody.NodeRecordPrefix)
	err = eng.Scan(rp, kv.PrefixEnd(rp), func(k, _ []byte) (bool, error) {
		node, rest, ok := strings.Cut(string(k[len(rp):]), "/")
		if !ok {
			return true, nil
		}
		ns := get(node)
		if p, ok := strings.CutPrefix(rest, "profile/"); ok {
			ns.Profiles = append(ns.Profiles, p)
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the nodes' records: %w", err)
	}
	out := make([]NodeStatus, 0, len(nodes))
	for _, n := range slices.Sorted(maps.Keys(nodes)) {
		out = append(out, *nodes[n])
	}
	return out, nil
}
