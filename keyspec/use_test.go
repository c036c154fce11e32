package keyspec

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"payhsm/fault"
)

// This file pins the key-use table to the behaviour of the hand-written
// ops.Require calls it replaces: each call site is transcribed below as it
// stood at commit 9eb961d (file:line, the operation text, usages, algorithms
// and modes-of-use predicate it passed), and legacyRequire is that commit's
// ops.Require, verbatim but for taking the key's name and attributes instead
// of a *WorkingKey. Every Use must be the rule of at least one call site and
// answer every key exactly as the call did: same acceptance, same Violation,
// same message.

// legacyRequire is ops.Require (ops/working.go) at commit 9eb961d.
func legacyRequire(arn string, a Attributes, subj fault.Subject, what string, usages []KeyUsage, algs []Algorithm, modes func(ModesOfUse) bool) error {
	ok := false
	for _, u := range usages {
		ok = ok || a.Usage == u
	}
	if !ok {
		names := make([]string, len(usages))
		for i, u := range usages {
			names[i] = string(u)
		}
		return about(subj, fault.KeyRule(fault.ViolationUsage, "%s needs a key with KeyUsage %s; %s is %s", what, strings.Join(names, " or "), arn, a.Usage))
	}
	if algs != nil {
		ok = false
		for _, al := range algs {
			ok = ok || a.Algorithm == al
		}
		if !ok {
			return about(subj, fault.KeyRule(fault.ViolationAlgorithm, "%s does not support %s keys", what, a.Algorithm))
		}
	}
	if modes != nil && !a.Modes.NoRestrictions && !modes(a.Modes) {
		return about(subj, fault.KeyRule(fault.ViolationModes, "the modes of use of %s do not allow %s", arn, what))
	}
	return nil
}

// about sets the subject of f (the request's key the rule is about).
func about(subj fault.Subject, f *fault.Error) *fault.Error {
	f.Subject = subj
	return f
}

// The predicates and algorithm lists the call sites passed.
var (
	siteDecrypt  = func(m ModesOfUse) bool { return m.Decrypt }
	siteEncrypt  = func(m ModesOfUse) bool { return m.Encrypt }
	siteGenerate = func(m ModesOfUse) bool { return m.Generate }
	siteVerify   = func(m ModesOfUse) bool { return m.Verify }
	siteDerive   = func(m ModesOfUse) bool { return m.DeriveKey }
	siteUnwrap   = func(m ModesOfUse) bool { return m.Unwrap || m.Decrypt }

	siteTDES2 = []Algorithm{TDES2Key}                                   // ops/emv.go tdes2
	siteTDES  = []Algorithm{TDES2Key, TDES3Key}                         // tdesAlgorithms, pvkAlgs
	siteSym   = []Algorithm{TDES2Key, TDES3Key, AES128, AES192, AES256} // dataAlgorithms, pinKeyAlgs, kekAlgorithms
	siteBDK   = []Algorithm{TDES2Key, AES128, AES192, AES256}           // bdkAlgorithms, dukptPinKey's bdkAlgs
	siteHMAC  = []Algorithm{HMACSHA224, HMACSHA256, HMACSHA384, HMACSHA512}
	siteRSA   = []Algorithm{RSA2048, RSA3072, RSA4096}
)

// callSite is one Require call with one value of its arguments, and the Uses
// that replace it. checkAs: the caller passes its own operation text (Use.CheckAs).
type callSite struct {
	site    string
	what    string
	usages  []KeyUsage
	algs    []Algorithm
	modes   func(ModesOfUse) bool
	uses    []Use
	checkAs bool
}

