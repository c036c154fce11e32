// Package appliance owns what every payhsm command that opens an appliance
// shares: the configuration file and its flags, the layout of the data
// directory and its permissions, and opening the appliance — the key store,
// main-key custody in the PKCS#11 token (provisioned with SoftHSM2 in --dev
// mode), the store's record authentication and its upgrade from an older
// format (storage.go), the store's journal and its anchor in the token
// (journal.go), and the SigV4 credentials. The daemon (serve), the
// offline ceremonies and payhsm keystore verify all use it, so none imports
// another.
package appliance

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"payhsm/appliance/diskguard"
	"payhsm/audit"
	"payhsm/hsm/custody"
	"payhsm/hsm/softhsm"
	"payhsm/keystore"
)

// DevTokenLabel is the label of the SoftHSM2 token --dev provisions.
const DevTokenLabel = "payhsm-dev" //nolint:gosec // G101: a PKCS#11 token's label (public, like a volume name), not a credential.

// The data directory's layout.
const (
	// KeystoreDirName is the Pebble key store.
	KeystoreDirName = "keystore"
	// AdminSocketName is the unix socket (mode 0600) through which `payhsm
	// ceremony` runs online ceremonies against the serving daemon.
	AdminSocketName = "admin.sock"
	// AuditDirName holds the audit trail (package audit), unless the
	// configuration names another directory.
	AuditDirName = "audit"
	// LegacyAuditLogName is the unchained ceremony log of earlier releases;
	// a new trail anchors its digest in its first entry.
	LegacyAuditLogName = "ceremony-audit.log"
	// DevCredentialsName holds the SigV4 credentials --dev generates.
	DevCredentialsName = "credentials"
)

// KeystoreDir is the key store's directory.
func (c *Config) KeystoreDir() string { return filepath.Join(c.DataDir, KeystoreDirName) }

// AdminSocketPath is the daemon's admin socket.
func (c *Config) AdminSocketPath() string { return filepath.Join(c.DataDir, AdminSocketName) }

// AuditDir is the audit trail's directory.
func (c *Config) AuditDir() string {
	if c.Audit.Dir != "" {
		return c.Audit.Dir
	}
	return filepath.Join(c.DataDir, AuditDirName)
}

// OpenAudit opens the audit trail for writer ("daemon" or "ceremony"), its
// seal key derived in the token from the region main key of cust.
func (c *Config) OpenAudit(cust *custody.Custodian, writer string, log *zap.Logger) (*audit.Trail, error) {
	return c.OpenAuditSettled(cust, writer, log, nil)
}

// OpenAuditSettled is OpenAudit for a writer that stages entries in an
// outbox: settled is audit.Config.Settled.
func (c *Config) OpenAuditSettled(cust *custody.Custodian, writer string, log *zap.Logger, settled func([]string)) (*audit.Trail, error) {
	key, err := cust.AuditKey()
	if err != nil {
		return nil, err
	}
	defer clear(key)
	cfg := c.auditConfig(key, writer, log)
	cfg.Settled = settled
	return audit.Open(cfg)
}

func (c *Config) auditConfig(key []byte, writer string, log *zap.Logger) audit.Config {
	a := c.Audit
	return audit.Config{Dir: c.AuditDir(), Key: key, Writer: writer, SealEvery: a.SealEvery, SealInterval: time.Duration(a.SealInterval),
		RotateBytes: a.RotateBytes, RotateAge: time.Duration(a.RotateAge), DataQueue: a.DataQueue,
		Legacy: filepath.Join(c.DataDir, LegacyAuditLogName), Log: log}
}

// Flags are the options every subcommand that opens the appliance shares.
type Flags struct {
	dev        bool
	configPath string
	overrides  Config
	lossGrace  string
}

// RegisterFlags adds the shared options to fs.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	fs.BoolVar(&f.dev, "dev", false, "development mode: provision a SoftHSM2 token and credentials under the data directory")
	fs.StringVar(&f.configPath, "config", "", "configuration file (JSON); required without --dev")
	fs.StringVar(&f.overrides.DataDir, "data-dir", "", "data directory (default ./data)")
	fs.StringVar(&f.overrides.HTTP.Addr, "http-addr", "", "AWS API listen address (default 127.0.0.1:8080)")
	fs.StringVar(&f.overrides.Host.Addr, "host-addr", "", "host-command listen address (default 127.0.0.1:1500)")
	fs.StringVar(&f.overrides.Host.Principal, "host-principal", "", "principal of the host port's plain-TCP clients (host.principal; payhsm principals)")
	fs.StringVar(&f.overrides.Region, "region", "", "region of key ARNs (default us-east-1)")
	fs.StringVar(&f.overrides.Account, "account", "", "account id of key ARNs (default 000000000000)")
	fs.StringVar(&f.overrides.LogLevel, "log-level", "", "debug, info, warn or error (default info)")
	fs.StringVar(&f.overrides.DiskReserve, "disk-reserve", "", "free space to keep on the data directory's filesystem: below it writes are refused (default "+diskguard.DefaultReserve+"; a size such as 1GiB, or a percentage such as 5%)")
	fs.StringVar(&f.overrides.LogFormat, "log-format", "", "json or text (default json)")
	fs.StringVar(&f.overrides.Ops.Addr, "ops-addr", "", "ops listener address: /healthz, /readyz, /metrics, /version (default "+DefaultOpsAddr+")")
	fs.StringVar(&f.lossGrace, "token-loss-grace", "", "how long unsealed keys keep serving once the PKCS#11 token is lost, e.g. 5m; 0s refuses at once (default 5m)")
	return f
}

