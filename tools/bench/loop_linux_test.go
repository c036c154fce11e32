//go:build linux

package bench

import (
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeHost answers every CC frame on its connections with a CD response:
// its header as sent (or, with wrong, another), "00", written split into
// single bytes with split.
func fakeHost(t *testing.T, split, wrong bool) string {
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
			}()
		}
	}()
	return ln.Addr().String()
}

// runFake drives conns connections with pipeline requests in flight at
// addr through a driver (runRing, runEpoll) for d.
func runFake(t *testing.T, run func([]*worker, []net.Conn, *atomic.Bool, *atomic.Bool, time.Time) error, addr string, conns, pipeline int, d time.Duration) ([]*worker, error) {
	t.Helper()
	frame := append([]byte{0, 10}, "0000CCxxxx"...)
	o := Options{Conns: conns, Pipeline: pipeline, Header: 4}
	workers := make([]*worker, conns)
	cs := make([]net.Conn, conns)
	for i := range workers {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = c
		workers[i] = newWorker(c, i, o, newHostProto([][]byte{frame}, []string{"CC"}, 4), []int{0})
	}
	var measuring, stopping atomic.Bool
	measuring.Store(true)
	time.AfterFunc(d, func() { stopping.Store(true) })
	return workers, run(workers, cs, &measuring, &stopping, time.Now().Add(d+10*time.Second))
}

// TestLoopDriversCheck: the io_uring and epoll drivers reassemble
// responses that arrive a byte at a time, keep each connection's window,
// and fail a run whose responses do not answer its requests.
func TestLoopDriversCheck(t *testing.T) {
	for _, d := range []struct {
		name string
		run  func([]*worker, []net.Conn, *atomic.Bool, *atomic.Bool, time.Time) error
	}{{DriverIOUring, runRing}, {DriverEpoll, runEpoll}} {
		t.Run(d.name, func(t *testing.T) {
			if err := ringAvailable(); err != nil && d.name == DriverIOUring {
				t.Skipf("io_uring: %v", err)
			}
			for _, pipeline := range []int{1, 5} {
				workers, err := runFake(t, d.run, fakeHost(t, true, false), 4, pipeline, 200*time.Millisecond)
				if err != nil {
					t.Fatalf("pipeline %d: %v", pipeline, err)
				}
				for i, w := range workers {
					// Every request sent was answered (the run waits for them),
					// and every answer was measured.
					if len(w.lat) == 0 || uint64(len(w.lat)) != w.seq || w.n != 0 {
						t.Errorf("pipeline %d conn %d: %d samples, %d sent, %d in flight", pipeline, i, len(w.lat), w.seq, w.n)
					}
				}
			}
			if _, err := runFake(t, d.run, fakeHost(t, false, true), 2, 1, time.Second); err == nil || !strings.Contains(err.Error(), "out of order") {
				t.Fatalf("wrong header: %v", err)
			}
		})
	}
}
