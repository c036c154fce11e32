package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"payhsm/access"
	"payhsm/appliance"
	"payhsm/appliance/diskguard"
	"payhsm/audit"
	"payhsm/ceremony/mpa"
	"payhsm/health"
	"payhsm/hsm/custody"
	"payhsm/internal/version"
	"payhsm/keystore"
	"payhsm/metrics"
	"payhsm/ops"
	"payhsm/protocol/hostcmd"
)

// telemetry is the daemon's ops listener and what it serves: liveness,
// readiness (the checks), the metrics registry and the version. It starts
// before the appliance opens, so /healthz answers and /readyz says
// "starting" during a long start (a key store upgrade, the verification of
// every record), and stops last.
type telemetry struct {
	metrics *metrics.Registry
	checks  health.Checker
	serving *health.State // "starting" until both front ends serve; "shutting down" once the drain begins
	srv     *http.Server
	ln      net.Listener // nil when the default address was taken
}

// Readiness check names (the "check" label of payhsm_readiness_check and
// the names in /readyz).
const (
	checkServing  = "serving"
	checkToken    = "token"
	checkKeystore = "keystore"
	checkHTTP     = "http_listener"
	checkHost     = "host_listener"
	checkDisk     = "disk"
	checkAudit    = "audit"
)

func newTelemetry() *telemetry {
	t := &telemetry{metrics: metrics.New(version.Get().Version), serving: health.NewState(errors.New("starting"))}
	t.checks.Add(checkServing, t.serving.Check)
	mux := http.NewServeMux()
	mux.Handle("/healthz", health.HealthzHandler())
	mux.Handle("/readyz", t.checks.ReadyzHandler())
	mux.Handle("/metrics", t.metrics.Handler())
	mux.Handle("/version", health.JSONHandler(version.Get()))
	t.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
	return t
}

// listen binds the ops listener and serves it. A configured address that
// cannot be bound fails the start; the default one, when taken (another
// appliance on this machine), is skipped with a warning.
func (t *telemetry) listen(cfg *appliance.Config, log *zap.Logger) error {
	t.srv.ErrorLog = zap.NewStdLog(log)
	ln, err := net.Listen("tcp", cfg.Ops.Addr)
	if err != nil {
		if cfg.OpsAddrDefaulted() && errors.Is(err, syscall.EADDRINUSE) {
			log.Warn("the ops listener's default address is taken: serving without /healthz, /readyz and /metrics (set ops.addr or --ops-addr)",
				zap.String("addr", cfg.Ops.Addr))
			return nil
		}
		return fmt.Errorf("ops listener: %w", err)
	}
	t.ln = ln
	go func() {
		if err := t.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("ops listener failed", zap.Error(err))
		}
	}()
	return nil
}

// url is the ops listener's base URL, or "" when it is not serving.
func (t *telemetry) url() string {
	if t.ln == nil {
		return ""
	}
	return "http://" + t.ln.Addr().String()
}

func (t *telemetry) close(log *zap.Logger) {
	if t.ln == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.srv.Shutdown(ctx); err != nil {
		log.Warn("ops listener drain incomplete", zap.Error(err))
		_ = t.srv.Close() // out of time: torn down
	}
}

// listenerState is a front end's readiness: up between its Serve starting
// and returning.
type listenerState struct{ up atomic.Bool }

func (l *listenerState) check() error {
	if !l.up.Load() {
		return errors.New("not serving")
	}
	return nil
}

// serve runs serve with the state up while it runs.
func (l *listenerState) serve(serve func() error) error {
	l.up.Store(true)
	defer l.up.Store(false)
	return serve()
}

// sources is what the daemon exposes to readiness and metrics beside the
// two front ends' own collectors.
type sources struct {
	store    *keystore.Store
	cust     *custody.Custodian
	svc      *ops.Service
	host     *hostcmd.Server
	writable *health.State // the data directory's write probe
	http     *listenerState
	hostLn   *listenerState
	disk     *diskguard.Watchdog
	trail    *audit.Trail
	access   *access.Authorizer
	mpa      *mpa.Registry
}

