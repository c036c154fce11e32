package daemon

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"payhsm/audit"
	"payhsm/ceremony/mainkey"
	"payhsm/hsm/custody"
	"payhsm/keystore"
	"payhsm/keystore/kv"
)

// A profile main key rotation in a fleet (docs/fleet.md, "Rotation";
// custody/fleetrotate.go) carries the new version to every serving node
// before it becomes active anywhere. The transport is TR-34 between device
// identities, as `payhsm ceremony join`, with the two passes through the
// store instead of the admin sockets:
//
//   - each serving node publishes in its heartbeat an Inbox: its device
//     certificate and a fresh one-time TR-34 nonce, authenticated under
//     the fleet's profile main key (custody.FleetMAC), so that only a
//     holder of the fleet's key can be offered the next one;
//   - the rotating node checks that, builds a TR-34 token of the staged
//     version for that certificate and nonce, signed by its own device
//     key, and writes it as an Offer under offerPrefix+node, itself
//     authenticated under the fleet's profile main key (so the receiver
//     knows the signer holds it);
//   - the receiving node takes the offer, checks both, opens the token
//     with its device key, and stages the version sealed under its own
//     region main key; its nonce is used up either way.
//
// The store learns nothing it could use: the token is encrypted to the
// receiver's device key (sealed under that node's region main key, in its
// token). What a writer of the store could do is withhold or spoil the
// messages: the rotation then stops before anything is activated, and says
// which node did not receive the version.

// offerPrefix is where a rotating node leaves its offers, one per
// receiving node, on a lease (an offer never taken vanishes).
const offerPrefix = "sys/fleet/offer/"

// offerTTL is the lease of an offer.
const offerTTL = 2 * time.Minute

// Inbox is what a serving fleet node publishes in its heartbeat so that a
// rotating node can carry a new profile main key version to it.
type Inbox struct {
	Cert  []byte `json:"cert"`  // the node's device certificate (DER)
	Nonce []byte `json:"nonce"` // its one-time TR-34 nonce
	// MACs authenticate Cert and Nonce under each profile main key the
	// node holds (custody.FleetMAC of inboxMessage), by profile.
	MACs map[string]InboxMAC `json:"macs"`
}

// InboxMAC is an Inbox's MAC under one profile's main key version.
type InboxMAC struct {
	Version int    `json:"version"`
	MAC     []byte `json:"mac"`
}

// Offer carries a staged profile main key version to one node.
type Offer struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Profile string `json:"profile"`
	Version int    `json:"version"` // the staged version carried
	KCV     string `json:"kcv"`     // its check value
	KDH     []byte `json:"kdh"`     // the rotating node's device certificate (DER)
	Token   []byte `json:"token"`   // TR-34, for the receiver's certificate and nonce
	// MACVersion and MAC authenticate the rest (offerMessage) under the
	// profile's main key version the receiver's Inbox named.
	MACVersion int    `json:"macVersion"`
	MAC        []byte `json:"mac"`
}

// fleetMessage encodes a rotation message for its MAC: a label, then each
// field length-prefixed, so no two messages share an encoding.
func fleetMessage(label string, fields ...[]byte) []byte {
	b := append([]byte(label), 0)
	for _, f := range fields {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f))) //nolint:gosec // G115: the fields are certificates, nonces and names, far below 4 GiB.
		b = append(b, f...)
	}
	return b
}

func inboxMessage(node, profile string, in *Inbox) []byte {
	return fleetMessage("payhsm/fleet/inbox/v1", []byte(node), []byte(profile), in.Cert, in.Nonce)
}

func offerMessage(o *Offer) []byte {
	return fleetMessage("payhsm/fleet/offer/v1", []byte(o.From), []byte(o.To), []byte(o.Profile),
		binary.BigEndian.AppendUint32(nil, uint32(o.Version)), []byte(o.KCV), o.KDH, o.Token) //nolint:gosec // G115: a main key version is a small positive number.
}

// currentInbox returns the node's current Inbox (made anew once its nonce
// is used, its MACs anew when a profile's active version changed), nil
// while it holds no profile or before the trail is open (setAudit).
func (f *fleetNode) currentInbox() (*Inbox, error) {
	f.mu.Lock()
	in, store := f.inbox, f.store
	f.mu.Unlock()
	if store == nil || f.eng == nil { // no rotation reaches a node outside an etcd fleet
		return nil, nil
	}
	in, err := f.buildInbox(in)
	if err != nil || in == nil {
		return nil, err
	}
	f.mu.Lock()
	f.inbox = in
	f.mu.Unlock()
	return in, nil
}

