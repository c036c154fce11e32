package keyspec

import (
	"slices"
	"strconv"
	"strings"

	"payhsm/fault"
)

// Key-use rules: which stored (or request-carried) key each cryptographic
// operation may use, checked when the key is used. This file is the single
// table of them; rules.go is the other half (which keys may exist at all).
//
// A Use names one key of one operation: the operation, the side of a
// two-key operation (fault.Side), the key's role and, where the operation has
// several methods with different rules, the method (e.g. GenerateMac with
// ISO 9797-1 algorithm 1). Its Rule gives the allowed KeyUsages, algorithms
// and the modes of use the key needs; Use.Check applies it.
//
// The rules are the user guide's "Valid keys for cryptographic operations"
// tables (use_guide_test.go checks them against the guide's text), with
// these decisions where the guide is silent, contradicts itself or
// contradicts the model (each also listed, as data, in use_guide_test.go):
//
//   - Modes of use: a key passes when its modes include one of the rule's
//     modes (the mode the operation performs: Encrypt, Decrypt, Generate,
//     Verify, DeriveKey; Unwrap or Decrypt for a KEK) or when it has
//     NoRestrictions. So {NoRestrictions} keys pass every rule, also where a
//     table lists only specific combinations, and a key limited to one half
//     of a pair ({Generate} or {Verify}) serves only that half, whatever the
//     combined MAC and card tables list.
//   - PIN encryption keys: AES is accepted wherever a PEK is (ISO format 4 is
//     the AES PIN block; the format binds the algorithm, checked apart from
//     this table). A PEK that enciphers a PIN needs Encrypt, one that
//     deciphers needs Decrypt (GeneratePinData deciphers the request's PIN
//     block for the Visa PVV and IBM 3624 offset methods).
//   - PIN verification keys (V1, V2) may be TDES_2KEY or TDES_3KEY: the
//     tables say TDES_3KEY, the guide's own PVV walk-through creates a
//     TDES_2KEY PVK.
//   - HMAC keys (M7) are HMAC_SHA* keys, as rules.go decides; the MAC table's
//     TDES and AES list names keys that cannot exist.
//   - EMV secure-messaging keys (E1, E2) need DeriveKey (or NoRestrictions),
//     like every other EMV issuer master key; the GenerateMacEmvPinChange
//     table lists only {NoRestrictions} for E2.
//   - The AS2805 PIN protection key (KPP) is a TDES_2KEY P0 key that may
//     decrypt: AS2805.6.4's one-way function takes a double-length key.
//   - Operations the tables do not cover take the rule of the nearest row:
//     VerifyPinData with DUKPT and the DUKPT MAC methods that of the DUKPT
//     rows, EmvMac that of the EMV integrity key, GenerateAuthRequestCryptogram
//     that of VerifyAuthRequestCryptogram, DiscoverDynamicCardVerificationCode
//     that of the dynamic CVV, the KEK of a dynamic key ("Using Dynamic
//     Keys") that of the Import/Export table's TR-31 wrapping key on import.
//   - ReEncryptData applies DecryptData's rules to its incoming key and
//     EncryptData's to its outgoing key; the guide has no table for it.

// Operation is a cryptographic operation whose keys the table rules.
type Operation uint8

// Operations.
const (
	OpNone Operation = iota
	OpTranslatePin
	OpGeneratePin
	OpVerifyPin
	OpGenerateMacEmvPinChange
	OpGenerateAuthRequestCryptogram
	OpVerifyAuthRequestCryptogram
	OpGenerateCardData
	OpVerifyCardData
	OpGenerateMac
	OpVerifyMac
	OpEncryptData
	OpDecryptData
	// OpOpenDynamicKey is the step shared by every operation that takes a
	// dynamic key: unwrapping it under the KEK the request names.
	OpOpenDynamicKey
)

var opNames = [...]string{"None", "TranslatePin", "GeneratePin", "VerifyPin", "GenerateMacEmvPinChange",
	"GenerateAuthRequestCryptogram", "VerifyAuthRequestCryptogram", "GenerateCardData", "VerifyCardData",
	"GenerateMac", "VerifyMac", "EncryptData", "DecryptData", "OpenDynamicKey"}

