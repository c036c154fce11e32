package hostcmd

import (
	"encoding/binary"
	"strconv"
)

// cursor decodes a command's fields left to right. The first error sticks:
// every later read returns zero values, so decoders read all their fields and
// check c.err once.
type cursor struct {
	b       []byte
	i       int
	err     error
	lmk     string // the %nn LMK identifier; "" when absent
	trailer []byte // the trailer after 0x19; nil when absent
	// keys are the key fields decoded (every one passes through key), for
	// authorization.
	keys  [maxKeysPerCommand]keyRef
	nkeys int
	// idents are the ops identifiers of the block keys among keys, once
	// resolved (call.identOf).
	idents [maxKeysPerCommand]string
	// reuse holds the connection's decoded commands of the commonest kinds,
	// reused from one request to the next (nil: each decode allocates).
	reuse *decoded
}

// decoded is a connection's room for its decoded commands: a command is
// done with (answered, audited) before the connection's next is decoded.
type decoded struct {
	translate translateCmd
}

// translateCmd returns a zeroed translateCmd for a decoder to fill.
func (c *cursor) translateCmd() *translateCmd {
	if c.reuse == nil {
		return &translateCmd{}
	}
	t := &c.reuse.translate
	*t = translateCmd{}
	return t
}

// keyIndex is the index in c.keys of the field k (the same bytes of the
// request, not equal ones), or -1.
func (c *cursor) keyIndex(k keyRef) int {
	if len(k.raw) == 0 {
		return -1
	}
	for i := range c.nkeys {
		if r := c.keys[i].raw; len(r) == len(k.raw) && &r[0] == &k.raw[0] && c.keys[i].block == k.block {
			return i
		}
	}
	return -1
}

// maxKeysPerCommand bounds the key fields of one command (the most any has is 2).
const maxKeysPerCommand = 4

const (
	endOfMessage = 0x19
	maxTrailer   = 32
	maxKeyRef    = 256
)

func (c *cursor) fail(code, msg string) {
	if c.err == nil {
		c.err = errCode(code, msg)
	}
}

func (c *cursor) left() int { return len(c.b) - c.i }

// peek returns the next byte, or 0 at the end.
func (c *cursor) peek() byte {
	if c.err != nil || c.i >= len(c.b) {
		return 0
	}
	return c.b[c.i]
}

// take returns the next n bytes (a sub-slice of the message).
func (c *cursor) take(n int, what string) []byte {
	if c.err != nil {
		return nil
	}
	if n < 0 || c.left() < n {
		c.fail(codeInvalidInput, what+": not enough data")
		return nil
	}
	v := c.b[c.i : c.i+n]
	c.i += n
	return v
}

// accept consumes b if it is next.
func (c *cursor) accept(b byte) bool {
	if c.err == nil && c.i < len(c.b) && c.b[c.i] == b {
		c.i++
		return true
	}
	return false
}

// expect consumes b or fails.
func (c *cursor) expect(b byte, what string) {
	if c.err == nil && !c.accept(b) {
		c.fail(codeInvalidInput, what+": expected "+strconv.QuoteRune(rune(b)))
	}
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }
func isHex(b byte) bool   { return isDigit(b) || b >= 'A' && b <= 'F' || b >= 'a' && b <= 'f' }

// isAlnum reports an uppercase letter or a digit (a command code character).
func isAlnum(b byte) bool { return isDigit(b) || b >= 'A' && b <= 'Z' }

// isRefChar reports a character of a key reference (an ARN or alias).
func isRefChar(b byte) bool {
	return isDigit(b) || b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b == ':' || b == '/' || b == '_' || b == '-'
}

// digits returns n decimal digits.
func (c *cursor) digits(n int, what string) string {
	v := c.take(n, what)
	for _, b := range v {
		if !isDigit(b) {
			c.fail(codeInvalidInput, what+": not decimal")
			return ""
		}
	}
	return string(v)
}

// num returns n decimal digits as an int.
func (c *cursor) num(n int, what string) int {
	v := 0
	for _, b := range c.take(n, what) {
		if !isDigit(b) {
			c.fail(codeInvalidInput, what+": not decimal")
			return 0
		}
		v = v*10 + int(b-'0')
	}
	return v
}

// hex returns n hexadecimal characters, upper-cased.
func (c *cursor) hex(n int, what string) string {
	v := c.take(n, what)
	var buf [64]byte
	out := buf[:0]
	if n > len(buf) {
		out = make([]byte, 0, n)
	}
	for _, b := range v {
		if !isHex(b) {
			c.fail(codeInvalidInput, what+": not hexadecimal")
			return ""
		}
		if b >= 'a' {
			b -= 'a' - 'A'
		}
		out = append(out, b)
	}
	return string(out)
}

// hexBytes decodes n hexadecimal characters (n even) and appends their
// bytes to dst.
func (c *cursor) hexBytes(n int, what string, dst []byte) []byte {
	v := c.take(n, what)
	if c.err != nil {
		return dst
	}
	if n%2 != 0 {
		c.fail(codeInvalidInput, what+": odd number of hexadecimal characters")
		return dst
	}
	for i := 0; i < len(v); i += 2 {
		hi, ok1 := hexDigit(v[i])
		lo, ok2 := hexDigit(v[i+1])
		if !ok1 || !ok2 {
			c.fail(codeInvalidInput, what+": not hexadecimal")
			return dst
		}
		dst = append(dst, hi<<4|lo)
	}
	return dst
}

func hexDigit(b byte) (byte, bool) {
	switch {
	case isDigit(b):
		return b - '0', true
	case b >= 'A' && b <= 'F':
		return b - 'A' + 10, true
	case b >= 'a' && b <= 'f':
		return b - 'a' + 10, true
	}
	return 0, false
}