// Dev reports whether --dev was given.
func (f *Flags) Dev() bool { return f.dev }

// Config loads the configuration file (if any), applies the flags and the
// defaults, and validates the result.
func (f *Flags) Config() (*Config, error) {
	var cfg Config
	if f.configPath != "" {
		c, err := LoadConfig(f.configPath)
		if err != nil {
			return nil, err
		}
		cfg = *c
	} else if !f.dev {
		return nil, errors.New("needs --config FILE, or --dev for a development appliance")
	}
	overlay(&cfg, &f.overrides)
	if f.lossGrace != "" {
		d, err := time.ParseDuration(f.lossGrace)
		if err != nil {
			return nil, fmt.Errorf("--token-loss-grace: %w", err)
		}
		cfg.PKCS11.LossGrace = (*Duration)(&d)
	}
	cfg.Defaults()
	if err := cfg.Validate(f.dev); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return &cfg, nil
}

func overlay(dst, src *Config) {
	set := func(d *string, s string) {
		if s != "" {
			*d = s
		}
	}
	set(&dst.DataDir, src.DataDir)
	set(&dst.HTTP.Addr, src.HTTP.Addr)
	set(&dst.Host.Addr, src.Host.Addr)
	set(&dst.Host.Principal, src.Host.Principal)
	set(&dst.Region, src.Region)
	set(&dst.Account, src.Account)
	set(&dst.LogLevel, src.LogLevel)
	set(&dst.DiskReserve, src.DiskReserve)
	set(&dst.LogFormat, src.LogFormat)
	set(&dst.Ops.Addr, src.Ops.Addr)
}

// Appliance is an opened appliance: its key store, main-key custody and the
// SigV4 credentials accepted on the HTTP API.
type Appliance struct {
	Store   *keystore.Store
	Custody *custody.Custodian
	// Credentials maps access key id → secret; nil outside dev mode when the
	// configuration names no credentials file.
	Credentials map[string]string
	// Disk is the data directory's free-space watchdog, the key store's
	// write gate (nil when opened for inspection).
	Disk *diskguard.Watchdog

	namespace string // the profile the AWS API works in
	flagsHint string // how to name this appliance on the command line, for messages
	log       *zap.Logger
	anchor    anchorState
}

// Open opens the key store and main-key custody: in dev mode it provisions
// the SoftHSM2 token and credentials under the data directory. initialize
// allows creating the region main key (a new appliance). It makes the data
// directory private (SecureDataDir), gives the key store custody's record
// keys, upgrades a store of an older format (see upgradeStore) and starts
// its journal, refusing a store older than the token's anchor (see
// journal.go). The caller closes the result.
func Open(cfg *Config, dev, initialize bool, log *zap.Logger) (*Appliance, error) {
	a, _, err := open(cfg, dev, initialize, journalServe, log)
	return a, err
}

// OpenForInspection is Open for tools that only read (payhsm keystore
// verify): it creates nothing and upgrades nothing, and refuses a store of
// an older format; a store older than the token's anchor is opened, and
// its Verify says so.
func OpenForInspection(cfg *Config, dev bool, log *zap.Logger) (*Appliance, error) {
	a, _, err := open(cfg, dev, false, journalInspect, log)
	return a, err
}

// OpenAcceptingRestore is Open for payhsm keystore accept-restore: an
// operator who restored the key store from a backup (or whose journal was
// damaged) accepts it as it is. Every record found becomes the state the
// journal expects, under a sequence number past both the store's and the
// token's, which the token then records.
func OpenAcceptingRestore(cfg *Config, dev bool, log *zap.Logger) (*Appliance, *RestoreReport, error) {
	return open(cfg, dev, false, journalAccept, log)
}

