package keyspec

import "payhsm/fault"

// IsTDES reports whether a is a triple-DES algorithm.
func (a Algorithm) IsTDES() bool { return a == TDES2Key || a == TDES3Key }

// IsAES reports whether a is an AES algorithm.
func (a Algorithm) IsAES() bool { return a == AES128 || a == AES192 || a == AES256 }

// IsHMAC reports whether a is an HMAC algorithm.
func (a Algorithm) IsHMAC() bool {
	return a == HMACSHA224 || a == HMACSHA256 || a == HMACSHA384 || a == HMACSHA512
}

// IsRSA reports whether a is an RSA algorithm.
func (a Algorithm) IsRSA() bool { return a == RSA2048 || a == RSA3072 || a == RSA4096 }

// IsECC reports whether a is an elliptic-curve algorithm.
func (a Algorithm) IsECC() bool { return a == ECCP256 || a == ECCP384 || a == ECCP521 }

// IsSymmetric reports whether a is a secret-key algorithm (TDES, AES, HMAC).
func (a Algorithm) IsSymmetric() bool { return a.IsTDES() || a.IsAES() || a.IsHMAC() }

// IsAsymmetric reports whether a is a public-key algorithm (RSA, ECC).
func (a Algorithm) IsAsymmetric() bool { return a.IsRSA() || a.IsECC() }

// KeyLen is the length in bytes of the clear key of a symmetric algorithm, and
// 0 for asymmetric or unknown algorithms. TDES keys include their parity bits
// (TDES_2KEY is 16 bytes, TDES_3KEY 24). For HMAC it is the length a generated
// key has: the hash's output length L (28, 32, 48, 64), the minimum RFC 2104
// section 3 recommends ("less than L bytes is strongly discouraged"; longer keys
// add no significant strength). Imported HMAC keys may differ; see
// AlgorithmFromTR31 for the lengths accepted on import.
func (a Algorithm) KeyLen() int {
	switch a {
	case TDES2Key:
		return 16
	case TDES3Key:
		return 24
	case AES128:
		return 16
	case AES192:
		return 24
	case AES256:
		return 32
	case HMACSHA224:
		return 28
	case HMACSHA256:
		return 32
	case HMACSHA384:
		return 48
	case HMACSHA512:
		return 64
	}
	return 0
}

// ValidImportLen reports whether an imported clear key of n bytes fits a:
// exactly KeyLen for TDES and AES; for HMAC, from the guide's 128-bit minimum
// (16 bytes) up to the hash's block size.
func (a Algorithm) ValidImportLen(n int) bool {
	if a.IsHMAC() {
		return n >= minHMACKeyLen && n <= a.hmacBlockSize()
	}
	return n == a.KeyLen()
}

// hmacBlockSize is the hash's input block size B (FIPS 180-4 section 1):
// 64 bytes for SHA-224/256, 128 for SHA-384/512. 0 for non-HMAC algorithms.
func (a Algorithm) hmacBlockSize() int {
	switch a {
	case HMACSHA224, HMACSHA256:
		return 64
	case HMACSHA384, HMACSHA512:
		return 128
	}
	return 0
}

// Bits is the nominal key size in bits: the effective key bits of TDES
// (112 for two-key, 168 for three-key, parity excluded), the AES key size,
// 8*KeyLen for HMAC, the RSA modulus size and the size of the ECC curve's
// prime (521 for P-521). 0 for unknown algorithms. It is not a security
// strength; compare keys with Strength.
func (a Algorithm) Bits() int {
	switch a {
	case TDES2Key:
		return 112
	case TDES3Key:
		return 168
	case AES128, AES192, AES256, HMACSHA224, HMACSHA256, HMACSHA384, HMACSHA512:
		return 8 * a.KeyLen()
	case RSA2048:
		return 2048
	case RSA3072:
		return 3072
	case RSA4096:
		return 4096
	case ECCP256:
		return 256
	case ECCP384:
		return 384
	case ECCP521:
		return 521
	}
	return 0
}

