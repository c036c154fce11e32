package custody_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"payhsm/hsm/custody"
	"payhsm/hsm/custody/memtoken"
	"payhsm/hsm/tr31"
)

func TestNodeMetaName(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ node, base, want string }{
		{"", "custody/region-main-key", "custody/region-main-key"},
		{"", "ceremony/identity", "ceremony/identity"},
		{"a", "custody/region-main-key", "custody/node/a/region-main-key"},
		{"a", "custody/profile/default", "custody/node/a/profile/default"},
		{"node-2", "ceremony/identity", "ceremony/node/node-2/identity"},
		{"node-2", "ceremony/custodians", "ceremony/node/node-2/custodians"},
		{"a", "access/principal/x", "access/principal/x"}, // shared, never per node
		{"a", "custody", "custody"},
	} {
		if got := custody.NodeMetaName(c.node, c.base); got != c.want {
			t.Errorf("NodeMetaName(%q, %q) = %q, want %q", c.node, c.base, got, c.want)
		}
	}
	for _, bad := range []string{"", "A", "1a", "a b", strings.Repeat("a", 33), "a/b"} {
		if custody.CheckNodeName(bad) == nil {
			t.Errorf("node name %q accepted", bad)
		}
	}
}

// fleetPair opens nodes a and b, each on its own token, over one store.
func fleetPair(t *testing.T) (a, b *custody.Custodian, meta *memMeta) {
	t.Helper()
	mem := memtoken.New()
	for _, l := range []string{"tok-a", "tok-b"} {
		if err := mem.InitToken(l, "1234"); err != nil {
			t.Fatal(err)
		}
	}
	meta = newMeta()
	cfg := func(label, node string) custody.Config {
		return custody.Config{Module: mem, TokenLabel: label, PIN: "1234", Initialize: true, Node: node}
	}
	a, b = open(t, cfg("tok-a", "a"), meta), open(t, cfg("tok-b", "b"), meta)
	// A node opened on another node's token is refused: its records name
	// that node's region main key.
	if _, err := custody.Open(cfg("tok-b", "a"), meta, nil); err == nil || !strings.Contains(err.Error(), "wrong token") {
		t.Errorf("node a on node b's token: %v", err)
	}
	if _, err := custody.Open(cfg("tok-a", "Bad Name"), meta, nil); err == nil {
		t.Error("a bad node name was accepted")
	}
	return a, b, meta
}

// joinedPair is fleetPair with a profile "default" made on node a and
// installed on node b (the join's outcome).
func joinedPair(t *testing.T) (a, b *custody.Custodian, pa, pb *custody.Profile) {
	t.Helper()
	a, b, _ = fleetPair(t)
	pa, err := a.CreateProfile("default")
	if err != nil {
		t.Fatal(err)
	}
	key, err := a.ExportProfileKey("default")
	if err != nil {
		t.Fatal(err)
	}
	defer clear(key)
	if pb, err = b.InstallProfile("default", key); err != nil {
		t.Fatal(err)
	}
	return a, b, pa, pb
}

