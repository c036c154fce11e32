package awsapi

import (
	"context"

	"payhsm/keyspec"
	"payhsm/ops"
	cp "payhsm/protocol/awsapi/cpshape"
	dp "payhsm/protocol/awsapi/dpshape"
)

// exchangeOperations are the key-exchange control-plane operations beyond
// ImportKey/GetParametersForImport (export, export parameters).
func (s *Server) exchangeOperations() map[string]operation {
	o := s.ops
	return map[string]operation{
		"GetParametersForExport": handler(func(_ context.Context, in *cp.GetParametersForExportInput) (any, error) {
			p, err := o.GetParametersForExport(keyMaterialTypes[cp.KeyMaterialType(str(in.KeyMaterialType))],
				keyspec.Algorithm(str(in.SigningKeyAlgorithm)), boolv(in.ReuseLastGeneratedToken))
			if err != nil {
				return nil, exportParamMembers.name(err)
			}
			alg := cp.KeyAlgorithm(p.Algorithm)
			return &cp.GetParametersForExportOutput{
				SigningKeyCertificate:      pemBase64("CERTIFICATE", p.Certificate),
				SigningKeyCertificateChain: pemBase64("CERTIFICATE", p.CertificateChain),
				SigningKeyAlgorithm:        &alg, ExportToken: opt(p.Token), ParametersValidUntilTimestamp: ts(p.ValidUntil),
			}, nil
		}),
		"GetCertificateSigningRequest": handler(func(_ context.Context, in *cp.GetCertificateSigningRequestInput) (any, error) {
			c := in.CertificateSubject
			csr, err := o.GetCertificateSigningRequest(*in.KeyIdentifier, signingHashes[cp.SigningAlgorithmType(str(in.SigningAlgorithm))], ops.CertificateSubject{
				CommonName: str(c.CommonName), OrganizationUnit: str(c.OrganizationUnit), Organization: str(c.Organization),
				City: str(c.City), Country: str(c.Country), StateOrProvince: str(c.StateOrProvince), EmailAddress: str(c.EmailAddress)})
			if err != nil {
				return nil, csrMembers.name(err)
			}
			return &cp.GetCertificateSigningRequestOutput{CertificateSigningRequest: pemBase64("CERTIFICATE REQUEST", csr)}, nil
		}),
		"ExportKey": handler(func(_ context.Context, in *cp.ExportKeyInput) (any, error) {
			material, out, err := exportKey(o, in)
			if err != nil {
				return nil, exportMembers[material].name(err)
			}
			return out, nil
		}),
	}
}

