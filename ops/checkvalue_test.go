package ops_test

import (
	"testing"

	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// TestFullCheckValue checks the 16-digit (payShield KCV type 0) check value
// against published values and OpenSSL:
//   - TDES 0123456789ABCDEFFEDCBA9876543210: E(K, 0^64) = 08D7B4FB629D0885
//     (psec tests/test_des.py test_tdea_2_ede; OpenSSL: printf '\0\0\0\0\0\0\0\0'
//     | openssl enc -des-ede -nopad -K 0123456789ABCDEFFEDCBA9876543210);
//     its 6-digit KCV 08D7B4 is the user guide's.
//   - AES-128 FA36E44278DB3AB5F298F9F7DA8F1F88: ANSI X9.143:2021 example
//     8.5 publishes its 5-byte CMAC KCV D77F007724 (KP block, as reproduced
//     in openemv/tr31 test/tr31_decrypt_test.c); the 8-byte value is
//     `openssl mac -cipher AES-128-CBC -macopt hexkey:KEY CMAC` of 16 zero
//     bytes. (opstest.Import's RSA-3072 path cannot carry an AES-256 key.)
func TestFullCheckValue(t *testing.T) {
	svc := opstest.New(t)
	for _, tc := range []struct {
		name, key, want string
		alg             keyspec.Algorithm
	}{
		{"TDES 2-key", "0123456789ABCDEFFEDCBA9876543210", "08D7B4FB629D0885", keyspec.TDES2Key},
		{"TDES 3-key, K1=K3", "0123456789ABCDEFFEDCBA98765432100123456789ABCDEF", "08D7B4FB629D0885", keyspec.TDES3Key},
		{"AES-128 X9.143 8.5", "FA36E44278DB3AB5F298F9F7DA8F1F88", "D77F00772471EC6B", keyspec.AES128},
	} {
		t.Run(tc.name, func(t *testing.T) {
			arn := opstest.Import(t, svc, keyspec.Attributes{Usage: keyspec.K0, Class: keyspec.Symmetric, Algorithm: tc.alg,
				Modes: keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}, tc.key)
			w, err := svc.Working(arn, fault.SubjectKey, fault.SideNone)
			if err != nil {
				t.Fatal(err)
			}
			b, err := ops.FullCheckValue(w)
			got := hx(b)
			if err != nil || got != tc.want {
				t.Fatalf("FullCheckValue = %q, %v; want %s", got, err, tc.want)
			}
			if got[:6] != w.KCV() {
				t.Errorf("first 6 digits %s differ from the key's KCV %s", got[:6], w.KCV())
			}
		})
	}
}
