package ops

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // G505: OAEP_SHA1 padding, see rsaCrypter
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
	"slices"

	"payhsm/fault"
	"payhsm/hsm/dukpt"
	"payhsm/hsm/rsaraw"
	"payhsm/hsm/symmetric"
	"payhsm/hsm/tdes"
	"payhsm/keyspec"
)

// DataCipher is how data is enciphered (the AWS
// EncryptionDecryptionAttributes union): exactly one member is set.
type DataCipher struct {
	Symmetric  *SymmetricCipher
	Asymmetric *AsymmetricCipher
	Dukpt      *DukptCipher
	Emv        *EmvCipher
}

// CipherMode is a block cipher mode of operation.
type CipherMode uint8

// Modes of operation (SP 800-38A). ModeCFB is full-block CFB: CFB64 for
// TDES, CFB128 for AES.
const (
	ModeECB CipherMode = iota + 1
	ModeCBC
	ModeCFB
	ModeCFB1
	ModeCFB8
	ModeCFB64
	ModeCFB128
	ModeOFB
)

var cipherModes = [...]symmetric.Mode{ModeECB: symmetric.ECB, ModeCBC: symmetric.CBC, ModeCFB: symmetric.CFB,
	ModeCFB1: symmetric.CFB1, ModeCFB8: symmetric.CFB8, ModeCFB64: symmetric.CFB64, ModeCFB128: symmetric.CFB128, ModeOFB: symmetric.OFB}

// symmetric is the hsm/symmetric mode of m.
func (m CipherMode) symmetric() (symmetric.Mode, bool) {
	if int(m) >= len(cipherModes) || cipherModes[m] == 0 {
		return 0, false
	}
	return cipherModes[m], true
}

func (m CipherMode) String() string {
	if sm, ok := m.symmetric(); ok {
		return sm.String()
	}
	return fmt.Sprintf("CipherMode(%d)", int(m))
}

// ecbOrCBC maps the mode of the DUKPT and EMV data keys: ECB or CBC, CBC
// when unset.
func (m CipherMode) ecbOrCBC(side fault.Side) (symmetric.Mode, error) {
	switch m {
	case 0, ModeCBC:
		return symmetric.CBC, nil
	case ModeECB:
		return symmetric.ECB, nil
	}
	return 0, about(fault.SubjectCipherMode, side, "must be ECB or CBC")
}

// Padding is a padding scheme of data encryption.
type Padding uint8

// Paddings.
const (
	PaddingNone Padding = iota
	// PaddingPKCS1 is PKCS #1 v1.5 padding for RSA keys and PKCS #7 block
	// padding for TDES and AES keys.
	PaddingPKCS1
	PaddingOAEPSHA1   // RSA OAEP with SHA-1
	PaddingOAEPSHA256 // RSA OAEP with SHA-256
	PaddingOAEPSHA512 // RSA OAEP with SHA-512
)

var paddingNames = [...]string{PaddingNone: "no padding", PaddingPKCS1: "PKCS #1 v1.5 (PKCS #7 for block ciphers)",
	PaddingOAEPSHA1: "OAEP with SHA-1", PaddingOAEPSHA256: "OAEP with SHA-256", PaddingOAEPSHA512: "OAEP with SHA-512"}

func (p Padding) String() string {
	if int(p) < len(paddingNames) {
		return paddingNames[p]
	}
	return fmt.Sprintf("Padding(%d)", int(p))
}

// SymmetricCipher is a TDES or AES data key used directly.
type SymmetricCipher struct {
	Mode    CipherMode
	IV      []byte  // zero when empty
	Padding Padding // PaddingNone (data must be block aligned) or PaddingPKCS1
}

// AsymmetricCipher is an RSA data key.
type AsymmetricCipher struct {
	// Padding is PaddingPKCS1, an OAEP padding, or PaddingNone: raw RSA on
	// one modulus-sized block the caller has padded (the guide's
	// `Asymmetric={}`, "select no padding by omitting the padding indicator").
	Padding Padding
}

