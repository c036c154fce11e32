package keystore

import "payhsm/keystore/kv"

// Stats is the store's size, for metrics.
type Stats struct {
	// Keys is the number of key records, whatever their state (a key
	// pending deletion counts until it is purged).
	Keys int
	// DiskBytes is the space the database takes on disk (Pebble's estimate:
	// tables, logs, manifests); 0 on an engine that does not report it
	// (etcd: the cluster's own metrics say).
	DiskBytes uint64
}

// Stats reports the store's size. It counts the key records without
// verifying them: on an engine that counts a range by itself (kv.Counter:
// etcd, one count-only request, no record sent) it asks the engine, else it
// scans the key records' range (Pebble, local). The daemon's metrics call it
// once per scrape.
func (s *Store) Stats() (Stats, error) {
	done, err := s.read()
	if err != nil {
		return Stats{}, err
	}
	defer done()
	var st Stats
	if d, ok := s.eng.(interface{ DiskSpaceUsage() uint64 }); ok {
		st.DiskBytes = d.DiskSpaceUsage()
	}
	if c, ok := s.eng.(kv.Counter); ok {
		st.Keys, err = c.Count([]byte(pfxKey), upperBound(pfxKey))
	} else {
		err = s.eng.Scan([]byte(pfxKey), upperBound(pfxKey), func(_, _ []byte) (bool, error) {
			st.Keys++
			return true, nil
		})
	}
	if err != nil {
		return Stats{}, err
	}
	return st, nil
}
