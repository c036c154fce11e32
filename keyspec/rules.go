package keyspec

import (
	"slices"
	"strings"

	"payhsm/fault"
)

// The rules below are the user guide's "Understanding key attributes for AWS
// Payment Cryptography key" table, with these decisions where the guide is
// silent, contradicts itself or contradicts the model:
//
//   - M7 (HMAC) keys take HMAC_SHA224/256/384/512 and nothing else. The table
//     lists TDES and AES for M7, but every HMAC example in the guide ("Creating
//     an HMAC key", "Generate HMAC", SPA2 AAV) creates M7 keys with an
//     HMAC_SHA* algorithm, the hash being fixed at creation, and an HMAC with a
//     TDES or AES "algorithm" names no hash. HMAC algorithms are refused for
//     every other usage.
//   - M0 (ISO 16609 MAC) is absent from the table; the "Generate/Verify MAC"
//     operations table gives TDES_2KEY, TDES_3KEY and {Generate}, {Verify},
//     {Generate, Verify}. {NoRestrictions} is added, as for every other MAC usage.
//   - P1 (PIN generation) is absent from the table and listed under "Unused key
//     types". It is accepted with the PIN verification keys' rules (TDES/AES,
//     {Generate}, {Verify}, {Generate, Verify}, {NoRestrictions}) so that keys
//     exchanged with other systems can be held, and SupportedForOperations is
//     false for it. (Listing examples in the guide show a P1 key with
//     encrypt/decrypt modes; that contradicts X9.143's P1 and is not followed.)
//   - K2 (TR-34 asymmetric key): the table has a stray "{ DeriveKey = true }"
//     line copied from K3. An RSA key cannot do key agreement, and TR-34 uses
//     K2 keys only to encrypt/wrap, so only the encryption combinations are kept.
//   - CreateKey makes asymmetric keys as ASYMMETRIC_KEY_PAIR only; ImportKey
//     takes asymmetric keys as PUBLIC_KEY only (certificates), since the guide
//     documents no import of private keys.
//   - Imported public keys: D1 and K2 {Encrypt, Wrap} and S0 {Verify} (the
//     table's NOTE lines). S0 public keys may also be ECC: root and intermediate
//     CA certificates that issue the ECC leaf certificates of ECDH ("Importing
//     ECC public keys"). K3 public keys are ECC with {DeriveKey} (the
//     "Import/Export Key" operations table row; a leaf ECC certificate is only
//     stored, see SupportedForOperations).

var (
	mEDWU = ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}
	mEW   = ModesOfUse{Encrypt: true, Wrap: true}
	mDU   = ModesOfUse{Decrypt: true, Unwrap: true}
	mG    = ModesOfUse{Generate: true}
	mV    = ModesOfUse{Verify: true}
	mGV   = ModesOfUse{Generate: true, Verify: true}
	mS    = ModesOfUse{Sign: true}
	mX    = ModesOfUse{DeriveKey: true}
	mN    = ModesOfUse{NoRestrictions: true}
)

var (
	symEncModes  = []ModesOfUse{mEDWU, mEW, mDU, mN}
	macModes     = []ModesOfUse{mG, mV, mGV, mN}
	deriveModes  = []ModesOfUse{mX, mN}
	asymEncModes = []ModesOfUse{mEDWU, mEW, mDU}

	tdesAlgs = []Algorithm{TDES2Key, TDES3Key}
	symAlgs  = []Algorithm{TDES2Key, TDES3Key, AES128, AES192, AES256}
	hmacAlgs = []Algorithm{HMACSHA224, HMACSHA256, HMACSHA384, HMACSHA512}
	rsaAlgs  = []Algorithm{RSA2048, RSA3072, RSA4096}
	eccAlgs  = []Algorithm{ECCP256, ECCP384, ECCP521}
	pkiAlgs  = []Algorithm{RSA2048, RSA3072, RSA4096, ECCP256, ECCP384, ECCP521}
	aesStar  = []Algorithm{AES128, AES192, AES256}
)

