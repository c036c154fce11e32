package ops

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"payhsm/fault"
	"payhsm/hsm/custody"
	"payhsm/keystore"
)

// RotationReport describes a finished profile main key rotation.
type RotationReport struct {
	Profile   string
	Version   int    // the new active main key version
	KCV       string // its check value
	Rewrapped int    // key blocks moved onto it by this run
	Resealed  int    // records re-authenticated under it by this run (besides those re-written with their key block)
	Verified  int    // key blocks verified under it before the old versions were retired
}

// RotateProfile moves profile onto a new main key: it introduces the new
// version (newKey from a ceremony's components, or nil to generate one),
// re-wraps every stored key block of the profile from the old version to the
// new one — each record in its own synced write, verified before it is
// written —, checks that every block opens under the new version, and only
// then retires the old version. It also re-seals the profile's records
// (keystore.Reseal) under the new version. It runs online, beside normal traffic, and is
// resumable: after a crash, running it again continues the same rotation.
// quiesce is how long to let in-flight writes land before the final check.
//
// On a shared store it runs on the fleet's leader only (see Run), and stops
// when this node loses leadership; run again on the new leader, it resumes.
// In a fleet (SetFleetRotation) the new version reaches every other
// serving node before it becomes active anywhere, and each of them has
// made it active before the last re-wrap pass (see FleetRotation).
func (s *Service) RotateProfile(profile string, newKey []byte, quiesce time.Duration) (*RotationReport, error) {
	return s.rotateProfile(profile, newKey, quiesce, s.fleetRotation())
}

// RotateProfileIsolated is RotateProfile without carrying the new version
// to the fleet's other nodes: they are stale until each receives it with
// payhsm ceremony join (docs/fleet.md: the choice when the old main key
// may be compromised).
func (s *Service) RotateProfileIsolated(profile string, newKey []byte, quiesce time.Duration) (*RotationReport, error) {
	return s.rotateProfile(profile, newKey, quiesce, nil)
}

// FleetRotation carries a profile main key rotation to a fleet's other
// nodes (the daemon's fleet part, over the shared store).
type FleetRotation interface {
	// Distribute returns once every other serving node holding profile
	// has staged its main key version (custody.StageRotation made it
	// here), or fails naming the nodes that have not.
	Distribute(profile string, version int) error
	// AwaitActive returns once every other serving node holding the
	// version has made it active.
	AwaitActive(profile string, version int) error
}

// SetFleetRotation makes rotations carry their new version to the fleet
// (nil: they do not).
func (s *Service) SetFleetRotation(f FleetRotation) {
	if f == nil {
		s.fleetRot.Store(nil)
		return
	}
	s.fleetRot.Store(&f)
}

func (s *Service) fleetRotation() FleetRotation {
	if f := s.fleetRot.Load(); f != nil {
		return *f
	}
	return nil
}

func (s *Service) rotateProfile(profile string, newKey []byte, quiesce time.Duration, fleet FleetRotation) (*RotationReport, error) {
	if !s.Leading() {
		return nil, s.errNotLeader("a profile main key rotation")
	}
	if fleet != nil {
		// Staged first, carried to the other nodes, then activated.
		staged, _, err := s.cust.StageRotation(profile, newKey)
		if errors.Is(err, custody.ErrNoProfile) {
			return nil, fault.NotFoundf(profile, "profile %s has no main key", profile)
		}
		if err != nil {
			return nil, fault.Internalf("stage rotation", err)
		}
		if staged > 0 {
			if err := fleet.Distribute(profile, staged); err != nil {
				return nil, fault.Wrap(fault.Unavailable, err.Error(), err)
			}
		}
	}
	v, err := s.cust.BeginRotation(profile, newKey)
	if errors.Is(err, custody.ErrNoProfile) {
		return nil, fault.NotFoundf(profile, "profile %s has no main key", profile)
	}
	if err != nil {
		return nil, fault.Internalf("begin rotation", err)
	}
	p, err := s.cust.Profile(profile)
	if err != nil {
		return nil, fault.Internalf("profile main key", err)
	}
	rep := &RotationReport{Profile: profile, Version: v, KCV: p.KCV()}
	if fleet != nil {
		// Until every node wraps under the new version, blocks keep
		// appearing under the old one: the last pass must come after.
		if err := fleet.AwaitActive(profile, v); err != nil {
			return rep, fault.Wrap(fault.Unavailable, err.Error(), err)
		}
	}
	for pass := 0; ; pass++ {
		n, verified, err := s.rewrapProfile(p, v)
		if err != nil {
			return rep, err
		}
		rep.Rewrapped += n
		// Every record the profile's main key authenticates moves onto the
		// new version too; records still under the old one would fail their
		// integrity check once it is retired.
		resealed, err := s.store.Reseal(profile)
		if err != nil {
			return rep, fault.Internalf("re-seal records", err)
		}
		rep.Resealed += resealed
		if n == 0 && resealed == 0 && pass > 0 {
			rep.Verified = verified
			break
		}
		if pass == 20 {
			return rep, fault.Internalf("rotation", errors.New("key blocks keep appearing under the old main key"))
		}
		time.Sleep(quiesce)
	}
	if err := s.cust.RetireOldVersions(profile); err != nil {
		return rep, fault.Internalf("retire old main key", err)
	}
	s.cache.dropAll()
	s.log.Sugar().Infow("profile main key rotated", "profile", profile, "version", v, "kcv", rep.KCV,
		"rewrapped", rep.Rewrapped, "resealed", rep.Resealed, "verified", rep.Verified)
	return rep, nil
}

