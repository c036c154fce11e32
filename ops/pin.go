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
//   - Generate/Verify take ISO formats 0, 3 and 4, as the model documents;
//     format 1 carries no PAN and is only translated.
//   - ISO format 4 binds the full PAN (ISO 9564-1:2017 9.4.2), as the public
//     AWS samples that build format 4 blocks for this API do.
//
// The clear PIN exists only inside hsm/pinblock and hsm/pinverify calls and in
// short-lived []byte values here that are zeroed before returning; it is never
// logged or put in an error.

import (
	"crypto/cipher"
	"crypto/subtle"
	"encoding/hex"
	"strings"

	"payhsm/fault"
	"payhsm/hsm/pinblock"
	"payhsm/hsm/pinverify"
	"payhsm/keyspec"
)

// PinBlockFormat is a PIN block format as the API names it.
type PinBlockFormat string

// PIN block formats.
const (
	PinISOFormat0    PinBlockFormat = "ISO_FORMAT_0"
	PinISOFormat1    PinBlockFormat = "ISO_FORMAT_1"
	PinISOFormat3    PinBlockFormat = "ISO_FORMAT_3"
	PinISOFormat4    PinBlockFormat = "ISO_FORMAT_4"
	PinAS2805Format0 PinBlockFormat = "AS2805_FORMAT_0"
)

// iso maps an API format onto ISO 9564-1 (AS2805.3 format 0 is ISO format 0).
func (f PinBlockFormat) iso() (pinblock.Format, bool) {
	switch f {
	case PinISOFormat0, PinAS2805Format0:
		return pinblock.ISO0, true
	case PinISOFormat1:
		return pinblock.ISO1, true
	case PinISOFormat3:
		return pinblock.ISO3, true
	case PinISOFormat4:
		return pinblock.ISO4, true
	}
	return 0, false
}

// PinBlockSpec is a PIN block format and the PAN it binds (empty for format 1).
type PinBlockSpec struct {
	Format PinBlockFormat
	PAN    string
}

// PinDukpt is a DUKPT derivation for a PIN key (TranslatePinData's
// Incoming/OutgoingDukptAttributes, VerifyPinData's DukptAttributes).
type PinDukpt struct {
	KSN            string            // hex
	DerivationType keyspec.Algorithm // TDES_2KEY, AES_128, ...; empty = the BDK's own
	Variant        string            // BIDIRECTIONAL (default), REQUEST, RESPONSE
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
	EncryptedPinBlock                string // hex
	IncomingDukpt, OutgoingDukpt     *PinDukpt
	IncomingWrapped, OutgoingWrapped *PinWrappedKey
	IncomingAs2805                   *PinAs2805
}

// TranslatePinOutput is TranslatePinData's answer.
type TranslatePinOutput struct {
	PinBlock  string // hex
	KeyARN    string // the outgoing key
	KCV       string
	PinLength int // digits in the PIN (the host commands report it; the AWS API does not)
}

// Request member names used in faults.
const (
	fIncomingKey   = "IncomingKeyIdentifier"
	fOutgoingKey   = "OutgoingKeyIdentifier"
	fIncomingAttrs = "IncomingTranslationAttributes"
	fOutgoingAttrs = "OutgoingTranslationAttributes"
	fPinBlock      = "EncryptedPinBlock"
	fPAN           = "PrimaryAccountNumber"
	fPinFormat     = "PinBlockFormat"
	fEncKey        = "EncryptionKeyIdentifier"
)

var (
	modesDecrypt = func(m keyspec.ModesOfUse) bool { return m.Decrypt }
	modesEncrypt = func(m keyspec.ModesOfUse) bool { return m.Encrypt }
	pinKeyAlgs   = []keyspec.Algorithm{keyspec.TDES2Key, keyspec.TDES3Key, keyspec.AES128, keyspec.AES192, keyspec.AES256}
	pvkAlgs      = []keyspec.Algorithm{keyspec.TDES2Key, keyspec.TDES3Key}
)

// errBadPinBlock is the answer to a block that does not decode under the
// given key, PAN and format (the guide's wording).
func errBadPinBlock() error {
	return &fault.Error{Kind: fault.Validation, Field: fPinBlock,
		Message: "Pin block provided is invalid. Please check your input to ensure all field values are correct."}
}

