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
	"encoding/hex"
	"strings"

	"payhsm/fault"
	"payhsm/hsm/emv"
	"payhsm/hsm/pinblock"
	"payhsm/keyspec"
)

// EmvPinChangeDerivation is the DerivationMethodAttributes union: Scheme
// names the member (emv.SchemeEMVCommon, SchemeMastercard, SchemeEMV2000,
// SchemeVisa or SchemeAmex); the other fields are that member's values.
type EmvPinChangeDerivation struct {
	Scheme                emv.Scheme
	MajorKeyMode          string // EMV_OPTION_A | EMV_OPTION_B
	PAN, PSN              string
	ApplicationCryptogram string // hex, EmvCommon and Mastercard
	ATC                   string // hex, Emv2000, Visa and Amex
	Mode                  string // ECB | CBC (EmvCommon)
	PaddingType           string // NO_PADDING | ISO_IEC_7816_4 (EmvCommon)
	LengthPosition        string // NONE | FRONT_OF_PIN_BLOCK (EmvCommon)
	ACKey                 string // AuthorizationRequestKeyIdentifier (Visa, Amex)
	CurrentPinPEK         string // CurrentPinAttributes (Visa, Amex; optional)
	CurrentPinBlock       string
}

// EmvPinChangeInput is the input of GenerateMacEmvPinChange.
type EmvPinChangeInput struct {
	NewPinPEK       string
	NewPinBlock     string // hex
	PinBlockFormat  PinBlockFormat
	IntegrityKey    string // IMK-SMI
	ConfidentialKey string // IMK-SMC
	MessageData     string // hex
	Derivation      EmvPinChangeDerivation
}

// KeyRef is a key an operation used: its ARN and check value.
type KeyRef struct{ ARN, KCV string }

// EmvPinChangeOutput is the answer of GenerateMacEmvPinChange. AC and
// CurrentPinPEK are set for the Visa and Amex methods only.
type EmvPinChangeOutput struct {
	NewPinPEK, Integrity, Confidential KeyRef
	AC, CurrentPinPEK                  *KeyRef
	MAC                                string // hex, 8 bytes
	EncryptedPinData                   string // hex, 8 or 16 bytes
}

const fDerivation = "DerivationMethodAttributes"

var pinChangeMembers = map[emv.Scheme]string{
	emv.SchemeEMVCommon: "EmvCommon", emv.SchemeMastercard: "Mastercard", emv.SchemeEMV2000: "Emv2000",
	emv.SchemeVisa: "Visa", emv.SchemeAmex: "Amex",
}

// pinChangePlan is the request parsed: everything but the keys.
type pinChangePlan struct {
	format pinblock.Format
	opt    emv.Option
	msg    []byte
	newPB  []byte
	curPB  []byte
	ac     [8]byte
	atc    [2]byte
	layout emv.PINDataLayout
	mode   emv.CipherMode
}

