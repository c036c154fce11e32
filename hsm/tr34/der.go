package tr34

import "fmt"

// A minimal strict DER reader and writer: definite lengths only, minimal
// length encoding, single-byte tags (everything TR-34 uses).

const maxDepthLen = 1 << 20 // no TR-34 token comes near 1 MiB

type reader struct{ b []byte }

func (r *reader) empty() bool { return len(r.b) == 0 }

func (r *reader) peek() (byte, bool) {
	if len(r.b) == 0 {
		return 0, false
	}
	return r.b[0], true
}

// next reads one element with the given tag and returns its contents and its
// whole encoding.
func (r *reader) next(tag byte) (contents, whole []byte, err error) {
	if len(r.b) < 2 {
		return nil, nil, formatErr("truncated element, want tag %#02x", tag)
	}
	if r.b[0] != tag {
		return nil, nil, formatErr("tag %#02x, want %#02x", r.b[0], tag)
	}
	n, hdr := int(r.b[1]), 2
	if n&0x80 != 0 {
		k := n & 0x7f
		if k == 0 || k > 3 || len(r.b) < 2+k {
			return nil, nil, formatErr("unsupported or truncated length")
		}
		n = 0
		for _, c := range r.b[2 : 2+k] {
			n = n<<8 | int(c)
		}
		if n < 0x80 || r.b[2] == 0 {
			return nil, nil, formatErr("non-minimal length")
		}
		hdr += k
	}
	if n > maxDepthLen || len(r.b)-hdr < n {
		return nil, nil, formatErr("element of %d bytes overruns its container", n)
	}
	whole, r.b = r.b[:hdr+n], r.b[hdr+n:]
	return whole[hdr:], whole, nil
}

// sub reads a constructed element and returns a reader over its contents.
func (r *reader) sub(tag byte) (*reader, error) {
	c, _, err := r.next(tag)
	return &reader{c}, err
}

// expect reads a primitive element whose contents must equal want.
func (r *reader) expect(tag byte, want []byte, what string) error {
	c, _, err := r.next(tag)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if string(c) != string(want) {
		return formatErr("unexpected %s", what)
	}
	return nil
}

// tlv encodes one element from the concatenation of parts.
func tlv(tag byte, parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := []byte{tag}
	switch {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 0x100:
		out = append(out, 0x81, byte(n))
	case n < 0x10000:
		out = append(out, 0x82, byte(n>>8), byte(n))
	default:
		out = append(out, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// DER tags.
const (
	tagInteger     = 0x02
	tagOctetString = 0x04
	tagNull        = 0x05
	tagOID         = 0x06
	tagSequence    = 0x30
	tagSet         = 0x31
	tagContext0    = 0xa0 // [0] constructed
	tagContext1    = 0xa1
	tagContext2    = 0xa2
	tagImplicit0   = 0x80 // [0] IMPLICIT primitive
)
