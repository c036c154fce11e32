package ops

// EMV-derived keys of the data plane: EncryptData/DecryptData with the Emv
// attributes and GenerateMac/VerifyMac with EmvMac. Both derive a card's
// secure-messaging session key from an issuer master key in two steps:
//
//   - the ICC master key from the PAN and PAN sequence number, EMV 4.4
//     Book 2 A1.4.1 (option A) or A1.4.2 (option B);
//   - the session key from it: for encryption the EMV common session key
//     (Book 2 A1.3.1) with R = SessionDerivationData, which the model
//     documents as "the application transaction counter value padded with
//     zeros or previous ARQC value padded with zeros"; for EmvMac the
//     secure-messaging derivation of SessionKeyDerivationMode
//     (emv.SMSessionKey): the common session key with R = the application
//     cryptogram for EMV_COMMON_SESSION_KEY and MASTERCARD_SESSION_KEY, the
//     EMV 2000 tree, the Visa (and Amex) XOR derivation or the UnionPay
//     derivation from the ATC for the others.
//
// Encryption is TDES ECB or CBC (default CBC, zero IV unless given) over
// whole blocks: the caller pads, as for every other EncryptData key. The MAC
// is ISO/IEC 9797-1 MAC algorithm 3 with padding method 2 (Book 2 A1.2.1,
// 9.2.3), 8 bytes, truncated by MacLength.

import (
	"payhsm/fault"
	"payhsm/hsm/emv"
	"payhsm/hsm/symmetric"
	"payhsm/hsm/tdes"
)

// emvDataCrypter returns the encrypting (enc) or decrypting function of the
// EMV confidentiality session key of e under the issuer master key w (whose
// usage, algorithm and modes the caller has checked). f names the request
// member. The session key is zeroed before it returns; only its TDES key
// schedule lives on in the function.
func emvDataCrypter(w *WorkingKey, f string, e *EmvCipher, enc bool) (func([]byte, string) ([]byte, error), error) {
	opt, err := MajorKeyOption(f+".MajorKeyDerivationMode", e.MajorKeyDerivationMode)
	if err != nil {
		return nil, err
	}
	if err := cardDigits(f, e.PAN, e.PSN); err != nil {
		return nil, err
	}
	if len(e.SessionDerivationData) != 16 {
		return nil, fault.FieldInvalid(f+".SessionDerivationData", "must be 16 hexadecimal digits")
	}
	r, err := hexField(f+".SessionDerivationData", e.SessionDerivationData, 8)
	if err != nil {
		return nil, err
	}
	mode := symmetric.CBC
	switch e.Mode {
	case "", "CBC":
	case "ECB":
		mode = symmetric.ECB
	default:
		return nil, fault.FieldInvalid(f+".Mode", "must be ECB or CBC")
	}
	iv, err := dataIV(f+".InitializationVector", e.IV, mode, 8)
	if err != nil {
		return nil, err
	}
	mk, err := emv.ICCMasterKeyBlock(w.Block, opt, e.PAN, e.PSN)
	if err != nil {
		return nil, fault.Internalf("ICC master key derivation", err)
	}
	sk, err := emv.CommonSessionKey(mk, [8]byte(r))
	clear(mk)
	if err != nil {
		return nil, fault.Internalf("session key derivation", err)
	}
	b, err := tdes.NewCipher(sk)
	clear(sk)
	if err != nil {
		return nil, fault.Internalf("session key schedule", err)
	}
	return blockCrypter(b, mode, iv, enc, false), nil
}

// emvMacSchemes maps SessionKeyDerivationMode.
var emvMacSchemes = map[string]emv.Scheme{
	"EMV_COMMON_SESSION_KEY": emv.SchemeEMVCommon, "MASTERCARD_SESSION_KEY": emv.SchemeMastercard,
	"EMV2000": emv.SchemeEMV2000, "AMEX": emv.SchemeAmex, "VISA": emv.SchemeVisa, "UNION_PAY": emv.SchemeUnionPay,
}

// emvMac computes the full 8-byte EMV secure-messaging MAC of msg under the
// integrity session key of e, derived from the issuer master key w (checked
// by the caller). f names the request member.
func emvMac(w *WorkingKey, f string, e *EmvMac, msg []byte) ([]byte, error) {
	opt, err := MajorKeyOption(f+".MajorKeyDerivationMode", e.MajorKeyDerivationMode)
	if err != nil {
		return nil, err
	}
	if err := cardDigits(f, e.PAN, e.PSN); err != nil {
		return nil, err
	}
	scheme, ok := emvMacSchemes[e.SessionKeyDerivationMode]
	if !ok {
		return nil, fault.FieldInvalid(f+".SessionKeyDerivationMode", "unknown session key derivation mode")
	}
	const vf = ".SessionKeyDerivationValue"
	var ac [8]byte
	var atc [2]byte
	switch scheme {
	case emv.SchemeEMVCommon, emv.SchemeMastercard:
		if e.ATC != "" || e.ApplicationCryptogram == "" {
			return nil, fault.FieldInvalid(f+vf, "%s derives the session key from the ApplicationCryptogram", e.SessionKeyDerivationMode)
		}
		if len(e.ApplicationCryptogram) != 16 {
			return nil, fault.FieldInvalid(f+vf+".ApplicationCryptogram", "must be 16 hexadecimal digits")
		}
		b, err := hexField(f+vf+".ApplicationCryptogram", e.ApplicationCryptogram, 8)
		if err != nil {
			return nil, err
		}
		ac = [8]byte(b)
	default:
		if e.ApplicationCryptogram != "" || e.ATC == "" {
			return nil, fault.FieldInvalid(f+vf, "%s derives the session key from the ApplicationTransactionCounter", e.SessionKeyDerivationMode)
		}
		if len(e.ATC) != 4 {
			return nil, fault.FieldInvalid(f+vf+".ApplicationTransactionCounter", "must be 4 hexadecimal digits")
		}
		if atc, err = atcField(f+vf+".ApplicationTransactionCounter", e.ATC); err != nil {
			return nil, err
		}
	}
	mk, err := emv.ICCMasterKeyBlock(w.Block, opt, e.PAN, e.PSN)
	if err != nil {
		return nil, fault.Internalf("ICC master key derivation", err)
	}
	sk, err := emv.SMSessionKey(mk, scheme, ac, atc)
	clear(mk)
	if err != nil {
		return nil, fault.Internalf("session key derivation", err)
	}
	defer clear(sk)
	m, err := emv.ScriptMAC(sk, msg)
	if err != nil {
		return nil, fault.Internalf("EMV MAC", err)
	}
	return m, nil
}
