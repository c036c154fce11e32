package awsapi

import (
	"context"

	"payhsm/fault"
	"payhsm/hsm/emv"
	"payhsm/ops"
	dp "payhsm/protocol/awsapi/dpshape"
)

// cardOperations maps the card-verification and EMV cryptogram operations.
func (s *Server) cardOperations() map[string]operation {
	o := s.ops
	return map[string]operation{
		"GenerateCardValidationData": handler(func(_ context.Context, in *dp.GenerateCardValidationDataInput) (any, error) {
			a := in.GenerationAttributes
			ci := cardInput(str(in.KeyIdentifier), str(in.PrimaryAccountNumber), "GenerationAttributes", &dp.CardVerificationAttributes{
				AmexCardSecurityCodeVersion1: a.AmexCardSecurityCodeVersion1, AmexCardSecurityCodeVersion2: a.AmexCardSecurityCodeVersion2,
				CardVerificationValue1: a.CardVerificationValue1, CardVerificationValue2: a.CardVerificationValue2,
				CardHolderVerificationValue: a.CardHolderVerificationValue, DynamicCardVerificationCode: a.DynamicCardVerificationCode,
				DynamicCardVerificationValue: a.DynamicCardVerificationValue,
			})
			if in.ValidationDataLength != nil {
				ci.Length = int(*in.ValidationDataLength)
			}
			r, err := o.GenerateCardValidationData(ci)
			if err != nil {
				return nil, err
			}
			return &dp.GenerateCardValidationDataOutput{KeyArn: &r.KeyARN, KeyCheckValue: &r.KCV, ValidationData: &r.Value}, nil
		}),
		"VerifyCardValidationData": handler(func(_ context.Context, in *dp.VerifyCardValidationDataInput) (any, error) {
			ci := cardInput(str(in.KeyIdentifier), str(in.PrimaryAccountNumber), "VerificationAttributes", in.VerificationAttributes)
			r, err := o.VerifyCardValidationData(ci, str(in.ValidationData))
			if err != nil {
				return nil, err
			}
			return &dp.VerifyCardValidationDataOutput{KeyArn: &r.KeyARN, KeyCheckValue: &r.KCV}, nil
		}),
		"GenerateAuthRequestCryptogram": handler(func(_ context.Context, in *dp.GenerateAuthRequestCryptogramInput) (any, error) {
			r, err := o.GenerateAuthRequestCryptogram(authInput(str(in.KeyIdentifier), str(in.TransactionData),
				str(in.MajorKeyDerivationMode), in.SessionKeyDerivationAttributes))
			if err != nil {
				return nil, err
			}
			return &dp.GenerateAuthRequestCryptogramOutput{KeyArn: &r.KeyARN, KeyCheckValue: &r.KCV, AuthRequestCryptogram: &r.Value}, nil
		}),
		"VerifyAuthRequestCryptogram": handler(func(_ context.Context, in *dp.VerifyAuthRequestCryptogramInput) (any, error) {
			var arpc *ops.ARPCRequest
			if a := in.AuthResponseAttributes; a != nil {
				switch {
				case a.ArpcMethod1 != nil:
					arpc = &ops.ARPCRequest{Method: 1, AuthResponseCode: str(a.ArpcMethod1.AuthResponseCode)}
				case a.ArpcMethod2 != nil:
					arpc = &ops.ARPCRequest{Method: 2, CardStatusUpdate: str(a.ArpcMethod2.CardStatusUpdate),
						ProprietaryAuthenticationData: str(a.ArpcMethod2.ProprietaryAuthenticationData)}
				}
			}
			r, err := o.VerifyAuthRequestCryptogram(authInput(str(in.KeyIdentifier), str(in.TransactionData),
				str(in.MajorKeyDerivationMode), in.SessionKeyDerivationAttributes), str(in.AuthRequestCryptogram), arpc)
			if err != nil {
				return nil, err
			}
			return &dp.VerifyAuthRequestCryptogramOutput{KeyArn: &r.KeyARN, KeyCheckValue: &r.KCV, AuthResponseValue: opt(r.Value)}, nil
		}),
		"GenerateMacEmvPinChange": handler(func(_ context.Context, in *dp.GenerateMacEmvPinChangeInput) (any, error) {
			r, err := func() (*ops.EmvPinChangeOutput, error) {
				blk, err := unhex("NewEncryptedPinBlock", in.NewEncryptedPinBlock)
				if err != nil {
					return nil, err
				}
				msg, err := unhex("MessageData", in.MessageData)
				if err != nil {
					return nil, err
				}
				d, err := pinChangeDerivation(in.DerivationMethodAttributes)
				if err != nil {
					return nil, err
				}
				return o.GenerateMacEmvPinChange(ops.EmvPinChangeInput{
					NewPinPEK: str(in.NewPinPekIdentifier), NewPinBlock: blk,
					PinBlockFormat:  opsEnum(in.PinBlockFormat, pinChangeFormats, badEnum),
					IntegrityKey:    str(in.SecureMessagingIntegrityKeyIdentifier),
					ConfidentialKey: str(in.SecureMessagingConfidentialityKeyIdentifier),
					MessageData:     msg, Derivation: d,
				})
			}()
			if err != nil {
				return nil, locate(err, pinChangeMembers(in.DerivationMethodAttributes))
			}
			out := &dp.GenerateMacEmvPinChangeOutput{
				NewPinPekArn: &r.NewPinPEK.ARN, NewPinPekKeyCheckValue: &r.NewPinPEK.KCV,
				SecureMessagingIntegrityKeyArn: &r.Integrity.ARN, SecureMessagingIntegrityKeyCheckValue: &r.Integrity.KCV,
				SecureMessagingConfidentialityKeyArn: &r.Confidential.ARN, SecureMessagingConfidentialityKeyCheckValue: &r.Confidential.KCV,
				Mac: upperHex(r.MAC), EncryptedPinBlock: upperHex(r.EncryptedPinData),
			}
			if r.AC != nil {
				out.VisaAmexDerivationOutputs = &dp.VisaAmexDerivationOutputs{AuthorizationRequestKeyArn: &r.AC.ARN, AuthorizationRequestKeyCheckValue: &r.AC.KCV}
				if r.CurrentPinPEK != nil {
					out.VisaAmexDerivationOutputs.CurrentPinPekArn = &r.CurrentPinPEK.ARN
					out.VisaAmexDerivationOutputs.CurrentPinPekKeyCheckValue = &r.CurrentPinPEK.KCV
				}
			}
			return out, nil
		}),
	}
}

