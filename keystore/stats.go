package keystore

import (
	"errors"

	"github.com/cockroachdb/pebble/v2"
)

// Stats is the store's size, for metrics.
type Stats struct {
	// Keys is the number of key records, whatever their state (a key
	// pending deletion counts until it is purged).
	Keys int
	// DiskBytes is the space the database takes on disk (Pebble's estimate:
	// tables, logs, manifests).
	DiskBytes uint64
}

// Stats reports the store's size. It reads the key records' names only, not
// their contents (nothing is verified); the daemon's metrics call it once per
// scrape.
func (s *Store) Stats() (_ Stats, err error) {
	done, err := s.read()
	if err != nil {
		return Stats{}, err
	}
	defer done()
	st := Stats{DiskBytes: s.db.Metrics().DiskSpaceUsage()}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte(pfxKey), UpperBound: upperBound(pfxKey)})
	if err != nil {
		return Stats{}, err
	}
	defer func() { err = errors.Join(err, it.Error(), it.Close()) }()
	for ok := it.First(); ok; ok = it.Next() {
		st.Keys++
	}
	return st, nil
}
