package ops

// PIN operations: TranslatePinData, GeneratePinData and VerifyPinData. The
// key-separation rules are the user guide's "Valid keys for cryptographic
// operations" tables (Translate Pin Data, GeneratePinData and VerifyPinData for
// VISA/ABA and IBM3624), with these decisions where the guide is silent or
// contradicts itself:
//
//   - PIN block formats bind the PEK algorithm: ISO formats 0, 1, 3 and
//     AS2805 format 0 are 8-byte TDEA blocks and need a TDES key; ISO format 4
//     is the AES block and needs an AES key (ISO 9564-1:2017; the model: "The
//     ISO_Format_4 PIN block format is the only one supporting AES
//     encryption"). So Generate/Verify accept AES PEKs with ISO_FORMAT_4 even
//     though their tables list TDES only.
//   - PIN verification keys (V1, V2) may be TDES_2KEY or TDES_3KEY: the tables
//     say TDES_3KEY, the guide's own PVV walk-through creates a TDES_2KEY PVK.
//   - A PEK that enciphers a new PIN block needs Encrypt; one that deciphers
//     an incoming block needs Decrypt (the tables' combinations all carry
//     these; the IBM3624_PIN_OFFSET row's "{Encrypt, Unwrap}" is read as the
//     decryption it performs).
//   - Generate/Verify take ISO formats 0, 1, 3 and 4 (the model's enum; its
//     prose names 0, 3 and 4). A format 1 block binds no PAN, so the PAN is
//     optional there unless the method needs it (the Visa PVV is computed
//     over it); a PAN-bound format still needs one.
//   - ISO format 4 binds the full PAN (ISO 9564-1:2017 9.4.2), as the public
//     AWS samples that build format 4 blocks for this API do.
//
// The clear PIN exists only inside hsm/pinblock and hsm/pinverify calls and in
// short-lived []byte values here that are zeroed before returning; it is never
// logged or put in an error.

import (
	"crypto/cipher"
	"crypto/subtle"
	"fmt"
	"strings"

	"payhsm/fault"
	"payhsm/hsm/pinblock"
	"payhsm/hsm/pinverify"
	"payhsm/keyspec"
)

// PinFormat is a PIN block format.
type PinFormat uint8

// PIN block formats.
const (
	PinFormatISO0   PinFormat = iota + 1 // ISO 9564-1 format 0 (TDES, PAN-bound)
	PinFormatISO1                        // ISO 9564-1 format 1 (TDES, no PAN)
	PinFormatISO3                        // ISO 9564-1 format 3 (TDES, PAN-bound)
	PinFormatISO4                        // ISO 9564-1 format 4 (AES, PAN-bound)
	PinFormatAS2805                      // AS2805.3 format 0: ISO format 0's layout
)

var pinFormatNames = [...]string{PinFormatISO0: "ISO format 0", PinFormatISO1: "ISO format 1", PinFormatISO3: "ISO format 3",
	PinFormatISO4: "ISO format 4", PinFormatAS2805: "AS2805 format 0"}

func (f PinFormat) String() string {
	if int(f) < len(pinFormatNames) && pinFormatNames[f] != "" {
		return pinFormatNames[f]
	}
	return fmt.Sprintf("PinFormat(%d)", int(f))
}

// iso maps a format onto ISO 9564-1 (AS2805.3 format 0 is ISO format 0).
func (f PinFormat) iso() (pinblock.Format, bool) {
	switch f {
	case PinFormatISO0, PinFormatAS2805:
		return pinblock.ISO0, true
	case PinFormatISO1:
		return pinblock.ISO1, true
	case PinFormatISO3:
		return pinblock.ISO3, true
	case PinFormatISO4:
		return pinblock.ISO4, true
	}
	return 0, false
}

// PinBlockSpec is a PIN block format and the PAN it binds (empty for format 1).
type PinBlockSpec struct {
	Format PinFormat
	PAN    string
}

