package awsapi

import (
	"payhsm/ops"
	dp "payhsm/protocol/awsapi/dpshape"
)

// The data plane's enums as AWS spells them, mapped onto the operations
// layer's typed values. The model's validation has refused any other
// spelling before a handler runs; should one get through, opsEnum maps it
// to a value the operations layer refuses.

// opsEnum maps the enum member *p with m: absent is the zero value, an
// unknown spelling is bad.
func opsEnum[E ~string, T any](p *E, m map[E]T, bad T) T {
	var zero T
	if p == nil || *p == "" {
		return zero
	}
	if v, ok := m[*p]; ok {
		return v
	}
	return bad
}

const badEnum = 255 // no operations-layer enum has this value

var cipherModes = map[dp.EncryptionMode]ops.CipherMode{
	"ECB": ops.ModeECB, "CBC": ops.ModeCBC, "CFB": ops.ModeCFB, "CFB1": ops.ModeCFB1, "CFB8": ops.ModeCFB8,
	"CFB64": ops.ModeCFB64, "CFB128": ops.ModeCFB128, "OFB": ops.ModeOFB,
}

var dukptModes = map[dp.DukptEncryptionMode]ops.CipherMode{"ECB": ops.ModeECB, "CBC": ops.ModeCBC}

var emvModes = map[dp.EmvEncryptionMode]ops.CipherMode{"ECB": ops.ModeECB, "CBC": ops.ModeCBC}

var paddings = map[dp.PaddingType]ops.Padding{
	"PKCS1": ops.PaddingPKCS1, "OAEP_SHA1": ops.PaddingOAEPSHA1, "OAEP_SHA256": ops.PaddingOAEPSHA256, "OAEP_SHA512": ops.PaddingOAEPSHA512,
}

var dukptVariants = map[dp.DukptKeyVariant]ops.DukptVariant{
	"BIDIRECTIONAL": ops.DukptBidirectional, "REQUEST": ops.DukptRequest, "RESPONSE": ops.DukptResponse,
}

var emvOptions = map[dp.EmvMajorKeyDerivationMode]ops.EmvOption{"EMV_OPTION_A": ops.EmvOptionA, "EMV_OPTION_B": ops.EmvOptionB}

var majorKeyOptions = map[dp.MajorKeyDerivationMode]ops.EmvOption{"EMV_OPTION_A": ops.EmvOptionA, "EMV_OPTION_B": ops.EmvOptionB}

var sessionKeySchemes = map[dp.SessionKeyDerivationMode]ops.EmvScheme{
	"EMV_COMMON_SESSION_KEY": ops.EmvCommon, "MASTERCARD_SESSION_KEY": ops.EmvMastercard, "EMV2000": ops.EmvEMV2000,
	"AMEX": ops.EmvAmex, "VISA": ops.EmvVisa, "UNION_PAY": ops.EmvUnionPay,
}

var macAlgorithms = map[dp.MacAlgorithm]ops.MacAlgorithm{
	"ISO9797_ALGORITHM1": ops.MacISO9797Alg1, "ISO9797_ALGORITHM3": ops.MacISO9797Alg3, "CMAC": ops.MacCMAC,
	"HMAC": ops.MacHMAC, "HMAC_SHA224": ops.MacHMACSHA224, "HMAC_SHA256": ops.MacHMACSHA256, "HMAC_SHA384": ops.MacHMACSHA384,
	"HMAC_SHA512": ops.MacHMACSHA512, "AS2805_4_1": ops.MacAS2805,
}

var kdfs = map[dp.KeyDerivationFunction]ops.KDF{"NIST_SP800": ops.KDFNistSP800, "ANSI_X963": ops.KDFAnsiX963}

var kdfHashes = map[dp.KeyDerivationHashAlgorithm]ops.KDFHash{"SHA_256": ops.KDFSHA256, "SHA_384": ops.KDFSHA384, "SHA_512": ops.KDFSHA512}

var pinDataFormats = map[dp.PinBlockFormatForPinData]ops.PinFormat{
	"ISO_FORMAT_0": ops.PinFormatISO0, "ISO_FORMAT_1": ops.PinFormatISO1, "ISO_FORMAT_3": ops.PinFormatISO3, "ISO_FORMAT_4": ops.PinFormatISO4,
}

var pinChangeFormats = map[dp.PinBlockFormatForEmvPinChange]ops.PinFormat{
	"ISO_FORMAT_0": ops.PinFormatISO0, "ISO_FORMAT_1": ops.PinFormatISO1, "ISO_FORMAT_3": ops.PinFormatISO3,
}

var pinLengthPositions = map[dp.PinBlockLengthPosition]ops.PinLengthPosition{"NONE": ops.PinLengthNone, "FRONT_OF_PIN_BLOCK": ops.PinLengthFront}

var pinDataPaddings = map[dp.PinBlockPaddingType]ops.PinDataPadding{"NO_PADDING": ops.PinDataNoPadding, "ISO_IEC_7816_4": ops.PinDataISO7816}
