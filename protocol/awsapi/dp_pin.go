package awsapi

import (
	"context"

	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/ops"
	dp "payhsm/protocol/awsapi/dpshape"
)

// pinOperations maps TranslatePinData, GeneratePinData and VerifyPinData:
// hexadecimal members are decoded here, and the operations layer's faults
// are located at the members of the request they are about.
func (s *Server) pinOperations() map[string]operation {
	o := s.ops
	return map[string]operation{
		"TranslatePinData": handler(func(_ context.Context, in *dp.TranslatePinDataInput) (any, error) {
			r, err := func() (*ops.TranslatePinOutput, error) {
				req := ops.TranslatePinInput{IncomingKey: str(in.IncomingKeyIdentifier), OutgoingKey: str(in.OutgoingKeyIdentifier),
					Incoming: pinSpec(in.IncomingTranslationAttributes), Outgoing: pinSpec(in.OutgoingTranslationAttributes)}
				var err error
				if req.EncryptedPinBlock, err = unhex("EncryptedPinBlock", in.EncryptedPinBlock); err != nil {
					return nil, err
				}
				if req.IncomingDukpt, err = pinDukpt("IncomingDukptAttributes", in.IncomingDukptAttributes); err != nil {
					return nil, err
				}
				if req.OutgoingDukpt, err = pinDukpt("OutgoingDukptAttributes", in.OutgoingDukptAttributes); err != nil {
					return nil, err
				}
				if req.IncomingWrapped, err = wrappedKey("IncomingWrappedKey", in.IncomingWrappedKey); err != nil {
					return nil, err
				}
				if req.OutgoingWrapped, err = wrappedKey("OutgoingWrappedKey", in.OutgoingWrappedKey); err != nil {
					return nil, err
				}
				if a := in.IncomingAs2805Attributes; a != nil {
					req.IncomingAs2805 = &ops.PinAs2805{STAN: str(a.SystemTraceAuditNumber), Amount: str(a.TransactionAmount)}
				}
				return o.TranslatePin(req)
			}()
			if err != nil {
				return nil, locate(err, translatePinMembers(in))
			}
			return &dp.TranslatePinDataOutput{PinBlock: upperHex(r.PinBlock), KeyArn: &r.KeyARN, KeyCheckValue: &r.KCV}, nil
		}),
		"GeneratePinData": handler(func(_ context.Context, in *dp.GeneratePinDataInput) (any, error) {
			r, err := func() (*ops.GeneratePinOutput, error) {
				wk, err := wrappedKey("EncryptionWrappedKey", in.EncryptionWrappedKey)
				if err != nil {
					return nil, err
				}
				req := ops.GeneratePinInput{
					GenerationKey: str(in.GenerationKeyIdentifier), EncryptionKey: str(in.EncryptionKeyIdentifier),
					PAN: str(in.PrimaryAccountNumber), Format: opsEnum(in.PinBlockFormat, pinDataFormats, badEnum), EncryptionWrapped: wk,
				}
				if in.PinDataLength != nil {
					req.PinLength = int(*in.PinDataLength)
				}
				const g = "GenerationAttributes"
				switch a := in.GenerationAttributes; {
				case a.VisaPin != nil:
					req.Method, req.PVKI = ops.PinGenVisaPin, int(*a.VisaPin.PinVerificationKeyIndex)
				case a.VisaPinVerificationValue != nil:
					v := a.VisaPinVerificationValue
					req.Method, req.PVKI = ops.PinGenVisaPinVerificationValue, int(*v.PinVerificationKeyIndex)
					if req.EncryptedPinBlock, err = unhex(g+".VisaPinVerificationValue.EncryptedPinBlock", v.EncryptedPinBlock); err != nil {
						return nil, err
					}
				case a.Ibm3624PinOffset != nil:
					v := a.Ibm3624PinOffset
					req.Method = ops.PinGenIbm3624PinOffset
					req.Ibm = ibm3624(v.DecimalizationTable, v.PinValidationDataPadCharacter, v.PinValidationData, nil)
					if req.EncryptedPinBlock, err = unhex(g+".Ibm3624PinOffset.EncryptedPinBlock", v.EncryptedPinBlock); err != nil {
						return nil, err
					}
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
				return o.GeneratePin(req)
			}()
			if err != nil {
				return nil, locate(err, generatePinMembers(in))
			}
			return &dp.GeneratePinDataOutput{
				GenerationKeyArn: &r.GenerationKeyARN, GenerationKeyCheckValue: &r.GenerationKCV,
				EncryptionKeyArn: &r.EncryptionKeyARN, EncryptionKeyCheckValue: &r.EncryptionKCV,
				EncryptedPinBlock: upperHex(r.EncryptedPinBlock),
				PinData:           &dp.PinData{PinOffset: opt(r.PinOffset), VerificationValue: opt(r.VerificationValue)},
			}, nil
		}),
		"VerifyPinData": handler(func(_ context.Context, in *dp.VerifyPinDataInput) (any, error) {
			r, err := func() (*ops.VerifyPinOutput, error) {
				wk, err := wrappedKey("EncryptionWrappedKey", in.EncryptionWrappedKey)
				if err != nil {
					return nil, err
				}
				blk, err := unhex("EncryptedPinBlock", in.EncryptedPinBlock)
				if err != nil {
					return nil, err
				}
				req := ops.VerifyPinInput{
					VerificationKey: str(in.VerificationKeyIdentifier), EncryptionKey: str(in.EncryptionKeyIdentifier),
					EncryptedPinBlock: blk, PAN: str(in.PrimaryAccountNumber),
					Format: opsEnum(in.PinBlockFormat, pinDataFormats, badEnum), EncryptionWrapped: wk,
				}
				if in.PinDataLength != nil {
					req.PinLength = int(*in.PinDataLength)
				}
				if d := in.DukptAttributes; d != nil {
					ksn, err := unhex("DukptAttributes.KeySerialNumber", d.KeySerialNumber)
					if err != nil {
						return nil, err
					}
					req.Dukpt = &ops.PinDukpt{KSN: ksn, DerivationType: keyspec.Algorithm(str(d.DukptDerivationType))}
				}
				switch a := in.VerificationAttributes; {
				case a.VisaPin != nil:
					req.Visa = &ops.VisaPinCheck{PVKI: int(*a.VisaPin.PinVerificationKeyIndex), PVV: str(a.VisaPin.VerificationValue)}
				case a.Ibm3624Pin != nil:
					v := a.Ibm3624Pin
					p := ibm3624(v.DecimalizationTable, v.PinValidationDataPadCharacter, v.PinValidationData, v.PinOffset)
					req.Ibm = &p
				}
				return o.VerifyPin(req)
			}()
			if err != nil {
				return nil, locate(err, verifyPinMembers(in))
			}
			return &dp.VerifyPinDataOutput{
				VerificationKeyArn: &r.VerificationKeyARN, VerificationKeyCheckValue: &r.VerificationKCV,
				EncryptionKeyArn: &r.EncryptionKeyARN, EncryptionKeyCheckValue: &r.EncryptionKCV,
			}, nil
		}),
	}
}

// pinSpec maps a TranslationIsoFormats union (the model has checked that
// exactly one member is set).
func pinSpec(t *dp.TranslationIsoFormats) ops.PinBlockSpec {
	switch {
	case t == nil:
	case t.IsoFormat0 != nil:
		return ops.PinBlockSpec{Format: ops.PinFormatISO0, PAN: str(t.IsoFormat0.PrimaryAccountNumber)}
	case t.IsoFormat1 != nil:
		return ops.PinBlockSpec{Format: ops.PinFormatISO1}
	case t.IsoFormat3 != nil:
		return ops.PinBlockSpec{Format: ops.PinFormatISO3, PAN: str(t.IsoFormat3.PrimaryAccountNumber)}
	case t.IsoFormat4 != nil:
		return ops.PinBlockSpec{Format: ops.PinFormatISO4, PAN: str(t.IsoFormat4.PrimaryAccountNumber)}
	case t.As2805Format0 != nil:
		return ops.PinBlockSpec{Format: ops.PinFormatAS2805, PAN: str(t.As2805Format0.PrimaryAccountNumber)}
	}
	return ops.PinBlockSpec{}
}

// pinSpecMember names the set member of a TranslationIsoFormats union and
// whether it has a PrimaryAccountNumber.
func pinSpecMember(t *dp.TranslationIsoFormats) (string, bool) {
	switch {
	case t == nil:
	case t.IsoFormat0 != nil:
		return "IsoFormat0", true
	case t.IsoFormat1 != nil:
		return "IsoFormat1", false
	case t.IsoFormat3 != nil:
		return "IsoFormat3", true
	case t.IsoFormat4 != nil:
		return "IsoFormat4", true
	case t.As2805Format0 != nil:
		return "As2805Format0", true
	}
	return "", false
}

// pinDukpt maps DukptDerivationAttributes (member m).
func pinDukpt(m string, d *dp.DukptDerivationAttributes) (*ops.PinDukpt, error) {
	if d == nil {
		return nil, nil
	}
	ksn, err := unhex(m+".KeySerialNumber", d.KeySerialNumber)
	if err != nil {
		return nil, err
	}
	return &ops.PinDukpt{KSN: ksn, DerivationType: keyspec.Algorithm(str(d.DukptKeyDerivationType)),
		Variant: opsEnum(d.DukptKeyVariant, dukptVariants, badEnum)}, nil
}

func ibm3624(table, pad, vdata, offset *string) ops.Ibm3624Params {
	p := ops.Ibm3624Params{DecimalizationTable: str(table), ValidationData: str(vdata), PinOffset: str(offset)}
	if c := str(pad); len(c) == 1 {
		p.PadCharacter = c[0]
	}
	return p
}

// translatePinMembers locates the faults of TranslatePinData by side.
func translatePinMembers(in *dp.TranslatePinDataInput) memberPath {
	return func(side fault.Side, subj fault.Subject) string {
		prefix, attrs, wk := "Incoming", in.IncomingTranslationAttributes, in.IncomingWrappedKey
		if side == fault.SideOutgoing {
			prefix, attrs, wk = "Outgoing", in.OutgoingTranslationAttributes, in.OutgoingWrappedKey
		}
		switch subj {
		case fault.SubjectPinEncryptionKey:
			return prefix + "KeyIdentifier"
		case fault.SubjectPinBlock:
			return "EncryptedPinBlock"
		case fault.SubjectPinBlockFormat:
			return prefix + "TranslationAttributes"
		case fault.SubjectPAN:
			m, hasPAN := pinSpecMember(attrs)
			if !hasPAN {
				return join(prefix+"TranslationAttributes", m)
			}
			return join(prefix+"TranslationAttributes", m, "PrimaryAccountNumber")
		case fault.SubjectKeySerialNumber, fault.SubjectDukptDerivationType, fault.SubjectDukptVariant:
			return join(prefix+"DukptAttributes", leafMember(fault.SideNone, subj))
		case fault.SubjectSTAN, fault.SubjectTransactionAmount:
			return join("IncomingAs2805Attributes", leafMember(fault.SideNone, subj))
		}
		return wrappedKeyMember(prefix+"WrappedKey", wk, subj)
	}
}

// pinMethodPath names a subject of the PIN method union attrs (member m).
func pinMethodPath(attrs, m string, subj fault.Subject) string {
	switch subj {
	case fault.SubjectPinMethod:
		return attrs
	case fault.SubjectPinBlock, fault.SubjectDecimalizationTable, fault.SubjectPinValidationData, fault.SubjectPadCharacter,
		fault.SubjectPinOffset, fault.SubjectPVKI:
		return join(attrs, m, leafMember(fault.SideNone, subj))
	}
	return ""
}

// generatePinMembers locates the faults of GeneratePinData.
func generatePinMembers(in *dp.GeneratePinDataInput) memberPath {
	return func(_ fault.Side, subj fault.Subject) string {
		switch subj {
		case fault.SubjectPinVerificationKey:
			return "GenerationKeyIdentifier"
		case fault.SubjectPinEncryptionKey:
			return "EncryptionKeyIdentifier"
		case fault.SubjectPAN, fault.SubjectPinBlockFormat, fault.SubjectPinLength:
			return leafMember(fault.SideNone, subj)
		}
		var m string
		switch a := in.GenerationAttributes; {
		case a == nil:
		case a.VisaPin != nil:
			m = "VisaPin"
		case a.VisaPinVerificationValue != nil:
			m = "VisaPinVerificationValue"
		case a.Ibm3624PinOffset != nil:
			m = "Ibm3624PinOffset"
		case a.Ibm3624NaturalPin != nil:
			m = "Ibm3624NaturalPin"
		case a.Ibm3624RandomPin != nil:
			m = "Ibm3624RandomPin"
		case a.Ibm3624PinFromOffset != nil:
			m = "Ibm3624PinFromOffset"
		}
		if p := pinMethodPath("GenerationAttributes", m, subj); p != "" {
			return p
		}
		return wrappedKeyMember("EncryptionWrappedKey", in.EncryptionWrappedKey, subj)
	}
}

// verifyPinMembers locates the faults of VerifyPinData.
func verifyPinMembers(in *dp.VerifyPinDataInput) memberPath {
	return func(_ fault.Side, subj fault.Subject) string {
		switch subj {
		case fault.SubjectPinVerificationKey:
			return "VerificationKeyIdentifier"
		case fault.SubjectPinEncryptionKey:
			return "EncryptionKeyIdentifier"
		case fault.SubjectPinBlock, fault.SubjectPAN, fault.SubjectPinBlockFormat, fault.SubjectPinLength:
			return leafMember(fault.SideNone, subj)
		case fault.SubjectKeySerialNumber:
			return "DukptAttributes.KeySerialNumber"
		case fault.SubjectDukptDerivationType:
			return "DukptAttributes.DukptDerivationType"
		}
		var m string
		switch a := in.VerificationAttributes; {
		case a == nil:
		case a.VisaPin != nil:
			m = "VisaPin"
		case a.Ibm3624Pin != nil:
			m = "Ibm3624Pin"
		}
		if p := pinMethodPath("VerificationAttributes", m, subj); p != "" {
			return p
		}
		return wrappedKeyMember("EncryptionWrappedKey", in.EncryptionWrappedKey, subj)
	}
}