// Strength is the security strength in bits of a key of algorithm a, per NIST
// SP 800-57 Part 1 Rev. 5, section 5.6.1:
//   - Table 2 (comparable strengths): 2TDEA 80, 3TDEA 112, AES-128/192/256
//     128/192/256; IFC (RSA) k=2048 112, k=3072 128 (k=4096 is below the
//     k=7680 row, so 128); ECC f=256-383 128, f=384-511 192, f=512+ 256.
//   - Table 3 (hash functions), HMAC column: SHA-224 192; SHA-256, SHA-384,
//     SHA-512 256. HMAC strength is also bounded by the key's length
//     (SP 800-107 Rev. 1, section 5.3.4), which for a key of KeyLen bytes is
//     never the smaller bound; use KeyStrength for keys of other lengths.
//
// This is the ordering behind "the wrapping key must be at least as strong as
// the key it protects" (user guide, "Minimum key strengths and the effect on
// import and export functions"). 0 for unknown algorithms.
func Strength(a Algorithm) int {
	switch a {
	case TDES2Key:
		return 80
	case TDES3Key:
		return 112
	case AES128:
		return 128
	case AES192:
		return 192
	case AES256:
		return 256
	case HMACSHA224:
		return 192
	case HMACSHA256, HMACSHA384, HMACSHA512:
		return 256
	case RSA2048:
		return 112
	case RSA3072, RSA4096:
		return 128
	case ECCP256:
		return 128
	case ECCP384:
		return 192
	case ECCP521:
		return 256
	}
	return 0
}

// KeyStrength is Strength for a key of keyLen bytes: an HMAC key shorter than
// the hash strength is only as strong as its length (SP 800-107 Rev. 1,
// section 5.3.4). For other algorithms the length is fixed by a and ignored.
func KeyStrength(a Algorithm, keyLen int) int {
	s := Strength(a)
	if a.IsHMAC() && keyLen >= 0 && 8*keyLen < s {
		return 8 * keyLen
	}
	return s
}

// AtLeastAsStrong reports whether a wrapping key of algorithm wrapping is at
// least as strong as a key of algorithm key (both must be known algorithms).
func AtLeastAsStrong(wrapping, key Algorithm) bool {
	w, k := Strength(wrapping), Strength(key)
	return w > 0 && k > 0 && w >= k
}

// DefaultKCVAlgorithm is the KeyCheckValueAlgorithm used when the caller names
// none. TDES: ANSI_X9_24; AES: CMAC; HMAC: HMAC (the model's KeyCheckValueAlgorithm
// documentation). RSA and ECC: SHA_1, which is what the user guide's examples of
// asymmetric keys show (RSA_2048 D1 and ECC_NIST_P256 K3 "Creating keys", RSA_2048
// S0 "Create RSA Key for Signing"), with an 8-hex-digit (4-byte) check value; two
// ECDH examples label a K3 key's KCV "CMAC", which cannot apply to an ECC key and
// is taken as a documentation slip. "" for unknown algorithms.
func DefaultKCVAlgorithm(a Algorithm) KCVAlgorithm {
	switch {
	case a.IsTDES():
		return KCVANSIX924
	case a.IsAES():
		return KCVCMAC
	case a.IsHMAC():
		return KCVHMAC
	case a.IsAsymmetric():
		return KCVSHA1
	}
	return ""
}

// ValidKCVAlgorithm checks a caller-requested KeyCheckValueAlgorithm for a key
// of algorithm a; "" means "the default" and is always accepted.
//   - TDES: ANSI_X9_24 (encrypt 8 zero bytes) or CMAC (ANSI X9.24-1:2017 Annex A
//     defines both; X9.143's KP block codes them 00 and 01).
//   - AES: CMAC only; the model documents only the CMAC method for AES keys.
//   - HMAC: HMAC only (the hash of the key's algorithm over an empty message).
//   - RSA, ECC: SHA_1 only.
//
// Its faults are about fault.SubjectKeyCheckValueAlgorithm (or
// SubjectKeyAlgorithm, for an unknown a).
func ValidKCVAlgorithm(a Algorithm, k KCVAlgorithm) error {
	if k == "" {
		return nil
	}
	if _, ok := ParseKCVAlgorithm(string(k)); !ok {
		return fault.About(fault.SubjectKeyCheckValueAlgorithm, "unknown key check value algorithm %.64q", string(k))
	}
	ok := false
	switch {
	case a.IsTDES():
		ok = k == KCVANSIX924 || k == KCVCMAC
	case a.IsAES():
		ok = k == KCVCMAC
	case a.IsHMAC():
		ok = k == KCVHMAC
	case a.IsAsymmetric():
		ok = k == KCVSHA1
	default:
		return fault.About(fault.SubjectKeyAlgorithm, "unknown key algorithm %.64q", string(a))
	}
	if !ok {
		return fault.About(fault.SubjectKeyCheckValueAlgorithm, "%s cannot be used for %s keys", k, a)
	}
	return nil
}
