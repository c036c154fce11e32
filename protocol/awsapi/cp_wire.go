package awsapi

// The control plane's wire forms and names. The AWS API carries binary values
// in hexadecimal (key cryptograms, TR-34 tokens, nonces, key serial numbers)
// and certificates as base64 of PEM, and names enums its own way; the
// operations layer takes bytes, DER and typed values, so they are decoded and
// encoded here. Its faults say what they are about by fault.Subject, never by
// an AWS member: members maps each subject to the member path AWS names in
// its messages, per operation and key material.

import (
	"crypto"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"

	"payhsm/fault"
	"payhsm/ops"
	cp "payhsm/protocol/awsapi/cpshape"
)

// members maps the subjects of the faults one call can raise to the request
// member paths they are reported under.
type members map[fault.Subject]string

// name reports err's fault under the member path of its subject, as AWS
// names a member in a ValidationException: the path prefixes its message
// (memberFault). Faults already located (by the edge's own decoding), and
// faults about a subject this call does not map, are left alone.
func (m members) name(err error) error { return place(err, m.path) }

// path is m as a memberPath (the control plane's members have no sides).
func (m members) path(_ fault.Side, subj fault.Subject) string { return m[subj] }

// plus returns m with more's entries added (more wins).
func (m members) plus(more members) members {
	out := make(members, len(m)+len(more))
	for k, v := range m {
		out[k] = v
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}

// headerMembers are the members of a KeyBlockHeaders member at path.
func headerMembers(path string) members {
	return members{
		fault.SubjectHeaderModesOfUse:     path + ".KeyModesOfUse",
		fault.SubjectHeaderExportability:  path + ".KeyExportability",
		fault.SubjectHeaderKeyVersion:     path + ".KeyVersion",
		fault.SubjectHeaderOptionalBlocks: path + ".OptionalBlocks",
	}
}

// Members of the lifecycle operations.
var (
	createKeyMembers = members{fault.SubjectKeyCheckValueAlgorithm: "KeyCheckValueAlgorithm", fault.SubjectTags: "Tags",
		fault.SubjectDeriveKeyUsage: "DeriveKeyUsage", fault.SubjectReplicationRegions: "ReplicationRegions"}.plus(attributeMembers(""))
	listMembers        = members{fault.SubjectPageToken: "NextToken"}
	deleteKeyMembers   = members{fault.SubjectDeletionPeriod: "DeleteKeyInDays"}
	tagMembers         = members{fault.SubjectTags: "Tags"}
	importParamMembers = members{fault.SubjectKeyMaterialType: "KeyMaterialType", fault.SubjectTokenKeyAlgorithm: "WrappingKeyAlgorithm"}
	exportParamMembers = members{fault.SubjectKeyMaterialType: "KeyMaterialType", fault.SubjectTokenKeyAlgorithm: "SigningKeyAlgorithm"}
	csrMembers         = members{fault.SubjectKey: "KeyIdentifier", fault.SubjectSigningAlgorithm: "SigningAlgorithm",
		fault.SubjectCertificateSubject: "CertificateSubject", fault.SubjectCommonName: "CertificateSubject.CommonName",
		fault.SubjectCountry: "CertificateSubject.Country"}
)

// attributeMembers are the members of a KeyAttributes member at path p
// (p + ".KeyAttributes"), or of CreateKey's own (p == "").
func attributeMembers(p string) members {
	a := join(p, "KeyAttributes")
	return members{fault.SubjectKeyAlgorithm: a + ".KeyAlgorithm", fault.SubjectKeyClass: a + ".KeyClass",
		fault.SubjectKeyUsage: a + ".KeyUsage", fault.SubjectKeyModesOfUse: a + ".KeyModesOfUse"}
}

// diffieHellmanMembers are the members of a DiffieHellmanTr31KeyBlock
// derivation at path p.
func diffieHellmanMembers(p string) members {
	return members{fault.SubjectAgreementKey: p + ".PrivateKeyIdentifier",
		fault.SubjectCertificateAuthority: p + ".CertificateAuthorityPublicKeyIdentifier",
		fault.SubjectCertificate:          p + ".PublicKeyCertificate", fault.SubjectDerivedKeyAlgorithm: p + ".DeriveKeyAlgorithm",
		fault.SubjectKDF: p + ".KeyDerivationFunction", fault.SubjectKDFHash: p + ".KeyDerivationHashAlgorithm",
		fault.SubjectSharedInformation: p + ".DerivationData.SharedInformation"}
}

// importMembers are ImportKey's members for each member of its KeyMaterial union.
var importMembers = func() map[string]members {
	common := members{fault.SubjectKeyCheckValueAlgorithm: "KeyCheckValueAlgorithm", fault.SubjectTags: "Tags",
		fault.SubjectKeyMaterial: "KeyMaterial", fault.SubjectReplicationRegions: "ReplicationRegions"}
	attrs := func(p string) members {
		return members{fault.SubjectKeyMaterial: p}.plus(attributeMembers(p))
	}
	// A key whose attributes come from a key block's header: faults about them are about the block.
	block := func(p string) members {
		b := p + ".WrappedKeyBlock"
		return members{fault.SubjectKeyMaterial: p, fault.SubjectWrappedKey: b, fault.SubjectKeyAlgorithm: b,
			fault.SubjectKeyClass: b, fault.SubjectKeyUsage: b, fault.SubjectKeyModesOfUse: b}
	}
	const (
		cryptogram = "KeyMaterial.KeyCryptogram"
		tr31       = "KeyMaterial.Tr31KeyBlock"
		tr34       = "KeyMaterial.Tr34KeyBlock"
		dh         = "KeyMaterial.DiffieHellmanTr31KeyBlock"
		root       = "KeyMaterial.RootCertificatePublicKey"
		trusted    = "KeyMaterial.TrustedCertificatePublicKey"
		as2805     = "KeyMaterial.As2805KeyCryptogram"
	)
	return map[string]members{
		"": common,
		"KeyCryptogram": common.plus(attrs(cryptogram)).plus(members{fault.SubjectToken: cryptogram + ".ImportToken",
			fault.SubjectWrappedKey: cryptogram + ".WrappedKeyCryptogram", fault.SubjectWrappingSpec: cryptogram + ".WrappingSpec"}),
		"Tr31KeyBlock": common.plus(block(tr31)).plus(members{fault.SubjectWrappingKey: tr31 + ".WrappingKeyIdentifier"}),
		"Tr34KeyBlock": common.plus(block(tr34)).plus(members{fault.SubjectToken: tr34 + ".ImportToken",
			fault.SubjectCertificateAuthority: tr34 + ".CertificateAuthorityPublicKeyIdentifier",
			fault.SubjectCertificate:          tr34 + ".SigningKeyCertificate", fault.SubjectNonce: tr34 + ".RandomNonce",
			fault.SubjectWrappingKey: tr34 + ".WrappingKeyIdentifier", fault.SubjectOwnCertificate: tr34 + ".WrappingKeyCertificate"}),
		"DiffieHellmanTr31KeyBlock": common.plus(block(dh)).plus(diffieHellmanMembers(dh)),
		"RootCertificatePublicKey":  common.plus(attrs(root)).plus(members{fault.SubjectCertificate: root + ".PublicKeyCertificate"}),
		"TrustedCertificatePublicKey": common.plus(attrs(trusted)).plus(members{fault.SubjectCertificate: trusted + ".PublicKeyCertificate",
			fault.SubjectCertificateAuthority: trusted + ".CertificateAuthorityPublicKeyIdentifier"}),
		"As2805KeyCryptogram": common.plus(as2805Members(as2805)).plus(members{fault.SubjectKeyAlgorithm: as2805 + ".KeyAlgorithm",
			fault.SubjectKeyModesOfUse: as2805 + ".KeyModesOfUse", fault.SubjectKeyCryptogram: as2805 + ".WrappedKeyCryptogram"}),
	}
}()

// as2805Members are the members of an As2805KeyCryptogram member at path p
// that ImportKey and ExportKey share.
func as2805Members(p string) members {
	return members{fault.SubjectAs2805Variant: p + ".As2805KeyVariant", fault.SubjectWrappingKey: p + ".WrappingKeyIdentifier"}
}

// exportMembers are ExportKey's members for each member of its KeyMaterial union.
var exportMembers = func() map[string]members {
	common := members{fault.SubjectKey: "ExportKeyIdentifier", fault.SubjectKeyMaterial: "KeyMaterial",
		fault.SubjectKeyCheckValueAlgorithm: "ExportAttributes.KeyCheckValueAlgorithm",
		fault.SubjectInitialKeySerialNumber: "ExportAttributes.ExportDukptInitialKey.KeySerialNumber"}
	const (
		cryptogram = "KeyMaterial.KeyCryptogram"
		tr31       = "KeyMaterial.Tr31KeyBlock"
		tr34       = "KeyMaterial.Tr34KeyBlock"
		dh         = "KeyMaterial.DiffieHellmanTr31KeyBlock"
		as2805     = "KeyMaterial.As2805KeyCryptogram"
	)
	return map[string]members{
		"": common,
		"KeyCryptogram": common.plus(members{fault.SubjectCertificateAuthority: cryptogram + ".CertificateAuthorityPublicKeyIdentifier",
			fault.SubjectCertificate: cryptogram + ".WrappingKeyCertificate", fault.SubjectWrappingSpec: cryptogram + ".WrappingSpec"}),
		"Tr31KeyBlock": common.plus(headerMembers(tr31 + ".KeyBlockHeaders")).plus(members{fault.SubjectWrappingKey: tr31 + ".WrappingKeyIdentifier"}),
		"Tr34KeyBlock": common.plus(headerMembers(tr34 + ".KeyBlockHeaders")).plus(members{fault.SubjectToken: tr34 + ".ExportToken",
			fault.SubjectCertificateAuthority: tr34 + ".CertificateAuthorityPublicKeyIdentifier",
			fault.SubjectCertificate:          tr34 + ".WrappingKeyCertificate", fault.SubjectNonce: tr34 + ".RandomNonce",
			fault.SubjectSigningKey: tr34 + ".SigningKeyIdentifier", fault.SubjectOwnCertificate: tr34 + ".SigningKeyCertificate"}),
		"DiffieHellmanTr31KeyBlock": common.plus(headerMembers(dh + ".KeyBlockHeaders")).plus(diffieHellmanMembers(dh)),
		// An initial DUKPT key cannot leave as an AS2805 cryptogram: the KSN is
		// refused as such (SubjectKeySerialNumber), at the member that asks for it.
		"As2805KeyCryptogram": common.plus(as2805Members(as2805)).plus(members{fault.SubjectKeySerialNumber: "ExportAttributes.ExportDukptInitialKey"}),
	}
}()

// Enum spellings of the model mapped onto the operations layer's types.
var (
	keyMaterialTypes = map[cp.KeyMaterialType]ops.KeyMaterialType{
		cp.KeyMaterialTypeKeyCryptogram:               ops.MaterialKeyCryptogram,
		cp.KeyMaterialTypeTr31KeyBlock:                ops.MaterialTR31,
		cp.KeyMaterialTypeTr34KeyBlock:                ops.MaterialTR34,
		cp.KeyMaterialTypeRootPublicKeyCertificate:    ops.MaterialRootCertificate,
		cp.KeyMaterialTypeTrustedPublicKeyCertificate: ops.MaterialTrustedCertificate,
	}
	wrappingSpecs = map[cp.WrappingKeySpec]ops.WrappingSpec{
		cp.WrappingKeySpecRsaOaepSha256: ops.OAEPSHA256,
		cp.WrappingKeySpecRsaOaepSha512: ops.OAEPSHA512,
	}
	wrappedFormats = map[ops.KeyMaterialType]cp.WrappedKeyMaterialFormat{
		ops.FormatKeyCryptogram: cp.WrappedKeyMaterialFormatKeyCryptogram,
		ops.FormatTR31:          cp.WrappedKeyMaterialFormatTr31KeyBlock,
		ops.FormatTR34:          cp.WrappedKeyMaterialFormatTr34KeyBlock,
	}
	signingHashes = map[cp.SigningAlgorithmType]crypto.Hash{
		cp.SigningAlgorithmTypeSha224: crypto.SHA224, cp.SigningAlgorithmTypeSha256: crypto.SHA256,
		cp.SigningAlgorithmTypeSha384: crypto.SHA384, cp.SigningAlgorithmTypeSha512: crypto.SHA512,
	}
)

// wrappingSpec maps an optional WrappingSpec member (absent: RSA_OAEP_SHA_256).
func wrappingSpec(path string, p *cp.WrappingKeySpec) (ops.WrappingSpec, error) {
	if p == nil {
		return ops.OAEPSHA256, nil
	}
	w, ok := wrappingSpecs[*p]
	if !ok {
		return 0, invalid(path, "must be RSA_OAEP_SHA_256 or RSA_OAEP_SHA_512")
	}
	return w, nil
}

// hexMember decodes a hexadecimal member (the model's patterns allow upper
// case only; lower case is accepted too).
func hexMember(path, s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, invalid(path, "must be hexadecimal")
	}
	return b, nil
}

