package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"

	"go.uber.org/zap"

	"payhsm/appliance"
	"payhsm/audit"
	"payhsm/ops"
	"payhsm/replication"
)

// siteReplication is the daemon's Multi-Region key replication: nil r when
// the configuration names no peers (the operations then refuse every
// replication region).
type siteReplication struct {
	cfg *appliance.ReplicationConfig
	r   *replication.Replicator
	ln  net.Listener
	log *zap.Logger
}

// newReplication sets up the site's replication; record writes an event to
// the audit trail (the guide's CloudTrail "SynchronizeMultiRegionKey").
func newReplication(cfg *appliance.ReplicationConfig, svc *ops.Service, record func(audit.Event), log *zap.Logger) (*siteReplication, error) {
	s := &siteReplication{cfg: cfg, log: log}
	if !cfg.Enabled() {
		return s, svc.SetReplication(nil, nil)
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("replication TLS: %w", err)
	}
	rc := replication.Config{Certificate: cert, RetryInterval: cfg.Retry(), Received: replicationCapture(log),
		Synchronized: func(id, region string, gen uint64) {
			record(audit.Event{Operation: "SynchronizeMultiRegionKey", Keys: []string{svc.KeyARN(id)},
				Detail: fmt.Sprintf("replicationRegion %s acknowledged generation %d", region, gen)})
		},
		Applied: func(id, from string, gen uint64, deleted bool) {
			what := "replica applied"
			if deleted {
				what = "replica deleted"
			}
			record(audit.Event{Operation: "SynchronizeMultiRegionKey", Keys: []string{svc.KeyARN(id)},
				Detail: fmt.Sprintf("%s: primaryRegion %s generation %d", what, from, gen)})
		}}
	for _, p := range cfg.Peers {
		fp, err := replication.ParseFingerprint(p.CertificateSHA256)
		if err != nil {
			return nil, fmt.Errorf("replication peer %s: %w", p.Region, err)
		}
		rc.Peers = append(rc.Peers, replication.Peer{Region: p.Region, Endpoint: p.Endpoint, Fingerprint: fp})
	}
	if s.r, err = replication.New(rc, svc, log); err != nil {
		return nil, err
	}
	log.Info("replication identity", zap.String("certificateSha256", replication.FingerprintHex(cert.Certificate[0])),
		zap.Int("peers", len(rc.Peers)))
	return s, nil
}

// listen opens the replication listener (nothing when replication is off).
func (s *siteReplication) listen() error {
	if s.r == nil {
		return nil
	}
	ln, err := s.r.Listen(s.cfg.Listen)
	if err != nil {
		return err
	}
	s.ln = ln
	return nil
}

// addr is the listener's address ("" when off).
func (s *siteReplication) addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// start serves the endpoint and runs the sender until ctx ends.
func (s *siteReplication) start(ctx context.Context, wg *sync.WaitGroup, errc chan<- error) {
	if s.r == nil {
		return
	}
	go func() { errc <- s.r.Serve(s.ln) }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.r.Run(ctx)
	}()
}

// shutdown stops the endpoint.
func (s *siteReplication) shutdown(ctx context.Context) {
	if s.r == nil {
		return
	}
	if err := s.r.Shutdown(ctx); err != nil {
		s.log.Warn("replication drain incomplete", zap.Error(err))
	}
}
