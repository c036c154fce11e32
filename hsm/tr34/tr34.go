// Package tr34 owns the ANSI X9 TR-34-2012 two-pass key token in the
// "non-CMS" layout AWS Payment Cryptography exchanges (KeyBlockFormat
// X9_TR34_2012, also called the Diebold format): a PKCS#7 SignedData whose
// encapsulated content is the envelope (version, a KeyTransRecipientInfo with
// RSAES-OAEP SHA-256 and an encrypted content info) without its SEQUENCE
// wrapper, signed by the Key Distribution Host (KDH) with RSA PKCS#1 v1.5
// SHA-256 over signed attributes carrying the content type, the KRD's random
// nonce, the TR-31-style key block header and the envelope digest. The
// encrypted content is the TR-34 key block: version 1, the KDH's issuer and
// serial number, the clear key and the header again.
//
// Parse checks only structure; Verify checks the signature and the envelope
// digest against the KDH's public key; Open decrypts with the KRD's private
// key and checks the inner key block against the signed data. Build creates
// a token as the KDH. Errors wrap ErrFormat or ErrVerify and never contain key
// material; decrypted buffers are zeroed.
package tr34

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strconv"

	"payhsm/hsm/tr31"
)

// Sentinel errors.
var (
	ErrFormat = errors.New("tr34: malformed key token")
	ErrVerify = errors.New("tr34: key token verification failed")
)

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrFormat}, args...)...)
}

func verifyErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrVerify}, args...)...)
}

// Object identifiers (DER contents).
var (
	oidData          = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01}
	oidSignedData    = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02}
	oidEnvelopedData = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03}
	oidRSA           = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01}
	oidOAEP          = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07}
	oidMGF1          = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08}
	oidPSpecified    = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x09}
	oidSHA256RSA     = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b}
	oidContentType   = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03}
	oidMessageDigest = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04}
	oidRandomNonce   = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x19, 0x03}
	oidSHA256        = []byte{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01}
	oidDESEDE3CBC    = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x03, 0x07}
	oidAES128CBC     = []byte{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02}
)

// Token is a parsed TR-34 key token.
type Token struct {
	Header string // the TR-31-style key block header (signed attribute)
	Nonce  []byte // the random nonce (nil when absent)
	KDH    []byte // DER IssuerAndSerialNumber of the signer
	KRD    []byte // DER IssuerAndSerialNumber of the recipient

	envelope     []byte // the signed envelope (digest input)
	digest       []byte // messageDigest attribute
	signedAttrs  []byte // DER SET OF Attribute (signature input)
	signature    []byte
	label        []byte // OAEP label
	encryptedKey []byte // RSA-OAEP encrypted content-encryption key
	contentAlg   []byte // OID contents
	iv           []byte
	content      []byte // encrypted key block
}

// Identity is the DER IssuerAndSerialNumber of a certificate.
func Identity(c *x509.Certificate) ([]byte, error) {
	serial, err := asn1.Marshal(c.SerialNumber)
	if err != nil {
		return nil, fmt.Errorf("tr34: certificate serial number: %w", err)
	}
	return tlv(tagSequence, c.RawIssuer, serial), nil
}