func callSites() []callSite {
	cs := []callSite{
		{"ops/dynamic_keys.go:74 dynamicKey", "unwrapping a dynamic key", []KeyUsage{K0, K1}, siteSym, siteUnwrap, []Use{UseDynamicKeyKEK}, false},

		{"ops/mac.go:172 computeMac DUKPT (generate)", "GenerateMac with DUKPT", []KeyUsage{B0}, siteBDK, siteDerive, []Use{UseGenerateMacDukpt}, false},
		{"ops/mac.go:172 computeMac DUKPT (verify)", "VerifyMac with DUKPT", []KeyUsage{B0}, siteBDK, siteDerive, []Use{UseVerifyMacDukpt}, false},
		{"ops/mac.go:175 computeMac EmvMac (generate)", "GenerateMac with EmvMac", []KeyUsage{E2}, siteTDES2, siteDerive, []Use{UseGenerateMacEmv}, false},
		{"ops/mac.go:175 computeMac EmvMac (verify)", "VerifyMac with EmvMac", []KeyUsage{E2}, siteTDES2, siteDerive, []Use{UseVerifyMacEmv}, false},

		{"ops/pin_keys.go:25 dukptPinKey", "DUKPT PIN key derivation", []KeyUsage{B0}, siteBDK, siteDerive,
			[]Use{UseTranslatePinIncomingBDK, UseTranslatePinOutgoingBDK, UseVerifyPinBDK}, false},
		{"ops/pin_keys.go:90 wrappedPinKey (decrypt)", "deciphering a PIN block", []KeyUsage{P0}, siteSym, siteDecrypt,
			[]Use{UseTranslatePinIncomingPEK, UseGeneratePinDecipherPEK, UseVerifyPinPEK}, false},
		{"ops/pin_keys.go:90 wrappedPinKey (encrypt)", "enciphering a PIN block", []KeyUsage{P0}, siteSym, siteEncrypt,
			[]Use{UseTranslatePinOutgoingPEK, UseGeneratePinEncipherPEK}, false},

		{"ops/emv_pinchange.go:218 smKey (integrity)", "GenerateMacEmvPinChange (integrity)", []KeyUsage{E2}, siteTDES2, siteDerive, []Use{UseEmvPinChangeIntegrity}, false},
		{"ops/emv_pinchange.go:218 smKey (confidentiality)", "GenerateMacEmvPinChange (confidentiality)", []KeyUsage{E1}, siteTDES2, siteDerive, []Use{UseEmvPinChangeConfidentiality}, false},
		{"ops/emv_pinchange.go:218 smKey (VIS PIN block)", "GenerateMacEmvPinChange (VIS PIN block)", []KeyUsage{E0}, siteTDES2, siteDerive, []Use{UseEmvPinChangeAC}, false},

		{"ops/as2805.go:322 as2805SessionPinKey", "AS2805 session PIN key derivation", []KeyUsage{P0}, siteTDES2, siteDecrypt, []Use{UseTranslatePinIncomingKPP}, false},

		{"ops/data.go:208 dataCrypterFor Symmetric (encrypt)", "EncryptData", []KeyUsage{D0}, siteSym, siteEncrypt, []Use{UseEncryptDataSymmetric}, false},
		{"ops/data.go:208 dataCrypterFor Symmetric (decrypt)", "DecryptData", []KeyUsage{D0}, siteSym, siteDecrypt, []Use{UseDecryptDataSymmetric}, false},
		{"ops/data.go:229 dataCrypterFor Dukpt (encrypt)", "EncryptData with DUKPT", []KeyUsage{B0}, siteBDK, siteDerive, []Use{UseEncryptDataDukpt}, false},
		{"ops/data.go:229 dataCrypterFor Dukpt (decrypt)", "DecryptData with DUKPT", []KeyUsage{B0}, siteBDK, siteDerive, []Use{UseDecryptDataDukpt}, false},
		{"ops/data.go:256 dataCrypterFor Asymmetric (encrypt)", "EncryptData", []KeyUsage{D1}, siteRSA, siteEncrypt, []Use{UseEncryptDataAsymmetric}, false},
		{"ops/data.go:256 dataCrypterFor Asymmetric (decrypt)", "DecryptData", []KeyUsage{D1}, siteRSA, siteDecrypt, []Use{UseDecryptDataAsymmetric}, false},
		{"ops/data.go:265 dataCrypterFor Emv (encrypt)", "EncryptData with EMV", []KeyUsage{E1, E6}, siteTDES2, siteDerive, []Use{UseEncryptDataEmv}, false},
		{"ops/data.go:265 dataCrypterFor Emv (decrypt)", "DecryptData with EMV", []KeyUsage{E1, E6}, siteTDES2, siteDerive, []Use{UseDecryptDataEmv}, false},

		{"ops/emv.go:158 arqc (generate)", "GenerateAuthRequestCryptogram", []KeyUsage{E0}, siteTDES2, siteDerive, []Use{UseGenerateAuthRequestCryptogram}, false},
		{"ops/emv.go:158 arqc (verify)", "VerifyAuthRequestCryptogram", []KeyUsage{E0}, siteTDES2, siteDerive, []Use{UseVerifyAuthRequestCryptogram}, false},

		{"ops/pin.go:187 pekSide (decrypt)", "deciphering a PIN block", []KeyUsage{P0}, siteSym, siteDecrypt,
			[]Use{UseTranslatePinIncomingPEK, UseGeneratePinDecipherPEK, UseVerifyPinPEK, UseEmvPinChangeNewPinPEK, UseEmvPinChangeCurrentPEK}, false},
		{"ops/pin.go:187 pekSide (encrypt)", "enciphering a PIN block", []KeyUsage{P0}, siteSym, siteEncrypt,
			[]Use{UseTranslatePinOutgoingPEK, UseGeneratePinEncipherPEK}, false},

		{"ops/pin.go:396 verificationKey (Visa, generate)", "Visa PIN generation", []KeyUsage{V2}, siteTDES, siteGenerate, []Use{UseGeneratePinVisaPVK}, false},
		{"ops/pin.go:396 verificationKey (IBM, generate)", "IBM 3624 PIN generation", []KeyUsage{V1}, siteTDES, siteGenerate, []Use{UseGeneratePinIBM3624PVK}, false},
		{"ops/pin.go:396 verificationKey (Visa, verify)", "Visa PIN verification", []KeyUsage{V2}, siteTDES, siteVerify, []Use{UseVerifyPinVisaPVK}, false},
		{"ops/pin.go:396 verificationKey (IBM, verify)", "IBM 3624 PIN verification", []KeyUsage{V1}, siteTDES, siteVerify, []Use{UseVerifyPinIBM3624PVK}, false},
	}
	// ops/mac.go:137 computeMac's req: op + " " + the request's algorithm.
	for _, op := range []struct {
		name  string
		modes func(ModesOfUse) bool
		uses  [5]Use
	}{
		{"GenerateMac", siteGenerate, [5]Use{UseGenerateMacISO9797Alg1, UseGenerateMacISO9797Alg3, UseGenerateMacCMAC, UseGenerateMacAS2805, UseGenerateMacHMAC}},
		{"VerifyMac", siteVerify, [5]Use{UseVerifyMacISO9797Alg1, UseVerifyMacISO9797Alg3, UseVerifyMacCMAC, UseVerifyMacAS2805, UseVerifyMacHMAC}},
	} {
		site := "ops/mac.go:137 computeMac req (" + op.name + " "
		cs = append(cs,
			callSite{site + "ISO9797_ALGORITHM1)", op.name + " ISO9797_ALGORITHM1", []KeyUsage{M1}, siteTDES, op.modes, []Use{op.uses[0]}, false},
			callSite{site + "ISO9797_ALGORITHM3)", op.name + " ISO9797_ALGORITHM3", []KeyUsage{M3}, siteTDES, op.modes, []Use{op.uses[1]}, false},
			callSite{site + "CMAC)", op.name + " CMAC", []KeyUsage{M6}, siteSym, op.modes, []Use{op.uses[2]}, false},
			callSite{site + "AS2805_4_1)", op.name + " AS2805_4_1", []KeyUsage{M0}, siteTDES, op.modes, []Use{op.uses[3]}, false},
			callSite{site + "HMAC)", op.name + " HMAC", []KeyUsage{M7}, siteHMAC, op.modes, []Use{op.uses[4]}, false},
		)
		for _, h := range []string{"HMAC_SHA224", "HMAC_SHA256", "HMAC_SHA384", "HMAC_SHA512"} {
			cs = append(cs, callSite{site + h + ")", op.name + " " + h, []KeyUsage{M7}, siteHMAC, op.modes, []Use{op.uses[4]}, true})
		}
	}
	// ops/card.go:80..91 cardKey: "Generate/VerifyCardValidationData with " + the kind.
	for _, op := range []struct {
		name  string
		modes func(ModesOfUse) bool
		uses  [8]Use
	}{
		{"GenerateCardValidationData", siteGenerate, [8]Use{UseGenerateCardCVV1, UseGenerateCardCVV2, UseGenerateCardAmexCSC1, UseGenerateCardAmexCSC2,
			UseGenerateCardHolderVerification, UseGenerateCardDynamicValue, UseGenerateCardDynamicCode, UseNone}},
		{"VerifyCardValidationData", siteVerify, [8]Use{UseVerifyCardCVV1, UseVerifyCardCVV2, UseVerifyCardAmexCSC1, UseVerifyCardAmexCSC2,
			UseVerifyCardHolderVerification, UseVerifyCardDynamicValue, UseVerifyCardDynamicCode, UseVerifyCardDiscoverDynamicCode}},
	} {
		w := op.name + " with "
		cs = append(cs,
			callSite{"ops/card.go:80 cardKey CardCVV1", w + "CardVerificationValue1", []KeyUsage{C0}, siteTDES2, op.modes, []Use{op.uses[0]}, false},
			callSite{"ops/card.go:80 cardKey CardCVV2", w + "CardVerificationValue2", []KeyUsage{C0}, siteTDES2, op.modes, []Use{op.uses[1]}, false},
			callSite{"ops/card.go:82 cardKey CardAmexCSC1", w + "AmexCardSecurityCodeVersion1", []KeyUsage{C0}, siteTDES, op.modes, []Use{op.uses[2]}, false},
			callSite{"ops/card.go:82 cardKey CardAmexCSC2", w + "AmexCardSecurityCodeVersion2", []KeyUsage{C0}, siteTDES, op.modes, []Use{op.uses[3]}, false},
			callSite{"ops/card.go:84 cardKey CardHolderVerification", w + "CardHolderVerificationValue", []KeyUsage{E6}, siteTDES2, siteDerive, []Use{op.uses[4]}, false},
			callSite{"ops/card.go:84 cardKey CardDynamicValue", w + "DynamicCardVerificationValue", []KeyUsage{E6}, siteTDES2, siteDerive, []Use{op.uses[5]}, false},
			callSite{"ops/card.go:86 cardKey CardDynamicCode", w + "DynamicCardVerificationCode", []KeyUsage{E4}, siteTDES2, siteDerive, []Use{op.uses[6]}, false},
		)
		if op.uses[7] != UseNone { // generating a Discover code is refused before the key check
			cs = append(cs, callSite{"ops/card.go:91 cardKey CardDiscoverDynamicCode", w + "DiscoverDynamicCardVerificationCode", []KeyUsage{E6}, siteTDES2, siteDerive, []Use{op.uses[7]}, false})
		}
	}
	return cs
}

