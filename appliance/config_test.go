package appliance

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	prod := func(c *Config) {
		c.PKCS11 = PKCS11Config{Module: "/lib/p11.so", TokenLabel: "payhsm", PINFile: "/etc/payhsm/pin"}
		c.CredentialsFile = "/etc/payhsm/credentials"
	}
	tests := []struct {
		name string
		dev  bool
		edit func(*Config)
		want string // "" for valid
	}{
		{"dev defaults", true, func(*Config) {}, ""},
		{"production", false, prod, ""},
		{"production without pkcs11", false, func(c *Config) { c.CredentialsFile = "x" }, "pkcs11.module is required"},
		{"both PIN sources", false, func(c *Config) { prod(c); c.PKCS11.PINEnv = "PIN" }, "exactly one of pkcs11.pinFile and pkcs11.pinEnv"},
		{"region", true, func(c *Config) { c.Region = "mars" }, `region "mars"`},
		{"account", true, func(c *Config) { c.Account = "12" }, "must be 12 digits"},
		{"profile name", true, func(c *Config) { c.Profile = "Default" }, `profile name "Default"`},
		{"profile starting with a digit", true, func(c *Config) { c.Profile = "1x" }, `profile name "1x"`},
		{"plain HTTP off loopback", true, func(c *Config) { c.HTTP.Addr = "0.0.0.0:8080" }, "not a loopback address"},
		{"plain HTTP allowed", true, func(c *Config) { c.HTTP.Addr = "0.0.0.0:8080"; c.HTTP.AllowPlaintext = true }, ""},
		{"plain host TCP off loopback", true, func(c *Config) { c.Host.Addr = "0.0.0.0:1500" }, "plain-TCP host clients need an explicit host.principal"},
		{"plain host TCP off loopback with a principal", true, func(c *Config) { c.Host.Addr = "0.0.0.0:1500"; c.Host.Principal = "switch" }, ""},
		{"TLS host port off loopback", true, func(c *Config) { c.Host.Addr = "0.0.0.0:1500"; c.Host.TLSCert, c.Host.TLSKey = "c", "k" }, ""},
		{"TLS half", true, func(c *Config) { c.Host.TLSCert = "a" }, "host.tlsCert and host.tlsKey go together"},
		{"client CA without TLS", true, func(c *Config) { c.Host.ClientCA = "ca" }, "host.clientCA needs"},
		{"allowed clients without CA", true, func(c *Config) { c.Host.AllowedClients = []string{"x"} }, "host.allowedClients needs host.clientCA"},
		{"event loops", true, func(c *Config) { c.Host.EventLoops = 1000 }, "host.eventLoops"},
		{"http event loops", true, func(c *Config) { c.HTTP.EventLoops = -2 }, "http.eventLoops"},
		{"host driver", true, func(c *Config) { c.Host.Driver = "kqueue" }, "host.driver"},
		{"host driver io_uring", true, func(c *Config) { c.Host.Driver = "io_uring" }, ""},
		{"http driver", true, func(c *Config) { c.HTTP.Driver = "goroutine" }, "http.driver"},
		{"http driver epoll", true, func(c *Config) { c.HTTP.Driver = "epoll" }, ""},
		{"header length", true, func(c *Config) { c.Host.HeaderLength = 33 }, "host.headerLength"},
		{"log level", true, func(c *Config) { c.LogLevel = "loud" }, "logLevel"},
		{"keystore etcd", true, etcd(nil), ""},
		{"keystore etcd over TLS", true, etcd(func(k *KeystoreConfig) {
			k.Endpoints = []string{"https://10.0.0.1:2379", "etcd-2.example:2379"}
			k.TLS = EtcdTLSConfig{Cert: "c.pem", Key: "k.pem", CA: "ca.pem"}
			k.DialTimeout, k.RequestTimeout = Duration(2*time.Second), Duration(10*time.Second)
			k.MaxTxnOps, k.MaxRequestBytes = 512, 4<<20
		}), ""},
		{"keystore engine", true, func(c *Config) { c.Keystore.Engine = "bolt" }, `keystore.engine "bolt": must be "pebble" or "etcd"`},
		{"keystore etcd without endpoints", true, etcd(func(k *KeystoreConfig) { k.Endpoints = nil }), "keystore.endpoints: engine etcd needs"},
		{"keystore etcd endpoint", true, etcd(func(k *KeystoreConfig) { k.Endpoints = []string{"ftp://x:1"} }), `keystore.endpoints: "ftp://x:1"`},
		{"keystore etcd endpoint without port", true, etcd(func(k *KeystoreConfig) { k.Endpoints = []string{"etcd-1"} }), `keystore.endpoints: "etcd-1"`},
		{"keystore etcd prefix", true, etcd(func(k *KeystoreConfig) { k.Prefix = "payhsm" }), "keystore.prefix: etcd prefix \"payhsm\": must start and end with '/'"},
		{"keystore etcd prefix missing", true, etcd(func(k *KeystoreConfig) { k.Prefix = "" }), "keystore.prefix"},
		{"keystore etcd tls half", true, etcd(func(k *KeystoreConfig) { k.TLS.Cert = "c.pem" }), "keystore.tls.cert and keystore.tls.key go together"},
		{"keystore etcd timeout", true, etcd(func(k *KeystoreConfig) { k.RequestTimeout = Duration(time.Hour) }), "keystore.requestTimeout 1h0m0s"},
		{"keystore etcd negative timeout", true, etcd(func(k *KeystoreConfig) { k.DialTimeout = Duration(-time.Second) }), "keystore.dialTimeout -1s"},
		{"keystore etcd txn ops", true, etcd(func(k *KeystoreConfig) { k.MaxTxnOps = 8 }), "keystore.maxTxnOps 8"},
		{"keystore cache", true, func(c *Config) { c.Keystore.CacheMB = 4096 }, ""},
		{"keystore cache negative", true, func(c *Config) { c.Keystore.CacheMB = -1 }, "keystore.cacheMB -1"},
		{"keystore cache on etcd", true, etcd(func(k *KeystoreConfig) { k.CacheMB = 64 }), `keystore.cacheMB is for engine "pebble" only`},
		{"working-key cache", true, func(c *Config) { c.Keystore.WorkingKeyCache = 2_000_000 }, ""},
		{"working-key cache on etcd", true, etcd(func(k *KeystoreConfig) { k.WorkingKeyCache = MinWorkingKeyCache }), ""},
		{"working-key cache small", true, func(c *Config) { c.Keystore.WorkingKeyCache = 100 }, "keystore.workingKeyCache 100: must be 0"},
		{"working-key cache negative", true, func(c *Config) { c.Keystore.WorkingKeyCache = -1 }, "keystore.workingKeyCache -1"},
		{"working-key cache huge", true, func(c *Config) { c.Keystore.WorkingKeyCache = MaxWorkingKeyCache + 1 }, "keystore.workingKeyCache 67108865"},
		{"keystore etcd request bytes", true, etcd(func(k *KeystoreConfig) { k.MaxRequestBytes = 1000 }), "keystore.maxRequestBytes 1000"},
		{"fleet node on etcd", true, func(c *Config) { etcd(nil)(c); c.Fleet.Node = "" }, "fleet.node: required with keystore.engine etcd"},
		{"fleet node name", true, func(c *Config) { c.Fleet.Node = "Node 1" }, `fleet.node: node name "Node 1"`},
		{"fleet node on pebble", true, func(c *Config) { c.Fleet.Node = "solo" }, ""},
		{"fleet heartbeat", true, func(c *Config) { c.Fleet.HeartbeatInterval = Duration(time.Millisecond) }, "fleet.heartbeatInterval 1ms"},
		{"keystore pebble with etcd members", true, func(c *Config) { c.Keystore.Prefix = "/payhsm/" }, `for engine "etcd" only`},
		{"keystore etcd staleness", true, etcd(func(k *KeystoreConfig) { k.Staleness, k.LeaderTTL = Duration(5*time.Second), Duration(3*time.Second) }), ""},
		{"keystore etcd staleness too short", true, etcd(func(k *KeystoreConfig) { k.Staleness = Duration(100 * time.Millisecond) }), "keystore.staleness 100ms"},
		{"keystore etcd staleness too long", true, etcd(func(k *KeystoreConfig) { k.Staleness = Duration(2 * time.Hour) }), "keystore.staleness 2h0m0s"},
		{"keystore etcd leader ttl", true, etcd(func(k *KeystoreConfig) { k.LeaderTTL = Duration(time.Second) }), "keystore.leaderTTL 1s"},
		{"keystore pebble with staleness", true, func(c *Config) { c.Keystore.Staleness = Duration(time.Minute) }, `for engine "etcd" only`},
		{"disk reserve", true, func(c *Config) { c.DiskReserve = "lots" }, "diskReserve"},
		{"disk reserve percentage", true, func(c *Config) { c.DiskReserve = "60%" }, "diskReserve"},
		{"disk reserve size", true, func(c *Config) { c.DiskReserve = "1GiB" }, ""},
		{"per-address connections negative", true, func(c *Config) { c.Host.MaxConnectionsPerAddress = -1 }, "host.maxConnectionsPerAddress must be positive"},
		{"per-address connections over the total", true, func(c *Config) { c.Host.MaxConnections = 10; c.Host.MaxConnectionsPerAddress = 11 }, "exceeds host.maxConnections"},
		{"per-address connections", true, func(c *Config) { c.Host.MaxConnections = 10; c.Host.MaxConnectionsPerAddress = 10 }, ""},
		{"log format text", true, func(c *Config) { c.LogFormat = "text" }, ""},
		{"log format", true, func(c *Config) { c.LogFormat = "xml" }, "logFormat"},
		{"ops address", true, func(c *Config) { c.Ops.Addr = "9100" }, "ops.addr"},
		{"probe interval too short", true, func(c *Config) { c.PKCS11.ProbeInterval = dur(time.Millisecond) }, "pkcs11.probeInterval"},
		{"loss grace zero", true, func(c *Config) { c.PKCS11.LossGrace = dur(0) }, ""},
		{"loss grace negative", true, func(c *Config) { c.PKCS11.LossGrace = dur(-time.Second) }, "pkcs11.lossGrace"},
	}
	for _, tc := range tests {
		var c Config
		tc.edit(&c)
		c.Defaults()
		err := c.Validate(tc.dev)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

// etcd returns an edit that configures a valid etcd key store, then edit.
func etcd(edit func(*KeystoreConfig)) func(*Config) {
	return func(c *Config) {
		c.Keystore = KeystoreConfig{Engine: EngineEtcd, Endpoints: []string{"http://127.0.0.1:2379"}, Prefix: "/payhsm/us-east-1/"}
		c.Fleet.Node = "node-1"
		if edit != nil {
			edit(&c.Keystore)
		}
	}
}

// TestKeystoreConfigJSON: the keystore section as an operator writes it,
// durations as strings; a duration that is not one is refused.
func TestKeystoreConfigJSON(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, []byte(`{"keystore":{"engine":"etcd","endpoints":["http://127.0.0.1:2379"],"prefix":"/payhsm/x/",
		"tls":{"cert":"c","key":"k","ca":"a"},"dialTimeout":"1500ms","requestTimeout":"7s","maxTxnOps":256,"maxRequestBytes":2097152}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	want := KeystoreConfig{Engine: "etcd", Endpoints: []string{"http://127.0.0.1:2379"}, Prefix: "/payhsm/x/",
		TLS: EtcdTLSConfig{Cert: "c", Key: "k", CA: "a"}, DialTimeout: Duration(1500 * time.Millisecond), RequestTimeout: Duration(7 * time.Second),
		MaxTxnOps: 256, MaxRequestBytes: 2 << 20}
	if !reflect.DeepEqual(c.Keystore, want) {
		t.Errorf("keystore = %+v, want %+v", c.Keystore, want)
	}
	var d Config
	d.Defaults()
	if d.Keystore.Engine != EnginePebble {
		t.Errorf("default engine %q", d.Keystore.Engine)
	}
	for _, bad := range []string{`{"keystore":{"requestTimeout":5}}`, `{"keystore":{"requestTimeout":"5 parsecs"}}`, `{"keystore":{"tls":{"crt":"x"}}}`} {
		p := filepath.Join(dir, "bad.json")
		if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfig(p); err == nil {
			t.Errorf("%s: loaded", bad)
		}
	}
}

func dur(d time.Duration) *Duration { v := Duration(d); return &v }

// TestTelemetryConfig: the ops listener, the log format and the token's
// health settings from the file and the flags, and their defaults.
func TestTelemetryConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "payhsm.json")
	if err := os.WriteFile(file, []byte(`{"pkcs11":{"module":"m","tokenLabel":"t","pinEnv":"PIN","lossGrace":"30s","probeInterval":"2s"},`+
		`"credentialsFile":"c","ops":{"addr":"127.0.0.1:9200"},"logFormat":"text"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"pkcs11":{"lossGrace":"soon"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	type got struct {
		ops             string
		defaulted       bool
		format          string
		grace, interval time.Duration
	}
	tests := []struct {
		args []string
		want got
		err  string
	}{
		{[]string{"--dev"}, got{DefaultOpsAddr, true, "json", DefaultTokenLossGrace, DefaultTokenProbeInterval}, ""},
		{[]string{"--config", file}, got{"127.0.0.1:9200", false, "text", 30 * time.Second, 2 * time.Second}, ""},
		{[]string{"--config", file, "--ops-addr", "127.0.0.1:0", "--log-format", "json", "--token-loss-grace", "0s"},
			got{"127.0.0.1:0", false, "json", 0, 2 * time.Second}, ""},
		{[]string{"--dev", "--token-loss-grace", "later"}, got{}, "--token-loss-grace"},
		{[]string{"--config", bad}, got{}, `time: invalid duration "soon"`},
	}
	for _, tc := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		f := RegisterFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.Config()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		g := got{cfg.Ops.Addr, cfg.OpsAddrDefaulted(), cfg.LogFormat, cfg.PKCS11.TokenLossGrace(), cfg.PKCS11.TokenProbeInterval()}
		if g != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.args, g, tc.want)
		}
	}
}

func TestFlagsConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "payhsm.json")
	if err := os.WriteFile(file, []byte(`{"dataDir":"/var/lib/payhsm","region":"eu-west-1","pkcs11":{"module":"m","tokenLabel":"t","pinEnv":"PIN"},"credentialsFile":"c"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	unknown := filepath.Join(dir, "unknown.json")
	if err := os.WriteFile(unknown, []byte(`{"dataDir":"x","colour":"blue"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string // data dir and region, or an error substring
	}{
		{[]string{"--dev"}, "./data us-east-1"},
		{[]string{"--dev", "--data-dir", "/tmp/d", "--region", "ap-south-2"}, "/tmp/d ap-south-2"},
		{[]string{"--config", file}, "/var/lib/payhsm eu-west-1"},
		{[]string{"--config", file, "--data-dir", "/srv/hsm"}, "/srv/hsm eu-west-1"},
		{nil, "needs --config FILE, or --dev"},
		{[]string{"--config", unknown}, `unknown field "colour"`},
		{[]string{"--config", filepath.Join(dir, "missing.json")}, "no such file"},
		{[]string{"--dev", "--log-level", "loud"}, "invalid configuration"},
	}
	for _, tc := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		f := RegisterFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.Config()
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = cfg.DataDir + " " + cfg.Region
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestLayout(t *testing.T) {
	t.Parallel()
	c := &Config{DataDir: "/var/lib/payhsm"}
	other := &Config{DataDir: "/var/lib/payhsm", Audit: AuditConfig{Dir: "/var/log/payhsm"}}
	for got, want := range map[string]string{
		c.KeystoreDir():     "/var/lib/payhsm/keystore",
		c.AdminSocketPath(): "/var/lib/payhsm/admin.sock",
		c.AuditDir():        "/var/lib/payhsm/audit",
		other.AuditDir():    "/var/log/payhsm",
	} {
		if got != want {
			t.Errorf("%s, want %s", got, want)
		}
	}
}

// TestAuditConfig: the audit section is checked like the rest, durations
// are strings, and data events are on only for a listed account.
func TestAuditConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name, json string
		want       string // an error substring; "" for a valid file
		data       bool
	}{
		{"defaults", `{}`, "", false},
		{"data events for this account", `{"audit":{"dataEventAccounts":["000000000000"],"sealInterval":"30s","rotateAge":"12h","rotateBytes":1048576}}`, "", true},
		{"data events for another account", `{"audit":{"dataEventAccounts":["111111111111"]}}`, "", false},
		{"bad account", `{"audit":{"dataEventAccounts":["12"]}}`, "not a 12-digit account", false},
		{"duration as a number", `{"audit":{"sealInterval":60}}`, "a duration is a string", false},
		{"bad duration", `{"audit":{"rotateAge":"soon"}}`, "invalid duration", false},
		{"seal interval too short", `{"audit":{"sealInterval":"10ms"}}`, "audit.sealInterval", false},
		{"rotation too small", `{"audit":{"rotateBytes":1000}}`, "audit.rotateBytes", false},
		{"negative queue", `{"audit":{"dataQueue":-1}}`, "audit.dataQueue", false},
		{"unknown member", `{"audit":{"sealevery":3,"bogus":1}}`, "unknown field", false},
	}
	for _, tc := range tests {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
		if err := os.WriteFile(path, []byte(tc.json), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(path)
		if err == nil {
			c.Defaults()
			err = c.Validate(true)
		}
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		case tc.want == "" && c.DataEvents() != tc.data:
			t.Errorf("%s: data events %v", tc.name, c.DataEvents())
		}
	}
}

func TestReadCredentials(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name, content string
		want          map[string]string // nil: an error is expected
	}{
		{"two profiles", "# comment\n[default]\naws_access_key_id = AK1\naws_secret_access_key = s1\n\n[other]\naws_access_key_id=AK2\naws_secret_access_key=s2\nregion = x\n",
			map[string]string{"AK1": "s1", "AK2": "s2"}},
		{"incomplete pair", "[default]\naws_access_key_id = AK1\n", nil},
		{"empty", "", nil},
	}
	for _, tc := range tests {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
		if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := ReadCredentials(path)
		if tc.want == nil {
			if err == nil {
				t.Errorf("%s: no error", tc.name)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("%s: %v, %v", tc.name, got, err)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q", tc.name, k, got[k], v)
			}
		}
	}
}

// TestExampleConfig: the production example (docs/examples/payhsm.json,
// walked through in docs/production.md) loads strictly and is valid.
func TestExampleConfig(t *testing.T) {
	t.Parallel()
	c, err := LoadConfig("../docs/examples/payhsm.json")
	if err != nil {
		t.Fatal(err)
	}
	c.Defaults()
	if err := c.Validate(false); err != nil {
		t.Errorf("docs/examples/payhsm.json: %v", err)
	}
}