// pinKey is a resolved PIN encryption key for one side of an operation.
type pinKey struct {
	block cipher.Block
	arn   string
	kcv   string
	done  func() // releases per-request key material (derived or unwrapped keys)
}

func (k *pinKey) release() {
	if k != nil && k.done != nil {
		k.done()
	}
}

// pekSide resolves the PEK of one side: a stored P0 key, a DUKPT BDK or a
// dynamic (wrapped) key, checked against the format it will process.
// decrypt says whether this side deciphers (incoming) or enciphers (outgoing).
func (s *Service) pekSide(ident, field string, f PinBlockFormat, decrypt bool, dk *PinDukpt, wk *PinWrappedKey, as *PinAs2805) (*pinKey, error) {
	iso, ok := f.iso()
	if !ok {
		return nil, fault.FieldInvalid(field, "unsupported PIN block format %s", f)
	}
	set := 0
	for _, b := range []bool{dk != nil, wk != nil, as != nil} {
		if b {
			set++
		}
	}
	if set > 1 {
		return nil, fault.FieldInvalid(field, "DUKPT attributes, a wrapped key and AS2805 attributes cannot be combined")
	}
	w, err := s.Working(ident, field)
	if err != nil {
		return nil, err
	}
	var k *pinKey
	switch {
	case dk != nil:
		k, err = s.dukptPinKey(w, field, dk, decrypt)
	case wk != nil:
		k, err = s.wrappedPinKey(w, field, wk, decrypt)
	case as != nil:
		k, err = s.as2805SessionPinKey(w, field, as)
	default:
		modes := modesEncrypt
		what := "enciphering a PIN block"
		if decrypt {
			modes, what = modesDecrypt, "deciphering a PIN block"
		}
		if err := Require(w, field, what, []keyspec.KeyUsage{keyspec.P0}, pinKeyAlgs, modes); err != nil {
			return nil, err
		}
		k = &pinKey{block: w.Block, arn: w.ARN, kcv: w.KCV()}
	}
	if err != nil {
		return nil, err
	}
	if k.block == nil || k.block.BlockSize() != iso.BlockSize() {
		k.release()
		if iso == pinblock.ISO4 {
			return nil, fault.FieldInvalid(field, "%s PIN blocks need an AES PIN encryption key", f)
		}
		return nil, fault.FieldInvalid(field, "%s PIN blocks need a TDES PIN encryption key", f)
	}
	return k, nil
}

// parsePinBlock decodes the hex EncryptedPinBlock for format f.
func parsePinBlock(field, s string, f PinBlockFormat) ([]byte, error) {
	iso, _ := f.iso()
	if len(s) != 2*iso.BlockSize() {
		return nil, fault.FieldInvalid(field, "a %s PIN block is %d hexadecimal characters", f, 2*iso.BlockSize())
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fault.FieldInvalid(field, "must be hexadecimal")
	}
	return b, nil
}

// checkPAN checks that a format that binds a PAN has one (the model has
// already checked it is 12–19 digits).
func checkPAN(field string, spec PinBlockSpec) error {
	iso, ok := spec.Format.iso()
	if !ok {
		return fault.FieldInvalid(field, "unsupported PIN block format %s", spec.Format)
	}
	if iso.NeedsPAN() && spec.PAN == "" {
		return fault.FieldInvalid(field, "%s needs the PrimaryAccountNumber", spec.Format)
	}
	if !iso.NeedsPAN() && spec.PAN != "" {
		return fault.FieldInvalid(field, "%s takes no PrimaryAccountNumber", spec.Format)
	}
	if iso.NeedsPAN() && (len(spec.PAN) < 12 || len(spec.PAN) > 19 || !isDigits(spec.PAN)) {
		return fault.FieldInvalid(field, "the PrimaryAccountNumber must be 12 to 19 digits")
	}
	return nil
}

// pinFault classifies an hsm/pinblock or hsm/pinverify error.
func pinFault(what string, err error) error {
	if f := fault.As(err); f.Kind != fault.Internal {
		return f
	}
	switch err {
	case pinblock.ErrInvalid, pinblock.ErrLength, pinblock.ErrPAN, pinblock.ErrPINLength:
		return errBadPinBlock()
	}
	return fault.Internalf(what, err)
}

