package custody

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"

	"payhsm/hsm/tr31"
)

// FleetSealer seals secrets every node of a fleet must read (the stored
// principals' SigV4 secrets): the region main key is each node's own, so
// such a secret is sealed instead under a fresh AES-256 data key carried
// as an X9.143 key block under the namespace profile's main key, which
// every node of the fleet holds. The key block is kept beside the sealed
// secret in a JSON member "keyBlock", so a profile main key rotation
// re-wraps it with the other internal key blocks (ops.RotateProfile) and
// the sealed secret stays readable after the old version is retired.
//
// Seal and Unseal are the region main key's (custody.Seal): a secret
// sealed before the node joined a fleet stays readable on that node.
type FleetSealer struct {
	c       *Custodian
	profile string
}

// FleetSealer returns the sealer of profile's fleet-wide secrets.
func (c *Custodian) FleetSealer(profile string) *FleetSealer {
	return &FleetSealer{c: c, profile: profile}
}

// fleetSealHeader is the data key's key block header: an AES key-encryption
// key, wrap and unwrap only, not exportable.
var fleetSealHeader = tr31.Header{Version: 'D', KeyUsage: "K0", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'N'}

const fleetSealContext = "payhsm/custody/fleet-sealed/v1\x00"

// Seal seals under the region main key (this node only).
func (s *FleetSealer) Seal(plaintext, aad []byte) ([]byte, error) { return s.c.Seal(plaintext, aad) }

// Unseal opens what Seal sealed.
func (s *FleetSealer) Unseal(ciphertext, aad []byte) ([]byte, error) {
	return s.c.Unseal(ciphertext, aad)
}

// SealBlock seals plaintext for every node: it returns the data key's key
// block and nonce || AES-256-GCM ciphertext || tag, aad bound.
func (s *FleetSealer) SealBlock(plaintext, aad []byte) (string, []byte, error) {
	p, err := s.c.Profile(s.profile)
	if err != nil {
		return "", nil, err
	}
	dk := make([]byte, 32)
	defer clear(dk)
	if _, err := rand.Read(dk); err != nil {
		return "", nil, err
	}
	block, err := p.Wrap(fleetSealHeader, dk)
	if err != nil {
		return "", nil, fmt.Errorf("custody: wrap a fleet sealing key: %w", err)
	}
	g, err := fleetGCM(dk)
	if err != nil {
		return "", nil, err
	}
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", nil, err
	}
	return block, g.Seal(nonce, nonce, plaintext, fleetAAD(aad)), nil
}

// UnsealBlock opens what SealBlock sealed. The caller zeroes the result.
func (s *FleetSealer) UnsealBlock(block string, sealed, aad []byte) ([]byte, error) {
	p, err := s.c.Profile(s.profile)
	if err != nil {
		return nil, err
	}
	h, dk, err := p.Unwrap(block)
	if err != nil {
		return nil, fmt.Errorf("custody: unwrap a fleet sealing key: %w", err)
	}
	defer clear(dk)
	if h.KeyUsage != fleetSealHeader.KeyUsage || h.Algorithm != 'A' || h.ModeOfUse != 'B' || len(dk) != 32 {
		return nil, errors.New("custody: a fleet sealing key block has the wrong header or length")
	}
	g, err := fleetGCM(dk)
	if err != nil {
		return nil, err
	}
	if len(sealed) < g.NonceSize()+g.Overhead() {
		return nil, errors.New("custody: fleet-sealed secret too short")
	}
	// The key block's header changes when a rotation re-wraps it, so the
	// associated data binds the caller's context only.
	pt, err := g.Open(nil, sealed[:g.NonceSize()], sealed[g.NonceSize():], fleetAAD(aad))
	if err != nil {
		return nil, fmt.Errorf("custody: open a fleet-sealed secret: %w", err)
	}
	return pt, nil
}

func fleetAAD(aad []byte) []byte {
	return append([]byte(fleetSealContext), aad...)
}

func fleetGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}
