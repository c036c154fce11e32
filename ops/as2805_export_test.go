package ops

import (
	"crypto/cipher"

	"payhsm/fault"
	"payhsm/keyspec"
)

// As2805KPEForTest exposes to ops_test the AS2805 session PIN key that
// TranslatePinData derives from the stored KPP ident for IncomingAs2805Attributes.
func (s *Service) As2805KPEForTest(ident, stan, amount string) (cipher.Block, func(), error) {
	w, err := s.Working(ident, fault.SubjectPinEncryptionKey, fault.SideIncoming)
	if err != nil {
		return nil, nil, err
	}
	k, err := s.as2805SessionPinKey(w, fault.SubjectPinEncryptionKey, fault.SideIncoming, &PinAs2805{STAN: stan, Amount: amount}, keyspec.UseTranslatePinIncomingKPP)
	if err != nil {
		return nil, nil, err
	}
	return k.block, k.release, nil
}