// buildInbox returns a new Inbox: with a fresh nonce when old is nil, else
// old's certificate and nonce, and MACs under each profile's active
// version (old's where they still are). old is not changed: the heartbeat
// being written may be reading it. nil while the node holds no profile.
func (f *fleetNode) buildInbox(old *Inbox) (*Inbox, error) {
	names := f.cust.ProfileNames()
	if len(names) == 0 {
		return nil, nil
	}
	in := &Inbox{MACs: map[string]InboxMAC{}}
	if old != nil {
		in.Cert, in.Nonce = old.Cert, old.Nonce
		maps.Copy(in.MACs, old.MACs)
	} else {
		cert, _, err := mainkey.Identity(f.store, f.cust)
		if err != nil {
			return nil, fmt.Errorf("device identity: %w", err)
		}
		in.Cert, in.Nonce = cert.Raw, make([]byte, 16)
		if _, err := rand.Read(in.Nonce); err != nil {
			return nil, err
		}
	}
	for _, name := range names {
		p, err := f.cust.Profile(name)
		if err != nil {
			return nil, err
		}
		if m, ok := in.MACs[name]; ok && m.Version == p.Version() {
			continue
		}
		mac, err := f.cust.FleetMAC(name, p.Version(), inboxMessage(f.cfg.Fleet.Node, name, in))
		if err != nil {
			return nil, err
		}
		in.MACs[name] = InboxMAC{Version: p.Version(), MAC: mac}
	}
	return in, nil
}

// takeOffer takes the offer addressed to this node, if any: checked,
// opened and staged (custody.StageFleetVersion), or refused; either way
// the offer is deleted and the nonce is used up.
func (f *fleetNode) takeOffer() {
	if f.eng == nil {
		return
	}
	key := []byte(offerPrefix + f.cfg.Fleet.Node)
	raw, ok, err := f.eng.Get(key)
	if err != nil || !ok {
		return
	}
	if err := f.eng.Delete(key); err != nil {
		f.log.Warn("fleet: the offer taken could not be deleted (it expires with its lease)", zap.Error(err))
	}
	f.mu.Lock()
	in := f.inbox
	f.inbox = nil // used up, taken or not
	f.mu.Unlock()
	var o Offer
	err = json.Unmarshal(raw, &o)
	if err == nil {
		err = f.acceptOffer(&o, in)
	}
	ev := audit.Event{Operation: "fleet-stage-main-key", Profile: o.Profile, Outcome: audit.OK,
		KCVs: map[string]string{"profile": o.KCV}, Detail: fmt.Sprintf("version %d from node %s (TR-34, device certificate %s)", o.Version, o.From, fingerprintDER(o.KDH))}
	f.mu.Lock()
	f.offerErr = ""
	if err != nil {
		f.offerErr = err.Error()
		ev.Outcome, ev.Detail = audit.Refused, ev.Detail+": "+err.Error()
	}
	f.mu.Unlock()
	if err != nil {
		f.log.Error("fleet: a main key version offered to this node was refused", zap.String("from", o.From), zap.String("profile", o.Profile),
			zap.Int("version", o.Version), zap.Error(err))
	} else {
		f.log.Info("fleet: main key version staged", zap.String("from", o.From), zap.String("profile", o.Profile),
			zap.Int("version", o.Version), zap.String("kcv", o.KCV))
	}
	f.audit(ev)
}

// acceptOffer checks o against this node's inbox in, opens it and stages
// the version it carries.
func (f *fleetNode) acceptOffer(o *Offer, in *Inbox) error {
	if o.To != f.cfg.Fleet.Node {
		return fmt.Errorf("the offer is addressed to node %q", o.To)
	}
	if in == nil {
		return errors.New("this node had published no nonce")
	}
	if m, ok := in.MACs[o.Profile]; !ok || m.Version != o.MACVersion {
		return fmt.Errorf("the offer is authenticated under profile %s main key version %d, not the one this node published", o.Profile, o.MACVersion)
	}
	if err := f.cust.CheckFleetMAC(o.Profile, o.MACVersion, offerMessage(o), o.MAC); err != nil {
		return err
	}
	kdh, err := x509.ParseCertificate(o.KDH)
	if err != nil {
		return fmt.Errorf("the sending node's certificate: %w", err)
	}
	key, err := mainkey.OpenToken(f.store, f.cust, kdh, o.Token, in.Nonce)
	if err != nil {
		return err
	}
	defer clear(key)
	if got := mainkey.KCV(key); got != o.KCV {
		return fmt.Errorf("the transported key has KCV %s, the offer says %s", got, o.KCV)
	}
	return f.cust.StageFleetVersion(o.Profile, o.Version, key)
}

