package ops

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des" //nolint:gosec // G502: single-DES halves of TDES keys, see schedule
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"payhsm/fault"
	"payhsm/hsm/cmac"
	"payhsm/hsm/mac"
	"payhsm/hsm/secret"
	"payhsm/hsm/symmetric"
	"payhsm/hsm/tdes"
	"payhsm/hsm/tr31"
	"payhsm/keyspec"
	"payhsm/keystore"
)

// WorkingKey is a usable key's record and clear material, cached in process
// memory so that the hot path (PIN, MAC, CVV, ARQC) touches neither Pebble nor
// the PKCS#11 module: one key-block unwrap under the profile main key when a
// key is first used, then memory only. Entries are dropped whenever the key or
// any alias changes. Record and Material are shared and read-only: callers
// never modify Record (its key-use set, uses, is computed from it once) nor
// modify or zero Material.
//
// A working key is reference-counted: the cache holds one reference while the
// key is cached and Working hands its caller another, which the caller gives
// back with Release when its operation is done. The last Release — after an
// eviction, a drop or a cache clear, once no operation still uses the key —
// zeroes Material (a secret.Key), so a key the cache no longer holds does not
// linger in memory. Go's AES/DES key schedules (Block, Left) cannot be wiped;
// the daemon keeps core dumps off and the profile main keys mlocked. A
// WorkingKey prints without its material (String, GoString, Format).
type WorkingKey struct {
	Record   *keystore.Key
	ARN      string
	Header   tr31.Header
	Material []byte       // symmetric key bytes, or PKCS#8 DER for key pairs; nil for public keys; aliases secret's bytes
	Block    cipher.Block // TDES or AES block cipher over Material; nil otherwise
	Left     cipher.Block // TDES keys: single DES under Material[:8] (CVV, ISO 9797-1 algorithm 3); nil otherwise

	secret  secret.Key  // owns Material; destroyed by the last Release
	release func()      // Release as a func value, made once (a method value per call would allocate)
	refs    refWord     // references: the cache's while cached, and each Working caller's until Release; and cache hits
	started atomic.Bool // usable without a clock read: its usage period was seen to have begun, and it never ends (see usableWorking)
	used    atomic.Bool // CLOCK's reference bit: a lookup found the key since the hand last passed it

	// Under keyCache.mu: whether the cache holds this key, and its slot in
	// the cache's CLOCK ring.
	cached bool
	slot   int

	// The cache hits counted in refs that keyCache.hits already has, and
	// that counter, set by the put that caches the key (see foldHits).
	hitsSeen atomic.Uint64
	hitsTo   *atomic.Uint64

	// uses are the key-use rules Record's attributes pass, computed when a
	// stored key is opened (Record is read-only): RequireUse's allow
	// decision without the rules' string compares. Empty for transient keys
	// (dynamic, agreed), which Check alone decides; a refusal always comes
	// from Check.
	uses keyspec.UseSet

	// block16 is Block as a 16-byte block cipher (AES keys), and fastData
	// says which of EncryptData and DecryptData may use it directly
	// (fastEncrypt, fastDecrypt: their key-use rules are in uses), both set
	// when a stored key is opened: the data plane's CBC path (fastCBC)
	// decides with one load and one test.
	block16  symmetric.Block16
	fastData uint8

	// policy is the key's compiled resource-based policy, set by its
	// first authorization (resourcePolicy): Record is the key's as long as
	// it is cached (any change drops it), and Release never clears it, so
	// it is read without a reference.
	policy atomic.Pointer[policyEntry]

	cmac atomic.Pointer[cmac.Key]    // CMAC subkeys, derived at the first CMAC (see CMAC)
	hmac atomic.Pointer[mac.HMACKey] // keyed HMAC states, made at the first HMAC (see HMAC)
}

// refWord is a working key's reference count and the cache hits that
// found it, in one word: the count in the low refBits bits, the hits
// (modulo 2^hitBits) above. A lookup takes its reference and counts its
// hit in one atomic compare-and-swap, so a hit costs no atomic
// read-modify-write of a counter of its own (one shared by every key and
// every core, as keyCache.hits was). A count of refHalf or more is a
// count gone below zero (a Release too many), never a live key.
type refWord struct{ v atomic.Uint64 }

const (
	refBits = 24
	hitBits = 64 - refBits
	refMask = 1<<refBits - 1
	refHalf = 1 << (refBits - 1)
	hitUnit = 1 << refBits
	hitMask = 1<<hitBits - 1
)

