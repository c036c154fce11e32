package audit

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"

	"payhsm/hsm/secret"
)

// RootKeySize is the size of the trail's root key (custody.AuditKey).
const RootKeySize = 32

// keys are the trail's working keys, derived from its root key with
// HKDF-SHA256 (RFC 5869; no salt, one info string per purpose): the seal
// key MACs the chain, the PAN key hashes PANs. The key id names the seal key
// in every seal, so that a verifier holding another key says so rather than
// reporting forgery.
type keys struct {
	seal, pan []byte
	id        string
}

const (
	sealKeyInfo = "payhsm/audit/seal-key/v1"
	panKeyInfo  = "payhsm/audit/pan-hash-key/v1"
	keyIDLabel  = "payhsm audit key id v1"
)

func deriveKeys(root []byte) (*keys, error) {
	if len(root) != RootKeySize {
		return nil, fmt.Errorf("audit: the trail key is %d bytes, want %d", len(root), RootKeySize)
	}
	seal, err := hkdf.Key(sha256.New, root, nil, sealKeyInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("audit: derive the seal key: %w", err)
	}
	pan, err := hkdf.Key(sha256.New, root, nil, panKeyInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("audit: derive the PAN key: %w", err)
	}
	m := hmac.New(sha256.New, seal)
	m.Write([]byte(keyIDLabel))
	return &keys{seal: seal, pan: pan, id: hex.EncodeToString(m.Sum(nil)[:8])}, nil
}

func (k *keys) destroy() {
	clear(k.seal)
	clear(k.pan)
}

// maskPAN is what an entry shows of a PAN: secret.MaskPAN (at most the
// first six and last four digits) and 16 hex digits of HMAC-SHA256 under the
// PAN key.
func (k *keys) maskPAN(pan string) (masked, hash string) {
	if pan == "" {
		return "", ""
	}
	m := hmac.New(sha256.New, k.pan)
	m.Write([]byte(pan))
	return secret.MaskPAN(pan), hex.EncodeToString(m.Sum(nil)[:8])
}

// SealStatus is a seal's check result.
type SealStatus int

// Seal statuses.
const (
	// SealValid: the MAC verifies under the named key.
	SealValid SealStatus = iota
	// SealInvalid: the checker holds the named key and the MAC does not verify.
	SealInvalid
	// SealUnknownKey: the checker does not hold the named key.
	SealUnknownKey
)

// SealRequest is one seal to check: its key id, the hash it seals (the
// entry before it) and its MAC.
type SealRequest struct {
	KeyID string
	Prev  [HashSize]byte
	MAC   [HashSize]byte
}

// SealChecker checks seals. KeyChecker checks with a root key; the daemon
// checks for `payhsm audit verify` through its admin socket with the key it
// holds (Trail.CheckSeals). A checker answers whether a MAC is right, never
// what it should be: it cannot be used to forge a seal.
type SealChecker interface {
	CheckSeals(reqs []SealRequest) ([]SealStatus, error)
}

type keyChecker struct{ k *keys }

// KeyChecker returns a SealChecker for the trail key root (custody.AuditKey).
func KeyChecker(root []byte) (SealChecker, error) {
	k, err := deriveKeys(root)
	if err != nil {
		return nil, err
	}
	return keyChecker{k}, nil
}

func (c keyChecker) CheckSeals(reqs []SealRequest) ([]SealStatus, error) {
	return checkSeals(c.k, reqs), nil
}

func checkSeals(k *keys, reqs []SealRequest) []SealStatus {
	out := make([]SealStatus, len(reqs))
	for i, r := range reqs {
		switch {
		case r.KeyID != k.id:
			out[i] = SealUnknownKey
		case subtle.ConstantTimeCompare(r.MAC[:], mac(k, r.Prev)) != 1:
			out[i] = SealInvalid
		default:
			out[i] = SealValid
		}
	}
	return out
}

func mac(k *keys, prev [HashSize]byte) []byte {
	m := sealMAC(k.seal, prev)
	return m[:]
}
