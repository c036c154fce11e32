package ops

import (
	"payhsm/fault"
	"payhsm/hsm/cmac"
)

// FullCheckValue returns the 8-byte (16-hexadecimal-digit) check value that
// payShield's "KCV type 0" (backwards-compatible KCV) reports for a
// symmetric key (payShield 10K host commands BU and KA: "calculated by
// encrypting 64 binary zeroes under the key; 16H or 6H depends upon the KCV
// type option"):
//
//   - TDES: all 8 bytes of the key's encryption of one all-zero block
//     (ANSI X9.24-1 encryption method, not truncated);
//   - AES: the leftmost 8 bytes of the AES-CMAC of one all-zero 16-byte
//     block (X9.24-1:2017 allows only the CMAC method for AES; the same
//     computation as the CMAC KCV and the X9.143 KC/KP blocks, less
//     truncated).
//
// The usual 6-digit KCV (WorkingKey.KCV) is its first 6 digits for TDES keys
// with the ANSI X9.24 KCV and for AES keys with the CMAC KCV. X9.24-1 caps a
// published check value at 24 bits (encryption method) or 40 bits (CMAC):
// the long form exists for switches that still compare 16 digits.
func FullCheckValue(w *WorkingKey) ([]byte, error) {
	if w.Block == nil {
		return nil, fault.Validationf("key %s is not a TDES or AES key: it has no block-cipher check value", w.ARN)
	}
	a := w.Record.Attributes.Algorithm
	switch {
	case a.IsTDES():
		z := make([]byte, 8)
		w.Block.Encrypt(z, z)
		return z, nil
	case a.IsAES():
		return cmac.Sum(w.Block, make([]byte, 16))[:8], nil
	}
	return nil, fault.Validationf("key %s is not a TDES or AES key: it has no block-cipher check value", w.ARN)
}