// Parse parses the DER of a TR-34 token (structure only).
func Parse(der []byte) (*Token, error) {
	top := &reader{der}
	ci, err := top.sub(tagSequence)
	if err != nil {
		return nil, err
	}
	if !top.empty() {
		return nil, formatErr("trailing data after the token")
	}
	if err := ci.expect(tagOID, oidSignedData, "content type (want signedData)"); err != nil {
		return nil, err
	}
	explicit, err := ci.sub(tagContext0)
	if err != nil {
		return nil, err
	}
	sd, err := explicit.sub(tagSequence)
	if err != nil {
		return nil, err
	}
	if err := sd.expect(tagInteger, []byte{1}, "SignedData version"); err != nil {
		return nil, err
	}
	if _, _, err := sd.next(tagSet); err != nil { // digestAlgorithms: checked per signer
		return nil, err
	}
	eci, err := sd.sub(tagSequence)
	if err != nil {
		return nil, err
	}
	if err := eci.expect(tagOID, oidEnvelopedData, "encapsulated content type (want envelopedData)"); err != nil {
		return nil, err
	}
	ec, err := eci.sub(tagContext0)
	if err != nil {
		return nil, err
	}
	t := &Token{}
	if t.envelope, _, err = ec.next(tagOctetString); err != nil {
		return nil, err
	}
	for _, optional := range []byte{tagContext0, tagContext1} { // certificates, crls: not used
		if tag, ok := sd.peek(); ok && tag == optional {
			if _, _, err := sd.next(optional); err != nil {
				return nil, err
			}
		}
	}
	signers, err := sd.sub(tagSet)
	if err != nil {
		return nil, err
	}
	if err := t.parseSigner(signers); err != nil {
		return nil, err
	}
	if !signers.empty() || !sd.empty() || !ci.empty() {
		return nil, formatErr("a TR-34 token has exactly one signer and no other content")
	}
	if err := t.parseEnvelope(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Token) parseSigner(signers *reader) error {
	si, err := signers.sub(tagSequence)
	if err != nil {
		return err
	}
	if err := si.expect(tagInteger, []byte{1}, "SignerInfo version"); err != nil {
		return err
	}
	if _, t.KDH, err = si.next(tagSequence); err != nil {
		return err
	}
	da, err := si.sub(tagSequence)
	if err != nil {
		return err
	}
	if err := expectAlg(da, oidSHA256); err != nil {
		return fmt.Errorf("digest algorithm: %w", err)
	}
	attrs, _, err := si.next(tagContext0)
	if err != nil {
		return err
	}
	t.signedAttrs = tlv(tagSet, attrs)
	if err := t.parseAttrs(&reader{attrs}); err != nil {
		return err
	}
	sa, err := si.sub(tagSequence)
	if err != nil {
		return err
	}
	oid, _, err := sa.next(tagOID)
	if err != nil {
		return err
	}
	if !bytes.Equal(oid, oidRSA) && !bytes.Equal(oid, oidSHA256RSA) {
		return formatErr("signature algorithm is not RSA PKCS#1 v1.5")
	}
	if !sa.empty() {
		if err := sa.expect(tagNull, nil, "signature algorithm parameters"); err != nil {
			return err
		}
	}
	if t.signature, _, err = si.next(tagOctetString); err != nil {
		return err
	}
	if !si.empty() {
		return formatErr("unsigned attributes are not supported")
	}
	return nil
}

// expectAlg checks an AlgorithmIdentifier with optional NULL parameters.
func expectAlg(r *reader, oid []byte) error {
	if err := r.expect(tagOID, oid, "algorithm"); err != nil {
		return err
	}
	if !r.empty() {
		if err := r.expect(tagNull, nil, "algorithm parameters"); err != nil {
			return err
		}
	}
	if !r.empty() {
		return formatErr("extra algorithm parameters")
	}
	return nil
}

func (t *Token) parseAttrs(r *reader) error {
	var haveType, haveHeader bool
	seen := map[string]bool{}
	for !r.empty() {
		a, err := r.sub(tagSequence)
		if err != nil {
			return err
		}
		oid, _, err := a.next(tagOID)
		if err != nil {
			return err
		}
		if seen[string(oid)] {
			return formatErr("repeated signed attribute")
		}
		seen[string(oid)] = true
		vals, err := a.sub(tagSet)
		if err != nil {
			return err
		}
		switch {
		case bytes.Equal(oid, oidContentType):
			err, haveType = vals.expect(tagOID, oidEnvelopedData, "content type attribute"), true
		case bytes.Equal(oid, oidRandomNonce):
			t.Nonce, _, err = vals.next(tagOctetString)
		case bytes.Equal(oid, oidData):
			var h []byte
			h, _, err = vals.next(tagOctetString)
			t.Header, haveHeader = string(h), true
		case bytes.Equal(oid, oidMessageDigest):
			t.digest, _, err = vals.next(tagOctetString)
		default:
			continue // e.g. signing time: not used by the two-pass protocol
		}
		if err != nil {
			return err
		}
		if !vals.empty() || !a.empty() {
			return formatErr("a signed attribute has more than one value")
		}
	}
	if !haveType || !haveHeader || len(t.digest) != sha256.Size {
		return formatErr("the content type, key block header and message digest attributes are required")
	}
	return nil
}

// parseEnvelope parses the envelope: version 0, one KeyTransRecipientInfo
// with RSAES-OAEP, and the encrypted content info. A standard CMS
// EnvelopedData SEQUENCE around the three is accepted too.
func (t *Token) parseEnvelope() error {
	r := &reader{t.envelope}
	if tag, _ := r.peek(); tag == tagSequence {
		inner, err := r.sub(tagSequence)
		if err != nil || !r.empty() {
			return formatErr("envelope")
		}
		r = inner
	}
	if err := r.expect(tagInteger, []byte{0}, "envelope version"); err != nil {
		return err
	}
	ris, err := r.sub(tagSet)
	if err != nil {
		return err
	}
	ri, err := ris.sub(tagSequence)
	if err != nil {
		return err
	}
	if !ris.empty() {
		return formatErr("a TR-34 token has exactly one recipient")
	}
	if err := ri.expect(tagInteger, []byte{0}, "recipient info version"); err != nil {
		return err
	}
	if _, t.KRD, err = ri.next(tagSequence); err != nil {
		return err
	}
	ka, err := ri.sub(tagSequence)
	if err != nil {
		return err
	}
	if err := ka.expect(tagOID, oidOAEP, "key encryption algorithm (want RSAES-OAEP)"); err != nil {
		return err
	}
	params, err := ka.sub(tagSequence)
	if err != nil {
		return err
	}
	if err := t.parseOAEPParams(params); err != nil {
		return err
	}
	if t.encryptedKey, _, err = ri.next(tagOctetString); err != nil {
		return err
	}
	eci, err := r.sub(tagSequence)
	if err != nil {
		return err
	}
	if err := eci.expect(tagOID, oidData, "encrypted content type"); err != nil {
		return err
	}
	alg, err := eci.sub(tagSequence)
	if err != nil {
		return err
	}
	if t.contentAlg, _, err = alg.next(tagOID); err != nil {
		return err
	}
	if !bytes.Equal(t.contentAlg, oidDESEDE3CBC) && !bytes.Equal(t.contentAlg, oidAES128CBC) {
		return formatErr("content encryption must be des-ede3-cbc or aes128-cbc")
	}
	if t.iv, _, err = alg.next(tagOctetString); err != nil {
		return err
	}
	if t.content, _, err = eci.next(tagImplicit0); err != nil {
		return err
	}
	if !alg.empty() || !eci.empty() || !ri.empty() || !r.empty() {
		return formatErr("unexpected data in the envelope")
	}
	return nil
}

// parseOAEPParams accepts RSAES-OAEP parameters with SHA-256 and MGF1-SHA-256,
// either as RFC 4055 tagged fields or as the untagged sequence the non-CMS
// layout uses.
func (t *Token) parseOAEPParams(p *reader) error {
	unwrap := func(tag byte) (*reader, error) {
		if got, _ := p.peek(); got == tag {
			e, err := p.sub(tag)
			if err != nil {
				return nil, err
			}
			return e.sub(tagSequence)
		}
		return p.sub(tagSequence)
	}
	h, err := unwrap(tagContext0)
	if err != nil {
		return err
	}
	if err := expectAlg(h, oidSHA256); err != nil {
		return fmt.Errorf("OAEP hash: %w", err)
	}
	m, err := unwrap(tagContext1)
	if err != nil {
		return err
	}
	if err := m.expect(tagOID, oidMGF1, "OAEP mask generation function"); err != nil {
		return err
	}
	mh, err := m.sub(tagSequence)
	if err != nil {
		return err
	}
	if err := expectAlg(mh, oidSHA256); err != nil {
		return fmt.Errorf("OAEP MGF1 hash: %w", err)
	}
	if !p.empty() {
		ps, err := unwrap(tagContext2)
		if err != nil {
			return err
		}
		if err := ps.expect(tagOID, oidPSpecified, "OAEP label source"); err != nil {
			return err
		}
		if t.label, _, err = ps.next(tagOctetString); err != nil {
			return err
		}
	}
	if !p.empty() {
		return formatErr("extra OAEP parameters")
	}
	return nil
}

// Verify checks the KDH's signature over the signed attributes and that the
// signed digest is the envelope's.
func (t *Token) Verify(kdh *rsa.PublicKey) error {
	sum := sha256.Sum256(t.signedAttrs)
	if err := rsa.VerifyPKCS1v15(kdh, crypto.SHA256, sum[:], t.signature); err != nil {
		return verifyErr("the KDH signature does not verify")
	}
	env := sha256.Sum256(t.envelope)
	if subtle.ConstantTimeCompare(env[:], t.digest) != 1 {
		return verifyErr("the envelope does not match its signed digest")
	}
	return nil
}

// Open decrypts the key block with the KRD's private key and returns the key
// (the caller zeroes it). It checks the inner key block names the signer and
// carries the signed header. Call Verify first.
func (t *Token) Open(krd *rsa.PrivateKey) ([]byte, error) {
	cek, err := rsa.DecryptOAEP(sha256.New(), nil, krd, t.encryptedKey, t.label)
	if err != nil {
		return nil, verifyErr("the content-encryption key does not decrypt under the KRD key")
	}
	defer clear(cek)
	b, err := contentCipher(t.contentAlg, cek)
	if err != nil {
		return nil, err
	}
	bs := b.BlockSize()
	if len(t.iv) != bs || len(t.content) == 0 || len(t.content)%bs != 0 {
		return nil, formatErr("encrypted key block is not a whole number of cipher blocks")
	}
	plain := make([]byte, len(t.content))
	defer clear(plain)
	cipher.NewCBCDecrypter(b, t.iv).CryptBlocks(plain, t.content)
	r := &reader{plain}
	kb, err := r.sub(tagSequence)
	if err != nil {
		return nil, verifyErr("the key block does not decrypt to a TR-34 key block")
	}
	if len(r.b) > bs {
		return nil, verifyErr("the key block has more padding than a cipher block")
	}
	if err := kb.expect(tagInteger, []byte{1}, "key block version"); err != nil {
		return nil, err
	}
	_, id, err := kb.next(tagSequence)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(id, t.KDH) {
		return nil, verifyErr("the key block names a different KDH than the signer")
	}
	key, _, err := kb.next(tagOctetString)
	if err != nil {
		return nil, err
	}
	hs, err := kb.sub(tagSequence)
	if err != nil {
		return nil, err
	}
	if err := hs.expect(tagOID, oidData, "key block header type"); err != nil {
		return nil, err
	}
	hv, err := hs.sub(tagSet)
	if err != nil {
		return nil, err
	}
	h, _, err := hv.next(tagOctetString)
	if err != nil {
		return nil, err
	}
	if string(h) != t.Header {
		return nil, verifyErr("the encrypted header differs from the signed header")
	}
	if len(key) == 0 {
		return nil, formatErr("empty key")
	}
	return bytes.Clone(key), nil
}

func contentCipher(oid, key []byte) (cipher.Block, error) {
	switch {
	case bytes.Equal(oid, oidDESEDE3CBC) && len(key) == 24:
		return des.NewTripleDESCipher(key)
	case bytes.Equal(oid, oidAES128CBC) && len(key) == 16:
		return aes.NewCipher(key)
	}
	return nil, verifyErr("the content-encryption key has the wrong length for its algorithm")
}

// BuildInput is what the KDH needs to build a token.
type BuildInput struct {
	Key    []byte // the key to transport
	Header string // TR-31-style header (EncodeHeader)
	Nonce  []byte // the KRD's random nonce
	KDH    *x509.Certificate
	KDHKey crypto.Signer // RSA
	KRD    *x509.Certificate
	UseAES bool // AES-128-CBC content encryption (else TDES-CBC)
}

// Build creates a TR-34 token as the KDH for the KRD.
func Build(in BuildInput) ([]byte, error) {
	krdPub, ok := in.KRD.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, formatErr("the KRD certificate must hold an RSA key")
	}
	kdhID, err := Identity(in.KDH)
	if err != nil {
		return nil, err
	}
	krdID, err := Identity(in.KRD)
	if err != nil {
		return nil, err
	}
	contentOID, keyLen := oidDESEDE3CBC, 24
	if in.UseAES {
		contentOID, keyLen = oidAES128CBC, 16
	}
	cek := make([]byte, keyLen)
	defer clear(cek)
	if _, err := rand.Read(cek); err != nil {
		return nil, err
	}
	b, err := contentCipher(contentOID, cek)
	if err != nil {
		return nil, err
	}
	bs := b.BlockSize()
	iv := make([]byte, bs)
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	header := tlv(tagSequence, tlv(tagOID, oidData), tlv(tagSet, tlv(tagOctetString, []byte(in.Header))))
	plain := tlv(tagSequence, tlv(tagInteger, []byte{1}), kdhID, tlv(tagOctetString, in.Key), header)
	defer clear(plain)
	if pad := (bs - len(plain)%bs) % bs; pad > 0 {
		plain = append(plain, bytes.Repeat([]byte{byte(pad)}, pad)...) //nolint:gosec // G115: 0 < pad < bs <= 16.
	}
	content := make([]byte, len(plain))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(content, plain)
	ek, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, krdPub, cek, nil)
	if err != nil {
		return nil, fmt.Errorf("tr34: encrypt content-encryption key: %w", err)
	}
	sha256Alg := tlv(tagSequence, tlv(tagOID, oidSHA256), tlv(tagNull))
	oaep := tlv(tagSequence, tlv(tagOID, oidOAEP), tlv(tagSequence,
		sha256Alg,
		tlv(tagSequence, tlv(tagOID, oidMGF1), tlv(tagSequence, tlv(tagOID, oidSHA256))),
		tlv(tagSequence, tlv(tagOID, oidPSpecified), tlv(tagOctetString))))
	envelope := cat(
		tlv(tagInteger, []byte{0}),
		tlv(tagSet, tlv(tagSequence, tlv(tagInteger, []byte{0}), krdID, oaep, tlv(tagOctetString, ek))),
		tlv(tagSequence, tlv(tagOID, oidData), tlv(tagSequence, tlv(tagOID, contentOID), tlv(tagOctetString, iv)), tlv(tagImplicit0, content)),
	)
	digest := sha256.Sum256(envelope)
	attrs := cat(
		tlv(tagSequence, tlv(tagOID, oidContentType), tlv(tagSet, tlv(tagOID, oidEnvelopedData))),
		tlv(tagSequence, tlv(tagOID, oidRandomNonce), tlv(tagSet, tlv(tagOctetString, in.Nonce))),
		tlv(tagSequence, tlv(tagOID, oidData), tlv(tagSet, tlv(tagOctetString, []byte(in.Header)))),
		tlv(tagSequence, tlv(tagOID, oidMessageDigest), tlv(tagSet, tlv(tagOctetString, digest[:]))),
	)
	sum := sha256.Sum256(tlv(tagSet, attrs))
	sig, err := in.KDHKey.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("tr34: sign: %w", err)
	}
	signer := tlv(tagSequence, tlv(tagInteger, []byte{1}), kdhID, tlv(tagSequence, tlv(tagOID, oidSHA256)),
		tlv(tagContext0, attrs), tlv(tagSequence, tlv(tagOID, oidRSA), tlv(tagNull)), tlv(tagOctetString, sig))
	sd := tlv(tagSequence, tlv(tagInteger, []byte{1}), tlv(tagSet, tlv(tagSequence, tlv(tagOID, oidSHA256))),
		tlv(tagSequence, tlv(tagOID, oidEnvelopedData), tlv(tagContext0, tlv(tagOctetString, envelope))),
		tlv(tagSet, signer))
	return tlv(tagSequence, tlv(tagOID, oidSignedData), tlv(tagContext0, sd)), nil
}

