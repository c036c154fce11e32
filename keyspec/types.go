// Package keyspec owns the vocabulary of key attributes (KeyUsage, KeyClass,
// KeyAlgorithm, KeyModesOfUse, exportability) and the user guide's rules on
// which combinations may exist (rules.go), which keys each cryptographic
// operation may use (use.go), how they map onto ANSI X9.143 (TR-31) key
// block header fields, and how a key's check value is computed. The values are
// the AWS Payment Cryptography enum strings, so the HTTP edge maps them 1:1;
// the host-command edge maps its own codes onto the same values.
package keyspec

// KeyUsage is the TR-31 key usage as AWS names it, e.g. TR31_P0_PIN_ENCRYPTION_KEY.
type KeyUsage string

// Algorithm is the AWS KeyAlgorithm, e.g. TDES_2KEY, AES_256, HMAC_SHA256, RSA_2048, ECC_NIST_P256.
type Algorithm string

// Class is the AWS KeyClass.
type Class string

// Exportability is the X9.143 exportability as AWS names it.
type Exportability string

// KCVAlgorithm is the AWS KeyCheckValueAlgorithm.
type KCVAlgorithm string

// ModesOfUse is the AWS KeyModesOfUse structure.
type ModesOfUse struct {
	Encrypt, Decrypt, Wrap, Unwrap, Generate, Sign, Verify, DeriveKey, NoRestrictions bool
}

// Attributes is the AWS KeyAttributes structure.
type Attributes struct {
	Usage     KeyUsage
	Class     Class
	Algorithm Algorithm
	Modes     ModesOfUse
}

const (
	B0 KeyUsage = "TR31_B0_BASE_DERIVATION_KEY"
	C0 KeyUsage = "TR31_C0_CARD_VERIFICATION_KEY"
	D0 KeyUsage = "TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY"
	D1 KeyUsage = "TR31_D1_ASYMMETRIC_KEY_FOR_DATA_ENCRYPTION"
	E0 KeyUsage = "TR31_E0_EMV_MKEY_APP_CRYPTOGRAMS"
	E1 KeyUsage = "TR31_E1_EMV_MKEY_CONFIDENTIALITY"
	E2 KeyUsage = "TR31_E2_EMV_MKEY_INTEGRITY"
	E4 KeyUsage = "TR31_E4_EMV_MKEY_DYNAMIC_NUMBERS"
	E5 KeyUsage = "TR31_E5_EMV_MKEY_CARD_PERSONALIZATION"
	E6 KeyUsage = "TR31_E6_EMV_MKEY_OTHER"
	K0 KeyUsage = "TR31_K0_KEY_ENCRYPTION_KEY"
	K1 KeyUsage = "TR31_K1_KEY_BLOCK_PROTECTION_KEY"
	K2 KeyUsage = "TR31_K2_TR34_ASYMMETRIC_KEY"
	K3 KeyUsage = "TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT"
	M0 KeyUsage = "TR31_M0_ISO_16609_MAC_KEY"
	M1 KeyUsage = "TR31_M1_ISO_9797_1_MAC_KEY"
	M3 KeyUsage = "TR31_M3_ISO_9797_3_MAC_KEY"
	M6 KeyUsage = "TR31_M6_ISO_9797_5_CMAC_KEY"
	M7 KeyUsage = "TR31_M7_HMAC_KEY"
	P0 KeyUsage = "TR31_P0_PIN_ENCRYPTION_KEY"
	P1 KeyUsage = "TR31_P1_PIN_GENERATION_KEY"
	S0 KeyUsage = "TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE"
	V1 KeyUsage = "TR31_V1_IBM3624_PIN_VERIFICATION_KEY"
	V2 KeyUsage = "TR31_V2_VISA_PIN_VERIFICATION_KEY"
)

const (
	TDES2Key   Algorithm = "TDES_2KEY"
	TDES3Key   Algorithm = "TDES_3KEY"
	AES128     Algorithm = "AES_128"
	AES192     Algorithm = "AES_192"
	AES256     Algorithm = "AES_256"
	HMACSHA224 Algorithm = "HMAC_SHA224"
	HMACSHA256 Algorithm = "HMAC_SHA256"
	HMACSHA384 Algorithm = "HMAC_SHA384"
	HMACSHA512 Algorithm = "HMAC_SHA512"
	RSA2048    Algorithm = "RSA_2048"
	RSA3072    Algorithm = "RSA_3072"
	RSA4096    Algorithm = "RSA_4096"
	ECCP256    Algorithm = "ECC_NIST_P256"
	ECCP384    Algorithm = "ECC_NIST_P384"
	ECCP521    Algorithm = "ECC_NIST_P521"
)

const (
	Symmetric      Class = "SYMMETRIC_KEY"
	AsymmetricPair Class = "ASYMMETRIC_KEY_PAIR"
	PrivateKey     Class = "PRIVATE_KEY"
	PublicKey      Class = "PUBLIC_KEY"
)

const (
	Exportable    Exportability = "EXPORTABLE"
	NonExportable Exportability = "NON_EXPORTABLE"
	Sensitive     Exportability = "SENSITIVE"
)

const (
	KCVCMAC     KCVAlgorithm = "CMAC"
	KCVANSIX924 KCVAlgorithm = "ANSI_X9_24"
	KCVHMAC     KCVAlgorithm = "HMAC"
	KCVSHA1     KCVAlgorithm = "SHA_1"
)
