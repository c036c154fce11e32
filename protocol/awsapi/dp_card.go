package awsapi

import (
	"context"

	"payhsm/fault"
	"payhsm/ops"
	dp "payhsm/protocol/awsapi/dpshape"
)

// cardOperations maps the card-verification and EMV cryptogram operations:
// hexadecimal members are decoded here, and the operations layer's faults
// are located at the members of the request they are about.
func (s *Server) cardOperations() map[string]operation {
	o := s.ops
	return map[string]operation{
		"GenerateCardValidationData": handler(func(_ context.Context, in *dp.GenerateCardValidationDataInput) (any, error) {
			const attrs = "GenerationAttributes"
			a := in.GenerationAttributes
			v := &dp.CardVerificationAttributes{
				AmexCardSecurityCodeVersion1: a.AmexCardSecurityCodeVersion1, AmexCardSecurityCodeVersion2: a.AmexCardSecurityCodeVersion2,
				CardVerificationValue1: a.CardVerificationValue1, CardVerificationValue2: a.CardVerificationValue2,
				CardHolderVerificationValue: a.CardHolderVerificationValue, DynamicCardVerificationCode: a.DynamicCardVerificationCode,
				DynamicCardVerificationValue: a.DynamicCardVerificationValue,
			}
			r, err := func() (*ops.CryptoResult, error) {
				ci, err := cardInput(str(in.KeyIdentifier), str(in.PrimaryAccountNumber), attrs, v)
				if err != nil {
					return nil, err
				}
				if in.ValidationDataLength != nil {
					ci.Length = int(*in.ValidationDataLength)
				}
				return o.GenerateCardValidationData(ci)
			}()
			if err != nil {
				return nil, locate(err, cardMembers(attrs, v))
			}
			return &dp.GenerateCardValidationDataOutput{KeyArn: &r.KeyARN, KeyCheckValue: &r.KCV, ValidationData: &r.Value}, nil
		}),
		"VerifyCardValidationData": handler(func(_ context.Context, in *dp.VerifyCardValidationDataInput) (any, error) {
			const attrs = "VerificationAttributes"
			r, err := func() (*ops.CryptoResult, error) {
				ci, err := cardInput(str(in.KeyIdentifier), str(in.PrimaryAccountNumber), attrs, in.VerificationAttributes)
				if err != nil {
					return nil, err
				}
				return o.VerifyCardValidationData(ci, str(in.ValidationData))
			}()
			if err != nil {
				return nil, locate(err, cardMembers(attrs, in.VerificationAttributes))
			}
			return &dp.VerifyCardValidationDataOutput{KeyArn: &r.KeyARN, KeyCheckValue: &r.KCV}, nil
		}),
		"GenerateAuthRequestCryptogram": handler(func(_ context.Context, in *dp.GenerateAuthRequestCryptogramInput) (any, error) {
			r, err := func() (*ops.CryptogramResult, error) {
				ai, err := authInput(str(in.KeyIdentifier), in.TransactionData, in.MajorKeyDerivationMode, in.SessionKeyDerivationAttributes)
				if err != nil {
					return nil, err
				}
				return o.GenerateAuthRequestCryptogram(ai)
			}()
			if err != nil {
				return nil, locate(err, authMembers(in.SessionKeyDerivationAttributes, nil))
			}
			return &dp.GenerateAuthRequestCryptogramOutput{KeyArn: &r.KeyARN, KeyCheckValue: &r.KCV, AuthRequestCryptogram: upperHex(r.Cryptogram)}, nil
		}),
		"VerifyAuthRequestCryptogram": handler(func(_ context.Context, in *dp.VerifyAuthRequestCryptogramInput) (any, error) {
			r, err := func() (*ops.CryptogramResult, error) {
				ai, err := authInput(str(in.KeyIdentifier), in.TransactionData, in.MajorKeyDerivationMode, in.SessionKeyDerivationAttributes)
				if err != nil {
					return nil, err
				}
				arqc, err := unhex("AuthRequestCryptogram", in.AuthRequestCryptogram)
				if err != nil {
					return nil, err
				}
				var arpc *ops.ARPCRequest
				if a := in.AuthResponseAttributes; a != nil {
					switch {
					case a.ArpcMethod1 != nil:
						arpc = &ops.ARPCRequest{Method: 1}
						if arpc.AuthResponseCode, err = unhex("AuthResponseAttributes.ArpcMethod1.AuthResponseCode", a.ArpcMethod1.AuthResponseCode); err != nil {
							return nil, err
						}
					case a.ArpcMethod2 != nil:
						const m = "AuthResponseAttributes.ArpcMethod2"
						arpc = &ops.ARPCRequest{Method: 2}
						if arpc.CardStatusUpdate, err = unhex(m+".CardStatusUpdate", a.ArpcMethod2.CardStatusUpdate); err != nil {
							return nil, err
						}
						if arpc.ProprietaryAuthenticationData, err = unhex(m+".ProprietaryAuthenticationData", a.ArpcMethod2.ProprietaryAuthenticationData); err != nil {
							return nil, err
						}
					}
				}
				return o.VerifyAuthRequestCryptogram(ai, arqc, arpc)
			}()
			if err != nil {
				return nil, locate(err, authMembers(in.SessionKeyDerivationAttributes, in.AuthResponseAttributes))
			}
			out := &dp.VerifyAuthRequestCryptogramOutput{KeyArn: &r.KeyARN, KeyCheckValue: &r.KCV}
			if r.Cryptogram != nil {
				out.AuthResponseValue = upperHex(r.Cryptogram)
			}
			return out, nil
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

// atcHex decodes an ApplicationTransactionCounter member at path: 1 to 4
// hexadecimal digits, right-justified in 2 bytes (absent: nil).
func atcHex(path string, p *string) ([]byte, error) {
	s := str(p)
	if s == "" {
		return nil, nil
	}
	if len(s) > 4 {
		return nil, invalid(path, "must be 1 to 4 hexadecimal digits")
	}
	s = "0000"[len(s):] + s
	return unhex(path, &s)
}

// cardMember is the set member of the card validation union.
func cardMember(a *dp.CardVerificationAttributes) string {
	switch {
	case a == nil:
	case a.CardVerificationValue1 != nil:
		return "CardVerificationValue1"
	case a.CardVerificationValue2 != nil:
		return "CardVerificationValue2"
	case a.CardHolderVerificationValue != nil:
		return "CardHolderVerificationValue"
	case a.AmexCardSecurityCodeVersion1 != nil:
		return "AmexCardSecurityCodeVersion1"
	case a.AmexCardSecurityCodeVersion2 != nil:
		return "AmexCardSecurityCodeVersion2"
	case a.DynamicCardVerificationCode != nil:
		return "DynamicCardVerificationCode"
	case a.DynamicCardVerificationValue != nil:
		return "DynamicCardVerificationValue"
	case a.DiscoverDynamicCardVerificationCode != nil:
		return "DiscoverDynamicCardVerificationCode"
	}
	return ""
}

// cardInput maps the card-attributes union, request member attrs
// (generation attributes are mapped onto the verification union, a
// superset).
func cardInput(key, pan, attrs string, a *dp.CardVerificationAttributes) (ops.CardValidationInput, error) {
	in := ops.CardValidationInput{KeyIdentifier: key, PAN: pan}
	m := join(attrs, cardMember(a))
	var un, atc, track *string
	switch {
	case a.CardVerificationValue1 != nil:
		in.Kind, in.ExpiryDate, in.ServiceCode = ops.CardCVV1, str(a.CardVerificationValue1.CardExpiryDate), str(a.CardVerificationValue1.ServiceCode)
	case a.CardVerificationValue2 != nil:
		in.Kind, in.ExpiryDate = ops.CardCVV2, str(a.CardVerificationValue2.CardExpiryDate)
	case a.CardHolderVerificationValue != nil:
		v := a.CardHolderVerificationValue
		in.Kind, in.PSN, un, atc = ops.CardHolderVerification, str(v.PanSequenceNumber), v.UnpredictableNumber, v.ApplicationTransactionCounter
	case a.AmexCardSecurityCodeVersion1 != nil:
		in.Kind, in.ExpiryDate = ops.CardAmexCSC1, str(a.AmexCardSecurityCodeVersion1.CardExpiryDate)
	case a.AmexCardSecurityCodeVersion2 != nil:
		v := a.AmexCardSecurityCodeVersion2
		in.Kind, in.ExpiryDate, in.ServiceCode = ops.CardAmexCSC2, str(v.CardExpiryDate), str(v.ServiceCode)
	case a.DynamicCardVerificationCode != nil:
		v := a.DynamicCardVerificationCode
		in.Kind, in.PSN, un, atc, track = ops.CardDynamicCode, str(v.PanSequenceNumber), v.UnpredictableNumber, v.ApplicationTransactionCounter, v.TrackData
	case a.DynamicCardVerificationValue != nil:
		v := a.DynamicCardVerificationValue
		in.Kind, in.PSN, in.ExpiryDate, in.ServiceCode, atc = ops.CardDynamicValue, str(v.PanSequenceNumber), str(v.CardExpiryDate),
			str(v.ServiceCode), v.ApplicationTransactionCounter
	case a.DiscoverDynamicCardVerificationCode != nil:
		v := a.DiscoverDynamicCardVerificationCode
		in.Kind, in.ExpiryDate, un, atc = ops.CardDiscoverDynamicCode, str(v.CardExpiryDate), v.UnpredictableNumber, v.ApplicationTransactionCounter
	}
	var err error
	if in.UN, err = unhex(m+".UnpredictableNumber", un); err != nil {
		return in, err
	}
	if in.ATC, err = atcHex(m+".ApplicationTransactionCounter", atc); err != nil {
		return in, err
	}
	in.TrackData, err = unhex(m+".TrackData", track)
	return in, err
}

// cardMembers locates the faults of the card validation operations
// (attributes member attrs).
func cardMembers(attrs string, a *dp.CardVerificationAttributes) memberPath {
	return func(_ fault.Side, subj fault.Subject) string {
		switch subj {
		case fault.SubjectKey, fault.SubjectPAN, fault.SubjectValidationDataLength, fault.SubjectValidationData:
			return leafMember(fault.SideNone, subj)
		case fault.SubjectCardAttributes:
			return attrs
		case fault.SubjectExpiryDate, fault.SubjectServiceCode, fault.SubjectPSN, fault.SubjectATC, fault.SubjectUnpredictableNumber,
			fault.SubjectTrackData:
			return join(attrs, cardMember(a), leafMember(fault.SideNone, subj))
		}
		return ""
	}
}

// sessionMember is the set member of the SessionKeyDerivation union.
func sessionMember(d *dp.SessionKeyDerivation) string {
	switch {
	case d == nil:
	case d.EmvCommon != nil:
		return "EmvCommon"
	case d.Mastercard != nil:
		return "Mastercard"
	case d.Emv2000 != nil:
		return "Emv2000"
	case d.Amex != nil:
		return "Amex"
	case d.Visa != nil:
		return "Visa"
	case d.UnionPay != nil:
		return "UnionPay"
	}
	return ""
}

// authInput maps an ARQC request and its SessionKeyDerivation union.
func authInput(key string, data *string, mode *dp.MajorKeyDerivationMode, d *dp.SessionKeyDerivation) (ops.AuthRequestCryptogramInput, error) {
	in := ops.AuthRequestCryptogramInput{KeyIdentifier: key, MajorKeyMode: opsEnum(mode, majorKeyOptions, badEnum)}
	var err error
	if in.TransactionData, err = unhex("TransactionData", data); err != nil {
		return in, err
	}
	m := join("SessionKeyDerivationAttributes", sessionMember(d))
	var atc, un *string
	switch {
	case d.EmvCommon != nil:
		in.Session = ops.EMVSession{Scheme: ops.EmvCommon, PAN: str(d.EmvCommon.PrimaryAccountNumber), PSN: str(d.EmvCommon.PanSequenceNumber)}
		atc = d.EmvCommon.ApplicationTransactionCounter
	case d.Mastercard != nil:
		in.Session = ops.EMVSession{Scheme: ops.EmvMastercard, PAN: str(d.Mastercard.PrimaryAccountNumber), PSN: str(d.Mastercard.PanSequenceNumber)}
		atc, un = d.Mastercard.ApplicationTransactionCounter, d.Mastercard.UnpredictableNumber
	case d.Emv2000 != nil:
		in.Session = ops.EMVSession{Scheme: ops.EmvEMV2000, PAN: str(d.Emv2000.PrimaryAccountNumber), PSN: str(d.Emv2000.PanSequenceNumber)}
		atc = d.Emv2000.ApplicationTransactionCounter
	case d.Amex != nil:
		in.Session = ops.EMVSession{Scheme: ops.EmvAmex, PAN: str(d.Amex.PrimaryAccountNumber), PSN: str(d.Amex.PanSequenceNumber)}
	case d.Visa != nil:
		in.Session = ops.EMVSession{Scheme: ops.EmvVisa, PAN: str(d.Visa.PrimaryAccountNumber), PSN: str(d.Visa.PanSequenceNumber)}
	case d.UnionPay != nil:
		in.Session = ops.EMVSession{Scheme: ops.EmvUnionPay, PAN: str(d.UnionPay.PrimaryAccountNumber), PSN: str(d.UnionPay.PanSequenceNumber)}
		atc = d.UnionPay.ApplicationTransactionCounter
	}
	if in.Session.ATC, err = atcHex(m+".ApplicationTransactionCounter", atc); err != nil {
		return in, err
	}
	in.Session.UN, err = unhex(m+".UnpredictableNumber", un)
	return in, err
}

// authMembers locates the faults of the ARQC operations.
func authMembers(d *dp.SessionKeyDerivation, r *dp.CryptogramAuthResponse) memberPath {
	return func(_ fault.Side, subj fault.Subject) string {
		switch subj {
		case fault.SubjectKey, fault.SubjectMajorKeyDerivationMode, fault.SubjectTransactionData, fault.SubjectAuthRequestCryptogram:
			return leafMember(fault.SideNone, subj)
		case fault.SubjectSessionDerivation:
			return "SessionKeyDerivationAttributes"
		case fault.SubjectPAN, fault.SubjectPSN, fault.SubjectATC, fault.SubjectUnpredictableNumber:
			return join("SessionKeyDerivationAttributes", sessionMember(d), leafMember(fault.SideNone, subj))
		case fault.SubjectAuthResponse:
			return "AuthResponseAttributes"
		case fault.SubjectAuthResponseCode:
			return "AuthResponseAttributes.ArpcMethod1.AuthResponseCode"
		case fault.SubjectCardStatusUpdate:
			return "AuthResponseAttributes.ArpcMethod2.CardStatusUpdate"
		case fault.SubjectProprietaryAuthData:
			return "AuthResponseAttributes.ArpcMethod2.ProprietaryAuthenticationData"
		}
		return ""
	}
}
