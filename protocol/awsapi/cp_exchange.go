package awsapi

import (
	"context"

	"payhsm/keyspec"
	"payhsm/ops"
	cp "payhsm/protocol/awsapi/cpshape"
)

// exchangeOperations are the key-exchange control-plane operations beyond
// ImportKey/GetParametersForImport (export, export parameters).
func (s *Server) exchangeOperations() map[string]operation {
	o := s.ops
	return map[string]operation{
		"GetParametersForExport": handler(func(_ context.Context, in *cp.GetParametersForExportInput) (any, error) {
			p, err := o.GetParametersForExport(str(in.KeyMaterialType), keyspec.Algorithm(str(in.SigningKeyAlgorithm)), boolv(in.ReuseLastGeneratedToken))
			if err != nil {
				return nil, err
			}
			alg := cp.KeyAlgorithm(p.Algorithm)
			return &cp.GetParametersForExportOutput{
				SigningKeyCertificate: b64(p.Certificate), SigningKeyCertificateChain: b64(p.CertificateChain),
				SigningKeyAlgorithm: &alg, ExportToken: opt(p.Token), ParametersValidUntilTimestamp: ts(p.ValidUntil),
			}, nil
		}),
		"GetCertificateSigningRequest": handler(func(_ context.Context, in *cp.GetCertificateSigningRequestInput) (any, error) {
			c := in.CertificateSubject
			csr, err := o.GetCertificateSigningRequest(*in.KeyIdentifier, str(in.SigningAlgorithm), ops.CertificateSubject{
				CommonName: str(c.CommonName), OrganizationUnit: str(c.OrganizationUnit), Organization: str(c.Organization),
				City: str(c.City), Country: str(c.Country), StateOrProvince: str(c.StateOrProvince), EmailAddress: str(c.EmailAddress)})
			if err != nil {
				return nil, err
			}
			return &cp.GetCertificateSigningRequestOutput{CertificateSigningRequest: b64(csr)}, nil
		}),
		"ExportKey": handler(func(_ context.Context, in *cp.ExportKeyInput) (any, error) {
			req := ops.ExportKeyInput{KeyIdentifier: *in.ExportKeyIdentifier}
			if a := in.ExportAttributes; a != nil {
				req.KCVAlgorithm = keyspec.KCVAlgorithm(str(a.KeyCheckValueAlgorithm))
				if a.ExportDukptInitialKey != nil {
					req.DukptKSN = *a.ExportDukptInitialKey.KeySerialNumber
				}
			}
			m := in.KeyMaterial
			switch {
			case m.Tr31KeyBlock != nil:
				req.Tr31 = &ops.ExportTr31{WrappingKeyIdentifier: *m.Tr31KeyBlock.WrappingKeyIdentifier, Headers: blockHeaders(m.Tr31KeyBlock.KeyBlockHeaders)}
			case m.Tr34KeyBlock != nil:
				x := m.Tr34KeyBlock
				req.Tr34 = &ops.ExportTr34{CAIdentifier: *x.CertificateAuthorityPublicKeyIdentifier, Certificate: *x.WrappingKeyCertificate,
					ExportToken: str(x.ExportToken), SigningKeyIdentifier: str(x.SigningKeyIdentifier), SigningKeyCertificate: str(x.SigningKeyCertificate),
					Format: str(x.KeyBlockFormat), RandomNonce: str(x.RandomNonce), Headers: blockHeaders(x.KeyBlockHeaders)}
			case m.DiffieHellmanTr31KeyBlock != nil:
				x := m.DiffieHellmanTr31KeyBlock
				req.DiffieHellman = &ops.ExportDiffieHellmanTr31{Headers: blockHeaders(x.KeyBlockHeaders), DiffieHellman: diffieHellman(x.PrivateKeyIdentifier,
					x.CertificateAuthorityPublicKeyIdentifier, x.PublicKeyCertificate, str(x.DeriveKeyAlgorithm), str(x.KeyDerivationFunction),
					str(x.KeyDerivationHashAlgorithm), x.DerivationData)}
			case m.As2805KeyCryptogram != nil:
				return exportAs2805(o, req, m.As2805KeyCryptogram)
			case m.KeyCryptogram != nil:
				c := m.KeyCryptogram
				req.KeyCryptogram = &ops.ExportKeyCryptogram{CAIdentifier: *c.CertificateAuthorityPublicKeyIdentifier,
					Certificate: *c.WrappingKeyCertificate, WrappingSpec: str(c.WrappingSpec)}
			}
			w, err := o.ExportKey(req)
			if err != nil {
				return nil, err
			}
			return &cp.ExportKeyOutput{WrappedKey: &cp.WrappedKey{
				WrappingKeyArn: opt(w.WrappingKeyARN), WrappedKeyMaterialFormat: enum[cp.WrappedKeyMaterialFormat](w.Format),
				KeyMaterial: opt(w.KeyMaterial), KeyCheckValue: opt(w.KCV),
				KeyCheckValueAlgorithm: enum[cp.KeyCheckValueAlgorithm](string(w.KCVAlgorithm)),
			}}, nil
		}),
	}
}