// useSample is a set of attribute combinations wide enough to reach every
// branch of a rule for usages: those usages and three others × every
// algorithm × the modes of use keys can have, each single mode, and some
// that no key can have.
func useSample(usages []KeyUsage) []Attributes {
	modes := []ModesOfUse{
		mEDWU, mEW, mDU, mG, mV, mGV, mS, mX, mN, {},
		{Encrypt: true}, {Decrypt: true}, {Wrap: true}, {Unwrap: true},
		{Encrypt: true, Unwrap: true}, {Generate: true, DeriveKey: true}, {Sign: true, Verify: true},
	}
	var out []Attributes
	for _, u := range append(slices.Clone(usages), K2, M7, P0) {
		for _, al := range allAlgorithms {
			for _, m := range modes {
				out = append(out, Attributes{Usage: u, Class: Symmetric, Algorithm: al, Modes: m})
			}
		}
	}
	out = append(out, Attributes{Usage: "TR31_X9_UNKNOWN", Class: Symmetric, Algorithm: "NOPE", Modes: mN})
	return out
}

func TestUseTableMatchesCallSites(t *testing.T) {
	covered := map[Use]bool{}
	const arn = "arn:aws:payment-cryptography:us-east-2:111122223333:key/abcdefghijklmnop"
	for _, c := range callSites() {
		for _, u := range c.uses {
			t.Run(c.site+"/"+u.String(), func(t *testing.T) {
				r, ok := u.Rule()
				if !ok {
					t.Fatalf("%d is not a Use", u)
				}
				covered[u] = true
				if !c.checkAs && r.What != c.what {
					t.Errorf("What = %q, the call site says %q", r.What, c.what)
				}
				if !slices.Equal(r.Usages, c.usages) {
					t.Errorf("Usages = %v, the call site allows %v (in this order)", r.Usages, c.usages)
				}
				if !sameSet(r.Algorithms, c.algs) {
					t.Errorf("Algorithms = %v, the call site allows %v", r.Algorithms, c.algs)
				}
				for b := range 512 {
					m := modesFromBits(b)
					a := Attributes{Usage: c.usages[0], Class: Symmetric, Algorithm: c.algs[0], Modes: m}
					if got, want := u.Allows(a), m.NoRestrictions || c.modes(m); got != want {
						t.Errorf("modes %s: allowed = %v, the call site's predicate says %v", m, got, want)
					}
				}
				for _, a := range useSample(c.usages) {
					want := legacyRequire(arn, a, fault.SubjectNone, c.what, c.usages, c.algs, c.modes)
					var got error
					if c.checkAs {
						got = u.CheckAs(c.what, arn, a)
					} else {
						got = u.Check(arn, a)
					}
					sameFault(t, a, got, want)
					if (got == nil) != u.Allows(a) {
						t.Errorf("%+v: Allows = %v but Check = %v", a, u.Allows(a), got)
					}
					// The ops glue: the caller names which of the request's keys it is.
					const subj = fault.SubjectPinEncryptionKey
					wantF := legacyRequire(arn, a, subj, c.what, c.usages, c.algs, c.modes)
					sameFault(t, a, requireGlue(got, subj), wantF)
				}
			})
		}
	}
	for _, u := range Uses() {
		if !covered[u] {
			t.Errorf("%v (%d) is the rule of no call site", u, u)
		}
	}
}

