package ops

import (
	"payhsm/fault"
	"payhsm/hsm/dukpt"
	"payhsm/keyspec"
)

// dukptPurpose is what a DUKPT working key is derived for.
type dukptPurpose int

const (
	dukptData dukptPurpose = iota
	dukptMAC
)

// bdkKeyType is the DUKPT key type of an AES BDK.
func bdkKeyType(a keyspec.Algorithm) dukpt.KeyType {
	switch a {
	case keyspec.AES192:
		return dukpt.AES192
	case keyspec.AES256:
		return dukpt.AES256
	}
	return dukpt.AES128
}

// dukptWorkingKey derives, from BDK w, the working key of transaction ksn
// for purpose p and the request's variant and derivation type (defaultType
// applies to AES DUKPT when derivType is empty). Its faults are about the
// DUKPT attributes of side. The caller owns and clears the key. The BDK's
// usage, algorithm and modes must already have been checked.
func dukptWorkingKey(w *WorkingKey, side fault.Side, ksn []byte, derivType keyspec.Algorithm, variant DukptVariant, p dukptPurpose, defaultType dukpt.KeyType) ([]byte, dukpt.KeyType, error) {
	if variant > DukptResponse {
		return nil, 0, about(fault.SubjectDukptVariant, side, "unknown variant")
	}
	if w.Record.Attributes.Algorithm.IsTDES() {
		if derivType != "" && derivType != keyspec.TDES2Key {
			return nil, 0, about(fault.SubjectDukptDerivationType, side, "a TDES_2KEY BDK (ANSI X9.24-1) derives only TDES_2KEY keys")
		}
		k, err := dukpt.ParseTDESKSN(ksn)
		if err != nil {
			return nil, 0, about(fault.SubjectKeySerialNumber, side, "TDES DUKPT needs a 10-byte key serial number with a valid transaction counter")
		}
		v := [...][3]dukpt.TDESVariant{
			dukptData: {DukptBidirectional: dukpt.DataRequestVariant, DukptRequest: dukpt.DataRequestVariant, DukptResponse: dukpt.DataResponseVariant},
			dukptMAC:  {DukptBidirectional: dukpt.MACRequestVariant, DukptRequest: dukpt.MACRequestVariant, DukptResponse: dukpt.MACResponseVariant},
		}[p][variant]
		key, err := dukpt.TDESKey(w.Material, k, v)
		if err != nil {
			return nil, 0, fault.Internalf("TDES DUKPT derivation", err)
		}
		return key, dukpt.TDES2, nil
	}
	k, err := dukpt.ParseAESKSN(ksn)
	if err != nil {
		return nil, 0, about(fault.SubjectKeySerialNumber, side, "AES DUKPT needs a 12-byte key serial number with a valid transaction counter")
	}
	t := defaultType
	if derivType != "" {
		var ok bool
		if t, ok = dukptTypes[derivType]; !ok {
			return nil, 0, about(fault.SubjectDukptDerivationType, side, "unknown derivation type")
		}
	}
	u := [...][3]dukpt.Usage{
		dukptData: {DukptBidirectional: dukpt.UsageDataBoth, DukptRequest: dukpt.UsageDataEncrypt, DukptResponse: dukpt.UsageDataDecrypt},
		dukptMAC:  {DukptBidirectional: dukpt.UsageMACBoth, DukptRequest: dukpt.UsageMACGeneration, DukptResponse: dukpt.UsageMACVerification},
	}[p][variant]
	key, err := dukpt.AESKey(w.Material, k, u, t)
	if err != nil {
		// The only failure left is a working key stronger than the BDK.
		return nil, 0, about(fault.SubjectDukptDerivationType, side, "%s is stronger than the %s BDK", t, w.Record.Attributes.Algorithm)
	}
	return key, t, nil
}