// DukptVariant is the DUKPT key variant: which direction of a transaction
// a working key serves.
type DukptVariant uint8

// DUKPT variants.
const (
	DukptBidirectional DukptVariant = iota // the default
	DukptRequest
	DukptResponse
)

// DukptCipher is a data key derived from a BDK (ANSI X9.24-1 / X9.24-3).
type DukptCipher struct {
	KSN            []byte
	Mode           CipherMode        // ModeECB or ModeCBC (unset: CBC)
	DerivationType keyspec.Algorithm // AES DUKPT working key type; "" = the BDK's
	Variant        DukptVariant
	IV             []byte // zero when empty (CBC)
}

// EmvCipher is an EMV secure-messaging confidentiality session key (see
// emvDataCrypter): derived from a TR31_E1 (or E6) issuer master key for the
// card PAN/PSN and the session's derivation data.
type EmvCipher struct {
	MajorKeyMode          EmvOption
	PAN, PSN              string     // digits
	SessionDerivationData []byte     // 8 bytes: R of the EMV common session key
	Mode                  CipherMode // ModeECB or ModeCBC (unset: CBC)
	IV                    []byte     // zero when empty (CBC)
}

// EncryptDataInput is EncryptData.
type EncryptDataInput struct {
	KeyIdentifier string
	PlainText     []byte
	Attributes    DataCipher
	WrappedKey    *DynamicKey // the data key, under the KEK KeyIdentifier
}

// DecryptDataInput is DecryptData.
type DecryptDataInput struct {
	KeyIdentifier string
	CipherText    []byte
	Attributes    DataCipher
	WrappedKey    *DynamicKey // the data key, under the KEK KeyIdentifier
}

// ReEncryptDataInput is ReEncryptData.
type ReEncryptDataInput struct {
	IncomingKeyIdentifier, OutgoingKeyIdentifier string
	CipherText                                   []byte
	Incoming, Outgoing                           DataCipher
	// Dynamic keys under the KEKs Incoming/OutgoingKeyIdentifier.
	IncomingWrappedKey, OutgoingWrappedKey *DynamicKey
}

// DataOutput is the result of a data operation: the key used and the data.
type DataOutput struct {
	KeyARN, KCV string
	Data        []byte
}

// KeyUsed is the key an operation used, as its result names it: the ARN
// and check value the working key holds (strings, not copied).
type KeyUsed struct {
	KeyARN, KCV string
}

// EncryptData enciphers PlainText under the key and attributes of in.
func (s *Service) EncryptData(in EncryptDataInput) (*DataOutput, error) {
	ct, k, err := s.AppendEncryptData(nil, in)
	if err != nil {
		return nil, err
	}
	return &DataOutput{KeyARN: k.KeyARN, KCV: k.KCV, Data: ct}, nil
}

// AppendEncryptData is EncryptData for a caller that keeps the result in a
// buffer of its own (the host port's response, an HTTP response's room):
// it appends the ciphertext to dst and, with a key cached and a block
// cipher, allocates nothing when dst has room. dst's spare capacity must
// not hold PlainText. On error dst is returned as it was.
func (s *Service) AppendEncryptData(dst []byte, in EncryptDataInput) ([]byte, KeyUsed, error) {
	if c := in.Attributes.Symmetric; c != nil && in.WrappedKey == nil {
		return s.appendSymmetric(dst, in.KeyIdentifier, c, in.PlainText, true)
	}
	return s.appendData(dst, in.KeyIdentifier, in.WrappedKey, in.Attributes, in.PlainText, true)
}

// DecryptData deciphers CipherText under the key and attributes of in.
func (s *Service) DecryptData(in DecryptDataInput) (*DataOutput, error) {
	pt, k, err := s.AppendDecryptData(nil, in)
	if err != nil {
		return nil, err
	}
	return &DataOutput{KeyARN: k.KeyARN, KCV: k.KCV, Data: pt}, nil
}

