package appliance

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"payhsm/appliance/diskguard"
	"payhsm/hsm/custody"
	"payhsm/keystore"
	"payhsm/keystore/kv/etcdkv"
	"payhsm/keystore/kv/pebblekv"
)

// Config is the daemon's configuration file (JSON, every member checked at start).
type Config struct {
	DataDir string       `json:"dataDir"`
	PKCS11  PKCS11Config `json:"pkcs11"`
	// Keystore selects the key store's engine: Pebble in DataDir/keystore
	// (the default) or a prefix of an etcd cluster.
	Keystore KeystoreConfig `json:"keystore"`
	HTTP     HTTPConfig     `json:"http"`
	Host     HostConfig     `json:"host"`
	// CredentialsFile holds the SigV4 access keys accepted on the HTTP API, in
	// AWS shared-credentials format (every profile's key pair is accepted).
	CredentialsFile string `json:"credentialsFile"`
	Region          string `json:"region"`
	Account         string `json:"account"`
	Profile         string `json:"profile"`
	LogLevel        string `json:"logLevel"`
	// Replication configures Multi-Region key replication (replication.go).
	Replication ReplicationConfig `json:"replication"`
	// DiskReserve is the free space kept on the data directory's
	// filesystem: below it writes are refused and a start is refused (a
	// size such as "64MiB" or "1GB", or a percentage such as "5%"; default
	// diskguard.DefaultReserve).
	DiskReserve string `json:"diskReserve"`
	// Audit tunes the audit trail (package audit; docs/audit.md).
	Audit AuditConfig `json:"audit"`
	// LogFormat is json (default: one JSON object a line, for journald and
	// log shippers) or text (zap's console format, for a person).
	LogFormat string    `json:"logFormat"`
	Ops       OpsConfig `json:"ops"`
	// Fleet names this appliance among the nodes sharing an etcd key store
	// (docs/fleet.md).
	Fleet FleetConfig `json:"fleet"`

	// opsAddrDefaulted: ops.addr was not configured (Defaults filled it in).
	opsAddrDefaulted bool
}

// AuditConfig is the audit trail's configuration. Every member is optional.
type AuditConfig struct {
	// Dir holds the trail (default DATA/audit).
	Dir string `json:"dir"`
	// DataEventAccounts lists the accounts whose data-plane calls (AWS data
	// plane and host port) are recorded, as CloudTrail data events are
	// opt-in per account. An appliance serves one account (account): list it
	// to turn data events on.
	DataEventAccounts []string `json:"dataEventAccounts"`
	// SealEvery seals the chain every this many entries (default 1000);
	// SealInterval at least this often (default "1m").
	SealEvery    int      `json:"sealEvery"`
	SealInterval Duration `json:"sealInterval"`
	// RotateBytes rotates the active file at this size (default 64 MiB);
	// RotateAge at this age (default "24h").
	RotateBytes int64    `json:"rotateBytes"`
	RotateAge   Duration `json:"rotateAge"`
	// DataQueue is how many data events may wait for the writer (default
	// 16384); beyond it they are dropped and counted, never waited for.
	DataQueue int `json:"dataQueue"`
}

// OpsConfig is the operations listener: /healthz, /readyz, /metrics and
// /version over plain HTTP (docs/operations.md).
type OpsConfig struct {
	// Addr is where it listens (default 127.0.0.1:9100). A configured
	// address that cannot be bound stops the start; the default one, when
	// taken (another appliance on the machine), is skipped with a warning.
	Addr string `json:"addr"`
}

// OpsAddrDefaulted reports whether ops.addr is the default rather than configured.
func (c *Config) OpsAddrDefaulted() bool { return c.opsAddrDefaulted }

// DefaultOpsAddr is the ops listener's default address.
const DefaultOpsAddr = "127.0.0.1:9100"

// Duration is a time.Duration written in the configuration file as a Go
// duration string ("5m", "1s", "0s").
type Duration time.Duration

// UnmarshalJSON parses a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"90s\" or \"24h\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// DataEvents reports whether the served account opted in to data events.
func (c *Config) DataEvents() bool { return slices.Contains(c.Audit.DataEventAccounts, c.Account) }