// TranslatePin re-enciphers a PIN block under another key and/or format
// without the PIN leaving the HSM functions. The incoming and outgoing PANs
// must be the same, and a PAN-bound block is never translated to format 1.
func (s *Service) TranslatePin(in TranslatePinInput) (*TranslatePinOutput, error) {
	if err := checkPAN(fIncomingAttrs, in.Incoming); err != nil {
		return nil, err
	}
	if err := checkPAN(fOutgoingAttrs, in.Outgoing); err != nil {
		return nil, err
	}
	inISO, _ := in.Incoming.Format.iso()
	outISO, _ := in.Outgoing.Format.iso()
	if inISO.NeedsPAN() && !outISO.NeedsPAN() {
		return nil, fault.FieldInvalid(fOutgoingAttrs, "a PIN block bound to a PAN cannot be translated to %s", in.Outgoing.Format)
	}
	if inISO.NeedsPAN() && outISO.NeedsPAN() && subtle.ConstantTimeCompare([]byte(in.Incoming.PAN), []byte(in.Outgoing.PAN)) != 1 {
		return nil, fault.FieldInvalid(fOutgoingAttrs, "the incoming and outgoing PrimaryAccountNumber must match: translating a PIN to another PAN is not permitted")
	}
	blk, err := parsePinBlock(fPinBlock, in.EncryptedPinBlock, in.Incoming.Format)
	if err != nil {
		return nil, err
	}
	ik, err := s.pekSide(in.IncomingKey, fIncomingKey, in.Incoming.Format, true, in.IncomingDukpt, in.IncomingWrapped, in.IncomingAs2805)
	if err != nil {
		return nil, err
	}
	defer ik.release()
	ok, err := s.pekSide(in.OutgoingKey, fOutgoingKey, in.Outgoing.Format, false, in.OutgoingDukpt, in.OutgoingWrapped, nil)
	if err != nil {
		return nil, err
	}
	defer ok.release()
	// pinblock.Translate, with the PIN's length kept: the clear PIN lives
	// only between Decrypt and Encrypt and is zeroed on return.
	pin, err := pinblock.Decrypt(ik.block, inISO, blk, in.Incoming.PAN)
	if err != nil {
		return nil, pinFault("translate PIN block", err)
	}
	defer clear(pin)
	out, err := pinblock.Encrypt(ok.block, outISO, pin, in.Outgoing.PAN, nil)
	if err != nil {
		return nil, pinFault("translate PIN block", err)
	}
	return &TranslatePinOutput{PinBlock: upperHex(out), KeyARN: ok.arn, KCV: ok.kcv, PinLength: len(pin)}, nil
}

// upperHex is strings.ToUpper(hex.EncodeToString(b)) in one allocation.
func upperHex(b []byte) string {
	const digits = "0123456789ABCDEF"
	var buf [64]byte
	dst := buf[:0]
	if 2*len(b) > len(buf) {
		dst = make([]byte, 0, 2*len(b))
	}
	for _, c := range b {
		dst = append(dst, digits[c>>4], digits[c&0x0F])
	}
	return string(dst)
}

// PinGenMethod is a GeneratePinData generation attribute.
type PinGenMethod string

// Generation methods (the PinGenerationAttributes union members).
const (
	PinGenVisaPin                  PinGenMethod = "VisaPin"
	PinGenVisaPinVerificationValue PinGenMethod = "VisaPinVerificationValue"
	PinGenIbm3624PinOffset         PinGenMethod = "Ibm3624PinOffset"
	PinGenIbm3624NaturalPin        PinGenMethod = "Ibm3624NaturalPin"
	PinGenIbm3624RandomPin         PinGenMethod = "Ibm3624RandomPin"
	PinGenIbm3624PinFromOffset     PinGenMethod = "Ibm3624PinFromOffset"
)

// Ibm3624Params are the IBM 3624 method's inputs.
type Ibm3624Params struct {
	DecimalizationTable string
	PadCharacter        string // one hex digit
	ValidationData      string
	PinOffset           string // PinFromOffset and verification
}

// GeneratePinInput is GeneratePinData's request.
type GeneratePinInput struct {
	GenerationKey, EncryptionKey string
	Method                       PinGenMethod
	PVKI                         int    // Visa methods
	EncryptedPinBlock            string // VisaPinVerificationValue, Ibm3624PinOffset: the PIN under the PEK
	Ibm                          Ibm3624Params
	PinLength                    int // 0 = 4
	PAN                          string
	Format                       PinBlockFormat
	EncryptionWrapped            *PinWrappedKey
}

