package ops

// AS2805 (user guide "AS2805"): As2805KeyCryptogram import and export,
// GenerateAs2805KekValidation and the AS2805 session PIN key of
// TranslatePinData's IncomingAs2805Attributes. The cryptography is in
// hsm/as2805, which implements exactly what public sources define; the parts
// no public source defines (the TERMINAL_MAJOR_KEY_VARIANT_00 mask, the
// VARIANT_MASK_82C0 masks, masks for triple-length KEKs) are refused with a
// ValidationException naming the member.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"

	"payhsm/fault"
	"payhsm/hsm/as2805"
	"payhsm/hsm/tdes"
	"payhsm/keyspec"
	"payhsm/keystore"
)

// AS2805 key variants (the control plane's As2805KeyVariant enum).
const (
	As2805TerminalMajorKey = "TERMINAL_MAJOR_KEY_VARIANT_00"
	As2805PinEncryptionKey = "PIN_ENCRYPTION_KEY_VARIANT_28"
	As2805MacKey           = "MESSAGE_AUTHENTICATION_KEY_VARIANT_24"
	As2805DataKey          = "DATA_ENCRYPTION_KEY_VARIANT_22"
)

// KEK validation masks (the data plane's RandomKeySendVariantMask enum).
const (
	As2805Mask82   = "VARIANT_MASK_82"
	As2805Mask82C0 = "VARIANT_MASK_82C0"
)

// as2805Variant maps an As2805KeyVariant onto its mask and key usage (the
// guide's table "AS2805 Key Type / AWS Payment Cryptography Key Type").
func as2805Variant(field, name string) (as2805.KeyVariant, keyspec.KeyUsage, error) {
	switch name {
	case As2805PinEncryptionKey:
		return as2805.VariantPIN, keyspec.P0, nil
	case As2805MacKey:
		return as2805.VariantMAC, keyspec.M0, nil
	case As2805DataKey:
		return as2805.VariantData, keyspec.D0, nil
	case As2805TerminalMajorKey:
		return 0, "", fault.FieldInvalid(field, "%s is not supported: the AS2805.6.1 variant mask of a terminal major key (KEK) is not defined in any public source; exchange KEKs with TR-34, RSA wrap or TR-31", name)
	}
	return 0, "", fault.FieldInvalid(field, "unknown AS2805 key variant %.64q", name)
}

// as2805KEK checks that rec is an AS2805 KEK: a TR31_K0 key (the guide: "KEK
// for AS2805 are always key type = TR31_K0_KEY_ENCRYPTION_KEY") of
// TDES_2KEY, the only length whose variant masks are published.
func as2805KEK(rec *keystore.Key, field string, modes func(keyspec.ModesOfUse) bool, what string) error {
	a := rec.Attributes
	if a.Usage != keyspec.K0 {
		return fault.KeyRule(fault.ViolationUsage, field, "an AS2805 KEK is a TR31_K0_KEY_ENCRYPTION_KEY, not %s", a.Usage)
	}
	if a.Algorithm != keyspec.TDES2Key {
		return fault.KeyRule(fault.ViolationAlgorithm, field, "AS2805 variant masks are published only for TDES_2KEY KEKs, not %s", a.Algorithm)
	}
	if !a.Modes.NoRestrictions && !modes(a.Modes) {
		return fault.KeyRule(fault.ViolationModes, field, "the KEK's modes of use do not allow %s", what)
	}
	return nil
}

var (
	modesWrapOut = func(m keyspec.ModesOfUse) bool { return m.Encrypt || m.Wrap }
	modesWrapIn  = func(m keyspec.ModesOfUse) bool { return m.Decrypt || m.Unwrap }
)

// ImportAs2805 is ImportKey's As2805KeyCryptogram member.
type ImportAs2805 struct {
	Variant               string
	Modes                 keyspec.ModesOfUse
	Algorithm             keyspec.Algorithm
	Exportable            bool
	WrappingKeyIdentifier string
	Cryptogram            string // hex
}

