package tr31

import (
	"strconv"
	"strings"
)

const (
	fixedHeaderLen = 16   // X9.143 6.2: bytes 0-15
	maxBlockLen    = 9999 // four decimal digits
	maxOptBlocks   = 99   // two decimal digits
	padBlockID     = "PB"
)

// keyBlock is a structurally valid key block, split into its parts.
type keyBlock struct {
	h       Header
	header  string // the authenticated header text, optional blocks included
	payload []byte // encrypted payload
	mac     []byte // authenticator
}

func isDigit(c byte) bool      { return '0' <= c && c <= '9' }
func isUpperAlnum(c byte) bool { return isDigit(c) || 'A' <= c && c <= 'Z' }
func isAlnum(c byte) bool      { return isUpperAlnum(c) || 'a' <= c && c <= 'z' }
func isPrintable(c byte) bool  { return 0x20 <= c && c <= 0x7e }

func all(s string, f func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !f(s[i]) {
			return false
		}
	}
	return true
}

// parseDec parses a fixed-width unsigned decimal field.
func parseDec(s string) (int, bool) {
	if s == "" || !all(s, isDigit) {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// hexVal returns the value of an upper-case hexadecimal digit.
func hexVal(c byte) (byte, bool) {
	switch {
	case isDigit(c):
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// parseHexField parses a fixed-width upper-case hexadecimal length field of
// at most 8 digits.
func parseHexField(s string) (int, bool) {
	if s == "" || len(s) > 8 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		v, ok := hexVal(s[i])
		if !ok {
			return 0, false
		}
		n = n<<4 | int(v)
	}
	return n, true
}

// decodeHexUpper decodes upper-case hexadecimal; lower case is rejected so
// that every binary value has exactly one encoding.
func decodeHexUpper(s string) ([]byte, bool) {
	if len(s)%2 != 0 {
		return nil, false
	}
	out := make([]byte, len(s)/2)
	for i := range out {
		hi, ok1 := hexVal(s[2*i])
		lo, ok2 := hexVal(s[2*i+1])
		if !ok1 || !ok2 {
			return nil, false
		}
		out[i] = hi<<4 | lo
	}
	return out, true
}

func appendHexUpper(dst, src []byte) []byte {
	const digits = "0123456789ABCDEF"
	for _, b := range src {
		dst = append(dst, digits[b>>4], digits[b&0x0f])
	}
	return dst
}

// hexDigits is n, which the caller has checked is below 16^width, as width
// upper-case hex digits.
func hexDigits(n, width int) string {
	const digits = "0123456789ABCDEF"
	b := make([]byte, width)
	for i := width - 1; i >= 0; i-- {
		b[i] = digits[n&0x0F]
		n >>= 4
	}
	return string(b)
}

// validateFields checks the fixed header fields other than the version.
func validateFields(h Header) error {
	switch {
	case len(h.KeyUsage) != 2 || !all(h.KeyUsage, isUpperAlnum):
		return formatErr("key usage must be two upper-case letters or digits")
	case !strings.ContainsRune("ADEHRST", rune(h.Algorithm)) || h.Algorithm == 0:
		return formatErr("unknown algorithm %q", string(rune(h.Algorithm)))
	case !strings.ContainsRune("BCDEGNSTVXY", rune(h.ModeOfUse)) || h.ModeOfUse == 0:
		return formatErr("unknown mode of use %q", string(rune(h.ModeOfUse)))
	case len(h.KeyVersion) != 2 || !all(h.KeyVersion, isAlnum):
		return formatErr("key version must be two letters or digits")
	case !strings.ContainsRune("ENS", rune(h.Exportability)) || h.Exportability == 0:
		return formatErr("unknown exportability %q", string(rune(h.Exportability)))
	case h.KeyContext < '0' || h.KeyContext > '2':
		return formatErr("unknown key context %q", string(rune(h.KeyContext)))
	}
	return nil
}

// parse checks the complete syntax of a key block (X9.143 section 6) and
// splits it into its parts. It performs no cryptography.
func parse(s string) (*keyBlock, error) {
	if len(s) < fixedHeaderLen {
		return nil, formatErr("%d characters, shorter than the %d-character header", len(s), fixedHeaderLen)
	}
	var h Header
	h.Version = s[0]
	bs, macLen, ok := versionParams(h.Version)
	if !ok {
		return nil, formatErr("unsupported version ID %q", s[:1])
	}
	n, ok := parseDec(s[1:5])
	if !ok {
		return nil, formatErr("key block length field is not four decimal digits")
	}
	if n != len(s) {
		return nil, formatErr("key block length field is %d, block has %d characters", n, len(s))
	}
	h.KeyUsage = s[5:7]
	h.Algorithm = s[7]
	h.ModeOfUse = s[8]
	h.KeyVersion = s[9:11]
	h.Exportability = s[11]
	h.KeyContext = s[14]
	if err := validateFields(h); err != nil {
		return nil, err
	}
	count, ok := parseDec(s[12:14])
	if !ok {
		return nil, formatErr("number of optional blocks is not two decimal digits")
	}
	if s[15] != '0' {
		return nil, formatErr("reserved header byte 15 is not '0'")
	}

	pos := fixedHeaderLen
	var seen map[string]bool
	for i := range count {
		ob, next, err := parseOptBlock(s, pos)
		if err != nil {
			return nil, formatErr("optional block %d at offset %d: %v", i+1, pos, err)
		}
		if seen[ob.ID] {
			return nil, formatErr("optional block %s appears more than once", ob.ID)
		}
		if seen == nil {
			seen = make(map[string]bool, count)
		}
		seen[ob.ID] = true
		if ob.ID == padBlockID {
			if i != count-1 {
				return nil, formatErr("padding block PB is not the last optional block")
			}
		} else {
			h.Blocks = append(h.Blocks, ob)
		}
		pos = next
	}
	if pos%bs != 0 {
		return nil, formatErr("header of %d characters is not a multiple of the %d-byte cipher block", pos, bs)
	}

	body := s[pos:]
	macHex := 2 * macLen
	if len(body) < macHex+2*bs || (len(body)-macHex)%(2*bs) != 0 {
		return nil, formatErr("%d characters after the header do not hold whole %d-byte payload blocks and a %d-byte authenticator", len(body), bs, macLen)
	}
	payload, ok := decodeHexUpper(body[:len(body)-macHex])
	if !ok {
		return nil, formatErr("encrypted payload is not upper-case hexadecimal")
	}
	mac, ok := decodeHexUpper(body[len(body)-macHex:])
	if !ok {
		return nil, formatErr("authenticator is not upper-case hexadecimal")
	}
	return &keyBlock{h: h, header: s[:pos], payload: payload, mac: mac}, nil
}

type parseError string

func (e parseError) Error() string { return string(e) }

// parseOptBlock parses the optional block starting at s[pos:], in either
// the short form (ID, two hex digits of total length, data) or the extended
// form (ID, "00", two hex digits giving the number of length bytes, the
// length in that many bytes of hex, data). Lengths count the whole block.
func parseOptBlock(s string, pos int) (OptionalBlock, int, error) {
	if pos+4 > len(s) {
		return OptionalBlock{}, 0, parseError("truncated block ID or length")
	}
	id := s[pos : pos+2]
	if !all(id, isUpperAlnum) {
		return OptionalBlock{}, 0, parseError("block ID is not two upper-case letters or digits")
	}
	n, ok := parseHexField(s[pos+2 : pos+4])
	if !ok {
		return OptionalBlock{}, 0, parseError("length is not two upper-case hex digits")
	}
	hdr := 4
	if n == 0 {
		if pos+6 > len(s) {
			return OptionalBlock{}, 0, parseError("truncated extended length")
		}
		ll, ok := parseHexField(s[pos+4 : pos+6])
		if !ok || ll == 0 || ll > 4 {
			return OptionalBlock{}, 0, parseError("extended length must be one to four bytes of upper-case hex")
		}
		hdr = 6 + 2*ll
		if pos+hdr > len(s) {
			return OptionalBlock{}, 0, parseError("truncated extended length")
		}
		if n, ok = parseHexField(s[pos+6 : pos+hdr]); !ok {
			return OptionalBlock{}, 0, parseError("extended length is not upper-case hex")
		}
	}
	if n < hdr {
		return OptionalBlock{}, 0, parseError("length is shorter than the block's own ID and length fields")
	}
	if n > len(s)-pos {
		return OptionalBlock{}, 0, parseError("length runs past the end of the key block")
	}
	data := s[pos+hdr : pos+n]
	if !all(data, isPrintable) {
		return OptionalBlock{}, 0, parseError("data is not printable ASCII")
	}
	return OptionalBlock{ID: id, Data: data}, pos + n, nil
}

// encodeHeader builds the header text for h, adding a PB padding block when
// the header is not a multiple of bs. bodyLen is the number of characters
// that will follow the header (hex payload and authenticator).
func encodeHeader(h Header, bs, bodyLen int) (string, error) {
	if h.KeyVersion == "" {
		h.KeyVersion = "00"
	}
	if h.KeyContext == 0 {
		h.KeyContext = '0'
	}
	if err := validateFields(h); err != nil {
		return "", err
	}
	var opt strings.Builder
	seen := make(map[string]bool, len(h.Blocks))
	for _, ob := range h.Blocks {
		switch {
		case len(ob.ID) != 2 || !all(ob.ID, isUpperAlnum):
			return "", formatErr("optional block ID %q is not two upper-case letters or digits", ob.ID)
		case ob.ID == padBlockID:
			return "", formatErr("optional block PB is added by the codec, not the caller")
		case seen[ob.ID]:
			return "", formatErr("optional block %s appears more than once", ob.ID)
		case !all(ob.Data, isPrintable):
			return "", formatErr("optional block %s data is not printable ASCII", ob.ID)
		}
		seen[ob.ID] = true
		opt.WriteString(ob.ID)
		if n := 4 + len(ob.Data); n <= 0xFF {
			opt.WriteString(hexDigits(n, 2))
		} else {
			n = 10 + len(ob.Data)
			if n > 0xFFFF {
				return "", formatErr("optional block %s of %d characters is too long", ob.ID, len(ob.Data))
			}
			opt.WriteString("0002")
			opt.WriteString(hexDigits(n, 4))
		}
		opt.WriteString(ob.Data)
	}
	count := len(h.Blocks)
	if r := (fixedHeaderLen + opt.Len()) % bs; count > 0 && r != 0 {
		pad := (bs - (r+4)%bs) % bs
		opt.WriteString(padBlockID)
		opt.WriteString(hexDigits(4+pad, 2))
		opt.WriteString(strings.Repeat("0", pad))
		count++
	}
	if count > maxOptBlocks {
		return "", formatErr("%d optional blocks, at most %d fit", count, maxOptBlocks)
	}
	total := fixedHeaderLen + opt.Len() + bodyLen
	if total > maxBlockLen {
		return "", formatErr("key block of %d characters exceeds %d", total, maxBlockLen)
	}
	var b strings.Builder
	b.Grow(fixedHeaderLen + opt.Len())
	b.WriteByte(h.Version)
	b.WriteString(pad0(total, 4))
	b.WriteString(h.KeyUsage)
	b.WriteByte(h.Algorithm)
	b.WriteByte(h.ModeOfUse)
	b.WriteString(h.KeyVersion)
	b.WriteByte(h.Exportability)
	b.WriteString(pad0(count, 2))
	b.WriteByte(h.KeyContext)
	b.WriteByte('0')
	b.WriteString(opt.String())
	return b.String(), nil
}

func pad0(n, width int) string {
	s := strconv.Itoa(n)
	return strings.Repeat("0", width-len(s)) + s
}
