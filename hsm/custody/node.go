package custody

import (
	"fmt"
	"slices"
	"strings"

	"go.uber.org/zap"
)

// A fleet is several appliances (nodes) sharing one key store (etcd; see
// docs/fleet.md). Each node keeps its own PKCS#11 token and region main
// key, so everything sealed under a region main key is per node: custody's
// records (the region main key's check value, each profile's main keys
// sealed under it) and the ceremonies' (the device identity, the pending
// TR-34 nonce, the custodians) live under the node's name:
//
//	custody/region-main-key          -> custody/node/<node>/region-main-key
//	custody/profile/<profile>        -> custody/node/<node>/profile/<profile>
//	ceremony/identity                -> ceremony/node/<node>/identity
//
// A node named "" (one appliance, the default) keeps the names on the left,
// so a store made before fleets opens unchanged. The profile main keys
// themselves are the same on every node (a node receives them from another
// with the TR-34 sync, `payhsm ceremony join`): they authenticate every
// shared record and wrap every customer key.

// nodeSegment is the path segment naming a node's records.
const nodeSegment = "node/"

// NodeRecordPrefix starts the name of every custody record of a named
// node: NodeRecordPrefix + node + "/" + ....
const NodeRecordPrefix = "custody/" + nodeSegment

// CheckNodeName enforces the rule for node names (fleet.node): 1 to 32 of
// a-z 0-9 _ -, starting with a letter, as profile names. The name is part
// of the node's record names and of its heartbeat.
func CheckNodeName(name string) error {
	if CheckProfileName(name) != nil {
		return fmt.Errorf("node name %q: 1 to 32 of a-z 0-9 _ -, starting with a letter", name)
	}
	return nil
}

// NodeMetaName returns the name under which node keeps owner record base
// ("custody/..." or "ceremony/..."): base itself for node "", else
// "<owner>/node/<node>/<rest>". Other names are returned unchanged.
func NodeMetaName(node, base string) string {
	if node == "" {
		return base
	}
	owner, rest, ok := strings.Cut(base, "/")
	if !ok || owner != "custody" && owner != "ceremony" {
		return base
	}
	return owner + "/" + nodeSegment + node + "/" + rest
}

// RegionRecordName is the name of node's region main key record: a store
// without it is new to that node.
func RegionRecordName(node string) string { return NodeMetaName(node, metaRegion) }

// Node is this appliance's name in its fleet ("" for one appliance).
func (c *Custodian) Node() string { return c.cfg.Node }

// MetaName is NodeMetaName for this appliance's node: the ceremonies keep
// their records sealed under the region main key with it.
func (c *Custodian) MetaName(base string) string { return NodeMetaName(c.cfg.Node, base) }

// ProfileCopy is one node's sealed copy of a profile's main keys, as its
// record (plaintext metadata only) says.
type ProfileCopy struct {
	Node     string // the node that holds it
	Active   int    // the active version
	KCV      string // the active version's check value (hex, upper case)
	Versions []int  // every version the copy holds
	// KCVs are the check values of every version it holds (hex, upper case).
	KCVs map[int]string
}

// FleetProfile lists every node's copy of profile (this node's included),
// by node name. It reads the records' metadata only: nothing is unsealed,
// so it answers for nodes whose region main key is elsewhere.
func (c *Custodian) FleetProfile(profile string) ([]ProfileCopy, error) {
	if err := CheckProfileName(profile); err != nil {
		return nil, fmt.Errorf("custody: %w", err)
	}
	prefix := NodeRecordPrefix
	names, err := c.meta.MetaNames(prefix)
	if err != nil {
		return nil, fmt.Errorf("custody: list the fleet's profile records: %w", err)
	}
	var out []ProfileCopy
	for _, n := range names {
		node, rest, ok := strings.Cut(strings.TrimPrefix(n, prefix), "/")
		if !ok || rest != strings.TrimPrefix(metaProfilePrefix, "custody/")+profile {
			continue
		}
		rec, err := c.readProfileAt(n, profile)
		if err != nil {
			return nil, err
		}
		cp := ProfileCopy{Node: node, Active: rec.Active, KCVs: map[int]string{}}
		for _, v := range rec.Versions {
			cp.Versions = append(cp.Versions, v.Version)
			cp.KCVs[v.Version] = upper(v.KCV)
			if v.Version == rec.Active {
				cp.KCV = upper(v.KCV)
			}
		}
		out = append(out, cp)
	}
	slices.SortFunc(out, func(a, b ProfileCopy) int { return strings.Compare(a.Node, b.Node) })
	return out, nil
}

// ErrStaleProfile reports a node whose copy of a profile main key is older
// than another node's (a rotation made elsewhere has not reached it).
var ErrStaleProfile = fmt.Errorf("this node's profile main key is older than the fleet's")