// pinChangeMember is the set member of the DerivationMethodAttributes union.
func pinChangeMember(a *dp.DerivationMethodAttributes) string {
	switch {
	case a == nil:
	case a.EmvCommon != nil:
		return "EmvCommon"
	case a.Mastercard != nil:
		return "Mastercard"
	case a.Emv2000 != nil:
		return "Emv2000"
	case a.Visa != nil:
		return "Visa"
	case a.Amex != nil:
		return "Amex"
	}
	return ""
}

// pinChangeDerivation maps the DerivationMethodAttributes union.
func pinChangeDerivation(a *dp.DerivationMethodAttributes) (ops.EmvPinChangeDerivation, error) {
	var d ops.EmvPinChangeDerivation
	m := "DerivationMethodAttributes." + pinChangeMember(a)
	var err error
	cur := func(c *dp.CurrentPinAttributes) error {
		if c != nil {
			d.CurrentPinPEK = str(c.CurrentPinPekIdentifier)
			d.CurrentPinBlock, err = unhex(m+".CurrentPinAttributes.CurrentEncryptedPinBlock", c.CurrentEncryptedPinBlock)
		}
		return err
	}
	cryptogram := func(s *string) ([]byte, error) { return unhex(m+".ApplicationCryptogram", s) }
	atc := func(s *string) ([]byte, error) { return unhex(m+".ApplicationTransactionCounter", s) }
	switch {
	case a == nil:
	case a.EmvCommon != nil:
		v := a.EmvCommon
		d = ops.EmvPinChangeDerivation{Scheme: ops.EmvCommon, MajorKeyMode: opsEnum(v.MajorKeyDerivationMode, majorKeyOptions, badEnum),
			PAN: str(v.PrimaryAccountNumber), PSN: str(v.PanSequenceNumber), Mode: opsEnum(v.Mode, emvModes, badEnum),
			Padding: opsEnum(v.PinBlockPaddingType, pinDataPaddings, badEnum), LengthPosition: opsEnum(v.PinBlockLengthPosition, pinLengthPositions, badEnum)}
		d.ApplicationCryptogram, err = cryptogram(v.ApplicationCryptogram)
	case a.Mastercard != nil:
		v := a.Mastercard
		d = ops.EmvPinChangeDerivation{Scheme: ops.EmvMastercard, MajorKeyMode: opsEnum(v.MajorKeyDerivationMode, majorKeyOptions, badEnum),
			PAN: str(v.PrimaryAccountNumber), PSN: str(v.PanSequenceNumber)}
		d.ApplicationCryptogram, err = cryptogram(v.ApplicationCryptogram)
	case a.Emv2000 != nil:
		v := a.Emv2000
		d = ops.EmvPinChangeDerivation{Scheme: ops.EmvEMV2000, MajorKeyMode: opsEnum(v.MajorKeyDerivationMode, majorKeyOptions, badEnum),
			PAN: str(v.PrimaryAccountNumber), PSN: str(v.PanSequenceNumber)}
		d.ATC, err = atc(v.ApplicationTransactionCounter)
	case a.Visa != nil:
		v := a.Visa
		d = ops.EmvPinChangeDerivation{Scheme: ops.EmvVisa, MajorKeyMode: opsEnum(v.MajorKeyDerivationMode, majorKeyOptions, badEnum),
			PAN: str(v.PrimaryAccountNumber), PSN: str(v.PanSequenceNumber), ACKey: str(v.AuthorizationRequestKeyIdentifier)}
		if d.ATC, err = atc(v.ApplicationTransactionCounter); err == nil {
			err = cur(v.CurrentPinAttributes)
		}
	case a.Amex != nil:
		v := a.Amex
		d = ops.EmvPinChangeDerivation{Scheme: ops.EmvAmex, MajorKeyMode: opsEnum(v.MajorKeyDerivationMode, majorKeyOptions, badEnum),
			PAN: str(v.PrimaryAccountNumber), PSN: str(v.PanSequenceNumber), ACKey: str(v.AuthorizationRequestKeyIdentifier)}
		if d.ATC, err = atc(v.ApplicationTransactionCounter); err == nil {
			err = cur(v.CurrentPinAttributes)
		}
	}
	return d, err
}

