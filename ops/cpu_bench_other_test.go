//go:build !unix

package ops_test

import (
	"testing"
	"time"
)

// cpuTime is 0 where getrusage is missing: reportCPU then reports nothing.
func cpuTime() time.Duration { return 0 }

func reportCPU(*testing.B, time.Duration) {}
