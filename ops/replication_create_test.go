package ops_test

import (
	"crypto/rand"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"payhsm/ops"
	"payhsm/ops/opstest"
)

// TestCreateKeyDoesNotTakeReplicationLock: creating a key (replicated to
// the default regions, to its own regions, or not at all) completes while
// the replication lock is held elsewhere (a sender's snapshot, a change of
// a replicated key): creations do not queue behind one another there, and
// their writes can share the engine's group commit. The replicated ones are
// in the outbox once the lock is free.
func TestCreateKeyDoesNotTakeReplicationLock(t *testing.T) {
	t.Parallel()
	p, _, _ := concurrentSites(t)
	if _, err := p.EnableDefaultReplicationRegions([]string{"us-west-2"}); err != nil {
		t.Fatal(err)
	}
	ins := []struct {
		name    string
		in      ops.CreateKeyInput
		regions int
	}{
		{"default regions", ops.CreateKeyInput{Attributes: macKey}, 1},
		{"own regions", ops.CreateKeyInput{Attributes: macKey, ReplicationRegions: []string{"eu-west-1", "us-west-2"}}, 2},
		{"no regions", ops.CreateKeyInput{Attributes: macKey, ReplicationRegions: []string{}}, 0},
	}
	release := p.HoldReplicationLockForTest()
	type result struct {
		k   *ops.Key
		err error
	}
	done := make(chan result, len(ins))
	for _, c := range ins {
		go func() {
			k, err := p.CreateKey(c.in)
			done <- result{k, err}
		}()
	}
	got := map[int]int{} // regions -> keys
	var ids []string
	timeout := time.After(20 * time.Second)
	for range ins {
		select {
		case r := <-done:
			if r.err != nil {
				release()
				t.Fatal(r.err)
			}
			n := 0
			if r.k.Replication != nil {
				n = len(r.k.Replication.Regions)
				ids = append(ids, keyID(r.k.ARN))
			}
			got[n]++
		case <-timeout:
			release()
			t.Fatal("CreateKey waits for the replication lock")
		}
	}
	release()
	for _, c := range ins {
		if got[c.regions] != 1 {
			t.Errorf("%s: keys by region count %v", c.name, got)
		}
	}
	out, err := p.ReplicationOutbox()
	if err != nil {
		t.Fatal(err)
	}
	var pending []string
	for _, o := range out {
		pending = append(pending, o.KeyID)
	}
	slices.Sort(pending)
	pending = slices.Compact(pending)
	slices.Sort(ids)
	if !slices.Equal(pending, ids) || len(out) != 3 {
		t.Fatalf("outbox %v, want the deliveries of keys %v (3)", out, ids)
	}
}

// TestConcurrentCreateKeyReplication: keys created concurrently with the
// default regions each get their record and outbox entry, wake the sender,
// and all reach the replica site.
func TestConcurrentCreateKeyReplication(t *testing.T) {
	t.Parallel()
	p, r, wakes := concurrentSites(t)
	if _, err := p.EnableDefaultReplicationRegions([]string{"us-west-2"}); err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wg sync.WaitGroup
	arns := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			k, err := p.CreateKey(ops.CreateKeyInput{Attributes: macKey})
			if err == nil && (k.Replication == nil || !k.Replication.UsingDefault) {
				t.Errorf("key %d replication %+v", i, k.Replication)
			}
			arns[i], errs[i] = k.ARN, err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if w := wakes.Load(); w < n {
		t.Errorf("sender woken %d times for %d keys", w, n)
	}
	if got := deliver(t, p, r, "us-west-2"); got != n {
		t.Fatalf("delivered %d of %d", got, n)
	}
	for _, a := range arns {
		if _, err := r.GetKey(replicaARN(a)); err != nil {
			t.Fatalf("replica of %s: %v", a, err)
		}
	}
}

// TestDefaultRegionsFollowOtherNodes: CreateKey reads the default regions
// from memory; a change another node makes reaches it through Follow's
// notification (and only then, on a store whose changes it is told of).
func TestDefaultRegionsFollowOtherNodes(t *testing.T) {
	t.Parallel()
	p, _, _ := concurrentSites(t)
	if _, err := p.EnableDefaultReplicationRegions([]string{"us-west-2"}); err != nil {
		t.Fatal(err)
	}
	regions := func() []string {
		t.Helper()
		k, err := p.CreateKey(ops.CreateKeyInput{Attributes: macKey})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		if k.Replication != nil {
			for reg := range k.Replication.Regions {
				out = append(out, reg)
			}
		}
		slices.Sort(out)
		return out
	}
	if got := regions(); !slices.Equal(got, []string{"us-west-2"}) {
		t.Fatalf("regions %v", got)
	}
	// Written behind the service's back, not notified: the copy stands.
	if err := p.SetDefaultsAsAnotherNodeForTest([]string{"eu-west-1"}, false); err != nil {
		t.Fatal(err)
	}
	if got := regions(); !slices.Equal(got, []string{"us-west-2"}) {
		t.Fatalf("regions %v: the defaults were read from the store", got)
	}
	// Notified as Follow does: the next key takes the new defaults.
	if err := p.SetDefaultsAsAnotherNodeForTest([]string{"eu-west-1", "us-west-2"}, true); err != nil {
		t.Fatal(err)
	}
	if got := regions(); !slices.Equal(got, []string{"eu-west-1", "us-west-2"}) {
		t.Fatalf("regions %v after another node's change", got)
	}
	if err := p.SetDefaultsAsAnotherNodeForTest([]string{}, true); err != nil {
		t.Fatal(err)
	}
	if got := regions(); got != nil {
		t.Fatalf("regions %v after the defaults were cleared", got)
	}
}

// concurrentSites is sites with a sender wake-up counter that concurrent
// creations may bump.
func concurrentSites(t *testing.T) (primary, replica *ops.Service, wakes *atomic.Int64) {
	t.Helper()
	pmk := make([]byte, 32)
	if _, err := rand.Read(pmk); err != nil {
		t.Fatal(err)
	}
	primary, replica = opstest.NewSite(t, "us-east-1", pmk), opstest.NewSite(t, "us-west-2", pmk)
	wakes = new(atomic.Int64)
	if err := primary.SetReplication([]string{"us-west-2", "eu-west-1"}, func() { wakes.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := replica.SetReplication([]string{"us-east-1"}, nil); err != nil {
		t.Fatal(err)
	}
	return primary, replica, wakes
}
