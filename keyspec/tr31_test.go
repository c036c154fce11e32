package keyspec

import (
	"strings"
	"testing"
)

// X9.143 key usage codes, written out from ANSI X9.143:2021 6.3.1 table 2 (as
// listed in openemv/tr31 src/tr31.h) for the usages the AWS model names.
func TestUsageTR31(t *testing.T) {
	t.Parallel()
	want := map[KeyUsage]string{
		B0: "B0", C0: "C0", D0: "D0", D1: "D1", E0: "E0", E1: "E1", E2: "E2", E4: "E4", E5: "E5", E6: "E6",
		K0: "K0", K1: "K1", K2: "K2", K3: "K3", M0: "M0", M1: "M1", M3: "M3", M6: "M6", M7: "M7",
		P0: "P0", P1: "P1", S0: "S0", V1: "V1", V2: "V2",
	}
	for _, s := range modelUsages {
		u := KeyUsage(s)
		code, ok := want[u]
		if !ok {
			t.Fatalf("no expected code for %s", u)
		}
		if got := u.TR31(); got != code {
			t.Errorf("%s.TR31() = %q, want %q", u, got, code)
		}
		if !strings.HasPrefix(s, "TR31_"+code+"_") {
			t.Errorf("%s does not embed its code %s", s, code)
		}
		if back, ok := UsageFromTR31(code); !ok || back != u {
			t.Errorf("UsageFromTR31(%q) = %s, %v; want %s", code, back, ok, u)
		}
	}
	// X9.143 codes without an AWS usage, and malformed input.
	for _, code := range []string{"B1", "B2", "B3", "D2", "D3", "E3", "E7", "I0", "K4", "M2", "M4", "M5", "M8",
		"S1", "S2", "V0", "V3", "V4", "V5", "", "P", "P00", "p0", "TR31_P0_PIN_ENCRYPTION_KEY", "\x00\x00"} {
		if u, ok := UsageFromTR31(code); ok {
			t.Errorf("UsageFromTR31(%q) = %s", code, u)
		}
	}
	if got := KeyUsage("TR31_Z9_FOO").TR31(); got != "" {
		t.Errorf("unknown usage TR31() = %q", got)
	}
}

// X9.143:2021 6.3.3 table 4 mode-of-use codes and the APC KeyModesOfUse they
// stand for (the user guide's export table: "Generate and Verify (C)",
// "Encrypt/Decrypt/Wrap/Unwrap (B)"; "key purpose K3 and mode of use X").
var tr31Modes = map[byte]ModesOfUse{
	'B': {Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true},
	'C': {Generate: true, Verify: true},
	'D': {Decrypt: true, Unwrap: true},
	'E': {Encrypt: true, Wrap: true},
	'G': {Generate: true},
	'N': {NoRestrictions: true},
	'S': {Sign: true},
	'V': {Verify: true},
	'X': {DeriveKey: true},
}

func TestModesTR31(t *testing.T) {
	t.Parallel()
	for code, m := range tr31Modes {
		got, err := ModesFromTR31(code)
		if err != nil || got != m {
			t.Errorf("ModesFromTR31(%q) = %s, %v; want %s", code, got, err, m)
		}
		back, err := m.TR31()
		if err != nil || back != code {
			t.Errorf("%s.TR31() = %q, %v; want %q", m, back, err, code)
		}
	}
	// Every one of the 512 combinations either has exactly the code above or is refused.
	for b := range 512 {
		m := modesFromBits(b)
		code, err := m.TR31()
		var want byte
		for c, mm := range tr31Modes {
			if mm == m {
				want = c
			}
		}
		if (err == nil) != (want != 0) || code != want {
			t.Errorf("%s.TR31() = %q, %v; want %q", m, code, err, want)
		}
	}
	for _, code := range []byte{'T', 'Y'} {
		if _, err := ModesFromTR31(code); err == nil || !strings.Contains(err.Error(), "not supported") {
			t.Errorf("ModesFromTR31(%q) = %v, want a refusal with its reason", code, err)
		}
	}
	for b := range 256 {
		if _, ok := tr31Modes[byte(b)]; ok || b == 'T' || b == 'Y' {
			continue
		}
		if _, err := ModesFromTR31(byte(b)); err == nil {
			t.Errorf("ModesFromTR31(%q) accepted", byte(b))
		}
	}
}