func (o Operation) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return "Operation(" + strconv.Itoa(int(o)) + ")"
}

// Role is which key of an operation a rule is for.
type Role uint8

// Roles.
const (
	RoleNone Role = iota
	// RoleKey is the operation's only key (MAC, card verification, data, ARQC key).
	RoleKey
	// RolePEK is a PIN encryption key, stored or carried as a dynamic key.
	RolePEK
	// RoleCurrentPEK is the PEK of GenerateMacEmvPinChange's current PIN.
	RoleCurrentPEK
	// RoleBDK is a DUKPT base derivation key the working key is derived from.
	RoleBDK
	// RoleKPP is an AS2805 PIN protection key the session PIN key is derived from.
	RoleKPP
	// RolePVK is a PIN verification (generation) key.
	RolePVK
	// RoleIntegrityKey is an EMV secure-messaging integrity issuer master key.
	RoleIntegrityKey
	// RoleConfidentialityKey is an EMV secure-messaging confidentiality issuer master key.
	RoleConfidentialityKey
	// RoleACKey is an EMV application-cryptogram issuer master key.
	RoleACKey
	// RoleKEK is the key-encryption key a dynamic key is carried under.
	RoleKEK
)

var roleNames = [...]string{"none", "key", "PEK", "current PIN PEK", "BDK", "KPP", "PVK",
	"integrity key", "confidentiality key", "AC key", "KEK"}

func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return "Role(" + strconv.Itoa(int(r)) + ")"
}

// Use is one key of one operation (operation × side × role × method): the
// index of the rule table.
type Use uint8

// Uses. The methods are named after the ops layer's own (card validation
// kinds, MAC attributes, data-cipher kinds, PIN schemes).
const (
	UseNone Use = iota

	UseTranslatePinIncomingPEK // a stored or dynamic PEK deciphering the incoming block
	UseTranslatePinIncomingBDK // the BDK of the incoming DUKPT PIN key
	UseTranslatePinIncomingKPP // the AS2805 KPP of the incoming session PIN key
	UseTranslatePinOutgoingPEK // a stored or dynamic PEK enciphering the outgoing block
	UseTranslatePinOutgoingBDK // the BDK of the outgoing DUKPT PIN key

	UseGeneratePinVisaPVK          // Visa PIN / PVV generation key (V2)
	UseGeneratePinIBM3624PVK       // IBM 3624 PIN generation key (V1)
	UseGeneratePinEncipherPEK      // the PEK enciphering a generated PIN
	UseGeneratePinDecipherPEK      // the PEK deciphering the request's PIN (Visa PVV, IBM 3624 offset)
	UseVerifyPinVisaPVK            // Visa PVV verification key (V2)
	UseVerifyPinIBM3624PVK         // IBM 3624 PIN verification key (V1)
	UseVerifyPinPEK                // a stored or dynamic PEK deciphering the PIN
	UseVerifyPinBDK                // the BDK of a DUKPT PIN key
	UseEmvPinChangeIntegrity       // the IMK-SMI (E2)
	UseEmvPinChangeConfidentiality // the IMK-SMC (E1)
	UseEmvPinChangeAC              // the IMK-AC of the VIS PIN block (E0; Visa and Amex)
	UseEmvPinChangeNewPinPEK       // the PEK of the new PIN block
	UseEmvPinChangeCurrentPEK      // the PEK of the current PIN block (Visa and Amex)

	UseGenerateAuthRequestCryptogram
	UseVerifyAuthRequestCryptogram

	UseGenerateCardCVV1
	UseGenerateCardCVV2
	UseGenerateCardAmexCSC1
	UseGenerateCardAmexCSC2
	UseGenerateCardHolderVerification
	UseGenerateCardDynamicCode
	UseGenerateCardDynamicValue
	UseVerifyCardCVV1
	UseVerifyCardCVV2
	UseVerifyCardAmexCSC1
	UseVerifyCardAmexCSC2
	UseVerifyCardHolderVerification
	UseVerifyCardDynamicCode
	UseVerifyCardDynamicValue
	UseVerifyCardDiscoverDynamicCode

	UseGenerateMacISO9797Alg1
	UseGenerateMacISO9797Alg3
	UseGenerateMacCMAC
	UseGenerateMacAS2805
	UseGenerateMacHMAC
	UseGenerateMacDukpt
	UseGenerateMacEmv
	UseVerifyMacISO9797Alg1
	UseVerifyMacISO9797Alg3
	UseVerifyMacCMAC
	UseVerifyMacAS2805
	UseVerifyMacHMAC
	UseVerifyMacDukpt
	UseVerifyMacEmv

	UseEncryptDataSymmetric
	UseEncryptDataAsymmetric
	UseEncryptDataDukpt
	UseEncryptDataEmv
	UseDecryptDataSymmetric
	UseDecryptDataAsymmetric
	UseDecryptDataDukpt
	UseDecryptDataEmv

	UseDynamicKeyKEK // the KEK a dynamic (TR-31 wrapped) key is unwrapped under

	useCount
)