// GeneratePinOutput is GeneratePinData's answer.
type GeneratePinOutput struct {
	GenerationKeyARN, GenerationKCV string
	EncryptionKeyARN, EncryptionKCV string
	EncryptedPinBlock               string
	PinOffset, VerificationValue    string
}

func (m PinGenMethod) visa() bool {
	return m == PinGenVisaPin || m == PinGenVisaPinVerificationValue
}

// takesBlock: the method reads a PIN block (else it makes one).
func (m PinGenMethod) takesBlock() bool {
	return m == PinGenVisaPinVerificationValue || m == PinGenIbm3624PinOffset
}

func pinVerifyFormat(f PinBlockFormat, pan string) error {
	switch f {
	case PinISOFormat0, PinISOFormat3, PinISOFormat4:
	default:
		return fault.FieldInvalid(fPinFormat, "PIN data operations support ISO_FORMAT_0, ISO_FORMAT_3 and ISO_FORMAT_4")
	}
	if pan == "" {
		return fault.FieldInvalid(fPAN, "is required for %s", f)
	}
	return checkPAN(fPAN, PinBlockSpec{Format: f, PAN: pan})
}

func (p Ibm3624Params) hsm() (pinverify.IBM3624, error) {
	if len(p.PadCharacter) != 1 {
		return pinverify.IBM3624{}, fault.FieldInvalid("PinValidationDataPadCharacter", "must be one hexadecimal digit")
	}
	return pinverify.IBM3624{DecTable: p.DecimalizationTable, ValidationData: p.ValidationData, Pad: p.PadCharacter[0]}, nil
}

// verificationKey resolves a PVK for method family visa (V2) or IBM 3624 (V1).
func (s *Service) verificationKey(ident, field string, visa, generate bool) (*WorkingKey, error) {
	w, err := s.Working(ident, field)
	if err != nil {
		return nil, err
	}
	usage, what := keyspec.V1, "IBM 3624 PIN"
	if visa {
		usage, what = keyspec.V2, "Visa PIN"
	}
	modes := func(m keyspec.ModesOfUse) bool { return m.Verify }
	if generate {
		modes = func(m keyspec.ModesOfUse) bool { return m.Generate }
		what += " generation"
	} else {
		what += " verification"
	}
	if err := Require(w, field, what, []keyspec.KeyUsage{usage}, pvkAlgs, modes); err != nil {
		return nil, err
	}
	return w, nil
}

func validPinLength(n int) (int, error) {
	if n == 0 {
		return 4, nil
	}
	if n < pinblock.MinPIN || n > pinblock.MaxPIN {
		return 0, fault.FieldInvalid("PinDataLength", "must be 4 to 12")
	}
	return n, nil
}