// Load is the reference count.
func (r *refWord) Load() int32 { return int32(r.v.Load() & refMask) }

// Store sets the reference count to n and the hits to zero (a key being
// made, before anything else can see it).
func (r *refWord) Store(n int32) { r.v.Store(uint64(n) & refMask) } //nolint:gosec // G115: masked

// hits is the hit count (modulo 2^hitBits).
func (r *refWord) hits() uint64 { return r.v.Load() >> refBits }

// acquire takes a reference and counts a cache hit, unless the last
// reference is already gone (the key is being, or has been, zeroed).
func (w *WorkingKey) acquire() bool {
	for {
		n := w.refs.v.Load()
		if c := n & refMask; c == 0 || c >= refHalf {
			return false
		}
		if w.refs.v.CompareAndSwap(n, n+1+hitUnit) {
			return true
		}
	}
}

// Release gives back the reference Working handed out; the last reference
// zeroes the clear material. Every Working caller calls it exactly once,
// after its last use of the key.
func (w *WorkingKey) Release() {
	if n := w.refs.v.Add(^uint64(0)); n&refMask == 0 {
		_ = w.secret.Destroy() // not mlocked, so nothing to unlock and no error
		if k := w.cmac.Load(); k != nil {
			k.Clear()
		}
		if k := w.hmac.Load(); k != nil {
			k.Clear()
		}
		if w.hitsTo != nil {
			// No longer cached: nothing else folds its hits. Those in n,
			// not a fresh load: a hit counted after n found the key dead
			// (hit), and its caller looked again.
			w.foldHits(n >> refBits)
		}
	}
}

// foldHits adds h, the hits counted in w, less those already folded, to
// w.hitsTo (keyCache.hits). CacheStats folds every cached key under the
// cache's lock, and a key's last Release, after it left the cache, folds
// the rest: each hit is added once. Hits are lost only if a key is found
// 2^hitBits (10^12) times between two folds.
func (w *WorkingKey) foldHits(h uint64) {
	if d := (h - w.hitsSeen.Load()) & hitMask; d != 0 {
		w.hitsSeen.Store(h)
		w.hitsTo.Add(d)
	}
}

// HMAC returns the key's HMAC key with hash h (the hash of the key's own
// algorithm: one per working key): its keyed states are made at the first
// HMAC and reused, so each later HMAC costs only its message's blocks.
func (w *WorkingKey) HMAC(h mac.Hash) (*mac.HMACKey, error) {
	if k := w.hmac.Load(); k != nil {
		return k, nil
	}
	k, err := mac.NewHMACKey(h, w.Material)
	if err != nil {
		return nil, err
	}
	if !w.hmac.CompareAndSwap(nil, k) {
		return w.hmac.Load(), nil // another caller's is kept
	}
	return k, nil
}

// CMAC returns the key's CMAC key: its subkeys (SP 800-38B 6.1) depend on
// the key alone, so they are derived at the first CMAC and kept with the
// working key, and each later CMAC costs only its message's blocks.
func (w *WorkingKey) CMAC() (*cmac.Key, error) {
	if k := w.cmac.Load(); k != nil {
		return k, nil
	}
	k, err := cmac.NewKey(w.Block)
	if err != nil {
		return nil, err
	}
	if !w.cmac.CompareAndSwap(nil, k) {
		k.Clear() // another caller's is kept
		return w.cmac.Load(), nil
	}
	return k, nil
}

// releaseOnError releases w when *err is set: for functions that hand a
// working key on to their caller only when they succeed.
func releaseOnError(w *WorkingKey, err *error) {
	if *err != nil {
		w.Release()
	}
}

// String names the key without its material.
func (w *WorkingKey) String() string { return "WorkingKey(" + w.ARN + ")" }

// GoString is String.
func (w *WorkingKey) GoString() string { return w.String() }

// Format prints String for every verb.
func (w *WorkingKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, w.String()) } // a Formatter cannot report a write error

// Attributes is the key's attributes.
func (w *WorkingKey) Attributes() keyspec.Attributes { return w.Record.Attributes }

// KCV is the key's check value.
func (w *WorkingKey) KCV() string { return w.Record.KCV }

