package pebblekv

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"payhsm/keystore/kv"
	"payhsm/keystore/kv/kvtest"
)

func TestConformance(t *testing.T) {
	for _, serial := range []bool{false, true} {
		name := "group-commit"
		if serial {
			name = "serial-commit"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			kvtest.Run(t, kvtest.Env{New: func(t *testing.T) kv.Engine {
				d, err := Open("db", Options{FS: vfs.NewMem(), SerialCommit: serial})
				if err != nil {
					t.Fatal(err)
				}
				return d
			}})
		})
	}
}
