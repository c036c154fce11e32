//go:build !linux

package bench

import (
	"errors"
	"net"
	"sync/atomic"
	"time"
)

func ringAvailable() error { return errors.New("io_uring is Linux's") }

func runRing([]*worker, []net.Conn, *atomic.Bool, *atomic.Bool, time.Time) error {
	return ringAvailable()
}

func runEpoll([]*worker, []net.Conn, *atomic.Bool, *atomic.Bool, time.Time) error {
	return errors.New("epoll is Linux's")
}
