package awsapi

import (
	"context"

	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/ops"
	dp "payhsm/protocol/awsapi/dpshape"
)

// pinOperations maps TranslatePinData, GeneratePinData and VerifyPinData.
func (s *Server) pinOperations() map[string]operation {
	o := s.ops
	return map[string]operation{
		"TranslatePinData": handler(func(_ context.Context, in *dp.TranslatePinDataInput) (any, error) {
			inSpec, err := pinSpec("IncomingTranslationAttributes", in.IncomingTranslationAttributes)
			if err != nil {
				return nil, err
			}
			outSpec, err := pinSpec("OutgoingTranslationAttributes", in.OutgoingTranslationAttributes)
			if err != nil {
				return nil, err
			}
			inWK, err := pinWrapped("IncomingWrappedKey", in.IncomingWrappedKey)
			if err != nil {
				return nil, err
			}
			outWK, err := pinWrapped("OutgoingWrappedKey", in.OutgoingWrappedKey)
			if err != nil {
				return nil, err
			}
			req := ops.TranslatePinInput{
				IncomingKey: str(in.IncomingKeyIdentifier), OutgoingKey: str(in.OutgoingKeyIdentifier),
				Incoming: inSpec, Outgoing: outSpec, EncryptedPinBlock: str(in.EncryptedPinBlock),
				IncomingDukpt: pinDukpt(in.IncomingDukptAttributes), OutgoingDukpt: pinDukpt(in.OutgoingDukptAttributes),
				IncomingWrapped: inWK, OutgoingWrapped: outWK,
			}
			if a := in.IncomingAs2805Attributes; a != nil {
				req.IncomingAs2805 = &ops.PinAs2805{STAN: str(a.SystemTraceAuditNumber), Amount: str(a.TransactionAmount)}
			}
			r, err := o.TranslatePin(req)
			if err != nil {
				return nil, err
			}
			return &dp.TranslatePinDataOutput{PinBlock: &r.PinBlock, KeyArn: &r.KeyARN, KeyCheckValue: &r.KCV}, nil
		}),
		"GeneratePinData": handler(func(_ context.Context, in *dp.GeneratePinDataInput) (any, error) {
			wk, err := pinWrapped("EncryptionWrappedKey", in.EncryptionWrappedKey)
			if err != nil {
				return nil, err
			}
			req := ops.GeneratePinInput{
				GenerationKey: str(in.GenerationKeyIdentifier), EncryptionKey: str(in.EncryptionKeyIdentifier),
				PAN: str(in.PrimaryAccountNumber), Format: ops.PinBlockFormat(str(in.PinBlockFormat)), EncryptionWrapped: wk,
			}
			if in.PinDataLength != nil {
				req.PinLength = int(*in.PinDataLength)
			}
			switch a := in.GenerationAttributes; {
			case a.VisaPin != nil:
				req.Method, req.PVKI = ops.PinGenVisaPin, int(*a.VisaPin.PinVerificationKeyIndex)
			case a.VisaPinVerificationValue != nil:
				v := a.VisaPinVerificationValue
				req.Method, req.PVKI, req.EncryptedPinBlock = ops.PinGenVisaPinVerificationValue, int(*v.PinVerificationKeyIndex), str(v.EncryptedPinBlock)
			case a.Ibm3624PinOffset != nil:
				v := a.Ibm3624PinOffset
				req.Method, req.EncryptedPinBlock = ops.PinGenIbm3624PinOffset, str(v.EncryptedPinBlock)
				req.Ibm = ibm3624(v.DecimalizationTable, v.PinValidationDataPadCharacter, v.PinValidationData, nil)
			case a.Ibm3624NaturalPin != nil:
				v := a.Ibm3624NaturalPin
				req.Method = ops.PinGenIbm3624NaturalPin
				req.Ibm = ibm3624(v.DecimalizationTable, v.PinValidationDataPadCharacter, v.PinValidationData, nil)
			case a.Ibm3624RandomPin != nil:
				v := a.Ibm3624RandomPin
				req.Method = ops.PinGenIbm3624RandomPin
				req.Ibm = ibm3624(v.DecimalizationTable, v.PinValidationDataPadCharacter, v.PinValidationData, nil)
			case a.Ibm3624PinFromOffset != nil:
				v := a.Ibm3624PinFromOffset
				req.Method = ops.PinGenIbm3624PinFromOffset
				req.Ibm = ibm3624(v.DecimalizationTable, v.PinValidationDataPadCharacter, v.PinValidationData, v.PinOffset)
			}
			r, err := o.GeneratePin(req)
			if err != nil {
				return nil, err
			}
			return &dp.GeneratePinDataOutput{
				GenerationKeyArn: &r.GenerationKeyARN, GenerationKeyCheckValue: &r.GenerationKCV,
				EncryptionKeyArn: &r.EncryptionKeyARN, EncryptionKeyCheckValue: &r.EncryptionKCV,
				EncryptedPinBlock: &r.EncryptedPinBlock,
				PinData:           &dp.PinData{PinOffset: opt(r.PinOffset), VerificationValue: opt(r.VerificationValue)},
			}, nil
		}),
		"VerifyPinData": handler(func(_ context.Context, in *dp.VerifyPinDataInput) (any, error) {
			wk, err := pinWrapped("EncryptionWrappedKey", in.EncryptionWrappedKey)
			if err != nil {
				return nil, err
			}
			req := ops.VerifyPinInput{
				VerificationKey: str(in.VerificationKeyIdentifier), EncryptionKey: str(in.EncryptionKeyIdentifier),
				EncryptedPinBlock: str(in.EncryptedPinBlock), PAN: str(in.PrimaryAccountNumber),
				Format: ops.PinBlockFormat(str(in.PinBlockFormat)), EncryptionWrapped: wk,
			}
			if in.PinDataLength != nil {
				req.PinLength = int(*in.PinDataLength)
			}
			if d := in.DukptAttributes; d != nil {
				req.Dukpt = &ops.PinDukpt{KSN: str(d.KeySerialNumber), DerivationType: keyspec.Algorithm(str(d.DukptDerivationType))}
			}
			switch a := in.VerificationAttributes; {
			case a.VisaPin != nil:
				req.Visa = &ops.VisaPinCheck{PVKI: int(*a.VisaPin.PinVerificationKeyIndex), PVV: str(a.VisaPin.VerificationValue)}
			case a.Ibm3624Pin != nil:
				v := a.Ibm3624Pin
				p := ibm3624(v.DecimalizationTable, v.PinValidationDataPadCharacter, v.PinValidationData, v.PinOffset)
				req.Ibm = &p
			}
			r, err := o.VerifyPin(req)
			if err != nil {
				return nil, err
			}
			return &dp.VerifyPinDataOutput{
				VerificationKeyArn: &r.VerificationKeyARN, VerificationKeyCheckValue: &r.VerificationKCV,
				EncryptionKeyArn: &r.EncryptionKeyARN, EncryptionKeyCheckValue: &r.EncryptionKCV,
			}, nil
		}),
	}
}

