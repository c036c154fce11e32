package opstest

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"payhsm/fault"
	"payhsm/hsm/custody"
	"payhsm/internal/etcdtest"
	"payhsm/keyspec"
	"payhsm/keystore"
	"payhsm/keystore/kv/etcdkv"
	"payhsm/ops"
)

// openEtcdStore opens a Store on prefix of the cluster at endpoints.
func openEtcdStore(tb testing.TB, endpoints []string, prefix string) *keystore.Store {
	tb.Helper()
	e, err := etcdkv.Open(etcdkv.Config{Endpoints: endpoints, Prefix: prefix, RequestTimeout: 2 * time.Second, DialTimeout: 2 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	s, err := keystore.OpenEngine(e, keystore.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// newFleetNode returns a service over its own Store on prefix, using cust
// for its keys: a second node of the fleet whose first node owns cust.
// (Until nodes have custody records of their own in the shared store, the
// two nodes share one custodian, and so one token: the test is about the
// store and the cache, not custody.)
func newFleetNode(tb testing.TB, endpoints []string, prefix string, cust *custody.Custodian) (*ops.Service, *keystore.Store) {
	tb.Helper()
	store := openEtcdStore(tb, endpoints, prefix)
	tb.Cleanup(func() { _ = store.Close() })
	if err := store.SetAuthenticator(cust, "default"); err != nil {
		tb.Fatal(err)
	}
	svc, err := ops.New(ops.Config{Region: "us-east-1", Account: "000000000000", NewRSAKey: testRSAKey, Node: "b"}, store, cust, zap.NewNop())
	if err != nil {
		tb.Fatal(err)
	}
	return svc, store
}

// TestFleetCacheFollowsOtherNode: node A caches a working key; StopKeyUsage,
// an alias change and DeleteKey made through node B (another Store on the
// same etcd prefix) make A refuse or change it within the watch's delay,
// without any call on A; when A loses the quorum, it serves cached keys for
// its staleness bound and then refuses them with ServiceUnavailable, and
// refuses control-plane writes at once; with the quorum back it serves
// again. A rotation is refused on a node that does not lead.
func TestFleetCacheFollowsOtherNode(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{Args: []string{"--unsafe-no-fsync"}})
	prefix := "/ops-fleet/1/"
	svcA, _, storeA, cust := newServiceOn(t, openEtcdStore(t, c.Endpoints(), prefix), nil, func(c *ops.Config) { c.Node = "a" })
	svcB, _ := newFleetNode(t, c.Endpoints(), prefix, cust)
	const staleness = 1500 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if !svcA.Follow(ctx, staleness) {
		t.Fatal("Follow: the etcd store is not shared")
	}
	time.Sleep(100 * time.Millisecond) // let the watch start

	attrs := keyspec.Attributes{Usage: keyspec.P0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
		Modes: keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}
	k1, err := svcA.CreateKey(ops.CreateKeyInput{Attributes: attrs})
	if err != nil {
		t.Fatal(err)
	}
	k2, err := svcA.CreateKey(ops.CreateKeyInput{Attributes: attrs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svcA.CreateAlias("alias/pin", k1.ARN); err != nil {
		t.Fatal(err)
	}
	// Cached on A, by ARN and by alias; used through B at once.
	for _, ident := range []string{k1.ARN, "alias/pin", k2.ARN} {
		w, err := svcA.Working(ident, fault.SubjectKey, fault.SideNone)
		if err != nil {
			t.Fatal(err)
		}
		w.Release()
		if w, err = svcB.Working(ident, fault.SubjectKey, fault.SideNone); err != nil {
			t.Fatalf("node B uses %s: %v", ident, err)
		}
		w.Release()
	}

	// until polls A's view of ident until ok says it changed, and returns
	// how long that took from the call that changed it.
	until := func(what, ident string, ok func(*ops.WorkingKey, error) bool) time.Duration {
		t.Helper()
		start := time.Now()
		for time.Since(start) < 5*time.Second {
			w, err := svcA.Working(ident, fault.SubjectKey, fault.SideNone)
			done := ok(w, err)
			if err == nil {
				w.Release()
			}
			if done {
				return time.Since(start)
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatalf("%s through node B: node A still serves %s the old way after 5s", what, ident)
		return 0
	}
	refused := func(_ *ops.WorkingKey, err error) bool { return fault.KindOf(err) == fault.Validation }

	// An alias re-pointed through B: A resolves it to the new key.
	start := time.Now()
	if _, err := svcB.UpdateAlias("alias/pin", k2.ARN); err != nil {
		t.Fatal(err)
	}
	d := until("UpdateAlias", "alias/pin", func(w *ops.WorkingKey, err error) bool { return err == nil && w.ARN == k2.ARN })
	t.Logf("UpdateAlias on B -> A resolves the new key after %v (%v from the call)", d, time.Since(start))

	// StopKeyUsage through B: A refuses its cached key.
	start = time.Now()
	if _, err := svcB.StopKeyUsage(k1.ARN); err != nil {
		t.Fatal(err)
	}
	d = until("StopKeyUsage", k1.ARN, refused)
	t.Logf("StopKeyUsage on B -> A refuses the cached key after %v (%v from the call)", d, time.Since(start))
	if d > time.Second {
		t.Errorf("A refused the stopped key only after %v (target 100 ms)", d)
	}

	// DeleteKey through B.
	if _, err := svcB.DeleteKey(k2.ARN, nil); err != nil {
		t.Fatal(err)
	}
	until("DeleteKey", k2.ARN, refused)

	// A rotation runs on the fleet's leader only; A does not lead (no Run).
	if _, err := svcA.RotateProfile("default", nil, 0); fault.KindOf(err) != fault.Unavailable {
		t.Fatalf("a rotation on a node that does not lead: %v, want Unavailable", err)
	}

	// The quorum lost: A serves its cached key for the staleness bound, then
	// refuses it with Unavailable; a write is refused at once.
	k3, err := svcA.CreateKey(ops.CreateKeyInput{Attributes: attrs})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // A's own write comes back through the watch and drops k3: let it pass
	w, err := svcA.Working(k3.ARN, fault.SubjectKey, fault.SideNone)
	if err != nil {
		t.Fatal(err)
	}
	w.Release()
	c.Kill(1)
	c.Kill(2)
	lost := time.Now()
	if w, err := svcA.Working(k3.ARN, fault.SubjectKey, fault.SideNone); err != nil {
		t.Fatalf("cached key refused at once after the quorum was lost: %v", err)
	} else {
		w.Release()
	}
	var staleAfter time.Duration
	for {
		w, err := svcA.Working(k3.ARN, fault.SubjectKey, fault.SideNone)
		if err == nil {
			w.Release()
			if time.Since(lost) > staleness+5*time.Second {
				t.Fatal("a cached key is still served 5s past the staleness bound")
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if fault.KindOf(err) != fault.Unavailable {
			t.Fatalf("past the staleness bound: %v, want Unavailable", err)
		}
		staleAfter = time.Since(lost)
		break
	}
	t.Logf("cached key refused %v after the quorum was lost (bound %v)", staleAfter, staleness)
	if staleAfter < staleness-500*time.Millisecond {
		t.Errorf("refused after %v, before the bound %v", staleAfter, staleness)
	}
	// The store known unreachable (no contact for the request timeout, 2s
	// here): a control-plane write is refused at once.
	for storeA.Reachable() == nil {
		if time.Since(lost) > 10*time.Second {
			t.Fatal("the store is still reachable 10s after the quorum was lost")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start = time.Now()
	if _, err := svcA.CreateKey(ops.CreateKeyInput{Attributes: attrs}); err == nil {
		t.Fatal("CreateKey without a quorum succeeded")
	} else if fault.KindOf(err) != fault.Unavailable {
		t.Fatalf("CreateKey without a quorum: %v, want Unavailable", err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("CreateKey without a quorum refused after %v, want at once", d)
	}
	c.Restart(1)
	c.Restart(2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		w, err := svcA.Working(k3.ARN, fault.SubjectKey, fault.SideNone)
		if err == nil {
			w.Release()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the quorum is back, the key still refused: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFleetRunLeads: on a shared store, Run leads (and a rotation is then
// allowed); a second node's Run waits, and takes over when the first stops.
func TestFleetRunLeads(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, etcdtest.Options{Args: []string{"--unsafe-no-fsync"}})
	prefix := "/ops-fleet/2/"
	svcA, _, _, cust := newServiceOn(t, openEtcdStore(t, c.Endpoints(), prefix), nil, func(c *ops.Config) { c.Node = "a"; c.LeaderTTL = 2 * time.Second })
	svcB, _ := newFleetNode(t, c.Endpoints(), prefix, cust)
	if svcA.Leading() || svcB.Leading() {
		t.Fatal("a node leads before Run")
	}
	ctxA, cancelA := context.WithCancel(context.Background())
	doneA := make(chan struct{})
	go func() { defer close(doneA); svcA.Run(ctxA, time.Hour) }()
	defer func() { cancelA(); <-doneA }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("A leads", svcA.Leading)
	ctxB, cancelB := context.WithCancel(context.Background())
	doneB := make(chan struct{})
	go func() { defer close(doneB); svcB.Run(ctxB, time.Hour) }()
	defer func() { cancelB(); <-doneB }()
	time.Sleep(500 * time.Millisecond)
	if svcB.Leading() {
		t.Fatal("B leads while A does")
	}
	cancelA()
	<-doneA
	if svcA.Leading() {
		t.Fatal("A still leads after its Run returned")
	}
	start := time.Now()
	waitFor("B takes over", svcB.Leading)
	t.Logf("B leads %v after A stopped", time.Since(start))
	if l := svcA.Leader(); l != "b" {
		t.Errorf("A says the leader is %q, want b", l)
	}
	if _, err := svcA.RotateProfile("default", nil, 0); fault.KindOf(err) != fault.Unavailable || !strings.Contains(err.Error(), `run it on node "b"`) {
		t.Errorf("a rotation on A while B leads: %v, want Unavailable naming b", err)
	}

	// A rotation on the leader B drops every working key cached on A, even
	// one A has no record of (a key block carried in the request).
	ctxF, cancelF := context.WithCancel(context.Background())
	defer cancelF()
	svcA.Follow(ctxF, keystore.DefaultStaleness)
	time.Sleep(100 * time.Millisecond) // the watch's initial reset
	a := keyspec.Attributes{Usage: keyspec.C0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key, Modes: keyspec.ModesOfUse{Generate: true, Verify: true}}
	block, _, err := svcA.GenerateKeyBlock("default", a, false)
	if err != nil {
		t.Fatal(err)
	}
	w, err := svcA.Working(ops.BlockIdent("default", block), fault.SubjectKey, fault.SideNone)
	if err != nil {
		t.Fatal(err)
	}
	w.Release()
	if n := svcA.CacheStats().Entries; n != 1 {
		t.Fatalf("%d working keys cached on A, want 1", n)
	}
	if _, err := svcB.RotateProfile("default", nil, 0); err != nil {
		t.Fatalf("rotation on the leader: %v", err)
	}
	waitFor("A drops its cache after the rotation on B", func() bool { return svcA.CacheStats().Entries == 0 })
}

// BenchmarkWorkingKeyFleet is BenchmarkWorkingKey on a followed etcd store:
// the hot path adds the staleness check (an atomic load and a clock read)
// and touches the store no more than on Pebble.
func BenchmarkWorkingKeyFleet(b *testing.B) {
	c := etcdtest.Start(b, etcdtest.Options{Args: []string{"--unsafe-no-fsync"}})
	svc, _, _, _ := newServiceOn(b, openEtcdStore(b, c.Endpoints(), "/ops-fleet/bench/"), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc.Follow(ctx, keystore.DefaultStaleness)
	arn := Import(b, svc, keyspec.Attributes{Usage: keyspec.P0, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key,
		Modes: keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}}, "0123456789ABCDEFFEDCBA9876543210")
	time.Sleep(200 * time.Millisecond) // the import's own changes come back through the watch first
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w, err := svc.Working(arn, fault.SubjectKey, fault.SideNone)
			if err != nil {
				b.Fatal(err)
			}
			w.Release()
		}
	})
}
