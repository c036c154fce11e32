package keystore

import (
	"errors"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"payhsm/fault"
)

// TestWriteGate: while the gate refuses, every write fails with its error
// and writes nothing, reads go on; once it allows, writes go on.
func TestWriteGate(t *testing.T) {
	t.Parallel()
	s := openMem(t)
	seed(t, s)
	full := fault.Wrap(fault.Unavailable, "disk below its reserve", errors.New("test"))
	refuse := true
	s.SetWriteGate(func() error {
		if refuse {
			return full
		}
		return nil
	})
	for _, wc := range writeCases {
		if err := wc.write(s); !errors.Is(err, full) || fault.KindOf(err) != fault.Unavailable {
			t.Errorf("%s under a refusing gate: %v", wc.name, err)
		}
		if landed, err := wc.landed(s); err != nil || landed {
			t.Errorf("%s under a refusing gate landed=%v (%v)", wc.name, landed, err)
		}
	}
	checkSeed(t, s, false)
	if s.Failed() != nil {
		t.Errorf("a refused write failed the store: %v", s.Failed())
	}
	refuse = false
	if err := s.CreateKey(testKey(testID(2)), nil, ""); err != nil {
		t.Errorf("write once the gate allows: %v", err)
	}
	s.SetWriteGate(nil)
	refuse = true
	if err := s.PutMeta("n", []byte("x")); err != nil {
		t.Errorf("write without a gate: %v", err)
	}
}

// TestBackgroundFatalDoesNotExit: a MANIFEST write that fails in a
// background flush (a disk filled past the reserve by someone else) is
// fatal to Pebble, which calls Fatalf on its own goroutine. That used to
// panic and end the process. Now the store fails (every call returns
// ErrFailed at once, without waiting on Pebble), the process goes on, Close
// returns, and a restart finds every acknowledged write.
func TestBackgroundFatalDoesNotExit(t *testing.T) {
	t.Parallel()
	mem := vfs.NewCrashableMem()
	inj := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if strings.Contains(op.Path, "MANIFEST") && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return syscall.ENOSPC
		}
		return nil
	})}
	s, err := Open(faultDir, opts(Options{FS: errorfs.Wrap(mem, inj)}))
	if err != nil {
		t.Fatal(err)
	}
	seed(t, s)
	inj.On()
	if err := s.CreateKey(testKey(testID(2)), nil, "alias/b"); err != nil {
		t.Fatalf("a write the WAL takes: %v", err)
	}
	if _, err := pebbleOf(t, s).AsyncFlush(); err != nil { // the flush's MANIFEST write fails in Pebble's goroutine
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); s.Failed() == nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the store did not fail after a fatal background error")
		}
	}
	for name, err := range map[string]error{
		"GetKey":    func() error { _, err := s.GetKey(testID(1)); return err }(),
		"CreateKey": s.CreateKey(testKey(testID(3)), nil, ""),
	} {
		if !errors.Is(err, ErrFailed) {
			t.Errorf("%s after a fatal background error: %v", name, err)
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err == nil {
			t.Errorf("Close of a stalled store reports success")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close of a store stalled in a background error hangs")
	}
	r := openTest(t, mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(1, 1))}), faultDir)
	checkInvariants(t, r)
	checkSeed(t, r, false)
	if _, err := r.GetKey(testID(2)); err != nil {
		t.Errorf("the write acknowledged before the fatal error is lost: %v", err)
	}
}

// TestBackgroundErrorsRateLimited: a flush that fails on a full disk is
// retried by Pebble at once, again and again; its errors are logged at most
// once per bgErrEvery, not thousands of lines a second, nothing panics, and
// once space is back the flush completes.
func TestBackgroundErrorsRateLimited(t *testing.T) {
	t.Parallel()
	mem := vfs.NewCrashableMem()
	inj := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if strings.HasSuffix(op.Path, ".sst") && op.Kind == errorfs.OpCreate {
			return syscall.ENOSPC
		}
		return nil
	})}
	core, logs := observer.New(zap.DebugLevel)
	s, err := Open(faultDir, opts(Options{FS: errorfs.Wrap(mem, inj), Logger: zap.New(core)}))
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, s)
	seed(t, s)
	inj.On()
	if _, err := pebbleOf(t, s).AsyncFlush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	inj.Off()
	n := logs.FilterMessageSnippet("pebble background error").Len()
	if n != 1 {
		t.Errorf("%d background error lines in 300 ms of failing flushes, want 1", n)
	}
	if c := s.BackgroundErrors(); c < 2 {
		t.Errorf("BackgroundErrors() = %d after retried failing flushes", c)
	}
	if err := pebbleOf(t, s).Flush(); err != nil {
		t.Errorf("flush once space is back: %v", err)
	}
	if s.Failed() != nil {
		t.Errorf("a failed background flush failed the store: %v", s.Failed())
	}
	checkSeed(t, s, false)
}