// pinChangeMembers locates the faults of GenerateMacEmvPinChange.
func pinChangeMembers(a *dp.DerivationMethodAttributes) memberPath {
	return func(_ fault.Side, subj fault.Subject) string {
		const d = "DerivationMethodAttributes"
		m := join(d, pinChangeMember(a))
		switch subj {
		case fault.SubjectPinEncryptionKey:
			return "NewPinPekIdentifier"
		case fault.SubjectPinBlock:
			return "NewEncryptedPinBlock"
		case fault.SubjectIntegrityKey:
			return "SecureMessagingIntegrityKeyIdentifier"
		case fault.SubjectConfidentialityKey:
			return "SecureMessagingConfidentialityKeyIdentifier"
		case fault.SubjectPinChangeDerivation:
			return d
		case fault.SubjectAuthRequestKey:
			return m + ".AuthorizationRequestKeyIdentifier"
		case fault.SubjectCurrentPin:
			return m + ".CurrentPinAttributes"
		case fault.SubjectCurrentPinKey:
			return m + ".CurrentPinAttributes.CurrentPinPekIdentifier"
		case fault.SubjectCurrentPinBlock:
			return m + ".CurrentPinAttributes.CurrentEncryptedPinBlock"
		case fault.SubjectPinBlockPadding:
			return m + ".PinBlockPaddingType"
		case fault.SubjectPinBlockLengthPosition:
			return m + ".PinBlockLengthPosition"
		case fault.SubjectMajorKeyDerivationMode, fault.SubjectPAN, fault.SubjectPSN, fault.SubjectApplicationCryptogram,
			fault.SubjectATC, fault.SubjectCipherMode:
			return m + "." + leafMember(fault.SideNone, subj)
		}
		return ""
	}
}