// requireGlue is how ops turns a Check error into today's Require error for
// the request's key subj (see the report for the swap).
func requireGlue(err error, subj fault.Subject) error {
	if err == nil {
		return nil
	}
	f := fault.As(err)
	return about(subj, fault.KeyRule(f.Violation, "%s", f.Message))
}

func sameFault(t *testing.T, a Attributes, got, want error) {
	t.Helper()
	if (got == nil) != (want == nil) {
		t.Errorf("%+v: got %v, Require gave %v", a, got, want)
		return
	}
	if got == nil {
		return
	}
	var g, w *fault.Error
	if !errors.As(got, &g) || !errors.As(want, &w) {
		t.Fatalf("not faults: %v, %v", got, want)
	}
	if g.Kind != w.Kind || g.Violation != w.Violation || g.Message != w.Message || g.Subject != w.Subject {
		t.Errorf("%+v:\n got  %v %s %q subject %d\n want %v %s %q subject %d", a, g.Kind, g.Violation, g.Message, g.Subject,
			w.Kind, w.Violation, w.Message, w.Subject)
	}
}

func sameSet[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// Every key some rule lets an operation use is one the guide says some
// operation supports (not a "*" pair, not P1).
func TestUsesOnlySupportedKeys(t *testing.T) {
	for _, a := range validKeys(t) {
		for _, u := range Uses() {
			if u.Allows(a) && !SupportedForOperations(a) {
				t.Errorf("%v allows %+v, which SupportedForOperations refuses", u, a)
			}
		}
	}
}

// validKeys is every key that can exist: every attribute set ValidateCreate
// or ValidateImport accepts (computed once).
func validKeys(t *testing.T) []Attributes {
	t.Helper()
	keys := validKeysOnce()
	if len(keys) < 300 {
		t.Fatalf("only %d valid keys", len(keys))
	}
	return keys
}

var validKeysOnce = sync.OnceValue(func() []Attributes {
	var out []Attributes
	for _, u := range allUsages {
		dku := KeyUsage("")
		if u == K3 {
			dku = K1
		}
		for _, c := range allClasses {
			for _, al := range allAlgorithms {
				// Without modes of use a key fails on its modes if and only
				// if everything else about it is allowed: only then are the
				// 512 combinations worth trying.
				a := Attributes{Usage: u, Class: c, Algorithm: al}
				if fault.As(ValidateCreate(a, dku)).Subject != fault.SubjectKeyModesOfUse && fault.As(ValidateImport(a, "")).Subject != fault.SubjectKeyModesOfUse {
					continue
				}
				for b := range 512 {
					a.Modes = modesFromBits(b)
					if ValidateCreate(a, dku) == nil || ValidateImport(a, "") == nil {
						out = append(out, a)
					}
				}
			}
		}
	}
	return out
})

func TestUseAPI(t *testing.T) {
	for _, u := range []Use{UseNone, useCount, 250} {
		if u.Valid() || u.Allows(Attributes{Usage: P0, Algorithm: AES128, Modes: mN}) {
			t.Errorf("%d is valid or allows a key", u)
		}
		if _, ok := u.Rule(); ok {
			t.Errorf("%d has a rule", u)
		}
		for _, err := range []error{u.Check("k", Attributes{}), u.CheckAs("x", "k", Attributes{})} {
			if fault.KindOf(err) != fault.Internal {
				t.Errorf("%d: Check = %v, want an Internal fault", u, err)
			}
		}
		if !strings.HasPrefix(u.String(), "Use(") {
			t.Errorf("String() = %q", u.String())
		}
	}
	// Rule returns a copy.
	r, _ := UseTranslatePinIncomingPEK.Rule()
	r.Usages[0], r.Algorithms[0] = K0, RSA2048
	if r2, _ := UseTranslatePinIncomingPEK.Rule(); r2.Usages[0] != P0 || r2.Algorithms[0] != TDES2Key {
		t.Errorf("changing a Rule changed the table: %+v", r2)
	}
	names := map[string]Use{}
	for _, u := range Uses() {
		s := u.String()
		if prev, dup := names[s]; dup {
			t.Errorf("%d and %d are both %q", prev, u, s)
		}
		names[s] = u
		r, _ := u.Rule()
		if r.Op == OpNone || r.Role == RoleNone || r.What == "" || len(r.Usages) == 0 || r.Modes == (ModesOfUse{}) {
			t.Errorf("%v: incomplete rule %+v", u, r)
		}
		if strings.Contains(r.Op.String(), "(") || strings.Contains(r.Role.String(), "(") {
			t.Errorf("%v: unnamed operation or role", u)
		}
	}
	if got := UseTranslatePinIncomingPEK.String(); got != "TranslatePin incoming PEK" {
		t.Errorf("String() = %q", got)
	}
	if got := UseGenerateMacCMAC.String(); got != "GenerateMac key (CMAC)" {
		t.Errorf("String() = %q", got)
	}
	if Operation(200).String() != "Operation(200)" || Role(200).String() != "Role(200)" {
		t.Error("out-of-range names")
	}
	// A check on the hot path allocates nothing when the key passes.
	a := Attributes{Usage: P0, Class: Symmetric, Algorithm: AES128, Modes: mEDWU}
	if n := testing.AllocsPerRun(100, func() { _ = UseTranslatePinIncomingPEK.Check("k", a) }); n != 0 {
		t.Errorf("Check allocates %v times per passing call", n)
	}
}

// TestAllowedUses: a key's UseSet holds exactly the Uses whose rules it
// passes, for every key that can exist and a sample of keys that cannot
// (each usage and algorithm with assorted modes of use), and no Use that is
// not Valid. The hot path's allow decisions rest on this equivalence.
func TestAllowedUses(t *testing.T) {
	keys := append(slices.Clone(validKeys(t)), useSample(allUsages)...)
	keys = append(keys, Attributes{})
	var allowedSomewhere [256]bool
	for _, a := range keys {
		s := AllowedUses(a)
		for u := range Use(255) {
			if got, want := s.Has(u), u.Allows(a); got != want {
				t.Fatalf("%+v: Has(%v) = %v, Allows = %v", a, u, got, want)
			}
			if s.Has(u) {
				allowedSomewhere[u] = true
			}
		}
	}
	// The test is not vacuous: every Use allows some key.
	for _, u := range Uses() {
		if !allowedSomewhere[u] {
			t.Errorf("%v allows none of the %d keys", u, len(keys))
		}
	}
	var empty UseSet
	for u := range Use(255) {
		if empty.Has(u) {
			t.Errorf("the empty set has %v", u)
		}
	}
}

// BenchmarkAllowedUses is the cost of computing a key's UseSet, paid once
// when a working key is cached.
func BenchmarkAllowedUses(b *testing.B) {
	a := Attributes{Usage: P0, Class: Symmetric, Algorithm: TDES2Key, Modes: mEDWU}
	for b.Loop() {
		_ = AllowedUses(a)
	}
}
