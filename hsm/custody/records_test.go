package custody_test

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"testing"

	"payhsm/hsm/custody"
)

// TestRecordKeys: a profile main key version's record-authentication key is
// HKDF-SHA256 of it with the profile's info string; it is the same for every
// appliance holding the same main key (a fleet), differs between profiles and
// versions, and is gone once its version is retired.
func TestRecordKeys(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		pmk := bytes.Repeat([]byte{0x42}, 32)
		want, err := hkdf.Key(sha256.New, pmk, nil, "payhsm/keystore/record-authentication/v2/default", 32)
		if err != nil {
			t.Fatal(err)
		}
		var keys [2][]byte
		for i := range keys { // two appliances, two tokens, one profile main key
			c := open(t, initialized(e.cfg(i)), newMeta())
			if _, err := c.InstallProfile("default", pmk); err != nil {
				t.Fatal(err)
			}
			v, k, err := c.ActiveRecordKey("default")
			if err != nil || v != 1 || !bytes.Equal(k, want) {
				t.Fatalf("appliance %d: ActiveRecordKey %d %x %v, want 1 %x", i, v, k, err, want)
			}
			keys[i] = k
		}
		c := open(t, initialized(e.cfg(0)), newMeta())
		if _, err := c.InstallProfile("default", pmk); err != nil {
			t.Fatal(err)
		}
		if _, err := c.InstallProfile("other", pmk); err != nil {
			t.Fatal(err)
		}
		_, other, err := c.ActiveRecordKey("other")
		if err != nil || bytes.Equal(other, want) {
			t.Fatalf("the same main key gives two profiles one record key: %v", err)
		}
		for _, tc := range []struct {
			profile string
			version int
		}{{"nope", 1}, {"default", 2}, {"default", 0}, {"Bad Name", 1}} {
			if k, err := c.RecordKey(tc.profile, tc.version); k != nil || err != nil {
				t.Errorf("RecordKey(%q, %d) = %x, %v; want none", tc.profile, tc.version, k, err)
			}
		}
		if v, k, err := c.ActiveRecordKey("nope"); v != 0 || k != nil || err != nil {
			t.Errorf("ActiveRecordKey of an unknown profile: %d %x %v", v, k, err)
		}
		if _, err := c.BeginRotation("default", nil); err != nil {
			t.Fatal(err)
		}
		v2, k2, err := c.ActiveRecordKey("default")
		if err != nil || v2 != 2 || bytes.Equal(k2, want) {
			t.Fatalf("after BeginRotation: %d %v", v2, err)
		}
		if k1, err := c.RecordKey("default", 1); err != nil || !bytes.Equal(k1, want) {
			t.Fatalf("version 1 mid-rotation: %x %v", k1, err)
		}
		k1 := keys[0]
		k1[0] ^= 1 // a caller's copy: changing it changes nothing inside
		if got, _ := c.RecordKey("default", 1); !bytes.Equal(got, want) {
			t.Fatal("RecordKey hands out custody's own slice")
		}
		if err := c.RetireOldVersions("default"); err != nil {
			t.Fatal(err)
		}
		if k, err := c.RecordKey("default", 1); k != nil || err != nil {
			t.Fatalf("a retired version's record key: %x %v", k, err)
		}
	})
}

// TestStoreFormatMarker: the marker is made once and found by every later
// start on the same token, and not on another token.
func TestStoreFormatMarker(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		meta := newMeta()
		c := open(t, initialized(e.cfg(0)), meta)
		if m, err := c.StoreFormatMarked(); m || err != nil {
			t.Fatalf("fresh token marked: %v %v", m, err)
		}
		for range 2 {
			if err := c.MarkStoreFormat(); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		c = open(t, e.cfg(0), meta)
		if m, err := c.StoreFormatMarked(); !m || err != nil {
			t.Fatalf("marker not found after reopening: %v %v", m, err)
		}
		other := open(t, initialized(e.cfg(1)), newMeta())
		if m, err := other.StoreFormatMarked(); m || err != nil {
			t.Fatalf("another token marked: %v %v", m, err)
		}
	})
}