// keyCache maps identifiers to working keys. Lookups, the hot path of every
// data operation, take no lock: they try front, a direct-mapped table of the
// last identifier put in each slot (a typed string hash, one atomic load and
// a compare), then m, whose sync.Map serves loads of existing entries without
// one. Writers (put and the drops) serialise on mu, so that a put cannot
// interleave with a drop: gen, bumped by every drop, tells a load that raced
// a write not to cache its result. front holds only what m holds: put
// fills a slot and every drop empties the slots of what it drops, both under
// mu, before the cache's reference is given back; front takes no reference
// of its own.
//
// It holds at most capacity keys (Config.WorkingKeys) and, when full, evicts by CLOCK
// (second chance): a lookup that finds a key sets its reference bit (one
// atomic store, and only when the bit is clear, so a hot key's cache line
// is not written on every hit); put, needing room, moves a hand around the
// ring of cached keys, clearing set bits, and evicts the first key whose bit
// is clear (from m and front). A key used since the hand last passed it
// survives; one not used goes. (It was emptied whenever it filled: with keys
// drawn by a Zipf law from a million, CLOCK misses 16-31% less; see
// docs/performance.md.)
type keyCache struct {
	front atomic.Pointer[frontTable] // made by the first put, sized to the capacity
	m     sync.Map                   // string -> *WorkingKey
	// policies maps key id -> *policyEntry: the compiled resource-based
	// policies (resource_policy.go) of keys that authorization found not
	// cacheable (a cached key holds its own, WorkingKey.policy), dropped
	// with their key's entries.
	policies memo
	// aliasARNs maps alias name -> alias ARN (authz.go).
	aliasARNs memo
	mu        sync.Mutex
	gen       atomic.Uint64 // written under mu

	// The CLOCK ring, under mu: every cached key has one slot (its slot
	// field); a slot whose key is no longer cached is free.
	ring     []clockSlot
	hand     int
	capacity int // keys held at most; 0 means DefaultWorkingKeys

	// Counters for CacheStats: lookups that found a usable key or not,
	// entries dropped to make room, and entries dropped because their key
	// changed (or all of them, for a rotation or a lost token). A hit is
	// counted in its key's refs first and folded into hits later
	// (WorkingKey.foldHits).
	hits, misses, evictions, invalidations atomic.Uint64
	entries                                atomic.Int64 // written under mu, read without it
}

// CacheStats are the working-key cache's counters since start.
type CacheStats struct {
	Hits, Misses, Evictions, Invalidations uint64
	Entries                                int
}

// CachedKeys is how many keys the working-key cache holds (one atomic
// load; CacheStats walks the cache).
func (s *Service) CachedKeys() int { return int(s.cache.entries.Load()) }

// CacheStats reports the working-key cache's counters (for metrics).
func (s *Service) CacheStats() CacheStats {
	c := &s.cache
	c.mu.Lock()
	for _, sl := range c.ring {
		if sl.w != nil && sl.w.cached {
			sl.w.foldHits(sl.w.refs.hits())
		}
	}
	c.mu.Unlock()
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Evictions: c.evictions.Load(),
		Invalidations: c.invalidations.Load(), Entries: int(c.entries.Load())}
}

// DefaultWorkingKeys is how many keys the working-key cache holds at most
// unless Config.WorkingKeys says otherwise.
const DefaultWorkingKeys = 1 << 16

// WorkingKeyHeap is the Go heap, in bytes, that one cached working key may
// take (its record, key schedules, cache entries): 1.8 KB measured for a
// TDES or AES key, 2.5 KiB allowed (TestWorkingKeyHeap holds them to it).
// The daemon sets its garbage collector's memory limit from the keys
// cached times this (docs/performance.md, "Cold keys").
const WorkingKeyHeap = 2560

// memoKeys bounds the memos (memo): names that requests choose.
const memoKeys = 1 << 16

// clockSlot is one slot of the CLOCK ring.
type clockSlot struct {
	ident string
	w     *WorkingKey
}

// frontTable is keyCache.front: a direct-mapped table of cached keys, at
// least twice as many slots as the cache holds keys (a power of two, from
// 2^minFrontBits up to twice the capacity: putFront doubles it as the cache
// fills), so that most cached keys have a slot of their own even when the
// cache holds every key a data plane draws from: a hit loads one slot, one
// entry and the key, where keyCache.m's trie is a chain of nodes.
// Identifiers whose slot another holds are found in keyCache.m. A lookup
// loads the table once; one that loaded a table since replaced may find a
// key dropped after that, as a lookup that loaded an entry just before its
// drop may: it began before the drop ended.
type frontTable struct {
	slots []atomic.Pointer[frontEntry]
	shift uint8 // 64 - log2(len(slots))
}

