package keyspec

// The enum lists below are those of the control-plane model
// (payment-cryptography-2021-09-14.json, shapes KeyUsage, DeriveKeyUsage,
// KeyAlgorithm, KeyClass, KeyCheckValueAlgorithm, KeyExportability). Parsing is
// exact and case-sensitive, as AWS enum values are.

var allUsages = []KeyUsage{B0, C0, D0, D1, E0, E1, E2, E4, E5, E6, K0, K1, K2, K3,
	M0, M1, M3, M6, M7, P0, P1, S0, V1, V2}

// deriveKeyUsages is the model's DeriveKeyUsage enum: the symmetric usages a key
// derived by ECDH from a K3 key may carry. M0 is absent from the model's list.
var deriveKeyUsages = []KeyUsage{B0, C0, D0, E0, E1, E2, E4, E5, E6, K0, K1,
	M3, M1, M6, M7, P0, P1, V1, V2}

var allAlgorithms = []Algorithm{TDES2Key, TDES3Key, AES128, AES192, AES256,
	HMACSHA224, HMACSHA256, HMACSHA384, HMACSHA512,
	RSA2048, RSA3072, RSA4096, ECCP256, ECCP384, ECCP521}

var allClasses = []Class{Symmetric, AsymmetricPair, PrivateKey, PublicKey}

var allKCVAlgorithms = []KCVAlgorithm{KCVCMAC, KCVANSIX924, KCVHMAC, KCVSHA1}

var allExportabilities = []Exportability{Exportable, NonExportable, Sensitive}

// KeyUsages returns every KeyUsage of the model, in a fixed order.
func KeyUsages() []KeyUsage { return append([]KeyUsage(nil), allUsages...) }

// Algorithms returns every KeyAlgorithm of the model, in a fixed order.
func Algorithms() []Algorithm { return append([]Algorithm(nil), allAlgorithms...) }

func member[T ~string](all []T, s string) (T, bool) {
	for _, v := range all {
		if string(v) == s {
			return v, true
		}
	}
	var zero T
	return zero, false
}

// ParseKeyUsage reports whether s is a member of the KeyUsage enum.
func ParseKeyUsage(s string) (KeyUsage, bool) { return member(allUsages, s) }

// ParseDeriveKeyUsage reports whether s is a member of the DeriveKeyUsage enum.
func ParseDeriveKeyUsage(s string) (KeyUsage, bool) { return member(deriveKeyUsages, s) }

// ParseAlgorithm reports whether s is a member of the KeyAlgorithm enum.
func ParseAlgorithm(s string) (Algorithm, bool) { return member(allAlgorithms, s) }

// ParseClass reports whether s is a member of the KeyClass enum.
func ParseClass(s string) (Class, bool) { return member(allClasses, s) }

// ParseKCVAlgorithm reports whether s is a member of the KeyCheckValueAlgorithm enum.
func ParseKCVAlgorithm(s string) (KCVAlgorithm, bool) { return member(allKCVAlgorithms, s) }

// ParseExportability reports whether s is a member of the KeyExportability enum.
func ParseExportability(s string) (Exportability, bool) { return member(allExportabilities, s) }