// cardInput maps the card-attributes union (generation attributes are
// mapped onto the verification union, a superset).
func cardInput(key, pan, field string, a *dp.CardVerificationAttributes) ops.CardValidationInput {
	in := ops.CardValidationInput{KeyIdentifier: key, PAN: pan, Field: field}
	switch {
	case a.CardVerificationValue1 != nil:
		in.Kind, in.ExpiryDate, in.ServiceCode = ops.CardCVV1, str(a.CardVerificationValue1.CardExpiryDate), str(a.CardVerificationValue1.ServiceCode)
	case a.CardVerificationValue2 != nil:
		in.Kind, in.ExpiryDate = ops.CardCVV2, str(a.CardVerificationValue2.CardExpiryDate)
	case a.CardHolderVerificationValue != nil:
		v := a.CardHolderVerificationValue
		in.Kind, in.UN, in.PSN, in.ATC = ops.CardHolderVerification, str(v.UnpredictableNumber), str(v.PanSequenceNumber), str(v.ApplicationTransactionCounter)
	case a.AmexCardSecurityCodeVersion1 != nil:
		in.Kind, in.ExpiryDate = ops.CardAmexCSC1, str(a.AmexCardSecurityCodeVersion1.CardExpiryDate)
	case a.AmexCardSecurityCodeVersion2 != nil:
		v := a.AmexCardSecurityCodeVersion2
		in.Kind, in.ExpiryDate, in.ServiceCode = ops.CardAmexCSC2, str(v.CardExpiryDate), str(v.ServiceCode)
	case a.DynamicCardVerificationCode != nil:
		v := a.DynamicCardVerificationCode
		in.Kind, in.UN, in.PSN, in.ATC, in.TrackData = ops.CardDynamicCode, str(v.UnpredictableNumber), str(v.PanSequenceNumber),
			str(v.ApplicationTransactionCounter), str(v.TrackData)
	case a.DynamicCardVerificationValue != nil:
		v := a.DynamicCardVerificationValue
		in.Kind, in.PSN, in.ExpiryDate, in.ServiceCode, in.ATC = ops.CardDynamicValue, str(v.PanSequenceNumber), str(v.CardExpiryDate),
			str(v.ServiceCode), str(v.ApplicationTransactionCounter)
	case a.DiscoverDynamicCardVerificationCode != nil:
		v := a.DiscoverDynamicCardVerificationCode
		in.Kind, in.ExpiryDate, in.UN, in.ATC = ops.CardDiscoverDynamicCode, str(v.CardExpiryDate), str(v.UnpredictableNumber),
			str(v.ApplicationTransactionCounter)
	}
	return in
}

// authInput maps an ARQC request and its SessionKeyDerivation union.
func authInput(key, data, mode string, d *dp.SessionKeyDerivation) ops.AuthRequestCryptogramInput {
	in := ops.AuthRequestCryptogramInput{KeyIdentifier: key, TransactionData: data, MajorKeyMode: mode}
	const f = "SessionKeyDerivationAttributes."
	switch {
	case d.EmvCommon != nil:
		in.Session = ops.EMVSession{Scheme: emv.SchemeEMVCommon, PAN: str(d.EmvCommon.PrimaryAccountNumber), PSN: str(d.EmvCommon.PanSequenceNumber),
			ATC: str(d.EmvCommon.ApplicationTransactionCounter), Field: f + "EmvCommon"}
	case d.Mastercard != nil:
		in.Session = ops.EMVSession{Scheme: emv.SchemeMastercard, PAN: str(d.Mastercard.PrimaryAccountNumber), PSN: str(d.Mastercard.PanSequenceNumber),
			ATC: str(d.Mastercard.ApplicationTransactionCounter), UN: str(d.Mastercard.UnpredictableNumber), Field: f + "Mastercard"}
	case d.Emv2000 != nil:
		in.Session = ops.EMVSession{Scheme: emv.SchemeEMV2000, PAN: str(d.Emv2000.PrimaryAccountNumber), PSN: str(d.Emv2000.PanSequenceNumber),
			ATC: str(d.Emv2000.ApplicationTransactionCounter), Field: f + "Emv2000"}
	case d.Amex != nil:
		in.Session = ops.EMVSession{Scheme: emv.SchemeAmex, PAN: str(d.Amex.PrimaryAccountNumber), PSN: str(d.Amex.PanSequenceNumber), Field: f + "Amex"}
	case d.Visa != nil:
		in.Session = ops.EMVSession{Scheme: emv.SchemeVisa, PAN: str(d.Visa.PrimaryAccountNumber), PSN: str(d.Visa.PanSequenceNumber), Field: f + "Visa"}
	case d.UnionPay != nil:
		in.Session = ops.EMVSession{Scheme: emv.SchemeUnionPay, PAN: str(d.UnionPay.PrimaryAccountNumber), PSN: str(d.UnionPay.PanSequenceNumber),
			ATC: str(d.UnionPay.ApplicationTransactionCounter), Field: f + "UnionPay"}
	}
	return in
}
