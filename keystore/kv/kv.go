// Package kv owns the contract between keystore.Store and the engine that
// holds its bytes: an ordered key-value map with point reads, range scans,
// consistent read views and atomic, durable transactions. Two engines
// implement it: kv/pebblekv (an embedded Pebble database, one process) and
// kv/etcdkv (a prefix of an etcd v3 cluster, shared by many processes). The
// store's logic (record sealing, indices, purge, migration, verification)
// is written once against this contract; the conformance suite in
// kv/kvtest checks an engine against it.
//
// # Isolation
//
// A Txn is serializable: its commit succeeds only if nothing it read has
// changed since it read it (a key read is still absent or has the same
// value; a range scanned has gained no key and no key in it changed), and
// then its writes become visible together and durable. An engine may
// guarantee that pessimistically (pebblekv: one transaction at a time in
// the process that holds the database) or optimistically (etcdkv: every
// read records the revision it saw, and the commit compares them); when an
// optimistic commit finds a change it fails with ErrConflict and writes
// nothing, and the caller runs the whole operation again from its reads.
// Reads inside a Txn do not see its own writes; a Txn's writes to the same
// key keep the last.
//
// Reads outside a Txn (Engine.Get, Engine.Scan) are linearizable: they see
// every transaction that committed before they started. A View is a
// consistent snapshot: every read through it sees the engine as of the
// moment the View was made.
//
// # Durability
//
// When Commit returns nil, the transaction survives a crash of the process
// and, where the engine replicates, the loss of a minority of its members.
// An engine may make a transaction visible to readers an instant before it
// is durable (Pebble applies a batch to its memtable before the WAL sync
// that acknowledges it); it never acknowledges one that is not.
//
// # Errors
//
// ErrConflict (retry the operation), ErrUnavailable (the engine cannot be
// reached or did not answer in time; for a commit, its outcome may be
// unknown), ErrFailed (a durable write failed and the engine refuses every
// call until it is reopened), ErrTooLarge (a transaction beyond the
// engine's limits; see Limits) and ErrClosed. Engines wrap them with
// detail; test with errors.Is.
package kv

import (
	"context"
	"errors"
	"time"

	"payhsm/fault"
)

// Errors every engine returns (wrapped); see the package comment.
var (
	// ErrConflict: an optimistic transaction read a value that changed
	// before it committed; nothing was written.
	ErrConflict = &fault.Error{Kind: fault.Unavailable, Message: "key store write conflicted with a concurrent write; retry"}
	// ErrUnavailable: the engine could not be reached or did not answer in
	// time. A Commit that returns it may or may not have been applied.
	ErrUnavailable = &fault.Error{Kind: fault.Unavailable, Message: "key store unavailable"}
	// ErrFailed: a durable write failed; the engine refuses every call
	// until it is reopened.
	ErrFailed = errors.New("kv: a durable write failed")
	// ErrTooLarge: a transaction exceeds the engine's limits (Limits).
	ErrTooLarge = &fault.Error{Kind: fault.Validation, Message: "key store transaction too large"}
	// ErrClosed: the engine was closed.
	ErrClosed = &fault.Error{Kind: fault.Unavailable, Message: "key store closed"}
)

// Reader reads keys. Keys and values passed to a Scan callback are valid
// only during the call (copy them to keep them); values returned by Get
// are the caller's.
type Reader interface {
	// Get returns key's value; ok is false when the key is absent.
	Get(key []byte) (value []byte, ok bool, err error)
	// Scan calls fn for every key in [lo, hi) in ascending byte order (hi
	// nil: no upper bound) until fn returns false or an error, which Scan
	// returns.
	Scan(lo, hi []byte, fn func(key, value []byte) (more bool, err error)) error
}

// View is a consistent read-only snapshot; Close releases it.
type View interface {
	Reader
	Close() error
}

// Txn is a serializable read-write transaction (see the package comment).
// Exactly one of Commit or Discard ends it; Discard after Commit does
// nothing, so deferring it is safe.
type Txn interface {
	Reader
	// Set writes key = value when the transaction commits. The engine keeps
	// its own copies.
	Set(key, value []byte) error
	// Delete removes key when the transaction commits; deleting an absent
	// key is not an error.
	Delete(key []byte) error
	// Commit makes the writes visible and durable atomically, or fails with
	// ErrConflict having written nothing. A transaction with no writes
	// commits trivially.
	Commit() error
	// Discard abandons the transaction.
	Discard()
}

