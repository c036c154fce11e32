package awsapi

import (
	"context"

	"payhsm/keyspec"
	"payhsm/ops"
	cp "payhsm/protocol/awsapi/cpshape"
	dp "payhsm/protocol/awsapi/dpshape"
)

// AS2805 (user guide "AS2805") on both planes: the data plane's
// GenerateAs2805KekValidation and the control plane's As2805KeyCryptogram
// members of ImportKey and ExportKey. Semantics are in ops/as2805.go.

// as2805Operations maps GenerateAs2805KekValidation.
func (s *Server) as2805Operations() map[string]operation {
	o := s.ops
	return map[string]operation{
		"GenerateAs2805KekValidation": handler(func(_ context.Context, in *dp.GenerateAs2805KekValidationInput) (any, error) {
			req := ops.As2805KekValidationInput{KeyIdentifier: str(in.KeyIdentifier), VariantMask: str(in.RandomKeySendVariantMask)}
			switch t := in.KekValidationType; {
			case t.KekValidationRequest != nil:
				r := t.KekValidationRequest
				req.Request = &ops.As2805KekValidationRequest{DeriveKeyAlgorithm: keyspec.Algorithm(str(r.DeriveKeyAlgorithm)),
					RandomKeyMaxLength: str(r.RandomKeyMaxLength)}
			case t.KekValidationResponse != nil:
				req.ResponseKRs = str(t.KekValidationResponse.RandomKeySend)
			}
			r, err := o.GenerateAs2805KekValidation(req)
			if err != nil {
				return nil, err
			}
			return &dp.GenerateAs2805KekValidationOutput{KeyArn: &r.KeyARN, KeyCheckValue: &r.KCV,
				RandomKeySend: &r.RandomKeySend, RandomKeyReceive: &r.RandomKeyReceive}, nil
		}),
	}
}

// importAs2805 maps ImportKey's As2805KeyCryptogram member (control plane;
// ImportKey's handler calls it for that member).
func importAs2805(o *ops.Service, req ops.ImportKeyInput, x *cp.ImportAs2805KeyCryptogram) (any, error) {
	in := ops.ImportAs2805{Variant: str(x.As2805KeyVariant), Algorithm: keyspec.Algorithm(str(x.KeyAlgorithm)), Exportable: boolv(x.Exportable),
		WrappingKeyIdentifier: str(x.WrappingKeyIdentifier), Cryptogram: str(x.WrappedKeyCryptogram)}
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
// from ExportKeyIdentifier and ExportAttributes).
func exportAs2805(o *ops.Service, req ops.ExportKeyInput, x *cp.ExportAs2805KeyCryptogram) (any, error) {
	w, err := o.ExportKeyAs2805(req, ops.ExportAs2805{WrappingKeyIdentifier: str(x.WrappingKeyIdentifier), Variant: str(x.As2805KeyVariant)})
	if err != nil {
		return nil, err
	}
	return &cp.ExportKeyOutput{WrappedKey: &cp.WrappedKey{
		WrappingKeyArn: opt(w.WrappingKeyARN), WrappedKeyMaterialFormat: enum[cp.WrappedKeyMaterialFormat](w.Format),
		KeyMaterial: opt(w.KeyMaterial), KeyCheckValue: opt(w.KCV),
		KeyCheckValueAlgorithm: enum[cp.KeyCheckValueAlgorithm](string(w.KCVAlgorithm)),
	}}, nil
}