func pinSpec(field string, t *dp.TranslationIsoFormats) (ops.PinBlockSpec, error) {
	switch {
	case t == nil:
		return ops.PinBlockSpec{}, fault.FieldInvalid(field, "is required")
	case t.IsoFormat0 != nil:
		return ops.PinBlockSpec{Format: ops.PinISOFormat0, PAN: str(t.IsoFormat0.PrimaryAccountNumber)}, nil
	case t.IsoFormat1 != nil:
		return ops.PinBlockSpec{Format: ops.PinISOFormat1}, nil
	case t.IsoFormat3 != nil:
		return ops.PinBlockSpec{Format: ops.PinISOFormat3, PAN: str(t.IsoFormat3.PrimaryAccountNumber)}, nil
	case t.IsoFormat4 != nil:
		return ops.PinBlockSpec{Format: ops.PinISOFormat4, PAN: str(t.IsoFormat4.PrimaryAccountNumber)}, nil
	case t.As2805Format0 != nil:
		return ops.PinBlockSpec{Format: ops.PinAS2805Format0, PAN: str(t.As2805Format0.PrimaryAccountNumber)}, nil
	}
	return ops.PinBlockSpec{}, fault.FieldInvalid(field, "one PIN block format is required")
}

func pinDukpt(d *dp.DukptDerivationAttributes) *ops.PinDukpt {
	if d == nil {
		return nil
	}
	return &ops.PinDukpt{KSN: str(d.KeySerialNumber), DerivationType: keyspec.Algorithm(str(d.DukptKeyDerivationType)),
		Variant: str(d.DukptKeyVariant)}
}

// pinWrapped maps a WrappedKey (either form; see wrappedKey).
func pinWrapped(m string, w *dp.WrappedKey) (*ops.PinWrappedKey, error) {
	return wrappedKey(m, w)
}

func ibm3624(table, pad, vdata, offset *string) ops.Ibm3624Params {
	return ops.Ibm3624Params{DecimalizationTable: str(table), PadCharacter: str(pad), ValidationData: str(vdata), PinOffset: str(offset)}
}
