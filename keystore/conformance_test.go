package keystore

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"payhsm/internal/etcdtest"
	"payhsm/keystore/kv/etcdkv"
)

// The store's conformance suite: the same tests, unchanged, on every
// engine. TestConformance runs them on Pebble (in memory, crashable) and on
// a real 3-member etcd cluster (internal/etcdtest; each test under its own
// prefix). The engine-level contract is checked by kv/kvtest; this suite
// checks the store on top: keys, aliases, tags, indices and paging, purge,
// meta, record integrity, conditional writes under concurrency (on etcd
// also from two Store instances on one prefix, as two nodes of a fleet)
// and crash/restart (Pebble: a power cut and a reopen; etcd: a member
// SIGKILLed under writes, then restarted).
var conformance = []struct {
	name string
	run  func(t *testing.T, env *storeEnv)
}{
	{"KeyCreateGetUpdate", testKeyCreateGetUpdate},
	{"ListKeysPaging", testListKeysPaging},
	{"BadTokens", testBadTokens},
	{"Aliases", testAliases},
	{"AliasUniquenessConcurrent", testAliasUniquenessConcurrent},
	{"AliasUniquenessAcrossStores", testAliasUniquenessAcrossStores},
	{"PurgeKey", testPurgeKey},
	{"DueForPurge", testDueForPurge},
	{"Tags", testTags},
	{"TagLimitAcrossStores", testTagLimitAcrossStores},
	{"Meta", testMeta},
	{"MetaNames", testMetaNames},
	{"PutMetas", testPutMetas},
	{"CreateKeyMetas", testCreateKeyMetas},
	{"Reopen", testReopen},
	{"Closed", testClosed},
	{"KeyBlockNeverPrinted", testKeyBlockNeverPrinted},
	{"ConcurrentReadersAndWriters", testConcurrentReadersAndWriters},
	{"TamperingIsDetected", testTamperingIsDetected},
	{"BareKeys", testBareKeys},
	{"IntegrityFailureIsLogged", testIntegrityFailureIsLogged},
	{"ReplayAcrossRestartIsNotDetected", testReplayAcrossRestartIsNotDetected},
	{"RacingReaderIsNoReplay", testRacingReaderIsNoReplay},
	{"ConcurrentUpdatesAreNoReplay", testConcurrentUpdatesAreNoReplay},
	{"OwnerMetaIsNotAuthenticated", testOwnerMetaIsNotAuthenticated},
	{"RetiredVersionIsRefused", testRetiredVersionIsRefused},
	{"CrashKeepsAcknowledgedWrites", testCrashKeepsAcknowledgedWrites},
	{"Journal", testJournal},
	{"Stats", testStatsCountsKeys},
}

func TestConformance(t *testing.T) {
	t.Parallel()
	for _, e := range []struct {
		name string
		mk   func(t *testing.T) *storeEnv
	}{{"pebble", pebbleEnv}, {"etcd", etcdEnv}} {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			env := e.mk(t)
			for _, tc := range conformance {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t, env)
				})
			}
		})
	}
}

// storeEnv makes stores on one kind of engine.
type storeEnv struct {
	name string
	// shared: several Store instances may be open on one location at once
	// (an etcd prefix shared by a fleet), as opposed to one process's
	// Pebble directory.
	shared bool
	// fresh returns a new, empty location.
	fresh func(t testing.TB) *storeLoc
	// crashable returns a new, empty location that can crash (storeLoc.crash)
	// without disturbing the other tests' locations.
	crashable func(t testing.TB) *storeLoc
}

// storeLoc is one store's storage: a Pebble directory or an etcd prefix.
type storeLoc struct {
	// open opens a Store on the location with o as given.
	open func(o Options) (*Store, error)
	// crash cuts the storage while stores on it may be writing (Pebble: a
	// power cut, keeping only synced data, into a new location; etcd: the
	// leader SIGKILLed, which restart brings back) and returns the location
	// to reopen, and a function that ends the crash.
	crash func(t testing.TB) (after *storeLoc, restart func())
}

