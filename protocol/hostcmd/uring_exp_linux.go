//go:build linux

package hostcmd

import (
	"os"
	"strings"

	"go.uber.org/zap"
)

// uringExp holds the io_uring loop's experimental switches (measurement
// only): PAYHSM_URING_EXP=raw,regring,fixed.
type uringExp struct{ raw, regring, fixed bool }

func readUringExp() uringExp {
	var e uringExp
	for _, f := range strings.Split(os.Getenv("PAYHSM_URING_EXP"), ",") {
		switch f {
		case "raw":
			e.raw = true
		case "regring":
			e.regring = true
		case "fixed":
			e.fixed = true
		}
	}
	return e
}

// register registers the ring's descriptor and the fixed-file table, from
// the loop's thread; a failure leaves the plain descriptors.
func (l *uringLoop) register() {
	if l.exp.regring {
		if err := l.r.RegisterRing(); err != nil {
			l.s.log.Warn("host port io_uring: ring not registered", zap.Error(err))
		}
	}
	if l.exp.fixed {
		f, err := l.r.RegisterFiles(min(2*l.s.cfg.MaxConnections+8, 16384))
		if err != nil {
			l.s.log.Warn("host port io_uring: no fixed files", zap.Error(err))
			return
		}
		l.files = f
	}
}
