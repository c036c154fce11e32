package appliance

import (
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"time"
)

// ReplicationConfig configures Multi-Region key replication between sites
// (see docs/design.md, "Multi-Region key replication"): this site's
// replication listener and identity, and the peer sites.
type ReplicationConfig struct {
	// Listen is the replication listener (host:port), mutual TLS only.
	Listen string `json:"listen"`
	// TLSCert and TLSKey are this site's identity on the channel (PEM); the
	// peers pin its certificate's SHA-256 fingerprint.
	TLSCert string `json:"tlsCert"`
	TLSKey  string `json:"tlsKey"`
	// RetryInterval is how often pending deliveries are retried (a Go
	// duration, default 5s).
	RetryInterval string            `json:"retryInterval"`
	Peers         []ReplicationPeer `json:"peers"`
}

// ReplicationPeer is a peer site.
type ReplicationPeer struct {
	Region   string `json:"region"`
	Endpoint string `json:"endpoint"` // host:port of its replication listener
	// CertificateSHA256 pins the peer's certificate (64 hex digits).
	CertificateSHA256 string `json:"certificateSha256"`
}

// Enabled reports whether replication is configured.
func (r *ReplicationConfig) Enabled() bool { return r.Listen != "" || len(r.Peers) > 0 }

// Retry is RetryInterval parsed (5s when unset).
func (r *ReplicationConfig) Retry() time.Duration {
	d, err := time.ParseDuration(r.RetryInterval)
	if err != nil || d <= 0 {
		return 5 * time.Second
	}
	return d
}

func (r *ReplicationConfig) validate(own string) []error {
	if !r.Enabled() {
		return nil
	}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("replication."+format, a...)) }
	if _, _, err := net.SplitHostPort(r.Listen); err != nil {
		bad("listen %q: %v", r.Listen, err)
	}
	if r.TLSCert == "" || r.TLSKey == "" {
		bad("tlsCert and tlsKey are required: they are this site's identity on the replication channel")
	}
	if r.RetryInterval != "" {
		if d, err := time.ParseDuration(r.RetryInterval); err != nil || d < 10*time.Millisecond || d > time.Hour {
			bad("retryInterval %q: a duration from 10ms to 1h", r.RetryInterval)
		}
	}
	seen := map[string]bool{}
	for i, p := range r.Peers {
		switch {
		case !regionRe.MatchString(p.Region):
			bad("peers[%d].region %q: must look like us-west-2", i, p.Region)
		case p.Region == own:
			bad("peers[%d].region %s is this site's own region", i, p.Region)
		case seen[p.Region]:
			bad("peers[%d].region %s is listed twice", i, p.Region)
		}
		seen[p.Region] = true
		if _, _, err := net.SplitHostPort(p.Endpoint); err != nil {
			bad("peers[%d].endpoint %q: %v", i, p.Endpoint, err)
		}
		if b, err := hex.DecodeString(strings.ReplaceAll(p.CertificateSHA256, ":", "")); err != nil || len(b) != 32 {
			bad("peers[%d].certificateSha256: the SHA-256 fingerprint of the peer's replication certificate (64 hex digits)", i)
		}
	}
	return errs
}