// AppendDecryptData is DecryptData appending the plaintext to dst, as
// AppendEncryptData; the caller clears it when done.
func (s *Service) AppendDecryptData(dst []byte, in DecryptDataInput) ([]byte, KeyUsed, error) {
	if c := in.Attributes.Symmetric; c != nil && in.WrappedKey == nil {
		return s.appendSymmetric(dst, in.KeyIdentifier, c, in.CipherText, false)
	}
	return s.appendData(dst, in.KeyIdentifier, in.WrappedKey, in.Attributes, in.CipherText, false)
}

// appendSymmetric is AppendEncryptData (enc) and AppendDecryptData with a
// stored symmetric key used directly: when it is cached and known usable,
// taken without a reference (peekWorking), it reads only its key-use set,
// Record, ARN and block cipher; anything else (a miss, a key not yet seen
// usable, a dropped key) goes through appendData and Working.
func (s *Service) appendSymmetric(dst []byte, ident string, c *SymmetricCipher, data []byte, enc bool) ([]byte, KeyUsed, error) {
	w, err := s.peekWorking(ident)
	if err != nil {
		return dst, KeyUsed{}, err
	}
	if w == nil {
		return s.appendData(dst, ident, nil, DataCipher{Symmetric: c}, data, enc)
	}
	if out, ok := fastCBC(w, dst, c, data, enc); ok {
		return out, KeyUsed{KeyARN: w.ARN, KCV: w.Record.KCV}, nil
	}
	return appendParams(w, dst, c, data, enc)
}

// What a cached key's fastData allows: fastCBC for EncryptData or
// DecryptData.
const (
	fastEncrypt uint8 = 1 << iota
	fastDecrypt
)

// fastCBC is appendSymmetric for the data plane's usual request, done with
// the fewest steps: an AES key (w, used directly) in CBC without padding,
// on a non-empty whole number of blocks, with no IV or a 16-byte one. The
// key-use check and the block size were decided when the key was opened
// (fastData, block16). It reports false for anything else, and for
// overlapping buffers (nothing written), which appendParams' checks
// then refuse as ever.
func fastCBC(w *WorkingKey, dst []byte, c *SymmetricCipher, data []byte, enc bool) ([]byte, bool) {
	op := fastDecrypt
	if enc {
		op = fastEncrypt
	}
	iv := c.IV
	if len(iv) == 0 {
		iv = zeroIV[:]
	}
	if w.fastData&op == 0 || c.Mode != ModeCBC || c.Padding != PaddingNone || len(iv) != aes.BlockSize || len(data) == 0 || len(data)%aes.BlockSize != 0 {
		return dst, false
	}
	start := len(dst)
	out := slices.Grow(dst, len(data))[:start+len(data)]
	var err error
	if enc {
		err = w.block16.EncryptCBC(iv, out[start:], data)
	} else {
		err = w.block16.DecryptCBC(iv, out[start:], data)
	}
	if err != nil {
		return dst, false
	}
	return out, true
}

// appendParams is appendSymmetric for any request fastCBC does not take:
// symmetricParams' checks, then appendBlocks.
func appendParams(w *WorkingKey, dst []byte, c *SymmetricCipher, data []byte, enc bool) ([]byte, KeyUsed, error) {
	// The resolved cipher passed in registers, not through a blockCrypt
	// in memory (its fields stored and loaded back measured about a tenth
	// of this path).
	m, iv, pkcs7, err := symmetricParams(w, fault.SubjectKey, fault.SideNone, c, enc)
	if err != nil {
		return dst, KeyUsed{}, err
	}
	out, err := appendBlocks(dst, data, w.Block, m, iv, enc, pkcs7, fault.SideNone)
	if err != nil {
		return dst, KeyUsed{}, err
	}
	return out, KeyUsed{KeyARN: w.ARN, KCV: w.Record.KCV}, nil
}

