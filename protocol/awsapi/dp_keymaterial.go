package awsapi

import (
	"context"

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
				return nil, err
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
// dynamic keys (EncryptData, DecryptData, ReEncryptData, TranslatePinData):
// a Tr31KeyBlock or a DiffieHellmanSymmetricKey.
func wrappedKey(w *dp.WrappedKey) *ops.DynamicKey {
	if w == nil || w.WrappedKeyMaterial == nil {
		return nil
	}
	dk := &ops.DynamicKey{Tr31KeyBlock: str(w.WrappedKeyMaterial.Tr31KeyBlock), KCVAlgorithm: keyspec.KCVAlgorithm(str(w.KeyCheckValueAlgorithm))}
	if x := w.WrappedKeyMaterial.DiffieHellmanSymmetricKey; x != nil {
		dk.DiffieHellman = &ops.EcdhDerivation{CAIdentifier: str(x.CertificateAuthorityPublicKeyIdentifier), Certificate: str(x.PublicKeyCertificate),
			KeyAlgorithm: keyspec.Algorithm(str(x.KeyAlgorithm)), KDF: str(x.KeyDerivationFunction), Hash: str(x.KeyDerivationHashAlgorithm),
			SharedInformation: str(x.SharedInformation)}
	}
	return dk
}
