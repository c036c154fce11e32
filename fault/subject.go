package fault

// Subject names, in transport-neutral terms, the input a fault is about. The
// operations layer sets it; each edge maps it on its own: the AWS edge to the
// request member path of the operation it is answering, the host edge to a
// payShield error code. Renaming an AWS member therefore never changes a
// host-port error code, and ops never spells an AWS field path.
type Subject uint16

// Side tells which side of a two-key operation (PIN translation, data
// re-encryption, key export) a Subject belongs to.
type Side uint8

// Sides.
const (
	SideNone Side = iota
	SideIncoming
	SideOutgoing
)

// Subjects shared by both planes.
const (
	SubjectNone Subject = iota
	// SubjectKey is the operation's key (the key identifier or a key carried in the request).
	SubjectKey
	// SubjectWrappingKey is a key-encryption key named by the request.
	SubjectWrappingKey
	// SubjectKeyCheckValueAlgorithm is the requested check-value method.
	SubjectKeyCheckValueAlgorithm
)

// Data-plane subjects (PIN, card, MAC, EMV, data encryption, AS2805).
const (
	_ Subject = 100 + iota // data-plane subjects start at 101
	// SubjectPinBlock is an encrypted PIN block.
	SubjectPinBlock
	// SubjectPinBlockFormat is a PIN block format.
	SubjectPinBlockFormat
	// SubjectPAN is the primary account number.
	SubjectPAN
	// SubjectPinLength is the number of PIN digits.
	SubjectPinLength
	// SubjectDecimalizationTable is an IBM 3624 decimalization table.
	SubjectDecimalizationTable

	// Keys of the data plane, beside SubjectKey (the operation's key, or a
	// side's key in a two-key operation).

	// SubjectPinEncryptionKey is the PIN encryption key of PIN generation,
	// verification and change.
	SubjectPinEncryptionKey
	// SubjectPinVerificationKey is the PIN verification (or generation) key.
	SubjectPinVerificationKey
	// SubjectIntegrityKey is the secure-messaging integrity issuer master key.
	SubjectIntegrityKey
	// SubjectConfidentialityKey is the secure-messaging confidentiality issuer master key.
	SubjectConfidentialityKey
	// SubjectAuthRequestKey is the application-cryptogram issuer master key of a PIN change.
	SubjectAuthRequestKey
	// SubjectCurrentPinKey is the PIN encryption key of the current PIN of a PIN change.
	SubjectCurrentPinKey

	// PIN data.

	// SubjectPinMethod is the PIN generation or verification method (its union).
	SubjectPinMethod
	// SubjectPinValidationData is the IBM 3624 PIN validation data.
	SubjectPinValidationData
	// SubjectPadCharacter is the IBM 3624 validation data pad character.
	SubjectPadCharacter
	// SubjectPinOffset is an IBM 3624 PIN offset.
	SubjectPinOffset
	// SubjectPVKI is the Visa PIN verification key index.
	SubjectPVKI
	// SubjectCurrentPinBlock is the encrypted current PIN of a PIN change.
	SubjectCurrentPinBlock
	// SubjectCurrentPin is the current PIN of a PIN change (key and block together).
	SubjectCurrentPin

	// DUKPT.

	// SubjectKeySerialNumber is a DUKPT key serial number.
	SubjectKeySerialNumber
	// SubjectDukptDerivationType is the type of a DUKPT working key.
	SubjectDukptDerivationType
	// SubjectDukptVariant is the DUKPT key variant (request, response, both).
	SubjectDukptVariant

	// Card data.

	// SubjectCardAttributes is the card validation type (its union).
	SubjectCardAttributes
	// SubjectExpiryDate is a card expiry date.
	SubjectExpiryDate
	// SubjectServiceCode is a card service code.
	SubjectServiceCode
	// SubjectPSN is a PAN sequence number.
	SubjectPSN
	// SubjectATC is an application transaction counter.
	SubjectATC
	// SubjectUnpredictableNumber is a terminal's unpredictable number.
	SubjectUnpredictableNumber
	// SubjectTrackData is magnetic-stripe track data.
	SubjectTrackData
	// SubjectValidationDataLength is the length of card validation data to generate.
	SubjectValidationDataLength
	// SubjectValidationData is card validation data to verify.
	SubjectValidationData

	// MAC.

	// SubjectMessage is the data a MAC or script MAC covers.
	SubjectMessage
	// SubjectMAC is a MAC to verify.
	SubjectMAC
	// SubjectMacLength is the requested MAC length.
	SubjectMacLength
	// SubjectMacAttributes is the MAC method (its union).
	SubjectMacAttributes
	// SubjectMacAlgorithm is a MAC algorithm.
	SubjectMacAlgorithm

	// Data encryption.

	// SubjectData is the data to encipher or decipher.
	SubjectData
	// SubjectCipherAttributes is the encryption method (its union).
	SubjectCipherAttributes
	// SubjectCipherMode is a block cipher mode of operation.
	SubjectCipherMode
	// SubjectPadding is a padding scheme.
	SubjectPadding
	// SubjectIV is an initialization vector.
	SubjectIV

	// EMV.

	// SubjectMajorKeyDerivationMode is the ICC master key derivation option.
	SubjectMajorKeyDerivationMode
	// SubjectSessionDerivation is the session key derivation (its union).
	SubjectSessionDerivation
	// SubjectSessionDerivationData is the data of an EMV session key derivation.
	SubjectSessionDerivationData
	// SubjectSessionKeyDerivationMode is the EMV secure-messaging session key derivation.
	SubjectSessionKeyDerivationMode
	// SubjectApplicationCryptogram is the application cryptogram a session key derives from.
	SubjectApplicationCryptogram
	// SubjectTransactionData is the data an application cryptogram covers.
	SubjectTransactionData
	// SubjectAuthRequestCryptogram is an ARQC to verify.
	SubjectAuthRequestCryptogram
	// SubjectAuthResponse is the ARPC request (its union).
	SubjectAuthResponse
	// SubjectAuthResponseCode is the ARC of an ARPC method 1.
	SubjectAuthResponseCode
	// SubjectCardStatusUpdate is the CSU of an ARPC method 2.
	SubjectCardStatusUpdate
	// SubjectProprietaryAuthData is the proprietary authentication data of an ARPC method 2.
	SubjectProprietaryAuthData
	// SubjectPinChangeDerivation is the PIN change method (its union).
	SubjectPinChangeDerivation
	// SubjectPinBlockLengthPosition is where a PIN change puts the PIN length.
	SubjectPinBlockLengthPosition
	// SubjectPinBlockPadding is how a PIN change pads the PIN data.
	SubjectPinBlockPadding

	// Key agreement (ECDH) of a key carried in the request.

	// SubjectDerivedKeyAlgorithm is the algorithm of the agreed key.
	SubjectDerivedKeyAlgorithm
	// SubjectKDF is the key derivation function.
	SubjectKDF
	// SubjectKDFHash is the key derivation function's hash.
	SubjectKDFHash
	// SubjectSharedInformation is the key derivation's shared information.
	SubjectSharedInformation

	// AS2805.

	// SubjectSTAN is a system trace audit number.
	SubjectSTAN
	// SubjectTransactionAmount is a transaction amount.
	SubjectTransactionAmount
	// SubjectAs2805Variant is an AS2805 key variant.
	SubjectAs2805Variant
	// SubjectKeyCryptogram is a key enciphered under a KEK variant.
	SubjectKeyCryptogram
	// SubjectVariantMask is the KEK validation variant mask.
	SubjectVariantMask
	// SubjectKekValidation is the KEK validation type (its union).
	SubjectKekValidation
	// SubjectRandomKeySend is the partner's enciphered random key (KRs).
	SubjectRandomKeySend
	// SubjectRandomKeyLength is the length of a KEK validation's random key.
	SubjectRandomKeyLength
)

