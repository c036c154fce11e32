package ops

// Transitional (issue #13). The control plane's operations report faults by
// fault.Subject, and the AWS edge names the request member. Some data-plane
// code (as2805.go, dynamic_keys.go, ecdh_agree.go, translate_key_material.go)
// still calls the shared import/export helpers with AWS member paths and
// expects faults named by them, and the one ECDH agreement (agreeKey) still
// takes the member paths of its derivation. The wrappers below keep those
// callers' behaviour exactly until they pass subjects; then this file goes.
// It is the one place in ops/ that spells AWS member paths and decodes a wire
// encoding (DiffieHellman.Certificate, base64 of PEM, as agreeKey takes it).

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"

	"payhsm/fault"
	"payhsm/hsm/tr31"
	"payhsm/keyspec"
	"payhsm/keystore"
)

// DiffieHellmanTr31KeyBlock members, for tr31ECDHFields (ecdh_agree.go).
const (
	legacyImportDHMember = "KeyMaterial.DiffieHellmanTr31KeyBlock"
	legacyExportDHMember = "KeyMaterial.DiffieHellmanTr31KeyBlock"
)

// memberPaths maps the subjects of the faults one call raises to the
// request member paths its caller reports them under.
type memberPaths map[fault.Subject]string

// name reports err's fault under the member path of its subject, as
// fault.FieldInvalid did: the path becomes Field and prefixes the message.
// Faults already named, or about a subject not in m, are left alone.
func (m memberPaths) name(err error) error {
	var f *fault.Error
	if !errors.As(err, &f) || f.Field != "" || f.Subject == fault.SubjectNone {
		return err
	}
	if path, ok := m[f.Subject]; ok && path != "" {
		f.Field = path
		f.Message = path + ": " + f.Message
	}
	return err
}

// nameState gives a key-state fault (raised by Working, which is passed no
// member) the Field Working used to set, without a message prefix.
func nameState(err error, field string) error {
	var f *fault.Error
	if errors.As(err, &f) && f.Field == "" && f.Subject == fault.SubjectNone && f.Violation == fault.ViolationState {
		f.Field = field
	}
	return err
}

// headerPaths are the member paths of the KeyBlockHeaders member at path.
func headerPaths(m memberPaths, path string) memberPaths {
	m[fault.SubjectHeaderModesOfUse] = path + ".KeyModesOfUse"
	m[fault.SubjectHeaderExportability] = path + ".KeyExportability"
	m[fault.SubjectHeaderKeyVersion] = path + ".KeyVersion"
	m[fault.SubjectHeaderOptionalBlocks] = path + ".OptionalBlocks"
	return m
}

// attributesFromHeaderField is attributesFromHeader naming field (dynamic_keys.go).
func attributesFromHeaderField(h tr31.Header, keyLen int, field string) (keyspec.Attributes, bool, error) {
	a, exportable, err := attributesFromHeader(h, keyLen)
	return a, exportable, memberPaths{fault.SubjectWrappedKey: field}.name(err)
}

// storeImported is storeKey naming field (as2805.go).
func (s *Service) storeImported(in ImportKeyInput, a keyspec.Attributes, derive keyspec.KeyUsage, exportable bool, key []byte, field string) (*Key, error) {
	k, err := s.storeKey(in, a, derive, exportable, key)
	return k, memberPaths{fault.SubjectKeyMaterial: field, fault.SubjectKeyModesOfUse: "KeyAttributes.KeyModesOfUse",
		fault.SubjectKeyCheckValueAlgorithm: "KeyCheckValueAlgorithm", fault.SubjectTags: "Tags"}.name(err)
}

// loadExport is exportableKey naming ExportKey's members (as2805.go).
func (s *Service) loadExport(in ExportKeyInput) (*exportable, error) {
	e, err := s.exportableKey(in)
	return e, memberPaths{fault.SubjectKey: "ExportKeyIdentifier",
		fault.SubjectKeyCheckValueAlgorithm: "ExportAttributes.KeyCheckValueAlgorithm",
		fault.SubjectInitialKeySerialNumber: "ExportAttributes.ExportDukptInitialKey.KeySerialNumber"}.name(err)
}

// tr31KEK is keyEncryptionKey naming field (translate_key_material.go).
func (s *Service) tr31KEK(ident, field string, unwrap bool) (*WorkingKey, error) {
	w, err := s.keyEncryptionKey(ident, unwrap)
	return w, nameState(memberPaths{fault.SubjectWrappingKey: field}.name(err), field)
}

// wrapTR31 is wrapKeyBlock naming field (the KEK) and headersField
// (translate_key_material.go).
func (s *Service) wrapTR31(e *exportable, kekIdent, field string, kh *KeyBlockHeaders, headersField string) (*WrappedKey, error) {
	out, err := s.wrapKeyBlock(e, kekIdent, kh)
	return out, nameState(headerPaths(memberPaths{fault.SubjectWrappingKey: field}, headersField).name(err), field)
}

// openDiffieHellmanBlock is openAgreedBlock naming the block under member m
// (translate_key_material.go).
func (s *Service) openDiffieHellmanBlock(b ImportDiffieHellmanTr31, m string) (*openedBlock, error) {
	o, err := s.openAgreedBlock(b, m)
	return o, memberPaths{fault.SubjectWrappedKey: m + ".WrappedKeyBlock"}.name(err)
}

// verifyLeaf decodes a certificate as the AWS API carries it (base64 of
// PEM) and verifies it under the CA caIdent, naming caField and certField
// (agreeKey in ecdh_agree.go, whose DiffieHellman.Certificate is still the
// wire form).
func (s *Service) verifyLeaf(caIdent, caField, certB64, certField string) (*x509.Certificate, *keystore.Key, error) {
	der, err := legacyCertificateDER(certField, certB64)
	if err != nil {
		return nil, nil, err
	}
	c, ca, err := s.verifyPartner(caIdent, der)
	return c, ca, memberPaths{fault.SubjectCertificateAuthority: caField, fault.SubjectCertificate: certField}.name(err)
}

// legacyCertificateDER decodes one certificate as the AWS API carries it:
// base64 of a PEM "CERTIFICATE" block (raw PEM and base64 DER are accepted
// too). Errors name field and never echo the input.
func legacyCertificateDER(field, s string) ([]byte, error) {
	if len(s) == 0 || len(s) > maxCertificateLen {
		return nil, fault.FieldInvalid(field, "must be a certificate of 1 to %d characters", maxCertificateLen)
	}
	raw := []byte(s)
	if !strings.Contains(s, "-----BEGIN") {
		dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
		if err != nil {
			return nil, fault.FieldInvalid(field, "must be a base64-encoded PEM certificate")
		}
		raw = dec
	}
	if blk, rest := pem.Decode(raw); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return nil, fault.FieldInvalid(field, "the PEM block is a %.32q, not a CERTIFICATE", blk.Type)
		}
		if len(strings.TrimSpace(string(rest))) != 0 {
			return nil, fault.FieldInvalid(field, "must hold exactly one certificate")
		}
		return blk.Bytes, nil
	}
	return raw, nil
}
