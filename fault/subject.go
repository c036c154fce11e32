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

// Data-plane subjects (PIN, card, MAC, EMV, data encryption).
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
)

// Control-plane subjects (key creation, import, export, aliases, tags, listings).
const (
	_ Subject = 500 + iota // control-plane subjects start at 501
	// SubjectKeyAttributes are the attributes of a key to create or import.
	SubjectKeyAttributes
	// SubjectKeyMaterial is the key material of an import or export: which
	// form it takes, or the clear key it carries.
	SubjectKeyMaterial
	// SubjectKeyAlgorithm is the algorithm of a key to create or import.
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
	// SubjectWrappedKey is the wrapped key an import carries: a key block, a
	// key cryptogram or a TR-34 token.
	SubjectWrappedKey
	// SubjectCertificateAuthority is the imported certificate authority a
	// certificate must chain to.
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
