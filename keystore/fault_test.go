package keystore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"payhsm/fault"
)

// Storage faults, in memory: disk errors injected with Pebble's errorfs, and
// power cuts with vfs.NewCrashableMem, whose CrashClone keeps exactly what was
// synced (or, with UnsyncedDataPercent, also some or all of what was written
// but not synced, in 4 KiB blocks).

const faultDir = "keystore"

// isWAL reports whether op is on a write-ahead log file.
func isWAL(op errorfs.Op) bool { return strings.HasSuffix(op.Path, ".log") }

// walFaults injects errorfs.ErrInjected into the given operations on WAL
// files while it is on.
func walFaults(kinds ...errorfs.OpKind) *errorfs.Toggle {
	return &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if isWAL(op) && slices.Contains(kinds, op.Kind) {
			return errorfs.ErrInjected
		}
		return nil
	})}
}

// checkInvariants checks every record and the invariants the package
// comment lists (alias records and their "x/" index entries match, purge
// index entries match DELETE_PENDING keys, tags and index entries belong to
// keys that exist) with Verify, which must find nothing.
func checkInvariants(t *testing.T, s *Store) {
	t.Helper()
	rep, err := s.Verify()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Failures {
		t.Errorf("%s record %s: %s", f.Type, f.Name, f.Reason)
	}
}

// seed writes the records every fault case starts from, all acknowledged.
func seed(t *testing.T, s *Store) {
	t.Helper()
	if err := s.CreateKey(testKey(testID(1)), []Tag{{"env", "test"}}, "alias/a"); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMeta("m", []byte("v1")); err != nil {
		t.Fatal(err)
	}
}

// checkSeed checks the seeded records, or what the case's write left of them.
func checkSeed(t *testing.T, s *Store, purged bool) {
	t.Helper()
	if purged {
		return
	}
	if _, err := s.GetKey(testID(1)); err != nil {
		t.Errorf("seeded key lost: %v", err)
	}
	if a, err := s.GetAlias("alias/a"); err != nil || a.KeyID != testID(1) {
		t.Errorf("seeded alias lost: %+v %v", a, err)
	}
	if v, err := s.GetMeta("m"); err != nil || len(v) != 2 {
		t.Errorf("seeded meta lost: %q %v", v, err)
	}
}

// all reports whether the conditions are all true (the write is there) or
// all false (it is not); anything else is a half-written batch.
func all(what string, conds ...bool) (bool, error) {
	n := 0
	for _, c := range conds {
		if c {
			n++
		}
	}
	if n != 0 && n != len(conds) {
		return false, fmt.Errorf("%s is half written: %v", what, conds)
	}
	return n > 0, nil
}

var deadline = time.Unix(1_900_000_000, 0)

// writeCase is one write under fault and how to see whether it landed.
type writeCase struct {
	name   string
	write  func(s *Store) error
	landed func(s *Store) (bool, error) // error when half of it landed
	purges bool                         // the write removes the seeded key
}

