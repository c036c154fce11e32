package appliance

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"payhsm/hsm/custody"
	"payhsm/keystore"
	"payhsm/keystore/kv/etcdkv"
)

// The data directory holds the key store, the audit log, the admin socket
// and, in --dev mode, the SoftHSM2 token and its PINs: nobody but the
// appliance's user may read or write any of it. Whatever the umask, every
// command that opens the appliance sets its own to 077 first, so what it
// creates is 0700 (directories) or 0600 (files); and it tightens what is
// already there (written by an older release, another tool, or a restored
// backup), logging every path it changed. A path it cannot tighten (owned
// by another user) is refused with the command to run.

// privateUmask makes every file and directory the process creates private
// to its user.
const privateUmask = 0o077

// SecureDataDir creates dir (mode 0700) if absent, sets the process umask to
// 077, and removes group and other permissions from dir and everything in
// it (symbolic links are not followed). It returns the paths it tightened.
func SecureDataDir(dir string, log *zap.Logger) ([]string, error) {
	unix.Umask(privateUmask)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	root, err := filepath.EvalSymlinks(dir) // the directory itself may be a link to where the data lives
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	// The walk and the chmods go through an os.Root: a path swapped for a
	// symbolic link after the walk saw it cannot lead a chmod out of the
	// data directory.
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	var fixed []string
	err = fs.WalkDir(r.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("data directory: %s: %w", filepath.Join(root, rel), err)
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("data directory: %s: %w", filepath.Join(root, rel), err)
		}
		mode := info.Mode().Perm()
		if mode&privateUmask == 0 {
			return nil
		}
		want := mode &^ privateUmask
		path := filepath.Join(root, rel)
		if err := r.Chmod(rel, want); err != nil {
			return fmt.Errorf("data directory: %s has mode %04o, which lets other users in, and cannot be tightened (%w); run: chmod -R go-rwx %s", path, mode, err, dir)
		}
		log.Warn("tightened a data directory path that other users could reach", zap.String("path", path),
			zap.String("from", fmt.Sprintf("%04o", mode)), zap.String("to", fmt.Sprintf("%04o", want)))
		fixed = append(fixed, path)
		return nil
	})
	return fixed, errors.Join(err, r.Close())
}

// openStore opens the key store on the configured engine: Pebble in
// DATA/keystore, or a prefix of an etcd cluster, which must answer within
// its timeouts (an unreachable cluster, or one without quorum, is refused
// here with one line naming the endpoints). A prefix that holds records
// but no format record (not a payhsm store) is refused by keystore.
func openStore(cfg *Config, log *zap.Logger) (*keystore.Store, error) {
	if cfg.Keystore.Engine != EngineEtcd {
		return keystore.Open(cfg.KeystoreDir(), keystore.Options{Logger: log, CacheSize: int64(cfg.Keystore.CacheMB) << 20})
	}
	e, err := openEtcd(cfg, log)
	if err != nil {
		return nil, err
	}
	return keystore.OpenEngine(e, keystore.Options{Logger: log, NoBareKeyMarks: !cfg.Keystore.BareKeyMarks})
}

// openEtcd connects to the configured etcd cluster.
func openEtcd(cfg *Config, log *zap.Logger) (*etcdkv.Engine, error) {
	k := cfg.Keystore
	e, err := etcdkv.Open(etcdkv.Config{
		Endpoints:       k.Endpoints,
		Prefix:          k.Prefix,
		TLS:             etcdkv.TLSFiles{CertFile: k.TLS.Cert, KeyFile: k.TLS.Key, CAFile: k.TLS.CA},
		DialTimeout:     time.Duration(k.DialTimeout),
		RequestTimeout:  time.Duration(k.RequestTimeout),
		MaxTxnOps:       k.MaxTxnOps,
		MaxRequestBytes: k.MaxRequestBytes,
		Logger:          log.Named("etcd"),
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// storeIsNew reports whether the configured key store does not exist yet
// (no Pebble directory; an etcd prefix holding no key), without creating
// it.
func storeIsNew(cfg *Config, log *zap.Logger) (bool, error) {
	if cfg.Keystore.Engine != EngineEtcd {
		_, err := os.Stat(cfg.KeystoreDir())
		if errors.Is(err, fs.ErrNotExist) {
			return true, nil
		}
		return false, err
	}
	e, err := openEtcd(cfg, log)
	if err != nil {
		return false, err
	}
	if cfg.Fleet.Node != "" {
		// A fleet's store is new to a node that has no region main key
		// record in it yet.
		_, found, err := e.Get(keystore.MetaEngineKey(custody.RegionRecordName(cfg.Fleet.Node)))
		return !found, errors.Join(err, e.Close())
	}
	empty := true
	err = e.Scan(nil, nil, func(_, _ []byte) (bool, error) { empty = false; return false, nil })
	return empty, errors.Join(err, e.Close())
}

// OpenFleetEngine connects to the configured etcd cluster for what a fleet
// node keeps beside the key store (its heartbeat; docs/fleet.md). The
// caller closes it.
func OpenFleetEngine(cfg *Config, log *zap.Logger) (*etcdkv.Engine, error) {
	if cfg.Keystore.Engine != EngineEtcd {
		return nil, errors.New("a fleet's heartbeats need keystore.engine etcd")
	}
	return openEtcd(cfg, log)
}

// upgradeStore makes the key store usable: it gives it custody's record
// keys, refuses a format 1 store on a token that has seen a format 2 one (a
// downgraded or swapped store: migrating it would authenticate whatever it
// says), migrates a format 1 store (resumable; see keystore.Migrate) when
// upgrade is set, and marks the token once the store is format 2.
func upgradeStore(store *keystore.Store, cust *custody.Custodian, namespace string, upgrade bool, log *zap.Logger) error {
	if err := store.SetAuthenticator(cust, namespace); err != nil {
		return err
	}
	if store.Format() < keystore.FormatVersion {
		marked, err := cust.StoreFormatMarked()
		if err != nil {
			return err
		}
		if marked {
			return fmt.Errorf("keystore: the store is format %d, but this appliance's token has held a format %d store: "+
				"the store was replaced by an older one or downgraded; refusing to upgrade it (that would authenticate whatever it holds). "+
				"Restore the current store, or initialize a new appliance", store.Format(), keystore.FormatVersion)
		}
		if !upgrade {
			return fmt.Errorf("keystore: the store is format %d: start the daemon once to upgrade it to format %d", store.Format(), keystore.FormatVersion)
		}
		last := time.Now()
		rep, err := store.Migrate(func(done, total int) {
			log.Debug("keystore migration progress", zap.Int("done", done), zap.Int("records", total))
			if time.Since(last) > 10*time.Second {
				last = time.Now()
				log.Info("keystore migration progress", zap.Int("done", done), zap.Int("records", total))
			}
		})
		if err != nil {
			return fmt.Errorf("keystore: upgrade to format %d (it resumes where it stopped when started again): %w", keystore.FormatVersion, err)
		}
		if rep != nil && rep.Left > 0 {
			log.Error("records that could not be upgraded were left as they were; they fail their integrity check (payhsm keystore verify lists them)",
				zap.Int("records", rep.Left))
		}
	}
	if !upgrade {
		return nil
	}
	return cust.MarkStoreFormat()
}
