package awsapi

import (
	"context"

	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/ops"
	dp "payhsm/protocol/awsapi/dpshape"
)

// dataEncryptionOperations maps EncryptData, DecryptData, ReEncryptData,
// GenerateMac and VerifyMac onto the operations layer: hexadecimal members
// are decoded here, and the operations layer's faults are located at the
// members of the request they are about.
func (s *Server) dataEncryptionOperations() map[string]operation {
	o := s.ops
	return map[string]operation{
		"EncryptData": handler(func(_ context.Context, in *dp.EncryptDataInput) (any, error) {
			paths := dataMembers("EncryptionAttributes", cipherMember(in.EncryptionAttributes), "WrappedKey", in.WrappedKey, "PlainText")
			r := new(response[dp.EncryptDataOutput])
			ct, err := func() ([]byte, error) {
				wk, err := wrappedKey("WrappedKey", in.WrappedKey)
				if err != nil {
					return nil, err
				}
				attrs, err := dataCipher("EncryptionAttributes", in.EncryptionAttributes)
				if err != nil {
					return nil, err
				}
				pt, err := unhex("PlainText", in.PlainText)
				if err != nil {
					return nil, err
				}
				defer clear(pt)
				ct, k, err := o.AppendEncryptData(r.room[:0], ops.EncryptDataInput{KeyIdentifier: str(in.KeyIdentifier), PlainText: pt, Attributes: attrs, WrappedKey: wk})
				r.key = k
				return ct, err
			}()
			if err != nil {
				return nil, locate(err, paths)
			}
			r.out.KeyArn, r.out.KeyCheckValue, r.out.CipherText = &r.key.KeyARN, r.kcv(), r.hexOf(ct)
			return &r.out, nil
		}),
		"DecryptData": handler(func(_ context.Context, in *dp.DecryptDataInput) (any, error) {
			paths := dataMembers("DecryptionAttributes", cipherMember(in.DecryptionAttributes), "WrappedKey", in.WrappedKey, "CipherText")
			r := new(response[dp.DecryptDataOutput])
			pt, err := func() ([]byte, error) {
				wk, err := wrappedKey("WrappedKey", in.WrappedKey)
				if err != nil {
					return nil, err
				}
				attrs, err := dataCipher("DecryptionAttributes", in.DecryptionAttributes)
				if err != nil {
					return nil, err
				}
				ct, err := unhex("CipherText", in.CipherText)
				if err != nil {
					return nil, err
				}
				pt, k, err := o.AppendDecryptData(r.room[:0], ops.DecryptDataInput{KeyIdentifier: str(in.KeyIdentifier), CipherText: ct, Attributes: attrs, WrappedKey: wk})
				r.key = k
				return pt, err
			}()
			if err != nil {
				return nil, locate(err, paths)
			}
			defer clear(pt)
			r.out.KeyArn, r.out.KeyCheckValue, r.out.PlainText = &r.key.KeyARN, &r.key.KCV, r.hexOf(pt)
			return &r.out, nil
		}),
		"ReEncryptData": handler(func(_ context.Context, in *dp.ReEncryptDataInput) (any, error) {
			paths := reEncryptMembers(in)
			r := new(response[dp.ReEncryptDataOutput])
			ct, err := func() ([]byte, error) {
				iwk, err := wrappedKey("IncomingWrappedKey", in.IncomingWrappedKey)
				if err != nil {
					return nil, err
				}
				owk, err := wrappedKey("OutgoingWrappedKey", in.OutgoingWrappedKey)
				if err != nil {
					return nil, err
				}
				ia, err := reEncryptCipher("IncomingEncryptionAttributes", in.IncomingEncryptionAttributes)
				if err != nil {
					return nil, err
				}
				oa, err := reEncryptCipher("OutgoingEncryptionAttributes", in.OutgoingEncryptionAttributes)
				if err != nil {
					return nil, err
				}
				ct, err := unhex("CipherText", in.CipherText)
				if err != nil {
					return nil, err
				}
				out, k, err := o.AppendReEncryptData(r.room[:0], ops.ReEncryptDataInput{
					IncomingKeyIdentifier: str(in.IncomingKeyIdentifier), OutgoingKeyIdentifier: str(in.OutgoingKeyIdentifier),
					CipherText: ct, Incoming: ia, Outgoing: oa, IncomingWrappedKey: iwk, OutgoingWrappedKey: owk,
				})
				r.key = k
				return out, err
			}()
			if err != nil {
				return nil, locate(err, paths)
			}
			r.out.KeyArn, r.out.KeyCheckValue, r.out.CipherText = &r.key.KeyARN, &r.key.KCV, r.hexOf(ct)
			return &r.out, nil
		}),
		"GenerateMac": handler(func(_ context.Context, in *dp.GenerateMacInput) (any, error) {
			const attrs = "GenerationAttributes"
			r := new(response[dp.GenerateMacOutput])
			mac, err := func() ([]byte, error) {
				a, err := macAttributes(attrs, in.GenerationAttributes)
				if err != nil {
					return nil, err
				}
				msg, err := unhex("MessageData", in.MessageData)
				if err != nil {
					return nil, err
				}
				mac, k, err := o.AppendMac(r.room[:0], ops.GenerateMacInput{KeyIdentifier: str(in.KeyIdentifier), MessageData: msg, Attributes: a,
					MacLength: dpMacLength(in.MacLength)})
				r.key = k
				return mac, err
			}()
			if err != nil {
				return nil, locate(err, macMembers(attrs, in.GenerationAttributes))
			}
			r.out.KeyArn, r.out.KeyCheckValue, r.out.Mac = &r.key.KeyARN, &r.key.KCV, r.hexOf(mac)
			return &r.out, nil
		}),
		"VerifyMac": handler(func(_ context.Context, in *dp.VerifyMacInput) (any, error) {
			const attrs = "VerificationAttributes"
			r := new(response[dp.VerifyMacOutput])
			err := func() error {
				a, err := macAttributes(attrs, in.VerificationAttributes)
				if err != nil {
					return err
				}
				msg, err := unhex("MessageData", in.MessageData)
				if err != nil {
					return err
				}
				mac, err := unhex("Mac", in.Mac)
				if err != nil {
					return err
				}
				r.key, err = o.CheckMac(r.room[:0], ops.VerifyMacInput{KeyIdentifier: str(in.KeyIdentifier), MessageData: msg, Mac: mac, Attributes: a,
					MacLength: dpMacLength(in.MacLength)})
				return err
			}()
			if err != nil {
				return nil, locate(err, macMembers(attrs, in.VerificationAttributes))
			}
			r.out.KeyArn, r.out.KeyCheckValue = &r.key.KeyARN, &r.key.KCV
			return &r.out, nil
		}),
	}
}

