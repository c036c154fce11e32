package ops

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"hash"
	"strings"

	"payhsm/fault"
	"payhsm/hsm/dukpt"
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

// SymmetricCipher is a TDES or AES data key used directly.
type SymmetricCipher struct {
	Mode    string // ECB, CBC, CFB, CFB1, CFB8, CFB64, CFB128, OFB
	IV      string // hex; zero when empty
	Padding string // "" (data must be block aligned) or PKCS1 (PKCS#7 padding)
}

// AsymmetricCipher is an RSA data key.
type AsymmetricCipher struct {
	Padding string // PKCS1, OAEP_SHA1, OAEP_SHA256, OAEP_SHA512
}

// DukptCipher is a data key derived from a BDK (ANSI X9.24-1 / X9.24-3).
type DukptCipher struct {
	KSN            string // hex
	Mode           string // ECB or CBC (default CBC)
	DerivationType string // AES DUKPT working key type; default the BDK's
	Variant        string // REQUEST, RESPONSE, BIDIRECTIONAL (default)
	IV             string
}

// EmvCipher is an EMV secure-messaging confidentiality session key (see
// emvDataKey): derived from a TR31_E1 (or E6) issuer master key for the card
// PAN/PSN and the session's derivation data.
type EmvCipher struct {
	MajorKeyDerivationMode string // EMV_OPTION_A or EMV_OPTION_B
	PAN, PSN               string // digits
	SessionDerivationData  string // 16 hex digits: R of the EMV common session key
	Mode                   string // ECB or CBC (default CBC)
	IV                     string // hex; zero when empty (CBC)
}

// EncryptDataInput is EncryptData.
type EncryptDataInput struct {
	KeyIdentifier string
	PlainText     string // hex
	Attributes    DataCipher
	WrappedKey    *DynamicKey // the data key, under the KEK KeyIdentifier
}

// DecryptDataInput is DecryptData.
type DecryptDataInput struct {
	KeyIdentifier string
	CipherText    string // hex
	Attributes    DataCipher
	WrappedKey    *DynamicKey // the data key, under the KEK KeyIdentifier
}

// ReEncryptDataInput is ReEncryptData.
type ReEncryptDataInput struct {
	IncomingKeyIdentifier, OutgoingKeyIdentifier string
	CipherText                                   string
	Incoming, Outgoing                           DataCipher
	// Dynamic keys under the KEKs Incoming/OutgoingKeyIdentifier.
	IncomingWrappedKey, OutgoingWrappedKey *DynamicKey
}

// DataOutput is the result of a data operation: the key used and the data (hex).
type DataOutput struct {
	KeyARN, KCV string
	Data        string
}

// EncryptData enciphers PlainText under the key and attributes of in.
func (s *Service) EncryptData(in EncryptDataInput) (*DataOutput, error) {
	c, err := s.dataCrypter(in.KeyIdentifier, "KeyIdentifier", in.WrappedKey, "WrappedKey", in.Attributes, "EncryptionAttributes", true)
	if err != nil {
		return nil, err
	}
	defer c.release()
	pt, err := dataHex("PlainText", in.PlainText)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	ct, err := c.crypt(pt, "PlainText")
	if err != nil {
		return nil, err
	}
	return &DataOutput{KeyARN: c.arn, KCV: c.kcv, Data: strings.ToUpper(hex.EncodeToString(ct))}, nil
}

// DecryptData deciphers CipherText under the key and attributes of in.
func (s *Service) DecryptData(in DecryptDataInput) (*DataOutput, error) {
	c, err := s.dataCrypter(in.KeyIdentifier, "KeyIdentifier", in.WrappedKey, "WrappedKey", in.Attributes, "DecryptionAttributes", false)
	if err != nil {
		return nil, err
	}
	defer c.release()
	ct, err := dataHex("CipherText", in.CipherText)
	if err != nil {
		return nil, err
	}
	pt, err := c.crypt(ct, "CipherText")
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	return &DataOutput{KeyARN: c.arn, KCV: c.kcv, Data: strings.ToUpper(hex.EncodeToString(pt))}, nil
}

