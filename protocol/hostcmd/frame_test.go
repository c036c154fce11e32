package hostcmd

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

// TestAppendFrame: the prefix states the length up to the largest a 2-byte
// prefix can state; a longer message is ErrFrame and leaves dst unchanged.
func TestAppendFrame(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want []byte // prefix; nil: ErrFrame
	}{
		{0, []byte{0, 0}},
		{6, []byte{0, 6}},
		{MaxMessage, []byte{0x80, 0}},
		{math.MaxUint16, []byte{0xFF, 0xFF}},
		{math.MaxUint16 + 1, nil},
	} {
		dst := []byte("x")
		got, err := AppendFrame(dst, make([]byte, tc.n))
		if tc.want == nil {
			if !errors.Is(err, ErrFrame) || !bytes.Equal(got, dst) {
				t.Errorf("%d bytes: %d bytes, %v; want dst unchanged and ErrFrame", tc.n, len(got), err)
			}
			continue
		}
		if err != nil || len(got) != 1+2+tc.n || !bytes.Equal(got[1:3], tc.want) {
			t.Errorf("%d bytes: prefix % x of %d bytes, %v; want % x", tc.n, got[1:min(3, len(got))], len(got), err, tc.want)
		}
	}
}

// TestPutAnswerLength: the answer after the 2 reserved bytes at start gets
// its length; one the prefix cannot state is ErrFrame.
func TestPutAnswerLength(t *testing.T) {
	for _, tc := range []struct {
		start, answer int
		ok            bool
	}{
		{0, 0, true},
		{0, 8, true},
		{5, 300, true},
		{3, math.MaxUint16, true},
		{0, math.MaxUint16 + 1, false},
	} {
		out := make([]byte, tc.start+2+tc.answer)
		err := putAnswerLength(out, tc.start)
		if !tc.ok {
			if !errors.Is(err, ErrFrame) {
				t.Errorf("%d-byte answer: %v, want ErrFrame", tc.answer, err)
			}
			continue
		}
		if err != nil || int(out[tc.start])<<8|int(out[tc.start+1]) != tc.answer {
			t.Errorf("%d-byte answer at %d: prefix % x, %v", tc.answer, tc.start, out[tc.start:tc.start+2], err)
		}
	}
}

// TestLongestAnswer: the longest answers, M0 with binary input and hex
// output of the longest message a request can carry, fit a frame and are
// answered in full by both drivers.
func TestLongestAnswer(t *testing.T) { forDrivers(t, testLongestAnswer) }

func testLongestAnswer(t *testing.T, drv string) {
	ts := startServer(t, nil, Config{Driver: drv})
	c := ts.dial(t, nil)
	r := c.call("0000A00FFFS#D0T2B00N00")
	if !strings.HasPrefix(r, "0000A100S") {
		t.Fatalf("A0 %q", r)
	}
	prefix := "0001M0000100BS" + r[9:len(r)-6] // ECB, binary in, hex out
	n := (MaxMessage - len(prefix) - 4) &^ 7   // whole TDES blocks
	req := prefix + fmt.Sprintf("%04X", n) + strings.Repeat("\x5a", n)
	if len(req) > MaxMessage || len(req) <= MaxMessage-8 {
		t.Fatalf("request of %d bytes", len(req))
	}
	got := c.call(req)
	if want := fmt.Sprintf("0001M100%04X", 2*n); len(got) != len(want)+2*n || !strings.HasPrefix(got, want) {
		t.Fatalf("answer of %d bytes %.16q…, want %d bytes %q…", len(got), got, len(want)+2*n, want)
	}
	if got := c.call("0002B20001Z"); got != "0002B300Z" {
		t.Errorf("next request %q", got)
	}
}