// follow activates and retires what the fleet's rotating node has (custody.FollowFleet).
func (f *fleetNode) follow() {
	for _, name := range f.cust.ProfileNames() {
		did, err := f.cust.FollowFleet(name)
		if err != nil {
			f.log.Error("fleet: following the fleet's profile main key", zap.String("profile", name), zap.Error(err))
			continue
		}
		if did.Activated != 0 {
			p, _ := f.cust.Profile(name)
			kcv := ""
			if p != nil {
				kcv = p.KCV()
			}
			f.audit(audit.Event{Operation: "fleet-activate-main-key", Profile: name, Outcome: audit.OK, KCVs: map[string]string{"profile": kcv},
				Detail: fmt.Sprintf("version %d, activated on the rotating node", did.Activated)})
		}
		if len(did.Retired) > 0 {
			f.audit(audit.Event{Operation: "fleet-retire-main-key", Profile: name, Outcome: audit.OK,
				Detail: fmt.Sprintf("versions %v, retired on the rotating node", did.Retired)})
		}
	}
}

// audit records ev in the daemon's trail once it is open (setAudit).
func (f *fleetNode) audit(ev audit.Event) {
	ev.Protocol, ev.Principal, ev.Account = "system", "payhsm", f.cfg.Account
	f.mu.Lock()
	rec := f.record
	f.mu.Unlock()
	if rec == nil {
		f.log.Warn("fleet: an event before the audit trail opened", zap.String("operation", ev.Operation), zap.String("detail", ev.Detail))
		return
	}
	rec(ev)
}

// setAudit gives the fleet part the daemon's audit trail.
func (f *fleetNode) setAudit(store *keystore.Store, record func(audit.Event)) {
	f.mu.Lock()
	f.store, f.record = store, record
	f.mu.Unlock()
}

// rotationWait bounds each wait of a rotation on the other nodes.
func (f *fleetNode) rotationWait() time.Duration {
	return max(30*time.Second, 5*f.cfg.Fleet.Heartbeat())
}

// heartbeats reads the current heartbeats, by node.
func (f *fleetNode) heartbeats() (map[string]Heartbeat, error) {
	out := map[string]Heartbeat{}
	hp := []byte(heartbeatPrefix)
	err := f.eng.Scan(hp, kv.PrefixEnd(hp), func(k, v []byte) (bool, error) {
		var hb Heartbeat
		if json.Unmarshal(v, &hb) == nil && hb.Node == string(k[len(hp):]) {
			out[hb.Node] = hb
		}
		return true, nil
	})
	return out, err
}

// peers are the other nodes a rotation of profile must carry to: those
// serving, with a current heartbeat, that hold the profile. Nodes without
// a heartbeat, or not serving, are left out (they are stale when they
// return, and receive the version with payhsm ceremony join) and listed.
func (f *fleetNode) peers(profile string) (serving map[string]Heartbeat, left []string, err error) {
	hbs, err := f.heartbeats()
	if err != nil {
		return nil, nil, fmt.Errorf("read the fleet's heartbeats: %w", err)
	}
	copies, err := f.cust.FleetProfile(profile)
	if err != nil {
		return nil, nil, err
	}
	serving = map[string]Heartbeat{}
	for _, cp := range copies {
		if cp.Node == f.cfg.Fleet.Node {
			continue
		}
		hb, ok := hbs[cp.Node]
		if ok && hb.State == "serving" {
			serving[cp.Node] = hb
		} else {
			left = append(left, cp.Node)
		}
	}
	return serving, left, nil
}