// appendData is AppendEncryptData (enc) and AppendDecryptData through
// Working, with a reference: every key and cipher, and any symmetric key
// appendSymmetric does not find cached and usable.
func (s *Service) appendData(dst []byte, ident string, dk *DynamicKey, a DataCipher, data []byte, enc bool) ([]byte, KeyUsed, error) {
	var c dataCrypter // filled in place: it is large to copy
	if err := s.dataCrypter(&c, ident, fault.SideNone, dk, a, enc); err != nil {
		return dst, KeyUsed{}, err
	}
	defer c.release()
	out, err := c.appendCrypt(dst, data)
	if err != nil {
		return dst, KeyUsed{}, err
	}
	return out, KeyUsed{KeyARN: c.arn, KCV: c.kcv}, nil
}

// ReEncryptData deciphers CipherText under the incoming key and enciphers
// the result under the outgoing key; the clear data never leaves this call.
func (s *Service) ReEncryptData(in ReEncryptDataInput) (*DataOutput, error) {
	ct, k, err := s.AppendReEncryptData(nil, in)
	if err != nil {
		return nil, err
	}
	return &DataOutput{KeyARN: k.KeyARN, KCV: k.KCV, Data: ct}, nil
}

// AppendReEncryptData is ReEncryptData appending the ciphertext under the
// outgoing key to dst, as AppendEncryptData. (The clear data in between
// is in a buffer of its own, cleared before it returns.)
func (s *Service) AppendReEncryptData(dst []byte, in ReEncryptDataInput) ([]byte, KeyUsed, error) {
	if in.Incoming.Asymmetric != nil || in.Incoming.Emv != nil {
		return dst, KeyUsed{}, about(fault.SubjectCipherAttributes, fault.SideIncoming, "must be a symmetric or DUKPT key")
	}
	if in.Outgoing.Asymmetric != nil || in.Outgoing.Emv != nil {
		return dst, KeyUsed{}, about(fault.SubjectCipherAttributes, fault.SideOutgoing, "must be a symmetric or DUKPT key")
	}
	if in.Incoming.Symmetric != nil && in.IncomingWrappedKey == nil && in.Outgoing.Symmetric != nil && in.OutgoingWrappedKey == nil {
		if out, k, ok, err := s.peekReEncrypt(dst, in); ok || err != nil {
			return out, k, err
		}
	}
	var dec, enc dataCrypter
	if err := s.dataCrypter(&dec, in.IncomingKeyIdentifier, fault.SideIncoming, in.IncomingWrappedKey, in.Incoming, false); err != nil {
		return dst, KeyUsed{}, err
	}
	defer dec.release()
	if err := s.dataCrypter(&enc, in.OutgoingKeyIdentifier, fault.SideOutgoing, in.OutgoingWrappedKey, in.Outgoing, true); err != nil {
		return dst, KeyUsed{}, err
	}
	defer enc.release()
	pt, err := dec.appendCrypt(nil, in.CipherText)
	if err != nil {
		return dst, KeyUsed{}, err
	}
	defer clear(pt)
	out, err := enc.appendCrypt(dst, pt)
	if err != nil {
		return dst, KeyUsed{}, err
	}
	return out, KeyUsed{KeyARN: enc.arn, KCV: enc.kcv}, nil
}

