// Package replication owns the channel between payhsm sites for Multi-Region
// key replication: a mutually authenticated TLS endpoint (each side pins the
// other's certificate by its SHA-256 fingerprint; no certificate authority is
// trusted) that receives replica snapshots, and the sender loop that drains
// the durable outbox the operations layer keeps (ops/replication.go) to the
// peer sites. It is not the AWS API: only configured peer sites can reach
// it, and nothing it carries is clear key material (a snapshot's key block is
// wrapped under the profile main key the sites share).
package replication

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"payhsm/fault"
	"payhsm/ops"
)

// applyPath is the endpoint that receives a replica snapshot.
const applyPath = "/payhsm/replication/v1/apply"

// maxBody bounds a snapshot (a key block, metadata and at most a few hundred tags).
const maxBody = 1 << 20

// Peer is a site this site replicates to and accepts replicas from.
type Peer struct {
	Region   string
	Endpoint string // host:port of the peer's replication listener
	// Fingerprint is the SHA-256 of the peer's certificate (DER).
	Fingerprint [32]byte
}

// Config configures the channel.
type Config struct {
	// Certificate is this site's identity on the channel, presented both as
	// a server and as a client.
	Certificate tls.Certificate
	Peers       []Peer
	// RetryInterval is how long a pending delivery waits before it is tried
	// again after a failure, and how often the outbox is scanned (default 5s).
	RetryInterval time.Duration
	// Timeout bounds one delivery (default 10s).
	Timeout time.Duration
	// Received, when set, is given every snapshot the endpoint decoded (the
	// request body as it arrived, TLS removed) and the region of the peer
	// that sent it, before it is applied. It must not keep body. The
	// daemon sets it only in a binary built with the payhsm_e2e_capture
	// tag, for the end-to-end test that checks what crosses the wire.
	Received func(peer string, body []byte)
	// Synchronized, when set, is told each delivery a peer acknowledged
	// (recorded in the outbox first): key keyID reached generation gen in
	// region. The daemon writes it to the audit trail.
	Synchronized func(keyID, region string, gen uint64)
	// Applied, when set, is told each snapshot this site applied: the
	// replica of key keyID, from primary region from, at generation gen
	// (deleted: the primary asked for its deletion).
	Applied func(keyID, from string, gen uint64, deleted bool)
}

// Replicator serves the replication endpoint and runs the sender.
type Replicator struct {
	cfg     Config
	svc     *ops.Service
	log     *zap.Logger
	byPrint map[[32]byte]string // certificate fingerprint → peer region
	peers   map[string]Peer
	clients map[string]*http.Client
	wake    chan struct{}
	srv     *http.Server
}

// Fingerprint returns the SHA-256 of a certificate's DER.
func Fingerprint(der []byte) [32]byte { return sha256.Sum256(der) }

// FingerprintHex is Fingerprint in lowercase hexadecimal.
func FingerprintHex(der []byte) string {
	f := Fingerprint(der)
	return hex.EncodeToString(f[:])
}

// ParseFingerprint parses a SHA-256 fingerprint in hexadecimal (colons allowed).
func ParseFingerprint(s string) ([32]byte, error) {
	var out [32]byte
	b, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	if err != nil || len(b) != 32 {
		return out, errors.New("a certificate fingerprint is a SHA-256 (64 hexadecimal digits)")
	}
	copy(out[:], b)
	return out, nil
}

// New returns a Replicator for svc. It configures svc with the peer regions.
func New(cfg Config, svc *ops.Service, log *zap.Logger) (*Replicator, error) {
	if len(cfg.Certificate.Certificate) == 0 {
		return nil, errors.New("replication: no certificate")
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = 5 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	r := &Replicator{cfg: cfg, svc: svc, log: log, byPrint: map[[32]byte]string{}, peers: map[string]Peer{},
		clients: map[string]*http.Client{}, wake: make(chan struct{}, 1)}
	// The server exists before Serve and Shutdown run, on whatever
	// goroutines: neither writes the field the other reads.
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+applyPath, r.apply)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, ErrorLog: zap.NewStdLog(log)}
	var regions []string
	for _, p := range cfg.Peers {
		if _, dup := r.peers[p.Region]; dup {
			return nil, fmt.Errorf("replication: peer region %s listed twice", p.Region)
		}
		if other, dup := r.byPrint[p.Fingerprint]; dup {
			return nil, fmt.Errorf("replication: peers %s and %s have the same certificate", other, p.Region)
		}
		r.peers[p.Region] = p
		r.byPrint[p.Fingerprint] = p.Region
		r.clients[p.Region] = r.client(p)
		regions = append(regions, p.Region)
	}
	if err := svc.SetReplication(regions, r.Wake); err != nil {
		return nil, err
	}
	return r, nil
}

