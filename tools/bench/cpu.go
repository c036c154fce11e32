package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

type cpuSample struct{ server, self time.Duration }

// clockTick is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// cpuTimes samples the CPU time (user + system, all threads) of process pid
// (skipped when 0) and of this process.
func cpuTimes(pid int) (cpuSample, error) {
	var s cpuSample
	if pid != 0 {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return s, fmt.Errorf("bench: -pid: %w", err)
		}
		if s.server, err = statCPU(b); err != nil {
			return s, fmt.Errorf("bench: -pid: %w", err)
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return s, fmt.Errorf("bench: getrusage: %w", err)
	}
	s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return s, nil
}

// statCPU returns utime + stime from the contents of /proc/PID/stat (fields
// 14 and 15, counted after the parenthesised command name, which may hold
// spaces).
func statCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat")
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc stat")
	}
	u, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc stat")
	}
	return time.Duration(u+st) * clockTick, nil
}