// Limits bounds one transaction. Zero means no limit.
type Limits struct {
	// MaxOps is the most writes (sets and deletes of distinct keys) and,
	// separately, the most reads recorded for the commit check.
	MaxOps int
	// MaxBytes bounds the keys and values a transaction writes, and the keys
	// it read, added up.
	MaxBytes int
}

// Engine is an ordered key-value store with serializable transactions.
type Engine interface {
	Reader
	// View returns a consistent snapshot of the engine as of now.
	View() (View, error)
	// Begin starts a transaction.
	Begin() (Txn, error)
	// Limits returns the bounds on one transaction.
	Limits() Limits
	// Name names the engine and where it is, for logs ("pebble /var/lib/...",
	// "etcd prefix /payhsm/ at host:2379,...").
	Name() string
	// Close releases the engine. It waits for nothing: the caller closes it
	// once no call is in progress.
	Close() error
}

// WatchEvent is one batch of changes a Watcher delivers: the keys one
// transaction (or several, delivered together) set or deleted, or Reset.
type WatchEvent struct {
	// Keys are the engine keys changed (set or deleted), without an
	// engine's own prefix. They are the receiver's.
	Keys [][]byte
	// Reset: the watch lost its place in the engine's history (it was
	// compacted while the watch was disconnected), so changes may have been
	// missed: whoever caches what the engine holds must drop all of it.
	Reset bool
}

// Watcher is implemented by an engine that other processes write to (a
// shared engine: kv/etcdkv), so that what a process caches can follow the
// others' writes. An engine with one writer (kv/pebblekv) implements none:
// its process sees its own writes.
type Watcher interface {
	// Watch calls fn with every change any process commits after Watch is
	// called, in commit order, until ctx ends, and returns then. Its first
	// call of fn is a Reset, made once the watch knows the revision it
	// watches from: whatever was cached before it may predate a change the
	// watch does not deliver. A lost
	// connection is resumed from the last change delivered; when the engine
	// no longer holds the history from there, fn gets an event with Reset
	// and the watch carries on from the present. Every probe, Watch checks
	// the engine with a linearizable read and calls contact(t) once it knows
	// that the engine answered with a quorum at t and that every change
	// committed before t has been passed to fn: a cache that fn keeps
	// current is current as of t. fn and contact are called from one
	// goroutine, never at once.
	Watch(ctx context.Context, probe time.Duration, fn func(WatchEvent), contact func(t time.Time))
}

// Elector is implemented by a shared engine to elect, among the processes
// using it, one leader per role (a job that must run once per fleet, not
// once per process). An engine with one process (kv/pebblekv) implements
// none: its process always leads.
type Elector interface {
	// Lead campaigns for role as candidate (a name for logs and status)
	// until ctx ends; each time it wins, it calls run with a context that
	// ends when leadership is lost (the lease that holds it expired: the
	// engine was unreachable for most of ttl) or ctx ends, and when run
	// returns it gives leadership up and campaigns again. Another process
	// takes over within ttl of the leader's loss.
	Lead(ctx context.Context, role, candidate string, ttl time.Duration, run func(ctx context.Context))
	// Leader names the candidate that leads role now; ok is false when
	// none does.
	Leader(role string) (candidate string, ok bool, err error)
}

// Counter is an Engine that can count the keys of a range without reading
// their values (etcdkv: one count-only request, where a Scan would carry
// every value over the network). Count is linearizable, like a Scan.
type Counter interface {
	// Count returns the number of keys in [lo, hi) (hi nil: no upper bound).
	Count(lo, hi []byte) (int, error)
}

// Optimistic is an Engine whose transactions are optimistic (etcdkv; see
// Isolation): two concurrent transactions that touch one key cost a
// conflict, a pause and a re-run of one of them, so a caller whose
// transactions all touch one key does better to run them one at a time.
type Optimistic interface {
	// Optimistic reports whether the engine's transactions are optimistic.
	Optimistic() bool
}

// PrefixEnd returns the least key greater than every key that begins with
// p, or nil when there is none (p is empty or all 0xff).
func PrefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