// Wake tells the sender the outbox changed.
func (r *Replicator) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// errPin is a peer certificate that is not the pinned one.
var errPin = errors.New("the peer's certificate does not match its pinned fingerprint")

// pinned verifies a peer's certificate by its fingerprint alone (on every
// connection, resumed sessions included).
func pinned(want [32]byte) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 || Fingerprint(cs.PeerCertificates[0].Raw) != want {
			return errPin
		}
		return nil
	}
}

// client is the HTTPS client for one peer: this site's certificate, and the
// peer's certificate pinned (no CA, no host name: the fingerprint is the
// identity).
func (r *Replicator) client(p Peer) *http.Client {
	tc := &tls.Config{
		Certificates: []tls.Certificate{r.cfg.Certificate},
		MinVersion:   tls.VersionTLS13,
		// The chain is not verified against a CA: VerifyConnection pins the
		// peer's exact certificate, which is stronger for two known sites.
		InsecureSkipVerify: true, //nolint:gosec // G402: verification is the pin below.
		VerifyConnection:   pinned(p.Fingerprint),
	}
	return &http.Client{
		Timeout: r.cfg.Timeout,
		Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: false, MaxIdleConnsPerHost: 2,
			DialContext: (&net.Dialer{Timeout: r.cfg.Timeout}).DialContext, TLSHandshakeTimeout: r.cfg.Timeout},
	}
}

// serverTLS accepts only clients presenting a pinned peer certificate.
func (r *Replicator) serverTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{r.cfg.Certificate},
		MinVersion:   tls.VersionTLS13,
		ClientAuth:   tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errPin
			}
			if _, ok := r.byPrint[Fingerprint(cs.PeerCertificates[0].Raw)]; !ok {
				return errors.New("the client's certificate is not a configured replication peer's")
			}
			return nil
		},
	}
}

// Listen opens the replication listener on addr (TLS).
func (r *Replicator) Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("replication listener: %w", err)
	}
	return tls.NewListener(ln, r.serverTLS()), nil
}

// Serve serves the replication endpoint on ln until Shutdown (at once when
// Shutdown came first).
func (r *Replicator) Serve(ln net.Listener) error {
	err := r.srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the endpoint, letting a delivery in progress finish.
func (r *Replicator) Shutdown(ctx context.Context) error {
	return r.srv.Shutdown(ctx)
}

// reply is the endpoint's answer.
type reply struct {
	Error string `json:"error,omitempty"`
	// Permanent: the peer refused the snapshot (retrying without a change
	// of configuration or keys will not help).
	Permanent bool `json:"permanent,omitempty"`
}

func (r *Replicator) apply(w http.ResponseWriter, req *http.Request) {
	region := ""
	if req.TLS != nil && len(req.TLS.PeerCertificates) > 0 {
		region = r.byPrint[Fingerprint(req.TLS.PeerCertificates[0].Raw)]
	}
	if region == "" { // the handshake already refused it; belt and braces
		writeReply(w, http.StatusForbidden, reply{Error: "not a replication peer", Permanent: true})
		return
	}
	var snap ops.ReplicaSnapshot
	body, err := io.ReadAll(io.LimitReader(req.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		writeReply(w, http.StatusBadRequest, reply{Error: "unreadable or oversized snapshot", Permanent: true})
		return
	}
	if err := json.Unmarshal(body, &snap); err != nil {
		writeReply(w, http.StatusBadRequest, reply{Error: "malformed snapshot", Permanent: true})
		return
	}
	if r.cfg.Received != nil {
		r.cfg.Received(region, body)
	}
	if err := r.svc.ApplyReplica(region, &snap); err != nil {
		f := fault.As(err)
		status, msg, permanent := http.StatusInternalServerError, "the replica could not be stored", false
		if f != nil && f.Kind != fault.Internal {
			status, msg, permanent = http.StatusConflict, fault.ClientMessage(err), true
		}
		r.log.Warn("replica refused", zap.String("peer", region), zap.String("key", snap.KeyID), zap.Error(err))
		writeReply(w, status, reply{Error: msg, Permanent: permanent})
		return
	}
	r.log.Info("replica applied", zap.String("peer", region), zap.String("key", snap.KeyID), zap.Uint64("generation", snap.Gen),
		zap.Bool("delete", snap.Delete))
	if r.cfg.Applied != nil {
		r.cfg.Applied(snap.KeyID, region, snap.Gen, snap.Delete)
	}
	writeReply(w, http.StatusOK, reply{})
}

func writeReply(w http.ResponseWriter, status int, rep reply) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(rep) // the peer sees a failed write as a failed delivery
}

// Run drains the outbox until ctx ends: at start, whenever woken, and every
// RetryInterval. A peer that fails a delivery is not tried again in that pass.
func (r *Replicator) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.RetryInterval)
	defer t.Stop()
	for {
		r.pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-t.C:
		}
	}
}