// ReEncryptData deciphers CipherText under the incoming key and enciphers
// the result under the outgoing key; the clear data never leaves this call.
func (s *Service) ReEncryptData(in ReEncryptDataInput) (*DataOutput, error) {
	if in.Incoming.Asymmetric != nil || in.Incoming.Emv != nil {
		return nil, fault.FieldInvalid("IncomingEncryptionAttributes", "must be Symmetric or Dukpt")
	}
	if in.Outgoing.Asymmetric != nil || in.Outgoing.Emv != nil {
		return nil, fault.FieldInvalid("OutgoingEncryptionAttributes", "must be Symmetric or Dukpt")
	}
	dec, err := s.dataCrypter(in.IncomingKeyIdentifier, "IncomingKeyIdentifier", in.IncomingWrappedKey, "IncomingWrappedKey",
		in.Incoming, "IncomingEncryptionAttributes", false)
	if err != nil {
		return nil, err
	}
	defer dec.release()
	enc, err := s.dataCrypter(in.OutgoingKeyIdentifier, "OutgoingKeyIdentifier", in.OutgoingWrappedKey, "OutgoingWrappedKey",
		in.Outgoing, "OutgoingEncryptionAttributes", true)
	if err != nil {
		return nil, err
	}
	defer enc.release()
	ct, err := dataHex("CipherText", in.CipherText)
	if err != nil {
		return nil, err
	}
	pt, err := dec.crypt(ct, "CipherText")
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	out, err := enc.crypt(pt, "CipherText")
	if err != nil {
		return nil, err
	}
	return &DataOutput{KeyARN: enc.arn, KCV: enc.kcv, Data: strings.ToUpper(hex.EncodeToString(out))}, nil
}

// dataCrypter is one direction of a resolved data key.
type dataCrypter struct {
	arn, kcv string
	crypt    func(data []byte, field string) ([]byte, error)
	release  func() // zeroes a dynamic key; call when done with crypt
}

var dataAlgorithms = []keyspec.Algorithm{keyspec.TDES2Key, keyspec.TDES3Key, keyspec.AES128, keyspec.AES192, keyspec.AES256}

// dataCrypter resolves the key ident (or the dynamic key dk, request member
// dkField, under the KEK ident) and the attributes c (request member attr)
// into an encrypting (enc) or decrypting function, checking key separation
// first. The caller calls release when done.
func (s *Service) dataCrypter(ident, keyField string, dk *DynamicKey, dkField string, c DataCipher, attr string, enc bool) (*dataCrypter, error) {
	w, field, arn, release, err := s.requestKey(ident, keyField, dk, dkField)
	if err != nil {
		return nil, err
	}
	dc, err := dataCrypterFor(w, field, c, attr, enc)
	if err != nil {
		release()
		return nil, err
	}
	dc.arn, dc.release = arn, release
	return dc, nil
}