// peekReEncrypt is AppendReEncryptData with two stored symmetric keys used
// directly, both cached: taken without references (peekWorking), as
// appendData does. ok is false, with no error, when either key is not
// found usable in the cache; the caller then takes the referenced path.
// The checks and their order are dataCrypter's: the incoming key's, then
// the outgoing key's.
func (s *Service) peekReEncrypt(dst []byte, in ReEncryptDataInput) (out []byte, used KeyUsed, ok bool, err error) {
	wi, err := s.peekWorking(in.IncomingKeyIdentifier)
	if wi == nil || err != nil {
		return dst, KeyUsed{}, false, err
	}
	mi, ivi, padi, err := symmetricParams(wi, fault.SubjectKey, fault.SideIncoming, in.Incoming.Symmetric, false)
	if err != nil {
		return dst, KeyUsed{}, false, err
	}
	wo, err := s.peekWorking(in.OutgoingKeyIdentifier)
	if wo == nil || err != nil {
		return dst, KeyUsed{}, false, err
	}
	mo, ivo, pado, err := symmetricParams(wo, fault.SubjectKey, fault.SideOutgoing, in.Outgoing.Symmetric, true)
	if err != nil {
		return dst, KeyUsed{}, false, err
	}
	pt, err := appendBlocks(nil, in.CipherText, wi.Block, mi, ivi, false, padi, fault.SideIncoming)
	if err != nil {
		return dst, KeyUsed{}, false, err
	}
	defer clear(pt)
	if out, err = appendBlocks(dst, pt, wo.Block, mo, ivo, true, pado, fault.SideOutgoing); err != nil {
		return dst, KeyUsed{}, false, err
	}
	return out, KeyUsed{KeyARN: wo.ARN, KCV: wo.Record.KCV}, true, nil
}

// dataCrypter is one direction of a resolved data key: a block cipher in a
// mode (blk) or, for RSA keys, a function (f). It is a value, not a
// closure, so resolving a symmetric key allocates nothing.
type dataCrypter struct {
	arn, kcv string
	blk      blockCrypt                   // when f is nil
	f        func([]byte) ([]byte, error) // RSA keys
	release  func()                       // zeroes a dynamic key; call when done with crypt
}

// appendCrypt appends data enciphered or deciphered to dst.
func (c *dataCrypter) appendCrypt(dst, data []byte) ([]byte, error) {
	if c.f == nil {
		return c.blk.appendCrypt(dst, data)
	}
	out, err := c.f(data)
	if err != nil || dst == nil {
		return out, err
	}
	dst = append(dst, out...)
	clear(out)
	return dst, nil
}

// dataCrypter resolves the key ident (or the dynamic key dk under the KEK
// ident) of side and the attributes c into an encrypting (enc) or
// decrypting function, checking key separation first. The caller calls
// release when done.
func (s *Service) dataCrypter(dc *dataCrypter, ident string, side fault.Side, dk *DynamicKey, c DataCipher, enc bool) error {
	w, subj, arn, release, err := s.requestKey(ident, fault.SubjectKey, side, dk)
	if err != nil {
		return err
	}
	if err := dataCrypterFor(dc, w, subj, side, c, enc); err != nil {
		release()
		return err
	}
	dc.arn, dc.release = arn, release
	return nil
}

// dataCrypterFor builds the crypter of the resolved key w (the request's
// key subj on side).
func dataCrypterFor(dc *dataCrypter, w *WorkingKey, subj fault.Subject, side fault.Side, c DataCipher, enc bool) (err error) {
	dc.kcv = w.KCV()
	switch {
	case c.Symmetric != nil:
		m, iv, pkcs7, err := symmetricParams(w, subj, side, c.Symmetric, enc)
		if err != nil {
			return err
		}
		dc.blk = blockCrypt{b: w.Block, m: m, iv: iv, enc: enc, pkcs7: pkcs7, side: side}
	case c.Dukpt != nil:
		if err := RequireUse(w, pick(enc, keyspec.UseEncryptDataDukpt, keyspec.UseDecryptDataDukpt), subj, side); err != nil {
			return err
		}
		d := c.Dukpt
		mode, err := d.Mode.ecbOrCBC(side)
		if err != nil {
			return err
		}
		key, t, err := dukptWorkingKey(w, side, d.KSN, d.DerivationType, d.Variant, dukptData, bdkKeyType(w.Record.Attributes.Algorithm))
		if err != nil {
			return err
		}
		b, err := workingBlock(key, t)
		clear(key)
		if err != nil {
			return err
		}
		iv, err := dataIV(side, d.IV, mode, b.BlockSize())
		if err != nil {
			return err
		}
		dc.blk = blockCrypt{b: b, m: mode, iv: iv, enc: enc, side: side}
	case c.Asymmetric != nil:
		if err := RequireUse(w, pick(enc, keyspec.UseEncryptDataAsymmetric, keyspec.UseDecryptDataAsymmetric), subj, side); err != nil {
			return err
		}
		if dc.f, err = rsaCrypter(w, subj, side, c.Asymmetric.Padding, enc); err != nil {
			return err
		}
	case c.Emv != nil:
		if err := RequireUse(w, pick(enc, keyspec.UseEncryptDataEmv, keyspec.UseDecryptDataEmv), subj, side); err != nil {
			return err
		}
		if dc.blk, err = emvDataCrypter(w, side, c.Emv, enc); err != nil {
			return err
		}
	default:
		return about(fault.SubjectCipherAttributes, side, "exactly one encryption method (symmetric, asymmetric, DUKPT or EMV) is required")
	}
	return nil
}

