package custody

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"go.uber.org/zap"
)

// A rotation in a fleet (docs/fleet.md, "Rotation") carries the new profile
// main key version to every serving node before any node wraps under it,
// so no node is left behind:
//
//  1. the rotating node stages the new version (StageRotation): sealed and
//     held, not active: nothing is wrapped or authenticated under it yet;
//  2. each other serving node receives it (TR-34 between device identities:
//     ceremony/mainkey and the daemon's fleet part, authenticated with
//     FleetMAC) and stages it too (StageFleetVersion);
//  3. the rotating node activates it (BeginRotation) and every other node
//     follows (FollowFleet), before the rotation's last re-wrap pass;
//  4. once every block and record is under it, the rotating node retires
//     the old versions (RetireOldVersions) and every other node follows
//     (FollowFleet again).
//
// What a node learns of the others' copies is their records' plaintext
// metadata (FleetProfile), which a writer of the store could forge: it only
// ever makes a node activate a version it already holds, received from a
// holder of the fleet's main key, or retire one the others no longer hold.
// Either costs availability, never a key.

// fleetMACInfo is the HKDF info (with the profile name) of the key that
// authenticates a fleet's rotation messages (FleetMAC).
const fleetMACInfo = "payhsm/fleet/rotation-message/v1/"

// stagedVersion is the newest version rec holds above its active one (0 when none).
func stagedVersion(rec *profileRecord) int {
	v := 0
	for _, pv := range rec.Versions {
		if pv.Version > rec.Active && pv.Version > v {
			v = pv.Version
		}
	}
	return v
}

// StageRotation begins a fleet-wide rotation of profile on this node: it
// seals a new main key version (newKey, copied, or generated when nil) and
// holds it without making it active, numbered above every version any
// node of the fleet holds. A version staged already is returned instead
// (a rotation resumed); 0 when a rotation is past staging (a version above
// the first is active and older ones are not retired: BeginRotation
// resumes it). It returns the version and its check value.
func (c *Custodian) StageRotation(profile string, newKey []byte) (int, string, error) {
	p, err := c.Profile(profile)
	if err != nil {
		return 0, "", err
	}
	c.rotMu.Lock()
	defer c.rotMu.Unlock()
	rec, err := c.readProfile(profile)
	if err != nil {
		return 0, "", err
	}
	if v := stagedVersion(rec); v > 0 {
		return v, upper(versionKCV(rec, v)), nil
	}
	if len(rec.Versions) > 1 {
		return 0, "", nil
	}
	v, err := c.nextVersion(profile, rec)
	if err != nil {
		return 0, "", err
	}
	key := make([]byte, 32)
	defer clear(key)
	if newKey != nil {
		copy(key, newKey)
	} else if _, err := rand.Read(key); err != nil {
		return 0, "", err
	}
	m, err := newMainKey(profile, key, c.log)
	if err != nil {
		return 0, "", err
	}
	ver, err := c.sealVersion(profile, v, m, key)
	if err != nil {
		m.destroy()
		return 0, "", err
	}
	rec.Versions = append(rec.Versions, ver)
	if err := c.writeProfile(rec); err != nil {
		m.destroy()
		return 0, "", err
	}
	p.mu.Lock()
	p.keys[v] = m
	p.mu.Unlock()
	c.log.Info("profile main key version staged for a fleet rotation", zap.String("profile", profile), zap.Int("version", v), zap.String("kcv", upper(m.kcv)))
	return v, upper(m.kcv), nil
}

// nextVersion numbers a new main key version of profile: above this
// node's active one and above every version any node of the fleet holds
// (a version staged elsewhere and never activated is not reused).
func (c *Custodian) nextVersion(profile string, rec *profileRecord) (int, error) {
	v := rec.Active + 1
	copies, err := c.FleetProfile(profile)
	if err != nil {
		return 0, err
	}
	for _, cp := range copies {
		for _, n := range cp.Versions {
			v = max(v, n+1)
		}
	}
	return v, nil
}

// versionKCV is the check value rec records for version v ("" when none).
func versionKCV(rec *profileRecord, v int) string {
	for _, pv := range rec.Versions {
		if pv.Version == v {
			return pv.KCV
		}
	}
	return ""
}