func parsePinChange(in EmvPinChangeInput) (*pinChangePlan, error) {
	d := in.Derivation
	member, ok := pinChangeMembers[d.Scheme]
	if !ok {
		return nil, fault.FieldInvalid(fDerivation, "exactly one of EmvCommon, Amex, Visa, Emv2000 or Mastercard is required")
	}
	f := fDerivation + "." + member
	p := &pinChangePlan{}
	switch in.PinBlockFormat {
	case PinISOFormat0, PinISOFormat1, PinISOFormat3:
		p.format, _ = in.PinBlockFormat.iso()
	default:
		return nil, fault.FieldInvalid("PinBlockFormat", "must be ISO_FORMAT_0, ISO_FORMAT_1 or ISO_FORMAT_3")
	}
	var err error
	if p.opt, err = MajorKeyOption(f+".MajorKeyDerivationMode", d.MajorKeyMode); err != nil {
		return nil, err
	}
	if err := cardDigits(f, d.PAN, d.PSN); err != nil {
		return nil, err
	}
	if p.msg, err = hexField("MessageData", in.MessageData, -1); err != nil {
		return nil, err
	}
	if len(p.msg) < 8 || len(p.msg) > 512 {
		return nil, fault.FieldInvalid("MessageData", "must be 16 to 1024 hexadecimal digits")
	}
	if p.newPB, err = pinBlockHex("NewEncryptedPinBlock", in.NewPinBlock); err != nil {
		return nil, err
	}
	switch d.Scheme {
	case emv.SchemeEMVCommon, emv.SchemeMastercard:
		b, err := hexField(f+".ApplicationCryptogram", d.ApplicationCryptogram, 8)
		if err != nil {
			return nil, err
		}
		p.ac = [8]byte(b)
	default:
		if len(d.ATC) != 4 {
			return nil, fault.FieldInvalid(f+".ApplicationTransactionCounter", "must be 4 hexadecimal digits")
		}
		if p.atc, err = atcField(f+".ApplicationTransactionCounter", d.ATC); err != nil {
			return nil, err
		}
	}
	switch d.Scheme {
	case emv.SchemeEMVCommon:
		if p.layout, p.mode, err = emvCommonLayout(f, d); err != nil {
			return nil, err
		}
	case emv.SchemeMastercard, emv.SchemeEMV2000:
		p.layout, p.mode = emv.LayoutMastercard, emv.CBC
	case emv.SchemeVisa, emv.SchemeAmex:
		p.layout, p.mode = emv.LayoutVisa, emv.ECB
		if d.ACKey == "" {
			return nil, fault.FieldInvalid(f+".AuthorizationRequestKeyIdentifier", "is required")
		}
		if (d.CurrentPinPEK == "") != (d.CurrentPinBlock == "") {
			return nil, fault.FieldInvalid(f+".CurrentPinAttributes", "needs both CurrentPinPekIdentifier and CurrentEncryptedPinBlock")
		}
		if d.CurrentPinBlock != "" {
			if p.curPB, err = pinBlockHex(f+".CurrentPinAttributes.CurrentEncryptedPinBlock", d.CurrentPinBlock); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

func pinBlockHex(field, s string) ([]byte, error) {
	if len(s) != 16 {
		return nil, fault.FieldInvalid(field, "must be 16 hexadecimal digits")
	}
	return hexField(field, s, 8)
}

// emvCommonLayout maps EmvCommon's Mode, PinBlockLengthPosition and
// PinBlockPaddingType.
func emvCommonLayout(f string, d EmvPinChangeDerivation) (emv.PINDataLayout, emv.CipherMode, error) {
	var l emv.PINDataLayout
	var m emv.CipherMode
	switch d.Mode {
	case "ECB":
		m = emv.ECB
	case "CBC":
		m = emv.CBC
	default:
		return l, 0, fault.FieldInvalid(f+".Mode", "must be ECB or CBC")
	}
	switch d.LengthPosition {
	case "NONE":
	case "FRONT_OF_PIN_BLOCK":
		l.LengthPrefix = true
	default:
		return l, 0, fault.FieldInvalid(f+".PinBlockLengthPosition", "must be NONE or FRONT_OF_PIN_BLOCK")
	}
	switch d.PaddingType {
	case "NO_PADDING":
	case "ISO_IEC_7816_4":
		l.Pad = true
	default:
		return l, 0, fault.FieldInvalid(f+".PinBlockPaddingType", "must be NO_PADDING or ISO_IEC_7816_4")
	}
	if l.LengthPrefix && !l.Pad {
		return l, 0, fault.FieldInvalid(f+".PinBlockPaddingType", "must be ISO_IEC_7816_4 when PinBlockLengthPosition is FRONT_OF_PIN_BLOCK")
	}
	return l, m, nil
}

// smKey resolves an EMV secure-messaging issuer master key.
func (s *Service) smKey(ident, field string, usage keyspec.KeyUsage, what string) (*WorkingKey, error) {
	w, err := s.Working(ident, field)
	if err != nil {
		return nil, err
	}
	if err := Require(w, field, what, []keyspec.KeyUsage{usage}, tdes2, deriveKey); err != nil {
		return nil, err
	}
	return w, nil
}

func errBadNewPinBlock(field string) error {
	return fault.FieldInvalid(field, "Pin block provided is invalid. Please check your input to ensure all field values are correct.")
}

// decryptPin deciphers a PIN block with a resolved PEK.
func decryptPin(k *pinKey, f pinblock.Format, blk []byte, pan, field string) ([]byte, error) {
	pin, err := pinblock.Decrypt(k.block, f, blk, pan)
	if err != nil {
		switch err {
		case pinblock.ErrInvalid, pinblock.ErrLength, pinblock.ErrPAN, pinblock.ErrPINLength:
			return nil, errBadNewPinBlock(field)
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
	f := fDerivation + "." + pinChangeMembers[d.Scheme]
	const what = "GenerateMacEmvPinChange"

	// Every key is resolved and checked before any cryptography.
	smi, err := s.smKey(in.IntegrityKey, "SecureMessagingIntegrityKeyIdentifier", keyspec.E2, what+" (integrity)")
	if err != nil {
		return nil, err
	}
	smc, err := s.smKey(in.ConfidentialKey, "SecureMessagingConfidentialityKeyIdentifier", keyspec.E1, what+" (confidentiality)")
	if err != nil {
		return nil, err
	}
	pek, err := s.pekSide(in.NewPinPEK, "NewPinPekIdentifier", in.PinBlockFormat, true, nil, nil, nil)
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
	var curPEK *pinKey
	if d.Scheme == emv.SchemeVisa || d.Scheme == emv.SchemeAmex {
		if acW, err = s.smKey(d.ACKey, f+".AuthorizationRequestKeyIdentifier", keyspec.E0, what+" (VIS PIN block)"); err != nil {
			return nil, err
		}
		out.AC = &KeyRef{acW.ARN, acW.KCV()}
		if p.curPB != nil {
			curPEK, err = s.pekSide(d.CurrentPinPEK, f+".CurrentPinAttributes.CurrentPinPekIdentifier", in.PinBlockFormat, true, nil, nil, nil)
			if err != nil {
				return nil, err
			}
			defer curPEK.release()
			out.CurrentPinPEK = &KeyRef{curPEK.arn, curPEK.kcv}
		}
	}

	pin, err := decryptPin(pek, p.format, p.newPB, d.PAN, "NewEncryptedPinBlock")
	if err != nil {
		return nil, err
	}
	defer pinblock.Zero(pin)
	var block []byte
	if acW == nil {
		block, err = emv.ISO2PINBlock(pin)
	} else {
		var cur []byte
		if curPEK != nil {
			if cur, err = decryptPin(curPEK, p.format, p.curPB, d.PAN, f+".CurrentPinAttributes.CurrentEncryptedPinBlock"); err != nil {
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
	mac, err := emv.ScriptMAC(skSMI, append(p.msg, enc...))
	clear(skSMI)
	if err != nil {
		return nil, fault.Internalf("script MAC", err)
	}
	out.MAC = strings.ToUpper(hex.EncodeToString(mac))
	out.EncryptedPinData = strings.ToUpper(hex.EncodeToString(enc))
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
	sk, err := emv.SMSessionKey(mk, d.Scheme, p.ac, p.atc)
	if err != nil {
		return nil, fault.Internalf("session key derivation", err)
	}
	return sk, nil
}
