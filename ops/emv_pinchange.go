package ops

// GenerateMacEmvPinChange: an offline PIN change issuer script. The new PIN
// arrives as an ISO 9564-1 format 0, 1 or 3 block under a PEK; it is
// re-laid out for the card (ISO 9564-1 format 2, or the VIS PIN block for
// the Visa and Amex methods), enciphered under the card's confidentiality
// session key derived from the IMK-SMC, and the script command (the message
// data followed by the enciphered PIN data) is MACed under the card's
// integrity session key derived from the IMK-SMI.
//
// Decisions where the model and the user guide are silent or disagree:
//   - The confidentiality IMK is TR31_E1_EMV_MKEY_CONFIDENTIALITY (the
//     guide's key table; its prose says E4, which is the dynamic-numbers
//     usage). E1 and E2 keys need DeriveKey (or NoRestrictions), like every
//     other EMV issuer master key.
//   - Session keys: EmvCommon and Mastercard use the EMV common session key
//     with R = the application cryptogram (Book 2 A1.3.1, 9.2, 9.3);
//     Emv2000 the EMV 2000 tree on the ATC; Visa and Amex the VIS secure
//     messaging derivation on the ATC.
//   - The PIN data layout: EmvCommon as the request says (Mode,
//     PinBlockLengthPosition, PinBlockPaddingType; a length in front needs
//     ISO_IEC_7816_4 padding); Mastercard and Emv2000 the M/Chip layout
//     (the 8-byte ISO format 2 block, CBC with a zero IV); Visa and Amex the
//     VIS layout (length byte, ISO/IEC 9797-1 method 2 padding, ECB) of the
//     VIS PIN block built with the ICC MK-AC derived from
//     AuthorizationRequestKeyIdentifier and, when given, the current PIN.
//     Amex has exactly Visa's request and response members in the model and
//     is processed the same way.
//   - The current PIN block (Visa, Amex) has the request's PinBlockFormat
//     and PAN.
//   - The MAC is the full 8 bytes of MAC algorithm 3 (padding method 2).

import (
	"payhsm/fault"
	"payhsm/hsm/emv"
	"payhsm/hsm/pinblock"
	"payhsm/keyspec"
)

// PinDataPadding is how an EMV common PIN change pads the PIN data.
type PinDataPadding uint8

// PIN data paddings.
const (
	PinDataNoPadding PinDataPadding = iota + 1
	PinDataISO7816                  // ISO/IEC 7816-4 (ISO/IEC 9797-1 method 2) padding
)

// PinLengthPosition is where an EMV common PIN change puts the PIN data's length.
type PinLengthPosition uint8

// PIN length positions.
const (
	PinLengthNone  PinLengthPosition = iota + 1 // no length byte
	PinLengthFront                              // a length byte in front of the PIN block
)

// EmvPinChangeDerivation is the DerivationMethodAttributes union: Scheme
// names the member (EmvCommon, EmvMastercard, EmvEMV2000, EmvVisa or
// EmvAmex); the other fields are that member's values.
type EmvPinChangeDerivation struct {
	Scheme                EmvScheme
	MajorKeyMode          EmvOption
	PAN, PSN              string
	ApplicationCryptogram []byte            // 8 bytes, EmvCommon and Mastercard
	ATC                   []byte            // 2 bytes, Emv2000, Visa and Amex
	Mode                  CipherMode        // ModeECB or ModeCBC (EmvCommon)
	Padding               PinDataPadding    // EmvCommon
	LengthPosition        PinLengthPosition // EmvCommon
	ACKey                 string            // AuthorizationRequestKeyIdentifier (Visa, Amex)
	CurrentPinPEK         string            // CurrentPinAttributes (Visa, Amex; optional)
	CurrentPinBlock       []byte
}

// EmvPinChangeInput is the input of GenerateMacEmvPinChange.
type EmvPinChangeInput struct {
	NewPinPEK       string
	NewPinBlock     []byte
	PinBlockFormat  PinFormat
	IntegrityKey    string // IMK-SMI
	ConfidentialKey string // IMK-SMC
	MessageData     []byte
	Derivation      EmvPinChangeDerivation
}

// KeyRef is a key an operation used: its ARN and check value.
type KeyRef struct{ ARN, KCV string }

// EmvPinChangeOutput is the answer of GenerateMacEmvPinChange. AC and
// CurrentPinPEK are set for the Visa and Amex methods only.
type EmvPinChangeOutput struct {
	NewPinPEK, Integrity, Confidential KeyRef
	AC, CurrentPinPEK                  *KeyRef
	MAC                                []byte // 8 bytes
	EncryptedPinData                   []byte // 8 or 16 bytes
}

// pinChangePlan is the request parsed: everything but the keys.
type pinChangePlan struct {
	scheme emv.Scheme
	format pinblock.Format
	opt    emv.Option
	ac     [8]byte
	atc    [2]byte
	layout emv.PINDataLayout
	mode   emv.CipherMode
}

