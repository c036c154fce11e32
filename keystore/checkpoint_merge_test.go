package keystore

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
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

// TestMergeBucketRefusesMalformed: a bucket whose records are not in key
// order (no build writes one), a malformed one or another bucket's is
// refused, not merged wrongly.
func TestMergeBucketRefusesMalformed(t *testing.T) {
	a, b, c := jop{key: pfxAlias + "a", rev: 1}, jop{key: pfxAlias + "b", rev: 2}, jop{key: pfxAlias + "c", rev: 3}
	good := encodeBucket(4, 3, []jop{a, c})
	got, before, after, err := rewriteBucket(4, 3, good, []jop{b})
	if err != nil || before != 2 || after != 3 || !bytes.Equal(got, encodeBucket(4, 3, []jop{a, b, c})) {
		t.Fatalf("rewrite of a sorted bucket: %x %d %d %v", got, before, after, err)
	}
	for name, p := range map[string][]byte{
		"unsorted":       encodeBucket(4, 3, []jop{c, a}),
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

// TestSealedHeadShortcut: the head this process sealed last reads back
// (without its check) as the full check reads it; a head with other bytes
// (here an older one put back) is checked and refused, shortcut or not.
func TestSealedHeadShortcut(t *testing.T) {
	s, _ := openJournaled(t, vfs.NewMem(), newTestAuth(), JournalOptions{CheckpointEntries: 1000})
	var old []byte
	for i := range 5 {
		if err := s.CreateKey(testKey(fmt.Sprintf("%0*d", IDLen, i)), nil, ""); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			v, _, err := s.eng.Get(headKey(testWriter))
			if err != nil {
				t.Fatal(err)
			}
			old = v
		}
	}
	c := s.fr.sealed.Load()
	if c == nil {
		t.Fatal("no sealed head kept")
	}
	fast, found, reason, err := s.readHead(s.eng, testWriter)
	if err != nil || !found || reason != "" {
		t.Fatalf("readHead: %v %v %q", err, found, reason)
	}
	s.fr.sealed.Store(nil)
	full, found, reason, err := s.readHead(s.eng, testWriter)
	if err != nil || !found || reason != "" || full != fast || full.lastSeq != c.h.lastSeq {
		t.Fatalf("full check %+v %v %q %v, shortcut %+v", full, found, reason, err, fast)
	}
	s.fr.sealed.Store(c)
	// The older head, put back: authentic, so read as what it says (the
	// journal's checks, not readHead, refuse a rolled-back head), but not
	// taken for the last one.
	tx, err := s.eng.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Set(headKey(testWriter), old); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	h, _, reason, err := s.readHead(s.eng, testWriter)
	if err != nil || reason != "" || h.lastSeq >= c.h.lastSeq {
		t.Fatalf("the older head read as %+v %q %v (last sealed %d)", h, reason, err, c.h.lastSeq)
	}
	// A head with a flipped byte fails its check.
	bad := slices.Clone(old)
	bad[len(bad)-1] ^= 1
	tx, err = s.eng.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Set(headKey(testWriter), bad); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, _, reason, err := s.readHead(s.eng, testWriter); err != nil || reason == "" {
		t.Fatalf("a damaged head passed: %q %v", reason, err)
	}
	// Put the last head back so that Close's checkpoint finds its journal.
	tx, err = s.eng.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Set(headKey(testWriter), c.v); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointFromMemoryMatchesJournal: the checkpoint prepared from the
// entries this process holds in memory is, write for write, the one
// prepared from the journal read back from the engine, with keys created,
// tagged, aliased and purged since the last checkpoint.
func TestCheckpointFromMemoryMatchesJournal(t *testing.T) {
	s, _ := openJournaled(t, vfs.NewMem(), newTestAuth(), JournalOptions{CheckpointEntries: 1 << 20, CheckpointInterval: time.Hour, bucketTarget: 2})
	for i := range 300 {
		id := fmt.Sprintf("%0*d", IDLen, i)
		var tags []Tag
		alias := ""
		if i%3 == 0 {
			tags = []Tag{{Key: "k", Value: "v"}}
		}
		if i%5 == 0 {
			alias = fmt.Sprintf("alias/a%d", i)
		}
		if err := s.CreateKey(testKey(id), tags, alias); err != nil {
			t.Fatal(err)
		}
		if i == 150 {
			if err := s.Checkpoint(); err != nil {
				t.Fatal(err)
			}
		}
		if i%7 == 0 && i > 150 {
			if err := s.PurgeKey(fmt.Sprintf("%0*d", IDLen, i-3)); err != nil {
				t.Fatal(err)
			}
		}
	}
	view, err := s.eng.View()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = view.Close() }()
	h, _, _, err := s.readHead(view, testWriter)
	if err != nil {
		t.Fatal(err)
	}
	mem := s.memEntries(h.ckptSeq, h.lastSeq)
	if uint64(len(mem)) != h.lastSeq-h.ckptSeq || len(mem) < 100 {
		t.Fatalf("%d entries in memory, the journal has %d", len(mem), h.lastSeq-h.ckptSeq)
	}
	fromMem, err := s.prepareCheckpoint(view, testWriter, h, h.lastSeq, nil, false, mem)
	if err != nil {
		t.Fatal(err)
	}
	fromJournal, err := s.prepareCheckpoint(view, testWriter, h, h.lastSeq, nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fromMem.count != fromJournal.count || fromMem.bits != fromJournal.bits || fromMem.upto != fromJournal.upto ||
		rootOf(fromMem.bits, fromMem.digests) != rootOf(fromJournal.bits, fromJournal.digests) {
		t.Fatalf("from memory: %d records, %d bits, root %x; from the journal: %d, %d, %x", fromMem.count, fromMem.bits,
			rootOf(fromMem.bits, fromMem.digests), fromJournal.count, fromJournal.bits, rootOf(fromJournal.bits, fromJournal.digests))
	}
	byKey := func(a, b batchOp) int { return bytes.Compare(a.k, b.k) } // the buckets are written in map order
	slices.SortStableFunc(fromMem.b.ops, byKey)
	slices.SortStableFunc(fromJournal.b.ops, byKey)
	if len(fromMem.b.ops) < 100 || !slices.EqualFunc(fromMem.b.ops, fromJournal.b.ops, func(a, b batchOp) bool {
		return bytes.Equal(a.k, b.k) && bytes.Equal(a.v, b.v) && a.del == b.del
	}) {
		t.Fatal("the checkpoints' writes differ")
	}
	if err := s.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if n := len(s.memEntries(0, math.MaxUint64>>1)); n != 0 {
		t.Errorf("%d entries left in memory after the checkpoint", n)
	}
	if rep, err := s.Verify(); err != nil || len(rep.Failures) != 0 {
		t.Fatalf("Verify: %v %v", rep.Failures, err)
	}
}

// rebuildBucket is rewriteBucket the plain way, the reference the merge is
// tested against: old decoded into a map, ops applied, encoded sorted again.
func rebuildBucket(bits uint8, i uint32, old []byte, ops []jop) (p []byte, before, after int, err error) {
	st := map[string]jop{}
	if old != nil {
		gotBits, gotI, list, err := decodeBucket(old)
		if err != nil || gotBits != bits || gotI != i {
			return nil, 0, 0, errors.New("malformed, or not this bucket")
		}
		for _, o := range list {
			st[o.key] = o
		}
		before = len(list)
	}
	gone := map[string]bool{}
	for _, o := range ops { // in journal order: the later state wins
		st[o.key] = o
		if o.del && strings.HasPrefix(o.key, pfxKey) {
			gone[o.key[len(pfxKey):]] = true
		}
	}
	if len(gone) > 0 {
		for ck := range st {
			if id := ownerID(ck); gone[id] && ck != pfxKey+id {
				delete(st, ck)
			}
		}
	}
	if len(st) == 0 {
		return nil, before, 0, nil
	}
	list := make([]jop, 0, len(st))
	for _, o := range st {
		list = append(list, o)
	}
	sortOps(list)
	return encodeBucket(bits, i, list), before, len(list), nil
}