var writeCases = []writeCase{
	{"create key", func(s *Store) error {
		return s.CreateKey(testKey(testID(2)), []Tag{{"t", "v"}}, "alias/b")
	}, func(s *Store) (bool, error) {
		_, kerr := s.GetKey(testID(2))
		a, aerr := s.GetAlias("alias/b")
		tags, _, _ := s.ListTags(testID(2), "", 0)
		return all("CreateKey", kerr == nil, aerr == nil && a.KeyID == testID(2), len(tags) == 1)
	}, false},
	{"update key to DELETE_PENDING", func(s *Store) error {
		_, err := s.UpdateKey(testID(1), func(k *Key) error {
			k.State, k.DeletePending = stateDeletePending, deadline
			return nil
		})
		return err
	}, func(s *Store) (bool, error) {
		k, err := s.GetKey(testID(1))
		if err != nil {
			return false, err
		}
		due, err := s.DueForPurge(deadline)
		if err != nil {
			return false, err
		}
		return all("UpdateKey", k.Revision == 2, k.State == stateDeletePending, slices.Contains(due, testID(1)))
	}, false},
	{"create alias", func(s *Store) error { return s.CreateAlias("alias/c", testID(1)) }, func(s *Store) (bool, error) {
		a, err := s.GetAlias("alias/c")
		names, nerr := s.AliasesOf(testID(1))
		if nerr != nil {
			return false, nerr
		}
		return all("CreateAlias", err == nil && a.KeyID == testID(1), slices.Contains(names, "alias/c"))
	}, false},
	{"tag key", func(s *Store) error { return s.TagKey(testID(1), []Tag{{"x", "1"}, {"y", "2"}}, 0) }, func(s *Store) (bool, error) {
		tags, _, err := s.ListTags(testID(1), "", 0)
		if err != nil {
			return false, err
		}
		return all("TagKey", slices.Contains(tags, Tag{"x", "1"}), slices.Contains(tags, Tag{"y", "2"}))
	}, false},
	{"purge key", func(s *Store) error { return s.PurgeKey(testID(1)) }, func(s *Store) (bool, error) {
		_, kerr := s.GetKey(testID(1))
		_, aerr := s.GetAlias("alias/a")
		tags, _, _ := s.ListTags(testID(1), "", 0)
		return all("PurgeKey", errors.Is(kerr, ErrNotFound), errors.Is(aerr, ErrNotFound), len(tags) == 0)
	}, true},
	{"put meta", func(s *Store) error { return s.PutMeta("m", []byte("v2")) }, func(s *Store) (bool, error) {
		v, err := s.GetMeta("m")
		return string(v) == "v2", err
	}, false},
	{"put metas", func(s *Store) error {
		return s.PutMetas(map[string][]byte{"m": []byte("v2"), "n1": []byte("x")}, []string{"absent"})
	}, func(s *Store) (bool, error) {
		v, _ := s.GetMeta("m")
		_, e1 := s.GetMeta("n1")
		return all("PutMetas", string(v) == "v2", e1 == nil)
	}, false},
}

// TestWriteFaults: a WAL write or sync error makes the call fail with
// ErrFailed (a fault.Unavailable), never a panic or an exit; the store then
// refuses every call; and after a restart — a power cut (only synced data
// kept) or a process restart (all written data kept) — the store opens, the
// acknowledged records are there, and the failed batch is wholly there or
// wholly absent: absent unless its bytes reached the file before the sync
// failed and the restart kept them.
func TestWriteFaults(t *testing.T) {
	t.Parallel()
	faults := []struct {
		name  string
		kinds []errorfs.OpKind
		// landsOnRestart: the batch's bytes are in the file (unsynced): a
		// restart that keeps unsynced data recovers it.
		landsOnRestart bool
	}{
		{"WAL write", []errorfs.OpKind{errorfs.OpFileWrite, errorfs.OpFileWriteAt}, false},
		{"WAL sync", []errorfs.OpKind{errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo}, true},
	}
	for _, f := range faults {
		for _, wc := range writeCases {
			t.Run(f.name+"/"+wc.name, func(t *testing.T) {
				t.Parallel()
				mem := vfs.NewCrashableMem()
				inj := walFaults(f.kinds...)
				s, err := Open(faultDir, opts(Options{FS: errorfs.Wrap(mem, inj)}))
				if err != nil {
					t.Fatal(err)
				}
				seed(t, s)

				inj.On()
				err = wc.write(s)
				if !errors.Is(err, ErrFailed) || fault.KindOf(err) != fault.Unavailable {
					t.Fatalf("write under a %s fault: %v", f.name, err)
				}
				if !errors.Is(s.Failed(), ErrFailed) {
					t.Errorf("Failed() = %v", s.Failed())
				}
				for name, err := range map[string]error{
					"GetKey":    func() error { _, err := s.GetKey(testID(1)); return err }(),
					"ListKeys":  func() error { _, _, err := s.ListKeys(nil, "", 0); return err }(),
					"GetMeta":   func() error { _, err := s.GetMeta("m"); return err }(),
					"CreateKey": s.CreateKey(testKey(testID(9)), nil, ""),
				} {
					if !errors.Is(err, ErrFailed) {
						t.Errorf("%s on a failed store: %v", name, err)
					}
				}
				closed := make(chan error, 1)
				go func() { closed <- s.Close() }()
				select {
				case err := <-closed:
					t.Logf("Close of the failed store: %v", err)
				case <-time.After(30 * time.Second):
					t.Fatal("Close of a failed store hangs")
				}

				for _, r := range []struct {
					name string
					cfg  vfs.CrashCloneCfg
					want bool
				}{
					{"after power loss", vfs.CrashCloneCfg{}, false},
					{"after process restart", vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(1, 1))}, f.landsOnRestart},
				} {
					s := openTest(t, mem.CrashClone(r.cfg), faultDir)
					checkInvariants(t, s)
					landed, err := wc.landed(s)
					if err != nil {
						t.Errorf("%s: %v", r.name, err)
					} else if landed != r.want {
						t.Errorf("%s: the failed write landed=%v, want %v", r.name, landed, r.want)
					}
					checkSeed(t, s, wc.purges && landed)
				}
			})
		}
	}
}