// ImportKeyAs2805 imports a working key enciphered under the receiving KEK
// with an AS2805 variant (TDES-CBC, zero IV, under KEK XOR mask). The key
// usage is the variant's (P0, M0, D0); the key must be TDES and no stronger
// than the KEK. in's material members are ignored.
func (s *Service) ImportKeyAs2805(in ImportKeyInput, x ImportAs2805) (*Key, error) {
	const m = "KeyMaterial.As2805KeyCryptogram"
	v, usage, err := as2805Variant(m+".As2805KeyVariant", x.Variant)
	if err != nil {
		return nil, err
	}
	a := keyspec.Attributes{Usage: usage, Class: keyspec.Symmetric, Algorithm: x.Algorithm, Modes: x.Modes}
	if err := keyspec.ValidateImport(a, ""); err != nil {
		return nil, err
	}
	if !a.Algorithm.IsTDES() {
		return nil, fault.FieldInvalid(m+".KeyAlgorithm", "AS2805 key cryptograms carry TDES keys, not %s", a.Algorithm)
	}
	ct, err := hex.DecodeString(x.Cryptogram)
	if err != nil || len(ct) != a.Algorithm.KeyLen() {
		return nil, fault.FieldInvalid(m+".WrappedKeyCryptogram", "must be %d hexadecimal characters for a %s key", 2*a.Algorithm.KeyLen(), a.Algorithm)
	}
	kek, err := s.resolve(x.WrappingKeyIdentifier)
	if err != nil {
		return nil, err
	}
	if err := s.usable(kek, x.WrappingKeyIdentifier); err != nil {
		return nil, err
	}
	if err := as2805KEK(kek, m+".WrappingKeyIdentifier", modesWrapIn, "unwrapping"); err != nil {
		return nil, err
	}
	if !keyspec.AtLeastAsStrong(kek.Attributes.Algorithm, a.Algorithm) {
		return nil, fault.Validationf("a %s wrapping key is weaker than the %s key it would protect", kek.Attributes.Algorithm, a.Algorithm)
	}
	_, kekKey, err := s.loadMaterial(kek)
	if err != nil {
		return nil, err
	}
	defer clear(kekKey)
	key, err := as2805.UnwrapKey(kekKey, v, ct)
	if err != nil {
		return nil, fault.Internalf("AS2805 unwrap", err)
	}
	defer clear(key)
	return s.storeImported(in, a, "", x.Exportable, key, m)
}

// ExportAs2805 is ExportKey's As2805KeyCryptogram member.
type ExportAs2805 struct {
	WrappingKeyIdentifier string
	Variant               string
}

// ExportKeyAs2805 exports a P0, M0 or D0 TDES key enciphered under a sending
// KEK with the AS2805 variant of its usage. in's material members and its
// DUKPT KSN must be unset; its KCVAlgorithm applies.
func (s *Service) ExportKeyAs2805(in ExportKeyInput, x ExportAs2805) (*WrappedKey, error) {
	const m = "KeyMaterial.As2805KeyCryptogram"
	v, usage, err := as2805Variant(m+".As2805KeyVariant", x.Variant)
	if err != nil {
		return nil, err
	}
	if in.DukptKSN != "" {
		return nil, fault.FieldInvalid("ExportAttributes.ExportDukptInitialKey", "cannot be combined with an AS2805 key cryptogram")
	}
	e, err := s.loadExport(in)
	if err != nil {
		return nil, err
	}
	defer e.release()
	if e.attrs.Usage != usage {
		return nil, fault.FieldInvalid(m+".As2805KeyVariant", "%s carries %s keys; the key under export is %s", x.Variant, usage, e.attrs.Usage)
	}
	if !e.attrs.Algorithm.IsTDES() {
		return nil, fault.FieldInvalid("ExportKeyIdentifier", "AS2805 key cryptograms carry TDES keys, not %s", e.attrs.Algorithm)
	}
	kek, err := s.resolve(x.WrappingKeyIdentifier)
	if err != nil {
		return nil, err
	}
	if err := s.usable(kek, x.WrappingKeyIdentifier); err != nil {
		return nil, err
	}
	if err := as2805KEK(kek, m+".WrappingKeyIdentifier", modesWrapOut, "wrapping"); err != nil {
		return nil, err
	}
	if !keyspec.AtLeastAsStrong(kek.Attributes.Algorithm, e.attrs.Algorithm) {
		return nil, fault.Validationf("a %s wrapping key is weaker than the %s key it would protect", kek.Attributes.Algorithm, e.attrs.Algorithm)
	}
	_, kekKey, err := s.loadMaterial(kek)
	if err != nil {
		return nil, err
	}
	defer clear(kekKey)
	ct, err := as2805.WrapKey(kekKey, v, e.key)
	if err != nil {
		return nil, fault.Internalf("AS2805 wrap", err)
	}
	method := in.KCVAlgorithm
	if method == "" {
		method = e.rec.KCVAlgorithm
	}
	if method, err = kcvMethod(e.attrs.Algorithm, method); err != nil {
		return nil, err
	}
	kcv, err := symmetricKCV(e.attrs.Algorithm, method, e.key)
	if err != nil {
		return nil, err
	}
	return &WrappedKey{WrappingKeyARN: s.keyARN(kek.ID), Format: FormatKeyCryptogram,
		KeyMaterial: strings.ToUpper(hex.EncodeToString(ct)), KCV: kcv, KCVAlgorithm: method}, nil
}

