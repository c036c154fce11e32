package custody

import (
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"testing"
)

// TestKDFCounterCMAC checks the SP 800-108 counter-mode KDF against NIST's
// ACVP KDF (SP 800-108) test vectors: test group 263 (CMAC-AES256, counter
// mode, 32-bit counter before the fixed data, 1024-bit output), test case
// 525 (usnistgov/ACVP-Server, gen-val/json-files/KDF-1.0). The fixed data
// of a vector is opaque, so it exercises exactly the counter and CMAC
// chaining AuditKey uses.
func TestKDFCounterCMAC(t *testing.T) {
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	key := unhex("BFB99C6AAB859A9873ACC9880BD875BB83A8B24A9307576A054216908756BE5B")
	fixed := unhex("CD9B9791F5EEE211918BA1E2B01B4E29")
	want := unhex("C303887FB0ACA8E78DEBB8A008E75C88C26E927F0FA8A1DF1614C97E1B6F78B35C8F8A1CB9CD9F18DC30D06C73B75FDEA5A636ACB92F690FC6CB060F0A3DB66E759E30097C297E56C59DB8E17FF2656A8520D7309307B8E161B091FDDAF375B34E2EB8084D2832621C37BB67F09AAB29F3E467F422270B237D9B5AEBAD2D1F05")
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{len(want), 32, 20} {
		if got := kdfCounterCMAC(b, fixed, n); !bytes.Equal(got, want[:n]) {
			t.Errorf("%d bytes: %X\nwant %X", n, got, want[:n])
		}
	}
}