// rule is what one KeyUsage allows.
type rule struct {
	symmetric bool
	algs      []Algorithm  // CreateKey, and symmetric ImportKey
	modes     []ModesOfUse // CreateKey, and symmetric ImportKey
	pubAlgs   []Algorithm  // asymmetric ImportKey (PUBLIC_KEY)
	pubModes  []ModesOfUse // asymmetric ImportKey (PUBLIC_KEY)
	starred   []Algorithm  // "*": not currently supported by any cryptographic operation
	unused    bool         // no operation uses this usage at all
}

var rules = map[KeyUsage]rule{
	B0: {symmetric: true, algs: symAlgs, modes: deriveModes},
	C0: {symmetric: true, algs: symAlgs, modes: macModes, starred: aesStar},
	D0: {symmetric: true, algs: symAlgs, modes: symEncModes},
	E0: {symmetric: true, algs: symAlgs, modes: deriveModes,
		starred: []Algorithm{TDES3Key, AES128, AES192, AES256}},
	E1: {symmetric: true, algs: symAlgs, modes: deriveModes, starred: aesStar},
	E2: {symmetric: true, algs: symAlgs, modes: deriveModes, starred: aesStar},
	E4: {symmetric: true, algs: symAlgs, modes: deriveModes, starred: aesStar},
	E5: {symmetric: true, algs: symAlgs, modes: deriveModes, starred: aesStar},
	E6: {symmetric: true, algs: symAlgs, modes: deriveModes, starred: aesStar},
	K0: {symmetric: true, algs: symAlgs, modes: symEncModes},
	K1: {symmetric: true, algs: symAlgs, modes: symEncModes},
	M0: {symmetric: true, algs: tdesAlgs, modes: macModes},
	M1: {symmetric: true, algs: tdesAlgs, modes: macModes},
	M3: {symmetric: true, algs: tdesAlgs, modes: macModes},
	M6: {symmetric: true, algs: symAlgs, modes: macModes},
	M7: {symmetric: true, algs: hmacAlgs, modes: macModes},
	P0: {symmetric: true, algs: symAlgs, modes: symEncModes},
	P1: {symmetric: true, algs: symAlgs, modes: macModes, unused: true},
	V1: {symmetric: true, algs: symAlgs, modes: macModes},
	V2: {symmetric: true, algs: symAlgs, modes: macModes},

	D1: {algs: rsaAlgs, modes: asymEncModes, pubAlgs: rsaAlgs, pubModes: []ModesOfUse{mEW}},
	K2: {algs: rsaAlgs, modes: asymEncModes, pubAlgs: rsaAlgs, pubModes: []ModesOfUse{mEW}},
	S0: {algs: rsaAlgs, modes: []ModesOfUse{mS, mV}, pubAlgs: pkiAlgs, pubModes: []ModesOfUse{mV}},
	K3: {algs: eccAlgs, modes: []ModesOfUse{mX}, pubAlgs: eccAlgs, pubModes: []ModesOfUse{mX}},
}

// IsSymmetric reports whether u is a usage for secret (symmetric) keys.
func (u KeyUsage) IsSymmetric() bool {
	r, ok := rules[u]
	return ok && r.symmetric
}

// IsAsymmetric reports whether u is a usage for RSA or ECC keys (D1, K2, K3, S0).
func (u KeyUsage) IsAsymmetric() bool {
	r, ok := rules[u]
	return ok && !r.symmetric
}