// store opens a fresh store with the test authenticator; it is closed when
// the test ends.
func (env *storeEnv) store(t testing.TB) *Store { return env.fresh(t).store(t) }

// store opens a Store on l with the test authenticator; it is closed when
// the test ends.
func (l *storeLoc) store(t testing.TB) *Store { return l.storeWith(t, opts(Options{})) }

// storeWith opens a Store on l with o as given; it is closed when the test
// ends.
func (l *storeLoc) storeWith(t testing.TB, o Options) *Store {
	t.Helper()
	s, err := l.open(o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// pebbleEnv: Pebble in a crashable memory file system.
func pebbleEnv(*testing.T) *storeEnv {
	fresh := func(testing.TB) *storeLoc { return pebbleLoc(vfs.NewCrashableMem(), "keystore") }
	return &storeEnv{name: "pebble", fresh: fresh, crashable: fresh}
}

func pebbleLoc(fs vfs.FS, dir string) *storeLoc {
	l := &storeLoc{open: func(o Options) (*Store, error) {
		o.FS = fs
		return Open(dir, o)
	}}
	if mem, ok := fs.(*vfs.MemFS); ok {
		l.crash = func(testing.TB) (*storeLoc, func()) {
			return pebbleLoc(mem.CrashClone(vfs.CrashCloneCfg{}), dir), func() {}
		}
	}
	return l
}

var etcdPrefixes atomic.Int64

// etcdEnv: a real 3-member etcd cluster for the whole suite, a prefix per
// store; the crash test gets a cluster of its own, whose leader it kills.
// The members run with --unsafe-no-fsync: the suite kills members with
// SIGKILL, which loses the process but not the page cache, so an
// acknowledged write survives it without fsync, and the suite stays well
// under a minute on a busy 2-core machine. (etcd's own fsync on power loss
// is etcd's to test, not ours.)
func etcdEnv(t *testing.T) *storeEnv {
	args := []string{"--unsafe-no-fsync"}
	shared := etcdtest.Start(t, etcdtest.Options{Args: args})
	loc := func(c *etcdtest.Cluster) *storeLoc {
		prefix := fmt.Sprintf("/keystore-test/%d/", etcdPrefixes.Add(1))
		return &storeLoc{
			open: func(o Options) (*Store, error) {
				e, err := etcdkv.Open(etcdkv.Config{Endpoints: c.Endpoints(), Prefix: prefix, RequestTimeout: 10 * time.Second})
				if err != nil {
					return nil, err
				}
				return OpenEngine(e, o)
			},
		}
	}
	return &storeEnv{
		name: "etcd", shared: true,
		fresh: func(testing.TB) *storeLoc { return loc(shared) },
		crashable: func(t testing.TB) *storeLoc {
			c := etcdtest.Start(t, etcdtest.Options{Args: args})
			l := loc(c)
			l.crash = func(testing.TB) (*storeLoc, func()) {
				i := c.Leader() // the hardest member to lose: writes wait for a new election
				if i < 0 {
					i = 0
				}
				c.Kill(i)
				return l, func() { c.Restart(i) }
			}
			return l
		},
	}
}

// testAliasUniquenessAcrossStores: two Store instances on one shared
// location (two nodes of a fleet) race to create the same alias, by
// CreateAlias and by CreateKey with an alias: exactly one wins, and both
// stores then read the winner.
func testAliasUniquenessAcrossStores(t *testing.T, env *storeEnv) {
	if !env.shared {
		t.Skip(env.name + " is held by one process; AliasUniquenessConcurrent covers one store")
	}
	loc := env.fresh(t)
	s1, s2 := loc.store(t), loc.store(t)
	stores := []*Store{s1, s2}
	for i := range 4 {
		if err := s1.CreateKey(testKey(testID(i)), nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 3 {
		name := fmt.Sprintf("alias/contended-%d", round)
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			errs  = make([]error, 8)
		)
		for i := range errs {
			s := stores[i%2]
			wg.Go(func() {
				<-start
				if i%4 == 3 { // some race through CreateKey
					errs[i] = s.CreateKey(testKey(testID(100*(round+1)+i)), nil, name)
				} else {
					errs[i] = s.CreateAlias(name, testID(i%4))
				}
			})
		}
		close(start)
		wg.Wait()
		winners := 0
		for i, err := range errs {
			if err == nil {
				winners++
			} else if !errors.Is(err, ErrExists) {
				t.Fatalf("round %d, writer %d: %v", round, i, err)
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d winners, want exactly 1", round, winners)
		}
		a1, err1 := s1.GetAlias(name)
		a2, err2 := s2.GetAlias(name)
		if err1 != nil || err2 != nil || a1 != a2 {
			t.Fatalf("round %d: the stores disagree: %+v %v / %+v %v", round, a1, err1, a2, err2)
		}
		if names, err := s2.AliasesOf(a1.KeyID); err != nil || !slices.Contains(names, name) {
			t.Fatalf("round %d: the winner's index entry: %v %v", round, names, err)
		}
	}
	for _, s := range stores {
		checkInvariants(t, s)
	}
}

// testTagLimitAcrossStores: two stores tagging one key concurrently never
// take it past the tag limit (each checks the count and adds in one
// transaction).
func testTagLimitAcrossStores(t *testing.T, env *storeEnv) {
	loc := env.fresh(t)
	stores := []*Store{loc.store(t)}
	if env.shared {
		stores = append(stores, loc.store(t))
	}
	id := testID(1)
	if err := stores[0].CreateKey(testKey(id), nil, ""); err != nil {
		t.Fatal(err)
	}
	const limit = 4
	var wg sync.WaitGroup
	var ok atomic.Int32
	for i := range 10 {
		s := stores[i%len(stores)]
		wg.Go(func() {
			err := s.TagKey(id, []Tag{{fmt.Sprintf("t%d", i), "v"}}, limit)
			switch {
			case err == nil:
				ok.Add(1)
			case !errors.Is(err, ErrTooManyTags):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	tags, _, err := stores[len(stores)-1].ListTags(id, "", 0)
	if err != nil || len(tags) != limit || ok.Load() != limit {
		t.Fatalf("%d tags (%d acknowledged), limit %d: %v", len(tags), ok.Load(), limit, err)
	}
}

// testCrashKeepsAcknowledgedWrites: writers create and update keys (with an
// alias and a tag each) while the storage crashes: on Pebble a power cut
// (only what was synced survives), on etcd a member SIGKILLed. Every write
// acknowledged before the crash is there afterwards, whole; on etcd the
// writers also go on through the crash (a write may fail while the client
// moves to another member, and none that was acknowledged is lost), and the
// killed member rejoins.
func testCrashKeepsAcknowledgedWrites(t *testing.T, env *storeEnv) {
	loc := env.crashable(t)
	s := loc.store(t)
	var (
		mu     sync.Mutex
		acked  []string
		failed int
		stop   = make(chan struct{})
		wg     sync.WaitGroup
	)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("c%d%014d", w, i)
				k := testKey(id)
				k.Enabled = false
				err := s.CreateKey(k, []Tag{{"id", id}}, "alias/"+id)
				if err == nil {
					_, err = s.UpdateKey(id, func(k *Key) error { k.Enabled = true; return nil })
				}
				mu.Lock()
				if err == nil {
					acked = append(acked, id)
				} else {
					failed++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	ackedNow := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(acked)
	}
	waitFor := func(n int) {
		deadline := time.Now().Add(30 * time.Second)
		for len(ackedNow()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d writes acknowledged (%d failed)", len(ackedNow()), failed)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(20)
	before := ackedNow()
	after, restart := loc.crash(t)
	waitFor(len(before) + 20) // the writers go on (Pebble: on the old store, unaffected)
	restart()
	waitFor(len(ackedNow()) + 10)
	close(stop)
	wg.Wait()

	check := after.store(t)
	want := before
	if env.shared {
		want = ackedNow() // the same storage: everything acknowledged, before, during and after
	}
	for _, id := range want {
		k, err := check.GetKey(id)
		if err != nil {
			t.Fatalf("acknowledged key %s lost: %v", id, err)
		}
		if !k.Enabled || k.Revision != 2 {
			t.Errorf("key %s: the acknowledged update is lost (revision %d)", id, k.Revision)
		}
		if a, err := check.GetAlias("alias/" + id); err != nil || a.KeyID != id {
			t.Errorf("alias of %s: %+v %v", id, a, err)
		}
		if tags, _, err := check.ListTags(id, "", 0); err != nil || len(tags) != 1 {
			t.Errorf("tags of %s: %v %v", id, tags, err)
		}
	}
	checkInvariants(t, check)
	t.Logf("%d writes acknowledged (%d checked after the crash), %d failed during it", len(ackedNow()), len(want), failed)
}

// testJournal: the freshness journal on the engine. Concurrent writers of
// one process each commit their own entry (the head is read inside each
// write transaction), checkpoints fold them into the buckets (on etcd, whose
// transactions hold at most 128 operations by default, 200 entries take
// several checkpoints: each folds what fits), and a reopen with the anchor
// at the journal's end checks out, while one with a later anchor is refused
// as a rollback.
func testJournal(t *testing.T, env *storeEnv) {
	loc := env.fresh(t)
	auth := newTestAuth()
	open := func(anchor uint64) (*Store, error) {
		t.Helper()
		s, err := loc.open(Options{Authenticator: auth, Namespace: "default"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		_, err = s.StartJournal(JournalOptions{Writer: testWriter, Anchor: anchor, CheckpointEntries: 1 << 20, CheckpointInterval: time.Hour})
		return s, err
	}
	s, err := open(0)
	if err != nil {
		t.Fatal(err)
	}
	const n, writers = 200, 8
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := g; i < n; i += writers {
				if err := s.CreateKey(testKey(testID(i)), nil, ""); err != nil {
					t.Errorf("CreateKey %d: %v", i, err)
				}
			}
		})
	}
	wg.Wait()
	seq := s.JournalSeq()
	if s.optimistic {
		// Grouped writes (group.go): one entry for each group of up to
		// maxGroup creations.
		if seq < (n+maxGroup-1)/maxGroup || seq > n {
			t.Fatalf("JournalSeq after %d grouped writes = %d", n, seq)
		}
	} else if seq != n {
		t.Fatalf("JournalSeq after %d writes = %d", n, seq)
	}
	folded := func() bool {
		s.fr.mu.Lock()
		defer s.fr.mu.Unlock()
		return s.fr.head.ckptSeq == s.fr.head.lastSeq
	}
	runs := 0
	for ; !folded() && runs < 20; runs++ {
		if err := s.Checkpoint(); err != nil {
			t.Fatalf("checkpoint %d: %v", runs+1, err)
		}
	}
	if !folded() {
		t.Fatalf("%d checkpoints did not fold %d entries", runs, n)
	}
	if lim := s.eng.Limits().MaxOps; lim > 0 && uint64(lim) < seq && runs < 2 {
		t.Errorf("%d entries folded in %d checkpoint under a limit of %d operations", seq, runs, lim)
	}
	if _, err := s.UpdateKey(testID(3), func(k *Key) error { k.Enabled = !k.Enabled; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := open(seq + 1)
	if err != nil {
		t.Fatalf("reopen with the anchor at the journal's end: %v", err)
	}
	rep, err := r.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Failures) != 0 || !rep.Journal.Checked {
		t.Errorf("Verify after the reopen: failures %v, journal %+v", rep.Failures, rep.Journal)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := open(seq + 2); !errors.Is(err, ErrRolledBack) {
		t.Errorf("reopen with an anchor past the journal: %v, want ErrRolledBack", err)
	}
}
