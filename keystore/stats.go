package keystore

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

// Stats reports the store's size. It reads the key records' names only, not
// their contents (nothing is verified); the daemon's metrics call it once per
// scrape.
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
	err = s.eng.Scan([]byte(pfxKey), upperBound(pfxKey), func(_, _ []byte) (bool, error) {
		st.Keys++
		return true, nil
	})
	if err != nil {
		return Stats{}, err
	}
	return st, nil
}
