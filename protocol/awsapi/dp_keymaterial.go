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
			req, err := translateKeyMaterialInput(in)
			if err != nil {
				return nil, err
			}
			r, err := o.TranslateKeyMaterial(req)
			if err != nil {
				return nil, locate(err, translateKeyMaterialMembers)
			}
			return &dp.TranslateKeyMaterialOutput{WrappedKey: &dp.WrappedWorkingKey{WrappedKeyMaterial: &r.KeyMaterial,
				KeyCheckValue: &r.KCV, WrappedKeyMaterialFormat: enum[dp.WrappedKeyMaterialFormat](string(wrappedFormats[r.Format]))}}, nil
		}),
	}
}

// translateKeyMaterialInput maps a validated TranslateKeyMaterial request.
func translateKeyMaterialInput(in *dp.TranslateKeyMaterialInput) (ops.TranslateKeyMaterialInput, error) {
	x := in.IncomingKeyMaterial.DiffieHellmanTr31KeyBlock // the union's only member; validated present
	var info *string
	if x.DerivationData != nil {
		info = x.DerivationData.SharedInformation
	}
	dh, err := diffieHellman(translateIncoming, x.PrivateKeyIdentifier, x.CertificateAuthorityPublicKeyIdentifier, x.PublicKeyCertificate,
		str(x.DeriveKeyAlgorithm), str(x.KeyDerivationFunction), str(x.KeyDerivationHashAlgorithm), info)
	if err != nil {
		return ops.TranslateKeyMaterialInput{}, err
	}
	return ops.TranslateKeyMaterialInput{
		Incoming:                      ops.ImportDiffieHellmanTr31{KeyBlock: str(x.WrappedKeyBlock), DiffieHellman: dh},
		OutgoingWrappingKeyIdentifier: str(in.OutgoingKeyMaterial.Tr31KeyBlock.WrappingKeyIdentifier),
		KCVAlgorithm:                  keyspec.KCVAlgorithm(str(in.KeyCheckValueAlgorithm)),
	}, nil
}

// translateIncoming is TranslateKeyMaterial's incoming derivation and key block.
const translateIncoming = "IncomingKeyMaterial.DiffieHellmanTr31KeyBlock"

// translateKeyMaterialMembers locates TranslateKeyMaterial's faults: the
// incoming side's in its DiffieHellmanTr31KeyBlock (the derivation, and the
// key block, whose header gives the key's attributes), the outgoing side's
// at the outgoing KEK.
var translateKeyMaterialMembers = func() memberPath {
	in := diffieHellmanMembers(translateIncoming)
	block := translateIncoming + ".WrappedKeyBlock"
	for _, subj := range []fault.Subject{fault.SubjectWrappedKey, fault.SubjectKeyUsage, fault.SubjectKeyAlgorithm, fault.SubjectKeyClass, fault.SubjectKeyModesOfUse} {
		in[subj] = block
	}
	return func(side fault.Side, subj fault.Subject) string {
		switch {
		case subj == fault.SubjectKeyCheckValueAlgorithm:
			return "KeyCheckValueAlgorithm"
		case side == fault.SideOutgoing && subj == fault.SubjectWrappingKey:
			return "OutgoingKeyMaterial.Tr31KeyBlock.WrappingKeyIdentifier"
		case side == fault.SideIncoming:
			return in[subj]
		}
		return ""
	}
}()

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
		const form = ".WrappedKeyMaterial.DiffieHellmanSymmetricKey"
		info, err := unhex(m+form+".SharedInformation", x.SharedInformation)
		if err != nil {
			return nil, err
		}
		cert, err := certificateMember(m+form+".PublicKeyCertificate", str(x.PublicKeyCertificate))
		if err != nil {
			return nil, err
		}
		dk.DiffieHellman = &ops.EcdhDerivation{CAIdentifier: str(x.CertificateAuthorityPublicKeyIdentifier), Certificate: cert,
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
