package awsapi

import (
	"encoding/json"
	"testing"

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
			_ = dataCipher(enc.EncryptionAttributes)
			_, _ = dataWrappedKey("WrappedKey", enc.WrappedKey)
		}
		if ok(&dec) {
			_ = dataCipher(dec.DecryptionAttributes)
			_, _ = dataWrappedKey("WrappedKey", dec.WrappedKey)
		}
		if ok(&re) {
			_, _ = reEncryptCipher(re.IncomingEncryptionAttributes), reEncryptCipher(re.OutgoingEncryptionAttributes)
			_, _ = dataWrappedKey("IncomingWrappedKey", re.IncomingWrappedKey)
			_, _ = dataWrappedKey("OutgoingWrappedKey", re.OutgoingWrappedKey)
		}
		if ok(&gen) {
			_, _ = macAttributes(gen.GenerationAttributes), dpMacLength(gen.MacLength)
		}
		if ok(&ver) {
			_, _ = macAttributes(ver.VerificationAttributes), dpMacLength(ver.MacLength)
		}
	})
}
