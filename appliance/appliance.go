// Package appliance owns what every payhsm command that opens an appliance
// shares: the configuration file and its flags, the layout of the data
// directory and its permissions, and opening the appliance — the key store,
// main-key custody in the PKCS#11 token (provisioned with SoftHSM2 in --dev
// mode), the store's record authentication and its upgrade from an older
// format (storage.go), and the SigV4 credentials. The daemon (serve), the
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

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

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
	// AuditLogName is the append-only ceremony audit log (package audit).
	AuditLogName = "ceremony-audit.log"
	// DevCredentialsName holds the SigV4 credentials --dev generates.
	DevCredentialsName = "credentials"
)

// KeystoreDir is the key store's directory.
func (c *Config) KeystoreDir() string { return filepath.Join(c.DataDir, KeystoreDirName) }

// AdminSocketPath is the daemon's admin socket.
func (c *Config) AdminSocketPath() string { return filepath.Join(c.DataDir, AdminSocketName) }

// AuditLogPath is the ceremony audit log.
func (c *Config) AuditLogPath() string { return filepath.Join(c.DataDir, AuditLogName) }

// Flags are the options every subcommand that opens the appliance shares.
type Flags struct {
	dev        bool
	configPath string
	overrides  Config
}

// RegisterFlags adds the shared options to fs.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	fs.BoolVar(&f.dev, "dev", false, "development mode: provision a SoftHSM2 token and credentials under the data directory")
	fs.StringVar(&f.configPath, "config", "", "configuration file (JSON); required without --dev")
	fs.StringVar(&f.overrides.DataDir, "data-dir", "", "data directory (default ./data)")
	fs.StringVar(&f.overrides.HTTP.Addr, "http-addr", "", "AWS API listen address (default 127.0.0.1:8080)")
	fs.StringVar(&f.overrides.Host.Addr, "host-addr", "", "host-command listen address (default 127.0.0.1:1500)")
	fs.StringVar(&f.overrides.Region, "region", "", "region of key ARNs (default us-east-1)")
	fs.StringVar(&f.overrides.Account, "account", "", "account id of key ARNs (default 000000000000)")
	fs.StringVar(&f.overrides.LogLevel, "log-level", "", "debug, info, warn or error (default info)")
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
	set(&dst.Region, src.Region)
	set(&dst.Account, src.Account)
	set(&dst.LogLevel, src.LogLevel)
}

// Appliance is an opened appliance: its key store, main-key custody and the
// SigV4 credentials accepted on the HTTP API.
type Appliance struct {
	Store   *keystore.Store
	Custody *custody.Custodian
	// Credentials maps access key id → secret; nil outside dev mode when the
	// configuration names no credentials file.
	Credentials map[string]string
}

// Open opens the key store and main-key custody: in dev mode it provisions
// the SoftHSM2 token and credentials under the data directory. initialize
// allows creating the region main key (a new appliance). It makes the data
// directory private (SecureDataDir), gives the key store custody's record
// keys and upgrades a store of an older format (see upgradeStore). The
// caller closes the result.
func Open(cfg *Config, dev, initialize bool, log *zap.Logger) (*Appliance, error) {
	return open(cfg, dev, initialize, true, log)
}

// OpenForInspection is Open for tools that only read (payhsm keystore
// verify): it creates nothing and upgrades nothing, and refuses a store of
// an older format.
func OpenForInspection(cfg *Config, dev bool, log *zap.Logger) (*Appliance, error) {
	return open(cfg, dev, false, false, log)
}

func open(cfg *Config, dev, initialize, upgrade bool, log *zap.Logger) (*Appliance, error) {
	ccfg := custody.Config{
		ModulePath: cfg.PKCS11.Module, TokenLabel: cfg.PKCS11.TokenLabel,
		RegionKeyLabel: cfg.PKCS11.RegionKeyLabel, NotFound: keystore.ErrNotFound, Initialize: initialize,
	}
	if _, err := SecureDataDir(cfg.DataDir, log); err != nil {
		return nil, err
	}
	credsPath := cfg.CredentialsFile
	if dev {
		// A dev token is made only with a new key store: for an existing one a
		// missing token is refused as in production, never replaced by a new one.
		fresh, err := storeIsNew(cfg, log.Named("keystore"))
		if err != nil {
			return nil, fmt.Errorf("keystore: %w", err)
		}
		tok, err := softhsm.Provision(cfg.DataDir, cfg.PKCS11.Module, DevTokenLabel, fresh)
		if err != nil {
			return nil, err
		}
		ccfg.ModulePath, ccfg.TokenLabel, ccfg.PIN = tok.Module, tok.Label, tok.PIN
		credsPath = filepath.Join(cfg.DataDir, DevCredentialsName)
		if err := ensureDevCredentials(credsPath); err != nil {
			return nil, err
		}
	} else {
		pin, err := cfg.PKCS11.PIN()
		if err != nil {
			return nil, err
		}
		ccfg.PIN = pin
	}
	var creds map[string]string
	if credsPath != "" {
		var err error
		if creds, err = ReadCredentials(credsPath); err != nil {
			return nil, err
		}
	}
	store, err := openStore(cfg, log.Named("keystore"))
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	cust, err := custody.Open(ccfg, store, log.Named("custody"))
	if err != nil {
		return nil, errors.Join(err, store.Close())
	}
	if err := upgradeStore(store, cust, cfg.Profile, upgrade, log.Named("keystore")); err != nil {
		return nil, errors.Join(err, cust.Close(), store.Close())
	}
	return &Appliance{Store: store, Custody: cust, Credentials: creds}, nil
}

// Close closes custody (zeroing the unsealed main keys and ending the token
// session) and then the key store.
func (a *Appliance) Close() error {
	return errors.Join(a.Custody.Close(), a.Store.Close())
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