// TestOpenFaults: a store that cannot be created or whose format record
// cannot be written fails Open with an error, and leaves nothing a later
// Open refuses.
func TestOpenFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		inj  errorfs.Injector
	}{
		{"every write", errorfs.ErrInjected.If(errorfs.Writes)},
		{"WAL sync", errorfs.InjectorFunc(func(op errorfs.Op) error {
			if isWAL(op) && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) {
				return errorfs.ErrInjected
			}
			return nil
		})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mem := vfs.NewCrashableMem()
			if s, err := Open(faultDir, opts(Options{FS: errorfs.Wrap(mem, tc.inj)})); err == nil {
				closeT(t, s)
				t.Fatal("Open succeeded")
			} else {
				t.Logf("Open: %v", err)
			}
			s := openTest(t, mem.CrashClone(vfs.CrashCloneCfg{}), faultDir)
			checkInvariants(t, s)
		})
	}
}

// TestPowerLossKeepsAcknowledgedWrites: writers create and update keys
// concurrently; power is cut at several moments (CrashClone, with none, half
// or all of the unsynced data surviving). Every write acknowledged before the
// cut is there after it, and every record that is there is whole: a key with
// its alias and tag (one batch), at revision 1 or 2.
func TestPowerLossKeepsAcknowledgedWrites(t *testing.T) {
	t.Parallel()
	mem := vfs.NewCrashableMem()
	s, err := Open(faultDir, opts(Options{FS: mem}))
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, s)

	var (
		mu    sync.Mutex
		acked []string
		stop  = make(chan struct{})
		wg    sync.WaitGroup
		errs  = make(chan error, 4)
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
				if err := s.CreateKey(k, []Tag{{"id", id}}, "alias/"+id); err != nil {
					errs <- err
					return
				}
				if _, err := s.UpdateKey(id, func(k *Key) error { k.Enabled = true; return nil }); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		})
	}
	ackedNow := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(acked)
	}
	type cut struct {
		acked []string
		fs    *vfs.MemFS
		cfg   string
	}
	var cuts []cut
	rng := rand.New(rand.NewPCG(7, 7))
	for _, at := range []int{20, 100, 250} {
		for len(ackedNow()) < at {
			select {
			case err := <-errs:
				t.Fatal(err)
			case <-time.After(time.Millisecond):
			}
		}
		before := ackedNow() // acknowledged before the cut begins
		for _, pct := range []int{0, 50, 100} {
			cuts = append(cuts, cut{before, mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rng}),
				fmt.Sprintf("cut after %d acks, %d%% of unsynced data kept", at, pct)})
		}
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}

	for _, c := range cuts {
		s := openTest(t, c.fs, faultDir)
		for _, id := range c.acked {
			k, err := s.GetKey(id)
			if err != nil {
				t.Fatalf("%s: acknowledged key %s lost: %v", c.cfg, id, err)
			}
			if !k.Enabled || k.Revision != 2 {
				t.Errorf("%s: key %s: the acknowledged update is lost (revision %d)", c.cfg, id, k.Revision)
			}
		}
		keys, _, err := s.ListKeys(nil, "", 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			a, aerr := s.GetAlias("alias/" + k.ID)
			tags, _, terr := s.ListTags(k.ID, "", 0)
			if aerr != nil || a.KeyID != k.ID || terr != nil || len(tags) != 1 || k.Revision < 1 || k.Revision > 2 {
				t.Errorf("%s: key %s is not whole: alias %+v %v, tags %v %v, revision %d", c.cfg, k.ID, a, aerr, tags, terr, k.Revision)
			}
		}
		checkInvariants(t, s)
		if len(keys) < len(c.acked) {
			t.Fatalf("%s: %d keys, %d acknowledged", c.cfg, len(keys), len(c.acked))
		}
		t.Logf("%s: %d acknowledged, %d present", c.cfg, len(c.acked), len(keys))
	}
}