func open(cfg *Config, dev, initialize bool, mode journalMode, log *zap.Logger) (*Appliance, *RestoreReport, error) {
	upgrade := mode == journalServe
	ccfg := custody.Config{
		ModulePath: cfg.PKCS11.Module, TokenLabel: cfg.PKCS11.TokenLabel,
		RegionKeyLabel: cfg.PKCS11.RegionKeyLabel, NotFound: keystore.ErrNotFound, Initialize: initialize,
		LossGrace: cfg.PKCS11.TokenLossGrace(), Node: cfg.Fleet.Node,
	}
	if !dev && !initialize {
		// Nothing is created for an appliance that was never initialized.
		// (On etcd: the store's prefix holds nothing.)
		fresh, err := storeIsNew(cfg, log.Named("keystore"))
		if err != nil {
			return nil, nil, fmt.Errorf("keystore: %w", err)
		}
		if fresh {
			where := "data directory " + cfg.DataDir
			if cfg.Keystore.Engine == EngineEtcd {
				where = "etcd prefix " + cfg.Keystore.Prefix
			}
			if cfg.Fleet.Node != "" {
				where += " (node " + cfg.Fleet.Node + ")"
			}
			return nil, nil, fmt.Errorf("%s holds no key store: this appliance is not initialized; "+
				"run payhsm ceremony init --config FILE --ceremony FILE first (docs/ceremony-file.md)", where)
		}
	}
	if _, err := SecureDataDir(cfg.DataDir, log); err != nil {
		return nil, nil, err
	}
	var disk *diskguard.Watchdog
	if mode != journalInspect { // inspection writes nothing
		reserve, err := diskguard.ParseReserve(cfg.DiskReserve)
		if err != nil {
			return nil, nil, fmt.Errorf("diskReserve: %w", err)
		}
		disk = diskguard.New(cfg.DataDir, reserve, log.Named("disk"))
		// Before anything is created or opened: on a disk already full the
		// key store could not even replay its log.
		if err := disk.StartCheck(); err != nil {
			return nil, nil, err
		}
	}
	credsPath := cfg.CredentialsFile
	if dev {
		// A dev token is made only with a new key store: for an existing one a
		// missing token is refused as in production, never replaced by a new one.
		fresh, err := storeIsNew(cfg, log.Named("keystore"))
		if err != nil {
			return nil, nil, fmt.Errorf("keystore: %w", err)
		}
		tok, err := softhsm.Provision(cfg.DataDir, cfg.PKCS11.Module, DevTokenLabel, fresh)
		if err != nil {
			return nil, nil, err
		}
		ccfg.ModulePath, ccfg.TokenLabel, ccfg.PIN = tok.Module, tok.Label, tok.PIN
		credsPath = filepath.Join(cfg.DataDir, DevCredentialsName)
		if err := ensureDevCredentials(credsPath); err != nil {
			return nil, nil, err
		}
	} else {
		pin, err := cfg.PKCS11.PIN()
		if err != nil {
			return nil, nil, err
		}
		ccfg.PIN = pin
	}
	var creds map[string]string
	if credsPath != "" {
		var err error
		if creds, err = ReadCredentials(credsPath); err != nil {
			return nil, nil, err
		}
	}
	store, err := openStore(cfg, log.Named("keystore"))
	if err != nil {
		return nil, nil, fmt.Errorf("keystore: %w", err)
	}
	if disk != nil && cfg.Keystore.Engine != EngineEtcd { // an etcd store does not live on this disk
		store.SetWriteGate(disk.Check)
	}
	cust, err := custody.Open(ccfg, store, log.Named("custody"))
	if err != nil {
		return nil, nil, errors.Join(err, store.Close())
	}
	if err := upgradeStore(store, cust, cfg.Profile, upgrade, log.Named("keystore")); err != nil {
		return nil, nil, errors.Join(err, cust.Close(), store.Close())
	}
	a := &Appliance{Store: store, Custody: cust, Credentials: creds, Disk: disk, namespace: cfg.Profile, log: log.Named("appliance"),
		flagsHint: "--config FILE (the daemon's)"}
	if dev {
		a.flagsHint = "--dev --data-dir " + cfg.DataDir
	}
	rep, err := a.startJournal(mode)
	if err != nil {
		return nil, nil, errors.Join(err, store.Close(), cust.Close()) // the store's last checkpoint uses custody's keys
	}
	return a, rep, nil
}

// Close stops the anchor, closes the key store (its journal's last
// checkpoint, under custody's record keys), records the journal's last
// sequence number in the token, and closes custody (zeroing the unsealed
// main keys and ending the token session).
func (a *Appliance) Close() error {
	a.stopAnchoring()
	err := a.Store.Close()
	a.anchorNow()
	return errors.Join(err, a.Custody.Close())
}

// HardenProcess keeps key material out of core dumps and away from other
// processes of the same user: the process becomes non-dumpable (no core
// file, no ptrace or /proc/PID/mem without CAP_SYS_PTRACE) and its core size
// limit zero. Every command that opens the appliance calls it first.
func HardenProcess() error {
	return errors.Join(unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0),
		unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}))
}

// ensureDevCredentials writes random SigV4 credentials (profile default) on first start.
func ensureDevCredentials(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	const upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return err
	}
	id := []byte("AKPH")
	for _, b := range raw {
		id = append(id, upper[int(b)%len(upper)])
	}
	sec := make([]byte, 30)
	if _, err := rand.Read(sec); err != nil {
		return err
	}
	content := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", id, base64.StdEncoding.EncodeToString(sec))
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("write dev credentials: %w", err)
	}
	return nil
}
