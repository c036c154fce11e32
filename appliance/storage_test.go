package appliance

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"payhsm/hsm/softhsm"
	"payhsm/internal/etcdtest"
)

// TestSecureDataDir: looser modes left by an older release or a umask of
// 022 are tightened (through a symbolic link to the directory too), private
// ones are left alone, and a missing directory is made private.
func TestSecureDataDir(t *testing.T) {
	t.Parallel()
	real := filepath.Join(t.TempDir(), "real")
	for _, d := range []string{real, filepath.Join(real, "keystore")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]fs.FileMode{"keystore/000002.log": 0o644, "keystore/LOCK": 0o640, "credentials": 0o600, "audit.log": 0o666}
	for name, mode := range files {
		p := filepath.Join(real, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(real, "keystore"), 0o755); err != nil { //nolint:gosec // deliberately loose: SecureDataDir must tighten it
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "data")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	fixed, err := SecureDataDir(link, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	for i := range fixed {
		fixed[i], _ = filepath.Rel(real, fixed[i])
	}
	slices.Sort(fixed)
	if want := []string{"audit.log", "keystore", "keystore/000002.log", "keystore/LOCK"}; !slices.Equal(fixed, want) {
		t.Errorf("tightened %v, want %v", fixed, want)
	}
	err = filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, _ := d.Info()
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: %04o", p, fi.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(t.TempDir(), "new", "data")
	if _, err := SecureDataDir(fresh, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("new data directory: %v %v", fi.Mode(), err)
	}
}

// TestStoreOnEtcd: with keystore.engine etcd the appliance opens its store
// on a prefix of a real 3-member cluster: a new prefix is a new store, a
// second start finds it; a dev appliance (SoftHSM2 token, custody's records
// in etcd) opens, and opens again. An unreachable cluster and a prefix that
// holds something else are refused at start with one clear line.
func TestStoreOnEtcd(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Args: []string{"--unsafe-no-fsync"}})
	cfg := func(dir, prefix string) *Config {
		cfg := &Config{DataDir: dir, Keystore: KeystoreConfig{Engine: EngineEtcd, Endpoints: c.Endpoints(), Prefix: prefix}, Fleet: FleetConfig{Node: "n1"}}
		cfg.Defaults()
		if err := cfg.Validate(true); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	log := zap.NewNop()

	t.Run("new and existing", func(t *testing.T) {
		cf := cfg(t.TempDir(), "/payhsm/new/")
		cf.Fleet.Node = "" // the store's own newness; a node's is below
		for i, wantNew := range []bool{true, false} {
			fresh, err := storeIsNew(cf, log)
			if err != nil || fresh != wantNew {
				t.Fatalf("start %d: storeIsNew = %v %v, want %v", i, fresh, err, wantNew)
			}
			s, err := openStore(cf, log)
			if err != nil {
				t.Fatal(err)
			}
			if s.Created() != wantNew || !strings.Contains(s.Engine(), "etcd prefix /payhsm/new/") {
				t.Errorf("start %d: Created %v, engine %q", i, s.Created(), s.Engine())
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := os.Stat(cf.KeystoreDir()); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("an etcd appliance made a Pebble directory: %v", err)
		}
	})

	t.Run("dev appliance", func(t *testing.T) {
		if _, err := os.Stat(softhsm.DefaultModule); err != nil {
			t.Skipf("SoftHSM2 is not installed: %v", err)
		}
		cf := cfg(t.TempDir(), "/payhsm/dev/")
		for i := range 2 {
			app, err := Open(cf, true, true, log)
			if err != nil {
				t.Fatalf("start %d: %v", i, err)
			}
			if i == 0 {
				if _, err := app.Custody.CreateProfile("default"); err != nil {
					t.Fatal(err)
				}
			} else if names, err := app.Store.MetaNames("custody/node/n1/"); err != nil || len(names) < 2 {
				t.Errorf("custody's records in etcd: %v %v", names, err)
			}
			if err := app.Close(); err != nil {
				t.Fatal(err)
			}
		}
		// The store is not new to node n1, which holds its records, but
		// is to another node.
		if fresh, err := storeIsNew(cf, log); err != nil || fresh {
			t.Errorf("storeIsNew for node n1 = %v %v, want false", fresh, err)
		}
		other := *cf
		other.Fleet.Node = "n2"
		if fresh, err := storeIsNew(&other, log); err != nil || !fresh {
			t.Errorf("storeIsNew for node n2 = %v %v, want true", fresh, err)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		cf := cfg(t.TempDir(), "/payhsm/x/")
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := "http://" + l.Addr().String()
		_ = l.Close()
		cf.Keystore.Endpoints = []string{dead}
		cf.Keystore.DialTimeout, cf.Keystore.RequestTimeout = Duration(time.Second), Duration(time.Second)
		start := time.Now()
		_, err = openStore(cf, log)
		if err == nil || !strings.Contains(err.Error(), "did not answer") || !strings.Contains(err.Error(), dead) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("unreachable cluster: %v", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("refused after %v", d)
		}
		t.Logf("refused: %v", err)
	})

	t.Run("prefix of something else", func(t *testing.T) {
		cf := cfg(t.TempDir(), "/other-app/")
		e, err := openEtcd(cf, log)
		if err != nil {
			t.Fatal(err)
		}
		tx, _ := e.Begin()
		if err := errors.Join(tx.Set([]byte("config"), []byte("x")), tx.Commit()); err != nil {
			t.Fatal(err)
		}
		_ = e.Close()
		_, err = openStore(cf, log)
		if err == nil || !strings.Contains(err.Error(), "records but no format record") {
			t.Fatalf("a prefix holding another application's keys: %v", err)
		}
	})
}