// PinDukpt is a DUKPT derivation for a PIN key (TranslatePinData's
// Incoming/OutgoingDukptAttributes, VerifyPinData's DukptAttributes).
type PinDukpt struct {
	KSN            []byte
	DerivationType keyspec.Algorithm // TDES_2KEY, AES_128, ...; empty = the BDK's own
	Variant        DukptVariant
}

// PinWrappedKey is a dynamic PEK carried in the request: a TR-31 key block
// under the KEK named by the key identifier, or an ECDH-agreed key (see
// DynamicKey).
type PinWrappedKey = DynamicKey

// PinAs2805 is the AS2805.6.4 session PIN key derivation data.
type PinAs2805 struct {
	STAN   string // 6 digits
	Amount string // 12 digits
}

// TranslatePinInput is TranslatePinData's request.
type TranslatePinInput struct {
	IncomingKey, OutgoingKey         string
	Incoming, Outgoing               PinBlockSpec
	EncryptedPinBlock                []byte
	IncomingDukpt, OutgoingDukpt     *PinDukpt
	IncomingWrapped, OutgoingWrapped *PinWrappedKey
	IncomingAs2805                   *PinAs2805
}

// TranslatePinOutput is TranslatePinData's answer.
type TranslatePinOutput struct {
	PinBlock  []byte
	KeyARN    string // the outgoing key
	KCV       string
	PinLength int // digits in the PIN (the host commands report it; the AWS API does not)
}

// errBadPinBlock is the answer to a block that does not decode under the
// given key, PAN and format: the user guide's whole sentence.
func errBadPinBlock(subj fault.Subject) error {
	return fault.About(subj, "Pin block provided is invalid. Please check your input to ensure all field values are correct.")
}

// pinKey is a resolved PIN encryption key for one side of an operation.
type pinKey struct {
	block cipher.Block
	arn   string
	kcv   string
	done  func() // releases the key: zeroes per-request material, or gives back a cached key's reference
}

func (k pinKey) release() {
	if k.done != nil {
		k.done()
	}
}

// pekSide resolves the PEK ident (the request's key subj on side): a stored
// P0 key, a DUKPT BDK or a dynamic (wrapped) key, checked against the format
// it will process. decrypt says whether this side deciphers (incoming) or
// enciphers (outgoing). The caller releases the key it returns (a value,
// not to allocate on the hot path).
// pinUses are the key-use rules (keyspec/use.go) of one side of a PIN
// operation: for its stored or dynamic PEK, its DUKPT BDK and its AS2805 KPP
// (UseNone where the side takes no such key).
type pinUses struct{ pek, bdk, kpp keyspec.Use }

func (s *Service) pekSide(ident string, subj fault.Subject, side fault.Side, f PinFormat, uses pinUses, dk *PinDukpt, wk *PinWrappedKey, as *PinAs2805) (pinKey, error) {
	var none pinKey
	iso, ok := f.iso()
	if !ok {
		return none, about(fault.SubjectPinBlockFormat, side, "unsupported PIN block format")
	}
	set := 0
	for _, b := range []bool{dk != nil, wk != nil, as != nil} {
		if b {
			set++
		}
	}
	if set > 1 {
		return none, about(subj, side, "DUKPT attributes, a wrapped key and AS2805 attributes cannot be combined")
	}
	w, err := s.Working(ident, subj, side)
	if err != nil {
		return none, err
	}
	var k pinKey
	switch {
	// A BDK, KEK or KPP serves only to derive or open the PEK: released at once.
	case dk != nil:
		k, err = s.dukptPinKey(w, subj, side, dk, uses.bdk)
		w.Release()
	case wk != nil:
		k, err = s.wrappedPinKey(w, subj, side, wk, uses.pek)
		w.Release()
	case as != nil:
		k, err = s.as2805SessionPinKey(w, subj, side, as, uses.kpp)
		w.Release()
	default:
		if err := RequireUse(w, uses.pek, subj, side); err != nil {
			w.Release()
			return none, err
		}
		k = pinKey{block: w.Block, arn: w.ARN, kcv: w.KCV(), done: w.release}
	}
	if err != nil {
		return none, err
	}
	if k.block == nil || k.block.BlockSize() != iso.BlockSize() {
		k.release()
		if iso == pinblock.ISO4 {
			return none, about(subj, side, "%v PIN blocks need an AES PIN encryption key", f)
		}
		return none, about(subj, side, "%v PIN blocks need a TDES PIN encryption key", f)
	}
	return k, nil
}

