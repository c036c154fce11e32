package opstest

import (
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"payhsm/hsm/custody"
	"payhsm/internal/etcdtest"
	"payhsm/keyspec"
	"payhsm/keystore"
	"payhsm/ops"
)

// BenchmarkCreateKeyOps is CreateKey through the operations layer (key
// generation, wrapping under the profile main key, the replication plan,
// the durable write) on a Pebble store on disk, fsync on: run it with
// -cpu 1,32 for 1 and 32 concurrent clients. repl=default replicates every
// key to the site's default region (the record and outbox entry are
// written with the key). cpu-us/op is the process's user+system CPU per
// create (getrusage), the write's share of Pebble's background work
// included. journal=on starts the store's freshness journal, as the daemon
// does (every write appends an entry and rewrites the head; checkpoints
// run in the background). outbox=on sets the AuditOutbox hook as the
// daemon's audit outbox does: the key record carries who created it (about
// 90 bytes).
func BenchmarkCreateKeyOps(b *testing.B) {
	for _, c := range []struct {
		journal, outbox bool
		repl            string
	}{{false, false, "none"}, {false, false, "default"}, {true, false, "none"}, {true, false, "default"}, {true, true, "none"}} {
		journal, repl := c.journal, c.repl
		name := "engine=pebble/repl=" + repl
		if journal {
			name += "/journal=on"
		}
		if c.outbox {
			name += "/outbox=on"
		}
		b.Run(name, func(b *testing.B) {
			store, err := keystore.Open(b.TempDir(), keystore.Options{Logger: zap.NewNop()})
			if err != nil {
				b.Fatal(err)
			}
			svc, _, _, cust := newServiceOn(b, store, nil)
			if journal {
				startBenchJournal(b, store, cust)
			}
			benchCreateKeys(b, svc, repl == "default", c.outbox)
		})
	}
}

// BenchmarkCreateKeyOpsEtcd is BenchmarkCreateKeyOps on a real 3-member etcd
// cluster on loopback, fsync on (skipped without PAYHSM_ETCD).
// journal=on is a fleet node as the daemon runs it: with its freshness
// journal every write of the node rewrites the node's journal head, so the
// store runs its writes one at a time (keystore.Store.attempt, alone).
func BenchmarkCreateKeyOpsEtcd(b *testing.B) {
	c := etcdtest.Start(b, etcdtest.Options{})
	for _, cs := range []struct {
		repl    string
		journal bool
	}{{"none", false}, {"default", false}, {"none", true}} {
		name := "engine=etcd/repl=" + cs.repl
		if cs.journal {
			name += "/journal=on"
		}
		b.Run(name, func(b *testing.B) {
			prefix := "/bench/" + cs.repl + "/" + time.Now().Format("150405.000000") + "/"
			store := openEtcdStore(b, c.Endpoints(), prefix)
			svc, _, _, cust := newServiceOn(b, store, nil)
			if cs.journal {
				startBenchJournal(b, store, cust)
			}
			benchCreateKeys(b, svc, cs.repl == "default", false)
		})
	}
}

// startBenchJournal starts store's journal as the appliance does, the
// profile first (StartJournal holds the store, and the journal's
// authenticator must not read it then), and closes the store before the
// custodian (newServiceOn's cleanup closes it first): the final checkpoint
// seals under it.
func startBenchJournal(b *testing.B, store *keystore.Store, cust *custody.Custodian) {
	b.Helper()
	if _, err := cust.Profile("default"); err != nil {
		b.Fatal(err)
	}
	if _, err := store.StartJournal(keystore.JournalOptions{Writer: "bench"}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := store.Close(); err != nil {
			b.Error(err)
		}
	})
}

func benchCreateKeys(b *testing.B, svc *ops.Service, replicate, outbox bool) {
	b.Helper()
	if replicate {
		if err := svc.SetReplication([]string{"us-west-2"}, func() {}); err != nil {
			b.Fatal(err)
		}
		if _, err := svc.EnableDefaultReplicationRegions([]string{"us-west-2"}); err != nil {
			b.Fatal(err)
		}
	}
	in := ops.CreateKeyInput{Attributes: keyspec.Attributes{Usage: keyspec.D0, Class: keyspec.Symmetric,
		Algorithm: keyspec.AES128, Modes: keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}}
	if outbox {
		var n atomic.Uint64
		in.AuditOutbox = func(string) (string, error) {
			return "AKIAEXAMPLE000000000 127.0.0.1:40000 0b1c2d3e-4f50-6172-8394-" + strconv.FormatUint(100000000000+n.Add(1), 10), nil
		}
	}
	var failed atomic.Bool
	cpu0 := cpuTime()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k, err := svc.CreateKey(in)
			if err != nil || (replicate && k.Replication == nil) {
				if !failed.Swap(true) {
					b.Errorf("CreateKey: %v (replication %v)", err, k != nil && k.Replication != nil)
				}
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-us/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
