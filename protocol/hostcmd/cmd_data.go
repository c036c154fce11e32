package hostcmd

import (
	"slices"

	"payhsm/ops"
)

// macKeyTypes are M6/M8's key type codes: TAK, ZAK, or a key block.
var macKeyTypes = map[string]bool{"003": true, "008": true, "FFF": true}

// M6 generates and M8 verifies a MAC in one block (mode 0).
// Request: mode 1N ("0") | input format 1N (0 binary, 1 hex, 2 text) | MAC
// size 1N (0: 8H, 1: 16H) | MAC algorithm 1N (1: ISO 9797-1 algorithm 1, 3:
// algorithm 3) | padding 1N (0 none, 1 ISO 9797-1 method 1, 2 method 2) |
// key type 3H | key | message length 4H (as sent) | message | [M8: MAC].
// Response: M7 the MAC; M9 the error code only.
type macCmd struct {
	verify   bool
	key      keyRef
	alg      ops.MacAlgorithm
	macLen   int // bytes
	msg      []byte
	padding  byte
	macValue []byte // M8: the MAC to verify (in mac)
	mac      [8]byte
}

func decodeM6(c *cursor) command { return decodeMAC(c, false) }
func decodeM8(c *cursor) command { return decodeMAC(c, true) }

func decodeMAC(c *cursor, verify bool) command {
	m := &macCmd{verify: verify}
	f := c.take(5, "flags")
	if c.err != nil {
		return m
	}
	mode, inFmt, size, alg, pad := f[0], f[1], f[2], f[3], f[4]
	switch {
	case mode != '0':
		c.fail("02", "mode flag: only 0 (single block) is supported")
	case inFmt < '0' || inFmt > '2':
		c.fail("03", "input format")
	case size != '0' && size != '1':
		c.fail("04", "MAC size")
	case alg != '1' && alg != '3':
		c.fail("04", "MAC algorithm")
	case pad < '0' || pad > '2':
		c.fail("09", "padding method")
	}
	m.macLen = 4
	if size == '1' {
		m.macLen = 8
	}
	m.alg = ops.MacISO9797Alg1
	if alg == '3' {
		m.alg = ops.MacISO9797Alg3
	}
	m.padding = pad
	if kt := c.hex(3, "key type"); c.err == nil && !macKeyTypes[kt] {
		c.fail("05", "key type")
	}
	m.key = c.key("key")
	m.msg = c.message(inFmt, "06")
	if verify {
		m.macValue = c.hexBytes(2*m.macLen, "MAC", m.mac[:0])
	}
	c.finish()
	if c.err == nil && pad == '0' && len(m.msg)%8 != 0 {
		c.fail(codeDataLength, "without padding the message must be whole 8-byte blocks")
	}
	return m
}

// message decodes a length 4H + message field (the length counts the
// characters as sent) into its bytes; input format 1 is hex-encoded.
func (c *cursor) message(inFmt byte, lenCode string) []byte {
	n := c.hexLen(4, "message length")
	if c.err != nil {
		return nil
	}
	if n == 0 || n > c.left() || inFmt == '1' && n%2 != 0 {
		c.fail(lenCode, "message length")
		return nil
	}
	if inFmt != '1' {
		return c.take(n, "message")
	}
	return c.hexBytes(n, "message", make([]byte, 0, n/2))
}

func (m *macCmd) run(x *call) ([]byte, error) { return m.appendFields(x, nil) }

// appendFields appends M7's MAC (hex) to dst, M9's nothing. The MAC is
// computed into dst's spare room (padding method 2's padded message too,
// in the call's scratch) and hex-encoded over it: no allocation.
func (m *macCmd) appendFields(x *call, dst []byte) ([]byte, error) {
	msg := m.msg
	if m.padding == '2' { // ISO 9797-1 method 2: 0x80 then zeros to a whole block
		msg = append(append(x.scratch[:0], msg...), 0x80)
		for len(msg)%8 != 0 {
			msg = append(msg, 0)
		}
		x.scratch = msg
	}
	attrs := ops.MacAttributes{Algorithm: m.alg}
	if m.verify {
		_, err := x.svc.CheckMac(dst, ops.VerifyMacInput{KeyIdentifier: x.ident(m.key), MessageData: msg,
			Mac: m.macValue, Attributes: attrs, MacLength: m.macLen})
		return dst, err
	}
	start := len(dst)
	out, _, err := x.svc.AppendMac(dst, ops.GenerateMacInput{KeyIdentifier: x.ident(m.key), MessageData: msg,
		Attributes: attrs, MacLength: m.macLen})
	if err != nil {
		return dst, err
	}
	return expandHex(out, start), nil
}

// expandHex replaces the bytes of b from start on with their upper-case
// hexadecimal, in place (b grows by their number).
func expandHex(b []byte, start int) []byte {
	const digits = "0123456789ABCDEF"
	n := len(b) - start
	b = slices.Grow(b, n)[:len(b)+n]
	for i := n - 1; i >= 0; i-- { // from the end: each byte is read before its digits overwrite it
		c := b[start+i]
		b[start+2*i], b[start+2*i+1] = digits[c>>4], digits[c&0x0F]
	}
	return b
}

