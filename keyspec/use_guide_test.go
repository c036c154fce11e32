package keyspec

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// This file checks the key-use table against the user guide's "Valid keys
// for cryptographic operations" tables: testdata/guide_valid_keys.txt is the
// section copied verbatim from the guide (a PDF-to-text rendering: one table
// row per line, cells separated by tabs, words broken by spaces, rows broken
// across pages). It is parsed here with string handling only, with the
// extraction's and the guide's typos corrected by the listed fixes; the
// table is never consulted to build expectations. Then, for every Use:
//
//   - every key the guide's rows for it allow is allowed by the table, and
//   - every key that can exist (ValidateCreate or ValidateImport accepts it)
//     and the table allows is one the guide's rows allow,
//
// except the deliberate departures listed below as data, each with its
// reason; a departure that no longer applies fails the test too.

// guideSections are the section headings of the excerpt that hold tables.
var guideSections = []string{
	"GenerateCardData", "VerifyCardData",
	"GeneratePinData (for VISA/ABA schemes)", "GeneratePinData (for IBM3624)",
	"VerifyPinData (for VISA/ABA schemes)", "VerifyPinData (for IBM3624)",
	"Decrypt Data", "Encrypt Data", "Translate Pin Data", "Generate/Verify MAC",
	"GenerateMacEmvPinChange", "VerifyAuthRequestCryptogram", "Import/Export Key",
}

// guideUsageFixes correct key usage names as they read once the
// extraction's spaces are removed.
var guideUsageFixes = map[string]KeyUsage{
	"TR31_PO_PIN_ENCRYPTION_KEY":                    P0, // letter O for zero
	"TR31_V1_IIBM3624_PIN_VERIFICATION_KEY":         V1, // doubled I
	"TR31_E1_EMV_MKEY_CCONFIDENTIALITY":             E1, // doubled C
	"TR31_E0_EMV_MKEY_APP_CRYPTGRAMS":               E0, // the guide's typo (also in its key-attribute table)
	"TR31_S0_A_SYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE": S0, // stray underscore
	"TR31_D1_A_SYMMETRIC_KEY_FOR_DATA_ENCRYPTION":   D1, // stray underscore
	// The "MAC Key (Retail MAC)" row: ISO 9797-1 algorithm 3 is the model's
	// TR31_M3_ISO_9797_3_MAC_KEY; the row's "M1" is a copy of the row above.
	"TR31_M1_ISO_9797_3_MAC_KEY": M3,
}

// guideModesFixes correct modes-of-use cells. The Translate Pin Data
// outbound non-DUKPT row breaks across a page inside a set: the extraction
// closes the set before the break and carries "true, Unwrap = true }" to the
// next page.
var guideModesFixes = []struct{ from, to string }{
	{"Wrap = true } true, Unwrap = true }", "Wrap = true, Unwrap = true }"},
}

// guideModes is one allowed combination of a row, with the direction a
// "(export only)" or "(import only)" note restricts it to.
type guideModes struct {
	m    ModesOfUse
	only string // "", "export" or "import"
}

// guideUseRow is one row of a table (one "For ..." group of the IBM 3624
// rows): key is the row's descriptive cells and group, spaces removed.
type guideUseRow struct {
	section string
	key     string
	usages  []KeyUsage
	algs    []Algorithm
	modes   []guideModes
}

var (
	guideAlgRE   = regexp.MustCompile(`\b(TDES_[23]KEY|AES_(?:128|192|256)|HMAC_SHA(?:224|256|384|512)|RSA_(?:2048|3072|4096)|ECC_NIST_P(?:256|384|521))\b`)
	guideSetRE   = regexp.MustCompile(`\{[^{}]*\}(\s*\((export|import) only\))?`)
	guideGroupRE = regexp.MustCompile(`<p>For ([^<]*)</p>`)
	guideSpaceRE = regexp.MustCompile(`\s+`)
)

