package awsapi

import (
	"context"

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
			r, err := o.GenerateMacEmvPinChange(ops.EmvPinChangeInput{
				NewPinPEK: str(in.NewPinPekIdentifier), NewPinBlock: str(in.NewEncryptedPinBlock),
				PinBlockFormat:  ops.PinBlockFormat(str(in.PinBlockFormat)),
				IntegrityKey:    str(in.SecureMessagingIntegrityKeyIdentifier),
				ConfidentialKey: str(in.SecureMessagingConfidentialityKeyIdentifier),
				MessageData:     str(in.MessageData), Derivation: pinChangeDerivation(in.DerivationMethodAttributes),
			})
			if err != nil {
				return nil, err
			}
			out := &dp.GenerateMacEmvPinChangeOutput{
				NewPinPekArn: &r.NewPinPEK.ARN, NewPinPekKeyCheckValue: &r.NewPinPEK.KCV,
				SecureMessagingIntegrityKeyArn: &r.Integrity.ARN, SecureMessagingIntegrityKeyCheckValue: &r.Integrity.KCV,
				SecureMessagingConfidentialityKeyArn: &r.Confidential.ARN, SecureMessagingConfidentialityKeyCheckValue: &r.Confidential.KCV,
				Mac: &r.MAC, EncryptedPinBlock: &r.EncryptedPinData,
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

// pinChangeDerivation maps the DerivationMethodAttributes union.
func pinChangeDerivation(a *dp.DerivationMethodAttributes) ops.EmvPinChangeDerivation {
	var d ops.EmvPinChangeDerivation
	if a == nil {
		return d
	}
	cur := func(c *dp.CurrentPinAttributes) {
		if c != nil {
			d.CurrentPinPEK, d.CurrentPinBlock = str(c.CurrentPinPekIdentifier), str(c.CurrentEncryptedPinBlock)
		}
	}
	switch {
	case a.EmvCommon != nil:
		v := a.EmvCommon
		d = ops.EmvPinChangeDerivation{Scheme: emv.SchemeEMVCommon, MajorKeyMode: str(v.MajorKeyDerivationMode), PAN: str(v.PrimaryAccountNumber),
			PSN: str(v.PanSequenceNumber), ApplicationCryptogram: str(v.ApplicationCryptogram), Mode: str(v.Mode),
			PaddingType: str(v.PinBlockPaddingType), LengthPosition: str(v.PinBlockLengthPosition)}
	case a.Mastercard != nil:
		v := a.Mastercard
		d = ops.EmvPinChangeDerivation{Scheme: emv.SchemeMastercard, MajorKeyMode: str(v.MajorKeyDerivationMode), PAN: str(v.PrimaryAccountNumber),
			PSN: str(v.PanSequenceNumber), ApplicationCryptogram: str(v.ApplicationCryptogram)}
	case a.Emv2000 != nil:
		v := a.Emv2000
		d = ops.EmvPinChangeDerivation{Scheme: emv.SchemeEMV2000, MajorKeyMode: str(v.MajorKeyDerivationMode), PAN: str(v.PrimaryAccountNumber),
			PSN: str(v.PanSequenceNumber), ATC: str(v.ApplicationTransactionCounter)}
	case a.Visa != nil:
		v := a.Visa
		d = ops.EmvPinChangeDerivation{Scheme: emv.SchemeVisa, MajorKeyMode: str(v.MajorKeyDerivationMode), PAN: str(v.PrimaryAccountNumber),
			PSN: str(v.PanSequenceNumber), ATC: str(v.ApplicationTransactionCounter), ACKey: str(v.AuthorizationRequestKeyIdentifier)}
		cur(v.CurrentPinAttributes)
	case a.Amex != nil:
		v := a.Amex
		d = ops.EmvPinChangeDerivation{Scheme: emv.SchemeAmex, MajorKeyMode: str(v.MajorKeyDerivationMode), PAN: str(v.PrimaryAccountNumber),
			PSN: str(v.PanSequenceNumber), ATC: str(v.ApplicationTransactionCounter), ACKey: str(v.AuthorizationRequestKeyIdentifier)}
		cur(v.CurrentPinAttributes)
	}
	return d
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
