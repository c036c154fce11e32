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

// dukptDerivationTypes maps the AWS DukptDerivationType names.
var dukptDerivationTypes = map[string]dukpt.KeyType{
	"TDES_2KEY": dukpt.TDES2, "TDES_3KEY": dukpt.TDES3,
	"AES_128": dukpt.AES128, "AES_192": dukpt.AES192, "AES_256": dukpt.AES256,
}

var bdkAlgorithms = []keyspec.Algorithm{keyspec.TDES2Key, keyspec.AES128, keyspec.AES192, keyspec.AES256}

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

// dukptWorkingKey derives, from BDK w, the working key of transaction
// ksnHex for purpose p and the request's variant and derivation type
// (defaultType applies to AES DUKPT when derivType is empty). field names
// the attributes member for errors. The caller owns and clears the key.
// The BDK's usage, algorithm and modes must already have been checked.
func dukptWorkingKey(w *WorkingKey, field, ksnHex, derivType, variant string, p dukptPurpose, defaultType dukpt.KeyType) ([]byte, dukpt.KeyType, error) {
	ksn, err := dataHex(field+".KeySerialNumber", ksnHex)
	if err != nil {
		return nil, 0, err
	}
	if variant == "" {
		variant = "BIDIRECTIONAL"
	}
	if w.Record.Attributes.Algorithm.IsTDES() {
		if derivType != "" && derivType != "TDES_2KEY" {
			return nil, 0, fault.FieldInvalid(field+".DukptKeyDerivationType", "a TDES_2KEY BDK (ANSI X9.24-1) derives only TDES_2KEY keys")
		}
		k, err := dukpt.ParseTDESKSN(ksn)
		if err != nil {
			return nil, 0, fault.FieldInvalid(field+".KeySerialNumber", "TDES DUKPT needs a 20-hex-digit key serial number with a valid transaction counter")
		}
		v := map[dukptPurpose]map[string]dukpt.TDESVariant{
			dukptData: {"BIDIRECTIONAL": dukpt.DataRequestVariant, "REQUEST": dukpt.DataRequestVariant, "RESPONSE": dukpt.DataResponseVariant},
			dukptMAC:  {"BIDIRECTIONAL": dukpt.MACRequestVariant, "REQUEST": dukpt.MACRequestVariant, "RESPONSE": dukpt.MACResponseVariant},
		}[p][variant]
		if v == 0 {
			return nil, 0, fault.FieldInvalid(field+".DukptKeyVariant", "unknown variant")
		}
		key, err := dukpt.TDESKey(w.Material, k, v)
		if err != nil {
			return nil, 0, fault.Internalf("TDES DUKPT derivation", err)
		}
		return key, dukpt.TDES2, nil
	}
	k, err := dukpt.ParseAESKSN(ksn)
	if err != nil {
		return nil, 0, fault.FieldInvalid(field+".KeySerialNumber", "AES DUKPT needs a 24-hex-digit key serial number with a valid transaction counter")
	}
	t := defaultType
	if derivType != "" {
		var ok bool
		if t, ok = dukptDerivationTypes[derivType]; !ok {
			return nil, 0, fault.FieldInvalid(field+".DukptKeyDerivationType", "unknown derivation type")
		}
	}
	u := map[dukptPurpose]map[string]dukpt.Usage{
		dukptData: {"BIDIRECTIONAL": dukpt.UsageDataBoth, "REQUEST": dukpt.UsageDataEncrypt, "RESPONSE": dukpt.UsageDataDecrypt},
		dukptMAC:  {"BIDIRECTIONAL": dukpt.UsageMACBoth, "REQUEST": dukpt.UsageMACGeneration, "RESPONSE": dukpt.UsageMACVerification},
	}[p][variant]
	if u == 0 {
		return nil, 0, fault.FieldInvalid(field+".DukptKeyVariant", "unknown variant")
	}
	key, err := dukpt.AESKey(w.Material, k, u, t)
	if err != nil {
		// The only failure left is a working key stronger than the BDK.
		return nil, 0, fault.FieldInvalid(field+".DukptKeyDerivationType", "%s is stronger than the %s BDK", t, w.Record.Attributes.Algorithm)
	}
	return key, t, nil
}
