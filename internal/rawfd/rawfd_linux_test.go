package rawfd_test

import (
	"errors"
	"net"
	"syscall"
	"testing"

	"payhsm/internal/rawfd"
)

// TestDupReadWrite takes a loopback connection's descriptor over and moves
// bytes both ways through it after the original is closed; an empty socket
// reads EAGAIN (it stays non-blocking).
func TestDupReadWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = peer.Close() }()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := rawfd.Dup(c.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Close(fd) }()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if _, err := rawfd.Read(fd, buf); !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("read of an empty socket: %v, want EAGAIN", err)
	}
	if n, err := rawfd.Write(fd, []byte("ping")); err != nil || n != 4 {
		t.Fatalf("write: %d, %v", n, err)
	}
	if _, err := peer.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := peer.Read(got); err != nil || string(got) != "ping" {
		t.Fatalf("peer read %q, %v", got, err)
	}
	for {
		n, err := rawfd.Read(fd, buf)
		if errors.Is(err, syscall.EAGAIN) {
			continue
		}
		if err != nil || string(buf[:n]) != "pong" {
			t.Fatalf("read %q, %v", buf[:n], err)
		}
		break
	}
}