// optHexMember is hexMember for an optional member: nil when absent.
func optHexMember(path string, p *string) ([]byte, error) {
	if p == nil {
		return nil, nil
	}
	return hexMember(path, *p)
}

// hexText encodes binary output as the API does: upper-case hexadecimal.
func hexText(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

// maxCertificateLen bounds a certificate member (the model's CertificateType max).
const maxCertificateLen = 32768

// certificateMember decodes one X.509 certificate as the AWS API carries it
// (base64 of a PEM "CERTIFICATE" block; raw PEM and base64 DER are accepted
// too) into DER, which the operations layer parses. Errors name path and
// never echo the input.
func certificateMember(path, s string) ([]byte, error) {
	if len(s) == 0 || len(s) > maxCertificateLen {
		return nil, invalid(path, fmt.Sprintf("must be a certificate of 1 to %d characters", maxCertificateLen))
	}
	raw := []byte(s)
	if !strings.Contains(s, "-----BEGIN") {
		dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
		if err != nil || len(dec) == 0 {
			return nil, invalid(path, "must be a base64-encoded PEM certificate")
		}
		raw = dec
	}
	blk, rest := pem.Decode(raw)
	if blk == nil {
		return raw, nil // base64 of DER
	}
	if blk.Type != "CERTIFICATE" {
		return nil, invalid(path, fmt.Sprintf("the PEM block is a %.32q, not a CERTIFICATE", blk.Type))
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, invalid(path, "must hold exactly one certificate")
	}
	if len(blk.Bytes) == 0 {
		return nil, invalid(path, "the CERTIFICATE block is empty")
	}
	return blk.Bytes, nil
}

// optCertificateMember is certificateMember for an optional member: nil when absent.
func optCertificateMember(path string, p *string) ([]byte, error) {
	if p == nil {
		return nil, nil
	}
	return certificateMember(path, *p)
}

// pemBase64 is how the API carries a certificate or a certificate signing
// request: base64 of the PEM block of type typ around der.
func pemBase64(typ string, der []byte) *string {
	if len(der) == 0 {
		return nil
	}
	return opt(base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})))
}