const minFrontBits = 10

// frontShift is the frontTable shift for a cache of capacity keys.
func frontShift(capacity int) uint8 {
	bits := minFrontBits
	for 1<<bits < 2*capacity && bits < 40 {
		bits++
	}
	return uint8(64 - bits)
}

// newFrontTable makes an empty front table with the shift.
func newFrontTable(shift uint8) *frontTable {
	return &frontTable{slots: make([]atomic.Pointer[frontEntry], 1<<(64-shift)), shift: shift}
}

// slot is ident's slot.
func (t *frontTable) slot(ident string) *atomic.Pointer[frontEntry] {
	return &t.slots[frontHash(ident)>>t.shift]
}

// frontEntry is one slot of keyCache.front (immutable).
type frontEntry struct {
	ident string
	w     *WorkingKey
}

// frontHash is ident's hash for keyCache.front, whose slot is its top
// bits: a multiplicative hash of its length and last 8 bytes, where
// identifiers differ (the key id of a key ARN, the name of an alias),
// rather than of all of a long ARN. Identifiers that share a slot only fall
// back to keyCache.m: the full identifier is compared on every hit.
func frontHash(ident string) uint64 {
	var x uint64
	if n := len(ident); n >= 8 { // one 8-byte load: the compiler combines these
		t := ident[n-8 : n]
		x = uint64(t[0])<<56 | uint64(t[1])<<48 | uint64(t[2])<<40 | uint64(t[3])<<32 |
			uint64(t[4])<<24 | uint64(t[5])<<16 | uint64(t[6])<<8 | uint64(t[7])
	} else {
		for i := range n {
			x = x<<8 | uint64(ident[i])
		}
	}
	x ^= uint64(len(ident))
	return x * 0x9E3779B97F4A7C15
}

// dropFront empties ident's front slot if it holds ident; c.mu is held.
func (c *keyCache) dropFront(ident string) {
	t := c.front.Load()
	if t == nil {
		return
	}
	f := t.slot(ident)
	if e := f.Load(); e != nil && e.ident == ident {
		f.Store(nil)
	}
}

// putFront gives ident's front slot to w, first doubling the table when the
// cache holds more keys than half its slots and it is smaller than its
// capacity's (the first put makes the smallest); c.mu is held.
func (c *keyCache) putFront(ident string, w *WorkingKey) {
	t := c.front.Load()
	if t == nil {
		t = newFrontTable(frontShift(0))
		c.front.Store(t)
	} else if t.shift > frontShift(c.max()) && c.entries.Load() > int64(len(t.slots)/2) {
		t = c.growFrontLocked(t)
	}
	t.slot(ident).Store(&frontEntry{ident: ident, w: w})
}

// growFrontLocked replaces the front table with one twice its size holding
// every cached key of the ring (whose slots name each cached identifier
// once), and returns it; c.mu is held.
func (c *keyCache) growFrontLocked(old *frontTable) *frontTable {
	t := newFrontTable(old.shift - 1)
	for _, s := range c.ring {
		if s.w != nil && s.w.cached {
			t.slot(s.ident).Store(&frontEntry{ident: s.ident, w: s.w})
		}
	}
	c.front.Store(t)
	return t
}

// get returns the cached key of ident with a reference taken for the
// caller, or nil.
func (c *keyCache) get(ident string) (*WorkingKey, uint64) {
	gen := c.gen.Load()
	if t := c.front.Load(); t != nil {
		if e := t.slot(ident).Load(); e != nil && e.ident == ident && e.w.acquire() { // a hit, counted in refs
			e.w.touch()
			return e.w, gen
		}
	}
	if v, ok := c.m.Load(ident); ok {
		if w := v.(*WorkingKey); w.acquire() {
			w.touch()
			return w, gen
		}
	}
	c.misses.Add(1)
	return nil, gen
}

// find returns the cached key of ident, or nil, taking no reference and
// counting nothing: the first half of peekWorking's lookup.
func (c *keyCache) find(ident string) *WorkingKey {
	if t := c.front.Load(); t != nil {
		if e := t.slot(ident).Load(); e != nil && e.ident == ident {
			return e.w
		}
	}
	if v, ok := c.m.Load(ident); ok {
		return v.(*WorkingKey)
	}
	return nil
}