// symmetricParams resolves the symmetric attributes c on the key w used
// directly (the request's key subj on side) into a mode, an IV and
// whether to pad, checking key separation first: every request, whether
// its key was peeked (appendData) or referenced (dataCrypterFor). It reads
// only w's key-use set, Record and Block, so it needs no reference.
func symmetricParams(w *WorkingKey, subj fault.Subject, side fault.Side, c *SymmetricCipher, enc bool) (m symmetric.Mode, iv []byte, pkcs7 bool, err error) {
	if err := RequireUse(w, pick(enc, keyspec.UseEncryptDataSymmetric, keyspec.UseDecryptDataSymmetric), subj, side); err != nil {
		return 0, nil, false, err
	}
	m, ok := c.Mode.symmetric()
	if !ok {
		return 0, nil, false, about(fault.SubjectCipherMode, side, "unknown mode")
	}
	switch c.Padding {
	case PaddingNone:
	case PaddingPKCS1:
		pkcs7 = true
	default:
		return 0, nil, false, about(fault.SubjectPadding, side, "OAEP padding applies to RSA keys only; symmetric keys take PKCS #7 block padding or none")
	}
	if iv, err = dataIV(side, c.IV, m, w.Block.BlockSize()); err != nil {
		return 0, nil, false, err
	}
	return m, iv, pkcs7, nil
}

// workingBlock builds the block cipher of a derived working key.
func workingBlock(key []byte, t dukpt.KeyType) (cipher.Block, error) {
	var b cipher.Block
	var err error
	if t == dukpt.TDES2 || t == dukpt.TDES3 {
		b, err = tdes.NewCipher(key)
	} else {
		b, err = aes.NewCipher(key)
	}
	if err != nil {
		return nil, fault.Internalf("working key schedule", err)
	}
	return b, nil
}

// zeroIV is the IV of a request without one: shared and read-only
// (hsm/symmetric never writes to an IV; its FuzzCBC checks every mode).
var zeroIV [aes.BlockSize]byte

// dataIV checks the IV of side: zero when empty, refused for ECB.
func dataIV(side fault.Side, iv []byte, m symmetric.Mode, bs int) ([]byte, error) {
	if !m.NeedsIV() {
		if len(iv) != 0 {
			return nil, about(fault.SubjectIV, side, "is not used with ECB")
		}
		return nil, nil
	}
	if len(iv) == 0 {
		return zeroIV[:bs], nil
	}
	if len(iv) != bs {
		return nil, about(fault.SubjectIV, side, "must be %d bytes for this key", bs)
	}
	return iv, nil
}

