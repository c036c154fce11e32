//go:build linux

package hostcmd

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

// FuzzLoopFrames feeds arbitrary bytes, split at an arbitrary point into two
// reads, to the event loop's frame processing: it never panics, answers
// exactly the complete frames before the first bad length, each with a
// well-formed frame, and keeps the incomplete rest for the next read.
func FuzzLoopFrames(f *testing.F) {
	ts := startServer(f, nil, Config{MaxMessage: 2048, EventLoops: -1})
	for _, s := range [][]byte{
		frames(f, "0001NC"),
		frames(f, "0001B20002OK", "0002NO00"),
		{0, 0}, {0xFF, 0xFF}, {0, 20, '0', '0'}, {0, 1, 'A'},
		frames(f, "0001CC@alias/x;@alias/y;12230B4C43B8BA2C5C0101555555123456\x19TR"),
	} {
		f.Add(s, uint16(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		l := &eventLoop{loopBase: loopBase{s: ts.srv}}
		c := &loopConn{in: make([]byte, 4096), x: ts.srv.newCall()}
		if len(data) > len(c.in) {
			data = data[:len(c.in)]
		}
		split := min(int(cut), len(data))
		now := time.Now()
		var err error
		for _, part := range [][]byte{data[:split], data[split:]} {
			c.n += copy(c.in[c.n:], part)
			if err = l.process(c, now); err != nil {
				break
			}
		}
		// What the loop should have done, frame by frame.
		want, rest, bad := 0, data, false
		for len(rest) >= 2 {
			n := int(binary.BigEndian.Uint16(rest))
			if n == 0 || n > 2048 {
				bad = true
				break
			}
			if len(rest) < 2+n {
				break
			}
			want++
			rest = rest[2+n:]
		}
		if bad != (err != nil) || (err != nil && !errors.Is(err, ErrFrame)) {
			t.Fatalf("error %v, bad length %v", err, bad)
		}
		if !bad && (c.n != len(rest) || string(c.in[:c.n]) != string(rest)) {
			t.Fatalf("kept %d bytes, want the %d-byte incomplete rest", c.n, len(rest))
		}
		got := 0
		for out := c.out; len(out) > 0; got++ {
			if len(out) < 2 {
				t.Fatalf("truncated answer frame")
			}
			n := int(binary.BigEndian.Uint16(out))
			if n == 0 || len(out) < 2+n {
				t.Fatalf("malformed answer frame")
			}
			out = out[2+n:]
		}
		if got != want {
			t.Fatalf("%d answers for %d complete frames", got, want)
		}
	})
}
