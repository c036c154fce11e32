// Package daemon wires payhsm's serve command: configuration, logging, the
// keystore, main-key custody, the operations layer and both front ends (the
// AWS HTTP API and the host-command port), readiness notification to systemd
// and graceful shutdown.
package daemon

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"payhsm/hsm/custody"
	"payhsm/hsm/softhsm"
	"payhsm/keystore"
	"payhsm/ops"
	"payhsm/protocol/awsapi"
	"payhsm/protocol/awsapi/sigv4"
	"payhsm/protocol/hostcmd"
)

// DevTokenLabel is the label of the SoftHSM2 token --dev provisions.
const DevTokenLabel = "payhsm-dev"

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

// ServeMain runs `payhsm serve` with args (the words after "serve").
func ServeMain(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	flags := RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := flags.Config()
	if err != nil {
		fmt.Fprintln(stderr, "payhsm:", err)
		return 2
	}
	log, err := NewLogger(cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(stderr, "payhsm:", err)
		return 2
	}
	defer log.Sync()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := Serve(ctx, cfg, flags.dev, log); err != nil {
		log.Error("payhsm stopped", zap.Error(err))
		return 1
	}
	return 0
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

// NewLogger is payhsm's zap logger (JSON to stderr).
func NewLogger(level string) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.Set(level); err != nil {
		return nil, err
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.EncoderConfig.TimeKey = "time"
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	zc.Sampling = nil
	return zc.Build()
}

// Serve runs the appliance until ctx ends.
func Serve(ctx context.Context, cfg *Config, dev bool, log *zap.Logger) error {
	hardenProcess(log)
	store, cust, creds, err := OpenAppliance(cfg, dev, dev, log)
	if err != nil {
		return err
	}
	defer func() {
		cust.Close()
		if err := store.Close(); err != nil {
			log.Error("close keystore", zap.Error(err))
		}
	}()
	if _, err := cust.Profile(cfg.Profile); errors.Is(err, custody.ErrNoProfile) && dev {
		if _, err := cust.CreateProfile(cfg.Profile); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	svc, err := ops.New(ops.Config{Region: cfg.Region, Account: cfg.Account, Profile: cfg.Profile}, store, cust, log.Named("ops"))
	if err != nil {
		return err
	}
	p, _ := cust.Profile(cfg.Profile)
	log.Info("main keys loaded", zap.String("regionMainKeyKCV", cust.RegionKeyKCV()),
		zap.String("profile", cfg.Profile), zap.String("profileMainKeyKCV", p.KCV()))

	httpLn, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("http listener: %w", err)
	}
	hostLn, err := net.Listen("tcp", cfg.Host.Addr)
	if err != nil {
		httpLn.Close()
		return fmt.Errorf("host listener: %w", err)
	}
	verifier := &sigv4.Verifier{Creds: sigv4.StaticCredentials(creds), Region: cfg.Region, Service: "payment-cryptography"}
	api := awsapi.New(svc, verifier, log.Named("http"))
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
	scheme := "http"
	if cfg.HTTP.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.HTTP.TLSCert, cfg.HTTP.TLSKey)
		if err != nil {
			return fmt.Errorf("http TLS: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		httpLn = tls.NewListener(httpLn, srv.TLSConfig)
		scheme = "https"
	}
	hostCfg := hostcmd.Config{HeaderLength: cfg.Host.HeaderLength, MaxConnections: cfg.Host.MaxConnections, AllowedClients: cfg.Host.AllowedClients,
		EventLoops: cfg.Host.EventLoops}
	if hostCfg.TLS, err = hostTLS(&cfg.Host); err != nil {
		return err
	}
	host := hostcmd.NewServer(svc, hostCfg, log.Named("host"))

	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(httpLn) }()
	go func() { errc <- host.Serve(hostLn) }()
	adm, err := startAdmin(cfg.DataDir, svc, store, cust, log.Named("admin"))
	if err != nil {
		return err
	}
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	go svc.Run(runCtx, time.Minute)

	log.Info("payhsm ready", zap.String("http", scheme+"://"+httpLn.Addr().String()),
		zap.String("host", hostLn.Addr().String()), zap.String("dataDir", cfg.DataDir), zap.Bool("dev", dev))
	notify("READY=1")

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case serveErr = <-errc:
		log.Error("listener failed", zap.Error(serveErr))
	}
	notify("STOPPING=1")
	shutCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		log.Warn("http drain incomplete", zap.Error(err))
	}
	if err := host.Shutdown(shutCtx); err != nil {
		log.Warn("host drain incomplete", zap.Error(err))
	}
	adm.close(shutCtx)
	cancelRun()
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// OpenAppliance opens the keystore and main-key custody the way serve does:
// in dev mode it provisions the SoftHSM2 token and credentials under the data
// directory. initialize allows creating the region main key. It returns the
// SigV4 credentials too (nil outside dev mode when cfg names no file).
func OpenAppliance(cfg *Config, dev, initialize bool, log *zap.Logger) (*keystore.Store, *custody.Custodian, map[string]string, error) {
	ccfg := custody.Config{
		ModulePath: cfg.PKCS11.Module, TokenLabel: cfg.PKCS11.TokenLabel,
		RegionKeyLabel: cfg.PKCS11.RegionKeyLabel, NotFound: keystore.ErrNotFound, Initialize: initialize,
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("data directory: %w", err)
	}
	credsPath := cfg.CredentialsFile
	if dev {
		tok, err := softhsm.Provision(cfg.DataDir, cfg.PKCS11.Module, DevTokenLabel)
		if err != nil {
			return nil, nil, nil, err
		}
		ccfg.ModulePath, ccfg.TokenLabel, ccfg.PIN = tok.Module, tok.Label, tok.PIN
		credsPath = filepath.Join(cfg.DataDir, "credentials")
		if err := ensureDevCredentials(credsPath); err != nil {
			return nil, nil, nil, err
		}
	} else {
		pin, err := cfg.PKCS11.PIN()
		if err != nil {
			return nil, nil, nil, err
		}
		ccfg.PIN = pin
	}
	var creds map[string]string
	if credsPath != "" {
		var err error
		if creds, err = ReadCredentials(credsPath); err != nil {
			return nil, nil, nil, err
		}
	}
	store, err := keystore.Open(filepath.Join(cfg.DataDir, "keystore"), keystore.Options{Logger: log.Named("keystore")})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("keystore: %w", err)
	}
	cust, err := custody.Open(ccfg, store, log.Named("custody"))
	if err != nil {
		store.Close()
		return nil, nil, nil, err
	}
	return store, cust, creds, nil
}

// hostTLS builds the host port's TLS configuration (nil for plain TCP).
func hostTLS(h *HostConfig) (*tls.Config, error) {
	if h.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(h.TLSCert, h.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("host TLS: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if h.ClientCA != "" {
		pemBytes, err := os.ReadFile(h.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("host.clientCA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("host.clientCA: %s holds no PEM certificate", h.ClientCA)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// hardenProcess keeps key material out of core dumps.
func hardenProcess(log *zap.Logger) {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		log.Warn("cannot disable core dumps", zap.Error(err))
	}
	_ = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0})
}

// notify sends a state to systemd (sd_notify protocol) when run under Type=notify.
func notify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = conn.Write([]byte(state))
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
