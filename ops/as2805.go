package ops

// AS2805 (user guide "AS2805"): As2805KeyCryptogram import and export,
// GenerateAs2805KekValidation and the AS2805 session PIN key of
// TranslatePinData's IncomingAs2805Attributes. The cryptography is in
// hsm/as2805, which implements exactly what public sources define; the parts
// no public source defines (the terminal major key variant's mask, the 82C0
// masks, masks for triple-length KEKs) are refused with a Validation fault
// about the variant, the mask or the KEK (docs/key-exchange.md lists the
// sources searched for them).

import (
	"crypto/rand"
	"errors"

	"payhsm/fault"
	"payhsm/hsm/as2805"
	"payhsm/hsm/tdes"
	"payhsm/keyspec"
	"payhsm/keystore"
)

// As2805Variant is an AS2805 key variant: which kind of key a key
// cryptogram carries.
type As2805Variant uint8

// AS2805 key variants.
const (
	As2805TerminalMajorKey As2805Variant = iota + 1 // variant 00: a KEK
	As2805PinEncryptionKey                          // variant 28
	As2805MacKey                                    // variant 24
	As2805DataKey                                   // variant 22
)

// As2805Mask is the variant mask of a KEK validation's random key.
type As2805Mask uint8

// KEK validation masks.
const (
	As2805Mask82   As2805Mask = iota + 1 // 82…82 on KRs, 84…84 on KRr
	As2805Mask82C0                       // not published
)

// as2805Variant maps an AS2805 variant onto its mask and key usage (the
// guide's table "AS2805 Key Type / AWS Payment Cryptography Key Type").
func as2805Variant(v As2805Variant) (as2805.KeyVariant, keyspec.KeyUsage, error) {
	const subj, side = fault.SubjectAs2805Variant, fault.SideNone
	switch v {
	case As2805PinEncryptionKey:
		return as2805.VariantPIN, keyspec.P0, nil
	case As2805MacKey:
		return as2805.VariantMAC, keyspec.M0, nil
	case As2805DataKey:
		return as2805.VariantData, keyspec.D0, nil
	case As2805TerminalMajorKey:
		return 0, "", about(subj, side, "the terminal major key variant is not supported: the AS2805.6.1 variant mask of a terminal major key (KEK) is not defined in any public source; exchange KEKs with TR-34, RSA wrap or TR-31")
	}
	return 0, "", about(subj, side, "unknown AS2805 key variant")
}

// as2805KEK checks that rec, the request's key subj, is an AS2805 KEK: a
// TR31_K0 key (the guide: "KEK for AS2805 are always key type =
// TR31_K0_KEY_ENCRYPTION_KEY") of TDES_2KEY, the only length whose variant
// masks are published.
func as2805KEK(rec *keystore.Key, subj fault.Subject, modes func(keyspec.ModesOfUse) bool, what string) error {
	const side = fault.SideNone
	a := rec.Attributes
	if a.Usage != keyspec.K0 {
		return keyRule(fault.ViolationUsage, subj, side, "an AS2805 KEK is a TR31_K0_KEY_ENCRYPTION_KEY, not %s", a.Usage)
	}
	if a.Algorithm != keyspec.TDES2Key {
		return keyRule(fault.ViolationAlgorithm, subj, side, "AS2805 variant masks are published only for TDES_2KEY KEKs, not %s", a.Algorithm)
	}
	if !a.Modes.NoRestrictions && !modes(a.Modes) {
		return keyRule(fault.ViolationModes, subj, side, "the KEK's modes of use do not allow %s", what)
	}
	return nil
}

var (
	modesWrapOut = func(m keyspec.ModesOfUse) bool { return m.Encrypt || m.Wrap }
	modesWrapIn  = func(m keyspec.ModesOfUse) bool { return m.Decrypt || m.Unwrap }
)

// as2805WrappingKey resolves the KEK ident of a key cryptogram (the
// request's SubjectWrappingKey) and checks it.
func (s *Service) as2805WrappingKey(ident string, modes func(keyspec.ModesOfUse) bool, what string) (*keystore.Key, error) {
	const subj = fault.SubjectWrappingKey
	kek, err := s.resolve(ident)
	if err != nil {
		return nil, err
	}
	if err := s.usable(kek, ident); err != nil {
		if f := fault.As(err); f.Subject == fault.SubjectNone {
			f.Subject = subj
		}
		return nil, err
	}
	if err := as2805KEK(kek, subj, modes, what); err != nil {
		return nil, err
	}
	return kek, nil
}

// ImportAs2805 is ImportKey's As2805KeyCryptogram member.
type ImportAs2805 struct {
	Variant               As2805Variant
	Modes                 keyspec.ModesOfUse
	Algorithm             keyspec.Algorithm
	Exportable            bool
	WrappingKeyIdentifier string
	Cryptogram            []byte
}

