// Package softhsm provisions a SoftHSM2 token for development and tests: a
// private SoftHSM2 configuration and token directory under a data directory,
// random PINs in mode-0600 files, and an initialized token, all through the
// PKCS#11 API (no softhsm2-util needed). Production appliances use a token
// provisioned by their operators instead.
package softhsm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/miekg/pkcs11"
)

// DefaultModule is where Debian's softhsm2 package installs the module.
const DefaultModule = "/usr/lib/softhsm/libsofthsm2.so"

// Token describes a provisioned token.
type Token struct {
	Module     string
	ConfigFile string // value for SOFTHSM2_CONF
	Label      string
	PIN        string
}

// Provision makes sure dir holds a SoftHSM2 configuration and, when create
// is set, an initialized token labelled label, creating them on first use.
// Without create a missing token is not made: the caller's token lookup then
// fails as it does in production (an appliance whose key store exists must
// never get a second, empty token). It sets SOFTHSM2_CONF for this process,
// which must happen before any PKCS#11 context is opened.
func Provision(dir, module, label string, create bool) (*Token, error) {
	if module == "" {
		module = DefaultModule
	}
	if _, err := os.Stat(module); err != nil {
		return nil, fmt.Errorf("softhsm: PKCS#11 module %s not found (install the softhsm2 package): %w", module, err)
	}
	hsmDir := filepath.Join(dir, "softhsm")
	tokDir := filepath.Join(hsmDir, "tokens")
	if err := os.MkdirAll(tokDir, 0o700); err != nil {
		return nil, fmt.Errorf("softhsm: %w", err)
	}
	conf := filepath.Join(hsmDir, "softhsm2.conf")
	content := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokDir)
	if err := os.WriteFile(conf, []byte(content), 0o600); err != nil {
		return nil, fmt.Errorf("softhsm: write config: %w", err)
	}
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return nil, err
	}
	pin, err := secretFile(filepath.Join(hsmDir, "user.pin"))
	if err != nil {
		return nil, err
	}
	soPIN, err := secretFile(filepath.Join(hsmDir, "so.pin"))
	if err != nil {
		return nil, err
	}
	t := &Token{Module: module, ConfigFile: conf, Label: label, PIN: pin}
	if !create {
		return t, nil
	}
	if err := initToken(module, label, soPIN, pin); err != nil {
		return nil, err
	}
	return t, nil
}

// secretFile returns the PIN in path, creating a random one (mode 0600) if absent.
func secretFile(path string) (string, error) {
	b, err := os.ReadFile(path) //nolint:gosec // G304: path is <data dir>/softhsm/<fixed name>; the data dir is the operator's.
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("softhsm: read %s: %w", path, err)
	}
	raw := make([]byte, 12)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	pin := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(pin+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("softhsm: write %s: %w", path, err)
	}
	return pin, nil
}

// initToken initializes a token labelled label in a free slot unless one
// exists, and sets its user PIN. A failure to log out, close the session or
// finalize the module is returned too: the token may not be usable after it.
func initToken(module, label, soPIN, pin string) (err error) {
	p := pkcs11.New(module)
	if p == nil {
		return fmt.Errorf("softhsm: cannot load %s", module)
	}
	defer p.Destroy()
	if err := p.Initialize(); err != nil {
		return fmt.Errorf("softhsm: C_Initialize: %w", err)
	}
	defer func() {
		if e := p.Finalize(); e != nil {
			err = errors.Join(err, fmt.Errorf("softhsm: C_Finalize: %w", e))
		}
	}()
	slots, err := p.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("softhsm: C_GetSlotList: %w", err)
	}
	var free *uint
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 {
			if strings.TrimRight(ti.Label, " \x00") == label {
				return nil // already provisioned
			}
			continue
		}
		if free == nil {
			s := s
			free = &s
		}
	}
	if free == nil {
		return errors.New("softhsm: no free slot to initialize a token in")
	}
	if err := p.InitToken(*free, soPIN, label); err != nil {
		return fmt.Errorf("softhsm: C_InitToken: %w", err)
	}
	// SoftHSM moves a freshly initialized token to a new slot id: find it by label.
	slots, err = p.GetSlotList(true)
	if err != nil {
		return err
	}
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil || strings.TrimRight(ti.Label, " \x00") != label {
			continue
		}
		sh, err := p.OpenSession(s, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			return fmt.Errorf("softhsm: C_OpenSession: %w", err)
		}
		defer func() {
			if e := p.CloseSession(sh); e != nil {
				err = errors.Join(err, fmt.Errorf("softhsm: C_CloseSession: %w", e))
			}
		}()
		if err := p.Login(sh, pkcs11.CKU_SO, soPIN); err != nil {
			return fmt.Errorf("softhsm: SO login: %w", err)
		}
		defer func() {
			if e := p.Logout(sh); e != nil {
				err = errors.Join(err, fmt.Errorf("softhsm: SO logout: %w", e))
			}
		}()
		if err := p.InitPIN(sh, pin); err != nil {
			return fmt.Errorf("softhsm: C_InitPIN: %w", err)
		}
		return nil
	}
	return errors.New("softhsm: initialized token not found")
}