// Distribute carries profile's staged main key version to every other
// serving node holding the profile and returns once each has staged it
// (its record holds the version with the same check value), or fails
// naming the nodes that have not, and why, after rotationWait. It
// implements ops.FleetRotation.
func (f *fleetNode) Distribute(profile string, version int) error {
	if f.eng == nil {
		return nil
	}
	copies, err := f.cust.FleetProfile(profile)
	if err != nil {
		return err
	}
	kcv := ""
	for _, cp := range copies {
		if cp.Node == f.cfg.Fleet.Node {
			kcv = cp.KCVs[version]
		}
	}
	if kcv == "" {
		return fmt.Errorf("this node holds no staged version %d of profile %s", version, profile)
	}
	sent := map[string]string{} // node -> the nonce an offer went to
	why := map[string]string{}
	deadline := time.Now().Add(f.rotationWait())
	for {
		peers, left, err := f.peers(profile)
		if err != nil {
			return err
		}
		copies, err := f.cust.FleetProfile(profile)
		if err != nil {
			return err
		}
		staged := map[string]bool{}
		for _, cp := range copies {
			staged[cp.Node] = cp.KCVs[version] == kcv
		}
		var pending []string
		for node, hb := range peers {
			if staged[node] {
				continue
			}
			pending = append(pending, node)
			switch {
			case hb.OfferError != "":
				why[node] = "it refused the offer: " + hb.OfferError
			case hb.Inbox == nil:
				why[node] = "it publishes no inbox (a node of an earlier release?)"
			}
			if hb.Inbox == nil || sent[node] == string(hb.Inbox.Nonce) {
				continue
			}
			if err := f.offer(profile, version, kcv, node, hb.Inbox); err != nil {
				why[node] = err.Error()
				continue
			}
			sent[node] = string(hb.Inbox.Nonce)
		}
		if len(pending) == 0 {
			if len(left) > 0 {
				f.log.Warn("fleet rotation: nodes not serving now do not receive the new version; they are stale when they return (payhsm ceremony join)",
					zap.String("profile", profile), zap.Int("version", version), zap.Strings("nodes", left))
			}
			return nil
		}
		if time.Now().After(deadline) {
			slices.Sort(pending)
			var msgs []string
			for _, n := range pending {
				msgs = append(msgs, fmt.Sprintf("node %s: %s", n, cmp.Or(why[n], "no answer")))
			}
			return fmt.Errorf("profile %s main key version %d did not reach every serving node within %s (nothing is active yet; run the rotation again to resume, or stop those nodes): %s",
				profile, version, f.rotationWait(), strings.Join(msgs, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// offer writes the offer of profile's staged version to node, whose
// inbox in is checked first.
func (f *fleetNode) offer(profile string, version int, kcv, node string, in *Inbox) error {
	o, err := f.makeOffer(profile, version, kcv, node, in)
	if err != nil {
		return err
	}
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if _, err := f.eng.PutLeased([]byte(offerPrefix+node), b, 0, offerTTL); err != nil {
		return err
	}
	f.log.Info("fleet rotation: new main key version offered", zap.String("to", node), zap.String("profile", profile),
		zap.Int("version", version), zap.String("kcv", kcv), zap.String("toCertificate", fingerprintDER(in.Cert)))
	return nil
}

// makeOffer checks node's inbox in and builds its offer of profile's
// staged version.
func (f *fleetNode) makeOffer(profile string, version int, kcv, node string, in *Inbox) (*Offer, error) {
	m, ok := in.MACs[profile]
	if !ok {
		return nil, fmt.Errorf("its inbox names no main key of profile %s", profile)
	}
	if err := f.cust.CheckFleetMAC(profile, m.Version, inboxMessage(node, profile, in), m.MAC); err != nil {
		return nil, fmt.Errorf("its inbox: %w", err)
	}
	krd, err := x509.ParseCertificate(in.Cert)
	if err != nil {
		return nil, fmt.Errorf("its device certificate: %w", err)
	}
	tok, kdh, err := mainkey.ExportStaged(f.store, f.cust, profile, version, krd, in.Nonce)
	if err != nil {
		return nil, err
	}
	o := &Offer{From: f.cfg.Fleet.Node, To: node, Profile: profile, Version: version, KCV: kcv, KDH: kdh.Raw, Token: tok, MACVersion: m.Version}
	if o.MAC, err = f.cust.FleetMAC(profile, m.Version, offerMessage(o)); err != nil {
		return nil, err
	}
	return o, nil
}

// AwaitActive returns once every other serving node holding profile's
// version has made it active (custody.FollowFleet), or fails naming those
// that have not after rotationWait. It implements ops.FleetRotation.
func (f *fleetNode) AwaitActive(profile string, version int) error {
	if f.eng == nil {
		return nil
	}
	deadline := time.Now().Add(f.rotationWait())
	for {
		peers, _, err := f.peers(profile)
		if err != nil {
			return err
		}
		copies, err := f.cust.FleetProfile(profile)
		if err != nil {
			return err
		}
		var pending []string
		for _, cp := range copies {
			if _, ok := peers[cp.Node]; ok && slices.Contains(cp.Versions, version) && cp.Active != version {
				pending = append(pending, cp.Node)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			slices.Sort(pending)
			return fmt.Errorf("profile %s main key version %d is not active on node %s after %s (no old version is retired; run the rotation again to resume)",
				profile, version, strings.Join(pending, ", "), f.rotationWait())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// watch kicks the heartbeat loop when an offer reaches this node or a
// node's custody records change (a rotation step elsewhere), so that the
// node stages, activates and retires without waiting for its next beat.
func (f *fleetNode) watch(ctx context.Context) {
	if f.eng == nil {
		return
	}
	f.eng.Notify(ctx, func() {
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}, []byte(offerPrefix+f.cfg.Fleet.Node), keystore.MetaEngineKey(custody.NodeRecordPrefix))
}

// fingerprintDER is a DER certificate's fingerprint, or "?".
func fingerprintDER(der []byte) string {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return "?"
	}
	return mainkey.Fingerprint(c)
}