// CheckFleetProfile compares this node's copy of profile with every other
// node's. It fails with ErrStaleProfile when another node's copy has a
// newer active version than this node holds (a rotation made there), and
// with a plain error when the same version has a different check value
// (two different keys under one name: never served side by side). A node
// outside a fleet ("") always passes.
func (c *Custodian) CheckFleetProfile(profile string) error {
	if c.cfg.Node == "" {
		return nil
	}
	copies, err := c.FleetProfile(profile)
	if err != nil {
		return err
	}
	var own *ProfileCopy
	for i := range copies {
		if copies[i].Node == c.cfg.Node {
			own = &copies[i]
		}
	}
	if own == nil {
		return fmt.Errorf("custody: node %s has no profile main key of %q: %w", c.cfg.Node, profile, ErrNoProfile)
	}
	for _, cp := range copies {
		switch {
		case cp.Node == own.Node:
		case cp.Active > own.Active && !slices.Contains(own.Versions, cp.Active):
			return fmt.Errorf("custody: node %s holds profile %s main key version %d, node %s version %d: %w (carry the new version to this node with payhsm ceremony join)",
				own.Node, profile, own.Active, cp.Node, cp.Active, ErrStaleProfile)
		case cp.Active > own.Active && own.KCVs[cp.Active] != cp.KCV:
			return fmt.Errorf("custody: profile %s main key version %d has KCV %s on node %s but this node (%s) holds it staged with KCV %s: two different keys under one name",
				profile, cp.Active, cp.KCV, cp.Node, own.Node, own.KCVs[cp.Active])
		case cp.Active == own.Active && cp.KCV != own.KCV:
			return fmt.Errorf("custody: profile %s main key version %d has KCV %s on node %s but %s on node %s: two different keys under one name",
				profile, own.Active, own.KCV, own.Node, cp.KCV, cp.Node)
		}
	}
	return nil
}

// ProfileVersions returns the main key versions this node holds of each of
// its profiles (from the records: nothing is unsealed).
func (c *Custodian) ProfileVersions() (map[string][]int, error) {
	out := map[string][]int{}
	for _, name := range c.ProfileNames() {
		rec, err := c.readProfile(name)
		if err != nil {
			return nil, err
		}
		for _, v := range rec.Versions {
			out[name] = append(out[name], v.Version)
		}
	}
	return out, nil
}

// AdoptFleetVersion brings this node's copy of profile up to the fleet's
// after a rotation made on another node: key (AES-256, copied; it arrived
// through the TR-34 join) must be the active version of another node's
// copy, newer than this node's active one. This node's copy then holds the
// versions that copy holds: the new one becomes active, and the versions
// the other node has retired are retired here too. Anything else is
// refused and nothing is stored.
func (c *Custodian) AdoptFleetVersion(profile string, key []byte) (*Profile, error) {
	if c.cfg.Node == "" {
		return nil, fmt.Errorf("custody: profile %q already has a main key; it is not overwritten", profile)
	}
	p, err := c.Profile(profile)
	if err != nil {
		return nil, err
	}
	m, err := newMainKey(profile, key, c.log)
	if err != nil {
		return nil, err
	}
	c.rotMu.Lock()
	defer c.rotMu.Unlock()
	rec, err := c.readProfile(profile)
	if err != nil {
		m.destroy()
		return nil, err
	}
	copies, err := c.FleetProfile(profile)
	if err != nil {
		m.destroy()
		return nil, err
	}
	var src *ProfileCopy
	for i, cp := range copies {
		if cp.Node != c.cfg.Node && cp.Active > rec.Active && cp.KCV == upper(m.kcv) && (src == nil || cp.Active > src.Active) {
			src = &copies[i]
		}
	}
	if src == nil {
		m.destroy()
		return nil, fmt.Errorf("custody: the transported key (KCV %s) is not a newer version of profile %s that another node of the fleet holds (this node holds version %d): refused, nothing stored",
			upper(m.kcv), profile, rec.Active)
	}
	ver, err := c.sealVersion(profile, src.Active, m, key)
	if err != nil {
		m.destroy()
		return nil, err
	}
	var keep []profileVersion
	for _, v := range rec.Versions {
		if slices.Contains(src.Versions, v.Version) && v.Version != src.Active {
			keep = append(keep, v)
		}
	}
	oldActive := rec.Active
	rec.Versions, rec.Active = append(keep, ver), src.Active
	// The new version is loaded and active before the record is written:
	// the other node's rotation has moved the shared records (this node's
	// journal among them) onto it, so the write needs it.
	p.mu.Lock()
	if p.keys[src.Active] != nil {
		p.mu.Unlock()
		m.destroy()
		return nil, fmt.Errorf("custody: profile %s version %d is being adopted already", profile, src.Active)
	}
	p.keys[src.Active], p.active = m, src.Active
	p.mu.Unlock()
	if err := c.writeProfile(rec); err != nil {
		p.mu.Lock()
		delete(p.keys, src.Active)
		p.active = oldActive
		p.mu.Unlock()
		m.destroy()
		return nil, err
	}
	p.mu.Lock()
	for v, old := range p.keys {
		if v != src.Active && !slices.Contains(src.Versions, v) {
			old.destroy()
			delete(p.keys, v)
		}
	}
	p.mu.Unlock()
	c.log.Info("profile main key version adopted from the fleet", zap.String("profile", profile), zap.Int("version", src.Active),
		zap.String("kcv", upper(m.kcv)), zap.String("from", src.Node))
	return p, nil
}
