package awsapi

import (
	"encoding/json"
	"testing"

	"payhsm/fault"
	dp "payhsm/protocol/awsapi/dpshape"
)

// FuzzKeyMaterialRequests decodes arbitrary bodies as TranslateKeyMaterial
// requests and as the WrappedKey of the data operations and, for those that
// validate, maps them onto the operations layer's inputs: decoding,
// validation and mapping never panic, and a validated WrappedKey always maps
// to a dynamic key.
func FuzzKeyMaterialRequests(f *testing.F) {
	f.Add([]byte(`{"IncomingKeyMaterial":{"DiffieHellmanTr31KeyBlock":{"PrivateKeyIdentifier":"alias/k3","CertificateAuthorityPublicKeyIdentifier":"alias/ca","PublicKeyCertificate":"AAAA","DeriveKeyAlgorithm":"AES_128","KeyDerivationFunction":"NIST_SP800","KeyDerivationHashAlgorithm":"SHA_256","DerivationData":{"SharedInformation":"ABCD"},"WrappedKeyBlock":"D0016P0TB00E0000"}},"OutgoingKeyMaterial":{"Tr31KeyBlock":{"WrappingKeyIdentifier":"alias/kek"}},"KeyCheckValueAlgorithm":"CMAC"}`))
	f.Add([]byte(`{"WrappedKeyMaterial":{"DiffieHellmanSymmetricKey":{"CertificateAuthorityPublicKeyIdentifier":"alias/ca","PublicKeyCertificate":"AAAA","KeyAlgorithm":"TDES_2KEY","KeyDerivationFunction":"ANSI_X963","KeyDerivationHashAlgorithm":"SHA_512","SharedInformation":"00"}},"KeyCheckValueAlgorithm":"ANSI_X9_24"}`))
	f.Add([]byte(`{"WrappedKeyMaterial":{"Tr31KeyBlock":"D0016D0AB00N0000"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var in dp.TranslateKeyMaterialInput
		if json.Unmarshal(body, &in) == nil && in.Validate("") == nil {
			if req, err := translateKeyMaterialInput(&in); err != nil && fault.KindOf(err) != fault.Validation {
				t.Fatalf("a valid request maps to a %v fault: %v", fault.KindOf(err), err)
			} else if err == nil && len(req.Incoming.Certificate) == 0 {
				t.Fatalf("a valid request mapped to no certificate: %+v", req)
			}
		}
		var wk dp.WrappedKey
		if json.Unmarshal(body, &wk) == nil && wk.Validate("") == nil {
			dk, err := wrappedKey("WrappedKey", &wk)
			if err == nil && (dk == nil || (dk.Tr31KeyBlock == "") == (dk.DiffieHellman == nil)) {
				t.Fatalf("a valid WrappedKey mapped to %+v", dk)
			}
		}
	})
}
