package keyspec

import "fmt"

// Mapping between the AWS attribute values and the ANSI X9.143 (TR-31) key
// block header fields: key usage (2 characters, X9.143:2021 6.3.1 table 2),
// algorithm (1 character, table 3), mode of use (1 character, table 4) and
// exportability (1 character, table 6), plus the HM optional block's hash
// identifier for HMAC keys (6.3.6.5 table 13; the user guide's "Common Headers"
// table lists the same values). Errors from the From* functions describe
// malformed or unsupported header values; they are meant to be wrapped by the
// key-block parser into a Validation fault.

// TR31 is the two-character X9.143 key usage code of u ("P0", "K1", ...), or ""
// when u is not a known usage. Every AWS KeyUsage name is "TR31_" followed by
// the code.
func (u KeyUsage) TR31() string {
	if _, ok := rules[u]; !ok {
		return ""
	}
	return string(u[len("TR31_") : len("TR31_")+2])
}

// UsageFromTR31 is the KeyUsage whose X9.143 code is code. It reports false for
// codes X9.143 defines but this service does not hold (B1, D2, E3, M2, S1, V0,
// ...) and for anything else.
func UsageFromTR31(code string) (KeyUsage, bool) {
	if len(code) != 2 {
		return "", false
	}
	for _, u := range allUsages {
		if u.TR31() == code {
			return u, true
		}
	}
	return "", false
}

// TR31 is the X9.143 algorithm code of a: 'T' (TDES), 'A' (AES), 'H' (HMAC),
// 'R' (RSA), 'E' (elliptic curve); 0 for unknown algorithms.
func (a Algorithm) TR31() byte {
	switch {
	case a.IsTDES():
		return 'T'
	case a.IsAES():
		return 'A'
	case a.IsHMAC():
		return 'H'
	case a.IsRSA():
		return 'R'
	case a.IsECC():
		return 'E'
	}
	return 0
}

// X9.143 HM optional block hash identifiers.
var hmacHashIDs = map[Algorithm]string{
	HMACSHA224: "20",
	HMACSHA256: "21",
	HMACSHA384: "22",
	HMACSHA512: "23",
}

// HM identifiers X9.143 defines for hashes that have no AWS KeyAlgorithm.
var unsupportedHashIDs = map[string]string{
	"10": "SHA-1", "24": "SHA-512/224", "25": "SHA-512/256",
	"30": "SHA3-224", "31": "SHA3-256", "32": "SHA3-384", "33": "SHA3-512",
	"40": "SHAKE128", "41": "SHAKE256",
}

// TR31HMACHash is the value of the HM optional block for an HMAC key of
// algorithm a ("20" SHA-224, "21" SHA-256, "22" SHA-384, "23" SHA-512), or ""
// when a is not an HMAC algorithm.
func (a Algorithm) TR31HMACHash() string { return hmacHashIDs[a] }

// minHMACKeyLen is the shortest HMAC key accepted on import: the guide's
// "Cryptographic primitives" section requires HMAC keys of at least 128 bits.
const minHMACKeyLen = 16

// AlgorithmFromTR31 maps a key block's algorithm code and clear key length in
// bytes (and, for HMAC, the HM optional block's value; "" when the block is
// absent) onto an Algorithm:
//   - 'T': 16 bytes TDES_2KEY, 24 bytes TDES_3KEY (single-length DES refused).
//   - 'A': 16, 24, 32 bytes AES_128, AES_192, AES_256.
//   - 'H': the HM block is required and must name SHA-224/256/384/512; the key
//     must be at least 16 bytes and at most the hash's block size (64 bytes for
//     SHA-224/256, 128 for SHA-384/512: HMAC first hashes longer keys down to
//     the output length, so they would add nothing but bulk).
//   - 'R': keyLen is the modulus length, 256/384/512 bytes for RSA_2048/3072/4096.
//   - 'E': keyLen is the field element length, 32/48/66 bytes for P-256/384/521.
//
// An HM block on a non-HMAC key is refused. 'D' (DES) and 'S' (DSA) are
// refused as unsupported.
func AlgorithmFromTR31(alg byte, keyLen int, hmacHash string) (Algorithm, error) {
	if alg != 'H' && hmacHash != "" {
		return "", fmt.Errorf("HM optional block is only valid for HMAC keys, not algorithm %q", alg)
	}
	var a Algorithm
	switch alg {
	case 'T':
		switch keyLen {
		case 16:
			a = TDES2Key
		case 24:
			a = TDES3Key
		case 8:
			return "", fmt.Errorf("single-length DES keys are not supported")
		}
	case 'A':
		switch keyLen {
		case 16:
			a = AES128
		case 24:
			a = AES192
		case 32:
			a = AES256
		}
	case 'H':
		return hmacFromTR31(keyLen, hmacHash)
	case 'R':
		switch keyLen {
		case 256:
			a = RSA2048
		case 384:
			a = RSA3072
		case 512:
			a = RSA4096
		}
	case 'E':
		switch keyLen {
		case 32:
			a = ECCP256
		case 48:
			a = ECCP384
		case 66:
			a = ECCP521
		}
	case 'D':
		return "", fmt.Errorf("algorithm D (single DES) is not supported")
	case 'S':
		return "", fmt.Errorf("algorithm S (DSA) is not supported")
	default:
		return "", fmt.Errorf("unknown key block algorithm %q", alg)
	}
	if a == "" {
		return "", fmt.Errorf("key length of %d bytes is not valid for key block algorithm %q", keyLen, alg)
	}
	return a, nil
}