// Token health defaults (see custody's health.go and docs/operations.md).
const (
	DefaultTokenLossGrace     = 5 * time.Minute
	DefaultTokenProbeInterval = time.Second
)

// PKCS11Config selects the token holding the region main key.
type PKCS11Config struct {
	Module     string `json:"module"`
	TokenLabel string `json:"tokenLabel"`
	// The user PIN comes from a file or an environment variable, never the command line.
	PINFile string `json:"pinFile"`
	PINEnv  string `json:"pinEnv"`
	// RegionKeyLabel is the PKCS#11 label of the region main key.
	RegionKeyLabel string `json:"regionKeyLabel"`
	// ProbeInterval is how often the daemon checks that the token answers
	// (default 1s). LossGrace is how long, once it does not, the main keys
	// already unsealed and the cached working keys keep serving before every
	// operation that uses them is refused (default 5m; 0s refuses at once).
	ProbeInterval *Duration `json:"probeInterval,omitempty"`
	LossGrace     *Duration `json:"lossGrace,omitempty"`
}

// TokenProbeInterval is the configured or default probe interval.
func (c *PKCS11Config) TokenProbeInterval() time.Duration {
	if c.ProbeInterval == nil {
		return DefaultTokenProbeInterval
	}
	return time.Duration(*c.ProbeInterval)
}

// TokenLossGrace is the configured or default loss grace.
func (c *PKCS11Config) TokenLossGrace() time.Duration {
	if c.LossGrace == nil {
		return DefaultTokenLossGrace
	}
	return time.Duration(*c.LossGrace)
}

// Key store engines (KeystoreConfig.Engine).
const (
	EnginePebble = "pebble"
	EngineEtcd   = "etcd"
)

// KeystoreConfig selects and configures the key store's engine.
type KeystoreConfig struct {
	// Engine is "pebble" (default: an embedded database in
	// DATA/keystore, for one appliance) or "etcd" (a prefix of an etcd v3
	// cluster, which a fleet of appliances shares). The members below are
	// etcd's only.
	Engine string `json:"engine"`
	// Endpoints are the members' client URLs (http://host:port or
	// https://host:port) or host:port.
	Endpoints []string `json:"endpoints"`
	// Prefix is the key prefix the store lives under, e.g.
	// "/payhsm/eu-west-1/" (see etcdkv.ValidatePrefix).
	Prefix string `json:"prefix"`
	// TLS is the client's certificate, key and the members' CA (PEM files);
	// all empty: plain TCP.
	TLS EtcdTLSConfig `json:"tls"`
	// DialTimeout and RequestTimeout ("5s", default 5s each) bound
	// connecting and each request.
	DialTimeout    Duration `json:"dialTimeout"`
	RequestTimeout Duration `json:"requestTimeout"`
	// MaxTxnOps and MaxRequestBytes must match the cluster's --max-txn-ops
	// and --max-request-bytes when those are changed from etcd's defaults
	// (128 and 1572864).
	MaxTxnOps       int `json:"maxTxnOps"`
	MaxRequestBytes int `json:"maxRequestBytes"`
	// Staleness ("30s", default keystore.DefaultStaleness) is how long a
	// node cut off from the cluster (unreachable, or without quorum) keeps
	// using the working keys it cached; after it, data-plane operations on
	// them are refused (ServiceUnavailableException; host error 41) until
	// the cluster is back. Longer keeps a cut-off node serving longer;
	// shorter honours sooner a StopKeyUsage or DeleteKey made meanwhile on
	// another node, which this one cannot see (docs/fleet.md).
	Staleness Duration `json:"staleness"`
	// LeaderTTL ("10s", default ops.DefaultLeaderTTL) is the lease of the
	// node that runs the fleet's background jobs (purge, rotation): when
	// that node is lost, another takes them over within about it.
	LeaderTTL Duration `json:"leaderTTL"`
	// BareKeyMarks (etcd only; Pebble always marks) lets the store mark
	// keys created without tags or an alias in their records, which spares
	// a working-key cache miss two range reads. Off by default on etcd: a
	// node of a release before 2026-12 refuses a record with the mark, so
	// turn it on once every node of the fleet runs this release or later
	// (docs/fleet.md, "Upgrades").
	BareKeyMarks bool `json:"bareKeyMarks"`
	// CacheMB (Pebble only) is the size in MiB of the key store's block
	// cache, which holds the tables' blocks as read, off the Go heap;
	// 0 (default) is pebblekv.DefaultCacheSize (1 GiB). Size it to hold
	// the store (about 300 bytes a key on disk, `du DATA/keystore`) so that
	// a key not in the working-key cache is read from memory
	// (docs/performance.md, "Cold keys"): smaller costs a read of the page
	// cache, a checksum and a decompression per such key.
	CacheMB int `json:"cacheMB"`
	// WorkingKeyCache is how many keys the daemon keeps opened (unwrapped
	// and scheduled) in memory at most, each up to 2.5 KiB of heap
	// (ops.WorkingKeyHeap) and as much again of room for the garbage
	// collector, whose memory limit follows the keys cached; a key not
	// among them costs a store read and an unwrap when used. 0 (default)
	// sizes it to a quarter of the machine's memory (or of the service's
	// cgroup limit, if lower) at 5 KiB a key, at least
	// ops.DefaultWorkingKeys: 1.2 million keys on 24 GiB. Set it at or
	// above the number of keys the data plane uses so that each is opened
	// once (docs/performance.md, "Cold keys"). Either engine.
	WorkingKeyCache int `json:"workingKeyCache"`
}