// importKey maps ImportKey; material names the KeyMaterial member it carried.
// by is the caller, for the audit entries of a Multi-Party Approval decision.
func importKey(o *ops.Service, in *cp.ImportKeyInput, by ops.Caller) (material string, out any, err error) {
	req := ops.ImportKeyInput{KCVAlgorithm: keyspec.KCVAlgorithm(str(in.KeyCheckValueAlgorithm)), Enabled: in.Enabled, Tags: tags(in.Tags),
		RequesterComment: str(in.RequesterComment), ReplicationRegions: in.ReplicationRegions, Caller: by}
	m := in.KeyMaterial
	switch {
	case m.KeyCryptogram != nil:
		material = "KeyCryptogram"
		const p = "KeyMaterial.KeyCryptogram"
		c := m.KeyCryptogram
		x := &ops.ImportKeyCryptogram{Attributes: attributes(c.KeyAttributes), Exportable: *c.Exportable, ImportToken: *c.ImportToken}
		if x.Cryptogram, err = hexMember(p+".WrappedKeyCryptogram", *c.WrappedKeyCryptogram); err != nil {
			return material, nil, err
		}
		if x.WrappingSpec, err = wrappingSpec(p+".WrappingSpec", c.WrappingSpec); err != nil {
			return material, nil, err
		}
		req.KeyCryptogram = x
	case m.Tr31KeyBlock != nil:
		material = "Tr31KeyBlock"
		req.Tr31KeyBlock = &ops.ImportTr31KeyBlock{WrappingKeyIdentifier: *m.Tr31KeyBlock.WrappingKeyIdentifier, KeyBlock: *m.Tr31KeyBlock.WrappedKeyBlock}
	case m.RootCertificatePublicKey != nil:
		material = "RootCertificatePublicKey"
		out, err = importCertificate(o, req, m)
		return material, out, err
	case m.TrustedCertificatePublicKey != nil:
		material = "TrustedCertificatePublicKey"
		out, err = importCertificate(o, req, m)
		return material, out, err
	case m.Tr34KeyBlock != nil:
		material = "Tr34KeyBlock"
		out, err = importTR34(o, req, m.Tr34KeyBlock)
		return material, out, err
	case m.DiffieHellmanTr31KeyBlock != nil:
		material = "DiffieHellmanTr31KeyBlock"
		out, err = importDiffieHellman(o, req, m.DiffieHellmanTr31KeyBlock)
		return material, out, err
	case m.As2805KeyCryptogram != nil:
		material = "As2805KeyCryptogram"
		out, err = importAs2805(o, req, m.As2805KeyCryptogram)
		return material, out, err
	}
	k, err := o.ImportKey(req)
	if err != nil {
		return material, nil, err
	}
	return material, &cp.ImportKeyOutput{Key: key(k)}, nil
}

// exportKey maps ExportKey; material names the KeyMaterial member it carried.
func exportKey(o *ops.Service, in *cp.ExportKeyInput) (material string, out any, err error) {
	req := ops.ExportKeyInput{KeyIdentifier: *in.ExportKeyIdentifier}
	if a := in.ExportAttributes; a != nil {
		req.KCVAlgorithm = keyspec.KCVAlgorithm(str(a.KeyCheckValueAlgorithm))
		if a.ExportDukptInitialKey != nil {
			ksn := a.ExportDukptInitialKey.KeySerialNumber
			if req.DukptKSN, err = hexMember("ExportAttributes.ExportDukptInitialKey.KeySerialNumber", str(ksn)); err != nil {
				return material, nil, err
			}
		}
	}
	m := in.KeyMaterial
	switch {
	case m.Tr31KeyBlock != nil:
		material = "Tr31KeyBlock"
		req.Tr31 = &ops.ExportTr31{WrappingKeyIdentifier: *m.Tr31KeyBlock.WrappingKeyIdentifier, Headers: blockHeaders(m.Tr31KeyBlock.KeyBlockHeaders)}
	case m.Tr34KeyBlock != nil:
		material = "Tr34KeyBlock"
		const p = "KeyMaterial.Tr34KeyBlock"
		x := m.Tr34KeyBlock
		t := &ops.ExportTr34{CAIdentifier: *x.CertificateAuthorityPublicKeyIdentifier, ExportToken: str(x.ExportToken),
			SigningKeyIdentifier: str(x.SigningKeyIdentifier), Headers: blockHeaders(x.KeyBlockHeaders)}
		if t.Certificate, err = certificateMember(p+".WrappingKeyCertificate", *x.WrappingKeyCertificate); err != nil {
			return material, nil, err
		}
		if t.SigningKeyCertificate, err = optCertificateMember(p+".SigningKeyCertificate", x.SigningKeyCertificate); err != nil {
			return material, nil, err
		}
		if t.RandomNonce, err = optHexMember(p+".RandomNonce", x.RandomNonce); err != nil {
			return material, nil, err
		}
		req.Tr34 = t
	case m.DiffieHellmanTr31KeyBlock != nil:
		material = "DiffieHellmanTr31KeyBlock"
		x := m.DiffieHellmanTr31KeyBlock
		dh, err := diffieHellman("KeyMaterial.DiffieHellmanTr31KeyBlock", x.PrivateKeyIdentifier, x.CertificateAuthorityPublicKeyIdentifier,
			x.PublicKeyCertificate, str(x.DeriveKeyAlgorithm), str(x.KeyDerivationFunction), str(x.KeyDerivationHashAlgorithm), sharedInformation(x.DerivationData))
		if err != nil {
			return material, nil, err
		}
		req.DiffieHellman = &ops.ExportDiffieHellmanTr31{Headers: blockHeaders(x.KeyBlockHeaders), DiffieHellman: dh}
	case m.As2805KeyCryptogram != nil:
		material = "As2805KeyCryptogram"
		out, err = exportAs2805(o, req, m.As2805KeyCryptogram)
		return material, out, err
	case m.KeyCryptogram != nil:
		material = "KeyCryptogram"
		const p = "KeyMaterial.KeyCryptogram"
		c := m.KeyCryptogram
		x := &ops.ExportKeyCryptogram{CAIdentifier: *c.CertificateAuthorityPublicKeyIdentifier}
		if x.Certificate, err = certificateMember(p+".WrappingKeyCertificate", *c.WrappingKeyCertificate); err != nil {
			return material, nil, err
		}
		if x.WrappingSpec, err = wrappingSpec(p+".WrappingSpec", c.WrappingSpec); err != nil {
			return material, nil, err
		}
		req.KeyCryptogram = x
	}
	w, err := o.ExportKey(req)
	if err != nil {
		return material, nil, err
	}
	return material, &cp.ExportKeyOutput{WrappedKey: wrappedKeyOutput(w)}, nil
}

