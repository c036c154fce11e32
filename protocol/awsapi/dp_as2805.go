package awsapi

import (
	"context"

	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/ops"
	cp "payhsm/protocol/awsapi/cpshape"
	dp "payhsm/protocol/awsapi/dpshape"
)

// AS2805 (user guide "AS2805") on both planes: the data plane's
// GenerateAs2805KekValidation and the control plane's As2805KeyCryptogram
// members of ImportKey and ExportKey. Semantics are in ops/as2805.go.

var as2805Masks = map[dp.RandomKeySendVariantMask]ops.As2805Mask{"VARIANT_MASK_82": ops.As2805Mask82, "VARIANT_MASK_82C0": ops.As2805Mask82C0}

var as2805MaxLengths = map[dp.RandomKeyMaxLength]int{"BYTES_8": 8, "BYTES_16": 16, "BYTES_24": 24}

var as2805Variants = map[cp.As2805KeyVariant]ops.As2805Variant{
	"TERMINAL_MAJOR_KEY_VARIANT_00": ops.As2805TerminalMajorKey, "PIN_ENCRYPTION_KEY_VARIANT_28": ops.As2805PinEncryptionKey,
	"MESSAGE_AUTHENTICATION_KEY_VARIANT_24": ops.As2805MacKey, "DATA_ENCRYPTION_KEY_VARIANT_22": ops.As2805DataKey,
}

// as2805Operations maps GenerateAs2805KekValidation.
func (s *Server) as2805Operations() map[string]operation {
	o := s.ops
	return map[string]operation{
		"GenerateAs2805KekValidation": handler(func(_ context.Context, in *dp.GenerateAs2805KekValidationInput) (any, error) {
			const t = "KekValidationType"
			r, err := func() (*ops.As2805KekValidationOutput, error) {
				req := ops.As2805KekValidationInput{KeyIdentifier: str(in.KeyIdentifier), VariantMask: opsEnum(in.RandomKeySendVariantMask, as2805Masks, badEnum)}
				switch v := in.KekValidationType; {
				case v.KekValidationRequest != nil:
					r := v.KekValidationRequest
					req.Request = &ops.As2805KekValidationRequest{DeriveKeyAlgorithm: keyspec.Algorithm(str(r.DeriveKeyAlgorithm)),
						RandomKeyMaxLength: opsEnum(r.RandomKeyMaxLength, as2805MaxLengths, -1)}
				case v.KekValidationResponse != nil:
					var err error
					if req.ResponseKRs, err = unhex(t+".KekValidationResponse.RandomKeySend", v.KekValidationResponse.RandomKeySend); err != nil {
						return nil, err
					}
				}
				return o.GenerateAs2805KekValidation(req)
			}()
			if err != nil {
				return nil, locate(err, func(_ fault.Side, subj fault.Subject) string {
					switch subj {
					case fault.SubjectKekValidation:
						return t
					case fault.SubjectDerivedKeyAlgorithm:
						return t + ".KekValidationRequest.DeriveKeyAlgorithm"
					case fault.SubjectRandomKeyLength:
						return t + ".KekValidationRequest.RandomKeyMaxLength"
					case fault.SubjectRandomKeySend:
						return t + ".KekValidationResponse.RandomKeySend"
					}
					return ""
				})
			}
			return &dp.GenerateAs2805KekValidationOutput{KeyArn: &r.KeyARN, KeyCheckValue: &r.KCV,
				RandomKeySend: upperHex(r.RandomKeySend), RandomKeyReceive: upperHex(r.RandomKeyReceive)}, nil
		}),
	}
}

// importAs2805 maps ImportKey's As2805KeyCryptogram member (control plane;
// ImportKey's handler calls it for that member and names the faults'
// members with importMembers).
func importAs2805(o *ops.Service, req ops.ImportKeyInput, x *cp.ImportAs2805KeyCryptogram) (any, error) {
	ct, err := unhex("KeyMaterial.As2805KeyCryptogram.WrappedKeyCryptogram", x.WrappedKeyCryptogram)
	if err != nil {
		return nil, err
	}
	in := ops.ImportAs2805{Variant: opsEnum(x.As2805KeyVariant, as2805Variants, badEnum), Algorithm: keyspec.Algorithm(str(x.KeyAlgorithm)),
		Exportable: boolv(x.Exportable), WrappingKeyIdentifier: str(x.WrappingKeyIdentifier), Cryptogram: ct}
	if m := x.KeyModesOfUse; m != nil {
		in.Modes = keyspec.ModesOfUse{Encrypt: boolv(m.Encrypt), Decrypt: boolv(m.Decrypt), Wrap: boolv(m.Wrap), Unwrap: boolv(m.Unwrap),
			Generate: boolv(m.Generate), Sign: boolv(m.Sign), Verify: boolv(m.Verify), DeriveKey: boolv(m.DeriveKey), NoRestrictions: boolv(m.NoRestrictions)}
	}
	k, err := o.ImportKeyAs2805(req, in)
	if err != nil {
		return nil, err
	}
	return &cp.ImportKeyOutput{Key: key(k)}, nil
}

// exportAs2805 maps ExportKey's As2805KeyCryptogram member (control plane;
// ExportKey's handler calls it for that member with the request it built
// from ExportKeyIdentifier and ExportAttributes, and names the faults'
// members with exportMembers).
func exportAs2805(o *ops.Service, req ops.ExportKeyInput, x *cp.ExportAs2805KeyCryptogram) (any, error) {
	w, err := o.ExportKeyAs2805(req, ops.ExportAs2805{WrappingKeyIdentifier: str(x.WrappingKeyIdentifier),
		Variant: opsEnum(x.As2805KeyVariant, as2805Variants, badEnum)})
	if err != nil {
		return nil, err
	}
	return &cp.ExportKeyOutput{WrappedKey: &cp.WrappedKey{
		WrappingKeyArn: opt(w.WrappingKeyARN), WrappedKeyMaterialFormat: enum[cp.WrappedKeyMaterialFormat]("KEY_CRYPTOGRAM"),
		KeyMaterial: upperHex(w.Cryptogram), KeyCheckValue: opt(w.KCV),
		KeyCheckValueAlgorithm: enum[cp.KeyCheckValueAlgorithm](string(w.KCVAlgorithm)),
	}}, nil
}
