package ops

// Keys carried by the host protocol: payShield keeps keys with the switch as
// blocks under its LMK rather than in a database, so these operations return
// X9.143 blocks under a profile main key (the "S" key form) and store nothing.

import (
	"payhsm/fault"
	"payhsm/keyspec"
)

// GenerateKeyBlock generates a symmetric key and returns it as an X9.143
// block under profile's main key (payShield's A0), with its check value. The
// caller keeps the block and passes it back (BlockIdent) to use it.
func (s *Service) GenerateKeyBlock(profile string, a keyspec.Attributes, exportable bool) (block, kcv string, err error) {
	if err := validateBlockKey(a); err != nil {
		return "", "", err
	}
	key, err := newSymmetricKey(a.Algorithm)
	if err != nil {
		return "", "", fault.Internalf("generate key", err)
	}
	defer clear(key)
	return s.profileBlock(profile, a, exportable, key)
}

// GenerateKeyBlockExport generates a symmetric key as GenerateKeyBlock does
// and also returns it under the K0 or K1 key kekIdent as ExportKeyBlock does
// (payShield's A0 mode 1): the key must be exportable (canExport), the KEK
// may wrap and is at least as strong. exportability, when set, restricts the
// exported block's. When the export is refused, the key is discarded.
func (s *Service) GenerateKeyBlockExport(profile string, a keyspec.Attributes, canExport bool, kekIdent string, exportability keyspec.Exportability) (block, kekBlock, kcv string, err error) {
	if err := validateBlockKey(a); err != nil {
		return "", "", "", err
	}
	if !canExport {
		return "", "", "", keyRuleAbout(fault.ViolationExportability, fault.SubjectExportability, "a key generated for export must be exportable")
	}
	key, err := newSymmetricKey(a.Algorithm)
	if err != nil {
		return "", "", "", fault.Internalf("generate key", err)
	}
	defer clear(key)
	h, err := storedHeader("", a, true)
	if err != nil {
		return "", "", "", err
	}
	var kh *KeyBlockHeaders
	if exportability != "" {
		kh = &KeyBlockHeaders{Exportability: exportability}
	}
	out, err := s.wrapKeyBlock(&exportable{attrs: a, header: h, key: key}, kekIdent, kh)
	if err != nil {
		return "", "", "", err
	}
	if block, kcv, err = s.profileBlock(profile, a, true, key); err != nil {
		return "", "", "", err
	}
	return block, out.KeyMaterial, kcv, nil
}

// ImportKeyBlock opens an X9.143 key block protected by the K0 or K1 key
// kekIdent exactly as ImportKey does (openTR31: the KEK may unwrap, the block
// verifies, its header describes an importable key, the KEK is at least as
// strong) and returns the key re-wrapped under profile's main key with its
// check value (payShield's A6).
func (s *Service) ImportKeyBlock(profile, kekIdent, block string) (lmkBlock, kcv string, err error) {
	kek, err := s.keyEncryptionKey(kekIdent, true)
	if err != nil {
		return "", "", err
	}
	defer kek.Release()
	o, err := openTR31(kek.Material, kek.Record.Attributes.Algorithm, block)
	if err != nil {
		return "", "", err
	}
	defer clear(o.key)
	return s.profileBlock(profile, o.attrs, o.exportable, o.key)
}

// ExportKeyBlock wraps the key keyIdent in an X9.143 block under the K0 or
// K1 key kekIdent exactly as ExportKey's TR-31 export does (wrapKeyBlock: the
// key is symmetric and exportable, the KEK may wrap and is at least as
// strong; version B under a TDES KEK, D under AES) and returns the block
// with the key's check value (payShield's A8). exportability, when set,
// restricts the exported block's.
func (s *Service) ExportKeyBlock(keyIdent, kekIdent string, exportability keyspec.Exportability) (block, kcv string, err error) {
	w, err := s.Working(keyIdent, fault.SubjectKey, fault.SideNone)
	if err != nil {
		return "", "", err
	}
	defer w.Release()
	a := w.Attributes()
	if a.Class != keyspec.Symmetric || !a.Algorithm.IsSymmetric() {
		return "", "", fault.About(fault.SubjectKey, "only symmetric keys are exported")
	}
	if !w.Record.Exportable {
		return "", "", keyRuleAbout(fault.ViolationExportability, fault.SubjectKey, "the key is not exportable")
	}
	var kh *KeyBlockHeaders
	if exportability != "" {
		kh = &KeyBlockHeaders{Exportability: exportability}
	}
	// The working key's material is shared and read-only: wrapKeyBlock only reads it.
	e := &exportable{rec: w.Record, attrs: a, header: w.Header, key: w.Material}
	out, err := s.wrapKeyBlock(e, kekIdent, kh)
	if err != nil {
		return "", "", err
	}
	return out.KeyMaterial, w.KCV(), nil
}

// validateBlockKey checks the attributes of a key generated as a key block.
func validateBlockKey(a keyspec.Attributes) error {
	if err := keyspec.ValidateCreate(a, ""); err != nil {
		return err
	}
	if !a.Algorithm.IsSymmetric() {
		return fault.About(fault.SubjectKeyAlgorithm, "only symmetric keys are generated as key blocks")
	}
	return nil
}

// profileBlock wraps clear key material under profile's main key with the
// stored-key header of a and returns the block with the key's check value.
func (s *Service) profileBlock(profile string, a keyspec.Attributes, exportable bool, key []byte) (block, kcv string, err error) {
	p, err := s.cust.Profile(profile)
	if err != nil {
		return "", "", fault.NotFoundf(profile, "profile %s has no main key", profile)
	}
	if kcv, err = symmetricKCV(a.Algorithm, keyspec.DefaultKCVAlgorithm(a.Algorithm), key); err != nil {
		return "", "", err
	}
	h, err := storedHeader("", a, exportable)
	if err != nil {
		return "", "", err
	}
	if block, err = p.Wrap(h, key); err != nil {
		return "", "", fault.Internalf("wrap key under profile main key", err)
	}
	return block, kcv, nil
}
