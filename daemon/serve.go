// Package daemon owns payhsm's serve command: it opens the appliance (package
// appliance), wires the operations layer to both front ends (the AWS HTTP API
// and the host-command port) and to the admin socket that runs online
// ceremony steps (wire: package admin), records every control-plane call,
// denial and ceremony step — and data-plane calls for an account that opted
// in — in the audit trail (package audit), notifies systemd
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
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"payhsm/access"
	"payhsm/appliance"
	"payhsm/audit"
	"payhsm/ceremony/mpa"
	"payhsm/health"
	"payhsm/hsm/custody"
	"payhsm/internal/cli"
	"payhsm/internal/version"
	"payhsm/keystore"
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
	if err == nil {
		err = cfg.Preflight(flags.Dev(), true) // the files and the token, before anything is created
	}
	if err != nil {
		cli.Say(stderr, "payhsm serve:", err)
		return 2
	}
	log, err := NewLogger(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		cli.Say(stderr, "payhsm serve:", err)
		return 2
	}
	defer func() { _ = log.Sync() }() // stderr may not support sync
	tuneGC(log, workingKeys(cfg))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { // a second signal ends the process at once, without waiting for the drain
		<-ctx.Done()
		stop()
	}()
	if err := Serve(ctx, cfg, flags.Dev(), log); err != nil {
		// One line that says why (a start-up failure such as a full disk
		// included); Serve's own stack is no help to an operator.
		log.WithOptions(zap.AddStacktrace(zap.FatalLevel)).Error("payhsm stopped", zap.Error(err))
		return 1
	}
	return 0
}

const serveUsage = `usage: payhsm serve (--dev [--data-dir DIR] | --config FILE) [flags]

Runs the appliance: the AWS Payment Cryptography API (HTTP), the host-command
port (TCP), the ops listener (/healthz, /readyz, /metrics, /version; see
docs/operations.md) and the admin socket DATA/admin.sock for online ceremonies, until
SIGTERM or SIGINT, which drain in-flight requests and close the key store
(a second signal ends the process at once). With --config, the file holds
every setting (see README.md); the flags below override it.

flags:
`

// NewLogger is payhsm's zap logger on stderr: format json (one object a
// line) or text (zap's console format: time, level, logger, message, then
// the fields as JSON).
func NewLogger(level, format string) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.Set(level); err != nil {
		return nil, err
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.EncoderConfig.TimeKey = "time"
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	zc.Sampling = nil
	switch format {
	case "", "json":
	case "text":
		zc.Encoding = "console"
	default:
		return nil, fmt.Errorf("log format %q: must be json or text", format)
	}
	return zc.Build()
}

// journalVerdict refuses to serve a store whose journal failed its check
// (records may have been rolled back, and which cannot be told) or whose
// owner metadata failed.
func journalVerdict(rep *keystore.VerifyReport, flags string) error {
	var owner []string
	for _, f := range rep.Failures {
		if f.Type == keystore.RecordOwnerMeta {
			owner = append(owner, f.Name)
		}
	}
	switch {
	case rep.Journal.Damaged:
		return fmt.Errorf("keystore: the key store's journal failed its integrity check, so records may have been rolled back (restored from a backup, or edited?); "+
			"refusing to start. payhsm keystore verify %s lists what failed; to accept the store as it is: payhsm keystore accept-restore %s", flags, flags)
	case len(owner) > 0:
		return fmt.Errorf("keystore: custody's or the ceremonies' records failed their integrity check (%s); refusing to start. payhsm keystore verify %s lists what failed",
			strings.Join(owner, ", "), flags)
	}
	return nil
}

// eagerVerifyBelow is the number of records (by the journal's checkpoints)
// below which the start-up check is a full Verify before serving (about
// 12 µs a record on a small appliance: a quarter of a second).
const eagerVerifyBelow = 20000

