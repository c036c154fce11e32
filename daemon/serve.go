// Package daemon owns payhsm's serve command: it opens the appliance (package
// appliance), wires the operations layer to both front ends (the AWS HTTP API
// and the host-command port) and to the admin socket that runs online
// ceremony steps (wire: package admin; audit: package audit), notifies systemd
// of readiness, and shuts down in order.
package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"payhsm/appliance"
	"payhsm/audit"
	"payhsm/hsm/custody"
	"payhsm/internal/cli"
	"payhsm/ops"
	"payhsm/protocol/awsapi"
	"payhsm/protocol/awsapi/sigv4"
	"payhsm/protocol/hostcmd"
)

// ServeMain runs `payhsm serve` with args (the words after "serve").
func ServeMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("payhsm serve", flag.ContinueOnError)
	flags := appliance.RegisterFlags(fs)
	fs.Usage = cli.UsageFunc(fs, serveUsage)
	if code, ok := cli.Parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		cli.Sayf(stderr, "payhsm serve: unexpected arguments %q\n", fs.Args())
		return 2
	}
	cfg, err := flags.Config()
	if err != nil {
		cli.Say(stderr, "payhsm serve:", err)
		return 2
	}
	log, err := NewLogger(cfg.LogLevel)
	if err != nil {
		cli.Say(stderr, "payhsm serve:", err)
		return 2
	}
	defer func() { _ = log.Sync() }() // stderr may not support sync
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { // a second signal ends the process at once, without waiting for the drain
		<-ctx.Done()
		stop()
	}()
	if err := Serve(ctx, cfg, flags.Dev(), log); err != nil {
		log.Error("payhsm stopped", zap.Error(err))
		return 1
	}
	return 0
}

const serveUsage = `usage: payhsm serve (--dev [--data-dir DIR] | --config FILE) [flags]

Runs the appliance: the AWS Payment Cryptography API (HTTP), the host-command
port (TCP) and the admin socket DATA/admin.sock for online ceremonies, until
SIGTERM or SIGINT, which drain in-flight requests and close the key store
(a second signal ends the process at once). With --config, the file holds
every setting (see README.md); the flags below override it.

flags:
`

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