// ImportKeyAs2805 imports a working key enciphered under the receiving KEK
// with an AS2805 variant (TDES-CBC, zero IV, under KEK XOR mask). The key
// usage is the variant's (P0, M0, D0); the key must be TDES and no stronger
// than the KEK. in's material members are ignored.
func (s *Service) ImportKeyAs2805(in ImportKeyInput, x ImportAs2805) (*Key, error) {
	if err := s.precheckRegions(in.ReplicationRegions); err != nil {
		return nil, err
	}
	const side = fault.SideNone
	v, usage, err := as2805Variant(x.Variant)
	if err != nil {
		return nil, err
	}
	a := keyspec.Attributes{Usage: usage, Class: keyspec.Symmetric, Algorithm: x.Algorithm, Modes: x.Modes}
	if err := keyspec.ValidateImport(a, ""); err != nil {
		return nil, err
	}
	if !a.Algorithm.IsTDES() {
		return nil, about(fault.SubjectKeyAlgorithm, side, "AS2805 key cryptograms carry TDES keys, not %s", a.Algorithm)
	}
	if len(x.Cryptogram) != a.Algorithm.KeyLen() {
		return nil, about(fault.SubjectKeyCryptogram, side, "must be %d bytes for a %s key", a.Algorithm.KeyLen(), a.Algorithm)
	}
	kek, err := s.as2805WrappingKey(x.WrappingKeyIdentifier, modesWrapIn, "unwrapping")
	if err != nil {
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
	key, err := as2805.UnwrapKey(kekKey, v, x.Cryptogram)
	if err != nil {
		return nil, fault.Internalf("AS2805 unwrap", err)
	}
	defer clear(key)
	return s.storeKey(in, a, "", x.Exportable, key)
}

// ExportAs2805 is ExportKey's As2805KeyCryptogram member.
type ExportAs2805 struct {
	WrappingKeyIdentifier string
	Variant               As2805Variant
}

// As2805Export is a key exported as an AS2805 key cryptogram.
type As2805Export struct {
	WrappingKeyARN string
	Cryptogram     []byte
	KCV            string
	KCVAlgorithm   keyspec.KCVAlgorithm
}

// ExportKeyAs2805 exports a P0, M0 or D0 TDES key enciphered under a sending
// KEK with the AS2805 variant of its usage. in's material members and its
// DUKPT KSN must be unset (a KSN is about SubjectKeySerialNumber); its
// KCVAlgorithm applies.
func (s *Service) ExportKeyAs2805(in ExportKeyInput, x ExportAs2805) (*As2805Export, error) {
	const side = fault.SideNone
	v, usage, err := as2805Variant(x.Variant)
	if err != nil {
		return nil, err
	}
	if in.DukptKSN != nil {
		return nil, about(fault.SubjectKeySerialNumber, side, "an initial DUKPT key cannot be combined with an AS2805 key cryptogram")
	}
	e, err := s.exportableKey(in)
	if err != nil {
		return nil, err
	}
	defer e.release()
	if e.attrs.Usage != usage {
		return nil, about(fault.SubjectAs2805Variant, side, "the variant carries %s keys; the key under export is %s", usage, e.attrs.Usage)
	}
	if !e.attrs.Algorithm.IsTDES() {
		return nil, about(fault.SubjectKey, side, "AS2805 key cryptograms carry TDES keys, not %s", e.attrs.Algorithm)
	}
	kek, err := s.as2805WrappingKey(x.WrappingKeyIdentifier, modesWrapOut, "wrapping")
	if err != nil {
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
	return &As2805Export{WrappingKeyARN: s.keyARN(kek.ID), Cryptogram: ct, KCV: kcv, KCVAlgorithm: method}, nil
}

// As2805KekValidationInput is GenerateAs2805KekValidation's request: exactly
// one of Request (a KekValidationRequest) and ResponseKRs (the partner's KRs
// of a KekValidationResponse) is set.
type As2805KekValidationInput struct {
	KeyIdentifier string
	VariantMask   As2805Mask
	Request       *As2805KekValidationRequest
	ResponseKRs   []byte
}

// As2805KekValidationRequest is the KekValidationRequest member.
type As2805KekValidationRequest struct {
	DeriveKeyAlgorithm keyspec.Algorithm
	RandomKeyMaxLength int // bytes: 8, 16 or 24; 0 = no cap
}

// As2805KekValidationOutput is GenerateAs2805KekValidation's answer.
type As2805KekValidationOutput struct {
	KeyARN, KCV                     string
	RandomKeySend, RandomKeyReceive []byte
}

// GenerateAs2805KekValidation generates a KEK validation request (a random
// key KR: KRs under KEK⊕82…82 to send, KRr = ~KR under KEK⊕84…84 to compare
// with the partner's answer) or answers a partner's KRs with KRr under the
// receiving KEK. The KEK is a TDES_2KEY TR31_K0 key; a request needs a KEK
// that may encrypt or wrap, a response one that may decrypt or unwrap.
func (s *Service) GenerateAs2805KekValidation(in As2805KekValidationInput) (*As2805KekValidationOutput, error) {
	const side = fault.SideNone
	switch in.VariantMask {
	case As2805Mask82:
	case As2805Mask82C0:
		return nil, about(fault.SubjectVariantMask, side, "the 82C0 masks are not supported: the masks they apply to the KEK are not defined in any public source; use the 82 masks")
	default:
		return nil, about(fault.SubjectVariantMask, side, "must be the 82 or the 82C0 masks")
	}
	if (in.Request == nil) == (len(in.ResponseKRs) == 0) {
		return nil, about(fault.SubjectKekValidation, side, "exactly one of a validation request and a validation response must be set")
	}
	var n int // request: the random key's length
	if r := in.Request; r != nil {
		var err error
		if n, err = as2805RandomKeyLength(r); err != nil {
			return nil, err
		}
	} else if l := len(in.ResponseKRs); l != 8 && l != 16 && l != 24 {
		return nil, about(fault.SubjectRandomKeySend, side, "must be 8, 16 or 24 bytes")
	}
	w, err := s.Working(in.KeyIdentifier, fault.SubjectKey, side)
	if err != nil {
		return nil, err
	}
	defer w.Release()
	what, modes := "generating a KEK validation request", modesWrapOut
	if in.Request == nil {
		what, modes = "generating a KEK validation response", modesWrapIn
	}
	if err := as2805KEK(w.Record, fault.SubjectKey, modes, what); err != nil {
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
		out.RandomKeySend, out.RandomKeyReceive = krs, krr
		return out, nil
	}
	krr, err := as2805.KEKValidationResponse(w.Material, in.ResponseKRs)
	if err != nil {
		return nil, fault.Internalf("AS2805 KEK validation response", err)
	}
	out.RandomKeySend, out.RandomKeyReceive = in.ResponseKRs, krr
	return out, nil
}

// as2805RandomKeyLength is the length of a KEK validation request's random
// key: that of a DeriveKeyAlgorithm key (TDES only: AS2805 cryptography is
// TDES), capped by RandomKeyMaxLength.
func as2805RandomKeyLength(r *As2805KekValidationRequest) (int, error) {
	const side = fault.SideNone
	if !r.DeriveKeyAlgorithm.IsTDES() {
		return 0, about(fault.SubjectDerivedKeyAlgorithm, side, "AS2805 random keys are TDES_2KEY or TDES_3KEY keys, not %.64s", string(r.DeriveKeyAlgorithm))
	}
	n := r.DeriveKeyAlgorithm.KeyLen()
	switch r.RandomKeyMaxLength {
	case 0:
	case 8, 16, 24:
		n = min(n, r.RandomKeyMaxLength)
	default:
		return 0, about(fault.SubjectRandomKeyLength, side, "must be 8, 16 or 24 bytes")
	}
	return n, nil
}

// as2805SessionPinKey derives the AS2805 transaction PIN encipherment key
// (KPE) of TranslatePinData's IncomingAs2805Attributes from the incoming key
// w (the request's key subj on side), the PIN protection key (KPP): a
// TDES_2KEY TR31_P0 key that may decrypt. KPE = OWF(KPP, STAN ‖ amount)
// (hsm/as2805.SessionPINKey). The KPE is zeroed by the returned key's
// release.
func (s *Service) as2805SessionPinKey(w *WorkingKey, subj fault.Subject, side fault.Side, as *PinAs2805, use keyspec.Use) (pinKey, error) {
	if err := RequireUse(w, use, subj, side); err != nil {
		return pinKey{}, err
	}
	kpe, err := as2805.SessionPINKey(w.Material, as.STAN, as.Amount)
	switch {
	case errors.Is(err, as2805.ErrSTAN):
		return pinKey{}, about(fault.SubjectSTAN, side, "must be 6 decimal digits")
	case errors.Is(err, as2805.ErrAmount):
		return pinKey{}, about(fault.SubjectTransactionAmount, side, "must be 12 decimal digits")
	case err != nil:
		return pinKey{}, fault.Internalf("AS2805 KPE derivation", err)
	}
	b, err := tdes.NewCipher(kpe)
	if err != nil {
		clear(kpe)
		return pinKey{}, fault.Internalf("AS2805 KPE key schedule", err)
	}
	return pinKey{block: b, arn: w.ARN, kcv: w.KCV(), done: func() { clear(kpe) }}, nil
}