// checkPinBlock checks that blk, the request's PIN block subj, is one block
// of format f.
func checkPinBlock(subj fault.Subject, blk []byte, f PinFormat) error {
	iso, _ := f.iso()
	if len(blk) != iso.BlockSize() {
		return about(subj, fault.SideNone, "a %v PIN block is %d bytes", f, iso.BlockSize())
	}
	return nil
}

// checkPAN checks that a format that binds a PAN has one (the model has
// already checked it is 12–19 digits); its faults are about side.
func checkPAN(side fault.Side, spec PinBlockSpec) error {
	iso, ok := spec.Format.iso()
	if !ok {
		return about(fault.SubjectPinBlockFormat, side, "unsupported PIN block format")
	}
	if iso.NeedsPAN() && spec.PAN == "" {
		return about(fault.SubjectPAN, side, "%v needs the primary account number", spec.Format)
	}
	if !iso.NeedsPAN() && spec.PAN != "" {
		return about(fault.SubjectPAN, side, "%v takes no primary account number", spec.Format)
	}
	if iso.NeedsPAN() && (len(spec.PAN) < 12 || len(spec.PAN) > 19 || !isDigits(spec.PAN)) {
		return about(fault.SubjectPAN, side, "must be 12 to 19 digits")
	}
	return nil
}

// pinFault classifies an hsm/pinblock or hsm/pinverify error; a block that
// does not decode is about the PIN block subj.
func pinFault(what string, subj fault.Subject, err error) error {
	if f := fault.As(err); f.Kind != fault.Internal {
		return f
	}
	switch err {
	case pinblock.ErrInvalid, pinblock.ErrLength, pinblock.ErrPAN, pinblock.ErrPINLength:
		return errBadPinBlock(subj)
	}
	return fault.Internalf(what, err)
}

// TranslatePin re-enciphers a PIN block under another key and/or format
// without the PIN leaving the HSM functions. The incoming and outgoing PANs
// must be the same, and a PAN-bound block is never translated to format 1.
func (s *Service) TranslatePin(in TranslatePinInput) (*TranslatePinOutput, error) {
	if err := checkPAN(fault.SideIncoming, in.Incoming); err != nil {
		return nil, err
	}
	if err := checkPAN(fault.SideOutgoing, in.Outgoing); err != nil {
		return nil, err
	}
	inISO, _ := in.Incoming.Format.iso()
	outISO, _ := in.Outgoing.Format.iso()
	if inISO.NeedsPAN() && !outISO.NeedsPAN() {
		return nil, about(fault.SubjectPAN, fault.SideOutgoing, "a PIN block bound to a PAN cannot be translated to %v, which binds none", in.Outgoing.Format)
	}
	if inISO.NeedsPAN() && outISO.NeedsPAN() && subtle.ConstantTimeCompare([]byte(in.Incoming.PAN), []byte(in.Outgoing.PAN)) != 1 {
		return nil, about(fault.SubjectPAN, fault.SideOutgoing, "the incoming and outgoing primary account numbers must match: translating a PIN to another PAN is not permitted")
	}
	if err := checkPinBlock(fault.SubjectPinBlock, in.EncryptedPinBlock, in.Incoming.Format); err != nil {
		return nil, err
	}
	return s.translatePin(in, inISO, outISO)
}

