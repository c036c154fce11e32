//go:build linux

package awsapi_test

import "payhsm/protocol/awsapi"

// loopsHere: HTTPServer has event loops on this system.
const loopsHere = true

func ringAvailable() error { return awsapi.HTTPRingAvailable() }