// wrappedKeyOutput maps ExportKey's answer: a key block as it is, a binary
// cryptogram or TR-34 token in hexadecimal.
func wrappedKeyOutput(w *ops.WrappedKey) *cp.WrappedKey {
	material := w.KeyMaterial
	if w.Cryptogram != nil {
		material = hexText(w.Cryptogram)
	}
	return &cp.WrappedKey{
		WrappingKeyArn: opt(w.WrappingKeyARN), WrappedKeyMaterialFormat: enum[cp.WrappedKeyMaterialFormat](string(wrappedFormats[w.Format])),
		KeyMaterial: opt(material), KeyCheckValue: opt(w.KCV),
		KeyCheckValueAlgorithm: enum[cp.KeyCheckValueAlgorithm](string(w.KCVAlgorithm)),
	}
}

// importCertificate maps the RootCertificatePublicKey and TrustedCertificatePublicKey members of ImportKey.
func importCertificate(o *ops.Service, req ops.ImportKeyInput, m *cp.ImportKeyMaterial) (any, error) {
	in := ops.ImportCertificateInput{KCVAlgorithm: req.KCVAlgorithm, Enabled: req.Enabled, Tags: req.Tags, RequesterComment: req.RequesterComment,
		Caller: req.Caller, ReplicationRegions: req.ReplicationRegions}
	var err error
	if r := m.RootCertificatePublicKey; r != nil {
		in.Attributes = attributes(r.KeyAttributes)
		in.Certificate, err = certificateMember("KeyMaterial.RootCertificatePublicKey.PublicKeyCertificate", *r.PublicKeyCertificate)
	} else {
		t := m.TrustedCertificatePublicKey
		in.Attributes, in.CAIdentifier = attributes(t.KeyAttributes), *t.CertificateAuthorityPublicKeyIdentifier
		in.Certificate, err = certificateMember("KeyMaterial.TrustedCertificatePublicKey.PublicKeyCertificate", *t.PublicKeyCertificate)
	}
	if err != nil {
		return nil, err
	}
	k, err := o.ImportCertificate(in)
	if err != nil {
		return nil, err
	}
	return &cp.ImportKeyOutput{Key: key(k)}, nil
}