// Rule is what a Use allows.
type Rule struct {
	Op   Operation
	Side fault.Side // SideIncoming or SideOutgoing on two-key operations, else SideNone
	Role Role
	// Method is the method of Op the rule is for, "" when the operation has one
	// rule for the role.
	Method string
	// What names the operation in the error messages, e.g. "deciphering a PIN
	// block" or "GenerateMac ISO9797_ALGORITHM1".
	What string
	// Usages the key may have (one of).
	Usages []KeyUsage
	// Algorithms the key may have (one of); nil allows any.
	Algorithms []Algorithm
	// Modes the operation performs: the key's modes of use must include one
	// of them, or be {NoRestrictions}. The zero value requires nothing.
	Modes ModesOfUse
}

var (
	useTDES2   = []Algorithm{TDES2Key}
	useTDES    = []Algorithm{TDES2Key, TDES3Key}
	useSym     = []Algorithm{TDES2Key, TDES3Key, AES128, AES192, AES256}
	useBDK     = []Algorithm{TDES2Key, AES128, AES192, AES256}
	useHMAC    = []Algorithm{HMACSHA224, HMACSHA256, HMACSHA384, HMACSHA512}
	useRSA     = []Algorithm{RSA2048, RSA3072, RSA4096}
	needEnc    = ModesOfUse{Encrypt: true}
	needDec    = ModesOfUse{Decrypt: true}
	needGen    = ModesOfUse{Generate: true}
	needVer    = ModesOfUse{Verify: true}
	needDerive = ModesOfUse{DeriveKey: true}
	needUnwrap = ModesOfUse{Unwrap: true, Decrypt: true}
)

const (
	whatDecipherPIN = "deciphering a PIN block"
	whatEncipherPIN = "enciphering a PIN block"
	whatDukptPIN    = "DUKPT PIN key derivation"
)

func pek(op Operation, side fault.Side, role Role, method, what string, modes ModesOfUse) Rule {
	return Rule{Op: op, Side: side, Role: role, Method: method, What: what, Usages: []KeyUsage{P0}, Algorithms: useSym, Modes: modes}
}

func one(op Operation, role Role, method, what string, u KeyUsage, algs []Algorithm, modes ModesOfUse) Rule {
	return Rule{Op: op, Role: role, Method: method, What: what, Usages: []KeyUsage{u}, Algorithms: algs, Modes: modes}
}

func card(op Operation, method, kind string, u KeyUsage, algs []Algorithm, modes ModesOfUse) Rule {
	what := "GenerateCardValidationData with " + kind
	if op == OpVerifyCardData {
		what = "VerifyCardValidationData with " + kind
	}
	return one(op, RoleKey, method, what, u, algs, modes)
}

func macRule(op Operation, method, what string, u KeyUsage, algs []Algorithm, modes ModesOfUse) Rule {
	return one(op, RoleKey, method, op.String()+what, u, algs, modes)
}