// blockCrypt enciphers (enc) or deciphers data under b in mode m. Data must
// be a whole number of blocks (user guide, "Encrypt data"), unless PKCS#7
// padding is requested. Its faults are about side.
type blockCrypt struct {
	b          cipher.Block
	m          symmetric.Mode
	iv         []byte
	enc, pkcs7 bool
	side       fault.Side
}

// appendCrypt appends the result to dst (whose spare capacity must not
// hold data). On error nothing of it is left in dst's spare capacity.
func (c *blockCrypt) appendCrypt(dst, data []byte) ([]byte, error) {
	return appendBlocks(dst, data, c.b, c.m, c.iv, c.enc, c.pkcs7, c.side)
}

// appendBlocks is blockCrypt.appendCrypt with the cipher's parts as
// arguments.
func appendBlocks(dst, data []byte, b cipher.Block, m symmetric.Mode, iv []byte, enc, pkcs7 bool, side fault.Side) ([]byte, error) {
	bs := b.BlockSize()
	start := len(dst)
	var out []byte
	var err error
	switch {
	case enc && pkcs7: // padded in dst, then enciphered in place
		out = symmetric.AppendPadPKCS7(dst, data, bs)
		err = symmetric.EncryptTo(b, m, iv, out[start:], out[start:])
	case len(data) == 0 || !symmetric.MultipleOf(len(data), bs):
		return dst, about(fault.SubjectData, side, "must be a non-empty multiple of %d bytes for this key", bs)
	default:
		out = slices.Grow(dst, len(data))[:start+len(data)]
		if enc {
			err = symmetric.EncryptTo(b, m, iv, out[start:], data)
		} else {
			err = symmetric.DecryptTo(b, m, iv, out[start:], data)
		}
	}
	if err != nil {
		clear(out[start:])
		if errors.Is(err, symmetric.ErrMode) {
			return dst, about(fault.SubjectCipherMode, side, "%v is not available for this key's block size", m)
		}
		return dst, fault.Internalf("block cipher", err)
	}
	if !enc && pkcs7 {
		p, err := symmetric.UnpadPKCS7(out[start:], bs)
		if err != nil {
			clear(out[start:])
			return dst, about(fault.SubjectData, side, "does not decrypt to PKCS#7-padded data")
		}
		return out[:start+len(p)], nil
	}
	return out, nil
}

// rsaCrypter returns RSA encryption under the public key or decryption
// under the private key of w (the request's key subj on side), with the
// given padding.
func rsaCrypter(w *WorkingKey, subj fault.Subject, side fault.Side, padding Padding, enc bool) (func([]byte) ([]byte, error), error) {
	var h hash.Hash
	var hid crypto.Hash
	switch padding {
	case PaddingPKCS1:
	case PaddingOAEPSHA1:
		h, hid = sha1.New(), crypto.SHA1 //nolint:gosec // G401: RSA-OAEP with SHA-1 is the model's OAEP_SHA1 padding, which callers choose
	case PaddingOAEPSHA256:
		h, hid = sha256.New(), crypto.SHA256
	case PaddingOAEPSHA512:
		h, hid = sha512.New(), crypto.SHA512
	case PaddingNone:
		return rawRSACrypter(w, subj, side, enc)
	default:
		return nil, about(fault.SubjectPadding, side, "unknown padding")
	}
	if enc {
		pub, err := rsaPublic(w)
		if err != nil {
			return nil, err
		}
		return func(pt []byte) ([]byte, error) {
			var ct []byte
			var err error
			if h == nil {
				ct, err = rsa.EncryptPKCS1v15(rand.Reader, pub, pt) //nolint:staticcheck // SA1019: the model's PKCS1 padding, which callers choose and the API must answer
			} else {
				ct, err = rsa.EncryptOAEP(h, rand.Reader, pub, pt, nil)
			}
			if errors.Is(err, rsa.ErrMessageTooLong) {
				return nil, about(fault.SubjectData, side, "is too long for a %d-bit key with this padding", pub.N.BitLen())
			}
			if err != nil {
				return nil, fault.Internalf("RSA encryption", err)
			}
			return ct, nil
		}, nil
	}
	priv, err := rsaPrivateKey(w, subj, side)
	if err != nil {
		return nil, err
	}
	return func(ct []byte) ([]byte, error) {
		var pt []byte
		var err error
		if h == nil {
			pt, err = priv.Decrypt(rand.Reader, ct, &rsa.PKCS1v15DecryptOptions{}) //nolint:staticcheck // SA1019: the model's PKCS1 padding, which callers choose and the API must answer
		} else {
			pt, err = priv.Decrypt(rand.Reader, ct, &rsa.OAEPOptions{Hash: hid})
		}
		if err != nil {
			return nil, about(fault.SubjectData, side, "could not be decrypted with this key and padding")
		}
		return pt, nil
	}, nil
}

