// Package memtoken is an in-memory PKCS#11 module for tests: a custody.Module
// whose tokens and AES keys live in this process's memory, so the layers
// above custody can be tested without SoftHSM2. It behaves like a token where
// custody can tell: keys are found by label (several may share one), cannot
// be read through the interface, are persistent across logins until deleted,
// and fail after their session is closed; logins check the token label and
// PIN. SetDead simulates a token that stopped answering (pulled out, network
// HSM unreachable): every call fails until it is revived.
//
// It protects nothing. Never use it outside tests.
package memtoken

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	"payhsm/hsm/custody"
)

// Errors, named after the PKCS#11 return values a real module gives.
var (
	ErrDeviceRemoved = errors.New("memtoken: CKR_DEVICE_REMOVED")
	ErrTokenNotFound = errors.New("memtoken: no token with that label")
	ErrPINIncorrect  = errors.New("memtoken: CKR_PIN_INCORRECT")
	ErrSessionClosed = errors.New("memtoken: CKR_SESSION_CLOSED")
	ErrKeyDeleted    = errors.New("memtoken: CKR_OBJECT_HANDLE_INVALID")
	ErrKeySize       = errors.New("memtoken: CKR_KEY_SIZE_RANGE")
	ErrDataLen       = errors.New("memtoken: CKR_DATA_LEN_RANGE")
	ErrTagInvalid    = errors.New("memtoken: CKR_ENCRYPTED_DATA_INVALID")
)

// Module is an in-memory PKCS#11 module. The zero value is not usable; call New.
type Module struct {
	mu     sync.Mutex
	tokens map[string]*token
	dead   bool
}

type token struct {
	pin  string
	keys []*object
}

// object is a secret key stored in a token. Its value is never returned.
type object struct {
	id, label string
	aead      cipher.AEAD
	block     cipher.Block
	deleted   bool
}

// New returns a module with no tokens.
func New() *Module { return &Module{tokens: map[string]*token{}} }

// InitToken creates an empty token labelled label whose user PIN is pin
// (C_InitToken and C_InitPIN). It fails if the label is taken.
func (m *Module) InitToken(label, pin string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.tokens[label]; ok {
		return fmt.Errorf("memtoken: token %q already exists", label)
	}
	m.tokens[label] = &token{pin: pin}
	return nil
}

// SetDead makes every call into the module, its sessions and keys fail with
// ErrDeviceRemoved (dead true), or work again (dead false). Keys survive.
func (m *Module) SetDead(dead bool) {
	m.mu.Lock()
	m.dead = dead
	m.mu.Unlock()
}

// Login implements custody.Module.
func (m *Module) Login(tokenLabel, pin string) (custody.Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dead {
		return nil, ErrDeviceRemoved
	}
	t, ok := m.tokens[tokenLabel]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrTokenNotFound, tokenLabel)
	}
	if pin != t.pin {
		return nil, ErrPINIncorrect
	}
	return &session{m: m, tok: t}, nil
}

// session is a logged-in token.
type session struct {
	m      *Module
	tok    *token
	closed bool
}

// check reports why the session cannot be used; the caller holds m.mu.
func (s *session) check() error {
	switch {
	case s.m.dead:
		return ErrDeviceRemoved
	case s.closed:
		return ErrSessionClosed
	}
	return nil
}

func (s *session) FindKeys(label string) ([]custody.TokenKey, error) {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if err := s.check(); err != nil {
		return nil, err
	}
	var out []custody.TokenKey
	for _, o := range s.tok.keys {
		if o.label == label {
			out = append(out, &key{s: s, o: o})
		}
	}
	return out, nil
}

func (s *session) GenerateAESKey(id []byte, label string, bits int) (custody.TokenKey, error) {
	if bits != 128 && bits != 192 && bits != 256 {
		return nil, fmt.Errorf("%w: AES-%d", ErrKeySize, bits)
	}
	raw := make([]byte, bits/8)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	defer clear(raw)
	blk, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if err := s.check(); err != nil {
		return nil, err
	}
	o := &object{id: string(id), label: label, aead: g, block: blk}
	s.tok.keys = append(s.tok.keys, o)
	return &key{s: s, o: o}, nil
}

func (s *session) Close() error {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if s.closed {
		return ErrSessionClosed
	}
	s.closed = true
	return nil
}

// key is a handle on an object, valid while its session is open.
type key struct {
	s *session
	o *object
}

// use returns the object if the key can be used now.
func (k *key) use() (*object, error) {
	k.s.m.mu.Lock()
	defer k.s.m.mu.Unlock()
	if err := k.s.check(); err != nil {
		return nil, err
	}
	if k.o.deleted {
		return nil, ErrKeyDeleted
	}
	return k.o, nil
}

func (k *key) EncryptBlock(dst, src []byte) error {
	o, err := k.use()
	if err != nil {
		return err
	}
	if len(dst) < aes.BlockSize || len(src) < aes.BlockSize {
		return ErrDataLen
	}
	o.block.Encrypt(dst[:aes.BlockSize], src[:aes.BlockSize])
	return nil
}

func (k *key) SealGCM(nonce, plaintext, aad []byte) ([]byte, error) {
	o, err := k.use()
	if err != nil {
		return nil, err
	}
	if len(nonce) != o.aead.NonceSize() {
		return nil, fmt.Errorf("%w: nonce of %d bytes", ErrDataLen, len(nonce))
	}
	return o.aead.Seal(nil, nonce, plaintext, aad), nil
}

func (k *key) OpenGCM(nonce, ciphertext, aad []byte) ([]byte, error) {
	o, err := k.use()
	if err != nil {
		return nil, err
	}
	if len(nonce) != o.aead.NonceSize() {
		return nil, fmt.Errorf("%w: nonce of %d bytes", ErrDataLen, len(nonce))
	}
	pt, err := o.aead.Open(nil, nonce, ciphertext, aad)
	if err != nil {
		return nil, ErrTagInvalid
	}
	return pt, nil
}

// ID returns the key's CKA_ID, as given to GenerateAESKey.
func (k *key) ID() ([]byte, error) {
	o, err := k.use()
	if err != nil {
		return nil, err
	}
	return []byte(o.id), nil
}

func (k *key) Delete() error {
	k.s.m.mu.Lock()
	defer k.s.m.mu.Unlock()
	if err := k.s.check(); err != nil {
		return err
	}
	if k.o.deleted {
		return ErrKeyDeleted
	}
	k.o.deleted = true
	keys := k.s.tok.keys[:0]
	for _, o := range k.s.tok.keys {
		if o != k.o {
			keys = append(keys, o)
		}
	}
	clear(k.s.tok.keys[len(keys):])
	k.s.tok.keys = keys
	return nil
}
