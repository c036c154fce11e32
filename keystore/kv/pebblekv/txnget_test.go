package pebblekv

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"payhsm/keystore/kv"
)

// TestTxnGetMatchesGet: a read inside a transaction (getFiltered, through
// the filters of every level) finds what the database's Get finds, for
// records in the last level (compacted there), in the memtable, written or
// deleted by an earlier transaction of the group, with a key that is a
// prefix of another's or extends another's, and with an empty value.
func TestTxnGetMatchesGet(t *testing.T) {
	d, err := Open("db", Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Close() }()
	commit := func(fn func(tx kv.Txn) error) { t.Helper(); commitTxn(t, d, fn) }
	commit(func(tx kv.Txn) error {
		for i := range 2000 {
			if err := tx.Set(fmt.Appendf(nil, "k/%05d", i), fmt.Appendf(nil, "v%d", i)); err != nil {
				return err
			}
		}
		return tx.Set([]byte("k/empty"), nil)
	})
	if err := d.Pebble().Compact(t.Context(), []byte("k/"), []byte("k0"), true); err != nil {
		t.Fatal(err)
	}
	commit(func(tx kv.Txn) error {
		return errors.Join(tx.Delete([]byte("k/00007")), tx.Set([]byte("k/00008"), []byte("new")), tx.Set([]byte("k/0001"), []byte("short")))
	})
	keys := []string{"k/00000", "k/01999", "k/00007", "k/00008", "k/0001", "k/00010", "k/000100", "k/02000", "k/", "k", "k/empty", "z"}
	want := map[string]string{}
	for _, k := range keys {
		v, ok, err := d.Get([]byte(k))
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			want[k] = "=" + string(v)
		}
	}
	if want["k/00000"] != "=v0" || want["k/00008"] != "=new" || want["k/00007"] != "" || want["k/empty"] != "=" {
		t.Fatalf("the database reads %v", want)
	}
	tx, err := d.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Discard()
	if err := tx.Delete([]byte("k/01999")); err != nil { // this transaction's own writes are not read back
		t.Fatal(err)
	}
	for _, k := range keys {
		v, ok, err := tx.Get([]byte(k))
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if ok {
			got = "=" + string(v)
		}
		if got != want[k] {
			t.Errorf("%s: the transaction reads %q, the database %q", k, got, want[k])
		}
	}
}
