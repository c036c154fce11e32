package keystore

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"payhsm/keystore/kv"
)

// TestPebbleChatterAtDebug: Pebble's informational lines (flushes, WAL and
// table housekeeping) reach the log at debug level, not info.
func TestPebbleChatterAtDebug(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	s, err := Open("db", opts(Options{FS: vfs.NewMem(), Logger: zap.New(core)}))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutMeta("custody/x", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := pebbleOf(t, s).Flush(); err != nil { // a flush makes Pebble talk
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	pebbleLines := 0
	for _, e := range logs.All() {
		if e.LoggerName != "keystore.pebble" {
			continue
		}
		pebbleLines++
		if e.Level < zapcore.WarnLevel && e.Level != zapcore.DebugLevel {
			t.Errorf("Pebble line at %s: %s", e.Level, e.Message)
		}
	}
	if pebbleLines == 0 {
		t.Fatal("Pebble logged nothing: the test shows nothing")
	}
}

// TestStats: the key count and the disk usage.
func TestStats(t *testing.T) {
	t.Parallel()
	s, err := Open("keystore", opts(Options{FS: vfs.NewMem()}))
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats()
	if err != nil || st.Keys != 0 || st.DiskBytes == 0 {
		t.Fatalf("empty store: %+v %v", st, err)
	}
	for i := range 3 {
		if err := s.CreateKey(testKey(testID(i)), nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := s.Stats(); err != nil || st.Keys != 3 {
		t.Fatalf("three keys: %+v %v", st, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stats(); err == nil {
		t.Error("Stats of a closed store succeeded")
	}
}

// testStatsCountsKeys (conformance): Stats counts the key records only (not
// aliases, tags, indices, meta or the journal), a purged key no longer; on
// etcd through the engine's count-only request (kv.Counter).
func testStatsCountsKeys(t *testing.T, env *storeEnv) {
	s := env.store(t)
	if env.name == "etcd" {
		if _, ok := s.eng.(kv.Counter); !ok {
			t.Fatal("the etcd engine does not count ranges by itself: Stats would read every key record per scrape")
		}
	}
	count := func(want int) {
		t.Helper()
		st, err := s.Stats()
		if err != nil || st.Keys != want {
			t.Fatalf("Stats: %+v %v, want %d keys", st, err, want)
		}
	}
	count(0)
	for i := range 5 {
		if err := s.CreateKey(testKey(testID(i)), []Tag{{"a", "1"}, {"b", "2"}}, fmt.Sprintf("alias/s%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutMeta("custody/x", []byte("v")); err != nil {
		t.Fatal(err)
	}
	count(5)
	if err := s.PurgeKey(testID(2)); err != nil {
		t.Fatal(err)
	}
	count(4)
}