// dataCrypterFor builds the crypter of the resolved key w (request member field).
func dataCrypterFor(w *WorkingKey, field string, c DataCipher, attr string, enc bool) (*dataCrypter, error) {
	op := "DecryptData"
	if enc {
		op = "EncryptData"
	}
	dc := &dataCrypter{kcv: w.KCV()}
	switch {
	case c.Symmetric != nil:
		if err := Require(w, field, op, []keyspec.KeyUsage{keyspec.D0}, dataAlgorithms, dataModes(enc)); err != nil {
			return nil, err
		}
		m, ok := symmetric.ParseMode(c.Symmetric.Mode)
		if !ok {
			return nil, fault.FieldInvalid(attr+".Symmetric.Mode", "unknown mode")
		}
		var pkcs7 bool
		switch c.Symmetric.Padding {
		case "":
		case "PKCS1":
			pkcs7 = true
		default:
			return nil, fault.FieldInvalid(attr+".Symmetric.PaddingType", "%s applies to RSA keys only; symmetric keys take PKCS1 (PKCS#7 block padding) or none", c.Symmetric.Padding)
		}
		iv, err := dataIV(attr+".Symmetric.InitializationVector", c.Symmetric.IV, m, w.Block.BlockSize())
		if err != nil {
			return nil, err
		}
		dc.crypt = blockCrypter(w.Block, m, iv, enc, pkcs7)
	case c.Dukpt != nil:
		if err := Require(w, field, op+" with DUKPT", []keyspec.KeyUsage{keyspec.B0}, bdkAlgorithms, deriveMode); err != nil {
			return nil, err
		}
		d := c.Dukpt
		mode := symmetric.CBC
		switch d.Mode {
		case "", "CBC":
		case "ECB":
			mode = symmetric.ECB
		default:
			return nil, fault.FieldInvalid(attr+".Dukpt.Mode", "must be ECB or CBC")
		}
		key, t, err := dukptWorkingKey(w, attr+".Dukpt", d.KSN, d.DerivationType, d.Variant, dukptData, bdkKeyType(w.Record.Attributes.Algorithm))
		if err != nil {
			return nil, err
		}
		b, err := workingBlock(key, t)
		clear(key)
		if err != nil {
			return nil, err
		}
		iv, err := dataIV(attr+".Dukpt.InitializationVector", d.IV, mode, b.BlockSize())
		if err != nil {
			return nil, err
		}
		dc.crypt = blockCrypter(b, mode, iv, enc, false)
	case c.Asymmetric != nil:
		if err := Require(w, field, op, []keyspec.KeyUsage{keyspec.D1}, []keyspec.Algorithm{keyspec.RSA2048, keyspec.RSA3072, keyspec.RSA4096}, dataModes(enc)); err != nil {
			return nil, err
		}
		f, err := rsaCrypter(w, field, attr+".Asymmetric.PaddingType", c.Asymmetric.Padding, enc)
		if err != nil {
			return nil, err
		}
		dc.crypt = f
	case c.Emv != nil:
		if err := Require(w, field, op+" with EMV", []keyspec.KeyUsage{keyspec.E1, keyspec.E6}, tdes2, deriveKey); err != nil {
			return nil, err
		}
		f, err := emvDataCrypter(w, attr+".Emv", c.Emv, enc)
		if err != nil {
			return nil, err
		}
		dc.crypt = f
	default:
		return nil, fault.FieldInvalid(attr, "exactly one of Symmetric, Asymmetric, Dukpt or Emv is required")
	}
	return dc, nil
}

func dataModes(enc bool) func(keyspec.ModesOfUse) bool {
	if enc {
		return func(m keyspec.ModesOfUse) bool { return m.Encrypt }
	}
	return func(m keyspec.ModesOfUse) bool { return m.Decrypt }
}

func deriveMode(m keyspec.ModesOfUse) bool { return m.DeriveKey }

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

// dataIV decodes an IV member: zero when empty, refused for ECB.
func dataIV(field, s string, m symmetric.Mode, bs int) ([]byte, error) {
	if !m.NeedsIV() {
		if s != "" {
			return nil, fault.FieldInvalid(field, "is not used with ECB")
		}
		return nil, nil
	}
	if s == "" {
		return make([]byte, bs), nil
	}
	iv, err := dataHex(field, s)
	if err != nil {
		return nil, err
	}
	if len(iv) != bs {
		return nil, fault.FieldInvalid(field, "must be %d hexadecimal digits for this key", 2*bs)
	}
	return iv, nil
}