// appendHex appends the upper-case hexadecimal of b to dst, as the host
// protocol's H fields carry it.
func appendHex(dst, b []byte) []byte {
	const digits = "0123456789ABCDEF"
	for _, x := range b {
		dst = append(dst, digits[x>>4], digits[x&0x0F])
	}
	return dst
}

// hexLen returns an n-character hexadecimal length field as an int.
func (c *cursor) hexLen(n int, what string) int {
	v, _ := strconv.ParseUint(c.hex(n, what), 16, 32)
	return int(v)
}

// digitsTo returns the decimal digits up to (and consumes) delim.
func (c *cursor) digitsTo(delim byte, min, max int, what string) string {
	if c.err != nil {
		return ""
	}
	start := c.i
	for c.i < len(c.b) && isDigit(c.b[c.i]) && c.i-start <= max {
		c.i++
	}
	v := string(c.b[start:c.i])
	if len(v) < min || len(v) > max {
		c.fail(codeInvalidInput, what+": wrong length")
		return ""
	}
	c.expect(delim, what)
	return v
}

// keyRef is a key field: an X9.143 block under the profile main key, or a
// reference to a stored key. raw is a sub-slice of the message: it is valid
// only while the command is served.
type keyRef struct {
	raw   []byte // the block (without "S") or the reference (without "@" and ";")
	block bool   // "S" form: raw is an X9.143 key block
}

// key decodes a key field: "S" + an X9.143 key block (its length is in its
// header), or "@" + key ARN or alias + ";". The variant-LMK forms (plain
// hex, Z, U, T, X, Y) do not exist in payhsm and are refused with 26.
func (c *cursor) key(what string) keyRef {
	if c.err != nil {
		return keyRef{}
	}
	switch c.peek() {
	case 'S':
		c.i++
		return c.noteKey(keyRef{raw: c.keyBlock(what), block: true})
	case '@':
		c.i++
		start := c.i
		for c.i < len(c.b) && c.b[c.i] != ';' && c.i-start <= maxKeyRef {
			if !isRefChar(c.b[c.i]) {
				c.fail(codeInvalidInput, what+": bad character in key reference")
				return keyRef{}
			}
			c.i++
		}
		ref := c.b[start:c.i]
		if len(ref) == 0 || c.i-start > maxKeyRef {
			c.fail(codeInvalidInput, what+": bad key reference")
			return keyRef{}
		}
		c.expect(';', what)
		return c.noteKey(keyRef{raw: ref})
	case 0:
		c.fail(codeInvalidInput, what+": missing")
	default:
		c.fail(codeKeyScheme, what+": only key blocks (S) and stored-key references (@) are accepted")
	}
	return keyRef{}
}

// noteKey remembers a decoded key field for authorization.
func (c *cursor) noteKey(k keyRef) keyRef {
	if c.err != nil {
		return keyRef{}
	}
	if c.nkeys == len(c.keys) {
		c.fail(codeInvalidInput, "too many key fields")
		return keyRef{}
	}
	c.keys[c.nkeys] = k
	c.nkeys++
	return k
}

// keyBlock decodes an X9.143 key block (after its "S" or "R" prefix): its
// length is the four digits after the version character.
func (c *cursor) keyBlock(what string) []byte {
	hdr := c.take(5, what)
	if c.err != nil {
		return nil
	}
	n, err := strconv.Atoi(string(hdr[1:5]))
	if err != nil || n < 16 || hdr[1] == '+' || hdr[1] == '-' {
		c.fail(codeBadKeyBlockHdr, what+": bad key block length")
		return nil
	}
	c.i -= 5
	blk := c.take(n, what)
	if c.err == nil && !printable(blk) {
		c.fail(codeBadKeyBlockHdr, what+": key block is not printable")
		return nil
	}
	return blk
}

// printable reports whether every byte of b is a printable ASCII character
// other than space (0x21 to 0x7E), eight bytes at a time: a CC's two
// 112-byte key blocks are checked on every request.
func printable(b []byte) bool {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	for len(b) >= 8 {
		x := binary.LittleEndian.Uint64(b)
		// A byte below 0x21 borrows into its own high bit when 0x21 is
		// taken from it (and had it clear); a byte above 0x7E carries
		// into it when 1 is added (or had it set). A borrow or carry
		// that crosses into the next byte comes only from a byte that is
		// itself out of range, so the test is exact.
		if (x-0x21*ones)&^x&high != 0 || ((x+ones)|x)&high != 0 {
			return false
		}
		b = b[8:]
	}
	for _, v := range b {
		if v < 0x21 || v > 0x7e {
			return false
		}
	}
	return true
}

// lmkID decodes the optional "%nn" LMK identifier.
func (c *cursor) lmkID() {
	if c.err != nil || !c.accept('%') {
		return
	}
	c.lmk = c.digits(2, "LMK identifier")
	if c.err != nil {
		c.err = errCode(codeInvalidLMK, "invalid LMK identifier")
	}
}

// end decodes the optional end-of-message delimiter and trailer and checks
// that nothing else is left.
func (c *cursor) end() {
	if c.err != nil {
		return
	}
	if c.accept(endOfMessage) {
		t := c.b[c.i:]
		if len(t) > maxTrailer {
			c.fail(codeInvalidInput, "trailer too long")
			return
		}
		c.trailer = t[:len(t):len(t)] // echoed before the message buffer is reused
		c.i = len(c.b)
		return
	}
	if c.i != len(c.b) {
		c.fail(codeInvalidInput, "unexpected data after the last field")
	}
}

// finish decodes the standard tail ("%nn", then 0x19 + trailer).
func (c *cursor) finish() {
	c.lmkID()
	c.end()
}