// logVerify logs what a Verify found (err: it could not complete).
func logVerify(log *zap.Logger, rep *keystore.VerifyReport, err error) {
	switch {
	case err != nil:
		log.Error("keystore: the background verify failed; records are still compared with the journal on their first read", zap.Error(err))
	case len(rep.Failures) > 0:
		log.Error("the key store holds records that failed their integrity check; they are refused, everything else is served (payhsm keystore verify lists them)",
			zap.Int("failures", len(rep.Failures)), zap.Int("records", rep.Records), zap.Bool("partial", rep.Partial))
	}
}

// Serve runs the appliance until ctx ends. Start-up prepares everything that
// can fail — the appliance, the profile, TLS, the audit trail and all three
// listeners — before anything serves, so a start-up failure leaves nothing
// running; shutdown goes in order: the HTTP and host ports drain, the online
// ceremony step in progress finishes, the background purge stops, and only
// then are the audit trail (sealed), custody and the key store closed.
func Serve(ctx context.Context, cfg *appliance.Config, dev bool, log *zap.Logger) error {
	if err := appliance.HardenProcess(); err != nil {
		log.Warn("cannot disable core dumps", zap.Error(err))
	}
	tel := newTelemetry()
	if err := tel.listen(cfg, log.Named("ops")); err != nil {
		return err
	}
	defer tel.close(log)
	app, err := appliance.Open(cfg, dev, dev, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := app.Close(); err != nil {
			log.Error("close the appliance", zap.Error(err))
		}
	}()
	fleet, err := newFleetNode(cfg, app.Custody, log.Named("fleet"))
	if err != nil {
		return err
	}
	fleetCtx, stopFleet := context.WithCancel(context.Background())
	fleetDone := make(chan struct{})
	if fleet != nil {
		tel.checks.Add(checkFleet, fleet.state.Check)
		go func() { defer close(fleetDone); fleet.run(fleetCtx) }()
	} else {
		close(fleetDone)
	}
	defer func() { stopFleet(); <-fleetDone }() // the heartbeat is withdrawn before the appliance closes
	prof, err := app.Custody.Profile(cfg.Profile)
	if errors.Is(err, custody.ErrNoProfile) && fleet != nil {
		// A node of a fleet whose profile main key other nodes hold waits
		// to receive it (payhsm ceremony join); it never makes its own.
		holders, herr := fleetHolders(app.Custody, cfg.Profile)
		if herr != nil {
			return herr
		}
		if len(holders) > 0 {
			prof, err = awaitJoin(ctx, cfg, app, tel, holders, log)
			if errors.Is(err, errStoppedJoining) {
				log.Info("shutting down", zap.String("node", cfg.Fleet.Node), zap.String("reason", err.Error()))
				return nil
			}
		}
	}
	if errors.Is(err, custody.ErrNoProfile) && dev {
		prof, err = app.Custody.CreateProfile(cfg.Profile)
	}
	if err != nil {
		return err
	}
	if err := app.StartJournal(); err != nil { // a new --dev appliance's profile was just made
		return err
	}
	var trail *audit.Trail // opened below, before anything serves
	onPurge := func(keyARN string) {
		if trail == nil {
			return
		}
		if err := trail.Record(audit.KindControl, audit.Event{Protocol: "system", Operation: "DeleteKey", Principal: "payhsm",
			Account: cfg.Account, Keys: []string{keyARN}, Outcome: audit.OK, Detail: "deletion waiting period ended"}); err != nil {
			log.Error("audit trail: a key deletion could not be recorded", zap.String("key", keyARN), zap.Error(err))
		}
	}
	svc, err := ops.New(ops.Config{Region: cfg.Region, Account: cfg.Account, Profile: cfg.Profile, OnPurge: onPurge,
		LeaderTTL: time.Duration(cfg.Keystore.LeaderTTL), Node: cfg.Fleet.Node,
		WorkingKeys: workingKeys(cfg)}, app.Store, app.Custody, log.Named("ops"))
	if err != nil {
		return err
	}
	// On a shared store (etcd), the working-key cache follows the other
	// nodes' writes, and cached keys are refused once the store has been
	// out of reach for longer than the staleness bound (docs/fleet.md).
	followCtx, stopFollow := context.WithCancel(context.Background())
	defer stopFollow() // before the store closes (deferred earlier)
	if svc.Follow(followCtx, cfg.Keystore.StalenessBound()) {
		log.Info("following the shared key store's changes", zap.Duration("staleness", cfg.Keystore.StalenessBound()))
	}
	log.Info("main keys loaded", zap.String("regionMainKeyKCV", app.Custody.RegionKeyKCV()),
		zap.String("profile", cfg.Profile), zap.String("profileMainKeyKCV", prof.KCV()), zap.Int("profileMainKeyVersion", prof.Version()))
	// Check every record once before serving: a damaged one is logged now
	// (and refused whenever it is used), every record's revision becomes
	// the mark later reads are held to, and every record is compared with
	// the revision the store's journal expects (one out of date is refused
	// like a damaged one). A journal that failed its own check, or custody's
	// records out of date (custody has already read them), stop the start.
	//
	// A large store is checked in two steps (keystore.VerifyStart): before
	// serving, the journal's structure, metadata (custody's among it) and
	// the purge index; then the full pass runs in the background while
	// every record is compared with the journal on its first read.
	vrep, err := app.Store.VerifyStart(eagerVerifyBelow)
	if err != nil {
		return fmt.Errorf("keystore: verify: %w", err)
	}
	if err := journalVerdict(vrep, app.CommandFlags()); err != nil {
		return err
	}
	logVerify(log, vrep, nil)
	if vrep.Partial {
		go func() {
			t0 := time.Now()
			rep, err := app.Store.Verify()
			if errors.Is(err, keystore.ErrClosed) {
				return // shutting down: the next start checks again
			}
			logVerify(log, rep, err)
			if err == nil {
				log.Info("keystore: background verify complete", zap.Int("records", rep.Records), zap.Duration("took", time.Since(t0)))
				warmWorkingKeys(ctx, cfg, svc, log)
			}
		}()
	} else {
		go warmWorkingKeys(ctx, cfg, svc, log)
	}

	recordRepl := func(ev audit.Event) { // replication runs only once the trail is open
		ev.Protocol, ev.Principal, ev.Account, ev.Outcome = "system", "payhsm", cfg.Account, audit.OK
		if trail == nil {
			return
		}
		if err := trail.Record(audit.KindControl, ev); err != nil {
			log.Error("audit trail: a replication event could not be recorded", zap.Strings("keys", ev.Keys), zap.Error(err))
		}
	}
	repl, err := newReplication(&cfg.Replication, svc, recordRepl, log.Named("replication"))
	if err != nil {
		return err
	}

	// CreateKey's entries are staged with their keys when the key store has
	// one writer (awsapi.SetAuditOutbox); a fleet's nodes share theirs.
	var outbox *auditOutbox
	var settled func([]string)
	if !app.Store.Shared() {
		outbox = newAuditOutbox(app.Store, log.Named("audit"))
		settled = outbox.settled
	}
	if trail, err = cfg.OpenAuditSettled(app.Custody, "daemon", log.Named("audit"), settled); err != nil {
		return err
	}
	defer func() {
		if err := trail.Close(); err != nil {
			log.Error("close the audit trail", zap.Error(err))
		}
		if outbox != nil {
			outbox.close()
		}
		seq, hash := trail.Head()
		log.Info("audit trail closed", zap.Uint64("seq", seq), zap.String("hash", hash))
	}()
	if fleet != nil {
		fleet.setAudit(app.Store, func(ev audit.Event) {
			if err := trail.Record(audit.KindControl, ev); err != nil {
				log.Error("audit trail: a fleet event could not be recorded", zap.String("operation", ev.Operation), zap.Error(err))
			}
		})
		if fleet.eng != nil { // rotations carry their new version to the other nodes (fleetrotate.go)
			svc.SetFleetRotation(fleet)
		}
	}
	if outbox != nil {
		adopted, err := outbox.adopt(trail, cfg.Account, svc.KeyARN)
		if err != nil {
			return err
		}
		defer func() { <-adopted }() // before the trail closes
	}
	seq, hash := trail.Head()
	log.Info("audit trail open", zap.String("dir", cfg.AuditDir()), zap.String("sealKeyId", trail.KeyID()),
		zap.Bool("dataEvents", cfg.DataEvents()), zap.Uint64("seq", seq), zap.String("hash", hash))
	reg := mpa.Open(app.Store, app.Custody.FleetSealer(cfg.Profile), cfg.Region, cfg.Account)
	reg.Audit = mpaAudit(trail)
	svc.SetApprovals(approvals{reg})
	mgr, err := OpenAccess(cfg, app)
	if err != nil {
		return err
	}
	az := mgr.Authorizer()
	defer logDenials(az, trail, log.Named("access"))() // before the audit trail closes
	// A principal added or changed on another node of a fleet reaches this
	// one through the store's watch (a reset: everything is read again).
	svc.OnMetaChange(func(names []string, reset bool) {
		if reset || slices.ContainsFunc(names, access.PrincipalRecord) {
			if err := mgr.Reload(); err != nil {
				log.Error("principals changed on another node could not be read again; the ones loaded before serve", zap.Error(err))
			}
		}
	})
	verifier := &sigv4.Verifier{Creds: az, Region: cfg.Region, Service: "payment-cryptography"}
	handler := awsapi.New(svc, verifier, log.Named("http"))
	handler.SetNode(cfg.Fleet.Node)
	handler.SetAuthorizer(az)
	handler.SetAudit(trail, cfg.Account, cfg.DataEvents())
	if outbox != nil {
		handler.SetAuditOutbox(outbox)
	}
	httpMetrics := tel.metrics.NewHTTP(handler.Operations())
	handler.SetObserver(httpMetrics)
	srv := &http.Server{
		Handler:           handler,
		ConnState:         httpMetrics.ConnState,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
	api := awsapi.NewHTTPServer(srv) // srv's settings; srv serves what the fast path hands over
	api.SetEventLoops(httpEventLoops(cfg))
	api.SetLoopDriver(cfg.HTTP.Driver)
	api.SetWarnLog(func(msg string, err error) { log.Named("http").Warn(msg, zap.Error(err)) })
	scheme := "http"
	if cfg.HTTP.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.HTTP.TLSCert, cfg.HTTP.TLSKey)
		if err != nil {
			return fmt.Errorf("http TLS: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		scheme = "https"
	}
	hostCfg := hostcmd.Config{HeaderLength: cfg.Host.HeaderLength, MaxConnections: cfg.Host.MaxConnections,
		MaxConnectionsPerAddress: cfg.Host.MaxConnectionsPerAddress, AllowedClients: cfg.Host.AllowedClients,
		EventLoops: cfg.Host.EventLoops, Driver: cfg.Host.Driver, Authorizer: az, Principal: hostPrincipal(cfg, mgr), Node: cfg.Fleet.Node}
	if hostCfg.TLS, err = hostTLS(&cfg.Host); err != nil {
		return err
	}
	host := hostcmd.NewServer(svc, hostCfg, log.Named("host"))
	host.SetAudit(trail, cfg.Account, cfg.DataEvents())
	host.SetObserver(tel.metrics.NewHost(hostcmd.Commands()))
	httpState, hostState, writable := &listenerState{}, &listenerState{}, health.NewState(probeWritable(cfg.DataDir))
	if err := tel.register(sources{store: app.Store, cust: app.Custody, svc: svc, host: host, writable: writable,
		http: httpState, hostLn: hostState, disk: app.Disk, trail: trail, access: az, mpa: reg}); err != nil {
		return err
	}

	httpLn, hostLn, adminLn, err := listen(cfg)
	if err != nil {
		return err
	}
	if err := repl.listen(); err != nil {
		return errors.Join(err, httpLn.Close(), hostLn.Close(), adminLn.Close())
	}
	if srv.TLSConfig != nil {
		httpLn = tls.NewListener(httpLn, srv.TLSConfig)
	}

	if fleet != nil {
		// A rotation that went on while this node was down (it holds the
		// new version staged, the rotating node has since activated it and
		// retired the old one): follow it before the first request can wrap
		// a key under the old version.
		fleet.refresh()
	}
	// Nothing below fails before serving.
	errc := make(chan error, 3)
	httpState.up.Store(true) // up from here: Serve accepts on a bound listener
	hostState.up.Store(true)
	go func() { errc <- httpState.serve(func() error { return api.Serve(httpLn) }) }()
	go func() { errc <- hostState.serve(func() error { return host.Serve(hostLn) }) }()
	adm := &adminServer{ln: adminLn, svc: svc, store: app.Store, cust: app.Custody, audit: trail, access: mgr, mpa: reg, log: log.Named("admin"), disk: app.Disk}
	go adm.serve()
	runCtx, cancelRun := context.WithCancel(context.Background())
	var background sync.WaitGroup
	background.Add(3)
	go func() {
		defer background.Done()
		svc.Run(runCtx, time.Minute)
	}()
	if gcLimitFollows.Load() {
		background.Add(1)
		go func() {
			defer background.Done()
			followWorkingKeys(runCtx, svc.CachedKeys, setMemoryLimit, time.Second)
		}()
	}
	go func() {
		defer background.Done()
		app.Custody.Watch(runCtx, cfg.PKCS11.TokenProbeInterval())
	}()
	go func() {
		defer background.Done()
		watchWritable(runCtx, cfg.DataDir, writeProbeEvery, writable, log.Named("datadir"))
	}()
	repl.start(runCtx, &background, errc)
	background.Add(1)
	go func() { // the free-space state follows the disk when nothing writes (and is logged when it changes)
		defer background.Done()
		app.Disk.Run(runCtx, 5*time.Second)
	}()
	tel.serving.Set(nil)

	readyFields := []zap.Field{zap.String("http", scheme+"://"+httpLn.Addr().String()),
		zap.String("host", hostLn.Addr().String()), zap.String("replication", repl.addr())}
	if u := tel.url(); u != "" {
		readyFields = append(readyFields, zap.String("ops", u))
	}
	if fleet != nil {
		fleet.refresh() // readiness from now, not from the next heartbeat
		fleet.setAddrs(scheme+"://"+httpLn.Addr().String(), hostLn.Addr().String(), tel.url())
		readyFields = append(readyFields, zap.String("node", cfg.Fleet.Node))
	}
	log.Info("payhsm ready", append(readyFields, zap.String("dataDir", cfg.DataDir), zap.Bool("dev", dev),
		zap.String("version", version.String()))...)
	notify("READY=1")

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case serveErr = <-errc:
		log.Error("listener failed", zap.Error(serveErr))
	}
	notify("STOPPING=1")
	tel.serving.Set(errors.New("shutting down"))
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
	repl.shutdown(shutCtx)
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

// httpEventLoops is the HTTP server's event-loop count (http.eventLoops):
// automatic means none on etcd, where a working key's cache miss reads the
// cluster over the network and would hold up every connection of its loop
// (for the engine's timeout when the cluster is unreachable), and the
// server's own default (one per two CPUs) otherwise.
func httpEventLoops(cfg *appliance.Config) int {
	if cfg.HTTP.EventLoops == 0 && cfg.Keystore.Engine == appliance.EngineEtcd {
		return -1
	}
	return cfg.HTTP.EventLoops
}
