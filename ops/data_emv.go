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
	"payhsm/hsm/tdes"
)

// emvDataCrypter returns the encrypting (enc) or decrypting function of the
// EMV confidentiality session key of e under the issuer master key w (whose
// usage, algorithm and modes the caller has checked); its faults are about
// side. The session key is zeroed before it returns; only its TDES key
// schedule lives on in the function.
func emvDataCrypter(w *WorkingKey, side fault.Side, e *EmvCipher, enc bool) (blockCrypt, error) {
	opt, err := e.MajorKeyMode.option(side)
	if err != nil {
		return blockCrypt{}, err
	}
	if err := cardNumbers(side, e.PAN, e.PSN); err != nil {
		return blockCrypt{}, err
	}
	if err := fixed(fault.SubjectSessionDerivationData, side, e.SessionDerivationData, 8); err != nil {
		return blockCrypt{}, err
	}
	mode, err := e.Mode.ecbOrCBC(side)
	if err != nil {
		return blockCrypt{}, err
	}
	iv, err := dataIV(side, e.IV, mode, 8)
	if err != nil {
		return blockCrypt{}, err
	}
	mk, err := emv.ICCMasterKeyBlock(w.Block, opt, e.PAN, e.PSN)
	if err != nil {
		return blockCrypt{}, fault.Internalf("ICC master key derivation", err)
	}
	sk, err := emv.CommonSessionKey(mk, [8]byte(e.SessionDerivationData))
	clear(mk)
	if err != nil {
		return blockCrypt{}, fault.Internalf("session key derivation", err)
	}
	b, err := tdes.NewCipher(sk)
	clear(sk)
	if err != nil {
		return blockCrypt{}, fault.Internalf("session key schedule", err)
	}
	return blockCrypt{b: b, m: mode, iv: iv, enc: enc, side: side}, nil
}

// emvMac computes the full 8-byte EMV secure-messaging MAC of msg under the
// integrity session key of e, derived from the issuer master key w (checked
// by the caller).
func emvMac(w *WorkingKey, e *EmvMac, msg []byte) ([]byte, error) {
	const side = fault.SideNone
	opt, err := e.MajorKeyMode.option(side)
	if err != nil {
		return nil, err
	}
	if err := cardNumbers(side, e.PAN, e.PSN); err != nil {
		return nil, err
	}
	scheme, ok := e.SessionScheme.scheme()
	if !ok {
		return nil, about(fault.SubjectSessionKeyDerivationMode, side, "unknown session key derivation mode")
	}
	var ac [8]byte
	var atc [2]byte
	switch scheme {
	case emv.SchemeEMVCommon, emv.SchemeMastercard:
		if len(e.ATC) != 0 || len(e.ApplicationCryptogram) == 0 {
			return nil, about(fault.SubjectSessionDerivation, side, "this session key derivation mode derives the session key from the application cryptogram, not the counter")
		}
		if err := fixed(fault.SubjectApplicationCryptogram, side, e.ApplicationCryptogram, 8); err != nil {
			return nil, err
		}
		ac = [8]byte(e.ApplicationCryptogram)
	default:
		if len(e.ApplicationCryptogram) != 0 || len(e.ATC) == 0 {
			return nil, about(fault.SubjectSessionDerivation, side, "this session key derivation mode derives the session key from the application transaction counter, not a cryptogram")
		}
		if err := fixed(fault.SubjectATC, side, e.ATC, 2); err != nil {
			return nil, err
		}
		atc = [2]byte(e.ATC)
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
