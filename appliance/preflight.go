package appliance

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"payhsm/hsm/custody"
)

// Preflight checks what the configuration names outside itself — the token's
// module, PIN and token, the credentials file and, for serve, the TLS files —
// before anything is created or opened: each problem is one line naming the
// member, what is wrong and how to fix it, all listed at once like
// Validate's. dev skips what --dev provisions (token, PIN, credentials).
func (c *Config) Preflight(dev, serve bool) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !dev {
		moduleOK := true
		if err := regularFile(c.PKCS11.Module); err != nil {
			moduleOK = false
			bad("pkcs11.module %s: %v (the token's PKCS#11 library; SoftHSM2's, from the softhsm2 package, is /usr/lib/softhsm/libsofthsm2.so)", c.PKCS11.Module, err)
		}
		pin, perr := c.PKCS11.PIN()
		switch {
		case perr != nil && c.PKCS11.PINFile != "":
			bad("pkcs11.pinFile %s: %v (it holds the token's user PIN, readable by the payhsm user only: chmod 600)", c.PKCS11.PINFile, unwrapPath(perr))
		case perr != nil:
			bad("%v (it holds the token's user PIN)", perr)
		case pin == "":
			bad("pkcs11.pinFile %s is empty: it holds the token's user PIN", c.PKCS11.PINFile)
		}
		if c.CredentialsFile != "" {
			if _, err := ReadCredentials(c.CredentialsFile); err != nil {
				bad("credentialsFile %s: %v (AWS shared-credentials format: [name], aws_access_key_id = ..., aws_secret_access_key = ...)",
					c.CredentialsFile, strings.TrimPrefix(unwrapPath(err).Error(), "credentials: "))
			}
		}
		if moduleOK && perr == nil && pin != "" {
			if err := custody.Probe(custody.PKCS11Module(c.PKCS11.Module), c.PKCS11.TokenLabel, pin); err != nil {
				bad("%s", tokenProblem(c, err))
			}
		}
	}
	if serve {
		if c.HTTP.TLSCert != "" {
			if _, err := tls.LoadX509KeyPair(c.HTTP.TLSCert, c.HTTP.TLSKey); err != nil {
				bad("http.tlsCert %s / http.tlsKey %s: %v", c.HTTP.TLSCert, c.HTTP.TLSKey, err)
			}
		}
		if c.Host.TLSCert != "" {
			if _, err := tls.LoadX509KeyPair(c.Host.TLSCert, c.Host.TLSKey); err != nil {
				bad("host.tlsCert %s / host.tlsKey %s: %v", c.Host.TLSCert, c.Host.TLSKey, err)
			}
		}
		if c.Host.ClientCA != "" {
			b, err := os.ReadFile(c.Host.ClientCA)
			switch {
			case err != nil:
				bad("host.clientCA %s: %v", c.Host.ClientCA, unwrapPath(err))
			case !x509.NewCertPool().AppendCertsFromPEM(b):
				bad("host.clientCA %s holds no PEM certificate", c.Host.ClientCA)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	return nil
}

// tokenProblem says what is wrong with the token and how to fix it.
func tokenProblem(c *Config, err error) string {
	conf := os.Getenv("SOFTHSM2_CONF")
	if conf == "" {
		conf = "unset, so /etc/softhsm/softhsm2.conf"
	}
	switch {
	case errors.Is(err, custody.ErrNoToken):
		return fmt.Sprintf("pkcs11.tokenLabel %q: module %s has no token with this label (SoftHSM2 keeps tokens in the directory its "+
			"configuration names: SOFTHSM2_CONF is %s; create one with softhsm2-util --init-token --free --label %s)",
			c.PKCS11.TokenLabel, c.PKCS11.Module, conf, c.PKCS11.TokenLabel)
	case errors.Is(err, custody.ErrPINRefused):
		return fmt.Sprintf("pkcs11: token %q refused the user PIN from %s (the PIN given to softhsm2-util --init-token --pin, or your HSM's user PIN)",
			c.PKCS11.TokenLabel, pinSource(c))
	case errors.Is(err, custody.ErrPINLocked):
		return fmt.Sprintf("pkcs11: token %q has locked its user PIN after wrong attempts; unlock it with the security officer PIN", c.PKCS11.TokenLabel)
	case errors.Is(err, custody.ErrModule):
		return fmt.Sprintf("pkcs11.module %s: %v", c.PKCS11.Module, err)
	}
	return fmt.Sprintf("pkcs11: token %q with module %s: %v", c.PKCS11.TokenLabel, c.PKCS11.Module, err)
}

func pinSource(c *Config) string {
	if c.PKCS11.PINEnv != "" {
		return "environment variable " + c.PKCS11.PINEnv
	}
	return "pkcs11.pinFile " + c.PKCS11.PINFile
}

// regularFile checks that path names a readable regular file.
func regularFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return unwrapPath(err)
	}
	if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	return nil
}

// unwrapPath drops the operation and path of a *fs.PathError (the message
// names the path already).
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
