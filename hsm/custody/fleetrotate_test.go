package custody_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"payhsm/hsm/custody"
)

// TestFleetRotationStaged walks a fleet-wide rotation through custody on
// two nodes sharing one store: the rotating node stages the new version,
// the other receives and stages it (still serving its active version, not
// stale), the rotating node activates it and the other follows, then the
// old version is retired on both. It also checks the refusals: an offered
// version not above the active one, a held version with another key, a
// staged key asked for an active version, a message not authenticated
// under the fleet's main key.
func TestFleetRotationStaged(t *testing.T) {
	t.Parallel()
	a, b, pa, pb := joinedPair(t)

	// Rotation messages are authenticated under the shared main key.
	msg := []byte("offer\x00b\x00default\x002")
	mac, err := a.FleetMAC("default", 1, msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.CheckFleetMAC("default", 1, msg, mac); err != nil {
		t.Errorf("node b refuses node a's MAC: %v", err)
	}
	if err := b.CheckFleetMAC("default", 1, append(bytes.Clone(msg), '!'), mac); err == nil {
		t.Error("a changed message passed")
	}
	if _, err := b.FleetMAC("default", 7, msg); err == nil {
		t.Error("a MAC under a version not held")
	}

	v, kcv, err := a.StageRotation("default", nil)
	if err != nil || v != 2 || len(kcv) != 6 {
		t.Fatalf("StageRotation: %d %q %v", v, kcv, err)
	}
	if again, kcv2, err := a.StageRotation("default", nil); err != nil || again != 2 || kcv2 != kcv {
		t.Errorf("StageRotation resumed: %d %q %v", again, kcv2, err)
	}
	if pa.Version() != 1 {
		t.Errorf("node a's active version after staging: %d", pa.Version())
	}
	if _, err := a.StagedKey("default", 1); err == nil {
		t.Error("StagedKey gave the active version")
	}
	staged, err := a.StagedKey("default", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer clear(staged)
	for _, c := range []*custody.Custodian{a, b} {
		if err := c.CheckFleetProfile("default"); err != nil {
			t.Errorf("node %s after staging: %v", c.Node(), err)
		}
	}

	// Node b receives it: refused below its active version, held once.
	if err := b.StageFleetVersion("default", 1, staged); err == nil {
		t.Error("a version at the active one was staged")
	}
	if err := b.StageFleetVersion("default", 2, staged); err != nil {
		t.Fatal(err)
	}
	if err := b.StageFleetVersion("default", 2, staged); err != nil {
		t.Errorf("the same offer again: %v", err)
	}
	other := bytes.Repeat([]byte{7}, 32)
	if err := b.StageFleetVersion("default", 2, other); err == nil || !strings.Contains(err.Error(), "held already") {
		t.Errorf("another key under a held version: %v", err)
	}
	if pb.Version() != 1 || pb.Staged() != 2 {
		t.Errorf("node b's active and staged versions after staging: %d, %d", pb.Version(), pb.Staged())
	}
	// Nothing moves before the rotating node activates.
	if did, err := b.FollowFleet("default"); err != nil || did.Activated != 0 || len(did.Retired) != 0 {
		t.Errorf("FollowFleet before the activation: %+v %v", did, err)
	}

	if got, err := a.BeginRotation("default", nil); err != nil || got != 2 || pa.Staged() != 0 {
		t.Fatalf("BeginRotation activates the staged version: %d %v (staged after: %d)", got, err, pa.Staged())
	}
	if pa.KCV() != kcv {
		t.Errorf("node a's active KCV %s, staged %s", pa.KCV(), kcv)
	}
	if err := b.CheckFleetProfile("default"); err != nil {
		t.Errorf("node b holds the new version staged: %v", err)
	}
	did, err := b.FollowFleet("default")
	if err != nil || did.Activated != 2 || len(did.Retired) != 0 {
		t.Fatalf("FollowFleet after the activation: %+v %v", did, err)
	}
	blk, err := pb.Wrap(fleetSealHeaderForTest, make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	if bv, _ := custody.BlockVersion(blk); bv != 2 {
		t.Errorf("node b wraps under version %d", bv)
	}
	if _, _, err := pa.Unwrap(blk); err != nil {
		t.Errorf("node a cannot open node b's new block: %v", err)
	}

	if err := a.RetireOldVersions("default"); err != nil {
		t.Fatal(err)
	}
	did, err = b.FollowFleet("default")
	if err != nil || did.Activated != 0 || !slices.Equal(did.Retired, []int{1}) {
		t.Fatalf("FollowFleet after the retirement: %+v %v", did, err)
	}
	vers, err := b.ProfileVersions()
	if err != nil || !slices.Equal(vers["default"], []int{2}) {
		t.Errorf("node b's versions %v %v", vers, err)
	}
	if _, err := b.RecordKey("default", 1); err != nil {
		t.Error(err)
	} else if k, _ := b.RecordKey("default", 1); k != nil {
		t.Error("node b still holds the retired version")
	}

	// The next rotation staged on node b is numbered above every copy.
	if v, _, err := b.StageRotation("default", nil); err != nil || v != 3 {
		t.Errorf("next staged version on node b: %d %v", v, err)
	}
	// A rotation on node a (isolated: nothing staged there) never reuses
	// the version node b has staged, and leaves node b stale, not confused.
	if v, err := a.BeginRotation("default", nil); err != nil || v != 4 {
		t.Fatalf("isolated rotation on node a beside node b's staged version 3: %d %v", v, err)
	}
	if err := b.CheckFleetProfile("default"); !errors.Is(err, custody.ErrStaleProfile) {
		t.Errorf("node b after an isolated rotation on node a: %v", err)
	}
	// StageRotation past staging (activated, not retired) defers to BeginRotation.
	if v, _, err := a.StageRotation("default", nil); err != nil || v != 0 {
		t.Errorf("StageRotation during an activated rotation: %d %v", v, err)
	}
}
