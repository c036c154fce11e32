package ops

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // G505: the asymmetric KCV, see publicKCV
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"

	"payhsm/fault"
	"payhsm/hsm/kcv"
	"payhsm/hsm/tdes"
	"payhsm/hsm/tr31"
	"payhsm/keyspec"
	"payhsm/keystore"
)

// bindingBlock is the proprietary X9.143 optional block (numeric IDs are
// reserved for proprietary use) that binds a stored key block to its key id,
// so a block cannot be moved onto another key record.
const bindingBlock = "10"

// hmacHashIDs are X9.143 "HM" optional block values (hash algorithm of an HMAC key).
var hmacHashIDs = map[keyspec.Algorithm]string{
	keyspec.HMACSHA224: "20", keyspec.HMACSHA256: "21", keyspec.HMACSHA384: "22", keyspec.HMACSHA512: "23",
}

func hmacHash(a keyspec.Algorithm) func() hash.Hash {
	switch a {
	case keyspec.HMACSHA224:
		return sha256.New224
	case keyspec.HMACSHA256:
		return sha256.New
	case keyspec.HMACSHA384:
		return sha512.New384
	case keyspec.HMACSHA512:
		return sha512.New
	}
	return nil
}

// storedHeader is the X9.143 header a key is stored under.
func storedHeader(id string, a keyspec.Attributes, exportable bool) (tr31.Header, error) {
	mode, err := a.Modes.TR31()
	if err != nil {
		return tr31.Header{}, fault.About(fault.SubjectKeyModesOfUse, "%v", err)
	}
	exp := byte('N')
	if exportable {
		exp = 'E'
	}
	h := tr31.Header{
		Version: 'D', KeyUsage: a.Usage.TR31(), Algorithm: a.Algorithm.TR31(), ModeOfUse: mode,
		KeyVersion: "00", Exportability: exp,
	}
	if id != "" {
		h.Blocks = append(h.Blocks, tr31.OptionalBlock{ID: bindingBlock, Data: id})
	}
	if hm, ok := hmacHashIDs[a.Algorithm]; ok {
		h.Blocks = append(h.Blocks, tr31.OptionalBlock{ID: "HM", Data: hm})
	}
	return h, nil
}

// newSymmetricKey returns fresh random key material for a symmetric algorithm.
func newSymmetricKey(a keyspec.Algorithm) ([]byte, error) {
	n := a.KeyLen()
	if n == 0 {
		return nil, fmt.Errorf("no key length for %s", a)
	}
	k := make([]byte, n)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	if a.IsTDES() {
		tdes.FixParity(k)
	}
	return k, nil
}

// newKeyPair generates an asymmetric key pair; it returns the PKCS#8 DER private key and the SPKI DER public key.
func (s *Service) newKeyPair(a keyspec.Algorithm) (priv, pub []byte, err error) {
	var signer crypto.Signer
	switch a {
	case keyspec.RSA2048, keyspec.RSA3072, keyspec.RSA4096:
		signer, err = s.cfg.NewRSAKey(a.Bits())
	case keyspec.ECCP256:
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case keyspec.ECCP384:
		signer, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case keyspec.ECCP521:
		signer, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	default:
		return nil, nil, fmt.Errorf("not an asymmetric algorithm: %s", a)
	}
	if err != nil {
		return nil, nil, err
	}
	if priv, err = x509.MarshalPKCS8PrivateKey(signer); err != nil {
		return nil, nil, err
	}
	if pub, err = x509.MarshalPKIXPublicKey(signer.Public()); err != nil {
		return nil, nil, err
	}
	return priv, pub, nil
}

// symmetricKCV computes a symmetric key's check value with the requested method.
func symmetricKCV(a keyspec.Algorithm, method keyspec.KCVAlgorithm, key []byte) (string, error) {
	var sum []byte
	switch {
	case a.IsHMAC():
		if method != keyspec.KCVHMAC {
			return "", fault.About(fault.SubjectKeyCheckValueAlgorithm, "%s keys use the HMAC check value", a)
		}
		sum = kcv.HMAC(hmacHash(a), key)
	case a.IsTDES() || a.IsAES():
		var b cipher.Block
		var err error
		if a.IsTDES() {
			b, err = tdes.NewCipher(key)
		} else {
			b, err = aes.NewCipher(key)
		}
		if err != nil {
			return "", fault.Internalf("key check value", err)
		}
		switch method {
		case keyspec.KCVANSIX924:
			sum = kcv.ANSIX924(b)
		case keyspec.KCVCMAC:
			sum = kcv.CMAC(b)
		default:
			return "", fault.About(fault.SubjectKeyCheckValueAlgorithm, "%s is not a check value method for %s keys", method, a)
		}
	default:
		return "", fault.Internalf("key check value", fmt.Errorf("not a symmetric algorithm: %s", a))
	}
	return checkValueText(sum), nil
}

// publicKCV is the check value of an asymmetric key: the leftmost 4 bytes of
// SHA-1 over the DER SubjectPublicKeyInfo (the guide's examples show 8 hex
// digits with KeyCheckValueAlgorithm SHA-1 for RSA and ECC keys).
func publicKCV(spki []byte) string {
	sum := sha1.Sum(spki) //nolint:gosec // G401: the guide's asymmetric KCV is SHA-1 over the SPKI; a check value, not a security function
	return checkValueText(sum[:4])
}