// hit counts a cache hit on w, without taking a reference, and reports
// whether w was live (its last reference not yet given back) when it did:
// one atomic add. A hit counted on a key found dead is never folded (its
// last Release folded the hits of the word its decrement left, which this
// add follows), so it is not counted: the caller looks the key up again. A
// hit counted while w was live precedes w's last Release, which folds it,
// or is folded by CacheStats: exact, as acquire's.
func (w *WorkingKey) hit() bool {
	c := w.refs.v.Add(hitUnit) & refMask
	return c != 0 && c < refHalf
}

// touch sets w's CLOCK reference bit, writing only when it is clear.
func (w *WorkingKey) touch() {
	if !w.used.Load() {
		w.used.Store(true)
	}
}

// put caches w, taking the cache's reference, unless something was dropped
// since gen was read.
func (c *keyCache) put(ident string, w *WorkingKey, gen uint64) {
	// The identifier usually comes from a request: a substring of its body,
	// which a cached key would otherwise keep alive as long as it stays. A
	// key's ARN is the key's own string (one copy for both).
	if ident == w.ARN {
		ident = w.ARN
	} else {
		ident = strings.Clone(ident)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen.Load() {
		return
	}
	w.hitsTo = &c.hits // before the cache's reference: the last Release sees it
	w.refs.v.Add(1)
	w.cached = true
	if v, loaded := c.m.Swap(ident, w); loaded { // w takes the slot of the key it replaces
		old := v.(*WorkingKey)
		old.cached = false
		w.slot = old.slot
		c.ring[w.slot] = clockSlot{ident, w}
		c.putFront(ident, w)
		old.Release()
		return
	}
	c.entries.Add(1)
	c.putFront(ident, w)
	if len(c.ring) < c.max() {
		w.slot = len(c.ring)
		c.ring = append(c.ring, clockSlot{ident, w})
		return
	}
	w.slot = c.sweepLocked()
	c.ring[w.slot] = clockSlot{ident, w}
}

func (c *keyCache) max() int {
	if c.capacity > 0 {
		return c.capacity
	}
	return DefaultWorkingKeys
}

// sweepLocked moves the CLOCK hand to a free slot, evicting the first key
// not used since the hand last passed it, and returns the slot; the ring is
// full and c.mu held. Within two turns every bit is clear, so it ends.
func (c *keyCache) sweepLocked() int {
	for {
		i := c.hand
		c.hand = (c.hand + 1) % len(c.ring)
		s := c.ring[i]
		switch {
		case s.w == nil || !s.w.cached: // dropped since
		case s.w.used.Load():
			s.w.used.Store(false)
			continue
		default:
			c.dropFront(s.ident)
			c.m.CompareAndDelete(s.ident, s.w)
			s.w.cached = false
			c.entries.Add(-1)
			c.evictions.Add(1)
			s.w.Release()
		}
		c.ring[i] = clockSlot{}
		return i
	}
}

// putPolicy caches a key's compiled policy unless something was dropped
// since gen was read.
func (c *keyCache) putPolicy(id string, e *policyEntry, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen.Load() {
		return
	}
	c.policies.Store(id, e)
}

// memo is a sync.Map keyed by strings that requests choose (key ids, alias
// names), bounded: a Store once memoKeys have been stored since it was
// last emptied empties it first. It keeps copies of its keys, which may be
// substrings of a request body that they would otherwise keep alive.
type memo struct {
	sync.Map
	n atomic.Int64 // stores since it was last emptied
}

func (m *memo) Store(k string, v any) {
	if m.n.Add(1) > memoKeys {
		m.Map.Clear()
		m.n.Store(1)
	}
	m.Map.Store(strings.Clone(k), v)
}

func (m *memo) Clear() {
	m.Map.Clear()
	m.n.Store(0)
}

// clearLocked drops every entry, giving back the cache's references, and
// returns how many it dropped; c.mu is held.
func (c *keyCache) clearLocked() uint64 {
	c.policies.Clear()
	if t := c.front.Load(); t != nil {
		for i := range t.slots {
			t.slots[i].Store(nil)
		}
	}
	var n uint64
	c.m.Range(func(k, v any) bool {
		c.m.Delete(k)
		w := v.(*WorkingKey)
		w.cached = false
		w.Release()
		n++
		return true
	})
	c.entries.Store(0)
	clear(c.ring)
	c.ring, c.hand = c.ring[:0], 0
	return n
}

// dropIf forgets every entry for which drop is true.
func (c *keyCache) dropIf(drop func(ident string, w *WorkingKey) bool) {
	c.mu.Lock()
	c.gen.Add(1)
	c.m.Range(func(k, v any) bool {
		if w := v.(*WorkingKey); drop(k.(string), w) {
			c.dropFront(k.(string))
			c.m.Delete(k)
			w.cached = false
			c.ring[w.slot] = clockSlot{} // free
			c.entries.Add(-1)
			c.invalidations.Add(1)
			w.Release()
		}
		return true
	})
	c.mu.Unlock()
}

// dropKey forgets every entry of key id (under any identifier).
func (c *keyCache) dropKey(id string) {
	c.dropIf(func(_ string, w *WorkingKey) bool { return w.Record.ID == id })
	c.policies.Delete(id)
}

// dropAll forgets every entry.
func (c *keyCache) dropAll() {
	c.mu.Lock()
	c.gen.Add(1)
	c.invalidations.Add(c.clearLocked())
	c.mu.Unlock()
}

// dropAliases forgets every entry reached through an alias.
func (c *keyCache) dropAliases() {
	c.dropIf(func(ident string, _ *WorkingKey) bool { return strings.Contains(ident, "alias/") })
}

// Working returns the usable key named by ident (key ARN, alias name or
// alias ARN) with its clear material, and a reference the caller gives back
// with Release once done with it. subj and side say which of the
// request's keys it is, for the faults. It checks only state and usage
// period; the operation checks usage, algorithm and modes of use with
// Require. Once the token has been unavailable for longer than its loss
// grace (custody.Custodian.Available) it refuses every key, and drops the
// cached ones; so it does while a shared store has been out of reach for
// longer than its staleness bound (Follow), keeping them for when it is back.
func (s *Service) Working(ident string, subj fault.Subject, side fault.Side) (*WorkingKey, error) {
	if err := s.keysUsable(); err != nil {
		return nil, err
	}
	w, gen := s.cache.get(ident)
	if w == nil {
		var rec *keystore.Key
		var err error
		if profile, block, ok := parseBlockIdent(ident); ok {
			rec, err = s.blockRecord(profile, block, subj, side)
		} else {
			rec, err = s.resolve(ident)
		}
		if err != nil {
			return nil, err
		}
		w, err = s.open(rec)
		if err != nil {
			return nil, err
		}
		s.cache.put(ident, w, gen)
	}
	if err := s.usableWorking(w, ident); err != nil {
		w.Release()
		if f := fault.As(err); f.Subject == fault.SubjectNone {
			f.Subject, f.Side = subj, side
		}
		return nil, err
	}
	return w, nil
}

// keysUsable is what Working and peekWorking check before any key is
// used: the token available (if not, every cached key is dropped) and a
// shared store not out of reach for longer than the staleness bound.
func (s *Service) keysUsable() error {
	if err := s.cust.Available(); err != nil {
		s.cache.dropAll()
		return err
	}
	if err := s.store.Stale(); err != nil { // a shared store out of reach for too long (fleet.go)
		return fault.Wrap(fault.Unavailable, "the key store has been out of reach for longer than this node's staleness bound, so a key it cached may have been disabled elsewhere: keys are not used until the store is back (retry on another node)", err)
	}
	return nil
}

// peekWorking is Working's hit path for an operation that reads only the
// parts of a working key its last Release leaves intact: Record, ARN, the
// key-use set, Block and Left (Go's key schedules, which nothing wipes),
// and the CMAC key through cmac.Key.Sum, which reports a Clear that
// overlaps it (cmac.ErrCleared) rather than use a half-zeroed subkey. Such
// an operation takes no reference and so calls no Release: the reference
// count exists so that Material (and the CMAC and HMAC keys) is zeroed
// only after its last user is done, and a peeking operation is not a user
// of any of them. That saves the two atomic read-modify-writes of a
// reference (acquire's compare-and-swap and Release's add), about a
// quarter of a short AES message's cost in the operations layer; the hit
// is counted by one atomic add (hit). The WorkingKey itself stays valid
// memory while the operation holds its pointer (the garbage collector's
// business), and a dropped key's Material is zeroed at the drop's Release
// as before, whether or not a peeking operation is still running.
//
// It returns the key when Working would return it from the cache: the
// token and store available, the key cached, live and known usable (its
// usage period seen to begin, with no end: the started flag); nil, with
// no error, for anything else (a miss, a key not yet seen usable, a
// dropped key), which the caller hands to Working. An error is one
// Working would return too (the token or store unavailable). Deletion,
// disabling and every other state change drop the key from the cache
// before they are acknowledged, so a peek honours them as a lookup does.
func (s *Service) peekWorking(ident string) (*WorkingKey, error) {
	if s.cust.Available() != nil || s.store.Stale() != nil { // keysUsable's checks, inlined (one atomic load each)
		return nil, s.keysUsable() // and its fault
	}
	w := s.cache.find(ident)
	if w == nil || !w.started.Load() || !w.hit() {
		return nil, nil
	}
	w.touch()
	return w, nil
}

// RequireUse checks a working key against the key-use table's rule u
// (keyspec/use.go: operation × side × role → usages, algorithms, modes of
// use); subj and side say which of the request's keys w is, for the edges.
func RequireUse(w *WorkingKey, u keyspec.Use, subj fault.Subject, side fault.Side) error {
	if w.uses.Has(u) {
		return nil
	}
	return onSubject(u.Check(w.ARN, w.Record.Attributes), subj, side)
}

// requireUseAs is RequireUse with the operation named what in the messages
// (for a request that spells the method more precisely than the table).
func requireUseAs(w *WorkingKey, u keyspec.Use, what string, subj fault.Subject, side fault.Side) error {
	if w.uses.Has(u) {
		return nil
	}
	return onSubject(u.CheckAs(what, w.ARN, w.Record.Attributes), subj, side)
}

// onSubject sets the subject and side of err's fault (nil stays nil).
func onSubject(err error, subj fault.Subject, side fault.Side) error {
	if err == nil {
		return nil
	}
	f := fault.As(err)
	f.Subject, f.Side = subj, side
	return f
}

// keyRule is a Validation fault for a broken key-separation rule (a
// fault.Violation) of the request's key subj on side.
func keyRule(violation string, subj fault.Subject, side fault.Side, format string, args ...any) *fault.Error {
	f := fault.About(subj, format, args...).On(side)
	f.Violation = violation
	return f
}

// about is a Validation fault about the request's input subj on side.
func about(subj fault.Subject, side fault.Side, format string, args ...any) *fault.Error {
	return fault.About(subj, format, args...).On(side)
}

// open unwraps a record into a WorkingKey.
func (s *Service) open(rec *keystore.Key) (*WorkingKey, error) {
	w := &WorkingKey{Record: rec, uses: keyspec.AllowedUses(rec.Attributes)}
	w.refs.Store(1) // the caller's
	w.release = w.Release
	if rec.ID != "" {
		w.ARN = s.keyARN(rec.ID)
	}
	if rec.KeyBlock == "" {
		return w, nil
	}
	h, m, err := s.loadMaterial(rec)
	if err != nil {
		return nil, err
	}
	w.Header, w.Material, w.secret = h, m, secret.NewKey(m)
	if err := w.schedule(rec.Attributes.Algorithm); err != nil {
		return nil, fault.Internalf("key schedule", err)
	}
	if b, ok := symmetric.NewBlock16(w.Block); ok {
		w.block16 = b
		if w.uses.Has(keyspec.UseEncryptDataSymmetric) {
			w.fastData |= fastEncrypt
		}
		if w.uses.Has(keyspec.UseDecryptDataSymmetric) {
			w.fastData |= fastDecrypt
		}
	}
	return w, nil
}

// usableWorking is usable for a cached working key. Once its usage period
// has been seen to begin, a key without a stop time, enabled and created,
// needs no clock read and no other check: Record is read-only, so that
// stays true (state changes replace the cached key). The hot path of every
// data operation tests one flag.
func (s *Service) usableWorking(w *WorkingKey, ident string) error {
	if w.started.Load() {
		return nil
	}
	k := w.Record
	if err := s.usable(k, ident); err != nil {
		return err
	}
	if k.UsageStop.IsZero() && k.State == StateCreateComplete && k.Enabled {
		w.started.Store(true)
	}
	return nil
}

// schedule makes the block ciphers of a symmetric key once, for every
// operation that uses it: Block, and Left for TDES keys.
func (w *WorkingKey) schedule(a keyspec.Algorithm) (err error) {
	switch {
	case a.IsTDES():
		if w.Block, err = tdes.NewCipher(w.Material); err == nil {
			w.Left, err = des.NewCipher(w.Material[:8]) //nolint:gosec // G405: the single-DES half of a TDES key that CVV and ISO 9797-1 algorithm 3 specify
		}
	case a.IsAES():
		w.Block, err = aes.NewCipher(w.Material)
	}
	return err
}

// blockIdentPrefix marks a key carried in a request as an X9.143 block under
// a profile main key (the host protocol's "S" key form) rather than stored in
// the keystore. The AWS edge cannot produce such an identifier: the model's
// KeyIdentifier pattern refuses it.
const blockIdentPrefix = "lmkblock/"

// BlockIdent names a key block protected by profile's main key, for Working.
func BlockIdent(profile, block string) string { return blockIdentPrefix + profile + "/" + block }

func parseBlockIdent(ident string) (profile, block string, ok bool) {
	rest, ok := strings.CutPrefix(ident, blockIdentPrefix)
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, "/")
}

