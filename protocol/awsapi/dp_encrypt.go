package awsapi

import (
	"context"

	"payhsm/ops"
	dp "payhsm/protocol/awsapi/dpshape"
)

// dataEncryptionOperations maps EncryptData, DecryptData, ReEncryptData,
// GenerateMac and VerifyMac onto the operations layer.
func (s *Server) dataEncryptionOperations() map[string]operation {
	o := s.ops
	return map[string]operation{
		"EncryptData": handler(func(_ context.Context, in *dp.EncryptDataInput) (any, error) {
			wk, err := dataWrappedKey("WrappedKey", in.WrappedKey)
			if err != nil {
				return nil, err
			}
			r, err := o.EncryptData(ops.EncryptDataInput{KeyIdentifier: str(in.KeyIdentifier), PlainText: str(in.PlainText),
				Attributes: dataCipher(in.EncryptionAttributes), WrappedKey: wk})
			if err != nil {
				return nil, err
			}
			return &dp.EncryptDataOutput{KeyArn: &r.KeyARN, KeyCheckValue: opt(r.KCV), CipherText: &r.Data}, nil
		}),
		"DecryptData": handler(func(_ context.Context, in *dp.DecryptDataInput) (any, error) {
			wk, err := dataWrappedKey("WrappedKey", in.WrappedKey)
			if err != nil {
				return nil, err
			}
			r, err := o.DecryptData(ops.DecryptDataInput{KeyIdentifier: str(in.KeyIdentifier), CipherText: str(in.CipherText),
				Attributes: dataCipher(in.DecryptionAttributes), WrappedKey: wk})
			if err != nil {
				return nil, err
			}
			return &dp.DecryptDataOutput{KeyArn: &r.KeyARN, KeyCheckValue: &r.KCV, PlainText: &r.Data}, nil
		}),
		"ReEncryptData": handler(func(_ context.Context, in *dp.ReEncryptDataInput) (any, error) {
			iwk, err := dataWrappedKey("IncomingWrappedKey", in.IncomingWrappedKey)
			if err != nil {
				return nil, err
			}
			owk, err := dataWrappedKey("OutgoingWrappedKey", in.OutgoingWrappedKey)
			if err != nil {
				return nil, err
			}
			r, err := o.ReEncryptData(ops.ReEncryptDataInput{
				IncomingKeyIdentifier: str(in.IncomingKeyIdentifier), OutgoingKeyIdentifier: str(in.OutgoingKeyIdentifier),
				CipherText:         str(in.CipherText),
				Incoming:           reEncryptCipher(in.IncomingEncryptionAttributes),
				Outgoing:           reEncryptCipher(in.OutgoingEncryptionAttributes),
				IncomingWrappedKey: iwk, OutgoingWrappedKey: owk,
			})
			if err != nil {
				return nil, err
			}
			return &dp.ReEncryptDataOutput{KeyArn: &r.KeyARN, KeyCheckValue: &r.KCV, CipherText: &r.Data}, nil
		}),
		"GenerateMac": handler(func(_ context.Context, in *dp.GenerateMacInput) (any, error) {
			r, err := o.GenerateMac(ops.GenerateMacInput{KeyIdentifier: str(in.KeyIdentifier), MessageData: str(in.MessageData),
				Attributes: macAttributes(in.GenerationAttributes), MacLength: dpMacLength(in.MacLength)})
			if err != nil {
				return nil, err
			}
			return &dp.GenerateMacOutput{KeyArn: &r.KeyARN, KeyCheckValue: &r.KCV, Mac: &r.Mac}, nil
		}),
		"VerifyMac": handler(func(_ context.Context, in *dp.VerifyMacInput) (any, error) {
			r, err := o.VerifyMac(ops.VerifyMacInput{KeyIdentifier: str(in.KeyIdentifier), MessageData: str(in.MessageData),
				Mac: str(in.Mac), Attributes: macAttributes(in.VerificationAttributes), MacLength: dpMacLength(in.MacLength)})
			if err != nil {
				return nil, err
			}
			return &dp.VerifyMacOutput{KeyArn: &r.KeyARN, KeyCheckValue: &r.KCV}, nil
		}),
	}
}