// dataKeyTypes are M0/M2/M4's key type codes: ZEK, DEK/TEK, or a key block.
var dataKeyTypes = map[string]bool{"00A": true, "00B": true, "FFF": true}

// dataModes maps the 2N mode flag onto a cipher mode.
var dataModes = map[string]ops.CipherMode{"00": ops.ModeECB, "01": ops.ModeCBC}

// dataKey is one side of M0/M2/M4: mode, key and IV.
type dataKey struct {
	mode ops.CipherMode
	key  keyRef
	iv   []byte
	sym  ops.SymmetricCipher // cipher's, kept with the command
}

func (d *dataKey) cipher() ops.DataCipher {
	d.sym = ops.SymmetricCipher{Mode: d.mode, IV: d.iv}
	return ops.DataCipher{Symmetric: &d.sym}
}

func (c *cursor) dataMode() ops.CipherMode {
	m, ok := dataModes[c.digits(2, "mode flag")]
	if c.err == nil && !ok {
		c.fail(codeInvalidInput, "mode flag: 00 (ECB) and 01 (CBC) are supported")
	}
	return m
}

func (c *cursor) dataKeyType() {
	if kt := c.hex(3, "key type"); c.err == nil && !dataKeyTypes[kt] {
		c.fail("04", "key type")
	}
}

// iv decodes a CBC IV: 32H when the key is an AES key block (header
// algorithm A), else 16H.
func (c *cursor) iv(d *dataKey) {
	if d.mode != ops.ModeCBC {
		return
	}
	n := 16
	if d.key.block && len(d.key.raw) > 7 && d.key.raw[7] == 'A' {
		n = 32
	}
	d.iv = c.hexBytes(n, "IV", make([]byte, 0, n/2))
}

func (c *cursor) formatFlag(what string) byte {
	f := c.take(1, what)
	if c.err != nil {
		return 0
	}
	if f[0] != '0' && f[0] != '1' {
		c.fail(codeInvalidInput, what+": 0 (binary) or 1 (hex)")
	}
	return f[0]
}

// M0 encrypts, M2 decrypts. Request: mode 2N (00 ECB, 01 CBC) | input format
// 1N | output format 1N | key type 3H | key | [IV, mode 01] | message length
// 4H | message. M4 translates. Request: source mode 2N | destination mode 2N
// | input format 1N | output format 1N | source key type 3H | source key |
// destination key type 3H | destination key | [source IV] | [destination
// IV] | message length 4H | message. Response: length 4H (as sent) | data.
type dataCmd struct {
	code     string
	in, out  byte
	src, dst dataKey
	msg      []byte
}

func decodeM0(c *cursor) command { return decodeCrypt(c, "M0") }
func decodeM2(c *cursor) command { return decodeCrypt(c, "M2") }

func decodeCrypt(c *cursor, code string) command {
	d := &dataCmd{code: code}
	d.src.mode = c.dataMode()
	d.in = c.formatFlag("input format")
	d.out = c.formatFlag("output format")
	c.dataKeyType()
	d.src.key = c.key("key")
	c.iv(&d.src)
	d.msg = c.message(d.in, codeDataLength)
	c.finish()
	return d
}

func decodeM4(c *cursor) command {
	d := &dataCmd{code: "M4"}
	d.src.mode = c.dataMode()
	d.dst.mode = c.dataMode()
	d.in = c.formatFlag("input format")
	d.out = c.formatFlag("output format")
	c.dataKeyType()
	d.src.key = c.key("source key")
	c.dataKeyType()
	d.dst.key = c.key("destination key")
	c.iv(&d.src)
	c.iv(&d.dst)
	d.msg = c.message(d.in, codeDataLength)
	c.finish()
	return d
}

func (d *dataCmd) run(x *call) ([]byte, error) { return d.appendFields(x, nil) }

// appendFields appends the length (4H, of the data as sent) and the data
// to dst: the operations layer writes the result straight after the
// length's room, and output format 1 hex-encodes it in place.
func (d *dataCmd) appendFields(x *call, dst []byte) ([]byte, error) {
	start := len(dst)
	out := append(dst, "0000"...)
	var err error
	switch d.code {
	case "M0":
		out, _, err = x.svc.AppendEncryptData(out, ops.EncryptDataInput{KeyIdentifier: x.ident(d.src.key), PlainText: d.msg, Attributes: d.src.cipher()})
	case "M2":
		out, _, err = x.svc.AppendDecryptData(out, ops.DecryptDataInput{KeyIdentifier: x.ident(d.src.key), CipherText: d.msg, Attributes: d.src.cipher()})
	default:
		out, _, err = x.svc.AppendReEncryptData(out, ops.ReEncryptDataInput{IncomingKeyIdentifier: x.ident(d.src.key),
			OutgoingKeyIdentifier: x.ident(d.dst.key), CipherText: d.msg, Incoming: d.src.cipher(), Outgoing: d.dst.cipher()})
	}
	if err != nil {
		return dst, err
	}
	if d.out == '1' {
		out = expandHex(out, start+4)
	}
	n := len(out) - start - 4
	if n > 0xFFFF {
		clear(out[start:])
		return dst, errCode(codeDataLength, "result too long")
	}
	const digits = "0123456789ABCDEF"
	for i := range 4 {
		out[start+i] = digits[n>>(12-4*i)&0xF]
	}
	return out, nil
}
