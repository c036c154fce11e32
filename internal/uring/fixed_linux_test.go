//go:build linux

package uring

import (
	"syscall"
	"testing"
	"time"
)

// TestRegisteredRingFixedFiles enters a ring by its registered index and
// waits with EnterRaw, sends and receives through a socket pair named by
// fixed-file slots, and checks that a cleared slot refuses an operation
// (EBADF), that its descriptor then closes the socket (the peer reads the
// end of the stream), and that a released slot is reused.
func TestRegisteredRingFixedFiles(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("io_uring: %v", err)
	}
	r := testRing(t)
	if err := r.RegisterRing(); err != nil {
		t.Skipf("io_uring: %v", err) // Linux before 5.18
	}
	if r.regIndex < 0 {
		t.Fatal("no registered index")
	}
	files, err := r.RegisterFiles(4)
	if err != nil {
		t.Skipf("io_uring: %v", err) // Linux before 5.19
	}
	fds := socketPair(t)
	defer func() { _ = syscall.Close(fds[1]) }()
	s0, ok0 := files.Set(fds[0])
	s1, ok1 := files.Set(fds[1])
	if !ok0 || !ok1 || s0 == s1 {
		t.Fatalf("slots %d %v, %d %v", s0, ok0, s1, ok1)
	}
	const sendUD, recvUD = 1, 2
	// do submits one operation and returns its result.
	do := func(prep func(e *SQE), ud uint64) int32 {
		t.Helper()
		e := r.SQE()
		if e == nil {
			t.Fatal("no submission entry")
		}
		prep(e)
		var res int32
		got := false
		for deadline := time.Now().Add(5 * time.Second); !got && time.Now().Before(deadline); {
			if err := r.EnterRaw(50 * time.Millisecond); err != nil {
				t.Fatal(err)
			}
			r.Reap(func(u uint64, v int32, _ uint32) {
				if u != ud {
					t.Fatalf("completion %d, want %d", u, ud)
				}
				res, got = v, true
			})
		}
		if !got {
			t.Fatal("no completion")
		}
		return res
	}
	msg := []byte("fixed files")
	if n := do(func(e *SQE) { e.PrepSend(fds[0], msg, syscall.MSG_NOSIGNAL, sendUD); e.Fixed(s0) }, sendUD); n != int32(len(msg)) {
		t.Fatalf("send: %d", n)
	}
	buf := make([]byte, 64)
	if n := do(func(e *SQE) { e.PrepRecv(fds[1], buf, recvUD); e.Fixed(s1) }, recvUD); n != int32(len(msg)) || string(buf[:n]) != string(msg) {
		t.Fatalf("recv: %d %q", n, buf[:max(n, 0)])
	}
	if err := files.Clear(s0); err != nil {
		t.Fatal(err)
	}
	if n := do(func(e *SQE) { e.PrepSend(fds[0], msg, syscall.MSG_NOSIGNAL, sendUD); e.Fixed(s0) }, sendUD); n != -int32(syscall.EBADF) {
		t.Fatalf("send on a cleared slot: %d, want EBADF", n)
	}
	if err := syscall.Close(fds[0]); err != nil {
		t.Fatal(err)
	}
	if n := do(func(e *SQE) { e.PrepRecv(fds[1], buf, recvUD); e.Fixed(s1) }, recvUD); n != 0 {
		t.Fatalf("recv after the peer's close: %d, want 0 (the cleared slot no longer holds the socket)", n)
	}
	files.Release(s0)
	if s, ok := files.Set(fds[1]); !ok || s != s0 {
		t.Fatalf("after release: slot %d %v, want %d", s, ok, s0)
	}
	// Plain Enter goes through the registered index too.
	if err := r.Enter(time.Millisecond); err != nil {
		t.Fatal(err)
	}
}
