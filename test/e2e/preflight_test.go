package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigMistakes: the mistakes of a first production set-up (a PIN file,
// credentials file or TLS file that is not there, a token label the module
// does not have, a wrong PIN, an appliance not initialized) are each told in
// one line that names the configuration member and the fix, before anything
// is created: the data directory does not exist afterwards.
func TestConfigMistakes(t *testing.T) {
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		t.Skip("softhsm2-util not installed")
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	check(t, os.MkdirAll(tokens, 0o700))
	conf := filepath.Join(dir, "softhsm2.conf")
	check(t, os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\n"), 0o600))
	t.Setenv("SOFTHSM2_CONF", conf)
	if out, err := exec.Command(util, "--init-token", "--free", "--label", "prod", "--pin", "87654321", "--so-pin", "12345678").CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util: %v\n%s", err, out)
	}
	pin := filepath.Join(dir, "pin")
	check(t, os.WriteFile(pin, []byte("87654321\n"), 0o600))
	wrongPIN := filepath.Join(dir, "wrong-pin")
	check(t, os.WriteFile(wrongPIN, []byte("11112222\n"), 0o600))
	creds := filepath.Join(dir, "credentials")
	check(t, os.WriteFile(creds, []byte("[ops]\naws_access_key_id = AKPHPRODUCTION01\naws_secret_access_key = prod-secret\n"), 0o600))
	missing := filepath.Join(dir, "missing")
	data := filepath.Join(dir, "data")
	for _, tc := range []struct {
		name                      string
		label, pinFile, credsFile string
		tls                       string
		code                      int
		want                      string
	}{
		{"PIN file missing", "prod", missing, creds, "", 2, "pkcs11.pinFile " + missing + ": no such file or directory"},
		{"credentials missing", "prod", pin, missing, "", 2, "credentialsFile " + missing + ": no such file or directory"},
		{"TLS certificate missing", "prod", pin, creds, missing, 2, "http.tlsCert " + missing},
		{"unknown token", "nope", pin, creds, "", 2, `pkcs11.tokenLabel "nope": module /usr/lib/softhsm/libsofthsm2.so has no token with this label`},
		{"wrong PIN", "prod", wrongPIN, creds, "", 2, `token "prod" refused the user PIN from pkcs11.pinFile ` + wrongPIN},
		{"not initialized", "prod", pin, creds, "", 1, "holds no key store: this appliance is not initialized; run payhsm ceremony init"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(dir, "payhsm.json")
			check(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`{"dataDir": %q,
				"pkcs11": {"module": "/usr/lib/softhsm/libsofthsm2.so", "tokenLabel": %q, "pinFile": %q},
				"http": {"addr": "127.0.0.1:0", "tlsCert": %q, "tlsKey": %q}, "host": {"addr": "127.0.0.1:0"},
				"credentialsFile": %q}`, data, tc.label, tc.pinFile, tc.tls, tc.tls, tc.credsFile)), 0o600))
			out, err := exec.Command(binPath, "serve", "--config", cfg).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != tc.code || !strings.Contains(string(out), tc.want) {
				t.Errorf("exit %v, want %d with %q:\n%s", err, tc.code, tc.want, out)
			}
			if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) > 2 {
				t.Errorf("%d lines, want the problem in one:\n%s", len(lines), out)
			}
			if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the data directory was created (%v)", err)
			}
		})
	}
}