// GeneratePin generates PIN data: a random PIN with its PVV or IBM 3624
// offset, the PVV or offset of a given encrypted PIN, the IBM 3624 natural
// PIN, or the PIN an offset yields; every PIN leaves enciphered under the PEK.
func (s *Service) GeneratePin(in GeneratePinInput) (*GeneratePinOutput, error) {
	if err := pinVerifyFormat(in.Format, in.PAN); err != nil {
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
		return nil, fault.FieldInvalid("PinVerificationKeyIndex", "must be 0 to 6")
	}
	switch in.Method {
	case PinGenVisaPin, PinGenVisaPinVerificationValue, PinGenIbm3624PinOffset, PinGenIbm3624NaturalPin,
		PinGenIbm3624RandomPin, PinGenIbm3624PinFromOffset:
	default:
		return nil, fault.FieldInvalid("GenerationAttributes", "unsupported generation method")
	}
	var blk []byte
	if in.Method.takesBlock() {
		if blk, err = parsePinBlock(fPinBlock, in.EncryptedPinBlock, in.Format); err != nil {
			return nil, err
		}
	}
	gk, err := s.verificationKey(in.GenerationKey, "GenerationKeyIdentifier", in.Method.visa(), true)
	if err != nil {
		return nil, err
	}
	ek, err := s.pekSide(in.EncryptionKey, fEncKey, in.Format, in.Method.takesBlock(), nil, in.EncryptionWrapped, nil)
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
		pin, err = pinblock.Decrypt(ek.block, iso, blk, in.PAN)
		out.EncryptedPinBlock = strings.ToUpper(in.EncryptedPinBlock)
	case PinGenIbm3624NaturalPin:
		pin, err = ibm.Natural(gk.Block, n)
	case PinGenIbm3624PinFromOffset:
		if in.PinLength != 0 && in.PinLength != len(in.Ibm.PinOffset) {
			return nil, fault.FieldInvalid("PinDataLength", "must equal the length of the PinOffset")
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
	if out.EncryptedPinBlock == "" {
		c, err := pinblock.Encrypt(ek.block, iso, pin, in.PAN, nil)
		if err != nil {
			return nil, pinGenFault(err)
		}
		out.EncryptedPinBlock = strings.ToUpper(hex.EncodeToString(c))
	}
	return out, nil
}

// pinGenFault classifies errors of the PIN algorithms (parameter faults name
// the member; a block that does not decode is the guide's invalid-block error).
func pinGenFault(err error) error {
	switch err {
	case pinverify.ErrDecTable:
		return fault.FieldInvalid("DecimalizationTable", "must be 16 decimal digits")
	case pinverify.ErrValidation:
		return fault.FieldInvalid("PinValidationData", "must be 4 to 16 decimal digits")
	case pinverify.ErrPad:
		return fault.FieldInvalid("PinValidationDataPadCharacter", "must be one hexadecimal digit")
	case pinverify.ErrOffset:
		return fault.FieldInvalid("PinOffset", "must be 4 to 12 decimal digits")
	case pinverify.ErrPVKI:
		return fault.FieldInvalid("PinVerificationKeyIndex", "must be 0 to 9")
	case pinverify.ErrPAN:
		return fault.FieldInvalid(fPAN, "must be 12 to 19 digits")
	case pinverify.ErrPIN:
		return errBadPinBlock()
	}
	return pinFault("PIN data", err)
}

// VerifyPinInput is VerifyPinData's request: exactly one of Visa or Ibm.
type VerifyPinInput struct {
	VerificationKey, EncryptionKey string
	Visa                           *VisaPinCheck
	Ibm                            *Ibm3624Params
	EncryptedPinBlock              string
	PAN                            string
	Format                         PinBlockFormat
	PinLength                      int // 0 = not checked
	Dukpt                          *PinDukpt
	EncryptionWrapped              *PinWrappedKey
}

// VisaPinCheck is the Visa PVV to verify against.
type VisaPinCheck struct {
	PVKI int
	PVV  string
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
		return nil, fault.FieldInvalid("VerificationAttributes", "exactly one of VisaPin and Ibm3624Pin is required")
	}
	if err := pinVerifyFormat(in.Format, in.PAN); err != nil {
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
	blk, err := parsePinBlock(fPinBlock, in.EncryptedPinBlock, in.Format)
	if err != nil {
		return nil, err
	}
	vk, err := s.verificationKey(in.VerificationKey, "VerificationKeyIdentifier", in.Visa != nil, false)
	if err != nil {
		return nil, err
	}
	ek, err := s.pekSide(in.EncryptionKey, fEncKey, in.Format, true, in.Dukpt, in.EncryptionWrapped, nil)
	if err != nil {
		return nil, err
	}
	defer ek.release()
	iso, _ := in.Format.iso()
	pin, err := pinblock.Decrypt(ek.block, iso, blk, in.PAN)
	if err != nil {
		return nil, pinFault("decipher PIN block", err)
	}
	defer pinblock.Zero(pin)
	var match bool
	if in.Visa != nil {
		match, err = pinverify.VerifyVisaPVV(vk.Block, in.PAN, in.Visa.PVKI, pin, []byte(in.Visa.PVV))
	} else {
		match, err = ibm.Verify(vk.Block, pin, []byte(in.Ibm.PinOffset))
	}
	if err != nil {
		return nil, pinGenFault(err)
	}
	if !match || (in.PinLength != 0 && len(pin) != in.PinLength) {
		return nil, errInvalidPIN()
	}
	return &VerifyPinOutput{VerificationKeyARN: vk.ARN, VerificationKCV: vk.KCV(), EncryptionKeyARN: ek.arn, EncryptionKCV: ek.kcv}, nil
}