// translatePin is TranslatePin once the request is checked: apart, so that
// its few returns let the compiler open-code its defers (a function with
// more than 15 returns × defers runs them through the runtime).
func (s *Service) translatePin(in TranslatePinInput, inISO, outISO pinblock.Format) (*TranslatePinOutput, error) {
	ik, err := s.pekSide(in.IncomingKey, fault.SubjectPinEncryptionKey, fault.SideIncoming, in.Incoming.Format, pinUses{keyspec.UseTranslatePinIncomingPEK, keyspec.UseTranslatePinIncomingBDK, keyspec.UseTranslatePinIncomingKPP}, in.IncomingDukpt, in.IncomingWrapped, in.IncomingAs2805)
	if err != nil {
		return nil, err
	}
	defer ik.release()
	ok, err := s.pekSide(in.OutgoingKey, fault.SubjectPinEncryptionKey, fault.SideOutgoing, in.Outgoing.Format, pinUses{keyspec.UseTranslatePinOutgoingPEK, keyspec.UseTranslatePinOutgoingBDK, keyspec.UseNone}, in.OutgoingDukpt, in.OutgoingWrapped, nil)
	if err != nil {
		return nil, err
	}
	defer ok.release()
	// The clear PIN lives only inside pinblock.Translate.
	out, n, err := pinblock.Translate(ik.block, inISO, in.EncryptedPinBlock, in.Incoming.PAN, ok.block, outISO, in.Outgoing.PAN, nil)
	if err != nil {
		return nil, pinFault("translate PIN block", fault.SubjectPinBlock, err)
	}
	return &TranslatePinOutput{PinBlock: out, KeyARN: ok.arn, KCV: ok.kcv, PinLength: n}, nil
}

// PinGenMethod is a GeneratePinData generation method.
type PinGenMethod uint8

// Generation methods.
const (
	PinGenVisaPin                  PinGenMethod = iota + 1 // a random PIN and its Visa PVV
	PinGenVisaPinVerificationValue                         // the Visa PVV of a given PIN
	PinGenIbm3624PinOffset                                 // the IBM 3624 offset of a given PIN
	PinGenIbm3624NaturalPin                                // the IBM 3624 natural PIN
	PinGenIbm3624RandomPin                                 // a random PIN and its IBM 3624 offset
	PinGenIbm3624PinFromOffset                             // the PIN an IBM 3624 offset yields
)

// Ibm3624Params are the IBM 3624 method's inputs.
type Ibm3624Params struct {
	DecimalizationTable string // 16 decimal digits
	PadCharacter        byte   // one hexadecimal digit character
	ValidationData      string // 4 to 16 decimal digits
	PinOffset           string // PinFromOffset and verification: 4 to 12 decimal digits
}

// GeneratePinInput is GeneratePinData's request.
type GeneratePinInput struct {
	GenerationKey, EncryptionKey string
	Method                       PinGenMethod
	PVKI                         int    // Visa methods
	EncryptedPinBlock            []byte // VisaPinVerificationValue, Ibm3624PinOffset: the PIN under the PEK
	Ibm                          Ibm3624Params
	PinLength                    int // 0 = 4
	PAN                          string
	Format                       PinFormat
	EncryptionWrapped            *PinWrappedKey
}

// GeneratePinOutput is GeneratePinData's answer.
type GeneratePinOutput struct {
	GenerationKeyARN, GenerationKCV string
	EncryptionKeyARN, EncryptionKCV string
	EncryptedPinBlock               []byte // the PIN under the PEK (the request's own block when it gave one)
	PinOffset, VerificationValue    string // digits
}

func (m PinGenMethod) visa() bool {
	return m == PinGenVisaPin || m == PinGenVisaPinVerificationValue
}

// takesBlock: the method reads a PIN block (else it makes one).
func (m PinGenMethod) takesBlock() bool {
	return m == PinGenVisaPinVerificationValue || m == PinGenIbm3624PinOffset
}

// pinVerifyFormat checks the PIN block format and PAN of GeneratePinData and
// VerifyPinData; visa says the method computes a Visa PVV over the PAN.
func pinVerifyFormat(f PinFormat, pan string, visa bool) error {
	switch f {
	case PinFormatISO0, PinFormatISO1, PinFormatISO3, PinFormatISO4:
	default:
		return about(fault.SubjectPinBlockFormat, fault.SideNone, "PIN data operations support ISO formats 0, 1, 3 and 4")
	}
	if pan == "" {
		if f != PinFormatISO1 {
			return about(fault.SubjectPAN, fault.SideNone, "is required for %v", f)
		}
		if visa {
			return about(fault.SubjectPAN, fault.SideNone, "is required for the Visa PIN verification value")
		}
		return nil
	}
	if len(pan) < 12 || len(pan) > 19 || !isDigits(pan) {
		return about(fault.SubjectPAN, fault.SideNone, "must be 12 to 19 digits")
	}
	return nil
}