// Bounds of KeystoreConfig.WorkingKeyCache when set.
const (
	MinWorkingKeyCache = 1024
	MaxWorkingKeyCache = 1 << 26
)

// StalenessBound is the configured staleness, or its default.
func (k *KeystoreConfig) StalenessBound() time.Duration {
	if k.Staleness == 0 {
		return keystore.DefaultStaleness
	}
	return time.Duration(k.Staleness)
}

// Bounds of KeystoreConfig.Staleness and LeaderTTL.
const (
	minStaleness = time.Second
	minLeaderTTL = 2 * time.Second // etcdkv's least lease
	maxLeaderTTL = 5 * time.Minute
)

// EtcdTLSConfig names the PEM files of the etcd client's TLS.
type EtcdTLSConfig struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
	CA   string `json:"ca"`
}

// FleetConfig is this appliance's place in a fleet: several appliances
// (nodes), each with its own PKCS#11 token, serving one key store on etcd.
type FleetConfig struct {
	// Node is this node's name (1 to 32 of a-z 0-9 _ -, starting with a
	// letter), unique in the fleet: its custody and ceremony records, its
	// heartbeat and the x-payhsm-node header carry it. Required with
	// keystore.engine etcd; with pebble it may be left out ("": one
	// appliance, the record names of earlier releases).
	Node string `json:"node"`
	// HeartbeatInterval is how often the node writes its heartbeat
	// (default 2s; etcd only); the record expires after three intervals
	// (at least 5s) without one.
	HeartbeatInterval Duration `json:"heartbeatInterval"`
}

// DefaultHeartbeatInterval is fleet.heartbeatInterval's default.
const DefaultHeartbeatInterval = 2 * time.Second

// Heartbeat is the configured or default heartbeat interval.
func (f *FleetConfig) Heartbeat() time.Duration {
	if f.HeartbeatInterval == 0 {
		return DefaultHeartbeatInterval
	}
	return time.Duration(f.HeartbeatInterval)
}

