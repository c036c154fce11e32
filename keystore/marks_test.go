package keystore

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// TestMarkTable checks the high-water marks against a plain map: raise
// reports false only below the mark, and keys that differ only in length,
// trailing zero bytes or beyond the short form's length keep marks of
// their own.
func TestMarkTable(t *testing.T) {
	keys := [][]byte{
		nil, {0}, {0, 0}, []byte("k/"), []byte("k/0123456789abcdef"), []byte("k/0123456789abcdef\x00"),
		[]byte(strings.Repeat("x", shortMarkLen-1)), []byte(strings.Repeat("x", shortMarkLen)),
		[]byte(strings.Repeat("x", shortMarkLen+1)), []byte(strings.Repeat("x", shortMarkLen) + "\x00"),
		[]byte("t/0123456789abcdef/a-tag-name-long-enough-to-be-long"),
	}
	for i := range 200 {
		keys = append(keys, fmt.Appendf(nil, "p/%08d%s", i, strings.Repeat("y", i%40)))
	}
	tab, want := newMarkTable(), map[string]uint64{}
	revs := []uint64{5, 3, 5, 9, 1, 9, 12, 0}
	for _, rev := range revs {
		for i, k := range keys {
			r := rev + uint64(i%3)
			cur, seen := want[string(k)]
			wantOK := !seen || cur <= r
			if got := tab.raise(k, r); got != wantOK {
				t.Fatalf("raise(%q, %d) = %v with mark %d (seen %v)", k, r, got, cur, seen)
			}
			if !seen || r > cur {
				want[string(k)] = r
			}
		}
		for _, k := range keys {
			if got := tab.get(k); got != want[string(k)] {
				t.Fatalf("get(%q) = %d, want %d", k, got, want[string(k)])
			}
		}
	}
	if got := tab.get([]byte("k/absent")); got != 0 {
		t.Fatalf("absent key has mark %d", got)
	}
}

// TestMarkTableConcurrent raises marks from several goroutines; each key's
// mark ends at the highest revision raised (run with -race).
func TestMarkTableConcurrent(t *testing.T) {
	tab := newMarkTable()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				k := fmt.Appendf(nil, "k/%016d", i%257)
				if g%2 == 1 {
					k = append(k, strings.Repeat("z", shortMarkLen)...)
				}
				tab.raise(k, uint64(i*8+g))
			}
		})
	}
	wg.Wait()
	for i := range 257 {
		for _, long := range []bool{false, true} {
			k, gs := fmt.Appendf(nil, "k/%016d", i), []int{0, 2, 4, 6}
			if long {
				k, gs = append(k, strings.Repeat("z", shortMarkLen)...), []int{1, 3, 5, 7}
			}
			var top uint64
			for j := i; j < 2000; j += 257 {
				for _, g := range gs {
					top = max(top, uint64(j*8+g))
				}
			}
			if got := tab.get(k); got != top {
				t.Fatalf("%q: mark %d, want %d", k, got, top)
			}
		}
	}
}