func data(op Operation, role Role, method, what string, us []KeyUsage, algs []Algorithm, modes ModesOfUse) Rule {
	return Rule{Op: op, Role: role, Method: method, What: op.String() + what, Usages: us, Algorithms: algs, Modes: modes}
}

// useRules is the table.
var useRules = [useCount]Rule{
	UseTranslatePinIncomingPEK: pek(OpTranslatePin, fault.SideIncoming, RolePEK, "", whatDecipherPIN, needDec),
	UseTranslatePinIncomingBDK: {Op: OpTranslatePin, Side: fault.SideIncoming, Role: RoleBDK, Method: "DUKPT", What: whatDukptPIN, Usages: []KeyUsage{B0}, Algorithms: useBDK, Modes: needDerive},
	UseTranslatePinIncomingKPP: {Op: OpTranslatePin, Side: fault.SideIncoming, Role: RoleKPP, Method: "AS2805", What: "AS2805 session PIN key derivation", Usages: []KeyUsage{P0}, Algorithms: useTDES2, Modes: needDec},
	UseTranslatePinOutgoingPEK: pek(OpTranslatePin, fault.SideOutgoing, RolePEK, "", whatEncipherPIN, needEnc),
	UseTranslatePinOutgoingBDK: {Op: OpTranslatePin, Side: fault.SideOutgoing, Role: RoleBDK, Method: "DUKPT", What: whatDukptPIN, Usages: []KeyUsage{B0}, Algorithms: useBDK, Modes: needDerive},

	UseGeneratePinVisaPVK:          one(OpGeneratePin, RolePVK, "Visa", "Visa PIN generation", V2, useTDES, needGen),
	UseGeneratePinIBM3624PVK:       one(OpGeneratePin, RolePVK, "IBM3624", "IBM 3624 PIN generation", V1, useTDES, needGen),
	UseGeneratePinEncipherPEK:      pek(OpGeneratePin, fault.SideNone, RolePEK, "new PIN", whatEncipherPIN, needEnc),
	UseGeneratePinDecipherPEK:      pek(OpGeneratePin, fault.SideNone, RolePEK, "given PIN", whatDecipherPIN, needDec),
	UseVerifyPinVisaPVK:            one(OpVerifyPin, RolePVK, "Visa", "Visa PIN verification", V2, useTDES, needVer),
	UseVerifyPinIBM3624PVK:         one(OpVerifyPin, RolePVK, "IBM3624", "IBM 3624 PIN verification", V1, useTDES, needVer),
	UseVerifyPinPEK:                pek(OpVerifyPin, fault.SideNone, RolePEK, "", whatDecipherPIN, needDec),
	UseVerifyPinBDK:                one(OpVerifyPin, RoleBDK, "DUKPT", whatDukptPIN, B0, useBDK, needDerive),
	UseEmvPinChangeIntegrity:       one(OpGenerateMacEmvPinChange, RoleIntegrityKey, "", "GenerateMacEmvPinChange (integrity)", E2, useTDES2, needDerive),
	UseEmvPinChangeConfidentiality: one(OpGenerateMacEmvPinChange, RoleConfidentialityKey, "", "GenerateMacEmvPinChange (confidentiality)", E1, useTDES2, needDerive),
	UseEmvPinChangeAC:              one(OpGenerateMacEmvPinChange, RoleACKey, "Visa, Amex", "GenerateMacEmvPinChange (VIS PIN block)", E0, useTDES2, needDerive),
	UseEmvPinChangeNewPinPEK:       pek(OpGenerateMacEmvPinChange, fault.SideNone, RolePEK, "", whatDecipherPIN, needDec),
	UseEmvPinChangeCurrentPEK:      pek(OpGenerateMacEmvPinChange, fault.SideNone, RoleCurrentPEK, "Visa, Amex", whatDecipherPIN, needDec),

	UseGenerateAuthRequestCryptogram: one(OpGenerateAuthRequestCryptogram, RoleKey, "", "GenerateAuthRequestCryptogram", E0, useTDES2, needDerive),
	UseVerifyAuthRequestCryptogram:   one(OpVerifyAuthRequestCryptogram, RoleKey, "", "VerifyAuthRequestCryptogram", E0, useTDES2, needDerive),

	UseGenerateCardCVV1:               card(OpGenerateCardData, "CVV1", "CardVerificationValue1", C0, useTDES2, needGen),
	UseGenerateCardCVV2:               card(OpGenerateCardData, "CVV2", "CardVerificationValue2", C0, useTDES2, needGen),
	UseGenerateCardAmexCSC1:           card(OpGenerateCardData, "AmexCSC1", "AmexCardSecurityCodeVersion1", C0, useTDES, needGen),
	UseGenerateCardAmexCSC2:           card(OpGenerateCardData, "AmexCSC2", "AmexCardSecurityCodeVersion2", C0, useTDES, needGen),
	UseGenerateCardHolderVerification: card(OpGenerateCardData, "CAVV", "CardHolderVerificationValue", E6, useTDES2, needDerive),
	UseGenerateCardDynamicCode:        card(OpGenerateCardData, "DynamicCode", "DynamicCardVerificationCode", E4, useTDES2, needDerive),
	UseGenerateCardDynamicValue:       card(OpGenerateCardData, "DynamicValue", "DynamicCardVerificationValue", E6, useTDES2, needDerive),
	UseVerifyCardCVV1:                 card(OpVerifyCardData, "CVV1", "CardVerificationValue1", C0, useTDES2, needVer),
	UseVerifyCardCVV2:                 card(OpVerifyCardData, "CVV2", "CardVerificationValue2", C0, useTDES2, needVer),
	UseVerifyCardAmexCSC1:             card(OpVerifyCardData, "AmexCSC1", "AmexCardSecurityCodeVersion1", C0, useTDES, needVer),
	UseVerifyCardAmexCSC2:             card(OpVerifyCardData, "AmexCSC2", "AmexCardSecurityCodeVersion2", C0, useTDES, needVer),
	UseVerifyCardHolderVerification:   card(OpVerifyCardData, "CAVV", "CardHolderVerificationValue", E6, useTDES2, needDerive),
	UseVerifyCardDynamicCode:          card(OpVerifyCardData, "DynamicCode", "DynamicCardVerificationCode", E4, useTDES2, needDerive),
	UseVerifyCardDynamicValue:         card(OpVerifyCardData, "DynamicValue", "DynamicCardVerificationValue", E6, useTDES2, needDerive),
	UseVerifyCardDiscoverDynamicCode:  card(OpVerifyCardData, "DiscoverDynamicCode", "DiscoverDynamicCardVerificationCode", E6, useTDES2, needDerive),

	UseGenerateMacISO9797Alg1: macRule(OpGenerateMac, "ISO9797Alg1", " ISO9797_ALGORITHM1", M1, useTDES, needGen),
	UseGenerateMacISO9797Alg3: macRule(OpGenerateMac, "ISO9797Alg3", " ISO9797_ALGORITHM3", M3, useTDES, needGen),
	UseGenerateMacCMAC:        macRule(OpGenerateMac, "CMAC", " CMAC", M6, useSym, needGen),
	UseGenerateMacAS2805:      macRule(OpGenerateMac, "AS2805", " AS2805_4_1", M0, useTDES, needGen),
	UseGenerateMacHMAC:        macRule(OpGenerateMac, "HMAC", " HMAC", M7, useHMAC, needGen),
	UseGenerateMacDukpt:       {Op: OpGenerateMac, Role: RoleBDK, Method: "DUKPT", What: "GenerateMac with DUKPT", Usages: []KeyUsage{B0}, Algorithms: useBDK, Modes: needDerive},
	UseGenerateMacEmv:         macRule(OpGenerateMac, "EmvMac", " with EmvMac", E2, useTDES2, needDerive),
	UseVerifyMacISO9797Alg1:   macRule(OpVerifyMac, "ISO9797Alg1", " ISO9797_ALGORITHM1", M1, useTDES, needVer),
	UseVerifyMacISO9797Alg3:   macRule(OpVerifyMac, "ISO9797Alg3", " ISO9797_ALGORITHM3", M3, useTDES, needVer),
	UseVerifyMacCMAC:          macRule(OpVerifyMac, "CMAC", " CMAC", M6, useSym, needVer),
	UseVerifyMacAS2805:        macRule(OpVerifyMac, "AS2805", " AS2805_4_1", M0, useTDES, needVer),
	UseVerifyMacHMAC:          macRule(OpVerifyMac, "HMAC", " HMAC", M7, useHMAC, needVer),
	UseVerifyMacDukpt:         {Op: OpVerifyMac, Role: RoleBDK, Method: "DUKPT", What: "VerifyMac with DUKPT", Usages: []KeyUsage{B0}, Algorithms: useBDK, Modes: needDerive},
	UseVerifyMacEmv:           macRule(OpVerifyMac, "EmvMac", " with EmvMac", E2, useTDES2, needDerive),

	UseEncryptDataSymmetric:  data(OpEncryptData, RoleKey, "Symmetric", "", []KeyUsage{D0}, useSym, needEnc),
	UseEncryptDataAsymmetric: data(OpEncryptData, RoleKey, "Asymmetric", "", []KeyUsage{D1}, useRSA, needEnc),
	UseEncryptDataDukpt:      data(OpEncryptData, RoleBDK, "DUKPT", " with DUKPT", []KeyUsage{B0}, useBDK, needDerive),
	UseEncryptDataEmv:        data(OpEncryptData, RoleKey, "EMV", " with EMV", []KeyUsage{E1, E6}, useTDES2, needDerive),
	UseDecryptDataSymmetric:  data(OpDecryptData, RoleKey, "Symmetric", "", []KeyUsage{D0}, useSym, needDec),
	UseDecryptDataAsymmetric: data(OpDecryptData, RoleKey, "Asymmetric", "", []KeyUsage{D1}, useRSA, needDec),
	UseDecryptDataDukpt:      data(OpDecryptData, RoleBDK, "DUKPT", " with DUKPT", []KeyUsage{B0}, useBDK, needDerive),
	UseDecryptDataEmv:        data(OpDecryptData, RoleKey, "EMV", " with EMV", []KeyUsage{E1, E6}, useTDES2, needDerive),

	UseDynamicKeyKEK: {Op: OpOpenDynamicKey, Role: RoleKEK, What: "unwrapping a dynamic key", Usages: []KeyUsage{K0, K1}, Algorithms: useSym, Modes: needUnwrap},
}

