package custody

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"sync"

	"github.com/ThalesGroup/crypto11"
)

// The PKCS#11 seam. Custody needs very little from its token: log in, find or
// generate the region main key by label, use that key for one-block AES and
// AES-GCM, delete it in a re-initialization, and close; plus marker keys
// that are never used but found by label, one of which carries a small
// non-secret value in its CKA_ID (the key store's anchor). Module, Token and
// TokenKey are exactly those calls, so the rest of custody is independent of
// crypto11: PKCS11Module is the implementation on a real PKCS#11 module
// (SoftHSM2 in development, the appliance's token in production), and
// hsm/custody/memtoken is an in-memory one for the unit tests of the layers
// above, which then need no SoftHSM2.
//
// The interface never returns a key's value: a TokenKey can only be used.

// Module is a PKCS#11 module with its tokens.
type Module interface {
	// Login opens the token labelled tokenLabel and logs in as its user.
	Login(tokenLabel, pin string) (Token, error)
}

// Token is a logged-in PKCS#11 token.
type Token interface {
	// FindKeys returns the secret keys labelled label; none is not an error.
	FindKeys(label string) ([]TokenKey, error)
	// GenerateAESKey creates a persistent, sensitive, non-extractable AES key
	// of bits bits with the given id and label.
	GenerateAESKey(id []byte, label string, bits int) (TokenKey, error)
	// Close logs out and releases the token.
	Close() error
}

// TokenKey is an AES secret key inside a token. Its value never leaves the token.
type TokenKey interface {
	// EncryptBlock encrypts one AES block (CKM_AES_CBC with a zero IV over one
	// block is the block cipher itself). dst and src are aes.BlockSize long.
	EncryptBlock(dst, src []byte) error
	// SealGCM is AES-GCM encryption (CKM_AES_GCM, 16-byte tag) under nonce:
	// it returns ciphertext || tag.
	SealGCM(nonce, plaintext, aad []byte) ([]byte, error)
	// OpenGCM reverses SealGCM; it fails when the tag does not verify.
	OpenGCM(nonce, ciphertext, aad []byte) ([]byte, error)
	// Delete destroys the key in the token.
	Delete() error
	// ID returns the key's CKA_ID, which is not secret: custody keeps
	// small non-secret values there (the key store's anchor, anchor.go).
	ID() ([]byte, error)
}

// GCM parameters custody uses with the token: a 12-byte nonce and a 16-byte tag.
const (
	GCMNonceSize = 12
	GCMTagSize   = 16
)

// PKCS11Module is a PKCS#11 module (a shared library path) used through crypto11.
type PKCS11Module string

// Login implements Module with crypto11.Configure.
func (m PKCS11Module) Login(tokenLabel, pin string) (Token, error) {
	ctx, err := crypto11.Configure(&crypto11.Config{
		Path:        string(m),
		TokenLabel:  tokenLabel,
		Pin:         pin,
		GCMIVLength: GCMNonceSize,
		MaxSessions: 16,
	})
	if err != nil {
		return nil, err
	}
	return &pkcs11Token{ctx: ctx}, nil
}

type pkcs11Token struct {
	ctx    *crypto11.Context
	mu     sync.Mutex
	closed bool
}

func (t *pkcs11Token) FindKeys(label string) ([]TokenKey, error) {
	found, err := t.ctx.FindKeys(nil, []byte(label))
	if err != nil {
		return nil, err
	}
	keys := make([]TokenKey, len(found))
	for i, k := range found {
		keys[i] = pkcs11Key{k, t.ctx}
	}
	return keys, nil
}

func (t *pkcs11Token) GenerateAESKey(id []byte, label string, bits int) (TokenKey, error) {
	k, err := t.ctx.GenerateSecretKeyWithLabel(id, []byte(label), bits, crypto11.CipherAES)
	if err != nil {
		return nil, err
	}
	return pkcs11Key{k, t.ctx}, nil
}

// Close closes the crypto11 context once (a second crypto11 Close panics).
func (t *pkcs11Token) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("PKCS#11 token already closed")
	}
	t.closed = true
	return t.ctx.Close()
}

type pkcs11Key struct {
	key *crypto11.SecretKey
	ctx *crypto11.Context
}

// recovered turns the panics crypto11 raises on PKCS#11 errors (in
// CryptBlocks and in the AEAD's Seal, which have no error return) into errors.
func recovered(err *error, what string) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%s: %v", what, r)
	}
}

func (k pkcs11Key) EncryptBlock(dst, src []byte) (err error) {
	if len(dst) < aes.BlockSize || len(src) < aes.BlockSize {
		return errors.New("token AES block: short buffer")
	}
	defer recovered(&err, "token AES block")
	m, err := k.key.NewCBCEncrypterCloser(make([]byte, aes.BlockSize))
	if err != nil {
		return err
	}
	defer m.Close()
	m.CryptBlocks(dst[:aes.BlockSize], src[:aes.BlockSize])
	return nil
}

func (k pkcs11Key) gcm() (cipher.AEAD, error) {
	g, err := k.key.NewGCM()
	if err != nil {
		return nil, err
	}
	if g.NonceSize() != GCMNonceSize || g.Overhead() != GCMTagSize {
		return nil, fmt.Errorf("token AES-GCM: nonce %d bytes, tag %d bytes; want %d and %d", g.NonceSize(), g.Overhead(), GCMNonceSize, GCMTagSize)
	}
	return g, nil
}

func (k pkcs11Key) SealGCM(nonce, plaintext, aad []byte) (out []byte, err error) {
	g, err := k.gcm()
	if err != nil {
		return nil, err
	}
	if len(nonce) != GCMNonceSize {
		return nil, errors.New("token AES-GCM: bad nonce length")
	}
	defer recovered(&err, "token AES-GCM encrypt")
	return g.Seal(nil, nonce, plaintext, aad), nil
}

func (k pkcs11Key) OpenGCM(nonce, ciphertext, aad []byte) ([]byte, error) {
	g, err := k.gcm()
	if err != nil {
		return nil, err
	}
	if len(nonce) != GCMNonceSize {
		return nil, errors.New("token AES-GCM: bad nonce length")
	}
	return g.Open(nil, nonce, ciphertext, aad)
}

func (k pkcs11Key) Delete() error { return k.key.Delete() }

func (k pkcs11Key) ID() ([]byte, error) {
	a, err := k.ctx.GetAttribute(k.key, crypto11.CkaId)
	if err != nil {
		return nil, err
	}
	if a == nil {
		return nil, nil
	}
	return append([]byte(nil), a.Value...), nil
}