// response is a data operation's output allocated together with what its
// members point to: the key's ARN and check value, the result's hexadecimal,
// and room for the result's bytes, which the operations layer's
// append-style calls write into (a result longer than the room is appended
// into a slice of its own). So a response is one allocation and its hex
// string's, rather than the operation's result, its bytes and each member.
type response[O any] struct {
	out  O
	key  ops.KeyUsed
	hex  string
	room [64]byte
}

// hexOf sets the response's hex to that of b and points to it.
func (r *response[O]) hexOf(b []byte) *string {
	r.hex = upperHexString(b)
	return &r.hex
}

// kcv points to the key's check value, or is nil without one.
func (r *response[O]) kcv() *string {
	if r.key.KCV == "" {
		return nil
	}
	return &r.key.KCV
}

func dpMacLength(p *int32) int {
	if p == nil {
		return 0
	}
	return int(*p)
}

// symmetricCipher maps SymmetricEncryptionAttributes (member m).
func symmetricCipher(m string, a *dp.SymmetricEncryptionAttributes) (*ops.SymmetricCipher, error) {
	if a == nil {
		return nil, nil
	}
	iv, err := unhex(m+".InitializationVector", a.InitializationVector)
	if err != nil {
		return nil, err
	}
	return &ops.SymmetricCipher{Mode: opsEnum(a.Mode, cipherModes, badEnum), IV: iv, Padding: opsEnum(a.PaddingType, paddings, badEnum)}, nil
}

// dukptCipher maps DukptEncryptionAttributes (member m).
func dukptCipher(m string, a *dp.DukptEncryptionAttributes) (*ops.DukptCipher, error) {
	if a == nil {
		return nil, nil
	}
	ksn, err := unhex(m+".KeySerialNumber", a.KeySerialNumber)
	if err != nil {
		return nil, err
	}
	iv, err := unhex(m+".InitializationVector", a.InitializationVector)
	if err != nil {
		return nil, err
	}
	return &ops.DukptCipher{KSN: ksn, Mode: opsEnum(a.Mode, dukptModes, badEnum), DerivationType: keyspec.Algorithm(str(a.DukptKeyDerivationType)),
		Variant: opsEnum(a.DukptKeyVariant, dukptVariants, badEnum), IV: iv}, nil
}

