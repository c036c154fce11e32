package ops

import (
	"time"

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
}

// Page asks for one page of a listing.
type Page struct {
	NextToken string
	Max       int // 0 = 50
}

// ImportParameters is GetParametersForImport's answer.
type ImportParameters struct {
	Certificate      []byte // PEM of the wrapping key certificate
	CertificateChain []byte // PEM of the CA that signed it
	Algorithm        keyspec.Algorithm
	Token            string
	ValidUntil       time.Time
}

// ImportKeyInput is ImportKey's request; exactly one material member is set.
type ImportKeyInput struct {
	KCVAlgorithm keyspec.KCVAlgorithm
	Enabled      *bool
	Tags         []Tag

	KeyCryptogram *ImportKeyCryptogram
	Tr31KeyBlock  *ImportTr31KeyBlock
}

// ImportKeyCryptogram imports a key wrapped with RSA-OAEP under an import token's key.
type ImportKeyCryptogram struct {
	Attributes   keyspec.Attributes
	Exportable   bool
	Cryptogram   string // hex
	ImportToken  string
	WrappingSpec string // RSA_OAEP_SHA_256 (default) or RSA_OAEP_SHA_512
}

// ImportTr31KeyBlock imports an X9.143 key block under a stored K0/K1 key.
type ImportTr31KeyBlock struct {
	WrappingKeyIdentifier string
	KeyBlock              string
}

// PublicKeyCertificate is GetPublicKeyCertificate's answer (PEM).
type PublicKeyCertificate struct {
	Certificate []byte
	Chain       []byte
}
