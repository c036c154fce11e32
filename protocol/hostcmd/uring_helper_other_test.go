//go:build !linux

package hostcmd

import "errors"

func uringUsable() error { return errors.New("io_uring is Linux's") }

func loopIsUring(*Server) bool { return false }