// X9.143:2021 6.3.5 table 6; the user guide's export table ("N - No
// Exportability, E - Export according to X9.24, S - ... non-key block formats").
func TestExportabilityTR31(t *testing.T) {
	t.Parallel()
	want := map[Exportability]byte{"EXPORTABLE": 'E', "NON_EXPORTABLE": 'N', "SENSITIVE": 'S'}
	for _, s := range modelExportability {
		e := Exportability(s)
		if got := e.TR31(); got != want[e] {
			t.Errorf("%s.TR31() = %q, want %q", e, got, want[e])
		}
		if back, err := ExportabilityFromTR31(want[e]); err != nil || back != e {
			t.Errorf("ExportabilityFromTR31(%q) = %s, %v", want[e], back, err)
		}
	}
	for b := range 256 {
		if b == 'E' || b == 'N' || b == 'S' {
			continue
		}
		if _, err := ExportabilityFromTR31(byte(b)); err == nil {
			t.Errorf("ExportabilityFromTR31(%q) accepted", byte(b))
		}
	}
	if Exportability("").TR31() != 0 {
		t.Error("unknown exportability has a code")
	}
}

// X9.143:2021 6.3.2 table 3 algorithm codes; HM block values from 6.3.6.5
// table 13 and the user guide's "Common Headers" table.
func TestAlgorithmTR31(t *testing.T) {
	t.Parallel()
	codes := map[Algorithm]byte{
		TDES2Key: 'T', TDES3Key: 'T', AES128: 'A', AES192: 'A', AES256: 'A',
		HMACSHA224: 'H', HMACSHA256: 'H', HMACSHA384: 'H', HMACSHA512: 'H',
		RSA2048: 'R', RSA3072: 'R', RSA4096: 'R', ECCP256: 'E', ECCP384: 'E', ECCP521: 'E',
	}
	hm := map[Algorithm]string{HMACSHA224: "20", HMACSHA256: "21", HMACSHA384: "22", HMACSHA512: "23"}
	// Key lengths in bytes: clear key for symmetric, modulus for RSA, field element for ECC.
	lens := map[Algorithm]int{TDES2Key: 16, TDES3Key: 24, AES128: 16, AES192: 24, AES256: 32,
		HMACSHA224: 28, HMACSHA256: 32, HMACSHA384: 48, HMACSHA512: 64,
		RSA2048: 256, RSA3072: 384, RSA4096: 512, ECCP256: 32, ECCP384: 48, ECCP521: 66}
	for _, s := range modelAlgorithms {
		a := Algorithm(s)
		if got := a.TR31(); got != codes[a] {
			t.Errorf("%s.TR31() = %q, want %q", a, got, codes[a])
		}
		if got := a.TR31HMACHash(); got != hm[a] {
			t.Errorf("%s.TR31HMACHash() = %q, want %q", a, got, hm[a])
		}
		back, err := AlgorithmFromTR31(codes[a], lens[a], hm[a])
		if err != nil || back != a {
			t.Errorf("AlgorithmFromTR31(%q, %d, %q) = %s, %v; want %s", codes[a], lens[a], hm[a], back, err, a)
		}
	}
	if Algorithm("DES").TR31() != 0 {
		t.Error("unknown algorithm has a code")
	}
	for _, c := range []struct {
		alg    byte
		keyLen int
		hm     string
		want   Algorithm // "" = refused
		words  string
	}{
		{'T', 8, "", "", "single-length DES"},
		{'T', 32, "", "", "not valid"},
		{'T', 0, "", "", "not valid"},
		{'A', 8, "", "", "not valid"},
		{'A', 64, "", "", "not valid"},
		{'A', 16, "21", "", "HM optional block is only valid for HMAC"},
		{'T', 16, "20", "", "HM optional block"},
		{'H', 32, "", "", "need an HM optional block"},
		{'H', 32, "10", "", "SHA-1"},
		{'H', 32, "25", "", "SHA-512/256"},
		{'H', 32, "31", "", "SHA3-256"},
		{'H', 32, "40", "", "SHAKE128"},
		{'H', 32, "99", "", "unknown HM"},
		{'H', 32, "2", "", "unknown HM"},
		{'H', 15, "21", "", "outside 16..64"},
		{'H', 16, "21", HMACSHA256, ""},
		{'H', 64, "21", HMACSHA256, ""},
		{'H', 65, "21", "", "outside 16..64"},
		{'H', 64, "20", HMACSHA224, ""},
		{'H', 128, "23", HMACSHA512, ""},
		{'H', 129, "22", "", "outside 16..128"},
		{'H', -1, "22", "", "outside"},
		{'R', 128, "", "", "not valid"},
		{'E', 65, "", "", "not valid"},
		{'D', 8, "", "", "single DES"},
		{'S', 128, "", "", "DSA"},
		{'Z', 16, "", "", "unknown key block algorithm"},
		{0, 16, "", "", "unknown key block algorithm"},
	} {
		got, err := AlgorithmFromTR31(c.alg, c.keyLen, c.hm)
		if c.want != "" {
			if err != nil || got != c.want {
				t.Errorf("AlgorithmFromTR31(%q, %d, %q) = %s, %v; want %s", c.alg, c.keyLen, c.hm, got, err, c.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.words) {
			t.Errorf("AlgorithmFromTR31(%q, %d, %q) = %s, %v; want error with %q", c.alg, c.keyLen, c.hm, got, err, c.words)
		}
	}
}

// Key block headers printed in the user guide (line numbers of the guide
// text). Bytes 5-6 are the key usage, 7 the algorithm, 8 the mode of use,
// 9-10 the key version and 11 the exportability (X9.143:2021 6.2 table 1).
func TestGuideKeyBlockHeaders(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		header string
		src    string
		keyLen int
		want   Attributes
		exp    Exportability
		held   bool
	}{
		{"D0144K3EX00E0000", "ECDH import, HSM key pair header, line 1916", 32,
			Attributes{K3, PublicKey, ECCP256, ModesOfUse{DeriveKey: true}}, Exportable, true},
		{"D0112K1TB00E0000", "ECDH import key block, line 1962", 24,
			Attributes{K1, Symmetric, TDES3Key, ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}, Exportable, true},
		{"D0112B0AX00E0000", "TR-31 import, line 2158", 16,
			Attributes{B0, Symmetric, AES128, ModesOfUse{DeriveKey: true}}, Exportable, true},
		{"D0144K0AB00E0000", "TR-31 export, line 2691", 32,
			Attributes{K0, Symmetric, AES256, ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}, Exportable, true},
		{"D0112D0TN00E0000", "decrypt with wrapped key, line 7153", 16,
			Attributes{D0, Symmetric, TDES2Key, ModesOfUse{NoRestrictions: true}}, Exportable, true},
		{"D0112P0TB00S0000", "translate PIN with wrapped key, line 7181", 16,
			Attributes{P0, Symmetric, TDES2Key, ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}, Sensitive, true},
		{"B0096B1TX00S0000", "IPEK export, line 2739 (B1 is not a held usage)", 16, Attributes{}, Sensitive, false},
	} {
		h := c.header
		u, ok := UsageFromTR31(h[5:7])
		if ok != c.held {
			t.Errorf("%s (%s): UsageFromTR31(%q) = %s, %v", h, c.src, h[5:7], u, ok)
			continue
		}
		exp, err := ExportabilityFromTR31(h[11])
		if err != nil || exp != c.exp {
			t.Errorf("%s: exportability %s, %v; want %s", h, exp, err, c.exp)
		}
		if !c.held {
			continue
		}
		alg, err := AlgorithmFromTR31(h[7], c.keyLen, "")
		if err != nil {
			t.Errorf("%s: %v", h, err)
			continue
		}
		modes, err := ModesFromTR31(h[8])
		if err != nil {
			t.Errorf("%s: %v", h, err)
			continue
		}
		got := Attributes{Usage: u, Class: c.want.Class, Algorithm: alg, Modes: modes}
		if got != c.want {
			t.Errorf("%s (%s) = %+v, want %+v", h, c.src, got, c.want)
		}
		if err := ValidateImport(got, ""); err != nil {
			t.Errorf("%s (%s): ValidateImport = %v", h, c.src, err)
		}
		// And back to the header fields.
		m, err := got.Modes.TR31()
		if err != nil || got.Usage.TR31() != h[5:7] || got.Algorithm.TR31() != h[7] || m != h[8] || exp.TR31() != h[11] {
			t.Errorf("%s: re-encoded as %s %c %c %c (%v)", h, got.Usage.TR31(), got.Algorithm.TR31(), m, exp.TR31(), err)
		}
	}
}