// checkValueText is a key check value in the form it is published, stored
// and compared in: upper-case hexadecimal digits (X9.24-1 prints check values
// so; so do the key block KP/KC blocks of X9.143, the AWS API and the host
// protocol). It is one of the two deliberate hex encodings in ops (the other is
// exportHeader's KS/IK optional block, X9.143's own format): a KCV
// is computed once, kept in this form in the key record (keystore) and in
// WorkingKey.KCV, shown unchanged by both edges and never decoded, so
// carrying it as bytes would only move the same formatting into every edge
// and a decoding into every record read.
func checkValueText(sum []byte) string { return strings.ToUpper(hex.EncodeToString(sum)) }

// keyRuleAbout is fault.KeyRule for a fault about subject.
func keyRuleAbout(violation string, subject fault.Subject, format string, args ...any) *fault.Error {
	f := fault.KeyRule(violation, format, args...)
	f.Subject = subject
	return f
}

// invalidBecause is a Validation fault about subject with a client-safe
// message and an internal cause (logged only).
func invalidBecause(subject fault.Subject, message string, cause error) *fault.Error {
	f := fault.Wrap(fault.Validation, message, cause)
	f.Subject = subject
	return f
}

// onSide puts err's fault on side when it is about a subject and names no
// side yet: a shared helper's fault (which knows its subject but not which
// side of a two-key operation called it) becomes the caller's.
func onSide(err error, side fault.Side) error {
	var f *fault.Error
	if side != fault.SideNone && errors.As(err, &f) && f.Subject != fault.SubjectNone && f.Side == fault.SideNone {
		f.Side = side
	}
	return err
}

// kcvMethod picks the check value method: the requested one if allowed, else the algorithm's default.
func kcvMethod(a keyspec.Algorithm, requested keyspec.KCVAlgorithm) (keyspec.KCVAlgorithm, error) {
	if requested == "" {
		return keyspec.DefaultKCVAlgorithm(a), nil
	}
	if err := keyspec.ValidKCVAlgorithm(a, requested); err != nil {
		return "", err
	}
	return requested, nil
}

// hmacEqual compares check values in constant time.
func hmacEqual(a, b string) bool {
	return hmac.Equal([]byte(strings.ToUpper(a)), []byte(strings.ToUpper(b)))
}

// blockData returns the data of the optional block id.
func blockData(h tr31.Header, id string) (string, bool) {
	for _, b := range h.Blocks {
		if b.ID == id {
			return b.Data, true
		}
	}
	return "", false
}

// bindingHeader is the header of an internal key (CA key, import wrapping key) bound to a name.
func bindingHeader(usage string, alg, mode byte, binding string) tr31.Header {
	return tr31.Header{Version: 'D', KeyUsage: usage, Algorithm: alg, ModeOfUse: mode, KeyVersion: "00",
		Exportability: 'N', Blocks: []tr31.OptionalBlock{{ID: bindingBlock, Data: binding}}}
}

// loadMaterial opens a stored key's block and checks it belongs to the record.
// The caller zeroes the returned material.
//
// The block's header is authenticated under the profile main key; it is the
// source of truth for the key's usage, algorithm, modes of use,
// exportability and key version, and (optional block 10) the key id it
// belongs to. A record that says otherwise is not believed, and neither is
// the block: the disagreement is a record-integrity failure (a stored record
// is authenticated too, so this takes a bug, or an edit made to a format 1
// store before it was upgraded).
func (s *Service) loadMaterial(k *keystore.Key) (tr31.Header, []byte, error) {
	p, err := s.cust.Profile(k.Profile)
	if err != nil {
		return tr31.Header{}, nil, fault.Internalf("profile main key", err)
	}
	h, key, err := p.Unwrap(k.KeyBlock)
	if err != nil {
		return tr31.Header{}, nil, fault.Internalf("open stored key block of "+k.ID, err)
	}
	if why := headerDisagrees(h, k, len(key)); why != "" {
		clear(key)
		return tr31.Header{}, nil, fault.RecordIntegrity(fmt.Errorf("key %s: the record disagrees with its key block's authenticated header: %s", k.ID, why))
	}
	return h, key, nil
}

// headerDisagrees names the first attribute in which key record k and the
// authenticated header h of its stored block (whose key field is keyLen
// bytes) differ ("" when none). A symmetric key's algorithm is the header's
// algorithm with the key's length (and, for HMAC, the HM block): TDES_2KEY
// and TDES_3KEY share "T". Transient key blocks (host "S" keys, k.ID "")
// take their record from the header and carry no binding.
func headerDisagrees(h tr31.Header, k *keystore.Key, keyLen int) string {
	mode, _ := k.Attributes.Modes.TR31()
	exp := byte('N')
	if k.Exportable {
		exp = 'E'
	}
	alg := k.Attributes.Algorithm
	if alg.IsSymmetric() {
		hm, _ := blockData(h, "HM")
		if got, err := keyspec.AlgorithmFromTR31(h.Algorithm, keyLen, hm); err != nil || got != alg {
			return "algorithm"
		}
	}
	switch {
	case k.ID != "" && checkBinding(h, k.ID) != nil:
		return "key id"
	case h.KeyUsage != k.Attributes.Usage.TR31():
		return "key usage"
	case h.Algorithm != alg.TR31():
		return "algorithm"
	case h.ModeOfUse != mode:
		return "mode of use"
	case k.ID != "" && h.Exportability != exp:
		return "exportability"
	case k.ID != "" && h.KeyVersion != "00":
		return "key version"
	}
	return ""
}
