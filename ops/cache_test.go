package ops

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"payhsm/keystore"
)

// cacheAccess is Working's use of the cache: a hit gives the caller's
// reference back at once; a miss makes a working key (no material), caches
// it and gives the caller's back. It returns the key and whether it hit.
func cacheAccess(c *keyCache, ident string) (*WorkingKey, bool) {
	w, gen := c.get(ident)
	if w != nil {
		w.Release()
		return w, true
	}
	w = &WorkingKey{Record: &keystore.Key{ID: ident}}
	w.refs.Store(1)
	c.put(ident, w, gen)
	w.Release()
	return w, false
}

// checkCache checks the cache's invariants: entries counts the map, no more
// than capacity; every cached key holds the cache's one reference and its
// own ring slot; the front table answers only for cached keys; a key not
// cached holds no reference.
func checkCache(t *testing.T, c *keyCache, seen []*WorkingKey) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	c.m.Range(func(k, v any) bool {
		w := v.(*WorkingKey)
		n++
		if !w.cached || w.slot >= len(c.ring) || c.ring[w.slot].w != w || c.ring[w.slot].ident != k.(string) {
			t.Fatalf("%s: cached %v, slot %d of %d, not its own", k, w.cached, w.slot, len(c.ring))
		}
		if r := w.refs.Load(); r != 1 {
			t.Fatalf("%s: %d references while cached and unused, want 1", k, r)
		}
		return true
	})
	slots := c.frontSlots()
	for i := range slots {
		if e := slots[i].Load(); e != nil {
			if v, ok := c.m.Load(e.ident); !ok || v != e.w || !e.w.cached {
				t.Fatalf("front slot %d answers for %s, which the cache does not hold", i, e.ident)
			}
		}
	}
	if int64(n) != c.entries.Load() || n > c.max() {
		t.Fatalf("%d keys in the map, entries %d, capacity %d", n, c.entries.Load(), c.max())
	}
	for _, w := range seen {
		if !w.cached && w.refs.Load() != 0 {
			t.Fatalf("%s: not cached but %d references (its material would not be zeroed)", w.Record.ID, w.refs.Load())
		}
	}
}

// TestKeyCacheClock: when full, the cache evicts one key, the first the
// CLOCK hand finds unused since it last passed, and gives back its
// reference (zeroing its material); a key used between insertions is never
// evicted, however many keys pass through (the cache used to be emptied
// whenever it filled, and that key with it).
func TestKeyCacheClock(t *testing.T) {
	const capacity = 8
	c := &keyCache{capacity: capacity}
	id := func(i int) string { return fmt.Sprintf("key-%d", i) }
	var all []*WorkingKey
	for i := range capacity {
		w, _ := cacheAccess(c, id(i))
		all = append(all, w)
	}
	if _, hit := cacheAccess(c, id(0)); !hit {
		t.Fatal("key 0 missed in a cache that is not full yet")
	}
	w, hit := cacheAccess(c, id(100))
	all = append(all, w)
	checkCache(t, c, all)
	if hit || c.entries.Load() != capacity || c.evictions.Load() != 1 {
		t.Fatalf("a put into a full cache: hit %v, entries %d, evictions %d; want a miss, %d, 1", hit, c.entries.Load(), c.evictions.Load(), capacity)
	}
	// The hand started at key 0, used: it got a second chance; key 1 went.
	if all[1].cached || all[1].refs.Load() != 0 || !all[0].cached {
		t.Fatalf("evicted: key 1 cached %v refs %d, key 0 cached %v; want key 1 gone and zeroed, key 0 kept",
			all[1].cached, all[1].refs.Load(), all[0].cached)
	}
	hot := id(0)
	for i := range 50 * capacity {
		w, _ := cacheAccess(c, id(1000+i))
		all = append(all, w)
		if _, hit := cacheAccess(c, hot); !hit {
			t.Fatalf("the hot key missed after %d cold keys", i+1)
		}
	}
	checkCache(t, c, all)
	if got, want := c.evictions.Load(), uint64(1+50*capacity); got != want {
		t.Errorf("evictions %d, want %d (one per key put into the full cache)", got, want)
	}
}