// Serve runs the appliance until ctx ends. Start-up prepares everything that
// can fail — the appliance, the profile, TLS, the audit log and all three
// listeners — before anything serves, so a start-up failure leaves nothing
// running; shutdown goes in order: the HTTP and host ports drain, the online
// ceremony step in progress finishes, the background purge stops, and only
// then are the audit log, custody and the key store closed.
func Serve(ctx context.Context, cfg *appliance.Config, dev bool, log *zap.Logger) error {
	if err := appliance.HardenProcess(); err != nil {
		log.Warn("cannot disable core dumps", zap.Error(err))
	}
	app, err := appliance.Open(cfg, dev, dev, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := app.Close(); err != nil {
			log.Error("close the appliance", zap.Error(err))
		}
	}()
	prof, err := app.Custody.Profile(cfg.Profile)
	if errors.Is(err, custody.ErrNoProfile) && dev {
		prof, err = app.Custody.CreateProfile(cfg.Profile)
	}
	if err != nil {
		return err
	}
	svc, err := ops.New(ops.Config{Region: cfg.Region, Account: cfg.Account, Profile: cfg.Profile}, app.Store, app.Custody, log.Named("ops"))
	if err != nil {
		return err
	}
	log.Info("main keys loaded", zap.String("regionMainKeyKCV", app.Custody.RegionKeyKCV()),
		zap.String("profile", cfg.Profile), zap.String("profileMainKeyKCV", prof.KCV()), zap.Int("profileMainKeyVersion", prof.Version()))
	// Check every record once before serving: a damaged one is logged now
	// (and refused whenever it is used), and every record's revision becomes
	// the mark later reads are held to.
	vrep, err := app.Store.Verify()
	if err != nil {
		return fmt.Errorf("keystore: verify: %w", err)
	}
	if len(vrep.Failures) > 0 {
		log.Error("the key store holds records that failed their integrity check; they are refused, everything else is served (payhsm keystore verify lists them)",
			zap.Int("failures", len(vrep.Failures)), zap.Int("records", vrep.Records))
	}

	auditLog, err := audit.Open(cfg.AuditLogPath())
	if err != nil {
		return err
	}
	defer func() {
		if err := auditLog.Close(); err != nil {
			log.Error("close the audit log", zap.Error(err))
		}
	}()
	verifier := &sigv4.Verifier{Creds: sigv4.StaticCredentials(app.Credentials), Region: cfg.Region, Service: "payment-cryptography"}
	srv := &http.Server{
		Handler:           awsapi.New(svc, verifier, log.Named("http")),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
	api := awsapi.NewHTTPServer(srv) // srv's settings; srv serves what the fast path hands over
	scheme := "http"
	if cfg.HTTP.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.HTTP.TLSCert, cfg.HTTP.TLSKey)
		if err != nil {
			return fmt.Errorf("http TLS: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		scheme = "https"
	}
	hostCfg := hostcmd.Config{HeaderLength: cfg.Host.HeaderLength, MaxConnections: cfg.Host.MaxConnections, AllowedClients: cfg.Host.AllowedClients,
		EventLoops: cfg.Host.EventLoops}
	if hostCfg.TLS, err = hostTLS(&cfg.Host); err != nil {
		return err
	}
	host := hostcmd.NewServer(svc, hostCfg, log.Named("host"))

	httpLn, hostLn, adminLn, err := listen(cfg)
	if err != nil {
		return err
	}
	if srv.TLSConfig != nil {
		httpLn = tls.NewListener(httpLn, srv.TLSConfig)
	}

	// Nothing below fails before serving.
	errc := make(chan error, 2)
	go func() { errc <- api.Serve(httpLn) }()
	go func() { errc <- host.Serve(hostLn) }()
	adm := &adminServer{ln: adminLn, svc: svc, store: app.Store, cust: app.Custody, audit: auditLog, log: log.Named("admin")}
	go adm.serve()
	runCtx, cancelRun := context.WithCancel(context.Background())
	var background sync.WaitGroup
	background.Add(1)
	go func() {
		defer background.Done()
		svc.Run(runCtx, time.Minute)
	}()

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
	if err := api.Shutdown(shutCtx); err != nil {
		log.Warn("http drain incomplete", zap.Error(err))
		_ = api.Close()
	}
	if err := host.Shutdown(shutCtx); err != nil {
		log.Warn("host drain incomplete", zap.Error(err))
	}
	adm.close(shutCtx)
	cancelRun()
	background.Wait()
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// listen opens the HTTP, host and admin listeners, all or none.
func listen(cfg *appliance.Config) (httpLn, hostLn, adminLn net.Listener, err error) {
	if httpLn, err = net.Listen("tcp", cfg.HTTP.Addr); err != nil {
		return nil, nil, nil, fmt.Errorf("http listener: %w", err)
	}
	if hostLn, err = net.Listen("tcp", cfg.Host.Addr); err != nil {
		return nil, nil, nil, errors.Join(fmt.Errorf("host listener: %w", err), httpLn.Close())
	}
	if adminLn, err = listenAdmin(cfg.AdminSocketPath()); err != nil {
		return nil, nil, nil, errors.Join(err, hostLn.Close(), httpLn.Close())
	}
	return httpLn, hostLn, adminLn, nil
}

// hostTLS builds the host port's TLS configuration (nil for plain TCP).
func hostTLS(h *appliance.HostConfig) (*tls.Config, error) {
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
	// Best effort, like sd_notify(3): a datagram socket buffers nothing a
	// failed Close could lose, and systemd's timeouts report a lost state.
	defer func() { _ = conn.Close() }()
	_, _ = conn.Write([]byte(state))
}
