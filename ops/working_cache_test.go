package ops

import (
	"fmt"
	"strconv"
	"testing"

	"payhsm/hsm/secret"
	"payhsm/keystore"
)

// cachedKey is a working key as open makes it (one reference, the
// caller's), with material for the last Release to zero.
func cachedKey(id string) *WorkingKey {
	m := []byte{1, 2, 3, 4}
	w := &WorkingKey{Record: &keystore.Key{ID: id}, Material: m, secret: secret.NewKey(m)}
	w.refs.Store(1)
	return w
}

// TestKeyCacheFront checks the front table against the map behind it: two
// identifiers sharing a front slot are both found, and every drop (of one
// key, of the aliases, of everything) leaves neither table answering for a
// dropped key, whose last Release then zeroes it.
func TestKeyCacheFront(t *testing.T) {
	// Two alias identifiers and a key identifier in one front slot.
	bySlot := map[uint64][]string{}
	var same []string
	for i := 0; same == nil; i++ {
		id := "alias/k" + strconv.Itoa(i)
		s := frontHash(id) >> frontShift(DefaultWorkingKeys)
		bySlot[s] = append(bySlot[s], id)
		if len(bySlot[s]) == 2 {
			same = append(bySlot[s], "arn:key/"+strconv.Itoa(i))
		}
	}
	for _, tc := range []struct {
		name string
		drop func(c *keyCache)
		gone []bool // which of the three identifiers the drop removes
	}{
		{"dropKey", func(c *keyCache) { c.dropKey("id1") }, []bool{false, true, false}},
		{"dropAliases", func(c *keyCache) { c.dropAliases() }, []bool{true, true, false}},
		{"dropAll", func(c *keyCache) { c.dropAll() }, []bool{true, true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c keyCache
			ids := []string{same[0], same[1], same[2]}
			// The key identifier takes a slot of its own unless it collides too.
			ws := []*WorkingKey{cachedKey("id0"), cachedKey("id1"), cachedKey("id2")}
			for i, id := range ids {
				_, gen := c.get(id)
				c.put(id, ws[i], gen)
				ws[i].Release() // the opener's reference: the cache's remains
			}
			if e := c.front.Load().slot(ids[0]).Load(); e == nil || e.ident != ids[1] {
				t.Fatalf("front slot holds %v, want the last put, %s", e, ids[1])
			}
			// Each key is in use across the drop (an operation in flight
			// holds a reference), so a stale entry would still acquire.
			for i, id := range ids {
				w, _ := c.get(id)
				if w != ws[i] {
					t.Fatalf("get(%s) = %v, want %v", id, w, ws[i])
				}
			}
			tc.drop(&c)
			for i, id := range ids {
				w, _ := c.get(id)
				if tc.gone[i] {
					if w != nil {
						t.Errorf("get(%s) after %s = %v", id, tc.name, w)
						w.Release()
					}
					if ws[i].Material[0] == 0 {
						t.Errorf("%s was zeroed while in use", id)
					}
					ws[i].Release() // the in-flight operation ends
					if ws[i].Material[0] != 0 {
						t.Errorf("%s was not zeroed", id)
					}
					continue
				}
				ws[i].Release()
				if w != ws[i] {
					t.Errorf("get(%s) after %s = %v, want %v", id, tc.name, w, ws[i])
				}
				w.Release()
			}
		})
	}
}

// TestFrontSlotSpread: identifiers that differ only in their last digits,
// the worst case for a hash of the last bytes, spread over the front table
// about as random ones would (256 random identifiers fill about 226 of the
// 1024 slots).
func TestFrontSlotSpread(t *testing.T) {
	for _, prefix := range []string{"arn:aws:payment-cryptography:us-east-1:111122223333:key/abcdefgh1234", "alias/pek-"} {
		slots := map[uint64]bool{}
		for i := range 256 {
			slots[frontHash(prefix+fmt.Sprintf("%04d", i))>>frontShift(0)] = true
		}
		if len(slots) < 200 {
			t.Errorf("%s…: 256 identifiers in %d slots", prefix, len(slots))
		}
	}
}

// TestFrontTableSize: the front table has at least twice as many slots as
// the cache holds keys, a power of two, and no fewer than 1,024.
func TestFrontTableSize(t *testing.T) {
	for _, tc := range []struct{ capacity, slots int }{
		{0, 1024}, {100, 1024}, {512, 1024}, {513, 2048}, {DefaultWorkingKeys, 1 << 17}, {1_258_291, 1 << 22}, {1 << 20, 1 << 21},
	} {
		if got := len(newFrontTable(tc.capacity).slots); got != tc.slots {
			t.Errorf("front table for %d keys: %d slots, want %d", tc.capacity, got, tc.slots)
		}
	}
	var c keyCache
	c.capacity = 5000
	w := cachedKey("id0")
	_, gen := c.get("k")
	c.put("k", w, gen)
	w.Release()
	if got := len(c.frontSlots()); got != 1<<14 {
		t.Fatalf("a cache of 5,000 keys made a front table of %d slots, want %d", got, 1<<14)
	}
}