// dataCipher maps EncryptionDecryptionAttributes (member m).
func dataCipher(m string, a *dp.EncryptionDecryptionAttributes) (ops.DataCipher, error) {
	var c ops.DataCipher
	if a == nil {
		return c, nil
	}
	var err error
	if c.Symmetric, err = symmetricCipher(m+".Symmetric", a.Symmetric); err != nil {
		return c, err
	}
	if c.Dukpt, err = dukptCipher(m+".Dukpt", a.Dukpt); err != nil {
		return c, err
	}
	if a.Asymmetric != nil {
		c.Asymmetric = &ops.AsymmetricCipher{Padding: opsEnum(a.Asymmetric.PaddingType, paddings, badEnum)}
	}
	if e := a.Emv; e != nil {
		r, err := unhex(m+".Emv.SessionDerivationData", e.SessionDerivationData)
		if err != nil {
			return c, err
		}
		iv, err := unhex(m+".Emv.InitializationVector", e.InitializationVector)
		if err != nil {
			return c, err
		}
		c.Emv = &ops.EmvCipher{MajorKeyMode: opsEnum(e.MajorKeyDerivationMode, emvOptions, badEnum), PAN: str(e.PrimaryAccountNumber),
			PSN: str(e.PanSequenceNumber), SessionDerivationData: r, Mode: opsEnum(e.Mode, emvModes, badEnum), IV: iv}
	}
	return c, nil
}

// reEncryptCipher maps ReEncryptionAttributes (member m).
func reEncryptCipher(m string, a *dp.ReEncryptionAttributes) (ops.DataCipher, error) {
	var c ops.DataCipher
	if a == nil {
		return c, nil
	}
	var err error
	if c.Symmetric, err = symmetricCipher(m+".Symmetric", a.Symmetric); err != nil {
		return c, err
	}
	c.Dukpt, err = dukptCipher(m+".Dukpt", a.Dukpt)
	return c, err
}

// cipherMember is the member set in EncryptionDecryptionAttributes.
func cipherMember(a *dp.EncryptionDecryptionAttributes) string {
	switch {
	case a == nil:
	case a.Symmetric != nil:
		return "Symmetric"
	case a.Asymmetric != nil:
		return "Asymmetric"
	case a.Dukpt != nil:
		return "Dukpt"
	case a.Emv != nil:
		return "Emv"
	}
	return ""
}

// reEncryptMember is the member set in ReEncryptionAttributes.
func reEncryptMember(a *dp.ReEncryptionAttributes) string {
	switch {
	case a == nil:
	case a.Symmetric != nil:
		return "Symmetric"
	case a.Dukpt != nil:
		return "Dukpt"
	}
	return ""
}

// cipherPath names a subject of the encryption attributes attrs whose set
// member is m.
func cipherPath(attrs, m string, subj fault.Subject) string {
	switch subj {
	case fault.SubjectCipherAttributes:
		return attrs
	case fault.SubjectCipherMode, fault.SubjectPadding, fault.SubjectIV, fault.SubjectKeySerialNumber, fault.SubjectDukptDerivationType,
		fault.SubjectDukptVariant, fault.SubjectMajorKeyDerivationMode, fault.SubjectPAN, fault.SubjectPSN, fault.SubjectSessionDerivationData:
		return join(attrs, m, leafMember(fault.SideNone, subj))
	}
	return ""
}

// dataMembers locates the faults of EncryptData and DecryptData: attrs is
// the attributes member and m its set member, wk the WrappedKey member,
// data the data member.
func dataMembers(attrs, m, wkName string, wk *dp.WrappedKey, data string) memberPath {
	return func(_ fault.Side, subj fault.Subject) string {
		switch subj {
		case fault.SubjectKey:
			return "KeyIdentifier"
		case fault.SubjectData:
			return data
		}
		if p := wrappedKeyMember(wkName, wk, subj); p != "" {
			return p
		}
		return cipherPath(attrs, m, subj)
	}
}

