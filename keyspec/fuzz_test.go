package keyspec

import (
	"testing"
)

// FuzzParse feeds arbitrary strings to every enum parser and the TR-31 usage
// parser: no panics, and whatever is accepted round-trips.
func FuzzParse(f *testing.F) {
	for _, s := range append(append([]string{"", "P0", "K3", "B1", "\xff\xfe"}, modelUsages...), modelAlgorithms...) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if u, ok := ParseKeyUsage(s); ok && (string(u) != s || u.TR31() == "") {
			t.Fatalf("ParseKeyUsage(%q) = %q", s, u)
		}
		if u, ok := ParseDeriveKeyUsage(s); ok && string(u) != s {
			t.Fatalf("ParseDeriveKeyUsage(%q) = %q", s, u)
		}
		if a, ok := ParseAlgorithm(s); ok && (string(a) != s || a.TR31() == 0 || Strength(a) == 0) {
			t.Fatalf("ParseAlgorithm(%q) = %q", s, a)
		}
		if c, ok := ParseClass(s); ok && string(c) != s {
			t.Fatalf("ParseClass(%q) = %q", s, c)
		}
		if k, ok := ParseKCVAlgorithm(s); ok && string(k) != s {
			t.Fatalf("ParseKCVAlgorithm(%q) = %q", s, k)
		}
		if e, ok := ParseExportability(s); ok && (string(e) != s || e.TR31() == 0) {
			t.Fatalf("ParseExportability(%q) = %q", s, e)
		}
		if u, ok := UsageFromTR31(s); ok && u.TR31() != s {
			t.Fatalf("UsageFromTR31(%q) = %s", s, u)
		}
	})
}

// FuzzTR31Header decodes arbitrary key block header fields: no panics, and
// anything accepted re-encodes to the same bytes.
func FuzzTR31Header(f *testing.F) {
	f.Add("K3", byte('E'), byte('X'), byte('E'), 32, "")
	f.Add("M7", byte('H'), byte('C'), byte('S'), 32, "21")
	f.Add("P0", byte('T'), byte('T'), byte('N'), 16, "")
	f.Add("B1", byte('T'), byte('Y'), byte('Q'), -5, "10")
	f.Fuzz(func(t *testing.T, usage string, alg, mode, exp byte, keyLen int, hm string) {
		if u, ok := UsageFromTR31(usage); ok && u.TR31() != usage {
			t.Fatalf("usage %q -> %s", usage, u)
		}
		if a, err := AlgorithmFromTR31(alg, keyLen, hm); err == nil {
			if a.TR31() != alg || a.TR31HMACHash() != hm {
				t.Fatalf("algorithm %q/%d/%q -> %s", alg, keyLen, hm, a)
			}
			if a.IsSymmetric() && !a.IsHMAC() && a.KeyLen() != keyLen {
				t.Fatalf("algorithm %q/%d -> %s of %d bytes", alg, keyLen, a, a.KeyLen())
			}
		}
		if m, err := ModesFromTR31(mode); err == nil {
			if back, err := m.TR31(); err != nil || back != mode {
				t.Fatalf("mode %q -> %s -> %q, %v", mode, m, back, err)
			}
		}
		if e, err := ExportabilityFromTR31(exp); err == nil && e.TR31() != exp {
			t.Fatalf("exportability %q -> %s", exp, e)
		}
	})
}

// FuzzValidate: arbitrary attributes never panic, rejections are Validation
// faults, and accepted attributes can be written into a TR-31 header.
func FuzzValidate(f *testing.F) {
	f.Add("TR31_P0_PIN_ENCRYPTION_KEY", "SYMMETRIC_KEY", "AES_128", uint16(15), "")
	f.Add("TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT", "ASYMMETRIC_KEY_PAIR", "ECC_NIST_P256", uint16(128), "TR31_K1_KEY_BLOCK_PROTECTION_KEY")
	f.Add("TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE", "PUBLIC_KEY", "RSA_4096", uint16(64), "")
	f.Fuzz(func(t *testing.T, usage, class, alg string, bits uint16, dku string) {
		a := Attributes{Usage: KeyUsage(usage), Class: Class(class), Algorithm: Algorithm(alg), Modes: modesFromBits(int(bits) & 511)}
		for _, validate := range []func(Attributes, KeyUsage) error{ValidateCreate, ValidateImport} {
			err := validate(a, KeyUsage(dku))
			if err != nil {
				checkValidationFault(t, err)
				continue
			}
			if _, err := a.Modes.TR31(); err != nil || a.Usage.TR31() == "" || a.Algorithm.TR31() == 0 {
				t.Fatalf("accepted %+v has no TR-31 header: %v", a, err)
			}
		}
		_ = SupportedForOperations(a)
	})
}