// StagedKey returns a copy of profile's staged main key version (one above
// the active version, held for a fleet rotation), for the TR-34 transport
// to the fleet's other nodes. The caller zeroes it. Active and retired
// versions are refused: they travel only through the ceremonies.
func (c *Custodian) StagedKey(profile string, version int) ([]byte, error) {
	p, err := c.Profile(profile)
	if err != nil {
		return nil, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	m := p.keys[version]
	if m == nil || version <= p.active {
		return nil, fmt.Errorf("custody: profile %s has no staged main key version %d", profile, version)
	}
	c.log.Info("staged profile main key version exported for the fleet", zap.String("profile", profile), zap.Int("version", version), zap.String("kcv", upper(m.kcv)))
	return append([]byte(nil), m.key...), nil
}

// StageFleetVersion holds key (AES-256, copied; it arrived through the
// TR-34 transport of a fleet rotation) as profile's main key version,
// sealed under this node's region main key, without making it active. The
// version must be above this node's active one; one held already is kept
// when its check value is the same (a repeated offer) and refused when it
// differs. Nothing is stored when it is refused.
func (c *Custodian) StageFleetVersion(profile string, version int, key []byte) error {
	if c.cfg.Node == "" {
		return errors.New("custody: only a fleet node receives a staged main key version")
	}
	p, err := c.Profile(profile)
	if err != nil {
		return err
	}
	m, err := newMainKey(profile, key, c.log)
	if err != nil {
		return err
	}
	c.rotMu.Lock()
	defer c.rotMu.Unlock()
	rec, err := c.readProfile(profile)
	if err != nil {
		m.destroy()
		return err
	}
	if version <= rec.Active {
		m.destroy()
		return fmt.Errorf("custody: profile %s main key version %d is not above this node's active version %d: refused", profile, version, rec.Active)
	}
	if held := versionKCV(rec, version); held != "" {
		same := held == m.kcv
		m.destroy()
		if !same {
			return fmt.Errorf("custody: profile %s main key version %d is held already with KCV %s, not %s: refused", profile, version, upper(held), upper(m.kcv))
		}
		return nil
	}
	ver, err := c.sealVersion(profile, version, m, key)
	if err != nil {
		m.destroy()
		return err
	}
	rec.Versions = append(rec.Versions, ver)
	if err := c.writeProfile(rec); err != nil {
		m.destroy()
		return err
	}
	p.mu.Lock()
	if old := p.keys[version]; old != nil {
		old.destroy()
	}
	p.keys[version] = m
	p.mu.Unlock()
	c.log.Info("profile main key version staged from the fleet", zap.String("profile", profile), zap.Int("version", version), zap.String("kcv", upper(m.kcv)))
	return nil
}

// FleetFollow is what FollowFleet did.
type FleetFollow struct {
	Activated int   // the version made active (0: none)
	Retired   []int // the versions retired
}

// FollowFleet brings this node's copy of profile in line with the fleet's
// newest: when another node's copy has a newer active version that this
// node holds staged with the same check value, it becomes active here
// (the rotating node has activated it); then every version this node holds
// below that active one that none of the nodes at that version holds any
// more is retired (the rotating node has finished). A node outside a fleet
// does nothing.
func (c *Custodian) FollowFleet(profile string) (FleetFollow, error) {
	var did FleetFollow
	if c.cfg.Node == "" {
		return did, nil
	}
	p, err := c.Profile(profile)
	if err != nil {
		return did, err
	}
	copies, err := c.FleetProfile(profile)
	if err != nil {
		return did, err
	}
	top := 0
	for _, cp := range copies {
		if cp.Node != c.cfg.Node {
			top = max(top, cp.Active)
		}
	}
	if top == 0 {
		return did, nil
	}
	c.rotMu.Lock()
	defer c.rotMu.Unlock()
	rec, err := c.readProfile(profile)
	if err != nil {
		return did, err
	}
	if top > rec.Active {
		held := versionKCV(rec, top)
		agree := held != ""
		for _, cp := range copies {
			if cp.Node != c.cfg.Node && cp.Active == top {
				agree = agree && upper(held) == cp.KCV
			}
		}
		if !agree {
			return did, nil // not held here (CheckFleetProfile says stale), or a different key (it says so too)
		}
		rec.Active = top
		did.Activated = top
	}
	if rec.Active == top {
		var keep []profileVersion
		for _, v := range rec.Versions {
			retire := v.Version < top
			for _, cp := range copies {
				if cp.Node != c.cfg.Node && cp.Active == top && slices.Contains(cp.Versions, v.Version) {
					retire = false
				}
			}
			if retire {
				did.Retired = append(did.Retired, v.Version)
			} else {
				keep = append(keep, v)
			}
		}
		rec.Versions = keep
	}
	if did.Activated == 0 && len(did.Retired) == 0 {
		return did, nil
	}
	if err := c.writeProfile(rec); err != nil {
		return FleetFollow{}, err
	}
	p.mu.Lock()
	p.active = rec.Active
	for _, v := range did.Retired {
		if m := p.keys[v]; m != nil {
			m.destroy()
			delete(p.keys, v)
		}
	}
	p.mu.Unlock()
	c.log.Info("profile main key follows the fleet", zap.String("profile", profile), zap.Int("active", rec.Active),
		zap.Int("activated", did.Activated), zap.Ints("retired", did.Retired))
	return did, nil
}

// FleetMAC authenticates msg as written by a holder of profile's main key
// version: HMAC-SHA256 under a key derived from it (HKDF-SHA256, info
// fleetMACInfo and the profile name). A fleet's rotation messages carry it:
// the offer of a new version and the device identity it is offered to.
func (c *Custodian) FleetMAC(profile string, version int, msg []byte) ([]byte, error) {
	p, err := c.Profile(profile)
	if err != nil {
		return nil, err
	}
	p.mu.RLock()
	m := p.keys[version]
	var k []byte
	if m != nil {
		k, err = hkdf.Key(sha256.New, m.key, nil, fleetMACInfo+profile, 32)
	}
	p.mu.RUnlock()
	if m == nil {
		return nil, fmt.Errorf("custody: profile %s main key version %d is not held here", profile, version)
	}
	if err != nil {
		return nil, err
	}
	defer clear(k)
	h := hmac.New(sha256.New, k)
	h.Write(msg)
	return h.Sum(nil), nil
}

// CheckFleetMAC checks a FleetMAC.
func (c *Custodian) CheckFleetMAC(profile string, version int, msg, mac []byte) error {
	want, err := c.FleetMAC(profile, version, msg)
	if err != nil {
		return err
	}
	if !hmac.Equal(want, mac) {
		return errors.New("custody: the message is not authenticated under the fleet's profile main key")
	}
	return nil
}