// register adds the readiness checks and the metrics read at scrape time.
// Adding a source is one line here.
func (t *telemetry) register(src sources) error {
	c, m := &t.checks, t.metrics
	c.Add(checkToken, func() error { return tokenCheck(src.cust.TokenStatus()) })
	c.Add(checkKeystore, func() error {
		if err := src.store.Failed(); err != nil {
			return err
		}
		if err := src.store.Reachable(); err != nil { // a shared store (etcd) out of reach
			return err
		}
		return src.writable.Check()
	})
	c.Add(checkHTTP, src.http.check)
	c.Add(checkHost, src.hostLn.check)
	c.Add(checkDisk, func() error {
		if st := src.disk.Stats(); st.Low {
			return fmt.Errorf("data disk has %d bytes free, below its %d-byte reserve: writes are refused", st.Avail, st.Reserve)
		}
		return nil
	})
	c.Add(checkAudit, func() error {
		if src.trail.Lag().Failed {
			return errors.New("the audit trail cannot write: control-plane calls are refused")
		}
		return nil
	})

	m.GaugeFunc("keystore_contact_age_seconds", "Seconds since this node last confirmed it is current with the shared key store (etcd; 0 on Pebble). Past keystore.staleness, cached keys are refused.",
		func() float64 {
			if t, ok := src.store.Contact(); ok {
				return time.Since(t).Seconds()
			}
			return 0
		})
	m.GaugeFunc("leader", "1 while this node runs the fleet's background jobs (always on Pebble).", func() float64 { return metrics.Bool(src.svc.Leading()) })
	m.GaugeFunc("ready", "1 when /readyz answers ready: every readiness check passes.", func() float64 { return metrics.Bool(c.Ready()) })
	for _, name := range c.Names() {
		m.GaugeFunc("readiness_check", "1 when the readiness check passes, by check.",
			func() float64 { return metrics.Bool(c.Check(name) == nil) }, "check", name)
	}

	m.GaugeFunc("open_connections", "Open client connections, by listener.",
		func() float64 { return float64(src.host.Connections()) }, "listener", "host")

	conns := src.host.ConnStats
	m.CounterFunc("host_accepted_connections_total", "Host-port connections accepted.", func() float64 { return float64(conns().Accepted) })
	m.CounterFunc("host_evicted_connections_total", "Longest-idle host-port connections closed to admit a newcomer, by the limit reached.",
		func() float64 { return float64(conns().EvictedPerAddress) }, "limit", "address")
	m.CounterFunc("host_evicted_connections_total", "Longest-idle host-port connections closed to admit a newcomer, by the limit reached.",
		func() float64 { return float64(conns().EvictedOverall) }, "limit", "overall")
	m.CounterFunc("host_refused_connections_total", "Host-port connections closed unserved (during shutdown).", func() float64 { return float64(conns().Refused) })

	disk := src.disk.Stats
	m.GaugeFunc("disk_available_bytes", "Free bytes on the data directory's filesystem (last sample).", func() float64 { return float64(disk().Avail) })
	m.GaugeFunc("disk_reserve_bytes", "The reserve kept free on the data directory's filesystem.", func() float64 { return float64(disk().Reserve) })
	m.GaugeFunc("disk_low", "1 while free space is below the reserve and writes are refused.", func() float64 { return metrics.Bool(disk().Low) })
	m.CounterFunc("disk_refused_writes_total", "Writes refused because free space was below the reserve.", func() float64 { return float64(disk().Refused) })

	lag := src.trail.Lag
	m.GaugeFunc("audit_unsynced_entries", "Audit entries appended but not yet synced.", func() float64 { return float64(lag().Unsynced) })
	m.GaugeFunc("audit_unsealed_entries", "Audit entries after the last seal.", func() float64 { return float64(lag().Unsealed) })
	m.GaugeFunc("audit_queued_events", "Data events waiting for the audit writer.", func() float64 { return float64(lag().Queued) })
	m.CounterFunc("audit_dropped_events_total", "Data events dropped because the audit writer fell behind.", func() float64 { return float64(lag().Dropped) })
	m.GaugeFunc("audit_failed", "1 while the audit trail cannot write (control-plane calls are refused).", func() float64 { return metrics.Bool(lag().Failed) })

	m.CounterFunc("access_denials_total", "Requests refused by access control (both front ends).", func() float64 { return float64(src.access.Denials()) })
	if src.mpa != nil {
		m.CounterFunc("mpa_refused_total", "Protected requests refused until their Multi-Party Approval session is approved.",
			func() float64 { r, _ := src.mpa.Counts(); return float64(r) })
		m.CounterFunc("mpa_approvals_used_total", "Approved Multi-Party Approval sessions used by the request they allowed.",
			func() float64 { _, u := src.mpa.Counts(); return float64(u) })
	}

	cache := src.svc.CacheStats
	m.CounterFunc("working_key_cache_hits_total", "Working-key lookups served from the cache.", func() float64 { return float64(cache().Hits) })
	m.CounterFunc("working_key_cache_misses_total", "Working-key lookups that read and unwrapped the key.", func() float64 { return float64(cache().Misses) })
	m.CounterFunc("working_key_cache_evictions_total", "Working keys dropped from the cache to make room.", func() float64 { return float64(cache().Evictions) })
	m.CounterFunc("working_key_cache_invalidations_total", "Working keys dropped from the cache because the key changed (or all of them: a rotation, a lost token).",
		func() float64 { return float64(cache().Invalidations) })
	m.GaugeFunc("working_key_cache_entries", "Working keys in the cache.", func() float64 { return float64(cache().Entries) })

	stats := metrics.Memo(time.Second, func() keystore.Stats {
		st, _ := src.store.Stats() // a closed or failed store reads as empty; keystore_failed says which
		return st
	})
	m.GaugeFunc("keystore_keys", "Key records in the key store (a key pending deletion counts until purged).", func() float64 { return float64(stats().Keys) })
	m.GaugeFunc("keystore_disk_bytes", "Disk space the key store takes.", func() float64 { return float64(stats().DiskBytes) })
	m.CounterFunc("keystore_integrity_failures_total", "Records that failed their integrity check when read (every detection, repeats included).",
		func() float64 { return float64(src.store.IntegrityFailures()) })
	m.GaugeFunc("keystore_failed", "1 once the key store has failed a durable write (it refuses every call until the daemon restarts).",
		func() float64 { return metrics.Bool(src.store.Failed() != nil) })

	tok := src.cust.TokenStatus
	m.GaugeFunc("token_up", "1 while the PKCS#11 token answers the probe.", func() float64 { return metrics.Bool(tok().Available) })
	m.GaugeFunc("token_refusing", "1 once the token has been unavailable for longer than pkcs11.lossGrace: operations that use keys are refused.",
		func() float64 { return metrics.Bool(tok().Refusing) })
	m.GaugeFunc("token_unavailable_seconds", "How long the token has been unavailable (0 while it answers).", func() float64 {
		if st := tok(); !st.Available {
			return time.Since(st.Since).Seconds()
		}
		return 0
	})
	m.CounterFunc("token_probes_total", "Token probes.", func() float64 { return float64(tok().Probes) })
	m.CounterFunc("token_probe_failures_total", "Token probes that failed.", func() float64 { return float64(tok().Failures) })
	m.CounterFunc("token_recoveries_total", "Times a lost token came back.", func() float64 { return float64(tok().Recoveries) })
	return m.Err()
}