// rsaPublic is the public key of an RSA key pair or public key record.
// rawRSACrypter is rsaCrypter without padding: RSAEP/RSADP (hsm/rsaraw) on
// exactly one block of the modulus's length, whose value is below the
// modulus; decryption returns the whole block, leading zeros included, for
// the caller to unpad.
func rawRSACrypter(w *WorkingKey, subj fault.Subject, side fault.Side, enc bool) (func([]byte) ([]byte, error), error) {
	rawFault := func(err error, size int) error {
		switch {
		case errors.Is(err, rsaraw.ErrLength):
			return about(fault.SubjectData, side, "must be exactly %d bytes, the modulus length, for RSA without padding (pad it first)", size)
		case errors.Is(err, rsaraw.ErrRange):
			return about(fault.SubjectData, side, "must be less than the key's modulus for RSA without padding")
		}
		return fault.Internalf("raw RSA", err)
	}
	if enc {
		pub, err := rsaPublic(w)
		if err != nil {
			return nil, err
		}
		return func(pt []byte) ([]byte, error) {
			ct, err := rsaraw.Encrypt(pub, pt)
			if err != nil {
				return nil, rawFault(err, rsaraw.Size(pub))
			}
			return ct, nil
		}, nil
	}
	priv, err := rsaPrivateKey(w, subj, side)
	if err != nil {
		return nil, err
	}
	return func(ct []byte) ([]byte, error) {
		pt, err := rsaraw.Decrypt(priv, ct)
		if err != nil {
			return nil, rawFault(err, rsaraw.Size(&priv.PublicKey))
		}
		return pt, nil
	}, nil
}

func rsaPublic(w *WorkingKey) (*rsa.PublicKey, error) {
	if len(w.Record.PublicKey) > 0 {
		k, err := x509.ParsePKIXPublicKey(w.Record.PublicKey)
		if err != nil {
			return nil, fault.Internalf("parse public key", err)
		}
		if pub, ok := k.(*rsa.PublicKey); ok {
			return pub, nil
		}
		return nil, fault.Validationf("%s is not an RSA key", w.ARN)
	}
	k, err := x509.ParsePKCS8PrivateKey(w.Material)
	if err != nil {
		return nil, fault.Internalf("parse private key", err)
	}
	priv, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fault.Validationf("%s is not an RSA key", w.ARN)
	}
	return &priv.PublicKey, nil
}

// pick returns a when cond holds, else b.
func pick[T any](cond bool, a, b T) T {
	if cond {
		return a
	}
	return b
}

// rsaPrivateKey is the RSA private key of w, for decryption.
func rsaPrivateKey(w *WorkingKey, subj fault.Subject, side fault.Side) (*rsa.PrivateKey, error) {
	if w.Material == nil {
		return nil, about(subj, side, "%s is a public key and cannot decrypt", w.ARN)
	}
	k, err := x509.ParsePKCS8PrivateKey(w.Material)
	if err != nil {
		return nil, fault.Internalf("parse private key", err)
	}
	priv, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, about(subj, side, "%s is not an RSA key", w.ARN)
	}
	return priv, nil
}