// reEncryptMembers locates the faults of ReEncryptData by side.
func reEncryptMembers(in *dp.ReEncryptDataInput) memberPath {
	return func(side fault.Side, subj fault.Subject) string {
		prefix, a, wk := "Incoming", in.IncomingEncryptionAttributes, in.IncomingWrappedKey
		if side == fault.SideOutgoing {
			prefix, a, wk = "Outgoing", in.OutgoingEncryptionAttributes, in.OutgoingWrappedKey
		}
		switch subj {
		case fault.SubjectKey:
			return prefix + "KeyIdentifier"
		case fault.SubjectData:
			return "CipherText"
		}
		if p := wrappedKeyMember(prefix+"WrappedKey", wk, subj); p != "" {
			return p
		}
		return cipherPath(prefix+"EncryptionAttributes", reEncryptMember(a), subj)
	}
}

// dukptMac maps MacAlgorithmDukpt (member m).
func dukptMac(m string, a *dp.MacAlgorithmDukpt) (*ops.DukptMac, error) {
	if a == nil {
		return nil, nil
	}
	ksn, err := unhex(m+".KeySerialNumber", a.KeySerialNumber)
	if err != nil {
		return nil, err
	}
	return &ops.DukptMac{KSN: ksn, Variant: opsEnum(a.DukptKeyVariant, dukptVariants, badEnum),
		DerivationType: keyspec.Algorithm(str(a.DukptDerivationType))}, nil
}

// macAttributes maps MacAttributes (member m).
func macAttributes(m string, a *dp.MacAttributes) (ops.MacAttributes, error) {
	var r ops.MacAttributes
	if a == nil {
		return r, nil
	}
	r.Algorithm = opsEnum(a.Algorithm, macAlgorithms, badEnum)
	var err error
	if r.DukptIso9797Algorithm1, err = dukptMac(m+".DukptIso9797Algorithm1", a.DukptIso9797Algorithm1); err != nil {
		return r, err
	}
	if r.DukptIso9797Algorithm3, err = dukptMac(m+".DukptIso9797Algorithm3", a.DukptIso9797Algorithm3); err != nil {
		return r, err
	}
	if r.DukptCmac, err = dukptMac(m+".DukptCmac", a.DukptCmac); err != nil {
		return r, err
	}
	if e := a.EmvMac; e != nil {
		r.EmvMac = &ops.EmvMac{MajorKeyMode: opsEnum(e.MajorKeyDerivationMode, majorKeyOptions, badEnum), PAN: str(e.PrimaryAccountNumber),
			PSN: str(e.PanSequenceNumber), SessionScheme: opsEnum(e.SessionKeyDerivationMode, sessionKeySchemes, badEnum)}
		if v := e.SessionKeyDerivationValue; v != nil {
			vm := m + ".EmvMac.SessionKeyDerivationValue"
			if r.EmvMac.ApplicationCryptogram, err = unhex(vm+".ApplicationCryptogram", v.ApplicationCryptogram); err != nil {
				return r, err
			}
			if r.EmvMac.ATC, err = unhex(vm+".ApplicationTransactionCounter", v.ApplicationTransactionCounter); err != nil {
				return r, err
			}
		}
	}
	return r, nil
}

// macMembers locates the faults of GenerateMac and VerifyMac (attributes
// member attrs).
func macMembers(attrs string, a *dp.MacAttributes) memberPath {
	return func(_ fault.Side, subj fault.Subject) string {
		switch subj {
		case fault.SubjectKey:
			return "KeyIdentifier"
		case fault.SubjectMacAttributes:
			return attrs
		case fault.SubjectMacAlgorithm:
			return attrs + ".Algorithm"
		}
		if a == nil {
			return ""
		}
		var m string
		switch {
		case a.DukptIso9797Algorithm1 != nil:
			m = "DukptIso9797Algorithm1"
		case a.DukptIso9797Algorithm3 != nil:
			m = "DukptIso9797Algorithm3"
		case a.DukptCmac != nil:
			m = "DukptCmac"
		case a.EmvMac != nil:
			m = "EmvMac"
		}
		switch subj {
		case fault.SubjectKeySerialNumber, fault.SubjectDukptVariant:
			return join(attrs, m, leafMember(fault.SideNone, subj))
		case fault.SubjectDukptDerivationType:
			return join(attrs, m, "DukptDerivationType")
		case fault.SubjectMajorKeyDerivationMode, fault.SubjectPAN, fault.SubjectPSN, fault.SubjectSessionKeyDerivationMode:
			return join(attrs, m, leafMember(fault.SideNone, subj))
		case fault.SubjectSessionDerivation:
			return join(attrs, m, "SessionKeyDerivationValue")
		case fault.SubjectApplicationCryptogram, fault.SubjectATC:
			return join(attrs, m, "SessionKeyDerivationValue", leafMember(fault.SideNone, subj))
		}
		return ""
	}
}