// Uses returns every Use of the table, in order.
func Uses() []Use {
	us := make([]Use, 0, useCount-1)
	for u := UseNone + 1; u < useCount; u++ {
		us = append(us, u)
	}
	return us
}

// Valid reports whether u is a Use of the table.
func (u Use) Valid() bool { return u > UseNone && u < useCount }

// Rule returns u's rule (a copy: changing it changes nothing in the table),
// and false when u is not a Use of the table.
func (u Use) Rule() (Rule, bool) {
	if !u.Valid() {
		return Rule{}, false
	}
	r := useRules[u]
	r.Usages = slices.Clone(r.Usages)
	r.Algorithms = slices.Clone(r.Algorithms)
	return r, true
}

// String names u by its operation, side, role and method, e.g.
// "TranslatePin incoming PEK" or "GenerateMac key (CMAC)".
func (u Use) String() string {
	if !u.Valid() {
		return "Use(" + strconv.Itoa(int(u)) + ")"
	}
	r := &useRules[u]
	var b strings.Builder
	b.WriteString(r.Op.String())
	switch r.Side {
	case fault.SideIncoming:
		b.WriteString(" incoming")
	case fault.SideOutgoing:
		b.WriteString(" outgoing")
	}
	b.WriteString(" " + r.Role.String())
	if r.Method != "" {
		b.WriteString(" (" + r.Method + ")")
	}
	return b.String()
}