func tokenCheck(st custody.TokenStatus) error {
	if st.Available {
		return nil
	}
	return fmt.Errorf("PKCS#11 token unavailable since %s: %v", st.Since.UTC().Format(time.RFC3339), st.Err)
}

// writeProbeName is the file the data directory's write probe writes.
const writeProbeName = ".write-probe"

// probeWritable checks that dir accepts a synced write: it writes, syncs
// and removes a small file (a read-only remount, a failing disk, a full
// disk without the watchdog's reserve).
func probeWritable(dir string) error {
	path := filepath.Join(dir, writeProbeName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600) //nolint:gosec // G304: a fixed name in the data directory
	if err != nil {
		return fmt.Errorf("data directory not writable: %w", err)
	}
	_, werr := f.Write([]byte("payhsm\n"))
	err = errors.Join(werr, f.Sync(), f.Close(), os.Remove(path))
	if err != nil {
		return fmt.Errorf("data directory not writable: %w", err)
	}
	return nil
}

// watchWritable runs probeWritable on dir every interval until ctx ends,
// recording the outcome in st and logging its changes.
func watchWritable(ctx context.Context, dir string, every time.Duration, st *health.State, log *zap.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	var last error
	for {
		err := probeWritable(dir)
		st.Set(err)
		switch {
		case err != nil && last == nil:
			log.Error("the data directory does not accept writes: not ready", zap.Error(err))
		case err == nil && last != nil:
			log.Warn("the data directory accepts writes again")
		}
		last = err
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// writeProbeEvery is how often the data directory's write probe runs.
const writeProbeEvery = 10 * time.Second