// HTTPConfig is the AWS API listener.
type HTTPConfig struct {
	Addr    string `json:"addr"`
	TLSCert string `json:"tlsCert"`
	TLSKey  string `json:"tlsKey"`
	// AllowPlaintext permits plain HTTP on a non-loopback address.
	AllowPlaintext bool `json:"allowPlaintext"`
	// EventLoops is how many event loops serve plaintext connections'
	// data-plane requests (TLS connections always get a goroutine each):
	// 0 (default) one per two CPUs with the Pebble engine and none with
	// etcd, where a working key's cache miss is a network read that would
	// hold up the loop's other connections; -1 none; 1..256 that many.
	// docs/performance.md, "Event loops for plaintext HTTP".
	EventLoops int `json:"eventLoops"`
	// Driver is how the event loops wait and move bytes: "io_uring"
	// (default; Linux 6.0 or later, falls back to epoll, with a warning,
	// when no ring can be set up) or "epoll". docs/performance.md, "Event
	// loops for plaintext HTTP" compares them.
	Driver string `json:"driver"`
}

// HostConfig is the host-command listener.
type HostConfig struct {
	Addr         string `json:"addr"`
	HeaderLength int    `json:"headerLength"`
	// TLSCert and TLSKey make the port TLS-only. ClientCA (PEM bundle)
	// additionally requires client certificates issued by it (mutual TLS),
	// and AllowedClients restricts those to the listed subject common names
	// or SHA-256 certificate fingerprints (64 hex digits).
	TLSCert        string   `json:"tlsCert"`
	TLSKey         string   `json:"tlsKey"`
	ClientCA       string   `json:"clientCA"`
	AllowedClients []string `json:"allowedClients"`
	// MaxConnections (default 256) and MaxConnectionsPerAddress (default
	// min(64, maxConnections); IPv6: per /64) bound the open connections; at
	// a bound the longest-idle connection (of that address, at the
	// per-address bound) is closed to admit the new one.
	MaxConnections           int `json:"maxConnections"`
	MaxConnectionsPerAddress int `json:"maxConnectionsPerAddress"`
	// Principal is the principal (payhsm principals) of the port's clients
	// that no mTLS client certificate maps to: every plain-TCP client. On a
	// loopback address it defaults to the built-in default principal (the
	// configured credentials' owner); on any other address plain TCP requires
	// it, so that no network client is all-powerful by default.
	Principal string `json:"principal"`
	// EventLoops is how many event loops serve plain-TCP connections: 0
	// (default) one per two CPUs; -1 a goroutine per connection.
	EventLoops int `json:"eventLoops"`
	// Driver is how plain-TCP connections are served: "io_uring" (default;
	// Linux 6.0 or later, falls back to epoll, with a warning, when no ring
	// can be set up), "epoll" or "goroutine" (as eventLoops -1).
	// docs/performance.md ("io_uring driver") compares them: at 32 busy
	// connections io_uring takes about 0.4x epoll's CPU per command, at one
	// connection the same.
	Driver string `json:"driver"`
}