// blockCrypter returns the function that enciphers (enc) or deciphers data
// in mode m. Data must be a whole number of blocks (user guide, "Encrypt
// data"), unless PKCS#7 padding is requested.
func blockCrypter(b cipher.Block, m symmetric.Mode, iv []byte, enc, pkcs7 bool) func([]byte, string) ([]byte, error) {
	bs := b.BlockSize()
	return func(data []byte, field string) ([]byte, error) {
		if enc && pkcs7 {
			data = symmetric.PadPKCS7(data, bs)
			defer clear(data)
		}
		if len(data)%bs != 0 || len(data) == 0 {
			return nil, fault.FieldInvalid(field, "must be a non-empty multiple of %d bytes for this key", bs)
		}
		var out []byte
		var err error
		if enc {
			out, err = symmetric.Encrypt(b, m, iv, data)
		} else {
			out, err = symmetric.Decrypt(b, m, iv, data)
		}
		if err != nil {
			if errors.Is(err, symmetric.ErrMode) {
				return nil, fault.FieldInvalid("Mode", "%v is not available for this key's block size", m)
			}
			return nil, fault.Internalf("block cipher", err)
		}
		if !enc && pkcs7 {
			p, err := symmetric.UnpadPKCS7(out, bs)
			if err != nil {
				clear(out)
				return nil, fault.FieldInvalid(field, "does not decrypt to PKCS#7-padded data")
			}
			return p, nil
		}
		return out, nil
	}
}

// rsaCrypter returns RSA encryption under the public key or decryption
// under the private key of w, with the given padding.
func rsaCrypter(w *WorkingKey, field, padField, padding string, enc bool) (func([]byte, string) ([]byte, error), error) {
	var h hash.Hash
	switch padding {
	case "PKCS1":
	case "OAEP_SHA1":
		h = sha1.New()
	case "OAEP_SHA256":
		h = sha256.New()
	case "OAEP_SHA512":
		h = sha512.New()
	case "":
		return nil, fault.FieldInvalid(padField, "is required for RSA keys (PKCS1, OAEP_SHA1, OAEP_SHA256 or OAEP_SHA512)")
	default:
		return nil, fault.FieldInvalid(padField, "unknown padding")
	}
	if enc {
		pub, err := rsaPublic(w)
		if err != nil {
			return nil, err
		}
		return func(pt []byte, f string) ([]byte, error) {
			var ct []byte
			var err error
			if h == nil {
				ct, err = rsa.EncryptPKCS1v15(rand.Reader, pub, pt)
			} else {
				ct, err = rsa.EncryptOAEP(h, rand.Reader, pub, pt, nil)
			}
			if errors.Is(err, rsa.ErrMessageTooLong) {
				return nil, fault.FieldInvalid(f, "is too long for a %d-bit key with %s padding", pub.N.BitLen(), padding)
			}
			if err != nil {
				return nil, fault.Internalf("RSA encryption", err)
			}
			return ct, nil
		}, nil
	}
	if w.Material == nil {
		return nil, fault.FieldInvalid(field, "%s is a public key and cannot decrypt", w.ARN)
	}
	k, err := x509.ParsePKCS8PrivateKey(w.Material)
	if err != nil {
		return nil, fault.Internalf("parse private key", err)
	}
	priv, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fault.FieldInvalid(field, "%s is not an RSA key", w.ARN)
	}
	return func(ct []byte, f string) ([]byte, error) {
		var pt []byte
		var err error
		if h == nil {
			pt, err = priv.Decrypt(rand.Reader, ct, &rsa.PKCS1v15DecryptOptions{})
		} else {
			pt, err = priv.Decrypt(rand.Reader, ct, &rsa.OAEPOptions{Hash: hashID(padding)})
		}
		if err != nil {
			return nil, fault.FieldInvalid(f, "could not be decrypted with this key and padding")
		}
		return pt, nil
	}, nil
}

func hashID(padding string) crypto.Hash {
	switch padding {
	case "OAEP_SHA1":
		return crypto.SHA1
	case "OAEP_SHA512":
		return crypto.SHA512
	}
	return crypto.SHA256
}

// rsaPublic is the public key of an RSA key pair or public key record.
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

// dataHex decodes a hex request member.
func dataHex(field, s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fault.FieldInvalid(field, "must be hexadecimal with an even number of digits")
	}
	return b, nil
}