func (p Ibm3624Params) hsm() (pinverify.IBM3624, error) {
	if p.PadCharacter == 0 {
		return pinverify.IBM3624{}, about(fault.SubjectPadCharacter, fault.SideNone, "must be one hexadecimal digit")
	}
	return pinverify.IBM3624{DecTable: p.DecimalizationTable, ValidationData: p.ValidationData, Pad: p.PadCharacter}, nil
}

// verificationKey resolves a PVK for method family visa (V2) or IBM 3624
// (V1); the caller releases it.
func (s *Service) verificationKey(ident string, visa, generate bool) (_ *WorkingKey, err error) {
	const subj, side = fault.SubjectPinVerificationKey, fault.SideNone
	w, err := s.Working(ident, subj, side)
	if err != nil {
		return nil, err
	}
	defer releaseOnError(w, &err)
	u := keyspec.UseVerifyPinIBM3624PVK
	switch {
	case visa && generate:
		u = keyspec.UseGeneratePinVisaPVK
	case visa:
		u = keyspec.UseVerifyPinVisaPVK
	case generate:
		u = keyspec.UseGeneratePinIBM3624PVK
	}
	if err := RequireUse(w, u, subj, side); err != nil {
		return nil, err
	}
	return w, nil
}

func validPinLength(n int) (int, error) {
	if n == 0 {
		return 4, nil
	}
	if n < pinblock.MinPIN || n > pinblock.MaxPIN {
		return 0, about(fault.SubjectPinLength, fault.SideNone, "must be 4 to 12")
	}
	return n, nil
}