// rewrapProfile moves every block of the profile not yet under version v onto
// it; it returns how many it moved and how many blocks are under v.
func (s *Service) rewrapProfile(p *custody.Profile, v int) (moved, under int, err error) {
	next := ""
	for {
		recs, tok, err := s.store.ListKeys(func(k *keystore.Key) bool { return k.Profile == p.Name() && k.KeyBlock != "" }, next, 100)
		if err != nil {
			return moved, under, fault.Internalf("list keys", err)
		}
		for _, r := range recs {
			if !s.Leading() {
				return moved, under, s.errNotLeader("a profile main key rotation (leadership was lost part-way; it resumes where it stopped)")
			}
			if bv, err := custody.BlockVersion(r.KeyBlock); err == nil && bv == v {
				under++
				continue
			}
			_, err := s.store.UpdateKey(r.ID, func(k *keystore.Key) error {
				nb, err := rewrap(p, k.KeyBlock, v)
				if err != nil {
					return err
				}
				k.KeyBlock = nb
				return nil
			})
			if errors.Is(err, keystore.ErrNotFound) {
				continue // purged meanwhile
			}
			if err != nil {
				return moved, under, fault.Internalf("re-wrap key "+r.ID, err)
			}
			s.cache.dropKey(r.ID)
			moved++
			under++
		}
		if tok == "" {
			break
		}
		next = tok
	}
	// Internal keys kept in meta records (CA keys, import-token keys): every
	// JSON record with a "keyBlock" member that opens under this profile.
	names, err := s.store.MetaNames("")
	if err != nil {
		return moved, under, fault.Internalf("list meta", err)
	}
	for _, name := range names {
		if strings.HasPrefix(name, "custody/") || strings.HasPrefix(name, "ceremony/") {
			continue
		}
		raw, err := s.store.GetMeta(name)
		if err != nil {
			continue
		}
		var rec map[string]json.RawMessage
		if json.Unmarshal(raw, &rec) != nil {
			continue
		}
		var block string
		if json.Unmarshal(rec["keyBlock"], &block) != nil || block == "" {
			continue
		}
		if bv, err := custody.BlockVersion(block); err == nil && bv == v {
			if _, key, err := p.Unwrap(block); err == nil {
				clear(key)
				under++
			}
			continue
		}
		nb, err := rewrap(p, block, v)
		if err != nil {
			continue // another profile's block
		}
		rec["keyBlock"], _ = json.Marshal(nb)
		out, _ := json.Marshal(rec)
		if err := s.store.PutMeta(name, out); err != nil {
			return moved, under, fault.Internalf("re-wrap "+name, err)
		}
		moved++
		under++
	}
	return moved, under, nil
}

// rewrap opens block under any loaded main key version and wraps the same key
// and header under the active version v, checking the new block opens to the
// same key before it is returned.
func rewrap(p *custody.Profile, block string, v int) (string, error) {
	h, key, err := p.Unwrap(block)
	if err != nil {
		return "", err
	}
	defer clear(key)
	nb, err := p.Wrap(h, key)
	if err != nil {
		return "", err
	}
	if bv, err := custody.BlockVersion(nb); err != nil || bv != v {
		return "", fmt.Errorf("re-wrapped block is under main key version %d, not %d", bv, v)
	}
	_, again, err := p.Unwrap(nb)
	if err != nil {
		return "", err
	}
	defer clear(again)
	if string(again) != string(key) {
		return "", errors.New("re-wrapped block does not open to the same key")
	}
	return nb, nil
}