// pass tries every pending delivery once, in parallel across peers.
func (r *Replicator) pass(ctx context.Context) {
	items, err := r.svc.ReplicationOutbox()
	if err != nil {
		r.log.Error("read the replication outbox", zap.Error(err))
		return
	}
	byRegion := map[string][]ops.Outbound{}
	for _, it := range items {
		byRegion[it.Region] = append(byRegion[it.Region], it)
	}
	var wg sync.WaitGroup
	for _, its := range byRegion {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, it := range its {
				if ctx.Err() != nil || !r.deliver(ctx, it) {
					return
				}
			}
		}()
	}
	wg.Wait()
}

// deliver sends one pending key to its region; false stops the region's pass
// (the peer is unreachable).
func (r *Replicator) deliver(ctx context.Context, it ops.Outbound) bool {
	failed := func(reason string, permanent bool) {
		if err := r.svc.ReplicationAttemptFailed(it.KeyID, it.Region, reason, permanent); err != nil {
			r.log.Error("record a failed replication attempt", zap.String("key", it.KeyID), zap.Error(err))
		}
	}
	client, ok := r.clients[it.Region]
	if !ok {
		failed(fmt.Sprintf("region %s is not a configured replication peer of this site", it.Region), true)
		return true
	}
	snap, gen, ok, err := r.svc.ReplicationSnapshot(it.KeyID, it.Region)
	if err != nil {
		r.log.Error("replication snapshot", zap.String("key", it.KeyID), zap.Error(err))
		failed("the key could not be read at the primary site", false)
		return true
	}
	if !ok {
		return true
	}
	body, err := json.Marshal(snap)
	if err != nil {
		failed("the snapshot could not be encoded", true)
		return true
	}
	peer := r.peers[it.Region]
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+peer.Endpoint+applyPath, bytes.NewReader(body))
	if err != nil {
		failed("bad peer endpoint "+peer.Endpoint, true)
		return true
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, errPin) {
			r.log.Error("replication peer refused: certificate pin mismatch; nothing sent", zap.String("peer", it.Region), zap.String("endpoint", peer.Endpoint))
			failed(fmt.Sprintf("peer %s at %s presented a certificate that does not match its pinned fingerprint; nothing was sent", it.Region, peer.Endpoint), true)
		} else {
			r.log.Warn("replication peer unreachable", zap.String("peer", it.Region), zap.Error(err))
			failed(fmt.Sprintf("peer %s at %s is unreachable; retrying", it.Region, peer.Endpoint), false)
		}
		return false
	}
	defer func() { _ = resp.Body.Close() }()
	var rep reply
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&rep) // an unreadable reply leaves rep empty
	if resp.StatusCode != http.StatusOK {
		msg := rep.Error
		if msg == "" {
			msg = resp.Status
		}
		failed(fmt.Sprintf("peer %s refused the replica: %s", it.Region, msg), rep.Permanent)
		return true
	}
	if err := r.svc.ReplicationDelivered(it.KeyID, it.Region, gen); err != nil {
		r.log.Error("record a delivered replica", zap.String("key", it.KeyID), zap.Error(err))
		return true
	}
	if r.cfg.Synchronized != nil {
		r.cfg.Synchronized(it.KeyID, it.Region, gen)
	}
	return true
}