// GeneratePin generates PIN data: a random PIN with its PVV or IBM 3624
// offset, the PVV or offset of a given encrypted PIN, the IBM 3624 natural
// PIN, or the PIN an offset yields; every PIN leaves enciphered under the PEK.
func (s *Service) GeneratePin(in GeneratePinInput) (*GeneratePinOutput, error) {
	if err := pinVerifyFormat(in.Format, in.PAN, in.Method.visa()); err != nil {
		return nil, err
	}
	n, err := validPinLength(in.PinLength)
	if err != nil {
		return nil, err
	}
	var ibm pinverify.IBM3624
	if !in.Method.visa() {
		if ibm, err = in.Ibm.hsm(); err != nil {
			return nil, err
		}
	} else if in.PVKI < 0 || in.PVKI > 6 {
		return nil, about(fault.SubjectPVKI, fault.SideNone, "must be 0 to 6")
	}
	switch in.Method {
	case PinGenVisaPin, PinGenVisaPinVerificationValue, PinGenIbm3624PinOffset, PinGenIbm3624NaturalPin,
		PinGenIbm3624RandomPin, PinGenIbm3624PinFromOffset:
	default:
		return nil, about(fault.SubjectPinMethod, fault.SideNone, "unsupported generation method")
	}
	if in.Method.takesBlock() {
		if err := checkPinBlock(fault.SubjectPinBlock, in.EncryptedPinBlock, in.Format); err != nil {
			return nil, err
		}
	}
	gk, err := s.verificationKey(in.GenerationKey, in.Method.visa(), true)
	if err != nil {
		return nil, err
	}
	defer gk.Release()
	ek, err := s.pekSide(in.EncryptionKey, fault.SubjectPinEncryptionKey, fault.SideNone, in.Format, generatePinUses(in.Method.takesBlock()), nil, in.EncryptionWrapped, nil)
	if err != nil {
		return nil, err
	}
	defer ek.release()
	iso, _ := in.Format.iso()

	out := &GeneratePinOutput{GenerationKeyARN: gk.ARN, GenerationKCV: gk.KCV(), EncryptionKeyARN: ek.arn, EncryptionKCV: ek.kcv}
	var pin []byte
	defer func() { pinblock.Zero(pin) }()
	switch in.Method {
	case PinGenVisaPin, PinGenIbm3624RandomPin:
		pin, err = pinblock.RandomPIN(n, nil)
	case PinGenVisaPinVerificationValue, PinGenIbm3624PinOffset:
		pin, err = pinblock.Decrypt(ek.block, iso, in.EncryptedPinBlock, in.PAN)
		out.EncryptedPinBlock = in.EncryptedPinBlock
	case PinGenIbm3624NaturalPin:
		pin, err = ibm.Natural(gk.Block, n)
	case PinGenIbm3624PinFromOffset:
		if in.PinLength != 0 && in.PinLength != len(in.Ibm.PinOffset) {
			return nil, about(fault.SubjectPinLength, fault.SideNone, "must equal the length of the PIN offset")
		}
		pin, err = ibm.PINFromOffset(gk.Block, []byte(in.Ibm.PinOffset))
	}
	if err != nil {
		return nil, pinGenFault(err)
	}
	var v []byte
	switch in.Method {
	case PinGenVisaPin, PinGenVisaPinVerificationValue:
		v, err = pinverify.VisaPVV(gk.Block, in.PAN, in.PVKI, pin)
		out.VerificationValue = string(v)
	case PinGenIbm3624PinOffset, PinGenIbm3624RandomPin:
		v, err = ibm.Offset(gk.Block, pin)
		out.PinOffset = string(v)
	case PinGenIbm3624NaturalPin:
		out.PinOffset = strings.Repeat("0", len(pin))
	case PinGenIbm3624PinFromOffset:
		out.PinOffset = in.Ibm.PinOffset
	}
	if err != nil {
		return nil, pinGenFault(err)
	}
	if out.EncryptedPinBlock == nil {
		c, err := pinblock.Encrypt(ek.block, iso, pin, in.PAN, nil)
		if err != nil {
			return nil, pinGenFault(err)
		}
		out.EncryptedPinBlock = c
	}
	return out, nil
}

// pinGenFault classifies errors of the PIN algorithms (parameter faults name
// their subject; a block that does not decode is the guide's invalid-block
// error).
func pinGenFault(err error) error {
	const side = fault.SideNone
	switch err {
	case pinverify.ErrDecTable:
		return about(fault.SubjectDecimalizationTable, side, "must be 16 decimal digits")
	case pinverify.ErrValidation:
		return about(fault.SubjectPinValidationData, side, "must be 4 to 16 decimal digits")
	case pinverify.ErrPad:
		return about(fault.SubjectPadCharacter, side, "must be one hexadecimal digit")
	case pinverify.ErrOffset:
		return about(fault.SubjectPinOffset, side, "must be 4 to 12 decimal digits")
	case pinverify.ErrPVKI:
		return about(fault.SubjectPVKI, side, "must be 0 to 9")
	case pinverify.ErrPAN:
		return about(fault.SubjectPAN, side, "must be 12 to 19 digits")
	case pinverify.ErrPIN:
		return errBadPinBlock(fault.SubjectPinBlock)
	}
	return pinFault("PIN data", fault.SubjectPinBlock, err)
}

// VerifyPinInput is VerifyPinData's request: exactly one of Visa or Ibm.
type VerifyPinInput struct {
	VerificationKey, EncryptionKey string
	Visa                           *VisaPinCheck
	Ibm                            *Ibm3624Params
	EncryptedPinBlock              []byte
	PAN                            string
	Format                         PinFormat
	PinLength                      int // 0 = not checked
	Dukpt                          *PinDukpt
	EncryptionWrapped              *PinWrappedKey
}

// VisaPinCheck is the Visa PVV to verify against.
type VisaPinCheck struct {
	PVKI int
	PVV  string // 4 digits
}

