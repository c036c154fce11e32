package ops

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"payhsm/keystore"
)

// TestCacheHitsExact: the hits counted in the keys' reference words (by
// get's acquire or peekWorking's hit) and folded into the cache's counter
// (by CacheStats and by each key's last Release) add up to exactly the
// lookups that found a key, while keys are
// looked up concurrently, evicted (capacity 8 for 16 identifiers),
// replaced and dropped, and CacheStats reads in between never goes back.
func TestCacheHitsExact(t *testing.T) {
	s := &Service{}
	c := &s.cache
	c.capacity = 8
	var found, missed atomic.Uint64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 20000 {
				ident := fmt.Sprintf("key-%d", r.IntN(16))
				// Half the lookups peek first (peekWorking's find and
				// hit, no reference), as the data plane's do.
				if r.IntN(2) == 0 {
					if w := c.find(ident); w != nil && w.hit() {
						found.Add(1)
						continue
					}
				}
				w, gen := c.get(ident)
				if w != nil {
					found.Add(1)
					w.Release()
					continue
				}
				missed.Add(1)
				w = &WorkingKey{Record: &keystore.Key{ID: ident}}
				w.refs.Store(1)
				c.put(ident, w, gen)
				w.Release()
			}
		})
	}
	stop := make(chan struct{})
	var last uint64
	var back error
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := rand.New(rand.NewPCG(9, 9))
		for {
			select {
			case <-stop:
				return
			default:
			}
			c.dropKey(fmt.Sprintf("key-%d", r.IntN(16)))
			if h := s.CacheStats().Hits; h < last {
				back = fmt.Errorf("hits went back from %d to %d", last, h)
			} else {
				last = h
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-done
	if back != nil {
		t.Fatal(back)
	}
	st := s.CacheStats()
	if st.Hits != found.Load() || st.Misses != missed.Load() {
		t.Fatalf("CacheStats hits %d misses %d; the lookups found %d and missed %d", st.Hits, st.Misses, found.Load(), missed.Load())
	}
	if found.Load() == 0 || st.Evictions == 0 || st.Invalidations == 0 {
		t.Fatalf("the test did not exercise hits (%d), evictions (%d) and drops (%d)", found.Load(), st.Evictions, st.Invalidations)
	}
}

// A reference word's count never comes back from zero: not by a lookup,
// nor after a Release too many (which would borrow from the hits).
func TestRefWordDead(t *testing.T) {
	w := &WorkingKey{Record: &keystore.Key{}}
	w.refs.Store(1)
	if !w.acquire() || w.refs.Load() != 2 || w.refs.hits() != 1 {
		t.Fatalf("acquire: refs %d hits %d, want 2 and 1", w.refs.Load(), w.refs.hits())
	}
	w.Release()
	w.Release()
	if w.acquire() {
		t.Fatal("acquired a key whose last reference was gone")
	}
	w.Release() // one too many
	if w.acquire() {
		t.Fatalf("acquired after a Release too many (count %d)", w.refs.Load())
	}
}

// frontHash's 8-byte load hashes what the byte loop it replaced hashed.
func TestFrontSlotMatchesLoop(t *testing.T) {
	loop := func(ident string) uint64 {
		var x uint64
		for i := max(0, len(ident)-8); i < len(ident); i++ {
			x = x<<8 | uint64(ident[i])
		}
		x ^= uint64(len(ident))
		return x * 0x9E3779B97F4A7C15
	}
	r := rand.New(rand.NewPCG(3, 4))
	for n := range 40 {
		for range 50 {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			if got, want := frontHash(string(b)), loop(string(b)); got != want {
				t.Fatalf("%x: hash %x, the loop's %x", b, got, want)
			}
		}
	}
}
