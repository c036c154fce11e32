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
	"math"
)

// MaxMessage is the largest message accepted (payShield's largest I/O buffer is 32 KiB).
const MaxMessage = 32 << 10

// ErrFrame reports a frame that cannot be served (the connection is closed).
var ErrFrame = errors.New("hostcmd: bad frame")

// ReadFrame reads one length-prefixed message of at most max bytes. A zero
// length or a length above max is ErrFrame: the stream cannot be resynchronised.
func ReadFrame(r *bufio.Reader, max int) ([]byte, error) {
	var lb [2]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(lb[:]))
	if n == 0 {
		return nil, fmt.Errorf("%w: zero length", ErrFrame)
	}
	if n > max {
		return nil, fmt.Errorf("%w: length %d exceeds %d", ErrFrame, n, max)
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

// AppendFrame appends msg with its 2-byte big-endian length prefix to dst.
// A msg longer than the prefix can state (65535 bytes) is ErrFrame, and dst
// is returned unchanged.
func AppendFrame(dst, msg []byte) ([]byte, error) {
	if len(msg) > math.MaxUint16 {
		return dst, fmt.Errorf("%w: message of %d bytes exceeds %d", ErrFrame, len(msg), math.MaxUint16)
	}
	//nolint:gosec // G115: 0 <= len(msg) <= math.MaxUint16, checked above (gosec misses that a length is never negative).
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(msg)))
	return append(dst, msg...), nil
}

// putAnswerLength writes into out[start:start+2] the length of the answer
// after it, out[start+2:]. An answer longer than the prefix can state is
// ErrFrame: the connection is closed rather than sent a corrupt frame.
// dispatch builds none: the longest answers, the hex output of M0 and M4,
// are twice a message that is shorter than MaxMessage by the request's
// other fields (TestLongestAnswer).
func putAnswerLength(out []byte, start int) error {
	n := len(out) - start - 2
	if n < 0 || n > math.MaxUint16 {
		return fmt.Errorf("%w: answer of %d bytes", ErrFrame, n)
	}
	binary.BigEndian.PutUint16(out[start:], uint16(n))
	return nil
}

// request is a split message: the header echoed in the response, the
// command code and the command's fields with their tail, all sub-slices of
// the message.
type request struct {
	header []byte
	code   [2]byte
	body   []byte
}

// splitMessage separates header, command code and body. The LMK identifier
// and trailer are decoded by each command after its last field, because
// binary fields may contain their delimiter bytes. On an invalid command code
// the header and code are still returned, for the response.
func splitMessage(msg []byte, headerLen int) (request, error) {
	if len(msg) < headerLen+2 {
		return request{}, fmt.Errorf("%w: %d bytes is shorter than header and command code", ErrFrame, len(msg))
	}
	r := request{header: msg[:headerLen], code: [2]byte{msg[headerLen], msg[headerLen+1]}}
	for _, c := range r.code {
		if !isAlnum(c) {
			return r, fmt.Errorf("%w: invalid command code", ErrFrame)
		}
	}
	r.body = msg[headerLen+2:]
	return r, nil
}

// ResponseCode is the response code of a command code: its second character
// incremented (Z and 9 wrap to A, as go_hsm does; payShield defines no
// command whose second character is Z or 9).
func ResponseCode(code string) string {
	if len(code) != 2 {
		return "ZZ"
	}
	rc := responseCode([2]byte{code[0], code[1]})
	return string(rc[:])
}

func responseCode(code [2]byte) [2]byte {
	switch code[1] {
	case 'Z', '9':
		code[1] = 'A'
	default:
		code[1]++
	}
	return code
}