// Defaults fills unset members.
func (c *Config) Defaults() {
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.HTTP.Addr == "" {
		c.HTTP.Addr = "127.0.0.1:8080"
	}
	if c.Host.Addr == "" {
		c.Host.Addr = "127.0.0.1:1500"
	}
	if c.Host.HeaderLength == 0 {
		c.Host.HeaderLength = 4
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.Account == "" {
		c.Account = "000000000000"
	}
	if c.Profile == "" {
		c.Profile = "default"
	}
	if c.Host.Driver == "" {
		c.Host.Driver = "io_uring"
	}
	if c.HTTP.Driver == "" {
		c.HTTP.Driver = "io_uring"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.Keystore.Engine == "" {
		c.Keystore.Engine = EnginePebble
	}
	if c.DiskReserve == "" {
		c.DiskReserve = diskguard.DefaultReserve
	}
	if c.LogFormat == "" {
		c.LogFormat = "json"
	}
	if c.Ops.Addr == "" {
		c.Ops.Addr, c.opsAddrDefaulted = DefaultOpsAddr, true
	}
}

var (
	regionRe  = regexp.MustCompile(`^[a-z]{2}-[a-z]{1,16}-[0-9]+$`)
	accountRe = regexp.MustCompile(`^[0-9]{12}$`)
)

// Validate checks the configuration; dev is true for --dev (no PKCS#11 or credentials section needed).
func (c *Config) Validate(dev bool) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !regionRe.MatchString(c.Region) {
		bad("region %q: must look like us-east-1", c.Region)
	}
	if !accountRe.MatchString(c.Account) {
		bad("account %q: must be 12 digits", c.Account)
	}
	if err := custody.CheckProfileName(c.Profile); err != nil {
		bad("profile: %v", err)
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Addr); err != nil {
		bad("http.addr %q: %v", c.HTTP.Addr, err)
	}
	if _, _, err := net.SplitHostPort(c.Host.Addr); err != nil {
		bad("host.addr %q: %v", c.Host.Addr, err)
	}
	if c.Host.HeaderLength < 0 || c.Host.HeaderLength > 32 {
		bad("host.headerLength %d: must be 0..32", c.Host.HeaderLength)
	}
	if (c.HTTP.TLSCert == "") != (c.HTTP.TLSKey == "") {
		bad("http.tlsCert and http.tlsKey go together")
	}
	if (c.Host.TLSCert == "") != (c.Host.TLSKey == "") {
		bad("host.tlsCert and host.tlsKey go together")
	}
	if c.Host.ClientCA != "" && c.Host.TLSCert == "" {
		bad("host.clientCA needs host.tlsCert and host.tlsKey")
	}
	if len(c.Host.AllowedClients) > 0 && c.Host.ClientCA == "" {
		bad("host.allowedClients needs host.clientCA")
	}
	if c.Host.MaxConnections < 0 {
		bad("host.maxConnections must be positive")
	}
	if c.Host.MaxConnectionsPerAddress < 0 {
		bad("host.maxConnectionsPerAddress must be positive")
	}
	if c.Host.MaxConnections > 0 && c.Host.MaxConnectionsPerAddress > c.Host.MaxConnections {
		bad("host.maxConnectionsPerAddress %d exceeds host.maxConnections %d", c.Host.MaxConnectionsPerAddress, c.Host.MaxConnections)
	}
	if c.HTTP.EventLoops < -1 || c.HTTP.EventLoops > 256 {
		bad("http.eventLoops %d: must be -1 (a goroutine per connection), 0 (automatic) or 1..256", c.HTTP.EventLoops)
	}
	if c.Host.EventLoops < -1 || c.Host.EventLoops > 256 {
		bad("host.eventLoops %d: must be -1 (a goroutine per connection), 0 (one per two CPUs) or 1..256", c.Host.EventLoops)
	}
	switch c.HTTP.Driver {
	case "", "epoll", "io_uring":
	default:
		bad("http.driver %q: must be epoll or io_uring", c.HTTP.Driver)
	}
	switch c.Host.Driver {
	case "", "epoll", "io_uring", "goroutine":
	default:
		bad("host.driver %q: must be epoll, io_uring or goroutine", c.Host.Driver)
	}
	if c.Host.TLSCert == "" && c.Host.Principal == "" && !isLoopback(c.Host.Addr) {
		bad("host.addr %s is not a loopback address: plain-TCP host clients need an explicit host.principal (payhsm principals add), or configure host.tlsCert/tlsKey with client certificates", c.Host.Addr)
	}
	if c.HTTP.TLSCert == "" && !c.HTTP.AllowPlaintext && !isLoopback(c.HTTP.Addr) {
		bad("http.addr %s is not a loopback address: configure http.tlsCert/tlsKey, or set http.allowPlaintext", c.HTTP.Addr)
	}
	errs = append(errs, c.Replication.validate(c.Region)...)
	if _, err := diskguard.ParseReserve(c.DiskReserve); err != nil {
		bad("diskReserve: %v", err)
	}
	for _, a := range c.Audit.DataEventAccounts {
		if !accountRe.MatchString(a) {
			bad("audit.dataEventAccounts: %q is not a 12-digit account", a)
		}
	}
	if c.Audit.SealEvery < 0 || c.Audit.SealEvery > 1_000_000 {
		bad("audit.sealEvery %d: must be 1..1000000 (0: 1000)", c.Audit.SealEvery)
	}
	if d := time.Duration(c.Audit.SealInterval); d < 0 || d > 0 && d < time.Second || d > time.Hour {
		bad("audit.sealInterval %v: must be 1s..1h", d)
	}
	if c.Audit.RotateBytes < 0 || c.Audit.RotateBytes > 0 && c.Audit.RotateBytes < 1<<20 {
		bad("audit.rotateBytes %d: must be at least 1 MiB (0: 64 MiB)", c.Audit.RotateBytes)
	}
	if d := time.Duration(c.Audit.RotateAge); d < 0 || d > 0 && d < time.Minute {
		bad("audit.rotateAge %v: must be at least 1m", d)
	}
	if c.Audit.DataQueue < 0 || c.Audit.DataQueue > 1<<22 {
		bad("audit.dataQueue %d: must be 1..4194304 (0: 16384)", c.Audit.DataQueue)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("logLevel %q: must be debug, info, warn or error", c.LogLevel)
	}
	c.Keystore.validate(bad)
	if c.Fleet.Node != "" {
		if err := custody.CheckNodeName(c.Fleet.Node); err != nil {
			bad("fleet.node: %v", err)
		}
	} else if c.Keystore.Engine == EngineEtcd {
		bad("fleet.node: required with keystore.engine etcd (the name of this node among those sharing the store; docs/fleet.md)")
	}
	if d := time.Duration(c.Fleet.HeartbeatInterval); d < 0 || d > 0 && (d < 100*time.Millisecond || d > time.Minute) {
		bad("fleet.heartbeatInterval %v: must be 100ms to 1m (0: %v)", d, DefaultHeartbeatInterval)
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		bad("logFormat %q: must be json or text", c.LogFormat)
	}
	if _, _, err := net.SplitHostPort(c.Ops.Addr); err != nil {
		bad("ops.addr %q: %v", c.Ops.Addr, err)
	}
	if d := c.PKCS11.TokenProbeInterval(); d < 100*time.Millisecond || d > time.Minute {
		bad("pkcs11.probeInterval %s: must be 100ms to 1m", d)
	}
	if d := c.PKCS11.TokenLossGrace(); d < 0 || d > 24*time.Hour {
		bad("pkcs11.lossGrace %s: must be 0s (refuse at once) to 24h", d)
	}
	if !dev {
		if c.PKCS11.Module == "" {
			bad("pkcs11.module is required")
		}
		if c.PKCS11.TokenLabel == "" {
			bad("pkcs11.tokenLabel is required")
		}
		if (c.PKCS11.PINFile == "") == (c.PKCS11.PINEnv == "") {
			bad("exactly one of pkcs11.pinFile and pkcs11.pinEnv is required")
		}
		if c.CredentialsFile == "" {
			bad("credentialsFile is required")
		}
	}
	return errors.Join(errs...)
}

// maxTimeout bounds the etcd timeouts: a request that waits longer holds a
// client's call for longer than any client waits.
const maxTimeout = 5 * time.Minute

// validate checks the keystore section.
func (k *KeystoreConfig) validate(bad func(string, ...any)) {
	if n := k.WorkingKeyCache; n != 0 && (n < MinWorkingKeyCache || n > MaxWorkingKeyCache) {
		bad("keystore.workingKeyCache %d: must be 0 (sized to the machine's memory) or %d to %d keys", n, MinWorkingKeyCache, MaxWorkingKeyCache)
	}
	switch k.Engine {
	case EnginePebble:
		if len(k.Endpoints) > 0 || k.Prefix != "" || k.TLS != (EtcdTLSConfig{}) || k.DialTimeout != 0 || k.RequestTimeout != 0 ||
			k.MaxTxnOps != 0 || k.MaxRequestBytes != 0 || k.Staleness != 0 || k.LeaderTTL != 0 {
			bad("keystore: endpoints, prefix, tls, timeouts, limits, staleness and leaderTTL are for engine %q only (engine is %q)", EngineEtcd, k.Engine)
		}
		if k.CacheMB < 0 || k.CacheMB > 1<<20 {
			bad("keystore.cacheMB %d: must be 0 (the default, %d) or 1 to %d", k.CacheMB, pebblekv.DefaultCacheSize>>20, 1<<20)
		}
		return
	case EngineEtcd:
		if k.CacheMB != 0 {
			bad("keystore.cacheMB is for engine %q only (engine is %q)", EnginePebble, k.Engine)
		}
	default:
		bad("keystore.engine %q: must be %q or %q", k.Engine, EnginePebble, EngineEtcd)
		return
	}
	if len(k.Endpoints) == 0 {
		bad("keystore.endpoints: engine etcd needs at least one member's client URL")
	}
	for _, ep := range k.Endpoints {
		if err := checkEndpoint(ep); err != nil {
			bad("keystore.endpoints: %v", err)
		}
	}
	if err := etcdkv.ValidatePrefix(k.Prefix); err != nil {
		bad("keystore.prefix: %v", err)
	}
	if (k.TLS.Cert == "") != (k.TLS.Key == "") {
		bad("keystore.tls.cert and keystore.tls.key go together")
	}
	for name, d := range map[string]Duration{"dialTimeout": k.DialTimeout, "requestTimeout": k.RequestTimeout} {
		if d < 0 || time.Duration(d) > maxTimeout {
			bad("keystore.%s %v: must be between 0 (the default, 5s) and %v", name, time.Duration(d), maxTimeout)
		}
	}
	if st := time.Duration(k.Staleness); st != 0 && (st < minStaleness || st > keystore.MaxStaleness) {
		bad("keystore.staleness %v: must be 0 (the default, %v) or between %v and %v", st, keystore.DefaultStaleness, minStaleness, keystore.MaxStaleness)
	}
	if ttl := time.Duration(k.LeaderTTL); ttl != 0 && (ttl < minLeaderTTL || ttl > maxLeaderTTL) {
		bad("keystore.leaderTTL %v: must be 0 (the default, 10s) or between %v and %v", ttl, minLeaderTTL, maxLeaderTTL)
	}
	if k.MaxTxnOps < 0 || k.MaxTxnOps > 0 && k.MaxTxnOps < 16 {
		bad("keystore.maxTxnOps %d: must be 0 (etcd's default, 128) or at least 16", k.MaxTxnOps)
	}
	if k.MaxRequestBytes < 0 || k.MaxRequestBytes > 0 && k.MaxRequestBytes < 1<<20 {
		bad("keystore.maxRequestBytes %d: must be 0 (etcd's default, 1572864) or at least 1048576 (a metadata blob is up to 1 MiB)", k.MaxRequestBytes)
	}
}

// checkEndpoint accepts http://host:port, https://host:port or host:port.
func checkEndpoint(ep string) error {
	hostport := ep
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("%q: must be http://host:port, https://host:port or host:port", ep)
		}
		hostport = u.Host
	}
	if _, port, err := net.SplitHostPort(hostport); err != nil || port == "" {
		return fmt.Errorf("%q: must be http://host:port, https://host:port or host:port", ep)
	}
	return nil
}