// ValidateCreate checks the attributes of a CreateKey request: KeyUsage,
// KeyClass, KeyAlgorithm and KeyModesOfUse are enum members; the class is
// SYMMETRIC_KEY for symmetric usages and ASYMMETRIC_KEY_PAIR for D1, K2, K3 and
// S0; the algorithm and the exact combination of modes are among those the user
// guide allows for the usage; deriveKeyUsage is set only when the usage is K3
// and is then a member of the DeriveKeyUsage enum (a K3 key created without
// one derives DefaultDeriveKeyUsage keys). The error is a Validation
// fault whose message names the failed rule and whose Subject names the
// attribute (fault.SubjectKeyUsage, SubjectKeyClass, SubjectKeyAlgorithm,
// SubjectKeyModesOfUse, SubjectDeriveKeyUsage): each edge names it its own way.
func ValidateCreate(a Attributes, deriveKeyUsage KeyUsage) error {
	r, err := checkEnums(a)
	if err != nil {
		return err
	}
	want := Symmetric
	if !r.symmetric {
		want = AsymmetricPair
	}
	if a.Class != want {
		return fault.About(fault.SubjectKeyClass, "%s keys are created with KeyClass %s, not %s", a.Usage, want, a.Class)
	}
	if err := checkAlgModes(a, r.algs, r.modes); err != nil {
		return err
	}
	if a.Usage == K3 {
		if deriveKeyUsage == "" {
			return nil // DefaultDeriveKeyUsage
		}
		return checkDeriveKeyUsage(deriveKeyUsage)
	}
	if deriveKeyUsage != "" {
		return fault.About(fault.SubjectDeriveKeyUsage, "is only allowed for %s keys, not %s", K3, a.Usage)
	}
	return nil
}

// DefaultDeriveKeyUsage is the DeriveKeyUsage of a K3 key pair created
// without one. The model makes the member optional ("you can optionally set
// the DeriveKeyUsage parameter", CreateKey) and documents no default; the
// user guide creates a K3 key without it ("Creating an asymmetric ECC key")
// and, for the one use of a K3 key it documents (ECDH key exchange), says
// "When using ECDH to exchange (wrap) other keys, use a value of
// TR31_K1_KEY_BLOCK_PROTECTION_KEY". A key pair still derives keys of one
// usage only (the guide's single-use rule), and GetKey shows which.
const DefaultDeriveKeyUsage = K1

// ValidateImport checks the attributes of an imported key. Symmetric usages
// follow the CreateKey rules. Asymmetric keys are imported as public keys or
// certificates only (KeyClass PUBLIC_KEY): D1 and K2 with {Encrypt, Wrap},
// S0 (root, intermediate and signing certificates, RSA or ECC) with {Verify},
// K3 (ECC) with {DeriveKey}. deriveKeyUsage may only accompany a K3 key and is
// optional for it (certificate imports carry none); when set it must be a
// member of the DeriveKeyUsage enum.
func ValidateImport(a Attributes, deriveKeyUsage KeyUsage) error {
	r, err := checkEnums(a)
	if err != nil {
		return err
	}
	if r.symmetric {
		if a.Class != Symmetric {
			return fault.About(fault.SubjectKeyClass, "%s keys are imported with KeyClass %s, not %s", a.Usage, Symmetric, a.Class)
		}
		err = checkAlgModes(a, r.algs, r.modes)
	} else {
		if a.Class != PublicKey {
			return fault.About(fault.SubjectKeyClass, "%s keys can only be imported as public keys (KeyClass %s), not %s", a.Usage, PublicKey, a.Class)
		}
		err = checkAlgModes(a, r.pubAlgs, r.pubModes)
	}
	if err != nil {
		return err
	}
	if deriveKeyUsage == "" {
		return nil
	}
	if a.Usage != K3 {
		return fault.About(fault.SubjectDeriveKeyUsage, "is only allowed for %s keys, not %s", K3, a.Usage)
	}
	return checkDeriveKeyUsage(deriveKeyUsage)
}

