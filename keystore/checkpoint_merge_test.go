package keystore

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// mergeTestKeys are the records of a few keys, as the checkpoint holds
// them: key records, tags, alias index entries, purge index entries, and
// records of no key (aliases, metadata).
func mergeTestKeys(r *rand.Rand) []string {
	var ks []string
	for range 1 + r.IntN(6) {
		id := fmt.Sprintf("%0*x", IDLen, r.Uint64())
		ks = append(ks, pfxKey+id, pfxTag+id+"/t1", pfxTag+id+"/t2", pfxByKey+id+"/alias-"+id[:4], pfxPurge+"00000001"+id)
	}
	ks = append(ks, pfxAlias+"some-alias", "m/site-meta", pfxAlias+"other")
	return ks
}

func mergeTestOp(r *rand.Rand, k string) jop {
	o := jop{key: k, rev: r.Uint64N(1 << 40), del: r.IntN(4) == 0}
	if r.IntN(5) == 0 {
		d := sha256.Sum256([]byte(k))
		o.digest = &d
	}
	return o
}

// TestMergeBucketMatchesRebuild: rewriting a bucket by merging its sorted
// encoding with the changed records (rewriteBucket) gives, byte for byte,
// the bucket that decoding it into a map, applying the journal's ops in
// order and encoding it sorted again (rebuildBucket) gives, for random
// buckets and ops: later states of one record, deleted keys (their other
// records dropped, the key record kept as a tombstone), absent buckets and
// buckets that end empty.
func TestMergeBucketMatchesRebuild(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 5000 {
		keys := mergeTestKeys(r)
		var old []byte
		if r.IntN(5) != 0 {
			var list []jop
			for _, k := range keys {
				if r.IntN(3) != 0 {
					list = append(list, mergeTestOp(r, k))
				}
			}
			sortOps(list)
			if len(list) > 0 {
				old = encodeBucket(9, 77, list)
			}
		}
		var ops []jop
		for range r.IntN(12) {
			ops = append(ops, mergeTestOp(r, keys[r.IntN(len(keys))]))
		}
		in := slices.Clone(ops)
		got, gb, ga, err := rewriteBucket(9, 77, old, ops)
		if err != nil {
			t.Fatalf("case %d: rewriteBucket: %v", n, err)
		}
		want, wb, wa, err := rebuildBucket(9, 77, old, ops)
		if err != nil {
			t.Fatalf("case %d: rebuildBucket: %v", n, err)
		}
		if !bytes.Equal(got, want) || gb != wb || ga != wa {
			t.Fatalf("case %d: merged %x (%d → %d records), rebuilt %x (%d → %d)", n, got, gb, ga, want, wb, wa)
		}
		if !slices.EqualFunc(in, ops, func(a, b jop) bool { return a.key == b.key && a.rev == b.rev && a.del == b.del }) {
			t.Fatalf("case %d: rewriteBucket changed its ops", n)
		}
	}
}

// TestMergeBucketUnsortedFallsBack: a bucket whose records are not in key
// order (no build writes one) is rewritten by rebuildBucket, not merged
// wrongly; a malformed one or another bucket's is refused.
func TestMergeBucketUnsortedFallsBack(t *testing.T) {
	a, b, c := jop{key: pfxAlias + "a", rev: 1}, jop{key: pfxAlias + "b", rev: 2}, jop{key: pfxAlias + "c", rev: 3}
	unsorted := encodeBucket(4, 3, []jop{c, a})
	if _, _, _, sorted, err := mergeBucket(4, 3, unsorted, []jop{b}, nil); sorted || err != nil {
		t.Fatalf("merge of an unsorted bucket: sorted %v, err %v", sorted, err)
	}
	got, before, after, err := rewriteBucket(4, 3, unsorted, []jop{b})
	if err != nil || before != 2 || after != 3 || !bytes.Equal(got, encodeBucket(4, 3, []jop{a, b, c})) {
		t.Fatalf("rewrite of an unsorted bucket: %x %d %d %v", got, before, after, err)
	}
	good := encodeBucket(4, 3, []jop{a, c})
	for name, p := range map[string][]byte{
		"truncated":      good[:len(good)-1],
		"trailing":       append(slices.Clone(good), 0),
		"other bucket":   encodeBucket(4, 2, []jop{a, c}),
		"other bits":     encodeBucket(5, 3, []jop{a, c}),
		"bad flags":      append(encodeBucket(4, 3, nil)[:6], 1, 0x80, 1, 'x', 1),
		"count too high": append(encodeBucket(4, 3, nil)[:6], 9),
	} {
		if _, _, _, err := rewriteBucket(4, 3, p, []jop{b}); err == nil {
			t.Errorf("%s: rewriteBucket accepted it", name)
		}
	}
}
