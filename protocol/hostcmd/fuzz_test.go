package hostcmd

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// FuzzReadFrame: the frame reader never panics, never returns more than the
// maximum, and re-framing what it returns reproduces the bytes it consumed.
func FuzzReadFrame(f *testing.F) {
	for _, s := range [][]byte{{0, 6, 'H', 'E', 'A', 'D', 'N', 'C'}, {0, 0}, {0xFF, 0xFF}, {0, 3, 'A'}, {0x80, 1, 1}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		var consumed []byte
		for {
			m, err := ReadFrame(br, 1024)
			if err != nil {
				break
			}
			if len(m) == 0 || len(m) > 1024 {
				t.Fatalf("frame of %d bytes", len(m))
			}
			consumed = AppendFrame(consumed, m)
		}
		if !bytes.HasPrefix(data, consumed) {
			t.Fatalf("re-framed output is not a prefix of the input")
		}
	})
}

// FuzzDecoders drives every command decoder (the first byte of the input
// picks the command) and splitMessage: no panic, and a decoder that reports
// no error returned a command and consumed the whole body.
func FuzzDecoders(f *testing.F) {
	codes := Commands()
	sort.Strings(codes)
	index := map[string]byte{}
	for i, c := range codes {
		index[c] = byte(i)
	}
	// Seeds: every request of the transcripts.
	files, _ := filepath.Glob("testdata/*.txt")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "> ") && len(l) >= 8 {
				msg := hexSegment.ReplaceAllStringFunc(l[2:], func(m string) string { return string(mustHex(m[1 : len(m)-1])) })
				if i, ok := index[msg[4:6]]; ok {
					f.Add(append([]byte{i}, msg[6:]...))
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		code := codes[int(data[0])%len(codes)]
		c := &cursor{b: data[1:]}
		cmd := decoders[code](c)
		if c.err == nil {
			if cmd == nil {
				t.Fatalf("%s: no error and no command", code)
			}
			if c.i != len(c.b) {
				t.Fatalf("%s: %d bytes left over without error", code, len(c.b)-c.i)
			}
		}
		_ = errorCode(errCode("15", "x"))
		if r, err := splitMessage(data, 4); err == nil && len(r.code) != 2 {
			t.Fatalf("bad split")
		}
	})
}