// importTR34 maps the Tr34KeyBlock member of ImportKey. Its KeyBlockFormat
// is validated against the model's one value (X9_TR34_2012), the only
// format the operations layer takes.
func importTR34(o *ops.Service, req ops.ImportKeyInput, x *cp.ImportTr34KeyBlock) (any, error) {
	const p = "KeyMaterial.Tr34KeyBlock"
	b := ops.ImportTr34{CAIdentifier: *x.CertificateAuthorityPublicKeyIdentifier, ImportToken: str(x.ImportToken),
		WrappingKeyIdentifier: str(x.WrappingKeyIdentifier)}
	var err error
	if b.SigningCertificate, err = certificateMember(p+".SigningKeyCertificate", *x.SigningKeyCertificate); err != nil {
		return nil, err
	}
	if b.WrappingKeyCertificate, err = optCertificateMember(p+".WrappingKeyCertificate", x.WrappingKeyCertificate); err != nil {
		return nil, err
	}
	if b.KeyBlock, err = hexMember(p+".WrappedKeyBlock", *x.WrappedKeyBlock); err != nil {
		return nil, err
	}
	if b.RandomNonce, err = optHexMember(p+".RandomNonce", x.RandomNonce); err != nil {
		return nil, err
	}
	k, err := o.ImportKeyTR34(req, b)
	if err != nil {
		return nil, err
	}
	return &cp.ImportKeyOutput{Key: key(k)}, nil
}

// importDiffieHellman maps the DiffieHellmanTr31KeyBlock member of ImportKey.
func importDiffieHellman(o *ops.Service, req ops.ImportKeyInput, x *cp.ImportDiffieHellmanTr31KeyBlock) (any, error) {
	dh, err := diffieHellman("KeyMaterial.DiffieHellmanTr31KeyBlock", x.PrivateKeyIdentifier, x.CertificateAuthorityPublicKeyIdentifier,
		x.PublicKeyCertificate, str(x.DeriveKeyAlgorithm), str(x.KeyDerivationFunction), str(x.KeyDerivationHashAlgorithm), sharedInformation(x.DerivationData))
	if err != nil {
		return nil, err
	}
	k, err := o.ImportKeyDiffieHellman(req, ops.ImportDiffieHellmanTr31{KeyBlock: *x.WrappedKeyBlock, DiffieHellman: dh})
	if err != nil {
		return nil, err
	}
	return &cp.ImportKeyOutput{Key: key(k)}, nil
}

// diffieHellman maps a DiffieHellmanTr31KeyBlock derivation, the member at
// path p (of ImportKey, ExportKey or TranslateKeyMaterial): its certificate
// (base64 of PEM) to DER, its shared information (DerivationData's
// SharedInformation, hexadecimal) to bytes and
// its KDF and hash to the operations layer's types (an unknown spelling to
// a value the operations layer refuses).
func diffieHellman(p string, priv, ca, cert *string, alg, kdf, hash string, info *string) (ops.DiffieHellman, error) {
	f, h := dp.KeyDerivationFunction(kdf), dp.KeyDerivationHashAlgorithm(hash)
	dh := ops.DiffieHellman{PrivateKeyIdentifier: str(priv), CAIdentifier: str(ca), DeriveKeyAlgorithm: keyspec.Algorithm(alg),
		KDF: opsEnum(&f, kdfs, badEnum), Hash: opsEnum(&h, kdfHashes, badEnum)}
	var err error
	if dh.Certificate, err = certificateMember(p+".PublicKeyCertificate", str(cert)); err != nil {
		return dh, err
	}
	if dh.SharedInformation, err = optHexMember(p+".DerivationData.SharedInformation", info); err != nil {
		return dh, err
	}
	return dh, nil
}

// sharedInformation is the SharedInformation member of d (nil when absent).
func sharedInformation(d *cp.DiffieHellmanDerivationData) *string {
	if d == nil {
		return nil
	}
	return d.SharedInformation
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
