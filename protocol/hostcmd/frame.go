// Package hostcmd is payhsm's payShield-style host-command edge: framed TCP
// (2-byte big-endian length, an m-byte header echoed unchanged, a 2-character
// command code answered by the code with its second character incremented,
// and a 2-digit error code), with the optional %nn LMK identifier selecting
// the profile. It decodes commands into calls of the operations layer and
// encodes the answers; it owns no cryptography.
package hostcmd

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MaxMessage is the largest message accepted (payShield's largest I/O buffer is 32 KiB).
const MaxMessage = 32 << 10

// ErrFrame reports a frame that cannot be served (the connection is closed).
var ErrFrame = errors.New("hostcmd: bad frame")

// readFrame reads one length-prefixed message.
func readFrame(r *bufio.Reader) ([]byte, error) {
	var lb [2]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(lb[:]))
	if n == 0 {
		return nil, fmt.Errorf("%w: zero length", ErrFrame)
	}
	if n > MaxMessage {
		return nil, fmt.Errorf("%w: length %d exceeds %d", ErrFrame, n, MaxMessage)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return msg, nil
}

// appendFrame appends msg with its length prefix to dst.
func appendFrame(dst, msg []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(msg)))
	return append(dst, msg...)
}

// request is a decoded message.
type request struct {
	header  []byte
	code    string
	body    []byte // command fields, without the LMK identifier or trailer
	lmk     string // "" when absent
	trailer []byte // nil when the request had no end-of-message delimiter
}

const endOfMessage = 0x19

// splitMessage separates header, command code and body. The LMK identifier
// and trailer are split later by each command, because binary fields may
// contain their delimiter bytes.
func splitMessage(msg []byte, headerLen int) (*request, error) {
	if len(msg) < headerLen+2 {
		return nil, fmt.Errorf("%w: %d bytes is shorter than header and command code", ErrFrame, len(msg))
	}
	code := string(msg[headerLen : headerLen+2])
	for i := 0; i < 2; i++ {
		c := code[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return &request{header: msg[:headerLen], code: code}, fmt.Errorf("%w: invalid command code", ErrFrame)
		}
	}
	return &request{header: msg[:headerLen], code: code, body: msg[headerLen+2:]}, nil
}

// splitTail removes an ASCII command's trailing "%nn" LMK identifier and
// 0x19+trailer, for commands whose fields are all printable.
func (r *request) splitTail() error {
	b := r.body
	for i, c := range b {
		if c == endOfMessage {
			r.trailer = append([]byte{}, b[i+1:]...)
			b = b[:i]
			break
		}
	}
	if len(b) >= 3 && b[len(b)-3] == '%' {
		id := b[len(b)-2:]
		if id[0] < '0' || id[0] > '9' || id[1] < '0' || id[1] > '9' {
			return errLMK
		}
		r.lmk = string(id)
		b = b[:len(b)-3]
	}
	r.body = b
	return nil
}

var errLMK = errors.New("invalid LMK identifier")

// responseCode is the command code with its second character incremented.
func responseCode(code string) string {
	b := []byte(code)
	if len(b) != 2 {
		return "ZZ"
	}
	switch b[1] {
	case 'Z':
		b[1] = 'A'
	case '9':
		b[1] = 'A'
	default:
		b[1]++
	}
	return string(b)
}