// TestPowerLossDropsUnacknowledgedBatch holds a large batch (a key with many
// tags, spanning many 4 KiB blocks of the WAL) after its bytes are written
// but before its WAL sync returns, and cuts power there. Whatever part of the
// unsynced blocks survives, the batch is wholly there or wholly absent; with
// nothing unsynced kept it is absent, with everything kept it is there.
func TestPowerLossDropsUnacknowledgedBatch(t *testing.T) {
	t.Parallel()
	mem := vfs.NewCrashableMem()
	var (
		armed   sync.Mutex
		isArmed bool
		entered = make(chan struct{}, 1)
		release = make(chan struct{})
	)
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	hold := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !isWAL(op) || (op.Kind != errorfs.OpFileSync && op.Kind != errorfs.OpFileSyncData && op.Kind != errorfs.OpFileSyncTo) {
			return nil
		}
		armed.Lock()
		a := isArmed
		isArmed = false // hold one sync only
		armed.Unlock()
		if a {
			entered <- struct{}{}
			<-release
		}
		return nil
	})
	s, err := Open(faultDir, opts(Options{FS: errorfs.Wrap(mem, hold)}))
	if err != nil {
		t.Fatal(err)
	}
	defer closeT(t, s)
	seed(t, s)

	big := testKey(testID(2))
	var tags []Tag
	for i := range 40 {
		tags = append(tags, Tag{fmt.Sprintf("tag-%02d", i), strings.Repeat(string(rune('a'+i%26)), 1000)})
	}
	armed.Lock()
	isArmed = true
	armed.Unlock()
	done := make(chan error, 1)
	go func() { done <- s.CreateKey(big, tags, "alias/big") }()
	select {
	case <-entered:
	case err := <-done:
		t.Fatalf("CreateKey returned before its WAL sync: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the WAL sync never came")
	}
	landed := func(s *Store) (bool, error) {
		_, kerr := s.GetKey(testID(2))
		a, aerr := s.GetAlias("alias/big")
		got, _, _ := s.ListTags(testID(2), "", 100)
		return all("the held batch", kerr == nil, aerr == nil && a.KeyID == testID(2), len(got) == len(tags))
	}
	type crash struct {
		name string
		fs   *vfs.MemFS
		want int // 0 absent, 1 present, -1 either
	}
	crashes := []crash{
		{"nothing unsynced kept", mem.CrashClone(vfs.CrashCloneCfg{}), 0},
		{"everything kept", mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(1, 2))}), 1},
	}
	for seed := range uint64(20) {
		crashes = append(crashes, crash{fmt.Sprintf("half the unsynced blocks kept (seed %d)", seed),
			mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(seed, 3))}), -1})
	}
	unblock()
	if err := <-done; err != nil {
		t.Fatalf("CreateKey after the sync was released: %v", err)
	}
	if ok, err := landed(s); !ok || err != nil {
		t.Fatalf("the acknowledged batch is not in the live store: %v", err)
	}

	counts := map[bool]int{}
	for _, c := range crashes {
		cs := openTest(t, c.fs, faultDir)
		checkInvariants(t, cs)
		checkSeed(t, cs, false)
		ok, err := landed(cs)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		counts[ok]++
		if c.want >= 0 && ok != (c.want == 1) {
			t.Errorf("%s: batch present=%v, want %v", c.name, ok, c.want == 1)
		}
	}
	t.Logf("held batch after a cut: present %d times, absent %d times", counts[true], counts[false])
}

