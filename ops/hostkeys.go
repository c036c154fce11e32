package ops

import (
	"payhsm/fault"
	"payhsm/ops/keyspec"
)

// GenerateKeyBlock generates a symmetric key and returns it as an X9.143
// block under profile's main key (payShield's key-under-LMK form), with its
// check value. The key is not stored: the caller keeps the block and passes
// it back (BlockIdent) to use it.
func (s *Service) GenerateKeyBlock(profile string, a keyspec.Attributes, exportable bool) (block, kcv string, err error) {
	if err := keyspec.ValidateCreate(a, ""); err != nil {
		return "", "", err
	}
	if !a.Algorithm.IsSymmetric() {
		return "", "", fault.FieldInvalid("KeyAlgorithm", "only symmetric keys are generated as key blocks")
	}
	p, err := s.cust.Profile(profile)
	if err != nil {
		return "", "", fault.NotFoundf(profile, "profile %s has no main key", profile)
	}
	key, err := newSymmetricKey(a.Algorithm)
	if err != nil {
		return "", "", fault.Internalf("generate key", err)
	}
	defer clear(key)
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
