package keystore

import (
	"hash/maphash"
	"sync"
)

// markTable holds the revision high-water marks (Store.mark, Store.raise):
// for every record this process has read or written, the highest revision
// of it seen. It holds one entry per record ever read (a million on a large
// store), so it is laid out for the garbage collector: an engine key of at
// most shortMarkLen bytes (every key record, purge index entry and most
// others) is kept in the entry itself, in a map without pointers that the
// collector never scans, and only longer keys are kept as strings. Entries
// are exact (the key itself, never a hash of it): two records never share
// a mark, so a rollback of any record read is caught and no record is
// refused for another's revision. The table is split in shards, each under
// its own lock, so that concurrent readers rarely meet.
type markTable struct {
	seed   maphash.Seed
	shards [markShards]markShard
}

const (
	markShards   = 64
	shortMarkLen = 31
)

// shortMark is an engine key of at most shortMarkLen bytes: its length,
// then its bytes, zero-padded.
type shortMark struct {
	n uint8
	b [shortMarkLen]byte
}

type markShard struct {
	mu    sync.Mutex
	short map[shortMark]uint64
	long  map[string]uint64
	_     [64]byte // keeps neighbouring shards' locks off one cache line
}

func newMarkTable() *markTable {
	return &markTable{seed: maphash.MakeSeed()}
}

func (t *markTable) shard(k []byte) *markShard {
	return &t.shards[maphash.Bytes(t.seed, k)%markShards]
}

// get returns k's mark, 0 when it has none.
func (t *markTable) get(k []byte) uint64 {
	sh := t.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(k) <= shortMarkLen {
		return sh.short[toShortMark(k)]
	}
	return sh.long[string(k)]
}

// raise raises k's mark to rev; it reports false when the mark is already
// above rev.
func (t *markTable) raise(k []byte, rev uint64) bool {
	sh := t.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(k) <= shortMarkLen {
		key := toShortMark(k)
		cur, ok := sh.short[key]
		if ok && cur >= rev {
			return cur == rev
		}
		if sh.short == nil {
			sh.short = map[shortMark]uint64{}
		}
		sh.short[key] = rev
		return true
	}
	cur, ok := sh.long[string(k)]
	if ok && cur >= rev {
		return cur == rev
	}
	if sh.long == nil {
		sh.long = map[string]uint64{}
	}
	sh.long[string(k)] = rev
	return true
}

func toShortMark(k []byte) shortMark {
	m := shortMark{n: uint8(len(k))} //nolint:gosec // len(k) <= shortMarkLen, checked by every caller
	copy(m.b[:], k)
	return m
}