// As2805KekValidationInput is GenerateAs2805KekValidation's request: exactly
// one of Request (a KekValidationRequest) and ResponseKRs (the partner's KRs
// of a KekValidationResponse) is set.
type As2805KekValidationInput struct {
	KeyIdentifier string
	VariantMask   string // RandomKeySendVariantMask
	Request       *As2805KekValidationRequest
	ResponseKRs   string // hex
}

// As2805KekValidationRequest is the KekValidationRequest member.
type As2805KekValidationRequest struct {
	DeriveKeyAlgorithm keyspec.Algorithm
	RandomKeyMaxLength string // BYTES_8, BYTES_16, BYTES_24 or ""
}

// As2805KekValidationOutput is GenerateAs2805KekValidation's answer.
type As2805KekValidationOutput struct {
	KeyARN, KCV                     string
	RandomKeySend, RandomKeyReceive string // hex
}

// GenerateAs2805KekValidation generates a KEK validation request (a random
// key KR: KRs under KEK⊕82…82 to send, KRr = ~KR under KEK⊕84…84 to compare
// with the partner's answer) or answers a partner's KRs with KRr under the
// receiving KEK. The KEK is a TDES_2KEY TR31_K0 key; a request needs a KEK
// that may encrypt or wrap, a response one that may decrypt or unwrap.
func (s *Service) GenerateAs2805KekValidation(in As2805KekValidationInput) (*As2805KekValidationOutput, error) {
	const (
		fKey  = "KeyIdentifier"
		fType = "KekValidationType"
	)
	switch in.VariantMask {
	case As2805Mask82:
	case As2805Mask82C0:
		return nil, fault.FieldInvalid("RandomKeySendVariantMask", "%s is not supported: the masks it applies to the KEK are not defined in any public source; use %s", in.VariantMask, As2805Mask82)
	default:
		return nil, fault.FieldInvalid("RandomKeySendVariantMask", "must be %s or %s", As2805Mask82, As2805Mask82C0)
	}
	if (in.Request == nil) == (in.ResponseKRs == "") {
		return nil, fault.FieldInvalid(fType, "exactly one of KekValidationRequest and KekValidationResponse must be set")
	}
	var (
		n   int // request: the random key's length
		krs []byte
		err error
	)
	if r := in.Request; r != nil {
		if n, err = as2805RandomKeyLength(r); err != nil {
			return nil, err
		}
	} else {
		krs, err = hex.DecodeString(in.ResponseKRs)
		if err != nil || (len(krs) != 8 && len(krs) != 16 && len(krs) != 24) {
			return nil, fault.FieldInvalid(fType+".KekValidationResponse.RandomKeySend", "must be 16, 32 or 48 hexadecimal characters")
		}
	}
	w, err := s.Working(in.KeyIdentifier, fKey)
	if err != nil {
		return nil, err
	}
	what, modes := "generating a KEK validation request", modesWrapOut
	if in.Request == nil {
		what, modes = "generating a KEK validation response", modesWrapIn
	}
	if err := as2805KEK(w.Record, fKey, modes, what); err != nil {
		return nil, err
	}
	out := &As2805KekValidationOutput{KeyARN: w.ARN, KCV: w.KCV()}
	if in.Request != nil {
		rnd := make([]byte, n)
		defer clear(rnd)
		if _, err := rand.Read(rnd); err != nil {
			return nil, fault.Internalf("random key", err)
		}
		tdes.FixParity(rnd) // a random key KR: odd parity, so ~KR needs no adjustment
		krs, krr, err := as2805.KEKValidationRequest(w.Material, rnd)
		if err != nil {
			return nil, fault.Internalf("AS2805 KEK validation request", err)
		}
		out.RandomKeySend, out.RandomKeyReceive = hexUpper(krs), hexUpper(krr)
		return out, nil
	}
	krr, err := as2805.KEKValidationResponse(w.Material, krs)
	if err != nil {
		return nil, fault.Internalf("AS2805 KEK validation response", err)
	}
	out.RandomKeySend, out.RandomKeyReceive = hexUpper(krs), hexUpper(krr)
	return out, nil
}