// Check checks a key with attributes a against u's rule, in this order:
// usage, algorithm, modes of use. key names the key in the messages (its ARN,
// or e.g. "the wrapped key"). The error is a Validation fault with
// Violation ViolationUsage, ViolationAlgorithm or ViolationModes and a
// client-safe message that names no request member: the caller sets the
// fault's subject (or field) for its edge. An unknown Use is an Internal fault.
func (u Use) Check(key string, a Attributes) error {
	if !u.Valid() {
		return fault.Internalf("key use check", errUnknownUse(u))
	}
	return useRules[u].check(useRules[u].What, key, a)
}

// CheckAs is Check with the operation named what in the messages instead of
// the rule's What: for callers whose request spells the method more
// precisely than the table (e.g. "GenerateMac HMAC_SHA256" for the HMAC rule).
func (u Use) CheckAs(what, key string, a Attributes) error {
	if !u.Valid() {
		return fault.Internalf("key use check", errUnknownUse(u))
	}
	return useRules[u].check(what, key, a)
}

// Allows reports whether a key with attributes a passes u's rule.
func (u Use) Allows(a Attributes) bool {
	return u.Valid() && useRules[u].allows(a) == ""
}

// UseSet is a set of Uses: the ones a key's attributes pass, computed once
// (AllowedUses) where a key is cached, so that a check on the hot path is a
// bit test rather than the rule's string comparisons. The zero UseSet is
// empty. A set only ever answers "allowed": a Use not in it is checked with
// Check, which builds the refusal, so a set computed from a key's attributes
// can skip no refusal.
type UseSet [(useCount + 63) / 64]uint64

