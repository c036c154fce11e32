package custody

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"

	"payhsm/hsm/cmac"
)

// The audit trail's key. The trail (package audit) is sealed with MACs
// under a key held by the main-key hierarchy. It is derived from the region
// main key rather than from a profile main key, because an audit trail
// outlives key rotations: a profile main key version is destroyed when its
// rotation ends, and seals made under a key derived from it could never be
// checked again; the region main key changes only when the appliance is
// re-initialized (a ceremony the trail records, see audit.Trail.Rekey).
// It also makes the trail a node's own: each appliance of a fleet has its
// own token, so one node cannot seal another's trail.
//
// The derivation runs inside the token (the region main key never leaves
// it): NIST SP 800-108r1 §4.1, KDF in counter mode with AES-CMAC as the PRF
// (the CMAC computed through the token's one-block AES, as the key check
// value is), a 32-bit counter before the fixed input, and the fixed input
// Label || 0x00 || Context || [L]32 with the label below, an empty context
// and L = 256.
const auditKeyLabel = "payhsm audit trail key v1"

// AuditKey derives the audit trail's 32-byte root key from the region main
// key, inside the token. The caller zeroes it once the trail has derived its
// own keys from it. Every call gives the same key until the region main key
// is replaced.
func (c *Custodian) AuditKey() ([]byte, error) {
	if c.token == nil {
		return nil, errors.New("custody: closed")
	}
	fixed := make([]byte, 0, len(auditKeyLabel)+5)
	fixed = append(fixed, auditKeyLabel...)
	fixed = append(fixed, 0)
	fixed = binary.BigEndian.AppendUint32(fixed, 256)
	b := &tokenBlock{key: c.rmk}
	key := kdfCounterCMAC(b, fixed, 32)
	if b.err != nil {
		clear(key)
		return nil, fmt.Errorf("custody: derive the audit trail key in the token: %w", b.err)
	}
	return key, nil
}

// kdfCounterCMAC is the SP 800-108r1 counter-mode KDF with CMAC under prf:
// K(i) = CMAC(prf, [i]32 || fixed) for i = 1, 2, …, concatenated and cut
// to n bytes.
func kdfCounterCMAC(prf cipher.Block, fixed []byte, n int) []byte {
	out := make([]byte, 0, n+prf.BlockSize())
	in := make([]byte, 4+len(fixed))
	copy(in[4:], fixed)
	for i := uint32(1); len(out) < n; i++ {
		binary.BigEndian.PutUint32(in, i)
		out = append(out, cmac.Sum(prf, in)...)
	}
	clear(out[n:])
	return out[:n:n]
}