// TestFleetNodes: two nodes with their own tokens share one store; each
// keeps its records under its name, a node without the fleet's profile main
// key is told so, the same key installed on both gives the same KCV, and a
// rotation on one node makes the other's copy stale.
func TestFleetNodes(t *testing.T) {
	t.Parallel()
	a, b, meta := fleetPair(t)
	if a.RegionKeyKCV() == b.RegionKeyKCV() {
		t.Fatal("the two nodes share a region main key")
	}
	pa, err := a.CreateProfile("default")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Profile("default"); !errors.Is(err, custody.ErrNoProfile) {
		t.Fatalf("node b before joining: %v", err)
	}
	if err := b.CheckFleetProfile("default"); !errors.Is(err, custody.ErrNoProfile) {
		t.Fatalf("CheckFleetProfile on node b before joining: %v", err)
	}
	copies, err := b.FleetProfile("default")
	if err != nil || len(copies) != 1 || copies[0].Node != "a" || copies[0].KCV != pa.KCV() {
		t.Fatalf("FleetProfile before joining: %+v %v", copies, err)
	}
	key, err := a.ExportProfileKey("default")
	if err != nil {
		t.Fatal(err)
	}
	pb, err := b.InstallProfile("default", key)
	clear(key)
	if err != nil {
		t.Fatal(err)
	}
	if pb.KCV() != pa.KCV() {
		t.Fatalf("KCV on b %s, on a %s", pb.KCV(), pa.KCV())
	}
	names, _ := meta.MetaNames("custody/")
	want := []string{"custody/node/a/profile/default", "custody/node/a/region-main-key", "custody/node/b/profile/default", "custody/node/b/region-main-key"}
	if !slices.Equal(names, want) {
		t.Errorf("custody's records %q, want %q", names, want)
	}
	if got := b.ProfileNames(); !slices.Equal(got, []string{"default"}) {
		t.Errorf("node b's profiles %q", got)
	}
	for _, c := range []*custody.Custodian{a, b} {
		if err := c.CheckFleetProfile("default"); err != nil {
			t.Errorf("node %s: %v", c.Node(), err)
		}
	}
	// A block wrapped on one node opens on the other.
	blk, err := pa.Wrap(fleetSealHeaderForTest, make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := pb.Unwrap(blk); err != nil {
		t.Errorf("node b cannot open node a's block: %v", err)
	}

	// Rotation on node a: node b's copy is stale (and says what to do).
	if _, err := a.BeginRotation("default", nil); err != nil {
		t.Fatal(err)
	}
	if err := a.CheckFleetProfile("default"); err != nil {
		t.Errorf("node a after its rotation: %v", err)
	}
	err = b.CheckFleetProfile("default")
	if !errors.Is(err, custody.ErrStaleProfile) || !strings.Contains(err.Error(), "payhsm ceremony join") {
		t.Errorf("node b after a rotation on node a: %v", err)
	}
	vers, err := a.ProfileVersions()
	if err != nil || !slices.Equal(vers["default"], []int{1, 2}) {
		t.Errorf("node a's versions %v %v", vers, err)
	}

	// Two different keys under one name and version are reported.
	x, y, _ := fleetPair(t)
	for _, c := range []*custody.Custodian{x, y} {
		if _, err := c.CreateProfile("default"); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.CheckFleetProfile("default"); err == nil || !strings.Contains(err.Error(), "two different keys") {
		t.Errorf("two different main keys under one name: %v", err)
	}
}

var fleetSealHeaderForTest = tr31.Header{Version: 'D', KeyUsage: "K0", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'N'}

// TestFleetSealer: a secret sealed on one node opens on another that holds
// the same profile main key (never under the region main key, which each
// node has its own of); the associated data binds it; a rotation that
// re-wraps the key block and retires the old version leaves it readable.
func TestFleetSealer(t *testing.T) {
	t.Parallel()
	a, b, _, _ := joinedPair(t)
	sa, sb := a.FleetSealer("default"), b.FleetSealer("default")
	secret, aad := []byte("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"), []byte("principal\x00ops\x00PHIA1")
	blk, sealed, err := sa.SealBlock(secret, aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) || strings.Contains(blk, string(secret)) {
		t.Fatal("the secret is in the clear")
	}
	got, err := sb.UnsealBlock(blk, sealed, aad)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("node b: %q %v", got, err)
	}
	if _, err := sb.UnsealBlock(blk, sealed, []byte("another principal")); err == nil {
		t.Error("opened with other associated data")
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	if _, err := sb.UnsealBlock(blk, tampered, aad); err == nil {
		t.Error("opened a tampered secret")
	}
	// The region main key sealing is per node.
	rmk, err := sa.Seal(secret, aad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Unseal(rmk, aad); err == nil {
		t.Error("node b opened a secret sealed under node a's region main key")
	}
	// Rotation: re-wrap the block under the new version, retire the old one.
	if _, err := a.BeginRotation("default", nil); err != nil {
		t.Fatal(err)
	}
	p, err := a.Profile("default")
	if err != nil {
		t.Fatal(err)
	}
	h, dk, err := p.Unwrap(blk)
	if err != nil {
		t.Fatal(err)
	}
	nb, err := p.Wrap(h, dk)
	clear(dk)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.RetireOldVersions("default"); err != nil {
		t.Fatal(err)
	}
	if _, err := sa.UnsealBlock(blk, sealed, aad); err == nil {
		t.Error("the block under the retired version still opened")
	}
	if got, err := sa.UnsealBlock(nb, sealed, aad); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("after rotation: %q %v", got, err)
	}
}

// TestAdoptFleetVersion: after a rotation on node a, node b adopts the new
// version carried to it (only that key: another is refused), retires what
// node a retired, and opens node a's new blocks.
func TestAdoptFleetVersion(t *testing.T) {
	t.Parallel()
	a, b, _, _ := joinedPair(t)
	if _, err := b.AdoptFleetVersion("default", make([]byte, 32)); err == nil {
		t.Fatal("adopted a key while no node holds a newer version")
	}
	if _, err := a.BeginRotation("default", nil); err != nil {
		t.Fatal(err)
	}
	if err := a.RetireOldVersions("default"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AdoptFleetVersion("default", bytes.Repeat([]byte{7}, 32)); err == nil || !strings.Contains(err.Error(), "refused, nothing stored") {
		t.Fatalf("a key that is not node a's new version: %v", err)
	}
	key, err := a.ExportProfileKey("default")
	if err != nil {
		t.Fatal(err)
	}
	pb, err := b.AdoptFleetVersion("default", key)
	clear(key)
	if err != nil {
		t.Fatal(err)
	}
	pa, _ := a.Profile("default")
	if pb.Version() != 2 || pb.KCV() != pa.KCV() || pb.Rotating() {
		t.Errorf("node b: version %d KCV %s rotating %v; node a KCV %s", pb.Version(), pb.KCV(), pb.Rotating(), pa.KCV())
	}
	if err := b.CheckFleetProfile("default"); err != nil {
		t.Errorf("node b after adopting: %v", err)
	}
	vers, _ := b.ProfileVersions()
	if !slices.Equal(vers["default"], []int{2}) {
		t.Errorf("node b's stored versions %v", vers)
	}
	blk, err := pa.Wrap(fleetSealHeaderForTest, make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := pb.Unwrap(blk); err != nil {
		t.Errorf("node b cannot open node a's version 2 block: %v", err)
	}
	key, _ = a.ExportProfileKey("default")
	if _, err := b.AdoptFleetVersion("default", key); err == nil {
		t.Error("adopted the same version twice")
	}
	clear(key)
}