// SupportedForOperations reports whether some cryptographic operation can use a
// key with a's usage, class and algorithm: the usage/algorithm pair is allowed
// and is not one the guide marks with "*" ("not currently supported by any
// cryptographic operations": AES for C0 and E0..E6, TDES_3KEY for E0), the usage
// is not P1 ("Unused key types"), and it is not an imported K3 public key (a leaf
// ECC certificate is only stored: ECDH takes the peer's certificate at run
// time). Modes of use are not considered.
func SupportedForOperations(a Attributes) bool {
	r, ok := rules[a.Usage]
	if !ok || r.unused {
		return false
	}
	algs := r.algs
	switch {
	case r.symmetric && a.Class != Symmetric:
		return false
	case !r.symmetric && a.Class == PublicKey:
		if a.Usage == K3 {
			return false
		}
		algs = r.pubAlgs
	case !r.symmetric && a.Class != AsymmetricPair:
		return false
	}
	return slices.Contains(algs, a.Algorithm) && !slices.Contains(r.starred, a.Algorithm)
}

func checkEnums(a Attributes) (rule, error) {
	if _, ok := ParseKeyUsage(string(a.Usage)); !ok {
		return rule{}, fault.About(fault.SubjectKeyUsage, "unknown key usage %.64q", string(a.Usage))
	}
	if _, ok := ParseClass(string(a.Class)); !ok {
		return rule{}, fault.About(fault.SubjectKeyClass, "unknown key class %.64q", string(a.Class))
	}
	if _, ok := ParseAlgorithm(string(a.Algorithm)); !ok {
		return rule{}, fault.About(fault.SubjectKeyAlgorithm, "unknown key algorithm %.64q", string(a.Algorithm))
	}
	return rules[a.Usage], nil
}

func checkAlgModes(a Attributes, algs []Algorithm, modes []ModesOfUse) error {
	if !slices.Contains(algs, a.Algorithm) {
		return fault.About(fault.SubjectKeyAlgorithm, "%s is not allowed for %s %s keys (allowed: %s)",
			a.Algorithm, a.Usage, a.Class, joinAlgs(algs))
	}
	m := a.Modes
	if m == (ModesOfUse{}) {
		return fault.About(fault.SubjectKeyModesOfUse, "at least one mode of use must be true")
	}
	if m.NoRestrictions && m != mN {
		return fault.About(fault.SubjectKeyModesOfUse, "NoRestrictions cannot be combined with other modes of use")
	}
	if !slices.Contains(modes, m) {
		return fault.About(fault.SubjectKeyModesOfUse, "%s is not an allowed combination for %s %s keys (allowed: %s)",
			m, a.Usage, a.Class, joinModes(modes))
	}
	return nil
}

func checkDeriveKeyUsage(u KeyUsage) error {
	if _, ok := ParseDeriveKeyUsage(string(u)); !ok {
		return fault.About(fault.SubjectDeriveKeyUsage, "%.64q is not a DeriveKeyUsage value: keys of that usage cannot be derived by key agreement", string(u))
	}
	return nil
}

func joinAlgs(algs []Algorithm) string {
	s := make([]string, len(algs))
	for i, a := range algs {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

func joinModes(modes []ModesOfUse) string {
	s := make([]string, len(modes))
	for i, m := range modes {
		s[i] = m.String()
	}
	return strings.Join(s, ", ")
}

// String renders m as the set of its true members, e.g. "{Encrypt, Wrap}".
func (m ModesOfUse) String() string {
	flags := []struct {
		on   bool
		name string
	}{
		{m.Encrypt, "Encrypt"}, {m.Decrypt, "Decrypt"}, {m.Wrap, "Wrap"}, {m.Unwrap, "Unwrap"},
		{m.Generate, "Generate"}, {m.Sign, "Sign"}, {m.Verify, "Verify"},
		{m.DeriveKey, "DeriveKey"}, {m.NoRestrictions, "NoRestrictions"},
	}
	var names []string
	for _, f := range flags {
		if f.on {
			names = append(names, f.name)
		}
	}
	return "{" + strings.Join(names, ", ") + "}"
}
