//go:build !linux

package awsapi_test

import "errors"

// loopsHere: HTTPServer has event loops on this system.
const loopsHere = false

func ringAvailable() error { return errors.New("io_uring is Linux's") }