// PIN reads the token PIN from its configured source.
func (c *PKCS11Config) PIN() (string, error) {
	if c.PINEnv != "" {
		v, ok := os.LookupEnv(c.PINEnv)
		if !ok || v == "" {
			return "", fmt.Errorf("pkcs11.pinEnv: environment variable %s is not set", c.PINEnv)
		}
		return v, nil
	}
	b, err := os.ReadFile(c.PINFile)
	if err != nil {
		return "", fmt.Errorf("pkcs11.pinFile: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// LoadConfig reads a configuration file strictly (unknown members are errors).
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path) //nolint:gosec // G304: the operator names the configuration file (--config).
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

// ReadCredentials parses an AWS shared-credentials file into access key id → secret.
func ReadCredentials(path string) (map[string]string, error) {
	b, err := os.ReadFile(path) //nolint:gosec // G304: the operator names the credentials file (credentialsFile; --dev: DATA/credentials).
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	out := map[string]string{}
	var id, secret string
	flush := func() {
		if id != "" && secret != "" {
			out[id] = secret
		}
		id, secret = "", ""
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			flush()
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			id = strings.TrimSpace(v)
		case "aws_secret_access_key":
			secret = strings.TrimSpace(v)
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("credentials: %s holds no access key", path)
	}
	return out, nil
}