func hexUpper(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

// as2805RandomKeyLength is the length of a KEK validation request's random
// key: that of a DeriveKeyAlgorithm key (TDES only: AS2805 cryptography is
// TDES), capped by RandomKeyMaxLength.
func as2805RandomKeyLength(r *As2805KekValidationRequest) (int, error) {
	const f = "KekValidationType.KekValidationRequest"
	if !r.DeriveKeyAlgorithm.IsTDES() {
		return 0, fault.FieldInvalid(f+".DeriveKeyAlgorithm", "AS2805 random keys are TDES_2KEY or TDES_3KEY keys, not %.64s", string(r.DeriveKeyAlgorithm))
	}
	n := r.DeriveKeyAlgorithm.KeyLen()
	switch r.RandomKeyMaxLength {
	case "":
	case "BYTES_8":
		n = min(n, 8)
	case "BYTES_16":
		n = min(n, 16)
	case "BYTES_24":
		n = min(n, 24)
	default:
		return 0, fault.FieldInvalid(f+".RandomKeyMaxLength", "must be BYTES_8, BYTES_16 or BYTES_24")
	}
	return n, nil
}

// as2805SessionPinKey derives the AS2805 transaction PIN encipherment key
// (KPE) of TranslatePinData's IncomingAs2805Attributes from the incoming key
// w (the request's key subj on side), the PIN protection key (KPP): a
// TDES_2KEY TR31_P0 key that may decrypt. KPE = OWF(KPP, STAN ‖ amount)
// (hsm/as2805.SessionPINKey). The KPE is zeroed by the returned key's
// release.
func (s *Service) as2805SessionPinKey(w *WorkingKey, subj fault.Subject, side fault.Side, as *PinAs2805) (*pinKey, error) {
	if err := RequireAt(w, subj, side, "AS2805 session PIN key derivation", []keyspec.KeyUsage{keyspec.P0},
		[]keyspec.Algorithm{keyspec.TDES2Key}, modesDecrypt); err != nil {
		return nil, err
	}
	kpe, err := as2805.SessionPINKey(w.Material, as.STAN, as.Amount)
	switch {
	case errors.Is(err, as2805.ErrSTAN):
		return nil, about(fault.SubjectSTAN, side, "must be 6 decimal digits")
	case errors.Is(err, as2805.ErrAmount):
		return nil, about(fault.SubjectTransactionAmount, side, "must be 12 decimal digits")
	case err != nil:
		return nil, fault.Internalf("AS2805 KPE derivation", err)
	}
	b, err := tdes.NewCipher(kpe)
	if err != nil {
		clear(kpe)
		return nil, fault.Internalf("AS2805 KPE key schedule", err)
	}
	return &pinKey{block: b, arn: w.ARN, kcv: w.KCV(), done: func() { clear(kpe) }}, nil
}
