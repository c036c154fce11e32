package keyspec

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"payhsm/fault"
)

// This file checks the rules against an independent reading of the user
// guide's key-attribute table: testdata/guide_key_attributes.txt is the
// section copied verbatim, parsed here with nothing but string handling. The
// implementation's own tables are never consulted to build expectations.

// guideRow is one usage of the guide's table as written.
type guideRow struct {
	symmetric   bool
	algs        []Algorithm
	starred     []Algorithm
	modes       []ModesOfUse
	importModes []ModesOfUse // the NOTE lines: only valid option on public-key import
}

// The guide's E0 name has a typo ("CRYPTGRAMS"); the model's enum is authoritative.
var guideNameFixes = map[string]string{
	"TR31_E0_EMV_MKEY_APP_CRYPTGRAMS": "TR31_E0_EMV_MKEY_APP_CRYPTOGRAMS",
}

var braceSet = regexp.MustCompile(`\{[^}]*\}`)

func parseGuideModes(t *testing.T, s string) []ModesOfUse {
	t.Helper()
	var out []ModesOfUse
	for _, set := range braceSet.FindAllString(s, -1) {
		var m ModesOfUse
		for _, term := range strings.Split(strings.Trim(set, "{}"), ",") {
			name, val, ok := strings.Cut(term, "=")
			if !ok || strings.TrimSpace(val) != "true" {
				t.Fatalf("unparsed mode term %q in %q", term, s)
			}
			switch strings.TrimSpace(name) {
			case "Encrypt":
				m.Encrypt = true
			case "Decrypt":
				m.Decrypt = true
			case "Wrap":
				m.Wrap = true
			case "Unwrap":
				m.Unwrap = true
			case "Generate":
				m.Generate = true
			case "Sign":
				m.Sign = true
			case "Verify":
				m.Verify = true
			case "DeriveKey":
				m.DeriveKey = true
			case "NoRestrictions":
				m.NoRestrictions = true
			default:
				t.Fatalf("unknown mode %q in %q", name, s)
			}
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		t.Fatalf("no modes in %q", s)
	}
	return out
}

func loadGuide(t *testing.T) map[KeyUsage]*guideRow {
	t.Helper()
	text, err := os.ReadFile("testdata/guide_key_attributes.txt")
	if err != nil {
		t.Fatal(err)
	}
	const algMark = "**Allowed Key Algorithms:**"
	const modeMark = "**Allowed combination of key modes of use:**"
	rows := map[KeyUsage]*guideRow{}
	var cur *guideRow
	symmetric := false
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "#"):
		case line == "Symmetric Keys":
			symmetric = true
		case line == "Asymmetric Keys":
			symmetric = false
		case strings.HasPrefix(line, "- TR31_"):
			name := strings.TrimPrefix(line, "- ")
			if fixed, ok := guideNameFixes[name]; ok {
				name = fixed
			}
			cur = &guideRow{symmetric: symmetric}
			rows[KeyUsage(name)] = cur
		case strings.Contains(line, algMark):
			_, list, _ := strings.Cut(line, algMark)
			for _, s := range strings.Split(list, ",") {
				s = strings.TrimSpace(s)
				star := strings.HasSuffix(s, "*")
				a := Algorithm(strings.TrimSuffix(s, "*"))
				cur.algs = append(cur.algs, a)
				if star {
					cur.starred = append(cur.starred, a)
				}
			}
		case strings.Contains(line, modeMark):
			_, list, _ := strings.Cut(line, modeMark)
			cur.modes = append(cur.modes, parseGuideModes(t, list)...)
		case strings.Contains(line, "is the only valid option when importing"):
			cur.importModes = parseGuideModes(t, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// expectedRules is the guide's table with this package's documented decisions
// applied (see the comment at the top of rules.go), each one spelled out here.
func expectedRules(t *testing.T) map[KeyUsage]*guideRow {
	rows := loadGuide(t)
	if len(rows) != 22 {
		t.Fatalf("guide excerpt has %d usages, want 22", len(rows))
	}
	// M7: the HMAC examples, not the table's TDES/AES list.
	rows[M7].algs = []Algorithm{"HMAC_SHA224", "HMAC_SHA256", "HMAC_SHA384", "HMAC_SHA512"}
	// K2: the stray { DeriveKey = true } line (copied from K3) is dropped.
	rows[K2].modes = slices.DeleteFunc(rows[K2].modes, func(m ModesOfUse) bool { return m == ModesOfUse{DeriveKey: true} })
	// M0: from the "Generate/Verify MAC" operations table, plus NoRestrictions.
	macModes := []ModesOfUse{{Generate: true}, {Verify: true}, {Generate: true, Verify: true}, {NoRestrictions: true}}
	rows[M0] = &guideRow{symmetric: true, algs: []Algorithm{"TDES_2KEY", "TDES_3KEY"}, modes: macModes}
	// P1: "Unused key types"; held with the PIN verification keys' rules.
	rows[P1] = &guideRow{symmetric: true, algs: rows[V2].algs, modes: macModes}
	return rows
}

// Public-key import expectations: the table's NOTE lines for D1, K2 and S0;
// S0 also ECC (CA certificates for ECDH, "Importing ECC public keys"); K3 from
// the "Import/Export Key" operations table.
func expectedImport(rows map[KeyUsage]*guideRow) map[KeyUsage]struct {
	algs  []Algorithm
	modes []ModesOfUse
} {
	ecc := []Algorithm{"ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521"}
	return map[KeyUsage]struct {
		algs  []Algorithm
		modes []ModesOfUse
	}{
		D1: {rows[D1].algs, rows[D1].importModes},
		K2: {rows[K2].algs, rows[K2].importModes},
		S0: {append(slices.Clone(rows[S0].algs), ecc...), rows[S0].importModes},
		K3: {ecc, []ModesOfUse{{DeriveKey: true}}},
	}
}

func modesFromBits(b int) ModesOfUse {
	return ModesOfUse{
		Encrypt: b&1 != 0, Decrypt: b&2 != 0, Wrap: b&4 != 0, Unwrap: b&8 != 0,
		Generate: b&16 != 0, Sign: b&32 != 0, Verify: b&64 != 0, DeriveKey: b&128 != 0,
		NoRestrictions: b&256 != 0,
	}
}

// modelUsages etc. are the model's enums, transcribed from
// payment-cryptography-2021-09-14.json (also compared with the file itself in
// TestEnumsMatchModel when it is present).
var (
	modelUsages = []string{"TR31_B0_BASE_DERIVATION_KEY", "TR31_C0_CARD_VERIFICATION_KEY",
		"TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY", "TR31_D1_ASYMMETRIC_KEY_FOR_DATA_ENCRYPTION",
		"TR31_E0_EMV_MKEY_APP_CRYPTOGRAMS", "TR31_E1_EMV_MKEY_CONFIDENTIALITY", "TR31_E2_EMV_MKEY_INTEGRITY",
		"TR31_E4_EMV_MKEY_DYNAMIC_NUMBERS", "TR31_E5_EMV_MKEY_CARD_PERSONALIZATION", "TR31_E6_EMV_MKEY_OTHER",
		"TR31_K0_KEY_ENCRYPTION_KEY", "TR31_K1_KEY_BLOCK_PROTECTION_KEY", "TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT",
		"TR31_M0_ISO_16609_MAC_KEY", "TR31_M3_ISO_9797_3_MAC_KEY", "TR31_M1_ISO_9797_1_MAC_KEY",
		"TR31_M6_ISO_9797_5_CMAC_KEY", "TR31_M7_HMAC_KEY", "TR31_P0_PIN_ENCRYPTION_KEY", "TR31_P1_PIN_GENERATION_KEY",
		"TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE", "TR31_V1_IBM3624_PIN_VERIFICATION_KEY",
		"TR31_V2_VISA_PIN_VERIFICATION_KEY", "TR31_K2_TR34_ASYMMETRIC_KEY"}
	modelDeriveKeyUsages = []string{"TR31_B0_BASE_DERIVATION_KEY", "TR31_C0_CARD_VERIFICATION_KEY",
		"TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY", "TR31_E0_EMV_MKEY_APP_CRYPTOGRAMS",
		"TR31_E1_EMV_MKEY_CONFIDENTIALITY", "TR31_E2_EMV_MKEY_INTEGRITY", "TR31_E4_EMV_MKEY_DYNAMIC_NUMBERS",
		"TR31_E5_EMV_MKEY_CARD_PERSONALIZATION", "TR31_E6_EMV_MKEY_OTHER", "TR31_K0_KEY_ENCRYPTION_KEY",
		"TR31_K1_KEY_BLOCK_PROTECTION_KEY", "TR31_M3_ISO_9797_3_MAC_KEY", "TR31_M1_ISO_9797_1_MAC_KEY",
		"TR31_M6_ISO_9797_5_CMAC_KEY", "TR31_M7_HMAC_KEY", "TR31_P0_PIN_ENCRYPTION_KEY",
		"TR31_P1_PIN_GENERATION_KEY", "TR31_V1_IBM3624_PIN_VERIFICATION_KEY", "TR31_V2_VISA_PIN_VERIFICATION_KEY"}
	modelAlgorithms = []string{"TDES_2KEY", "TDES_3KEY", "AES_128", "AES_192", "AES_256",
		"HMAC_SHA256", "HMAC_SHA384", "HMAC_SHA512", "HMAC_SHA224",
		"RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521"}
	modelClasses       = []string{"SYMMETRIC_KEY", "ASYMMETRIC_KEY_PAIR", "PRIVATE_KEY", "PUBLIC_KEY"}
	modelKCVAlgorithms = []string{"CMAC", "ANSI_X9_24", "HMAC", "SHA_1"}
	modelExportability = []string{"EXPORTABLE", "NON_EXPORTABLE", "SENSITIVE"}
)

// Every allowed combination of the guide's table is accepted by ValidateCreate.
func TestGuideTableAccepted(t *testing.T) {
	t.Parallel()
	rows := expectedRules(t)
	n := 0
	for u, r := range rows {
		if _, ok := ParseKeyUsage(string(u)); !ok {
			t.Errorf("guide usage %s is not a model KeyUsage", u)
			continue
		}
		class := Class("SYMMETRIC_KEY")
		if !r.symmetric {
			class = "ASYMMETRIC_KEY_PAIR"
		}
		var dku KeyUsage
		if u == "TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT" {
			dku = "TR31_K1_KEY_BLOCK_PROTECTION_KEY"
		}
		for _, alg := range r.algs {
			for _, m := range r.modes {
				a := Attributes{Usage: u, Class: class, Algorithm: alg, Modes: m}
				if err := ValidateCreate(a, dku); err != nil {
					t.Errorf("ValidateCreate(%+v) = %v, want accepted", a, err)
				}
				if r.symmetric {
					if err := ValidateImport(a, ""); err != nil {
						t.Errorf("ValidateImport(%+v) = %v, want accepted", a, err)
					}
				}
				// Every creatable key can be carried in a TR-31 key block.
				if _, err := m.TR31(); err != nil {
					t.Errorf("%s %s: modes %s have no TR-31 code: %v", u, alg, m, err)
				}
				n++
			}
		}
	}
	if n < 300 {
		t.Fatalf("only %d combinations checked", n)
	}
}

// ValidateCreate accepts exactly the guide's combinations: every usage ×
// class × algorithm × all 512 modes-of-use combinations.
func TestValidateCreateExhaustive(t *testing.T) {
	t.Parallel()
	rows := expectedRules(t)
	for _, us := range modelUsages {
		u := KeyUsage(us)
		r := rows[u]
		if r == nil {
			t.Fatalf("no expectation for %s", u)
		}
		var dku KeyUsage
		if u == "TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT" {
			dku = "TR31_K1_KEY_BLOCK_PROTECTION_KEY"
		}
		for _, cs := range modelClasses {
			for _, as := range modelAlgorithms {
				for b := range 512 {
					a := Attributes{Usage: u, Class: Class(cs), Algorithm: Algorithm(as), Modes: modesFromBits(b)}
					wantClass := "ASYMMETRIC_KEY_PAIR"
					if r.symmetric {
						wantClass = "SYMMETRIC_KEY"
					}
					want := cs == wantClass && slices.Contains(r.algs, a.Algorithm) && slices.Contains(r.modes, a.Modes)
					err := ValidateCreate(a, dku)
					if (err == nil) != want {
						t.Fatalf("ValidateCreate(%+v) = %v, want accepted=%v", a, err, want)
					}
					if err != nil {
						checkValidationFault(t, err)
					}
				}
			}
		}
	}
}

// ValidateImport: symmetric usages as for create; asymmetric ones only as
// public keys with the NOTE modes.
func TestValidateImportExhaustive(t *testing.T) {
	t.Parallel()
	rows := expectedRules(t)
	pub := expectedImport(rows)
	for _, us := range modelUsages {
		u := KeyUsage(us)
		r := rows[u]
		for _, cs := range modelClasses {
			for _, as := range modelAlgorithms {
				for b := range 512 {
					a := Attributes{Usage: u, Class: Class(cs), Algorithm: Algorithm(as), Modes: modesFromBits(b)}
					var want bool
					if r.symmetric {
						want = cs == "SYMMETRIC_KEY" && slices.Contains(r.algs, a.Algorithm) && slices.Contains(r.modes, a.Modes)
					} else {
						p := pub[u]
						want = cs == "PUBLIC_KEY" && slices.Contains(p.algs, a.Algorithm) && slices.Contains(p.modes, a.Modes)
					}
					err := ValidateImport(a, "")
					if (err == nil) != want {
						t.Fatalf("ValidateImport(%+v) = %v, want accepted=%v", a, err, want)
					}
					if err != nil {
						checkValidationFault(t, err)
					}
				}
			}
		}
	}
}

// SupportedForOperations is false exactly for the guide's "*" pairs, P1 and
// imported K3 (leaf) public keys.
func TestSupportedForOperations(t *testing.T) {
	t.Parallel()
	rows := expectedRules(t)
	for u, r := range rows {
		class := Class("SYMMETRIC_KEY")
		if !r.symmetric {
			class = "ASYMMETRIC_KEY_PAIR"
		}
		for _, alg := range r.algs {
			a := Attributes{Usage: u, Class: class, Algorithm: alg, Modes: r.modes[0]}
			want := !slices.Contains(r.starred, alg) && u != "TR31_P1_PIN_GENERATION_KEY"
			if got := SupportedForOperations(a); got != want {
				t.Errorf("SupportedForOperations(%s, %s) = %v, want %v", u, alg, got, want)
			}
		}
	}
	// The starred pairs, as the guide marks them.
	starred := map[KeyUsage][]Algorithm{}
	for u, r := range rows {
		if len(r.starred) > 0 {
			starred[u] = r.starred
		}
	}
	if len(starred) != 7 || len(starred["TR31_E0_EMV_MKEY_APP_CRYPTOGRAMS"]) != 4 || len(starred[C0]) != 3 {
		t.Errorf("starred pairs parsed from the guide: %v", starred)
	}
	for _, c := range []struct {
		a    Attributes
		want bool
	}{
		{Attributes{S0, PublicKey, RSA4096, mV}, true},
		{Attributes{S0, PublicKey, ECCP384, mV}, true},
		{Attributes{D1, PublicKey, RSA2048, mEW}, true},
		{Attributes{K3, PublicKey, ECCP256, mX}, false},
		{Attributes{K3, AsymmetricPair, ECCP256, mX}, true},
		{Attributes{K3, PrivateKey, ECCP256, mX}, false},
		{Attributes{P0, AsymmetricPair, AES128, mEDWU}, false},
		{Attributes{M7, Symmetric, AES128, mGV}, false},
		{Attributes{M7, Symmetric, HMACSHA256, mGV}, true},
		{Attributes{"TR31_X9_NOPE", Symmetric, AES128, mGV}, false},
	} {
		if got := SupportedForOperations(c.a); got != c.want {
			t.Errorf("SupportedForOperations(%+v) = %v, want %v", c.a, got, c.want)
		}
	}
}

// checkValidationFault fails the test unless err is a Validation fault
// about a subject.
func checkValidationFault(t *testing.T, err error) {
	t.Helper()
	var f *fault.Error
	if !errors.As(err, &f) || f.Kind != fault.Validation || f.Message == "" || f.Subject == fault.SubjectNone {
		t.Fatalf("error %v is not a Validation fault about a subject", err)
	}
}

// validationFault is err as a Validation fault about a subject, or fails the
// test.
func validationFault(t *testing.T, err error) *fault.Error {
	t.Helper()
	checkValidationFault(t, err)
	var f *fault.Error
	errors.As(err, &f)
	return f
}