// blockRecord opens a key block under a profile main key into a transient
// record (never stored): its attributes come from the authenticated header.
func (s *Service) blockRecord(profile, block string, subj fault.Subject, side fault.Side) (*keystore.Key, error) {
	p, err := s.cust.Profile(profile)
	if err != nil {
		return nil, fault.NotFoundf(profile, "profile %s has no main key", profile)
	}
	h, key, err := p.Unwrap(block)
	if err != nil {
		f := fault.Wrap(fault.Validation, "the key block does not verify under the profile main key", err)
		f.Subject, f.Side, f.Violation = subj, side, fault.ViolationIntegrity
		return nil, f
	}
	defer clear(key)
	a, exportable, err := attributesFromHeader(h, len(key))
	if err != nil {
		return nil, err
	}
	rec := &keystore.Key{ID: "", Profile: profile, Attributes: a, Exportable: exportable, Enabled: true,
		State: StateCreateComplete, Origin: OriginExternal, KeyBlock: block, KCVAlgorithm: keyspec.DefaultKCVAlgorithm(a.Algorithm)}
	if rec.KCV, err = symmetricKCV(a.Algorithm, rec.KCVAlgorithm, key); err != nil {
		return nil, err
	}
	return rec, nil
}

// warmPage is how many keys WarmWorkingKeys lists at a time.
const warmPage = 256

