//go:build linux

package bench

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeHost answers every CC frame on its connections with a CD response:
// its header as sent (or, with wrong, another), "00", written split into
// single bytes with split.
func fakeHost(t *testing.T, split, wrong bool) string {
	return serveFake(t, func(c net.Conn) {
		var lb [2]byte
		for {
			if _, err := io.ReadFull(c, lb[:]); err != nil {
				return
			}
			msg := make([]byte, binary.BigEndian.Uint16(lb[:]))
			if _, err := io.ReadFull(c, msg); err != nil {
				return
			}
			resp := append(append([]byte{0, 8}, msg[:4]...), "CD00"...)
			if wrong {
				resp[2] ^= 1
			}
			if !split {
				if _, err := c.Write(resp); err != nil {
					return
				}
				continue
			}
			for i := range resp {
				if _, err := c.Write(resp[i : i+1]); err != nil {
					return
				}
			}
		}
	})
}

// fakeHTTP answers every request on its connections (pipelined requests
// in order) with a 200 whose body is as long as the request's, written in
// pieces of 1 to 7 bytes; with chunked, with a chunked body instead.
func fakeHTTP(t *testing.T, chunked bool) string {
	return serveFake(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for piece := 1; ; piece = piece%7 + 1 {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, err := io.ReadAll(req.Body)
			if err != nil {
				return
			}
			resp := fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), bytes.Repeat([]byte("x"), len(body)))
			if chunked {
				resp = []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
			}
			for len(resp) > 0 {
				n := min(piece, len(resp))
				if _, err := c.Write(resp[:n]); err != nil {
					return
				}
				resp = resp[n:]
			}
		}
	})
}

func fakeHostProto() proto {
	return newHostProto([][]byte{append([]byte{0, 10}, "0000CCxxxx"...)}, []string{"CC"}, 4)
}

func fakeHTTPProto() proto {
	return &httpProto{reqs: []*httpRequest{{path: "/mac/verify", contentType: dataContentType, body: []byte(`{"KeyIdentifier":"k"}`)}},
		s: newSigner(testKeyID, testSecret, testRegion, service, "127.0.0.1")}
}

// runFake drives conns connections with pipeline requests in flight at
// addr through a driver (runRing, runEpoll) for d.
func runFake(t *testing.T, run func([]*worker, []net.Conn, *atomic.Bool, *atomic.Bool, time.Time) error, addr string, newProto func() proto, conns, pipeline int, d time.Duration) ([]*worker, error) {
	t.Helper()
	o := Options{Conns: conns, Pipeline: pipeline, Header: 4}
	workers := make([]*worker, conns)
	cs := make([]net.Conn, conns)
	for i := range workers {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = c
		workers[i] = newWorker(c, i, o, newProto(), []int{0})
	}
	var measuring, stopping atomic.Bool
	measuring.Store(true)
	time.AfterFunc(d, func() { stopping.Store(true) })
	return workers, run(workers, cs, &measuring, &stopping, time.Now().Add(d+10*time.Second))
}

// TestLoopDriversCheck: the io_uring and epoll drivers reassemble host
// responses that arrive a byte at a time and HTTP responses that arrive in
// pieces of 1 to 7 bytes, keep each connection's window, and fail a run
// whose responses do not answer its requests (a wrong header, a chunked
// HTTP body).
func TestLoopDriversCheck(t *testing.T) {
	for _, d := range []struct {
		name string
		run  func([]*worker, []net.Conn, *atomic.Bool, *atomic.Bool, time.Time) error
	}{{DriverIOUring, runRing}, {DriverEpoll, runEpoll}} {
		t.Run(d.name, func(t *testing.T) {
			if err := ringAvailable(); err != nil && d.name == DriverIOUring {
				t.Skipf("io_uring: %v", err)
			}
			for _, fake := range []struct {
				name     string
				addr     string
				newProto func() proto
			}{{"host", fakeHost(t, true, false), fakeHostProto}, {"http", fakeHTTP(t, false), fakeHTTPProto}} {
				for _, pipeline := range []int{1, 5} {
					workers, err := runFake(t, d.run, fake.addr, fake.newProto, 4, pipeline, 200*time.Millisecond)
					if err != nil {
						t.Fatalf("%s pipeline %d: %v", fake.name, pipeline, err)
					}
					for i, w := range workers {
						// Every request sent was answered (the run waits for them),
						// every answer was measured, and it succeeded.
						failures := 0
						for _, k := range w.cmd {
							if k&failed != 0 {
								failures++
							}
						}
						if len(w.lat) == 0 || uint64(len(w.lat)) != w.seq || w.n != 0 || failures != 0 {
							t.Errorf("%s pipeline %d conn %d: %d samples (%d failed), %d sent, %d in flight", fake.name, pipeline, i, len(w.lat), failures, w.seq, w.n)
						}
					}
				}
			}
			if _, err := runFake(t, d.run, fakeHost(t, false, true), fakeHostProto, 2, 1, time.Second); err == nil || !strings.Contains(err.Error(), "out of order") {
				t.Fatalf("wrong header: %v", err)
			}
			if _, err := runFake(t, d.run, fakeHTTP(t, true), fakeHTTPProto, 2, 1, time.Second); err == nil || !strings.Contains(err.Error(), "chunked") {
				t.Fatalf("chunked response: %v", err)
			}
		})
	}
}

// serveFake listens on loopback and serves every connection with serve on
// a goroutine of its own (the connection closed when serve returns) until
// the test ends; it returns the address.
func serveFake(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}
