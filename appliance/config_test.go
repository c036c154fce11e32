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
		{"TLS half", true, func(c *Config) { c.Host.TLSCert = "a" }, "host.tlsCert and host.tlsKey go together"},
		{"client CA without TLS", true, func(c *Config) { c.Host.ClientCA = "ca" }, "host.clientCA needs"},
		{"allowed clients without CA", true, func(c *Config) { c.Host.AllowedClients = []string{"x"} }, "host.allowedClients needs host.clientCA"},
		{"event loops", true, func(c *Config) { c.Host.EventLoops = 1000 }, "host.eventLoops"},
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
		{"keystore etcd request bytes", true, etcd(func(k *KeystoreConfig) { k.MaxRequestBytes = 1000 }), "keystore.maxRequestBytes 1000"},
		{"keystore pebble with etcd members", true, func(c *Config) { c.Keystore.Prefix = "/payhsm/" }, `for engine "etcd" only`},
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
	for got, want := range map[string]string{
		c.KeystoreDir():     "/var/lib/payhsm/keystore",
		c.AdminSocketPath(): "/var/lib/payhsm/admin.sock",
		c.AuditLogPath():    "/var/lib/payhsm/ceremony-audit.log",
	} {
		if got != want {
			t.Errorf("%s, want %s", got, want)
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