// dataWrappedKey maps a WrappedKey (either form; see wrappedKey).
func dataWrappedKey(_ string, w *dp.WrappedKey) (*ops.DynamicKey, error) {
	return wrappedKey(w), nil
}

func dpMacLength(p *int32) int {
	if p == nil {
		return 0
	}
	return int(*p)
}

func symmetricCipher(a *dp.SymmetricEncryptionAttributes) *ops.SymmetricCipher {
	if a == nil {
		return nil
	}
	return &ops.SymmetricCipher{Mode: str(a.Mode), IV: str(a.InitializationVector), Padding: str(a.PaddingType)}
}

func dukptCipher(a *dp.DukptEncryptionAttributes) *ops.DukptCipher {
	if a == nil {
		return nil
	}
	return &ops.DukptCipher{KSN: str(a.KeySerialNumber), Mode: str(a.Mode), DerivationType: str(a.DukptKeyDerivationType),
		Variant: str(a.DukptKeyVariant), IV: str(a.InitializationVector)}
}

func dataCipher(a *dp.EncryptionDecryptionAttributes) ops.DataCipher {
	var c ops.DataCipher
	if a == nil {
		return c
	}
	c.Symmetric = symmetricCipher(a.Symmetric)
	c.Dukpt = dukptCipher(a.Dukpt)
	if a.Asymmetric != nil {
		c.Asymmetric = &ops.AsymmetricCipher{Padding: str(a.Asymmetric.PaddingType)}
	}
	if e := a.Emv; e != nil {
		c.Emv = &ops.EmvCipher{MajorKeyDerivationMode: str(e.MajorKeyDerivationMode), PAN: str(e.PrimaryAccountNumber),
			PSN: str(e.PanSequenceNumber), SessionDerivationData: str(e.SessionDerivationData), Mode: str(e.Mode),
			IV: str(e.InitializationVector)}
	}
	return c
}

func reEncryptCipher(a *dp.ReEncryptionAttributes) ops.DataCipher {
	var c ops.DataCipher
	if a == nil {
		return c
	}
	c.Symmetric = symmetricCipher(a.Symmetric)
	c.Dukpt = dukptCipher(a.Dukpt)
	return c
}

func dukptMac(a *dp.MacAlgorithmDukpt) *ops.DukptMac {
	if a == nil {
		return nil
	}
	return &ops.DukptMac{KSN: str(a.KeySerialNumber), Variant: str(a.DukptKeyVariant), DerivationType: str(a.DukptDerivationType)}
}

func macAttributes(a *dp.MacAttributes) ops.MacAttributes {
	var m ops.MacAttributes
	if a == nil {
		return m
	}
	m.Algorithm = str(a.Algorithm)
	m.DukptIso9797Algorithm1 = dukptMac(a.DukptIso9797Algorithm1)
	m.DukptIso9797Algorithm3 = dukptMac(a.DukptIso9797Algorithm3)
	m.DukptCmac = dukptMac(a.DukptCmac)
	if e := a.EmvMac; e != nil {
		m.EmvMac = &ops.EmvMac{MajorKeyDerivationMode: str(e.MajorKeyDerivationMode), PAN: str(e.PrimaryAccountNumber),
			PSN: str(e.PanSequenceNumber), SessionKeyDerivationMode: str(e.SessionKeyDerivationMode)}
		if v := e.SessionKeyDerivationValue; v != nil {
			m.EmvMac.ApplicationCryptogram, m.EmvMac.ATC = str(v.ApplicationCryptogram), str(v.ApplicationTransactionCounter)
		}
	}
	return m
}