// TestKeyCacheRandom: any sequence of lookups, drops of one key, of the
// alias entries and of everything keeps the invariants (checkCache), and a
// key that was dropped is a miss.
func TestKeyCacheRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	c := &keyCache{capacity: 16}
	var all []*WorkingKey
	for i := range 20000 {
		ident := fmt.Sprintf("key-%d", r.IntN(40))
		if r.IntN(4) == 0 {
			ident = "alias/" + ident
		}
		switch op := r.IntN(100); {
		case op < 90:
			w, _ := cacheAccess(c, ident)
			all = append(all, w)
		case op < 97:
			c.dropKey(ident)
			if w, _ := c.get(ident); w != nil {
				t.Fatalf("step %d: %s found after its drop", i, ident)
			}
		case op < 99:
			c.dropAliases()
		default:
			c.dropAll()
		}
		if i%97 == 0 {
			checkCache(t, c, all)
		}
	}
	checkCache(t, c, all)
}

// TestKeyCachePoliciesBounded: the policies of keys authorization could
// not cache (names come from requests) are forgotten when they reach
// memoKeys, and a drop of everything forgets them all.
func TestKeyCachePoliciesBounded(t *testing.T) {
	t.Parallel()
	var c keyCache
	count := func() int {
		n := 0
		c.policies.Range(func(any, any) bool { n++; return true })
		return n
	}
	for i := range memoKeys + 10 {
		c.putPolicy(fmt.Sprintf("key-%d", i), &policyEntry{}, c.gen.Load())
		if i == memoKeys-1 && count() != memoKeys {
			t.Fatalf("%d policies kept of %d put", count(), memoKeys)
		}
	}
	if n := count(); n != 10 {
		t.Fatalf("%d policies kept after %d puts, want the 10 since it filled", n, memoKeys+10)
	}
	c.dropAll()
	if n := count(); n != 0 {
		t.Fatalf("%d policies kept after dropAll", n)
	}
}

// TestKeyCacheKeepsNoRequestMemory: the identifiers and ids the cache keeps
// are its own copies, not substrings of the request they came from (which
// they would keep alive as long as the key stays cached).
func TestKeyCacheKeepsNoRequestMemory(t *testing.T) {
	t.Parallel()
	body := []byte(`{"KeyIdentifier":"arn:aws:payment-cryptography:us-east-1:111122223333:key/abcdefghijklmnop","x":"alias/name"}`)
	req := string(body)
	within := func(s string) bool {
		p, b := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(req))) //nolint:gosec // G103: comparing addresses only, nothing is read through them
		return p >= b && p < b+uintptr(len(req))
	}
	at := func(sub string) string { i := strings.Index(req, sub); return req[i : i+len(sub)] }
	ident := at("arn:aws:payment-cryptography:us-east-1:111122223333:key/abcdefghijklmnop")
	var c keyCache
	cacheAccess(&c, ident)
	c.putPolicy(ident[len(ident)-16:], &policyEntry{}, c.gen.Load())
	name := at("alias/name")
	if got := c.aliasARN("arn:aws:payment-cryptography:us-east-1:111122223333:", name); got == "" {
		t.Fatal("no alias ARN")
	}
	c.m.Range(func(k, _ any) bool {
		if within(k.(string)) {
			t.Errorf("cache key %q points into the request", k)
		}
		return true
	})
	for _, sl := range c.ring {
		if sl.w != nil && within(sl.ident) {
			t.Errorf("ring identifier %q points into the request", sl.ident)
		}
	}
	for _, m := range []*sync.Map{&c.policies.Map, &c.aliasARNs.Map} {
		m.Range(func(k, _ any) bool {
			if within(k.(string)) {
				t.Errorf("key %q points into the request", k)
			}
			return true
		})
	}
	n := 0
	c.policies.Range(func(any, any) bool { n++; return true })
	c.aliasARNs.Range(func(any, any) bool { n++; return true })
	if n != 2 || c.entries.Load() != 1 {
		t.Fatalf("cached %d entries, %d policies and aliases; want 1 and 2", c.entries.Load(), n)
	}
}

// frontSlots is c's front table's slots (none before the first put).
func (c *keyCache) frontSlots() []atomic.Pointer[frontEntry] {
	if t := c.front.Load(); t != nil {
		return t.slots
	}
	return nil
}
