package emv

// Offline PIN change by issuer script (EMV 4.4 Book 2 section 9, secure
// messaging; Book 3 PIN CHANGE/UNBLOCK): the new PIN is laid out as the
// card expects it, enciphered under the ICC confidentiality session key
// (SK-SMC), and the script command — message data followed by the
// enciphered PIN data — is authenticated with MAC algorithm 3 under the ICC
// integrity session key (SK-SMI).

import (
	"crypto/cipher"
	"crypto/subtle"
	"errors"

	"payhsm/hsm/tdes"
)

var errPIN = errors.New("emv: PIN must be 4 to 12 decimal digits")

func validPIN(pin []byte) bool {
	if len(pin) < 4 || len(pin) > 12 {
		return false
	}
	for _, c := range pin {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// pinLen is the number of digits of a PIN that passed validPIN, the N of
// the PIN block's control byte; 0 for any other length.
func pinLen(pin []byte) byte {
	if n := len(pin); n >= 4 && n <= 12 {
		return byte(n)
	}
	return 0
}

// pinField packs ctrl (the first byte) and the ASCII digits of pin into 8
// bytes, filling the rest with 'F' nibbles: ctrl || P1 P2 ... || F...F.
func pinField(ctrl byte, pin []byte) [8]byte {
	var b [8]byte
	b[0] = ctrl
	for i := 0; i < 14; i++ {
		d := byte(0x0F)
		if i < len(pin) {
			d = pin[i] - '0'
		}
		if i%2 == 0 {
			b[1+i/2] = d << 4
		} else {
			b[1+i/2] |= d
		}
	}
	return b
}

// ISO2PINBlock is the ISO 9564-1 format 2 plaintext PIN block the card's
// PIN CHANGE/UNBLOCK command carries: '2' || N || PIN || 'F' fill
// (Book 3 6.5.13, ISO 9564-1 format 2). pin is ASCII digits, 4 to 12 long.
func ISO2PINBlock(pin []byte) ([]byte, error) {
	if !validPIN(pin) {
		return nil, errPIN
	}
	b := pinField(0x20|pinLen(pin), pin)
	return b[:], nil
}

// VisaPINBlock is the VIS PIN block of Visa Integrated Circuit Card
// Specification (VIS) 1.5 Appendix C "PIN Change/Unblock": the 8 bytes
// N || PIN || 'F' fill (N a whole byte), XORed with '00000000' || the four
// rightmost bytes of the left half of the ICC master key for application
// cryptograms mkAC, and, when the card's current PIN is given, XORed with
// that PIN left-justified and zero-filled to 16 digits.
func VisaPINBlock(mkAC, pin, current []byte) ([]byte, error) {
	if len(mkAC) != 16 {
		return nil, errors.New("emv: ICC master key for application cryptograms must be a double-length TDES key")
	}
	if !validPIN(pin) || (current != nil && !validPIN(current)) {
		return nil, errPIN
	}
	b := pinField(pinLen(pin), pin)
	subtle.XORBytes(b[4:], b[4:], mkAC[4:8])
	if current != nil {
		var c [8]byte
		for i, d := range current {
			c[i/2] |= (d - '0') << (4 * (1 - i%2))
		}
		subtle.XORBytes(b[:], b[:], c[:])
		clear(c[:])
	}
	out := append([]byte(nil), b[:]...)
	clear(b[:])
	return out, nil
}

// CipherMode is the TDES mode of secure-messaging encipherment.
type CipherMode int

const (
	// ECB enciphers each 8-byte block independently.
	ECB CipherMode = iota + 1
	// CBC chains the blocks with an all-zero initial vector.
	CBC
)

// PINDataLayout says how the PIN block is laid out before encipherment
// (the API's PinBlockLengthPosition and PinBlockPaddingType).
type PINDataLayout struct {
	// LengthPrefix puts a one-byte length of the PIN block in front of it
	// (FRONT_OF_PIN_BLOCK; VIS 1.5 secure messaging for confidentiality).
	LengthPrefix bool
	// Pad pads with ISO/IEC 7816-4 (= ISO/IEC 9797-1 method 2: '80' then
	// '00' bytes) up to the next block boundary, always adding at least one
	// byte (EMV Common Core Definitions). Without it the data must already
	// be whole blocks.
	Pad bool
}

// The layouts of the schemes (pyemv sm.EncryptionType, after VIS 1.5,
// M/Chip and the EMV Common Core Definitions).
var (
	// LayoutVisa: length byte || PIN block, padded (VIS 1.5), ECB.
	LayoutVisa = PINDataLayout{LengthPrefix: true, Pad: true}
	// LayoutMastercard: the PIN block as it is (8 bytes need no padding).
	LayoutMastercard = PINDataLayout{}
	// LayoutCCD: the PIN block always padded (EMV CCD, Book 2 A1.1).
	LayoutCCD = PINDataLayout{Pad: true}
)

// EncipherPINData lays out the plaintext PIN block per l and enciphers it
// with two-key TDES under the confidentiality session key sk in mode m.
// The result is 8 or 16 bytes.
func EncipherPINData(sk, block []byte, l PINDataLayout, m CipherMode) ([]byte, error) {
	if len(sk) != 16 {
		return nil, errors.New("emv: confidentiality session key must be a double-length TDES key")
	}
	if len(block) != 8 {
		return nil, errors.New("emv: PIN block must be 8 bytes")
	}
	data := make([]byte, 0, 16)
	if l.LengthPrefix {
		data = append(data, 8) // len(block), checked above
	}
	data = append(data, block...)
	if l.Pad {
		p := Pad(data, 8, PadMethod2)
		clear(data)
		data = p
	}
	defer clear(data)
	if len(data)%8 != 0 {
		return nil, errors.New("emv: PIN data with a length prefix must be padded")
	}
	c, err := tdes.NewCipher(sk)
	if err != nil {
		return nil, errKeyLen
	}
	out := make([]byte, len(data))
	switch m {
	case ECB:
		for i := 0; i < len(data); i += 8 {
			c.Encrypt(out[i:i+8], data[i:i+8])
		}
	case CBC:
		// EMV Book 2 A1.1 (and the CCD's PIN data encipherment): CBC with a
		// zero IV, under a session key used for this one message.
		cipher.NewCBCEncrypter(c, make([]byte, 8)).CryptBlocks(out, data) //nolint:gosec // G407: the zero IV is the standard's.
	default:
		return nil, errors.New("emv: unknown cipher mode")
	}
	return out, nil
}

// ScriptMAC is the secure-messaging MAC of an issuer script command (Book 2
// 9.2.3, A1.2.1): MAC algorithm 3 with padding method 2 over msg under the
// integrity session key sk, 8 bytes.
func ScriptMAC(sk, msg []byte) ([]byte, error) {
	return Cryptogram(sk, msg, PadMethod2)
}
