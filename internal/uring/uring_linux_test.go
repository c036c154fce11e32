//go:build linux

package uring

import (
	"bytes"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// TestMultishotRecv sends through a socket pair with PrepSend and receives
// with one multishot recv on a ring of two 8-byte buffers: the bytes arrive
// in order, split over buffers that are given back and reused (more data
// than the ring holds), the recv is armed again after ENOBUFS, and a cancel
// ends it with ECANCELED.
func TestMultishotRecv(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("io_uring: %v", err)
	}
	if err := MultishotRecv(); err != nil {
		t.Skipf("io_uring: %v", err)
	}
	r := testRing(t)
	b, err := r.NewBufRing(3, 2, 8)
	if err != nil {
		t.Fatal(err)
	}
	fds := socketPair(t)
	defer func() { _ = syscall.Close(fds[0]); _ = syscall.Close(fds[1]) }()
	const recvUD, sendUD, cancelUD = 1, 2, 3
	arm := func() {
		e := r.SQE()
		if e == nil {
			t.Fatal("no submission entry")
		}
		e.PrepRecvMultishot(fds[1], b, recvUD)
	}
	arm()
	want := []byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
	var got []byte
	var armed, nobufs, sent, cancelled int
	armed = 1
	for i := 0; i < len(want); i += 10 {
		e := r.SQE()
		e.PrepSend(fds[0], want[i:min(i+10, len(want))], syscall.MSG_NOSIGNAL, sendUD)
	}
	reap := func() {
		t.Helper()
		if err := r.Enter(50 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		r.Reap(func(ud uint64, res int32, flags uint32) {
			switch ud {
			case sendUD:
				if res < 0 {
					t.Fatalf("send: %v", syscall.Errno(-res))
				}
				sent += int(res)
			case cancelUD:
			case recvUD:
				if flags&CQEFBuffer != 0 {
					id := uint16(flags >> CQEBufferShift)
					if res > 8 {
						t.Fatalf("recv of %d bytes into an 8-byte buffer", res)
					}
					got = append(got, b.Buf(id, int(res))...)
					b.Recycle(id)
				}
				switch {
				case res == -int32(syscall.ENOBUFS):
					nobufs++
				case res == -int32(syscall.ECANCELED):
					cancelled++
				case res < 0:
					t.Fatalf("recv: %v", syscall.Errno(-res))
				}
				if flags&CQEFMore == 0 {
					armed--
					if res != -int32(syscall.ECANCELED) {
						arm()
						armed++
					}
				}
			}
		})
	}
	for deadline := time.Now().Add(5 * time.Second); len(got) < len(want) && time.Now().Before(deadline); {
		reap()
	}
	if !bytes.Equal(got, want) || sent != len(want) {
		t.Fatalf("received %q (sent %d bytes), want %q", got, sent, want)
	}
	if armed != 1 {
		t.Fatalf("%d recvs armed", armed)
	}
	t.Logf("ENOBUFS %d times", nobufs)
	e := r.SQE()
	e.PrepCancel(recvUD, cancelUD)
	for deadline := time.Now().Add(5 * time.Second); cancelled == 0 && time.Now().Before(deadline); {
		reap()
	}
	if cancelled != 1 || armed != 0 {
		t.Fatalf("after the cancel: %d cancelled, %d armed", cancelled, armed)
	}
}

// testRing is an enabled ring of 8 entries on the test's goroutine, locked
// to its thread (a single issuer) until the test ends, and closed then.
func testRing(t *testing.T) *Ring {
	t.Helper()
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	r, err := New(8, 16)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	if err := r.Enable(); err != nil {
		t.Fatal(err)
	}
	return r
}

// socketPair is a connected pair of Unix stream sockets; the caller closes
// them.
func socketPair(t *testing.T) [2]int {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return [2]int(fds)
}
