package ops_test

import (
	"runtime"
	"testing"

	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// TestWorkingKeyHeap holds a cached working key to ops.WorkingKeyHeap
// bytes of heap, the allowance from which the daemon sizes its garbage
// collector's memory limit (daemon/workingkeys.go): it opens n keys of a kind
// into an emptied cache and divides the live heap's growth by n. Over the
// allowance, a cache sized to the machine could hold more than the limit
// leaves room for, and the collector would run without pause.
func TestWorkingKeyHeap(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes what allocations cost")
	}
	const n = 3000
	data := hb("A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5")
	for _, c := range []struct {
		name  string
		attrs keyspec.Attributes
		use   func(*ops.Service, string) error
	}{
		{"TDES MAC", sym(keyspec.M3, keyspec.TDES2Key, genVer), func(s *ops.Service, k string) error {
			_, err := s.GenerateMac(ops.GenerateMacInput{KeyIdentifier: k, MessageData: data, Attributes: ops.MacAttributes{Algorithm: ops.MacISO9797Alg3}})
			return err
		}},
		{"AES-256 data", sym(keyspec.D0, keyspec.AES256, encDec), func(s *ops.Service, k string) error {
			_, _, err := s.AppendEncryptData(nil, ops.EncryptDataInput{KeyIdentifier: k, PlainText: data,
				Attributes: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeECB, Padding: ops.PaddingNone}}})
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			svc := opstest.New(t)
			keys := make([]string, n)
			for i := range keys {
				keys[i] = createKey(t, svc, c.attrs)
			}
			ops.DropWorkingKeys(svc)
			heap := func() uint64 {
				runtime.GC()
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				return m.HeapAlloc
			}
			before := heap()
			for _, k := range keys {
				if err := c.use(svc, k); err != nil {
					t.Fatal(err)
				}
			}
			after := heap()
			if st := svc.CacheStats(); st.Entries != n {
				t.Fatalf("%d keys cached of %d opened", st.Entries, n)
			}
			perKey := (int64(after) - int64(before)) / n
			t.Logf("%d bytes of heap per cached key (allowance %d)", perKey, ops.WorkingKeyHeap)
			if perKey > ops.WorkingKeyHeap || perKey <= 0 {
				t.Fatalf("a cached key takes %d bytes of heap, allowance %d", perKey, ops.WorkingKeyHeap)
			}
			runtime.KeepAlive(svc)
		})
	}
}
