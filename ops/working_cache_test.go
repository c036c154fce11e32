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

// TestFrontTableSize: the front table starts at 1,024 slots, doubles
// while the cache holds more keys than half its slots, up to the power of
// two at or above twice the capacity, and after every growth each cached
// key is found through it or, when another took its slot, the map.
func TestFrontTableSize(t *testing.T) {
	for _, tc := range []struct{ capacity, slots int }{
		{0, 1024}, {100, 1024}, {512, 1024}, {513, 2048}, {DefaultWorkingKeys, 1 << 17}, {1_234_187, 1 << 22}, {1 << 20, 1 << 21},
	} {
		if got := 1 << (64 - frontShift(tc.capacity)); got != tc.slots {
			t.Errorf("front table for %d keys: %d slots, want %d", tc.capacity, got, tc.slots)
		}
	}
	var c keyCache
	c.capacity = 5000
	want := map[int]int{1: 1024, 512: 1024, 513: 2048, 1025: 4096, 2049: 8192, 4097: 16384, 5000: 16384}
	for i := range c.capacity + 100 { // the last 100 evict: the table stays
		id := "arn:aws:payment-cryptography:us-east-1:111122223333:key/" + fmt.Sprintf("%016d", i)
		w := cachedKey(id)
		_, gen := c.get(id)
		c.put(id, w, gen)
		w.Release()
		if n, ok := want[i+1]; ok && len(c.frontSlots()) != n {
			t.Fatalf("%d keys cached: %d front slots, want %d", i+1, len(c.frontSlots()), n)
		}
	}
	if got := len(c.frontSlots()); got != 16384 {
		t.Fatalf("after evictions: %d front slots, want 16384", got)
	}
	inFront := 0
	for _, s := range c.ring {
		e := c.front.Load().slot(s.ident).Load()
		if e != nil && e.ident == s.ident && e.w == s.w {
			inFront++
		}
		if w, _ := c.get(s.ident); w != s.w {
			t.Fatalf("%s not found after the table grew", s.ident)
		} else {
			w.Release()
		}
	}
	if inFront < c.capacity*3/4 {
		t.Fatalf("%d of %d cached keys in the front table, want most", inFront, c.capacity)
	}
}
