package ops

import (
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"time"

	"payhsm/fault"
	"payhsm/keyspec"
)

// Key states (the AWS KeyState enum).
const (
	StateCreateInProgress = "CREATE_IN_PROGRESS"
	StateCreateComplete   = "CREATE_COMPLETE"
	StateDeletePending    = "DELETE_PENDING"
	StateDeleteComplete   = "DELETE_COMPLETE"
)

// Key origins (the AWS KeyOrigin enum).
const (
	OriginService  = "AWS_PAYMENT_CRYPTOGRAPHY"
	OriginExternal = "EXTERNAL"
)

// Key is a key's public description: everything GetKey returns.
type Key struct {
	ARN            string
	Attributes     keyspec.Attributes
	DeriveKeyUsage keyspec.KeyUsage
	KCV            string
	KCVAlgorithm   keyspec.KCVAlgorithm
	Enabled        bool
	Exportable     bool
	State          string
	Origin         string
	Created        time.Time
	UsageStart     time.Time // zero = unset
	UsageStop      time.Time
	DeletePending  time.Time
	Deleted        time.Time
	Replication    *KeyReplication // nil: not a Multi-Region key
	Mpa            *MpaStatus      // the approval session the key was imported under; nil: none
}

// Tag is a key's tag.
type Tag struct{ Key, Value string }

// Alias names a key.
type Alias struct {
	Name   string
	KeyARN string // "" when not associated
}

// CreateKeyInput is CreateKey's request.
type CreateKeyInput struct {
	Attributes     keyspec.Attributes
	DeriveKeyUsage keyspec.KeyUsage
	KCVAlgorithm   keyspec.KCVAlgorithm // "" = the default for the algorithm
	Exportable     bool
	Enabled        *bool // nil = true
	Tags           []Tag
	// ReplicationRegions are the regions to replicate the key to; nil = the
	// site's default replication regions.
	ReplicationRegions []string
	// AuditOutbox, if set, is called with the new key's ARN just before the
	// key is stored, and gives the key's CreatedBy (keystore.Key): what the
	// caller's audit trail needs to write the creation's entry again should
	// the process die before the trail's file holds it (the daemon's audit
	// outbox). An error fails the creation.
	AuditOutbox func(keyARN string) (createdBy string, err error)
}

// Page asks for one page of a listing.
type Page struct {
	NextToken string
	Max       int // 0 = 50
}

// KeyMaterialType is a form in which key material enters or leaves the
// appliance. Each edge maps its own spelling onto it.
type KeyMaterialType uint8

// Key material types. The zero value names none.
const (
	// MaterialKeyCryptogram is a key encrypted with RSA-OAEP.
	MaterialKeyCryptogram KeyMaterialType = iota + 1
	// MaterialTR31 is an X9.143 (TR-31) key block.
	MaterialTR31
	// MaterialTR34 is an X9 TR-34 two-pass key token.
	MaterialTR34
	// MaterialRootCertificate is a self-signed CA certificate.
	MaterialRootCertificate
	// MaterialTrustedCertificate is a certificate that chains to an imported CA.
	MaterialTrustedCertificate
)

var materialNames = [...]string{"no key material", "key cryptogram", "TR-31 key block", "TR-34 key block",
	"root certificate", "trusted certificate"}

func (t KeyMaterialType) String() string {
	if int(t) < len(materialNames) {
		return materialNames[t]
	}
	return "unknown key material"
}

// WrappingSpec is the RSA-OAEP variant of a key cryptogram. The zero value
// is the default, RSA-OAEP with SHA-256.
type WrappingSpec uint8

// Wrapping specs.
const (
	OAEPSHA256 WrappingSpec = iota // RSA-OAEP with SHA-256 (MGF1 with SHA-256)
	OAEPSHA512                     // RSA-OAEP with SHA-512 (MGF1 with SHA-512)
)

func (w WrappingSpec) String() string {
	switch w {
	case OAEPSHA256:
		return "RSA-OAEP with SHA-256"
	case OAEPSHA512:
		return "RSA-OAEP with SHA-512"
	}
	return "unknown RSA-OAEP variant"
}

// oaepHash is the hash (and MGF1 hash) of w.
func (w WrappingSpec) oaepHash() (func() hash.Hash, error) {
	switch w {
	case OAEPSHA256:
		return sha256.New, nil
	case OAEPSHA512:
		return sha512.New, nil
	}
	return nil, fault.About(fault.SubjectWrappingSpec, "must be RSA-OAEP with SHA-256 or SHA-512")
}

// ImportParameters is GetParametersForImport's answer. Certificates are DER.
type ImportParameters struct {
	Certificate      []byte // the wrapping (or signing) key's certificate
	CertificateChain []byte // the certificate of the CA that signed it
	Algorithm        keyspec.Algorithm
	Token            string
	ValidUntil       time.Time
}

// ImportKeyInput is ImportKey's request; exactly one material member is set.
type ImportKeyInput struct {
	KCVAlgorithm keyspec.KCVAlgorithm
	Enabled      *bool
	Tags         []Tag
	// RequesterComment is the request's comment for Multi-Party Approval.
	RequesterComment string
	// Caller is who sent the request (for the audit entries of its
	// Multi-Party Approval decision).
	Caller Caller
	// ReplicationRegions are the regions to replicate the imported key to,
	// as CreateKey's; nil = the site's default replication regions.
	ReplicationRegions []string

	KeyCryptogram *ImportKeyCryptogram
	Tr31KeyBlock  *ImportTr31KeyBlock
}

// ImportKeyCryptogram imports a key wrapped with RSA-OAEP under an import token's key.
type ImportKeyCryptogram struct {
	Attributes   keyspec.Attributes
	Exportable   bool
	Cryptogram   []byte // the RSA-OAEP ciphertext
	ImportToken  string
	WrappingSpec WrappingSpec
}

// ImportTr31KeyBlock imports an X9.143 key block under a stored K0/K1 key.
type ImportTr31KeyBlock struct {
	WrappingKeyIdentifier string
	KeyBlock              string
}

// PublicKeyCertificate is GetPublicKeyCertificate's answer (DER).
type PublicKeyCertificate struct {
	Certificate []byte
	Chain       []byte
}
