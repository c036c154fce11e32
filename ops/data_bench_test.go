package ops_test

import (
	"strings"
	"testing"

	"payhsm/keyspec"
	"payhsm/ops"
	"payhsm/ops/opstest"
)

// Hot-path benchmarks: one operation per iteration through the service,
// keys cached after the first use (no Pebble, no PKCS#11).
func BenchmarkDataPlane(b *testing.B) {
	svc := opstest.New(b)
	aesKey := opstest.Import(b, svc, sym(keyspec.D0, keyspec.AES128, encDec), "2B7E151628AED2A6ABF7158809CF4F3C")
	tdesKey := opstest.Import(b, svc, sym(keyspec.D0, keyspec.TDES3Key, encDec), "0123456789ABCDEFFEDCBA987654321089ABCDEF01234567")
	tdesBDK := opstest.Import(b, svc, sym(keyspec.B0, keyspec.TDES2Key, derive), "0123456789ABCDEFFEDCBA9876543210")
	aesBDK := opstest.Import(b, svc, sym(keyspec.B0, keyspec.AES128, derive), "FEDCBA9876543210F1F1F1F1F1F1F1F1")
	m3 := opstest.Import(b, svc, sym(keyspec.M3, keyspec.TDES2Key, genVer), "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
	m6 := opstest.Import(b, svc, sym(keyspec.M6, keyspec.AES128, genVer), "2B7E151628AED2A6ABF7158809CF4F3C")
	m7 := createKey(b, svc, sym(keyspec.M7, keyspec.HMACSHA256, genVer))
	e1 := opstest.Import(b, svc, sym(keyspec.E1, keyspec.TDES2Key, derive), emvIMKSMC)
	e2 := opstest.Import(b, svc, sym(keyspec.E2, keyspec.TDES2Key, derive), emvIMKSMI)
	kek := opstest.Import(b, svc, sym(keyspec.K1, keyspec.AES128, encDec), dynKEKAES)
	wrapped := &ops.DynamicKey{Tr31KeyBlock: dynWrap(b, dynKEKAES, "D0", 'A', 'B', sp80038A)}
	// The inputs are decoded once, as an edge hands them over.
	data := hb(strings.Repeat("A5", 64))
	tdesKSN, aesKSN := hb("FFFF9876543210E003FF"), hb("12345678901234560000FFFF")
	emvA := emvCipher(ops.EmvOptionA, emvPAN, ops.ModeCBC, "")
	emvB := emvCipher(ops.EmvOptionB, "1234567890123456789", ops.ModeCBC, "")
	emvCommon, emv2000 := emvMacAttrs(ops.EmvCommon, emvR, ""), emvMacAttrs(ops.EmvEMV2000, "", "FFFF")
	cases := []struct {
		name string
		f    func() error
	}{
		{"EncryptData/AES128-CBC-64B", func() error {
			_, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: aesKey, PlainText: data, Attributes: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC}}})
			return err
		}},
		{"EncryptData/TDES3-CBC-64B", func() error {
			_, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: tdesKey, PlainText: data, Attributes: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC}}})
			return err
		}},
		{"EncryptData/EMV-optionA-CBC-64B", func() error {
			_, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: e1, PlainText: data, Attributes: emvA})
			return err
		}},
		{"EncryptData/EMV-optionB-19digit-CBC-64B", func() error {
			_, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: e1, PlainText: data, Attributes: emvB})
			return err
		}},
		{"EncryptData/WrappedKey-AES128-CBC-64B", func() error {
			_, err := svc.EncryptData(ops.EncryptDataInput{KeyIdentifier: kek, PlainText: data, Attributes: ops.DataCipher{Symmetric: &ops.SymmetricCipher{Mode: ops.ModeCBC}}, WrappedKey: wrapped})
			return err
		}},
		{"DecryptData/TDES-DUKPT-64B", func() error {
			_, err := svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: tdesBDK, CipherText: data, Attributes: ops.DataCipher{Dukpt: &ops.DukptCipher{KSN: tdesKSN}}})
			return err
		}},
		{"DecryptData/AES-DUKPT-64B", func() error {
			_, err := svc.DecryptData(ops.DecryptDataInput{KeyIdentifier: aesBDK, CipherText: data, Attributes: ops.DataCipher{Dukpt: &ops.DukptCipher{KSN: aesKSN}}})
			return err
		}},
		{"GenerateMac/ISO9797-3-64B", func() error {
			_, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: m3, MessageData: data, Attributes: ops.MacAttributes{Algorithm: ops.MacISO9797Alg3}})
			return err
		}},
		{"GenerateMac/CMAC-AES-64B", func() error {
			_, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: m6, MessageData: data, Attributes: ops.MacAttributes{Algorithm: ops.MacCMAC}})
			return err
		}},
		{"GenerateMac/HMAC-SHA256-64B", func() error {
			_, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: m7, MessageData: data, Attributes: ops.MacAttributes{Algorithm: ops.MacHMAC}})
			return err
		}},
		{"GenerateMac/EmvMac-common-64B", func() error {
			_, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: e2, MessageData: data, Attributes: emvCommon})
			return err
		}},
		{"GenerateMac/EmvMac-EMV2000-64B", func() error {
			_, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: e2, MessageData: data, Attributes: emv2000})
			return err
		}},
		{"GenerateMac/DUKPT-ISO9797-3-64B", func() error {
			_, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: tdesBDK, MessageData: data, Attributes: ops.MacAttributes{DukptIso9797Algorithm3: &ops.DukptMac{KSN: tdesKSN, Variant: ops.DukptRequest}}})
			return err
		}},
		{"GenerateMac/DUKPT-CMAC-AES-64B", func() error {
			_, err := svc.GenerateMac(ops.GenerateMacInput{KeyIdentifier: aesBDK, MessageData: data, Attributes: ops.MacAttributes{DukptCmac: &ops.DukptMac{KSN: aesKSN, Variant: ops.DukptRequest}}})
			return err
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if err := c.f(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := c.f(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
