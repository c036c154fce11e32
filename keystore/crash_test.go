package keystore

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// crashEnv, when set to a directory, turns TestCrashDurability into the child:
// it writes records into that directory and prints "ack <id>" after each
// acknowledged write until it is killed.
const crashEnv = "PAYHSM_KEYSTORE_CRASH_DIR"

// TestCrashDurability re-executes the test binary as a writer, SIGKILLs it
// while it is still writing (right after the parent has read N
// acknowledgements), reopens the store and requires every acknowledged write:
// key, alias, tag and the update that followed. SIGKILL loses the process,
// not the page cache, so this proves, on the real file system, that the
// batches were committed before the acknowledgement. Power loss (the page
// cache lost too) is cut in memory by the tests in fault_test.go.
func TestCrashDurability(t *testing.T) {
	t.Parallel()
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("subprocess test")
	}
	const n = 300
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashDurability$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	sc := bufio.NewScanner(out)
	killed := false
	deadline := time.AfterFunc(2*time.Minute, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	for sc.Scan() { // after the kill, keep reading: lines already in the pipe were acknowledged too
		if id, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
			acked[id] = true
		}
		if len(acked) == n && !killed {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL on Unix
				t.Fatal(err)
			}
			killed = true
		}
	}
	werr := cmd.Wait()
	if !killed {
		t.Fatalf("child stopped after %d acknowledgements: %v\n%s", len(acked), werr, stderr.String())
	}
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.ExitCode() != -1 {
		t.Fatalf("child was not killed by a signal: %v", werr)
	}

	s := openTest(t, vfs.Default, dir)
	for id := range acked {
		k, err := s.GetKey(id)
		if err != nil {
			t.Fatalf("acknowledged key %s lost: %v", id, err)
		}
		if !k.Enabled || k.Revision != 2 {
			t.Errorf("key %s: the acknowledged update is lost (revision %d)", id, k.Revision)
		}
		if a, err := s.GetAlias("alias/" + id); err != nil || a.KeyID != id {
			t.Errorf("alias of %s: %+v, %v", id, a, err)
		}
		if tags, _, err := s.ListTags(id, "", 0); err != nil || len(tags) != 1 || tags[0].Value != id {
			t.Errorf("tags of %s: %v, %v", id, tags, err)
		}
	}
	// Every record on disk is intact; unacknowledged ones may be there too.
	all, _, err := s.ListKeys(nil, "", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < len(acked) {
		t.Fatalf("%d keys on disk, %d acknowledged", len(all), len(acked))
	}
	t.Logf("%d acknowledged, %d on disk after SIGKILL", len(acked), len(all))
}

// crashChild writes records from 4 goroutines (so Pebble groups syncs) and
// acknowledges each after CreateKey and UpdateKey both returned. It never
// returns normally: the parent kills it.
func crashChild(dir string) {
	s, err := Open(dir, opts(Options{}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; i < 1_000_000; i++ {
				id := fmt.Sprintf("c%d%014d", w, i)
				k := testKey(id)
				k.Enabled = false
				if err := s.CreateKey(k, []Tag{{"id", id}}, "alias/"+id); err != nil {
					fail(err)
				}
				if _, err := s.UpdateKey(id, func(k *Key) error { k.Enabled = true; return nil }); err != nil {
					fail(err)
				}
				mu.Lock()
				_, err := fmt.Fprintf(os.Stdout, "ack %s\n", id)
				mu.Unlock()
				if err != nil { // the parent closed the pipe
					os.Exit(3)
				}
			}
		})
	}
	wg.Wait()
	os.Exit(4) // should have been killed long before
}