// WarmWorkingKeys opens the stored keys of the service's profile into the
// working-key cache, a page of warmPage at a time in id order, until every
// usable key is cached, the cache is full or ctx ends, and returns how many
// it opened. After each page it calls rest with how long the page took
// (the daemon sleeps as long, so that warming takes at most half of a
// core from the requests). A key that cannot be used now (disabled, being
// deleted, outside its usage period, changed since its page was read) is
// left for its first use to open, as is every key once the cache is full:
// warming never evicts a key that requests cached. It stops at the first
// key refused as unavailable (the token lost, a shared store out of reach
// for too long): none would open. The daemon runs it once
// its background verify is done, so that after a restart a data plane that
// draws from more keys than requests have yet used finds them opened
// (docs/performance.md, "Cold keys").
func (s *Service) WarmWorkingKeys(ctx context.Context, rest func(time.Duration)) (opened int, err error) {
	usable := func(k *keystore.Key) bool {
		return k.Profile == s.cfg.Profile && k.KeyBlock != "" && s.usable(k, "") == nil
	}
	token := ""
	for {
		if err := ctx.Err(); err != nil {
			return opened, err
		}
		start := time.Now()
		keys, next, err := s.store.ListKeys(usable, token, warmPage)
		if err != nil {
			return opened, err
		}
		for _, k := range keys {
			if s.cache.entries.Load() >= int64(s.cache.max()) {
				return opened, nil
			}
			arn := s.keyARN(k.ID)
			if s.cache.find(arn) != nil {
				continue
			}
			w, err := s.Working(arn, fault.SubjectNone, fault.SideNone)
			if fault.KindOf(err) == fault.Unavailable { // the token or the store: no key opens now
				return opened, err
			}
			if err == nil {
				w.Release()
				opened++
			}
		}
		if next == "" {
			return opened, nil
		}
		token = next
		rest(time.Since(start))
	}
}
