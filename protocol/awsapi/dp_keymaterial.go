package awsapi

import (
	"context"

	"payhsm/fault"
	"payhsm/keyspec"
	"payhsm/ops"
	dp "payhsm/protocol/awsapi/dpshape"
)

// keyMaterialOperations maps TranslateKeyMaterial onto the operations layer.
func (s *Server) keyMaterialOperations() map[string]operation {
	o := s.ops
	return map[string]operation{
		"TranslateKeyMaterial": handler(func(_ context.Context, in *dp.TranslateKeyMaterialInput) (any, error) {
			x := in.IncomingKeyMaterial.DiffieHellmanTr31KeyBlock // the union's only member; validated present
			r, err := o.TranslateKeyMaterial(ops.TranslateKeyMaterialInput{
				Incoming: ops.ImportDiffieHellmanTr31{KeyBlock: str(x.WrappedKeyBlock), DiffieHellman: ops.DiffieHellman{
					PrivateKeyIdentifier: str(x.PrivateKeyIdentifier), CAIdentifier: str(x.CertificateAuthorityPublicKeyIdentifier),
					Certificate: str(x.PublicKeyCertificate), DeriveKeyAlgorithm: keyspec.Algorithm(str(x.DeriveKeyAlgorithm)),
					KDF: str(x.KeyDerivationFunction), Hash: str(x.KeyDerivationHashAlgorithm), SharedInformation: sharedInformation(x.DerivationData)}},
				OutgoingWrappingKeyIdentifier: str(in.OutgoingKeyMaterial.Tr31KeyBlock.WrappingKeyIdentifier),
				KCVAlgorithm:                  keyspec.KCVAlgorithm(str(in.KeyCheckValueAlgorithm)),
			})
			if err != nil {
				return nil, locate(err, func(_ fault.Side, subj fault.Subject) string {
					const m = "IncomingKeyMaterial.DiffieHellmanTr31KeyBlock"
					switch subj {
					case fault.SubjectKeyCheckValueAlgorithm:
						return "KeyCheckValueAlgorithm"
					case fault.SubjectWrappedKey:
						return m + ".WrappedKeyBlock"
					case fault.SubjectDerivedKeyAlgorithm:
						return m + ".DeriveKeyAlgorithm"
					case fault.SubjectSharedInformation:
						return m + ".DerivationData.SharedInformation"
					case fault.SubjectCertificateAuthority, fault.SubjectCertificate, fault.SubjectKDF, fault.SubjectKDFHash:
						return m + "." + leafMember(fault.SideNone, subj)
					}
					return ""
				})
			}
			return &dp.TranslateKeyMaterialOutput{WrappedKey: &dp.WrappedWorkingKey{WrappedKeyMaterial: &r.KeyMaterial,
				KeyCheckValue: &r.KCV, WrappedKeyMaterialFormat: enum[dp.WrappedKeyMaterialFormat](r.Format)}}, nil
		}),
	}
}

func sharedInformation(d *dp.DiffieHellmanDerivationData) string {
	if d == nil {
		return ""
	}
	return str(d.SharedInformation)
}

// wrappedKey maps the WrappedKey shape of the data operations that take
// dynamic keys (EncryptData, DecryptData, ReEncryptData, the PIN
// operations), request member m: a Tr31KeyBlock or a
// DiffieHellmanSymmetricKey.
func wrappedKey(m string, w *dp.WrappedKey) (*ops.DynamicKey, error) {
	if w == nil || w.WrappedKeyMaterial == nil {
		return nil, nil
	}
	dk := &ops.DynamicKey{Tr31KeyBlock: str(w.WrappedKeyMaterial.Tr31KeyBlock), KCVAlgorithm: keyspec.KCVAlgorithm(str(w.KeyCheckValueAlgorithm))}
	if x := w.WrappedKeyMaterial.DiffieHellmanSymmetricKey; x != nil {
		info, err := unhex(m+".WrappedKeyMaterial.DiffieHellmanSymmetricKey.SharedInformation", x.SharedInformation)
		if err != nil {
			return nil, err
		}
		dk.DiffieHellman = &ops.EcdhDerivation{CAIdentifier: str(x.CertificateAuthorityPublicKeyIdentifier), Certificate: str(x.PublicKeyCertificate),
			KeyAlgorithm: keyspec.Algorithm(str(x.KeyAlgorithm)), KDF: opsEnum(x.KeyDerivationFunction, kdfs, badEnum),
			Hash: opsEnum(x.KeyDerivationHashAlgorithm, kdfHashes, badEnum), SharedInformation: info}
	}
	return dk, nil
}

// wrappedKeyMember names the members of the dynamic key w (request member
// m) that a fault's subject is about: "" when it is about none of them.
func wrappedKeyMember(m string, w *dp.WrappedKey, subj fault.Subject) string {
	if w == nil {
		return ""
	}
	form := m + ".WrappedKeyMaterial.Tr31KeyBlock"
	if w.WrappedKeyMaterial != nil && w.WrappedKeyMaterial.DiffieHellmanSymmetricKey != nil {
		form = m + ".WrappedKeyMaterial.DiffieHellmanSymmetricKey"
	}
	switch subj {
	case fault.SubjectWrappedKey:
		return form
	case fault.SubjectKeyCheckValueAlgorithm:
		return m + ".KeyCheckValueAlgorithm"
	case fault.SubjectDerivedKeyAlgorithm:
		return form + ".KeyAlgorithm"
	case fault.SubjectCertificateAuthority, fault.SubjectCertificate, fault.SubjectKDF, fault.SubjectKDFHash, fault.SubjectSharedInformation:
		return form + "." + leafMember(fault.SideNone, subj)
	}
	return ""
}
