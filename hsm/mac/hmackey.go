package mac

import (
	"crypto/hmac"
	"errors"
	"hash"
	"sync"
	"sync/atomic"
)

// HMACKey is an HMAC key for many messages: hmac.New hashes the padded key
// into fresh inner and outer states on every call, which for a short
// message costs more than the MAC itself. An HMACKey keeps keyed states in
// a pool, one per concurrent user, and resets each between messages, so a
// MAC costs only its message's blocks. It is safe for concurrent use.
//
// The pooled states are derived from the key (its padded forms hashed), so
// they are as secret as the key. Go's hash states cannot be zeroed: Clear
// stops their reuse and leaves them to the garbage collector, as every
// hmac.New's states are left.
type HMACKey struct {
	newHash func() hash.Hash
	key     []byte // the caller's: not copied
	pool    sync.Pool
	cleared atomic.Bool
}

// ErrCleared is returned by HMACKey.Sum after Clear.
var ErrCleared = errors.New("mac: the HMAC key was cleared")

// NewHMACKey returns an HMACKey over key with hash h. It keeps key (no
// copy): the caller keeps it unchanged while the HMACKey is in use.
func NewHMACKey(h Hash, key []byte) (*HMACKey, error) {
	f, err := h.new()
	if err != nil {
		return nil, err
	}
	return &HMACKey{newHash: f, key: key}, nil
}

// Sum appends the HMAC of msg to dst.
func (k *HMACKey) Sum(dst, msg []byte) ([]byte, error) {
	if k.cleared.Load() {
		return nil, ErrCleared
	}
	m, _ := k.pool.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(k.newHash, k.key)
	}
	m.Write(msg)
	dst = m.Sum(dst)
	m.Reset()
	if !k.cleared.Load() {
		k.pool.Put(m)
	}
	return dst, nil
}

// Clear stops the reuse of the keyed states: later Sums fail.
func (k *HMACKey) Clear() { k.cleared.Store(true) }
