package appliance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"payhsm/hsm/softhsm"
)

// TestPreflight: every file the configuration names is checked before
// anything is created, each problem on one line naming the member.
func TestPreflight(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pin := write("pin", "1234\n")
	empty := write("empty", "\n")
	creds := write("credentials", "[ops]\naws_access_key_id = AKPHTEST\naws_secret_access_key = s3cret\n")
	noKey := write("nokey", "[ops]\n")
	notPEM := write("ca.pem", "not a certificate")
	missing := filepath.Join(dir, "missing")
	prod := func(c *Config) {
		c.PKCS11 = PKCS11Config{Module: missing, TokenLabel: "t", PINFile: pin}
		c.CredentialsFile = creds
	}
	for _, tc := range []struct {
		name       string
		dev, serve bool
		edit       func(*Config)
		want       []string // one line each, in order
	}{
		{"dev needs nothing", true, true, func(*Config) {}, nil},
		{"module missing", false, false, prod, []string{"pkcs11.module " + missing + ": no such file or directory (the token's PKCS#11 library"}},
		{"module a directory", false, false, func(c *Config) { prod(c); c.PKCS11.Module = dir }, []string{"pkcs11.module " + dir + ": not a regular file"}},
		{"PIN file missing", false, false, func(c *Config) { prod(c); c.PKCS11.PINFile = missing },
			[]string{"pkcs11.module", "pkcs11.pinFile " + missing + ": no such file or directory"}},
		{"PIN file empty", false, false, func(c *Config) { prod(c); c.PKCS11.PINFile = empty }, []string{"pkcs11.module", "pkcs11.pinFile " + empty + " is empty"}},
		{"PIN variable unset", false, false, func(c *Config) { prod(c); c.PKCS11.PINFile, c.PKCS11.PINEnv = "", "PAYHSM_TEST_UNSET_PIN" },
			[]string{"pkcs11.module", "pkcs11.pinEnv: environment variable PAYHSM_TEST_UNSET_PIN is not set"}},
		{"credentials missing", false, false, func(c *Config) { prod(c); c.CredentialsFile = missing },
			[]string{"pkcs11.module", "credentialsFile " + missing + ": no such file or directory (AWS shared-credentials format"}},
		{"credentials without a key", false, false, func(c *Config) { prod(c); c.CredentialsFile = noKey },
			[]string{"pkcs11.module", "credentialsFile " + noKey + ": " + noKey + " holds no access key"}},
		{"TLS files only for serve", true, false, func(c *Config) { c.HTTP.TLSCert, c.HTTP.TLSKey = missing, missing }, nil},
		{"TLS files", true, true, func(c *Config) {
			c.HTTP.TLSCert, c.HTTP.TLSKey = missing, missing
			c.Host.TLSCert, c.Host.TLSKey, c.Host.ClientCA = missing, missing, notPEM
		}, []string{"http.tlsCert " + missing, "host.tlsCert " + missing, "host.clientCA " + notPEM + " holds no PEM certificate"}},
	} {
		c := &Config{}
		tc.edit(c)
		err := c.Preflight(tc.dev, tc.serve)
		if tc.want == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		lines := strings.Split(err.Error(), "\n")
		if lines[0] != "invalid configuration:" || len(lines) != len(tc.want)+1 {
			t.Errorf("%s: %q, want %d problems", tc.name, err, len(tc.want))
			continue
		}
		for i, w := range tc.want {
			if !strings.HasPrefix(lines[i+1], w) {
				t.Errorf("%s: line %q, want it to begin %q", tc.name, lines[i+1], w)
			}
		}
	}
}

// TestPreflightToken: the token is probed (SoftHSM2): a label the module
// does not have and a PIN the token refuses are told apart, with the fix.
func TestPreflightToken(t *testing.T) {
	if _, err := os.Stat(softhsm.DefaultModule); err != nil {
		t.Skipf("SoftHSM2 is not installed: %v", err)
	}
	dir := t.TempDir()
	tok, err := softhsm.Provision(dir, "", "preflight", true)
	if err != nil {
		t.Fatal(err)
	}
	pin := filepath.Join(dir, "pin")
	wrong := filepath.Join(dir, "wrong")
	if err := os.WriteFile(pin, []byte(tok.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wrong, []byte("0000-wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Config{PKCS11: PKCS11Config{Module: tok.Module, TokenLabel: tok.Label, PINFile: pin}}
	if err := c.Preflight(false, true); err != nil {
		t.Errorf("the right token: %v", err)
	}
	c.PKCS11.TokenLabel = "absent"
	if err := c.Preflight(false, true); err == nil || !strings.Contains(err.Error(), `pkcs11.tokenLabel "absent": module `+tok.Module+" has no token with this label") ||
		!strings.Contains(err.Error(), "softhsm2-util --init-token --free --label absent") || !strings.Contains(err.Error(), "SOFTHSM2_CONF is "+tok.ConfigFile) {
		t.Errorf("unknown label: %v", err)
	}
	c.PKCS11.TokenLabel, c.PKCS11.PINFile = tok.Label, wrong
	if err := c.Preflight(false, true); err == nil || !strings.Contains(err.Error(), `token "preflight" refused the user PIN from pkcs11.pinFile `+wrong) {
		t.Errorf("wrong PIN: %v", err)
	}
}