// TestAuditKey: the audit trail key is derived in the token from the region
// main key: the same on every start, another for another region main key,
// and not derivable from a dead token.
func TestAuditKey(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		meta := newMeta()
		c := open(t, initialized(e.cfg(0)), meta)
		k1, err := c.AuditKey()
		if err != nil {
			t.Fatal(err)
		}
		again := open(t, e.cfg(0), meta)
		k2, err := again.AuditKey()
		if err != nil {
			t.Fatal(err)
		}
		other := open(t, initialized(e.cfg(1)), newMeta())
		k3, err := other.AuditKey()
		if err != nil {
			t.Fatal(err)
		}
		if len(k1) != 32 || !bytes.Equal(k1, k2) || bytes.Equal(k1, k3) || bytes.Equal(k1, make([]byte, 32)) {
			t.Fatalf("audit keys %x %x %x", k1, k2, k3)
		}
		if e.setDead != nil {
			e.setDead(true)
			if k, err := c.AuditKey(); err == nil {
				t.Errorf("audit key %x from a dead token", k)
			}
			e.setDead(false)
		}
		if err := again.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := again.AuditKey(); err == nil {
			t.Error("audit key after Close")
		}
	})
}

// TestStoreAnchor: the anchor is absent on a new token, moves forward only,
// keeps one writer id, survives reopening, is not on another token, and a
// crash between creating the new object and deleting the old one (two
// objects) reads as the higher sequence number.
func TestStoreAnchor(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		meta := newMeta()
		c := open(t, initialized(e.cfg(0)), meta)
		if a, found, err := c.StoreAnchor(); found || err != nil {
			t.Fatalf("fresh token anchored: %+v %v", a, err)
		}
		steps := []struct {
			set     custody.StoreAnchor
			wantErr bool
			want    uint64
		}{
			{custody.StoreAnchor{Writer: "w1", Seq: 0}, false, 0},
			{custody.StoreAnchor{Writer: "w1", Seq: 7}, false, 7},
			{custody.StoreAnchor{Writer: "w1", Seq: 7}, false, 7}, // unchanged: nothing to do
			{custody.StoreAnchor{Writer: "w1", Seq: 3}, true, 7},  // backwards
			{custody.StoreAnchor{Writer: "w2", Seq: 9}, true, 7},  // another journal
			{custody.StoreAnchor{Writer: "", Seq: 9}, true, 7},
			{custody.StoreAnchor{Writer: "w1", Seq: 1 << 40}, false, 1 << 40},
		}
		for i, st := range steps {
			err := c.SetStoreAnchor(st.set)
			if (err != nil) != st.wantErr {
				t.Fatalf("step %d: SetStoreAnchor(%+v): %v", i, st.set, err)
			}
			a, found, err := c.StoreAnchor()
			if !found || err != nil || a.Writer != "w1" || a.Seq != st.want {
				t.Fatalf("step %d: anchor %+v %v %v, want seq %d", i, a, found, err, st.want)
			}
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		c = open(t, e.cfg(0), meta)
		if a, found, err := c.StoreAnchor(); !found || err != nil || a.Seq != 1<<40 {
			t.Fatalf("after reopening: %+v %v %v", a, found, err)
		}
		other := open(t, initialized(e.cfg(1)), newMeta())
		if _, found, err := other.StoreAnchor(); found || err != nil {
			t.Fatalf("another token anchored: %v %v", found, err)
		}
		if err := c.DeleteStoreAnchor(); err != nil {
			t.Fatal(err)
		}
		if _, found, err := c.StoreAnchor(); found || err != nil {
			t.Fatalf("after DeleteStoreAnchor: %v %v", found, err)
		}
	})
}