func parsePinChange(in EmvPinChangeInput) (*pinChangePlan, error) {
	const side = fault.SideNone
	d := in.Derivation
	p := &pinChangePlan{}
	switch d.Scheme {
	case EmvCommon, EmvMastercard, EmvEMV2000, EmvVisa, EmvAmex:
		p.scheme, _ = d.Scheme.scheme()
	default:
		return nil, about(fault.SubjectPinChangeDerivation, side, "exactly one PIN change method (EMV common, Amex, Visa, EMV 2000 or Mastercard) is required")
	}
	switch in.PinBlockFormat {
	case PinFormatISO0, PinFormatISO1, PinFormatISO3:
		p.format, _ = in.PinBlockFormat.iso()
	default:
		return nil, about(fault.SubjectPinBlockFormat, side, "must be ISO format 0, 1 or 3")
	}
	var err error
	if p.opt, err = d.MajorKeyMode.option(side); err != nil {
		return nil, err
	}
	if err := cardNumbers(side, d.PAN, d.PSN); err != nil {
		return nil, err
	}
	if len(in.MessageData) < 8 || len(in.MessageData) > 512 {
		return nil, about(fault.SubjectMessage, side, "must be 8 to 512 bytes")
	}
	if err := fixed(fault.SubjectPinBlock, side, in.NewPinBlock, 8); err != nil {
		return nil, err
	}
	switch d.Scheme {
	case EmvCommon, EmvMastercard:
		if err := fixed(fault.SubjectApplicationCryptogram, side, d.ApplicationCryptogram, 8); err != nil {
			return nil, err
		}
		p.ac = [8]byte(d.ApplicationCryptogram)
	default:
		if err := fixed(fault.SubjectATC, side, d.ATC, 2); err != nil {
			return nil, err
		}
		p.atc = [2]byte(d.ATC)
	}
	switch d.Scheme {
	case EmvCommon:
		if p.layout, p.mode, err = emvCommonLayout(d); err != nil {
			return nil, err
		}
	case EmvMastercard, EmvEMV2000:
		p.layout, p.mode = emv.LayoutMastercard, emv.CBC
	case EmvVisa, EmvAmex:
		p.layout, p.mode = emv.LayoutVisa, emv.ECB
		if d.ACKey == "" {
			return nil, about(fault.SubjectAuthRequestKey, side, "is required")
		}
		if (d.CurrentPinPEK == "") != (len(d.CurrentPinBlock) == 0) {
			return nil, about(fault.SubjectCurrentPin, side, "needs both the current PIN's key and its encrypted PIN block")
		}
		if len(d.CurrentPinBlock) != 0 {
			if err := fixed(fault.SubjectCurrentPinBlock, side, d.CurrentPinBlock, 8); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// emvCommonLayout maps EmvCommon's Mode, PinBlockLengthPosition and
// PinBlockPaddingType.
func emvCommonLayout(d EmvPinChangeDerivation) (emv.PINDataLayout, emv.CipherMode, error) {
	const side = fault.SideNone
	var l emv.PINDataLayout
	var m emv.CipherMode
	switch d.Mode {
	case ModeECB:
		m = emv.ECB
	case ModeCBC:
		m = emv.CBC
	default:
		return l, 0, about(fault.SubjectCipherMode, side, "must be ECB or CBC")
	}
	switch d.LengthPosition {
	case PinLengthNone:
	case PinLengthFront:
		l.LengthPrefix = true
	default:
		return l, 0, about(fault.SubjectPinBlockLengthPosition, side, "must be none or in front of the PIN block")
	}
	switch d.Padding {
	case PinDataNoPadding:
	case PinDataISO7816:
		l.Pad = true
	default:
		return l, 0, about(fault.SubjectPinBlockPadding, side, "must be no padding or ISO/IEC 7816-4 padding")
	}
	if l.LengthPrefix && !l.Pad {
		return l, 0, about(fault.SubjectPinBlockPadding, side, "must be ISO/IEC 7816-4 padding when the PIN length is in front of the PIN block")
	}
	return l, m, nil
}

// smKey resolves an EMV issuer master key, the request's key subj; the
// caller releases it.
func (s *Service) smKey(ident string, subj fault.Subject, use keyspec.Use) (_ *WorkingKey, err error) {
	w, err := s.Working(ident, subj, fault.SideNone)
	if err != nil {
		return nil, err
	}
	defer releaseOnError(w, &err)
	if err := RequireUse(w, use, subj, fault.SideNone); err != nil {
		return nil, err
	}
	return w, nil
}

// decryptPin deciphers the PIN block subj with a resolved PEK.
func decryptPin(k pinKey, f pinblock.Format, blk []byte, pan string, subj fault.Subject) ([]byte, error) {
	pin, err := pinblock.Decrypt(k.block, f, blk, pan)
	if err != nil {
		switch err {
		case pinblock.ErrInvalid, pinblock.ErrLength, pinblock.ErrPAN, pinblock.ErrPINLength:
			return nil, errBadPinBlock(subj)
		}
		return nil, fault.Internalf("PIN block decryption", err)
	}
	return pin, nil
}

// GenerateMacEmvPinChange builds the enciphered PIN data and the MAC of an
// offline PIN change issuer script.
func (s *Service) GenerateMacEmvPinChange(in EmvPinChangeInput) (*EmvPinChangeOutput, error) {
	p, err := parsePinChange(in)
	if err != nil {
		return nil, err
	}
	d := in.Derivation

	// Every key is resolved and checked before any cryptography.
	smi, err := s.smKey(in.IntegrityKey, fault.SubjectIntegrityKey, keyspec.UseEmvPinChangeIntegrity)
	if err != nil {
		return nil, err
	}
	defer smi.Release()
	smc, err := s.smKey(in.ConfidentialKey, fault.SubjectConfidentialityKey, keyspec.UseEmvPinChangeConfidentiality)
	if err != nil {
		return nil, err
	}
	defer smc.Release()
	pek, err := s.pekSide(in.NewPinPEK, fault.SubjectPinEncryptionKey, fault.SideNone, in.PinBlockFormat, pinUses{pek: keyspec.UseEmvPinChangeNewPinPEK}, nil, nil, nil)
	if err != nil {
		return nil, err
	}
	defer pek.release()
	out := &EmvPinChangeOutput{
		NewPinPEK:    KeyRef{pek.arn, pek.kcv},
		Integrity:    KeyRef{smi.ARN, smi.KCV()},
		Confidential: KeyRef{smc.ARN, smc.KCV()},
	}
	var acW *WorkingKey
	var curPEK pinKey // the current PIN's key, when given
	if d.Scheme == EmvVisa || d.Scheme == EmvAmex {
		if acW, err = s.smKey(d.ACKey, fault.SubjectAuthRequestKey, keyspec.UseEmvPinChangeAC); err != nil {
			return nil, err
		}
		defer acW.Release()
		out.AC = &KeyRef{acW.ARN, acW.KCV()}
		if len(d.CurrentPinBlock) != 0 {
			curPEK, err = s.pekSide(d.CurrentPinPEK, fault.SubjectCurrentPinKey, fault.SideNone, in.PinBlockFormat, pinUses{pek: keyspec.UseEmvPinChangeCurrentPEK}, nil, nil, nil)
			if err != nil {
				return nil, err
			}
			defer curPEK.release()
			out.CurrentPinPEK = &KeyRef{curPEK.arn, curPEK.kcv}
		}
	}

	pin, err := decryptPin(pek, p.format, in.NewPinBlock, d.PAN, fault.SubjectPinBlock)
	if err != nil {
		return nil, err
	}
	defer pinblock.Zero(pin)
	var block []byte
	if acW == nil {
		block, err = emv.ISO2PINBlock(pin)
	} else {
		var cur []byte
		if curPEK.block != nil {
			if cur, err = decryptPin(curPEK, p.format, d.CurrentPinBlock, d.PAN, fault.SubjectCurrentPinBlock); err != nil {
				return nil, err
			}
			defer pinblock.Zero(cur)
		}
		mkAC, err2 := emv.ICCMasterKeyBlock(acW.Block, p.opt, d.PAN, d.PSN)
		if err2 != nil {
			return nil, fault.Internalf("ICC master key derivation", err2)
		}
		block, err = emv.VisaPINBlock(mkAC, pin, cur)
		clear(mkAC)
	}
	if err != nil {
		return nil, fault.Internalf("PIN block layout", err)
	}
	defer clear(block)

	skSMC, err := p.sessionKey(smc, d)
	if err != nil {
		return nil, err
	}
	enc, err := emv.EncipherPINData(skSMC, block, p.layout, p.mode)
	clear(skSMC)
	if err != nil {
		return nil, fault.Internalf("PIN data encipherment", err)
	}
	skSMI, err := p.sessionKey(smi, d)
	if err != nil {
		return nil, err
	}
	script := make([]byte, 0, len(in.MessageData)+len(enc))
	mac, err := emv.ScriptMAC(skSMI, append(append(script, in.MessageData...), enc...))
	clear(skSMI)
	if err != nil {
		return nil, fault.Internalf("script MAC", err)
	}
	out.MAC, out.EncryptedPinData = mac, enc
	return out, nil
}

// sessionKey derives the card's secure-messaging session key from the
// issuer master key w. The caller zeroes the result.
func (p *pinChangePlan) sessionKey(w *WorkingKey, d EmvPinChangeDerivation) ([]byte, error) {
	mk, err := emv.ICCMasterKeyBlock(w.Block, p.opt, d.PAN, d.PSN)
	if err != nil {
		return nil, fault.Internalf("ICC master key derivation", err)
	}
	defer clear(mk)
	sk, err := emv.SMSessionKey(mk, p.scheme, p.ac, p.atc)
	if err != nil {
		return nil, fault.Internalf("session key derivation", err)
	}
	return sk, nil
}
