package pebblekv

import (
	"bytes"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// presence is the in-memory index of Options.IndexedPrefixes: a hash of
// every key under those prefixes that the database holds or that a
// transaction has set, so that a transaction's read of a key it finds
// absent from the index returns without reading the database. The key
// store's creations check that the new key's id is free (a seek in each
// memtable's skiplist and every level's bloom filter, the largest single
// cost of a CreateKey after its fsyncs: docs/performance.md, "CreateKey's
// CPU, fourth pass"); with the index, that check is a map lookup.
//
// The index answers only "certainly absent": a key whose hash it holds is
// read from the database as before, so a hash shared by two keys, or a key
// since deleted (deletions are not removed from the index), costs a read,
// never a wrong answer. It is exact in the other direction because every
// key the database can hold under an indexed prefix gets into it: the
// database is this process's alone (Pebble's LOCK file), every write goes
// through a transaction's Set, which adds the key before the transaction
// can commit (and adds it even when the transaction is then discarded),
// and what was written before Open is added by a scan that starts at Open,
// before any transaction can begin. Until the scan has finished, the index
// answers nothing and every read goes to the database.
//
// Cost (BenchmarkPresenceLoad): about 25 bytes of heap per indexed key,
// without pointers (the collector does not scan it), and 1.4 µs per key
// for the scan, on one core, in the background: a store of a million keys
// is indexed in under two seconds after Open.
type presence struct {
	prefixes [][]byte
	seed     maphash.Seed

	mu  sync.Mutex
	set map[uint64]struct{}

	complete atomic.Bool   // the scan has added everything written before Open
	stop     chan struct{} // closed by Close: the scan gives up
	stopOnce sync.Once
	done     chan struct{} // closed when the scan has returned
}

// presencePage is how many keys the scan adds per iterator: each page is
// a fresh iterator, so that a scan of millions of keys pins no memtable or
// table for long.
const presencePage = 4096

func newPresence(prefixes [][]byte) *presence {
	p := &presence{seed: maphash.MakeSeed(), set: map[uint64]struct{}{},
		stop: make(chan struct{}), done: make(chan struct{})}
	for _, pfx := range prefixes {
		if len(pfx) > 0 {
			p.prefixes = append(p.prefixes, bytes.Clone(pfx))
		}
	}
	return p
}

// indexed reports whether key is under one of the index's prefixes.
func (p *presence) indexed(key []byte) bool {
	for _, pfx := range p.prefixes {
		if bytes.HasPrefix(key, pfx) {
			return true
		}
	}
	return false
}

// add records key when it is under an indexed prefix.
func (p *presence) add(key []byte) {
	if p == nil || !p.indexed(key) {
		return
	}
	h := maphash.Bytes(p.seed, key)
	p.mu.Lock()
	p.set[h] = struct{}{}
	p.mu.Unlock()
}

// absent reports whether key is certainly absent from the database and
// from every transaction's writes: the scan has finished, key is under an
// indexed prefix and its hash is not in the index.
func (p *presence) absent(key []byte) bool {
	if p == nil || !p.complete.Load() || !p.indexed(key) {
		return false
	}
	h := maphash.Bytes(p.seed, key)
	p.mu.Lock()
	_, in := p.set[h]
	p.mu.Unlock()
	return !in
}

// size is the number of hashes held.
func (p *presence) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.set)
}

// load adds every key under the indexed prefixes that db holds, a page at
// a time, then marks the index complete. It gives up (leaving the index
// incomplete, so that every read goes to the database) when stop is closed
// or an iterator fails.
func (p *presence) load(db *pebble.DB, log *zap.Logger) {
	defer close(p.done)
	start := time.Now()
	for _, pfx := range p.prefixes {
		upper := prefixEnd(pfx)
		lower := pfx
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			next, more, err := p.loadPage(db, lower, upper)
			if err != nil {
				log.Warn("key presence index: scan failed; every absence check reads the database", zap.Error(err))
				return
			}
			if !more {
				break
			}
			lower = next
		}
	}
	p.complete.Store(true)
	log.Debug("key presence index loaded", zap.Int("keys", p.size()), zap.Duration("took", time.Since(start)))
}

// loadPage adds up to presencePage keys of [lower, upper) and returns the
// key after the last one added (more is false when the range is done).
func (p *presence) loadPage(db *pebble.DB, lower, upper []byte) (next []byte, more bool, err error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, false, err
	}
	hashes := make([]uint64, 0, presencePage)
	for ok := it.First(); ok; ok = it.Next() {
		hashes = append(hashes, maphash.Bytes(p.seed, it.Key()))
		if len(hashes) == presencePage {
			next, more = append(bytes.Clone(it.Key()), 0), true // the smallest key after it
			break
		}
	}
	err = it.Error()
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, false, err
	}
	p.mu.Lock()
	for _, h := range hashes {
		p.set[h] = struct{}{}
	}
	p.mu.Unlock()
	return next, more, nil
}

// IndexLoaded reports whether the presence index (Options.IndexedPrefixes)
// has loaded: from then on a transaction's read of an indexed key that is
// absent reads nothing. False when nothing is indexed.
func (d *DB) IndexLoaded() bool { return d.idx != nil && d.idx.complete.Load() }

// close stops the scan and waits for it; closing again does nothing more.
func (p *presence) close() {
	if p == nil {
		return
	}
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.done
}

// prefixEnd is the smallest key greater than every key with prefix pfx;
// nil when there is none (pfx is all 0xff).
func prefixEnd(pfx []byte) []byte {
	end := bytes.Clone(pfx)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