func hmacFromTR31(keyLen int, hmacHash string) (Algorithm, error) {
	if hmacHash == "" {
		return "", fmt.Errorf("HMAC keys need an HM optional block naming the hash")
	}
	var a Algorithm
	for alg, id := range hmacHashIDs {
		if id == hmacHash {
			a = alg
		}
	}
	if a == "" {
		if name, ok := unsupportedHashIDs[hmacHash]; ok {
			return "", fmt.Errorf("HMAC with %s (HM %s) is not supported", name, hmacHash)
		}
		return "", fmt.Errorf("unknown HM optional block hash identifier %.8q", hmacHash)
	}
	if keyLen < minHMACKeyLen || keyLen > a.hmacBlockSize() {
		return "", fmt.Errorf("HMAC key length of %d bytes is outside %d..%d for %s", keyLen, minHMACKeyLen, a.hmacBlockSize(), a)
	}
	return a, nil
}

// TR31 is the X9.143 mode-of-use code of m. Only the combinations the user
// guide uses have a code: {Encrypt, Decrypt, Wrap, Unwrap} 'B', {Encrypt, Wrap}
// 'E', {Decrypt, Unwrap} 'D', {Generate} 'G', {Verify} 'V', {Generate, Verify}
// 'C', {Sign} 'S', {DeriveKey} 'X', {NoRestrictions} 'N'.
func (m ModesOfUse) TR31() (byte, error) {
	switch m {
	case mEDWU:
		return 'B', nil
	case mEW:
		return 'E', nil
	case mDU:
		return 'D', nil
	case mG:
		return 'G', nil
	case mV:
		return 'V', nil
	case mGV:
		return 'C', nil
	case mS:
		return 'S', nil
	case mX:
		return 'X', nil
	case mN:
		return 'N', nil
	}
	return 0, fmt.Errorf("modes of use %s have no key block mode-of-use code", m)
}

// ModesFromTR31 is the inverse of ModesOfUse.TR31. It refuses 'T' (sign and
// decrypt: KeyModesOfUse can express {Sign, Decrypt} but the guide allows Sign
// only on its own, for S0) and 'Y' (create key variants: KeyModesOfUse has no
// member for it, and mapping it to DeriveKey would widen the key's use).
func ModesFromTR31(mode byte) (ModesOfUse, error) {
	switch mode {
	case 'B':
		return mEDWU, nil
	case 'E':
		return mEW, nil
	case 'D':
		return mDU, nil
	case 'G':
		return mG, nil
	case 'V':
		return mV, nil
	case 'C':
		return mGV, nil
	case 'S':
		return mS, nil
	case 'X':
		return mX, nil
	case 'N':
		return mN, nil
	case 'T':
		return ModesOfUse{}, fmt.Errorf("mode of use T (sign and decrypt) is not supported: no allowed modes-of-use combination joins signing and decryption")
	case 'Y':
		return ModesOfUse{}, fmt.Errorf("mode of use Y (create key variants) is not supported: key modes of use have no variant mode")
	}
	return ModesOfUse{}, fmt.Errorf("unknown key block mode of use %q", mode)
}

// TR31 is the X9.143 exportability code of e: 'E' (exportable under a key
// block, X9.24 compliant), 'N' (not exportable), 'S' (sensitive: exportable in
// other forms too); 0 for unknown values.
func (e Exportability) TR31() byte {
	switch e {
	case Exportable:
		return 'E'
	case NonExportable:
		return 'N'
	case Sensitive:
		return 'S'
	}
	return 0
}

// ExportabilityFromTR31 is the inverse of Exportability.TR31.
func ExportabilityFromTR31(b byte) (Exportability, error) {
	switch b {
	case 'E':
		return Exportable, nil
	case 'N':
		return NonExportable, nil
	case 'S':
		return Sensitive, nil
	}
	return "", fmt.Errorf("unknown key block exportability %q", b)
}