// TestWriteFaultsUnderConcurrentWriters: many writers share WAL syncs (group
// commit) when the disk starts refusing WAL writes or syncs. Every writer
// ends with success or ErrFailed (never a panic, never a hang); every write
// acknowledged before the failure survives a power cut; and no write that
// was refused is acknowledged later.
func TestWriteFaultsUnderConcurrentWriters(t *testing.T) {
	t.Parallel()
	for _, f := range []struct {
		name  string
		kinds []errorfs.OpKind
	}{
		{"WAL write", []errorfs.OpKind{errorfs.OpFileWrite, errorfs.OpFileWriteAt}},
		{"WAL sync", []errorfs.OpKind{errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo}},
	} {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			mem := vfs.NewCrashableMem()
			inj := walFaults(f.kinds...)
			s, err := Open(faultDir, opts(Options{FS: errorfs.Wrap(mem, inj)}))
			if err != nil {
				t.Fatal(err)
			}
			const writers = 16
			var (
				mu    sync.Mutex
				acked []string
				wg    sync.WaitGroup
			)
			ackedNow := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
			// Few enough writes that Pebble's first memtable (256 KiB) does
			// not fill: a WAL failure during a memtable rotation ends the
			// process (Pebble panics there with its lock released), with
			// group commit or without. Writers wait at beforeFault
			// acknowledged writes until the fault is on, so that how many
			// land first does not depend on how fast they are.
			const beforeFault = 32
			armed := make(chan struct{})
			for w := range writers {
				wg.Go(func() {
					for i := 0; ; i++ {
						if ackedNow() >= beforeFault {
							<-armed
						}
						id := fmt.Sprintf("g%02d%013d", w, i)
						err := s.CreateKey(testKey(id), nil, "alias/"+id)
						if err != nil {
							if !errors.Is(err, ErrFailed) {
								t.Errorf("writer %d: %v", w, err)
							}
							return
						}
						mu.Lock()
						acked = append(acked, id)
						mu.Unlock()
					}
				})
			}
			for ackedNow() < beforeFault {
				time.Sleep(100 * time.Microsecond)
			}
			inj.On()
			close(armed)
			finished := make(chan struct{})
			go func() { wg.Wait(); close(finished) }()
			select {
			case <-finished:
			case <-time.After(30 * time.Second):
				t.Fatal("writers hang after the fault")
			}
			if !errors.Is(s.Failed(), ErrFailed) {
				t.Fatalf("Failed() = %v", s.Failed())
			}
			_ = s.Close()
			cs := openTest(t, mem.CrashClone(vfs.CrashCloneCfg{}), faultDir)
			for _, id := range acked {
				if _, err := cs.GetKey(id); err != nil {
					t.Fatalf("acknowledged key %s lost: %v", id, err)
				}
			}
			checkInvariants(t, cs)
			t.Logf("%d writes acknowledged before the fault, all present after a power cut", len(acked))
		})
	}
}
