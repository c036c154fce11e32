package hostcmd

import (
	"bufio"
	"bytes"
	"net"
	"sort"
	"testing"
	"time"

	"payhsm/protocol/hostcmd/transcript"
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
			if consumed, err = AppendFrame(consumed, m); err != nil {
				t.Fatal(err)
			}
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
	for _, msg := range transcript.Requests(f, "testdata/*.txt") {
		if len(msg) < 6 {
			continue
		}
		if i, ok := index[msg[4:6]]; ok {
			f.Add(append([]byte{i}, msg[6:]...))
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
		if r, err := splitMessage(data, 4); err == nil {
			if string(r.header) != string(data[:4]) || string(r.code[:]) != string(data[4:6]) || string(r.body) != string(data[6:]) {
				t.Fatalf("split %q into %q %q %q", data, r.header, r.code, r.body)
			}
		}
	})
}

// FuzzSession feeds arbitrary bytes to a connection's request loop (the
// in-place frame reader, dispatch and the response writer) over a real
// operations layer: it never panics or hangs, answers at most one response
// per frame it was sent, and every response is a well-formed frame with a
// 2-character error code after the header and response code.
func FuzzSession(f *testing.F) {
	ts := startServer(f, nil, Config{IdleTimeout: 30 * time.Millisecond, FrameTimeout: 30 * time.Millisecond, MaxMessage: 2048})
	for _, s := range [][]byte{
		frames(f, "0001NC"),
		frames(f, "0001B20002OK", "0002NO00"),
		{0, 0}, {0xFF, 0xFF}, {0, 20, '0', '0'}, {0, 1, 'A'},
		frames(f, "0001CC@alias/x;@alias/y;12230B4C43B8BA2C5C0101555555123456\x19TR"),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		// Before the session starts: once it has ended and closed its end,
		// SetDeadline on this one fails (io.ErrClosedPipe).
		if err := client.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		sn := &session{s: ts.srv, c: server, br: bufio.NewReaderSize(server, 1024), bw: bufio.NewWriterSize(server, 1024), x: ts.srv.newCall()}
		done := make(chan struct{})
		go func() {
			_ = sn.serve()     // arbitrary input ends the session with any error
			_ = server.Close() // a net.Pipe end closes without error
			close(done)
		}()
		// The session may end before it has read all of data: the write then
		// fails, which is no failure.
		go func() { _, _ = client.Write(data) }()
		sent := 0
		for rest := data; len(rest) >= 2; {
			n := int(rest[0])<<8 | int(rest[1])
			if n == 0 || n > 2048 || len(rest) < 2+n {
				break
			}
			sent++
			rest = rest[2+n:]
		}
		br := bufio.NewReader(client)
		got := 0
		for {
			m, err := ReadFrame(br, MaxMessage)
			if err != nil {
				break
			}
			got++
			// header (4, or what there was of it) + response code + error code
			if len(m) < 4 || len(m) >= 8 && (!isAlnum(m[6]) || !isAlnum(m[7])) {
				t.Fatalf("malformed response %q", m)
			}
			if got == sent {
				_ = client.Close() // nothing more is due: end the session (a net.Pipe end closes without error)
			}
		}
		if got > sent {
			t.Fatalf("%d responses to %d frames", got, sent)
		}
		_ = client.Close() // a net.Pipe end closes without error, also a second time
		<-done
	})
}
