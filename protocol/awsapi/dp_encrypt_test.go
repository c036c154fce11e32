package awsapi

import (
	"encoding/json"
	"testing"

	"payhsm/fault"
	dp "payhsm/protocol/awsapi/dpshape"
)

// FuzzDataEncryptionRequests decodes arbitrary bodies as the five requests
// of dataEncryptionOperations and, for those that validate, maps them onto
// the operations layer's inputs: decoding, validation and mapping never
// panic.
func FuzzDataEncryptionRequests(f *testing.F) {
	f.Add([]byte(`{"PlainText":"00","EncryptionAttributes":{"Emv":{"MajorKeyDerivationMode":"EMV_OPTION_A","PrimaryAccountNumber":"1234567890123456","PanSequenceNumber":"01","SessionDerivationData":"ABCDEF1234567890","Mode":"CBC"}},"WrappedKey":{"WrappedKeyMaterial":{"Tr31KeyBlock":"D0016D0AB00N0000"}}}`))
	f.Add([]byte(`{"CipherText":"00","OutgoingKeyIdentifier":"alias/b","IncomingEncryptionAttributes":{"Dukpt":{"KeySerialNumber":"FFFF9876543210E00001"}},"OutgoingEncryptionAttributes":{"Symmetric":{"Mode":"ECB"}},"IncomingWrappedKey":{"WrappedKeyMaterial":{"DiffieHellmanSymmetricKey":{}}},"OutgoingWrappedKey":{"KeyCheckValueAlgorithm":"CMAC"}}`))
	f.Add([]byte(`{"KeyIdentifier":"alias/k","MessageData":"8424000008","Mac":"0011223344556677","MacLength":4,"GenerationAttributes":{"EmvMac":{"MajorKeyDerivationMode":"EMV_OPTION_B","PrimaryAccountNumber":"1234567890123456","PanSequenceNumber":"00","SessionKeyDerivationMode":"VISA","SessionKeyDerivationValue":{"ApplicationTransactionCounter":"FFFF"}}},"VerificationAttributes":{"DukptCmac":{"KeySerialNumber":"00"}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var (
			enc dp.EncryptDataInput
			dec dp.DecryptDataInput
			re  dp.ReEncryptDataInput
			gen dp.GenerateMacInput
			ver dp.VerifyMacInput
		)
		ok := func(v any) bool {
			if json.Unmarshal(body, v) != nil {
				return false
			}
			if s, isSetter := v.(dp.URILabelSetter); isSetter {
				s.SetURILabel("KeyIdentifier", "alias/k")
				s.SetURILabel("IncomingKeyIdentifier", "alias/k")
			}
			return v.(dp.Validator).Validate("") == nil
		}
		if ok(&enc) {
			_, _ = dataCipher("EncryptionAttributes", enc.EncryptionAttributes)
			_, _ = wrappedKey("WrappedKey", enc.WrappedKey)
			_ = locate(fault.About(fault.SubjectIV, "x"), dataMembers("EncryptionAttributes", cipherMember(enc.EncryptionAttributes), "WrappedKey", enc.WrappedKey, "PlainText"))
		}
		if ok(&dec) {
			_, _ = dataCipher("DecryptionAttributes", dec.DecryptionAttributes)
			_, _ = wrappedKey("WrappedKey", dec.WrappedKey)
		}
		if ok(&re) {
			_, _ = reEncryptCipher("IncomingEncryptionAttributes", re.IncomingEncryptionAttributes)
			_, _ = reEncryptCipher("OutgoingEncryptionAttributes", re.OutgoingEncryptionAttributes)
			_, _ = wrappedKey("IncomingWrappedKey", re.IncomingWrappedKey)
			_, _ = wrappedKey("OutgoingWrappedKey", re.OutgoingWrappedKey)
			_ = locate(fault.About(fault.SubjectWrappedKey, "x").On(fault.SideOutgoing), reEncryptMembers(&re))
		}
		if ok(&gen) {
			_, _ = macAttributes("GenerationAttributes", gen.GenerationAttributes)
			_ = dpMacLength(gen.MacLength)
			_ = locate(fault.About(fault.SubjectATC, "x"), macMembers("GenerationAttributes", gen.GenerationAttributes))
		}
		if ok(&ver) {
			_, _ = macAttributes("VerificationAttributes", ver.VerificationAttributes)
			_ = dpMacLength(ver.MacLength)
		}
	})
}
