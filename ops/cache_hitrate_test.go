package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"payhsm/keystore"
)

// BenchmarkWorkingKeyCacheHitRate drives the working-key cache itself
// (keyCache.get and put, at its real capacity) with key identifiers drawn
// from a million keys, uniformly or by a Zipf law of exponent s (key of rank
// k drawn with probability proportional to 1/k^s), and reports the hit rate
// after a warm-up of two million draws. Entries are working keys without
// material: what is measured is the policy, not the unwrap.
//
//	go test ./ops -run '^$' -bench WorkingKeyCacheHitRate -benchtime 4000000x
func BenchmarkWorkingKeyCacheHitRate(b *testing.B) {
	const keys, warm = 1_000_000, 2_000_000
	idents := make([]string, keys)
	for i := range idents {
		idents[i] = fmt.Sprintf("arn:key/%016d", i)
	}
	for _, s := range []float64{0, 0.8, 1.0, 1.2} {
		name := "uniform"
		if s > 0 {
			name = fmt.Sprintf("zipf-s=%.1f", s)
		}
		b.Run(name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			draw := func() int { return r.IntN(keys) }
			if s > 0 {
				draw = zipfDraw(r, s, keys)
			}
			var c keyCache
			access := func() bool {
				ident := idents[draw()]
				w, gen := c.get(ident)
				if w != nil {
					w.Release()
					return true
				}
				w = &WorkingKey{Record: &keystore.Key{ID: ident}}
				w.refs.Store(1)
				c.put(ident, w, gen)
				w.Release()
				return false
			}
			for range warm {
				access()
			}
			hits, n := 0, 0
			for b.Loop() {
				if access() {
					hits++
				}
				n++
			}
			b.ReportMetric(float64(hits)/float64(n), "hit-rate")
		})
	}
}

// zipfDraw draws ranks 0..n-1 with probability proportional to 1/(k+1)^s
// (any s > 0; math/rand's Zipf needs s > 1), by inversion of the cumulative
// table, the ranks permuted so that hot keys are not neighbours.
func zipfDraw(r *rand.Rand, s float64, n int) func() int {
	cdf := make([]float64, n)
	sum := 0.0
	for k := range n {
		sum += math.Pow(float64(k+1), -s)
		cdf[k] = sum
	}
	perm := r.Perm(n)
	return func() int {
		u := r.Float64() * sum
		lo, hi := 0, n-1
		for lo < hi {
			mid := (lo + hi) / 2
			if cdf[mid] < u {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		return perm[lo]
	}
}
