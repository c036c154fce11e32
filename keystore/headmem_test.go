package keystore

import (
	"bytes"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"payhsm/keystore/kv"
	"payhsm/keystore/kv/pebblekv"
)

// headCountEngine counts the reads of writer testWriter's journal head made
// inside transactions; serial says whether its transactions pass the
// engine's numbering through (serialTxn).
type headCountEngine struct {
	kv.Engine
	serial bool
	reads  atomic.Int64
}

func (e *headCountEngine) Begin() (kv.Txn, error) {
	tx, err := e.Engine.Begin()
	if err != nil {
		return nil, err
	}
	if e.serial {
		return &headCountSerialTxn{headCountTxn{Txn: tx, e: e}}, nil
	}
	return &headCountTxn{Txn: tx, e: e}, nil
}

type headCountTxn struct {
	kv.Txn
	e *headCountEngine
}

func (t *headCountTxn) Get(k []byte) ([]byte, bool, error) {
	if bytes.Equal(k, headKey(testWriter)) {
		t.e.reads.Add(1)
	}
	return t.Txn.Get(k)
}

type headCountSerialTxn struct{ headCountTxn }

func (t *headCountSerialTxn) Serial() uint64 { return t.Txn.(serialTxn).Serial() }

// openHeadCount opens a journaled store in "keystore" on fs through a
// headCountEngine.
func openHeadCount(t *testing.T, fs vfs.FS, serial bool) (*Store, *headCountEngine) {
	t.Helper()
	db, err := pebblekv.Open("keystore", pebblekv.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	e := &headCountEngine{Engine: db, serial: serial}
	s, err := OpenEngine(e, Options{Authenticator: newTestAuth(), Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.StartJournal(JournalOptions{Writer: testWriter, CheckpointEntries: 1000}); err != nil {
		t.Fatal(err)
	}
	return s, e
}

// TestHeadFromPreviousTransaction: on an engine that numbers its
// transactions (pebblekv), a write whose transaction directly follows the
// one that wrote the journal head takes the head from memory; any other
// transaction in between (a checkpoint, a write straight to the engine)
// makes the next write read the head and check it again, so that a damaged
// head is still refused. The journal stays valid throughout (Verify, and a
// restart that continues it).
func TestHeadFromPreviousTransaction(t *testing.T) {
	fs := vfs.NewMem()
	s, e := openHeadCount(t, fs, true)
	create := func(i int) error { return s.CreateKey(testKey(testID(i)), nil, "") }
	n := 0
	createRun := func(count int, wantReads int64, what string) {
		t.Helper()
		before := e.reads.Load()
		for range count {
			if err := create(n); err != nil {
				t.Fatalf("%s: create %d: %v", what, n, err)
			}
			n++
		}
		if got := e.reads.Load() - before; got != wantReads {
			t.Errorf("%s: %d reads of the head in %d creates, want %d", what, got, count, wantReads)
		}
	}
	createRun(20, 1, "after StartJournal") // StartJournal's transactions wrote the head: the first create reads it
	if err := s.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	createRun(20, 1, "after a checkpoint")

	// A head with a flipped byte, written straight to the engine between two
	// writes, is read and refused by the next write.
	good, ok, err := e.Get(headKey(testWriter))
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	put := func(v []byte) {
		t.Helper()
		tx, err := e.Engine.Begin()
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Set(headKey(testWriter), v); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	bad := slices.Clone(good)
	bad[len(bad)-1] ^= 1
	put(bad)
	before := e.reads.Load()
	if err := create(n); !errors.Is(err, ErrJournalDamaged) {
		t.Fatalf("a create after the head was damaged: %v, want ErrJournalDamaged", err)
	}
	if e.reads.Load() == before {
		t.Fatal("the damaged head was not read")
	}
	put(good)
	createRun(5, 1, "after the head was put back")
	verifyClean(t, s, n, "after the creates")

	// A restart continues the journal the creates wrote.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, e = openHeadCount(t, fs, true)
	createRun(5, 1, "after a restart")
	verifyClean(t, s, n, "after a restart")
}

// TestHeadReadWithoutSerial: an engine whose transactions are not numbered
// (etcdkv, or a wrapper that does not pass the numbering through) reads the
// head in every write.
func TestHeadReadWithoutSerial(t *testing.T) {
	s, e := openHeadCount(t, vfs.NewMem(), false)
	before := e.reads.Load()
	for i := range 10 {
		if err := s.CreateKey(testKey(testID(i)), nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.reads.Load() - before; got != 10 {
		t.Errorf("%d reads of the head in 10 creates, want 10", got)
	}
}