func loadGuideUses(t *testing.T) []guideUseRow {
	t.Helper()
	b, err := os.ReadFile("testdata/guide_valid_keys.txt")
	if err != nil {
		t.Fatal(err)
	}
	type rawRow struct {
		section        string
		cells          []string
		algCol, modCol int
	}
	var raws []*rawRow
	section, algCol, modCol := "", -1, -1
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
		case !strings.Contains(line, "\t"):
			if slices.Contains(guideSections, strings.TrimSpace(line)) {
				section, algCol, modCol = strings.TrimSpace(line), -1, -1
				seen[section] = true
			} else if strings.TrimSpace(line) == "Unused key types" {
				section = ""
			}
		case strings.Contains(line, "Allowed Key Algorithm"): // a header, repeated after each page break
			cells := strings.Split(line, "\t")
			algCol = slices.Index(cells, "Allowed Key Algorithm")
			modCol = slices.Index(cells, "Allowed combination of key modes of use")
		default:
			if section == "" || algCol < 0 || modCol < 0 {
				t.Fatalf("table row outside a section or before its header: %q", line)
			}
			cells := strings.Split(line, "\t")
			if strings.Contains(line, "TR31_") {
				raws = append(raws, &rawRow{section, cells, algCol, modCol})
				continue
			}
			// A row without a key usage continues the one before it.
			if len(raws) == 0 || raws[len(raws)-1].section != section {
				t.Fatalf("continuation without a row in %s: %q", section, line)
			}
			prev := raws[len(raws)-1]
			for i, c := range cells {
				if i < len(prev.cells) {
					prev.cells[i] += " " + c
				} else {
					prev.cells = append(prev.cells, c)
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, s := range guideSections {
		if !seen[s] {
			t.Fatalf("section %q not found", s)
		}
	}
	var rows []guideUseRow
	for _, r := range raws {
		var usages []KeyUsage
		var label []string
		for i, c := range r.cells {
			if i == r.algCol || i == r.modCol {
				continue
			}
			c = guideSpaceRE.ReplaceAllString(c, "")
			if !strings.Contains(c, "TR31_") {
				label = append(label, c)
				continue
			}
			if usages != nil {
				t.Fatalf("%s: two usage cells in %q", r.section, r.cells)
			}
			for _, name := range strings.Split(c, "TR31_")[1:] {
				name = "TR31_" + name
				u, ok := guideUsageFixes[name]
				if !ok {
					if u, ok = ParseKeyUsage(name); !ok {
						t.Fatalf("%s: %q is not a model KeyUsage (no fix listed)", r.section, name)
					}
				}
				usages = append(usages, u)
			}
		}
		var algs []Algorithm
		for _, m := range guideAlgRE.FindAllString(r.cells[r.algCol], -1) {
			algs = append(algs, Algorithm(m))
		}
		if len(algs) == 0 {
			t.Fatalf("%s: no algorithms in %q", r.section, r.cells[r.algCol])
		}
		text := r.cells[r.modCol]
		for _, fx := range guideModesFixes {
			text = strings.ReplaceAll(text, fx.from, fx.to)
		}
		groups := [][2]string{{"", text}}
		if locs := guideGroupRE.FindAllStringSubmatchIndex(text, -1); locs != nil {
			groups = nil
			for i, l := range locs {
				end := len(text)
				if i+1 < len(locs) {
					end = locs[i+1][0]
				}
				groups = append(groups, [2]string{"For" + guideSpaceRE.ReplaceAllString(text[l[2]:l[3]], ""), text[l[1]:end]})
			}
		}
		for _, g := range groups {
			row := guideUseRow{section: r.section, key: strings.Join(append(label, g[0]), "|"), usages: usages, algs: algs}
			for _, set := range guideSetRE.FindAllStringSubmatch(g[1], -1) {
				row.modes = append(row.modes, guideModes{parseGuideSet(t, set[0]), set[2]})
			}
			if len(row.modes) == 0 {
				t.Fatalf("%s %s: no modes of use in %q", r.section, row.key, g[1])
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// parseGuideSet parses one "{ Encrypt = true, Wrap=true }" set (and
// ignores a following "(export only)" note).
func parseGuideSet(t *testing.T, s string) ModesOfUse {
	t.Helper()
	body := s[strings.Index(s, "{")+1 : strings.Index(s, "}")]
	var m ModesOfUse
	for _, term := range strings.Split(body, ",") {
		name, val, ok := strings.Cut(term, "=")
		if !ok || strings.TrimSpace(val) != "true" {
			t.Fatalf("unparsed mode term %q in %q", term, s)
		}
		flag := map[string]*bool{"Encrypt": &m.Encrypt, "Decrypt": &m.Decrypt, "Wrap": &m.Wrap, "Unwrap": &m.Unwrap,
			"Generate": &m.Generate, "Sign": &m.Sign, "Verify": &m.Verify, "DeriveKey": &m.DeriveKey,
			"NoRestrictions": &m.NoRestrictions}[strings.TrimSpace(name)]
		if flag == nil {
			t.Fatalf("unknown mode %q in %q", name, s)
		}
		*flag = true
	}
	return m
}

// guideUseMap says which Uses each guide row rules: a row matches an entry
// of its section whose usage is the row's first usage ("" = any) and whose
// match is a substring of the row's key. Every row must match exactly one
// entry and every entry a row. Rows of rules that are not use-time key
// checks of this table map to no Use. borrowed lists Uses the row rules
// although its table is for another operation (see use.go).
var guideUseMap = []struct {
	section  string
	usage    KeyUsage
	match    string
	uses     []Use
	borrowed []Use
	only     string // the direction whose combinations apply ("import": skip "(export only)")
}{
	{"GenerateCardData", C0, "AMEX_CARD_SECURITY_CODE", []Use{UseGenerateCardAmexCSC1, UseGenerateCardAmexCSC2}, nil, ""},
	{"GenerateCardData", C0, "CARD_VERIFICATION_VALUE_1", []Use{UseGenerateCardCVV1, UseGenerateCardCVV2}, nil, ""},
	{"GenerateCardData", E6, "CARDHOLDER_AUTHENTICATION_VERIFICATION_VALUE", []Use{UseGenerateCardHolderVerification}, nil, ""},
	{"GenerateCardData", E4, "DYNAMIC_CARD_VERIFICATION_CODE", []Use{UseGenerateCardDynamicCode}, nil, ""},
	{"GenerateCardData", E6, "DYNAMIC_CARD_VERIFICATION_VALUE", []Use{UseGenerateCardDynamicValue}, nil, ""},
	{"VerifyCardData", C0, "AMEX_CARD_SECURITY_CODE", []Use{UseVerifyCardAmexCSC1, UseVerifyCardAmexCSC2}, nil, ""},
	{"VerifyCardData", C0, "CARD_VERIFICATION_VALUE_1", []Use{UseVerifyCardCVV1, UseVerifyCardCVV2}, nil, ""},
	{"VerifyCardData", E6, "CARDHOLDER_AUTHENTICATION_VERIFICATION_VALUE", []Use{UseVerifyCardHolderVerification}, nil, ""},
	{"VerifyCardData", E4, "DYNAMIC_CARD_VERIFICATION_CODE", []Use{UseVerifyCardDynamicCode}, nil, ""},
	{"VerifyCardData", E6, "DYNAMIC_CARD_VERIFICATION_VALUE", []Use{UseVerifyCardDynamicValue}, []Use{UseVerifyCardDiscoverDynamicCode}, ""},

	// VISA_PIN enciphers a new PIN; VISA_PIN_VERIFICATION_VALUE deciphers the given one.
	{"GeneratePinData (for VISA/ABA schemes)", P0, "PINEncryptionKey", []Use{UseGeneratePinEncipherPEK, UseGeneratePinDecipherPEK}, nil, ""},
	{"GeneratePinData (for VISA/ABA schemes)", V2, "PINGenerationKey", []Use{UseGeneratePinVisaPVK}, nil, ""},
	{"GeneratePinData (for IBM3624)", P0, "ForIBM3624_NATURAL_PIN,IBM3624_RANDOM_PIN,IBM3624_PIN_FROM_OFFSET", []Use{UseGeneratePinEncipherPEK}, nil, ""},
	{"GeneratePinData (for IBM3624)", P0, "ForIBM3624_PIN_OFFSET", []Use{UseGeneratePinDecipherPEK}, nil, ""},
	{"GeneratePinData (for IBM3624)", V1, "PINGenerationKey", []Use{UseGeneratePinIBM3624PVK}, nil, ""},
	{"VerifyPinData (for VISA/ABA schemes)", P0, "PINEncryptionKey", []Use{UseVerifyPinPEK}, nil, ""},
	{"VerifyPinData (for VISA/ABA schemes)", V2, "PINGenerationKey", []Use{UseVerifyPinVisaPVK}, nil, ""},
	{"VerifyPinData (for IBM3624)", P0, "PINEncryptionKey", []Use{UseVerifyPinPEK}, nil, ""},
	{"VerifyPinData (for IBM3624)", V1, "PINVerificationKey", []Use{UseVerifyPinIBM3624PVK}, nil, ""},

	{"Decrypt Data", B0, "DUKPT", []Use{UseDecryptDataDukpt}, nil, ""},
	{"Decrypt Data", E1, "EMV", []Use{UseDecryptDataEmv}, nil, ""},
	{"Decrypt Data", D1, "RSA", []Use{UseDecryptDataAsymmetric}, nil, ""},
	{"Decrypt Data", D0, "Symmetrickeys", []Use{UseDecryptDataSymmetric}, nil, ""},
	{"Encrypt Data", B0, "DUKPT", []Use{UseEncryptDataDukpt}, []Use{UseGenerateMacDukpt, UseVerifyMacDukpt}, ""},
	{"Encrypt Data", E1, "EMV", []Use{UseEncryptDataEmv}, nil, ""},
	{"Encrypt Data", D1, "RSA", []Use{UseEncryptDataAsymmetric}, nil, ""},
	{"Encrypt Data", D0, "Symmetrickeys", []Use{UseEncryptDataSymmetric}, nil, ""},

	{"Translate Pin Data", B0, "InboundDataSource|DUKPT", []Use{UseTranslatePinIncomingBDK}, []Use{UseVerifyPinBDK}, ""},
	{"Translate Pin Data", P0, "InboundDataSource|non-DUKPT", []Use{UseTranslatePinIncomingPEK}, []Use{UseTranslatePinIncomingKPP}, ""},
	{"Translate Pin Data", B0, "OutboundDataTarget|DUKPT", []Use{UseTranslatePinOutgoingBDK}, nil, ""},
	{"Translate Pin Data", P0, "OutboundDataTarget|non-DUKPT", []Use{UseTranslatePinOutgoingPEK}, nil, ""},

	{"Generate/Verify MAC", M1, "", []Use{UseGenerateMacISO9797Alg1, UseVerifyMacISO9797Alg1}, nil, ""},
	{"Generate/Verify MAC", M3, "", []Use{UseGenerateMacISO9797Alg3, UseVerifyMacISO9797Alg3}, nil, ""},
	{"Generate/Verify MAC", M6, "", []Use{UseGenerateMacCMAC, UseVerifyMacCMAC}, nil, ""},
	{"Generate/Verify MAC", M7, "", []Use{UseGenerateMacHMAC, UseVerifyMacHMAC}, nil, ""},
	{"Generate/Verify MAC", M0, "", []Use{UseGenerateMacAS2805, UseVerifyMacAS2805}, nil, ""},

	{"GenerateMacEmvPinChange", E2, "", []Use{UseEmvPinChangeIntegrity}, []Use{UseGenerateMacEmv, UseVerifyMacEmv}, ""},
	{"GenerateMacEmvPinChange", E1, "", []Use{UseEmvPinChangeConfidentiality}, nil, ""},
	{"GenerateMacEmvPinChange", P0, "CurrentPINPEK", []Use{UseEmvPinChangeCurrentPEK}, nil, ""},
	{"GenerateMacEmvPinChange", P0, "NewPINPEK", []Use{UseEmvPinChangeNewPinPEK}, nil, ""},
	{"GenerateMacEmvPinChange", E0, "", []Use{UseEmvPinChangeAC}, nil, ""},

	{"VerifyAuthRequestCryptogram", E0, "", []Use{UseVerifyAuthRequestCryptogram}, []Use{UseGenerateAuthRequestCryptogram}, ""},

	// A dynamic key's KEK unwraps: the wrapping key row's import combinations.
	{"Import/Export Key", K1, "TR-31WrappingKey", nil, []Use{UseDynamicKeyKEK}, "import"},
	// Import rules (rules.go's ValidateImport), not use-time checks.
	{"Import/Export Key", S0, "ImportoftrustedCA", nil, nil, ""},
	{"Import/Export Key", D1, "Importofpublickeycertificate", nil, nil, ""},
	// ECDH key agreement: ops' agreementKey, not (yet) in the table.
	{"Import/Export Key", K3, "", nil, nil, ""},
}

// useDeparture is a deliberate difference between the table and the guide:
// allowed, the table allows keys the guide's rows do not list; otherwise the
// table refuses (or no key can have) combinations the rows list. A field
// left empty matches anything.
type useDeparture struct {
	uses    []Use
	usage   KeyUsage
	algs    []Algorithm
	modes   []ModesOfUse
	allowed bool
	reason  string
}

var (
	aesAlgs   = []Algorithm{AES128, AES192, AES256}
	pvkUses   = []Use{UseGeneratePinVisaPVK, UseGeneratePinIBM3624PVK, UseVerifyPinVisaPVK, UseVerifyPinIBM3624PVK}
	genMacs   = []Use{UseGenerateMacISO9797Alg1, UseGenerateMacISO9797Alg3, UseGenerateMacCMAC, UseGenerateMacAS2805, UseGenerateMacHMAC}
	verMacs   = []Use{UseVerifyMacISO9797Alg1, UseVerifyMacISO9797Alg3, UseVerifyMacCMAC, UseVerifyMacAS2805, UseVerifyMacHMAC}
	verifyCVK = []Use{UseVerifyCardCVV1, UseVerifyCardCVV2, UseVerifyCardAmexCSC1, UseVerifyCardAmexCSC2}
)

var useDepartures = []useDeparture{
	{modes: []ModesOfUse{mN}, allowed: true,
		reason: "a {NoRestrictions} key passes every modes-of-use check (ops.Require always did; rules.go lets every symmetric usage have it)"},
	{uses: []Use{UseGeneratePinEncipherPEK, UseGeneratePinDecipherPEK, UseVerifyPinPEK}, algs: aesAlgs, allowed: true,
		reason: "ISO format 4, the AES PIN block, is generated and verified (ops/pin.go); the tables list TDES PEKs only"},
	{uses: pvkUses, algs: []Algorithm{TDES2Key}, allowed: true,
		reason: "the guide's PVV walk-through creates a TDES_2KEY PVK (ops/pin.go); the tables say TDES_3KEY"},
	{uses: []Use{UseGeneratePinDecipherPEK}, modes: []ModesOfUse{mEW},
		reason: "VISA_PIN_VERIFICATION_VALUE deciphers the request's PIN block: the PEK needs Decrypt (ops/pin.go); the Visa row lists generation's {Encrypt, Wrap}"},
	{uses: []Use{UseGeneratePinDecipherPEK}, modes: []ModesOfUse{mDU}, allowed: true,
		reason: "a PEK that may decrypt deciphers the given PIN block; the GeneratePinData rows list {Decrypt, Unwrap} nowhere"},
	{uses: []Use{UseGeneratePinDecipherPEK}, modes: []ModesOfUse{{Encrypt: true, Unwrap: true}},
		reason: "IBM3624_PIN_OFFSET's {Encrypt, Unwrap} is no valid P0 combination (rules.go); read as the decryption it performs"},
	{uses: verifyCVK, modes: []ModesOfUse{mG},
		reason: "verifying needs Verify; the VerifyCardData rows repeat GenerateCardData's combinations"},
	{uses: verifyCVK, modes: []ModesOfUse{mV}, allowed: true,
		reason: "a {Verify} card verification key verifies; the VerifyCardData rows repeat GenerateCardData's combinations"},
	{uses: genMacs, modes: []ModesOfUse{mV},
		reason: "the MAC table is for both operations; a {Verify} key cannot generate (the guide's own note under the table)"},
	{uses: verMacs, modes: []ModesOfUse{mG},
		reason: "the MAC table is for both operations; a {Generate} key cannot verify (the guide's own note under the table)"},
	{uses: []Use{UseGenerateMacHMAC, UseVerifyMacHMAC}, algs: []Algorithm{TDES2Key, TDES3Key, AES128, AES192, AES256},
		reason: "M7 keys are HMAC_SHA* keys (rules.go): the table's TDES and AES M7 keys cannot exist"},
	{uses: []Use{UseGenerateMacHMAC, UseVerifyMacHMAC}, algs: []Algorithm{HMACSHA224, HMACSHA256, HMACSHA384, HMACSHA512}, allowed: true,
		reason: "M7 keys are HMAC_SHA* keys (rules.go), which the MAC table does not name"},
	{uses: []Use{UseEmvPinChangeIntegrity, UseGenerateMacEmv, UseVerifyMacEmv}, modes: []ModesOfUse{mX}, allowed: true,
		reason: "E2 keys need DeriveKey like every EMV issuer master key (ops/emv_pinchange.go); the table lists {NoRestrictions} only"},
	{uses: []Use{UseTranslatePinIncomingKPP}, algs: []Algorithm{TDES3Key, AES128, AES192, AES256},
		reason: "the AS2805.6.4 session key one-way function takes a TDES_2KEY KPP (ops/as2805.go)"},
}

func (d *useDeparture) matches(u Use, usage KeyUsage, alg Algorithm, m ModesOfUse) bool {
	return (d.uses == nil || slices.Contains(d.uses, u)) && (d.usage == "" || d.usage == usage) &&
		(d.algs == nil || slices.Contains(d.algs, alg)) && (d.modes == nil || slices.Contains(d.modes, m))
}

// guideTriple is a key as the guide's rows describe it.
type guideTriple struct {
	usage KeyUsage
	alg   Algorithm
	modes ModesOfUse
}

func TestUseTableMatchesGuide(t *testing.T) {
	rows := loadGuideUses(t)
	if len(rows) < 40 {
		t.Fatalf("only %d guide rows parsed", len(rows))
	}
	allowed := map[Use]map[guideTriple]bool{} // the guide's keys per Use
	entryUsed := make([]bool, len(guideUseMap))
	for _, r := range rows {
		match := -1
		for i, e := range guideUseMap {
			if e.section == r.section && (e.usage == "" || e.usage == r.usages[0]) && strings.Contains(r.key, e.match) {
				if match >= 0 {
					t.Errorf("%s row %q %v matches two map entries", r.section, r.key, r.usages)
				}
				match = i
			}
		}
		if match < 0 {
			t.Errorf("%s row %q %v maps to no Use", r.section, r.key, r.usages)
			continue
		}
		entryUsed[match] = true
		e := guideUseMap[match]
		for _, u := range append(slices.Clone(e.uses), e.borrowed...) {
			if allowed[u] == nil {
				allowed[u] = map[guideTriple]bool{}
			}
			for _, usage := range r.usages {
				for _, alg := range r.algs {
					for _, m := range r.modes {
						if e.only != "" && m.only != "" && m.only != e.only {
							continue
						}
						allowed[u][guideTriple{usage, alg, m.m}] = true
					}
				}
			}
		}
	}
	for i, used := range entryUsed {
		if !used {
			t.Errorf("map entry %s %s %q matches no guide row", guideUseMap[i].section, guideUseMap[i].usage, guideUseMap[i].match)
		}
	}
	for _, u := range Uses() {
		if allowed[u] == nil {
			t.Errorf("%v is ruled by no guide row", u)
		}
	}

	// depUsed records, per departure, the Uses it was needed for.
	depUsed := make([]map[Use]bool, len(useDepartures))
	departure := func(u Use, k guideTriple, allow bool) string {
		for i := range useDepartures {
			d := &useDepartures[i]
			if d.allowed == allow && d.matches(u, k.usage, k.alg, k.modes) {
				if depUsed[i] == nil {
					depUsed[i] = map[Use]bool{}
				}
				depUsed[i][u] = true
				return d.reason
			}
		}
		return ""
	}
	valid := map[guideTriple]bool{}
	keys := validKeys(t)
	for _, a := range keys {
		valid[guideTriple{a.Usage, a.Algorithm, a.Modes}] = true
	}
	for _, u := range Uses() {
		// Every key of the guide's rows is allowed, unless a departure says
		// the table refuses it (or that it cannot exist).
		for k := range allowed[u] {
			a := Attributes{Usage: k.usage, Algorithm: k.alg, Modes: k.modes}
			if (!valid[k] || !u.Allows(a)) && departure(u, k, false) == "" {
				what := "the table refuses"
				if !valid[k] {
					what = "no key can have (rules.go)"
				}
				t.Errorf("%v: the guide allows %s %s %s, which %s (no departure listed)", u, k.usage, k.alg, k.modes, what)
			}
		}
		// Nothing else is allowed, unless a departure says so.
		for _, a := range keys {
			k := guideTriple{a.Usage, a.Algorithm, a.Modes}
			if u.Allows(a) && !allowed[u][k] && departure(u, k, true) == "" {
				t.Errorf("%v: the table allows %s %s %s %s, which the guide does not list (no departure listed)", u, a.Usage, a.Class, a.Algorithm, a.Modes)
			}
		}
	}
	// Every departure is needed, and by every Use it names.
	for i, used := range depUsed {
		d := &useDepartures[i]
		if len(used) == 0 {
			t.Errorf("departure %d (%s) no longer applies: remove it", i, d.reason)
		}
		for _, u := range d.uses {
			if !used[u] {
				t.Errorf("departure %d (%s) no longer applies to %v", i, d.reason, u)
			}
		}
	}
}

// The parser reads what a reader of the guide sees in a few rows.
func TestGuideValidKeysParse(t *testing.T) {
	rows := loadGuideUses(t)
	find := func(section, key string) guideUseRow {
		t.Helper()
		for _, r := range rows {
			if r.section == section && strings.Contains(r.key, key) {
				return r
			}
		}
		t.Fatalf("no %s row %q", section, key)
		return guideUseRow{}
	}
	show := func(r guideUseRow) string {
		var ms []string
		for _, m := range r.modes {
			s := m.m.String()
			if m.only != "" {
				s += " " + m.only
			}
			ms = append(ms, s)
		}
		return fmt.Sprintf("%v %v %s", r.usages, r.algs, strings.Join(ms, " "))
	}
	for _, c := range []struct{ section, key, want string }{
		{"GenerateCardData", "CARDHOLDER_AUTHENTICATION_VERIFICATION_VALUE",
			"[TR31_E6_EMV_MKEY_OTHER] [TDES_2KEY] {DeriveKey}"},
		{"GeneratePinData (for VISA/ABA schemes)", "PINGenerationKey",
			"[TR31_V2_VISA_PIN_VERIFICATION_KEY] [TDES_3KEY] {Generate} {Generate, Verify}"},
		{"GeneratePinData (for IBM3624)", "ForIBM3624_PIN_OFFSET",
			"[TR31_P0_PIN_ENCRYPTION_KEY] [TDES_2KEY TDES_3KEY] {Encrypt, Unwrap} {Encrypt, Decrypt, Wrap, Unwrap} {NoRestrictions}"},
		{"Translate Pin Data", "OutboundDataTarget|non-DUKPT",
			"[TR31_P0_PIN_ENCRYPTION_KEY] [TDES_2KEY TDES_3KEY AES_128 AES_192 AES_256] {Encrypt, Wrap} {Encrypt, Decrypt, Wrap, Unwrap} {NoRestrictions}"},
		{"Decrypt Data", "EMV",
			"[TR31_E1_EMV_MKEY_CONFIDENTIALITY TR31_E6_EMV_MKEY_OTHER] [TDES_2KEY] {DeriveKey}"},
		{"Generate/Verify MAC", "(CMAC)",
			"[TR31_M6_ISO_9797_5_CMAC_KEY] [TDES_2KEY TDES_3KEY AES_128 AES_192 AES_256] {Generate} {Generate, Verify} {Verify} {Generate}"},
		{"Import/Export Key", "TR-31WrappingKey",
			"[TR31_K1_KEY_BLOCK_PROTECTION_KEY TR31_K0_KEY_ENCRYPTION_KEY] [TDES_2KEY TDES_3KEY AES_128 AES_192 AES_256] {Encrypt, Wrap} export {Decrypt, Unwrap} import {Encrypt, Decrypt, Wrap, Unwrap}"},
		{"Import/Export Key", "Importofpublickeycertificate",
			"[TR31_D1_ASYMMETRIC_KEY_FOR_DATA_ENCRYPTION] [RSA_2048 RSA_3072 RSA_4096] {Encrypt, Wrap}"},
	} {
		if got := show(find(c.section, c.key)); got != c.want {
			t.Errorf("%s %s:\n got  %s\n want %s", c.section, c.key, got, c.want)
		}
	}
}