// Control-plane subjects (key creation, import, export, aliases, tags, listings).
const (
	_ Subject = 500 + iota // control-plane subjects start at 501
	// SubjectKeyAttributes are the attributes of a key to create or import.
	SubjectKeyAttributes
	// SubjectKeyMaterial is the key material of an import or export: which
	// form it takes, or the clear key it carries.
	SubjectKeyMaterial
	// SubjectKeyAlgorithm is the algorithm of a key to create or import, or of
	// a key carried in the request.
	SubjectKeyAlgorithm
	// SubjectKeyClass is the class of a key to import.
	SubjectKeyClass
	// SubjectKeyUsage is the usage of a key to import.
	SubjectKeyUsage
	// SubjectKeyModesOfUse are the modes of use of a key to create or import.
	SubjectKeyModesOfUse
	// SubjectExportability says whether a key to create may leave the appliance.
	SubjectExportability
	// SubjectDeletionPeriod is the waiting period of a key deletion.
	SubjectDeletionPeriod
	// SubjectPageToken is the continuation token of a listing.
	SubjectPageToken
	// SubjectTags are the tags of a key.
	SubjectTags
	// SubjectKeyMaterialType is the form of key material an import or export
	// token is asked for.
	SubjectKeyMaterialType
	// SubjectTokenKeyAlgorithm is the algorithm of an import or export token's key pair.
	SubjectTokenKeyAlgorithm
	// SubjectToken is an import or export token.
	SubjectToken
	// SubjectWrappingSpec is the RSA-OAEP variant of a key cryptogram.
	SubjectWrappingSpec
	// SubjectWrappedKey is a wrapped key the request carries: an import's key
	// block, key cryptogram or TR-34 token, or a data operation's key block
	// under the side's key (or an ECDH derivation with it).
	SubjectWrappedKey
	// SubjectCertificateAuthority is the imported certificate authority a
	// certificate must chain to (also the CA of an ECDH partner's certificate).
	SubjectCertificateAuthority
	// SubjectCertificate is a certificate the request carries (imported, or a
	// partner's wrapping or signing certificate).
	SubjectCertificate
	// SubjectNonce is a TR-34 two-pass random nonce.
	SubjectNonce
	// SubjectHeaderModesOfUse, SubjectHeaderExportability,
	// SubjectHeaderKeyVersion and SubjectHeaderOptionalBlocks are the caller's
	// changes to the header of an exported key block.
	SubjectHeaderModesOfUse
	SubjectHeaderExportability
	SubjectHeaderKeyVersion
	SubjectHeaderOptionalBlocks
	// SubjectInitialKeySerialNumber is the key serial number of a DUKPT
	// initial key to export.
	SubjectInitialKeySerialNumber
	// SubjectSigningAlgorithm is the hash of a certificate signing request's signature.
	SubjectSigningAlgorithm
	// SubjectCertificateSubject is the subject name of a certificate signing
	// request; SubjectCommonName and SubjectCountry are two of its attributes.
	SubjectCertificateSubject
	SubjectCommonName
	SubjectCountry
	// SubjectDeriveKeyUsage is the usage of the keys a key pair to create
	// derives by key agreement.
	SubjectDeriveKeyUsage
	// SubjectAgreementKey is the ECC key pair of a key agreement that the
	// request names beside the key it is about (the private key of an ECDH
	// derivation of a key block protection key).
	SubjectAgreementKey
	// SubjectSigningKey is the customer's own key pair that signs a TR-34
	// export as the KDH, in place of an export token's key.
	SubjectSigningKey
	// SubjectOwnCertificate is a certificate the request carries for one of
	// the customer's own key pairs: the KDH signing certificate of a TR-34
	// export, the KRD wrapping certificate of a TR-34 import.
	SubjectOwnCertificate
	// SubjectReplicationRegions are the regions (sites) of a Multi-Region
	// key replication request.
	SubjectReplicationRegions
)

// About returns a Validation fault about subject with a client-safe message
// that names no transport's field.
func About(subject Subject, format string, args ...any) *Error {
	f := Validationf(format, args...)
	f.Subject = subject
	return f
}

// On sets the side the fault's subject belongs to and returns the fault.
func (e *Error) On(side Side) *Error {
	e.Side = side
	return e
}