// importCertificate maps the RootCertificatePublicKey and TrustedCertificatePublicKey members of ImportKey.
func importCertificate(o *ops.Service, req ops.ImportKeyInput, m *cp.ImportKeyMaterial) (any, error) {
	in := ops.ImportCertificateInput{KCVAlgorithm: req.KCVAlgorithm, Enabled: req.Enabled, Tags: req.Tags}
	if r := m.RootCertificatePublicKey; r != nil {
		in.Attributes, in.Certificate = attributes(r.KeyAttributes), *r.PublicKeyCertificate
	} else {
		t := m.TrustedCertificatePublicKey
		in.Attributes, in.Certificate, in.CAIdentifier = attributes(t.KeyAttributes), *t.PublicKeyCertificate, *t.CertificateAuthorityPublicKeyIdentifier
	}
	k, err := o.ImportCertificate(in)
	if err != nil {
		return nil, err
	}
	return &cp.ImportKeyOutput{Key: key(k)}, nil
}

// importTR34 maps the Tr34KeyBlock member of ImportKey.
func importTR34(o *ops.Service, req ops.ImportKeyInput, x *cp.ImportTr34KeyBlock) (any, error) {
	k, err := o.ImportKeyTR34(req, ops.ImportTr34{CAIdentifier: *x.CertificateAuthorityPublicKeyIdentifier, SigningCertificate: *x.SigningKeyCertificate,
		ImportToken: str(x.ImportToken), WrappingKeyIdentifier: str(x.WrappingKeyIdentifier), KeyBlock: *x.WrappedKeyBlock,
		Format: str(x.KeyBlockFormat), RandomNonce: str(x.RandomNonce)})
	if err != nil {
		return nil, err
	}
	return &cp.ImportKeyOutput{Key: key(k)}, nil
}

// importDiffieHellman maps the DiffieHellmanTr31KeyBlock member of ImportKey.
func importDiffieHellman(o *ops.Service, req ops.ImportKeyInput, x *cp.ImportDiffieHellmanTr31KeyBlock) (any, error) {
	k, err := o.ImportKeyDiffieHellman(req, ops.ImportDiffieHellmanTr31{KeyBlock: *x.WrappedKeyBlock, DiffieHellman: diffieHellman(x.PrivateKeyIdentifier,
		x.CertificateAuthorityPublicKeyIdentifier, x.PublicKeyCertificate, str(x.DeriveKeyAlgorithm), str(x.KeyDerivationFunction),
		str(x.KeyDerivationHashAlgorithm), x.DerivationData)})
	if err != nil {
		return nil, err
	}
	return &cp.ImportKeyOutput{Key: key(k)}, nil
}

func diffieHellman(priv, ca, cert *string, alg, kdf, hash string, d *cp.DiffieHellmanDerivationData) ops.DiffieHellman {
	dh := ops.DiffieHellman{PrivateKeyIdentifier: *priv, CAIdentifier: *ca, Certificate: *cert, DeriveKeyAlgorithm: keyspec.Algorithm(alg), KDF: kdf, Hash: hash}
	if d != nil {
		dh.SharedInformation = str(d.SharedInformation)
	}
	return dh
}

// blockHeaders maps KeyBlockHeaders.
func blockHeaders(h *cp.KeyBlockHeaders) *ops.KeyBlockHeaders {
	if h == nil {
		return nil
	}
	out := &ops.KeyBlockHeaders{Exportability: keyspec.Exportability(str(h.KeyExportability)), KeyVersion: str(h.KeyVersion), OptionalBlocks: h.OptionalBlocks}
	if m := h.KeyModesOfUse; m != nil {
		out.Modes = &keyspec.ModesOfUse{Encrypt: boolv(m.Encrypt), Decrypt: boolv(m.Decrypt), Wrap: boolv(m.Wrap), Unwrap: boolv(m.Unwrap),
			Generate: boolv(m.Generate), Sign: boolv(m.Sign), Verify: boolv(m.Verify), DeriveKey: boolv(m.DeriveKey), NoRestrictions: boolv(m.NoRestrictions)}
	}
	return out
}
