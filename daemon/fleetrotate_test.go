package daemon

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/zap"

	"payhsm/appliance"
	"payhsm/hsm/custody"
	"payhsm/hsm/custody/memtoken"
	"payhsm/keystore"
)

// rotationNodes opens nodes a, b and c of one fleet over one Pebble store,
// each with its own in-memory token (region main key), all holding the
// same profile main key; it returns their fleet parts (no etcd: the
// messages are handed over directly).
func rotationNodes(t *testing.T) (a, b, c *fleetNode) {
	t.Helper()
	store, err := keystore.Open(t.TempDir(), keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	mem := memtoken.New()
	var nodes []*fleetNode
	var key []byte
	for _, name := range []string{"a", "b", "c"} {
		if err := mem.InitToken("tok-"+name, "1234"); err != nil {
			t.Fatal(err)
		}
		cust, err := custody.Open(custody.Config{Module: mem, TokenLabel: "tok-" + name, PIN: "1234", Initialize: true, Node: name,
			NotFound: keystore.ErrNotFound}, store, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cust.Close() })
		if key == nil {
			if _, err := cust.CreateProfile("default"); err != nil {
				t.Fatal(err)
			}
			if err := store.SetAuthenticator(cust, "default"); err != nil {
				t.Fatal(err)
			}
			if key, err = cust.ExportProfileKey("default"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { clear(key) })
		} else if _, err := cust.InstallProfile("default", key); err != nil {
			t.Fatal(err)
		}
		cfg := &appliance.Config{Profile: "default"}
		cfg.Fleet.Node = name
		nodes = append(nodes, &fleetNode{cfg: cfg, cust: cust, store: store, log: zap.NewNop()})
	}
	return nodes[0], nodes[1], nodes[2]
}

// TestFleetRotationOffer checks the two passes of a fleet rotation's
// transport between real custodians: node a offers its staged version to
// node b's inbox and node b stages it; and every offer that must not be
// taken is refused with nothing staged: a forged inbox, an offer for
// another node, one built for another node's nonce and certificate, a
// replayed one, a changed one, one whose check value is not the key's.
func TestFleetRotationOffer(t *testing.T) {
	a, b, c := rotationNodes(t)
	v, kcv, err := a.cust.StageRotation("default", nil)
	if err != nil || v != 2 {
		t.Fatalf("StageRotation: %d %v", v, err)
	}
	inB, err := b.buildInbox(nil)
	if err != nil {
		t.Fatal(err)
	}
	inC, err := c.buildInbox(nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(inB.Nonce, inC.Nonce) || bytes.Equal(inB.Cert, inC.Cert) {
		t.Fatal("two nodes publish the same nonce or certificate")
	}

	// A forged inbox (node c's certificate under node b's name, or a
	// changed nonce) gets no offer.
	forged := *inB
	forged.Cert = inC.Cert
	if _, err := a.makeOffer("default", v, kcv, "b", &forged); err == nil || !strings.Contains(err.Error(), "not authenticated") {
		t.Errorf("offer to a forged inbox: %v", err)
	}
	forged = *inB
	forged.Nonce = bytes.Repeat([]byte{1}, 16)
	if _, err := a.makeOffer("default", v, kcv, "b", &forged); err == nil {
		t.Error("offer to an inbox with a changed nonce")
	}

	offerB, err := a.makeOffer("default", v, kcv, "b", inB)
	if err != nil {
		t.Fatal(err)
	}
	offerC, err := a.makeOffer("default", v, kcv, "c", inC)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		offer func() *Offer
		want  string
	}{
		{"addressed to another node", func() *Offer { return offerC }, "addressed to node"},
		{"for another node's nonce and certificate, readdressed", func() *Offer {
			o := *offerC
			o.To = "b"
			return &o
		}, "not authenticated"},
		{"version changed", func() *Offer {
			o := *offerB
			o.Version = 5
			return &o
		}, "not authenticated"},
		{"token changed", func() *Offer {
			o := *offerB
			o.Token = append(bytes.Clone(o.Token[:len(o.Token)-1]), o.Token[len(o.Token)-1]^1)
			return &o
		}, "not authenticated"},
		{"check value not the key's, re-authenticated", func() *Offer {
			o := *offerB
			o.KCV = "000000"
			o.MAC, _ = a.cust.FleetMAC("default", o.MACVersion, offerMessage(&o))
			return &o
		}, "KCV"},
		{"authenticated under a version not published", func() *Offer {
			o := *offerB
			o.MACVersion = 2
			return &o
		}, "not the one this node published"},
	} {
		if err := b.acceptOffer(tc.offer(), inB); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	if copies, _ := b.cust.FleetProfile("default"); len(copies) != 3 || len(copies[1].Versions) != 1 {
		t.Fatalf("something was staged on node b by a refused offer: %+v", copies)
	}

	// The real offer is taken; the same one again, with node b's next
	// nonce, is a replay.
	if err := b.acceptOffer(offerB, inB); err != nil {
		t.Fatalf("node b refuses node a's offer: %v", err)
	}
	copies, err := b.cust.FleetProfile("default")
	if err != nil || copies[1].Node != "b" || copies[1].KCVs[2] != kcv || copies[1].Active != 1 {
		t.Fatalf("node b's copy after the offer: %+v %v", copies, err)
	}
	next, err := b.buildInbox(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.acceptOffer(offerB, next); err == nil || !strings.Contains(err.Error(), "nonce") {
		t.Errorf("a replayed offer: %v", err)
	}
}
