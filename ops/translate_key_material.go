package ops

// TranslateKeyMaterial (data plane): a short-lived key (a per-transaction PEK,
// say) arrives in an X9.143 key block under a one-time KBPK agreed by ECDH
// between a stored K3 key pair and the partner's certificate, and leaves in a
// key block under a stored K0/K1 KEK. The key exists in the clear only in
// memory for the request and is zeroed afterwards; nothing is stored.

import (
	"errors"

	"payhsm/fault"
	"payhsm/keyspec"
)

// TranslateKeyMaterialInput is TranslateKeyMaterial's request.
type TranslateKeyMaterialInput struct {
	// Incoming is the incoming key block and the agreement of its KBPK (the
	// control plane's DiffieHellman shape); faults about it are on
	// SideIncoming.
	Incoming ImportDiffieHellmanTr31
	// OutgoingWrappingKeyIdentifier is the KEK of the outgoing key block;
	// faults about it are about SubjectWrappingKey on SideOutgoing.
	OutgoingWrappingKeyIdentifier string
	// KCVAlgorithm is the check value method of the translated key ("" = its algorithm's default).
	KCVAlgorithm keyspec.KCVAlgorithm
}

// TranslatedKey is TranslateKeyMaterial's answer (the WrappedWorkingKey shape).
type TranslatedKey struct {
	KeyMaterial string          // the outgoing key block
	Format      KeyMaterialType // FormatTR31
	KCV         string          // of the translated key
}

// TranslateKeyMaterial opens the incoming key block under the ECDH-derived
// KBPK (openAgreedBlock: K3 key pair deriving K0/K1 keys, certificate
// chained to an imported CA, KBPK at least as strong as the key) and wraps
// the key under the outgoing KEK (wrapKeyBlock: a K0/K1 key allowed to wrap,
// at least as strong as the key; version B under TDES, D under AES). The
// key's usage, algorithm, mode of use, version and exportability travel
// unchanged; a key whose block makes it non-exportable is refused. The
// incoming block's header, carried into the outgoing one, is the incoming
// side's: faults about it are about SubjectWrappedKey on SideIncoming.
func (s *Service) TranslateKeyMaterial(in TranslateKeyMaterialInput) (*TranslatedKey, error) {
	if in.KCVAlgorithm != "" {
		if _, ok := keyspec.ParseKCVAlgorithm(string(in.KCVAlgorithm)); !ok {
			return nil, about(fault.SubjectKeyCheckValueAlgorithm, fault.SideNone, "%.32q is not a check value algorithm", string(in.KCVAlgorithm))
		}
	}
	// Resolve the outgoing KEK before any cryptography.
	kek, err := s.keyEncryptionKey(in.OutgoingWrappingKeyIdentifier, false)
	if err != nil {
		return nil, onSide(err, fault.SideOutgoing)
	}
	kek.Release()
	o, err := s.openAgreedBlock(in.Incoming, fault.SideIncoming)
	if err != nil {
		return nil, err
	}
	defer clear(o.key)
	if !o.exportable {
		return nil, about(fault.SubjectWrappedKey, fault.SideIncoming, "the key block marks the key non-exportable: it cannot be wrapped under another key")
	}
	method, err := kcvMethod(o.attrs.Algorithm, in.KCVAlgorithm)
	if err != nil {
		return nil, err
	}
	kcv, err := symmetricKCV(o.attrs.Algorithm, method, o.key)
	if err != nil {
		return nil, err
	}
	e := &exportable{attrs: o.attrs, header: o.header, key: o.key}
	out, err := s.wrapKeyBlock(e, in.OutgoingWrappingKeyIdentifier, carriedHeaders(o))
	if err != nil {
		return nil, translatedFault(err)
	}
	return &TranslatedKey{KeyMaterial: out.KeyMaterial, Format: out.Format, KCV: kcv}, nil
}

// translatedFault puts a fault of wrapKeyBlock on its side: the KEK's on
// SideOutgoing, the carried header's (the incoming block's) on SideIncoming
// as SubjectWrappedKey.
func translatedFault(err error) error {
	var f *fault.Error
	if !errors.As(err, &f) {
		return err
	}
	switch f.Subject {
	case fault.SubjectHeaderModesOfUse, fault.SubjectHeaderExportability, fault.SubjectHeaderKeyVersion, fault.SubjectHeaderOptionalBlocks:
		f.Subject = fault.SubjectWrappedKey
		return onSide(err, fault.SideIncoming)
	}
	return onSide(err, fault.SideOutgoing)
}

// carriedHeaders keeps the incoming block's key version, exportability and
// optional blocks, except those that describe the old wrapping (KP, PB) and
// HM, which exportHeader carries itself.
func carriedHeaders(o *openedBlock) *KeyBlockHeaders {
	h := o.header
	kh := &KeyBlockHeaders{KeyVersion: h.KeyVersion, OptionalBlocks: map[string]string{}}
	if x, err := keyspec.ExportabilityFromTR31(h.Exportability); err == nil {
		kh.Exportability = x
	}
	for _, b := range h.Blocks {
		switch b.ID {
		case "KP", "PB", "HM", bindingBlock:
		default:
			kh.OptionalBlocks[b.ID] = b.Data
		}
	}
	return kh
}
