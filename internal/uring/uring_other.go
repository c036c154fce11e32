//go:build !linux

package uring

import "errors"

// Available reports whether a ring can be set up here: never off Linux.
func Available() error { return errors.New("io_uring is Linux's") }