// VerifyPinOutput is VerifyPinData's answer.
type VerifyPinOutput struct {
	VerificationKeyARN, VerificationKCV string
	EncryptionKeyARN, EncryptionKCV     string
}

func errInvalidPIN() error {
	return fault.Mismatch(fault.ReasonInvalidPIN, "Pin block verification failed.")
}

// VerifyPin checks an encrypted PIN against its PVV or IBM 3624 offset. A
// PIN that does not match is VerificationFailed with reason INVALID_PIN.
func (s *Service) VerifyPin(in VerifyPinInput) (*VerifyPinOutput, error) {
	if (in.Visa == nil) == (in.Ibm == nil) {
		return nil, about(fault.SubjectPinMethod, fault.SideNone, "exactly one of the Visa PIN and the IBM 3624 PIN methods is required")
	}
	if err := pinVerifyFormat(in.Format, in.PAN, in.Visa != nil); err != nil {
		return nil, err
	}
	if in.PinLength != 0 {
		if _, err := validPinLength(in.PinLength); err != nil {
			return nil, err
		}
	}
	var ibm pinverify.IBM3624
	var err error
	if in.Ibm != nil {
		if ibm, err = in.Ibm.hsm(); err != nil {
			return nil, err
		}
	}
	if err := checkPinBlock(fault.SubjectPinBlock, in.EncryptedPinBlock, in.Format); err != nil {
		return nil, err
	}
	return s.verifyPin(&in, ibm)
}

// verifyPin is VerifyPin once the request is checked; it and matchPin have
// few returns, so that the compiler open-codes their defers (see
// translatePin).
func (s *Service) verifyPin(in *VerifyPinInput, ibm pinverify.IBM3624) (*VerifyPinOutput, error) {
	vk, err := s.verificationKey(in.VerificationKey, in.Visa != nil, false)
	if err != nil {
		return nil, err
	}
	defer vk.Release()
	ek, err := s.pekSide(in.EncryptionKey, fault.SubjectPinEncryptionKey, fault.SideNone, in.Format, pinUses{keyspec.UseVerifyPinPEK, keyspec.UseVerifyPinBDK, keyspec.UseNone}, in.Dukpt, in.EncryptionWrapped, nil)
	if err != nil {
		return nil, err
	}
	defer ek.release()
	if err := matchPin(vk, ek, in, ibm); err != nil {
		return nil, err
	}
	return &VerifyPinOutput{VerificationKeyARN: vk.ARN, VerificationKCV: vk.KCV(), EncryptionKeyARN: ek.arn, EncryptionKCV: ek.kcv}, nil
}

// matchPin deciphers in's PIN block under ek and checks the PIN against
// its PVV or IBM 3624 offset under vk: nil when it matches.
func matchPin(vk *WorkingKey, ek pinKey, in *VerifyPinInput, ibm pinverify.IBM3624) error {
	iso, _ := in.Format.iso()
	pin, err := pinblock.Decrypt(ek.block, iso, in.EncryptedPinBlock, in.PAN)
	if err != nil {
		return pinFault("decipher PIN block", fault.SubjectPinBlock, err)
	}
	defer pinblock.Zero(pin)
	var match bool
	if in.Visa != nil {
		match, err = pinverify.VerifyVisaPVV(vk.Block, in.PAN, in.Visa.PVKI, pin, []byte(in.Visa.PVV))
	} else {
		match, err = ibm.Verify(vk.Block, pin, []byte(in.Ibm.PinOffset))
	}
	if err != nil {
		return pinGenFault(err)
	}
	if !match || (in.PinLength != 0 && len(pin) != in.PinLength) {
		return errInvalidPIN()
	}
	return nil
}

// generatePinUses are GeneratePinData's PEK rules: the PEK deciphers the
// request's PIN block for the methods that take one (Visa PVV, IBM 3624
// offset) and enciphers the generated PIN for the others.
func generatePinUses(takesBlock bool) pinUses {
	if takesBlock {
		return pinUses{pek: keyspec.UseGeneratePinDecipherPEK}
	}
	return pinUses{pek: keyspec.UseGeneratePinEncipherPEK}
}
