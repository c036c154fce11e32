package pinverify

import "testing"

// FuzzIBM3624 feeds arbitrary parameters: no panic, and whenever an offset is
// produced, the PIN it was made from verifies against it.
func FuzzIBM3624(f *testing.F) {
	f.Add("1234567890123456", "1122334455667788", byte('F'), []byte("1234"))
	f.Add("", "", byte(0), []byte{})
	f.Fuzz(func(t *testing.T, table, vd string, pad byte, pin []byte) {
		k := pvk(t)
		p := IBM3624{DecTable: table, ValidationData: vd, Pad: pad}
		off, err := p.Offset(k, pin)
		if err != nil {
			return
		}
		if ok, err := p.Verify(k, pin, off); !ok || err != nil {
			t.Fatalf("offset does not verify: %v", err)
		}
	})
}