// EncodeHeader encodes h as a TR-34 key block header: the 16-character X9.143
// fixed header (the block length field, meaningless here, is "0000"; the key
// context byte is '0') followed by the optional blocks, with no padding block.
func EncodeHeader(h tr31.Header) (string, error) {
	kv := h.KeyVersion
	if kv == "" {
		kv = "00"
	}
	if len(h.KeyUsage) != 2 || len(kv) != 2 || len(h.Blocks) > 99 {
		return "", formatErr("invalid header fields")
	}
	s := string(h.Version) + "0000" + h.KeyUsage + string(h.Algorithm) + string(h.ModeOfUse) + kv + string(h.Exportability)
	s += fmt.Sprintf("%02d", len(h.Blocks)) + "00"
	for _, b := range h.Blocks {
		n := 4 + len(b.Data)
		if len(b.ID) != 2 || n > 0xff {
			return "", formatErr("invalid optional block")
		}
		s += b.ID + fmt.Sprintf("%02X", n) + b.Data
	}
	return s, nil
}

// ParseHeader parses a TR-34 key block header (EncodeHeader's format; the
// length field is ignored, a PB block is dropped).
func ParseHeader(s string) (tr31.Header, error) {
	var h tr31.Header
	if len(s) < 16 {
		return h, formatErr("key block header of %d characters", len(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return h, formatErr("key block header is not printable")
		}
	}
	n, err := strconv.Atoi(s[12:14])
	if err != nil || s[12] == '+' || s[12] == '-' {
		return h, formatErr("optional block count")
	}
	h = tr31.Header{Version: s[0], KeyUsage: s[5:7], Algorithm: s[7], ModeOfUse: s[8], KeyVersion: s[9:11], Exportability: s[11], KeyContext: s[14]}
	pos := 16
	for i := 0; i < n; i++ {
		if len(s) < pos+4 {
			return h, formatErr("truncated optional block")
		}
		l, err := strconv.ParseUint(s[pos+2:pos+4], 16, 8)
		if err != nil || l < 4 || len(s) < pos+int(l) {
			return h, formatErr("optional block length")
		}
		if id := s[pos : pos+2]; id != "PB" {
			h.Blocks = append(h.Blocks, tr31.OptionalBlock{ID: id, Data: s[pos+4 : pos+int(l)]})
		}
		pos += int(l)
	}
	if pos != len(s) {
		return h, formatErr("data after the optional blocks")
	}
	return h, nil
}