// AllowedUses is the set of the Uses whose rules a key with attributes a
// passes: u is in it exactly when u.Allows(a).
func AllowedUses(a Attributes) UseSet {
	var s UseSet
	for u := UseNone + 1; u < useCount; u++ {
		if useRules[u].allows(a) == "" {
			s[u/64] |= 1 << (u % 64)
		}
	}
	return s
}

// Has reports whether u is in s (false for a Use that is not Valid).
func (s *UseSet) Has(u Use) bool {
	return int(u/64) < len(s) && s[u/64]&(1<<(u%64)) != 0
}

// allows returns the violated rule, "" when a passes.
func (r *Rule) allows(a Attributes) string {
	if !slices.Contains(r.Usages, a.Usage) {
		return fault.ViolationUsage
	}
	if r.Algorithms != nil && !slices.Contains(r.Algorithms, a.Algorithm) {
		return fault.ViolationAlgorithm
	}
	if r.Modes != (ModesOfUse{}) && !a.Modes.NoRestrictions && !a.Modes.anyOf(r.Modes) {
		return fault.ViolationModes
	}
	return ""
}

func (r *Rule) check(what, key string, a Attributes) error {
	switch r.allows(a) {
	case "":
		return nil
	case fault.ViolationUsage:
		names := make([]string, len(r.Usages))
		for i, u := range r.Usages {
			names[i] = string(u)
		}
		return fault.KeyRule(fault.ViolationUsage, "%s needs a key with KeyUsage %s; %s is %s", what, strings.Join(names, " or "), key, a.Usage)
	case fault.ViolationAlgorithm:
		return fault.KeyRule(fault.ViolationAlgorithm, "%s does not support %s keys", what, a.Algorithm)
	default:
		return fault.KeyRule(fault.ViolationModes, "the modes of use of %s do not allow %s", key, what)
	}
}

// anyOf reports whether m and n share a true mode.
func (m ModesOfUse) anyOf(n ModesOfUse) bool {
	return m.Encrypt && n.Encrypt || m.Decrypt && n.Decrypt || m.Wrap && n.Wrap || m.Unwrap && n.Unwrap ||
		m.Generate && n.Generate || m.Sign && n.Sign || m.Verify && n.Verify || m.DeriveKey && n.DeriveKey ||
		m.NoRestrictions && n.NoRestrictions
}

type errUnknownUse Use

func (e errUnknownUse) Error() string { return "unknown key use " + strconv.Itoa(int(e)) }
