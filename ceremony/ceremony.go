// Package ceremony owns payhsm's key ceremonies: initializing the appliance's
// main keys, loading profile main keys from paper components under dual
// control, and showing check values — on a terminal or over a serial console,
// with the same prompts and rules. Every step is written to an append-only
// audit log (who, what, KCVs, time; never key material). A ceremony runs with
// the daemon stopped: the keystore admits one process at a time.
package ceremony

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"go.uber.org/zap"

	"payhsm/ceremony/custodian"
	"payhsm/ceremony/mainkey"
	"payhsm/daemon"
	"payhsm/hsm/custody"
	"payhsm/keystore"
	"payhsm/ops"
)

// File is a ceremony file: parsed strictly and validated before the HSM is touched.
type File struct {
	Custodians []string      `json:"custodians"`
	Profiles   []ProfileSpec `json:"profiles"`
}

// ProfileSpec describes one profile main key.
type ProfileSpec struct {
	Name string `json:"name"`
	// Components is 0 for a key generated inside the appliance, else 2 or 3
	// paper components entered by separate custodians.
	Components int `json:"components,omitempty"`
	// ComponentKCVs, when given, are the check values printed with the
	// components; a component whose KCV differs is refused.
	ComponentKCVs []string `json:"componentKCVs,omitempty"`
	// KCV, when given, is the expected check value of the combined key.
	KCV string `json:"kcv,omitempty"`
}

var (
	nameRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	kcvRe  = regexp.MustCompile(`^[0-9A-F]{6}$`)
)

// LoadFile reads and validates a ceremony file.
func LoadFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ceremony file: %w", err)
	}
	return ParseFile(b)
}

// ParseFile parses and validates a ceremony file's content.
func ParseFile(b []byte) (*File, error) {
	var f File
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("ceremony file: %w", err)
	}
	if dec.More() {
		return nil, errors.New("ceremony file: trailing data")
	}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	seen := map[string]bool{}
	for _, c := range f.Custodians {
		if !nameRe.MatchString(c) {
			bad("custodian %q: names are 1-32 of a-z 0-9 _ - starting with a letter", c)
		}
		if seen[c] {
			bad("custodian %q is listed twice", c)
		}
		seen[c] = true
	}
	if len(f.Custodians) < 2 {
		bad("dual control needs at least two custodians")
	}
	if len(f.Profiles) == 0 {
		bad("no profiles")
	}
	pseen := map[string]bool{}
	for i, p := range f.Profiles {
		at := fmt.Sprintf("profiles[%d]", i)
		if !nameRe.MatchString(p.Name) {
			bad("%s.name %q: 1-32 of a-z 0-9 _ - starting with a letter", at, p.Name)
		}
		if pseen[p.Name] {
			bad("%s: profile %q is listed twice", at, p.Name)
		}
		pseen[p.Name] = true
		switch {
		case p.Components == 0:
			if len(p.ComponentKCVs) > 0 || p.KCV != "" {
				bad("%s: check values are given for a generated key", at)
			}
		case p.Components < 2 || p.Components > 3:
			bad("%s.components: 2 or 3", at)
		case p.Components > len(f.Custodians):
			bad("%s: %d components need %d custodians", at, p.Components, p.Components)
		}
		if len(p.ComponentKCVs) > 0 && len(p.ComponentKCVs) != p.Components {
			bad("%s.componentKCVs: one per component", at)
		}
		for _, k := range append(append([]string{}, p.ComponentKCVs...), p.KCV) {
			if k != "" && !kcvRe.MatchString(k) {
				bad("%s: check value %q is not 6 upper-case hex digits", at, k)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("ceremony file is invalid:\n%w", err)
	}
	return &f, nil
}

// Main runs `payhsm ceremony <command>`.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd := args[0]
	fs := flag.NewFlagSet("ceremony "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	flags := daemon.RegisterFlags(fs)
	file := fs.String("ceremony", "", "ceremony file (JSON)")
	profile := fs.String("profile", "", "load-components: the profile (from the ceremony file) to load")
	serialDev := fs.String("serial", "", "run the ceremony on this serial device instead of the terminal")
	certOut := fs.String("cert-out", "appliance.pem", "krd-request: where to write this appliance's certificate")
	nonceOut := fs.String("nonce-out", "nonce.hex", "krd-request: where to write the one-time nonce")
	krdCert := fs.String("krd", "", "export-main-key: the receiving appliance's certificate (PEM)")
	nonce := fs.String("nonce", "", "export-main-key: the receiving appliance's nonce (hex)")
	out := fs.String("out", "", "export-main-key: where to write the TR-34 token")
	kdhCert := fs.String("kdh", "", "import-main-key: the sending appliance's certificate (PEM)")
	token := fs.String("token", "", "import-main-key: the TR-34 token")
	wantKCV := fs.String("kcv", "", "import-main-key: the expected KCV of the transported key")
	nComponents := fs.Int("components", 2, "backup-components: how many components (2 or 3)")
	fromAdmin := fs.String("from-admin", "", "sync: the sending daemon's admin socket")
	toAdmin := fs.String("to-admin", "", "sync: the receiving daemon's admin socket")
	overwrite := fs.Bool("overwrite", false, "init: destroy an initialized appliance's keys and start again (dual control and a typed confirmation)")
	baud := fs.Int("baud", 9600, "serial speed")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "payhsm ceremony:", err)
		return 1
	}
	switch cmd {
	case "init", "load-components", "status", "rotate", "krd-request", "export-main-key", "import-main-key", "backup-components", "sync":
	default:
		fmt.Fprintf(stderr, "payhsm ceremony: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	var spec *File
	if cmd == "init" || cmd == "load-components" {
		if *file == "" {
			return fail(errors.New("--ceremony FILE is required"))
		}
		var err error
		if spec, err = LoadFile(*file); err != nil {
			return fail(err)
		}
	}
	if cmd == "sync" {
		if *fromAdmin == "" || *toAdmin == "" || *profile == "" {
			return fail(errors.New("--from-admin, --to-admin and --profile are required"))
		}
		if err := syncOnline(NewConsole(stdin, stdout), *fromAdmin, *toAdmin, *profile); err != nil {
			fmt.Fprintf(stdout, "FAILED: %v\n", err)
			return fail(err)
		}
		return 0
	}
	cfg, err := flags.Config()
	if err != nil {
		return fail(err)
	}
	con := NewConsole(stdin, stdout)
	if *serialDev != "" {
		c, closer, err := OpenSerial(*serialDev, *baud)
		if err != nil {
			return fail(err)
		}
		defer closer.Close()
		con = c
	}
	if cmd == "rotate" {
		if err := rotate(con, cfg, flags.Dev(), *profile); err != nil {
			con.Printf("FAILED: %v\n", err)
			return fail(err)
		}
		return 0
	}
	log := zap.NewNop()
	store, cust, _, err := daemon.OpenAppliance(cfg, flags.Dev(), cmd == "init", log)
	if err != nil {
		return fail(err)
	}
	audit, err := OpenAudit(filepath.Join(cfg.DataDir, daemon.AuditLog))
	if err != nil {
		return fail(err)
	}
	defer audit.Close()
	s := &session{con: con, store: store, cust: cust, audit: audit, cfg: cfg, dev: flags.Dev()}
	defer func() { // the session may have re-opened them (init --overwrite)
		s.cust.Close()
		s.store.Close()
	}()
	switch cmd {
	case "init":
		err = s.init(spec, *overwrite)
	case "load-components":
		err = s.loadComponents(spec, *profile)
	case "status":
		err = s.status()
	case "krd-request":
		err = s.krdRequest(*certOut, *nonceOut)
	case "export-main-key":
		if *krdCert == "" || *out == "" || *profile == "" {
			err = errors.New("--profile, --krd, --nonce and --out are required")
		} else {
			err = s.exportMainKey(*profile, *krdCert, *nonce, *out)
		}
	case "import-main-key":
		if *kdhCert == "" || *token == "" || *profile == "" {
			err = errors.New("--profile, --kdh and --token are required")
		} else {
			err = s.importMainKey(*profile, *kdhCert, *token, *wantKCV)
		}
	case "backup-components":
		err = s.backupComponents(*profile, *nComponents)
	}
	if err != nil {
		con.Printf("FAILED: %v\n", err)
		return fail(err)
	}
	return 0
}

const usage = `usage: payhsm ceremony <command> (--dev [--data-dir DIR] | --config FILE) [flags]

commands:
  init             enroll custodians, create the region main key and the profile main keys
  load-components  form a profile main key from 2-3 components entered by separate custodians
  status           show the main keys' check values
  rotate           move a profile onto a new main key, re-wrapping every key block
                   (online through a running daemon, else offline); resumable
  krd-request      (receiving appliance) write this appliance's certificate and a one-time nonce
  export-main-key  (sending appliance) export a profile main key as a TR-34 token for a receiving
                   appliance or backup HSM
  import-main-key  (receiving appliance) verify and import a TR-34 token as a profile main key
  backup-components split a profile main key into 2-3 components for separate custodians
                   (restore with load-components)
  sync             move a profile main key online between two serving daemons with TR-34, through
                   their admin sockets (--from-admin, --to-admin; forward them over SSH for remote hosts)

flags: --ceremony FILE, --profile NAME, --serial DEVICE [--baud N]
Everything but rotate runs with the daemon stopped.
`

type session struct {
	con   *Console
	store *keystore.Store
	cust  *custody.Custodian
	audit *Audit
	cfg   *daemon.Config
	dev   bool
}

func (s *session) init(spec *File, overwrite bool) error {
	if custodian.Enrolled(s.store) {
		if !overwrite {
			s.audit.Record(AuditEntry{Operation: "init", Outcome: "refused", Detail: "already initialized"})
			return errors.New("this appliance is already initialized; its keys are not overwritten (use --overwrite to destroy them and start again)")
		}
		if err := s.erase(); err != nil {
			return err
		}
	}
	for _, p := range spec.Profiles {
		if _, err := s.cust.Profile(p.Name); err == nil {
			return fmt.Errorf("profile %q already has a main key; it is not overwritten", p.Name)
		}
	}
	s.con.Printf("Region main key: KCV %s (in the PKCS#11 token, non-extractable)\n", s.cust.RegionKeyKCV())
	if err := enroll(s.con, s.store, s.cust, spec.Custodians); err != nil {
		return err
	}
	s.audit.Record(AuditEntry{Operation: "enroll-custodians", Custodians: spec.Custodians, Outcome: "ok",
		KCVs: map[string]string{"region": s.cust.RegionKeyKCV()}})
	rec, err := custodian.Load(s.store, s.cust)
	if err != nil {
		return err
	}
	for _, p := range spec.Profiles {
		if p.Components > 0 {
			if err := s.formProfile(rec, p, nil); err != nil {
				return err
			}
			continue
		}
		prof, err := s.cust.CreateProfile(p.Name)
		if err != nil {
			return err
		}
		s.con.Printf("Profile %s: main key generated, KCV %s\n", p.Name, prof.KCV())
		s.audit.Record(AuditEntry{Operation: "generate-profile-key", Profile: p.Name, Outcome: "ok", KCVs: map[string]string{"profile": prof.KCV()}})
	}
	s.con.Printf("Initialization complete.\n")
	return nil
}

// erase destroys an initialized appliance's keys under dual control and a
// typed confirmation: the region main key is deleted from the token (every
// sealed profile main key, and so every stored key block, becomes
// unrecoverable) and the key store is removed; the appliance is then opened
// fresh for init.
func (s *session) erase() error {
	who, err := s.approve("init-overwrite", "")
	if err != nil {
		return err
	}
	phrase := "ERASE " + s.cust.RegionKeyKCV()
	typed, err := s.con.Ask(fmt.Sprintf("This destroys every key of this appliance. Type %q to continue: ", phrase))
	if err != nil {
		return err
	}
	if typed != phrase {
		return s.refused("init-overwrite", "", who, errors.New("confirmation not given; nothing was changed"))
	}
	old := s.cust.RegionKeyKCV()
	if err := s.cust.DestroyRegionKey(); err != nil {
		return err
	}
	s.audit.Record(AuditEntry{Operation: "init-overwrite", Custodians: who, Outcome: "ok", KCVs: map[string]string{"region": old},
		Detail: "region main key destroyed; key store removed"})
	s.cust.Close()
	s.store.Close()
	if err := os.RemoveAll(filepath.Join(s.cfg.DataDir, "keystore")); err != nil {
		return err
	}
	store, cust, _, err := daemon.OpenAppliance(s.cfg, s.dev, true, zap.NewNop())
	if err != nil {
		return err
	}
	s.store, s.cust = store, cust
	s.con.Printf("Appliance erased.\n")
	return nil
}

func (s *session) loadComponents(spec *File, name string) error {
	var p *ProfileSpec
	for i := range spec.Profiles {
		if spec.Profiles[i].Name == name {
			p = &spec.Profiles[i]
		}
	}
	if p == nil || p.Components == 0 {
		return fmt.Errorf("--profile %q must name a profile with components in the ceremony file", name)
	}
	if _, err := s.cust.Profile(name); err == nil {
		return fmt.Errorf("profile %q already has a main key; it is not overwritten", name)
	}
	rec, err := custodian.Load(s.store, s.cust)
	if err != nil {
		return err
	}
	// Dual control: two custodians approve the step before any component is entered.
	a1, err := authenticate(s.con, rec, "Approver 1", nil)
	if err != nil {
		return s.refused("load-components", name, nil, err)
	}
	a2, err := authenticate(s.con, rec, "Approver 2", []string{a1})
	if err != nil {
		return s.refused("load-components", name, []string{a1}, err)
	}
	return s.formProfile(rec, *p, []string{a1, a2})
}

func (s *session) refused(op, profile string, who []string, err error) error {
	s.audit.Record(AuditEntry{Operation: op, Profile: profile, Custodians: who, Outcome: "refused", Detail: err.Error()})
	return err
}

// formProfile collects p.Components components, each from a different
// authenticated custodian, combines them and installs the profile main key.
func (s *session) formProfile(rec *custodian.Record, p ProfileSpec, approvers []string) error {
	key := make([]byte, 32)
	defer clear(key)
	var holders []string
	kcvs := map[string]string{}
	for i := 1; i <= p.Components; i++ {
		who, err := authenticate(s.con, rec, fmt.Sprintf("Component %d of %d for profile %s", i, p.Components, p.Name), holders)
		if err != nil {
			return s.refused("load-components", p.Name, holders, err)
		}
		comp, err := s.readComponent(i)
		if err != nil {
			return s.refused("load-components", p.Name, append(holders, who), err)
		}
		ck := mainkey.KCV(comp)
		s.con.Printf("Component %d KCV: %s\n", i, ck)
		if len(p.ComponentKCVs) > 0 && ck != p.ComponentKCVs[i-1] {
			clear(comp)
			return s.refused("load-components", p.Name, append(holders, who),
				fmt.Errorf("component %d has KCV %s, the ceremony file says %s: refused, nothing stored", i, ck, p.ComponentKCVs[i-1]))
		}
		ok, err := s.con.Confirm(fmt.Sprintf("Custodian %s, does KCV %s match your component's printed check value?", who, ck))
		if err != nil || !ok {
			clear(comp)
			if err == nil {
				err = fmt.Errorf("component %d's KCV was not confirmed: refused, nothing stored", i)
			}
			return s.refused("load-components", p.Name, append(holders, who), err)
		}
		for j := range key {
			key[j] ^= comp[j]
		}
		clear(comp)
		kcvs[fmt.Sprintf("component%d", i)] = ck
		holders = append(holders, who)
	}
	final := mainkey.KCV(key)
	if p.KCV != "" && final != p.KCV {
		return s.refused("load-components", p.Name, holders, fmt.Errorf("the combined key has KCV %s, the ceremony file says %s: refused, nothing stored", final, p.KCV))
	}
	prof, err := s.cust.InstallProfile(p.Name, key)
	if err != nil {
		return err
	}
	kcvs["profile"] = prof.KCV()
	s.audit.Record(AuditEntry{Operation: "load-components", Profile: p.Name, Custodians: append(approvers, holders...), Outcome: "ok", KCVs: kcvs})
	s.con.Printf("Profile %s: main key formed from %d components, KCV %s\n", p.Name, p.Components, prof.KCV())
	return nil
}

// readComponent reads one AES-256 component as 64 hex digits (spaces allowed), without echo.
func (s *session) readComponent(i int) ([]byte, error) {
	for attempt := 0; attempt < 3; attempt++ {
		raw, err := s.con.Secret(fmt.Sprintf("Enter component %d (64 hex digits): ", i))
		if err != nil {
			return nil, err
		}
		compact := make([]byte, 0, 64)
		for _, c := range raw {
			if c != ' ' && c != '-' {
				compact = append(compact, c)
			}
		}
		clear(raw)
		comp := make([]byte, 32)
		n, err := hex.Decode(comp, compact)
		clear(compact)
		if err == nil && n == 32 {
			return comp, nil
		}
		clear(comp)
		s.con.Printf("A component is 64 hexadecimal digits; try again.\n")
	}
	return nil, errors.New("ceremony: no valid component after three attempts")
}

func (s *session) status() error {
	s.con.Printf("Region main key KCV: %s\n", s.cust.RegionKeyKCV())
	rec, err := custodian.Load(s.store, s.cust)
	if err == nil {
		s.con.Printf("Custodians: %s\n", strings.Join(rec.Names(), ", "))
	}
	for _, name := range s.cust.ProfileNames() {
		p, err := s.cust.Profile(name)
		if err != nil {
			return err
		}
		s.con.Printf("Profile %s main key KCV: %s (version %d)\n", name, p.KCV(), p.Version())
		if p.Rotating() {
			s.con.Printf("Profile %s: rotation in progress; run payhsm ceremony rotate --profile %s to finish it\n", name, name)
		}
	}
	return nil
}

// rotate runs a profile main key rotation under dual control: through the
// serving daemon's admin socket when one runs, else offline on the data
// directory. Running it again after a crash resumes the same rotation.
func rotate(con *Console, cfg *daemon.Config, dev bool, profile string) error {
	if profile == "" {
		return errors.New("--profile NAME is required")
	}
	apps, err := approvals(con)
	if err != nil {
		return err
	}
	req := &daemon.AdminRequest{Op: "rotate", Profile: profile, Approvals: apps}
	resp, online, err := daemon.CallAdmin(cfg.DataDir, req)
	if online {
		if err != nil {
			return err
		}
		if resp.Error != "" {
			return errors.New(resp.Error)
		}
		printRotation(con, resp.Rotate, "online")
		return nil
	}
	store, cust, _, err := daemon.OpenAppliance(cfg, dev, false, zap.NewNop())
	if err != nil {
		return err
	}
	defer store.Close()
	defer cust.Close()
	audit, err := OpenAudit(filepath.Join(cfg.DataDir, daemon.AuditLog))
	if err != nil {
		return err
	}
	defer audit.Close()
	rec, err := custodian.Load(store, cust)
	if err != nil {
		return err
	}
	who, err := rec.DualControl(apps)
	if err != nil {
		audit.Record(AuditEntry{Operation: "rotate", Profile: profile, Outcome: "refused", Detail: err.Error()})
		return err
	}
	svc, err := ops.New(ops.Config{Region: cfg.Region, Account: cfg.Account, Profile: profile}, store, cust, zap.NewNop())
	if err != nil {
		return err
	}
	audit.Record(AuditEntry{Operation: "rotate", Profile: profile, Custodians: who, Outcome: "started", Detail: "offline"})
	rep, err := svc.RotateProfile(profile, nil, 0)
	if err != nil {
		audit.Record(AuditEntry{Operation: "rotate", Profile: profile, Custodians: who, Outcome: "failed", Detail: err.Error()})
		return err
	}
	audit.Record(AuditEntry{Operation: "rotate", Profile: profile, Custodians: who, Outcome: "ok", KCVs: map[string]string{"profile": rep.KCV},
		Detail: fmt.Sprintf("version %d, %d blocks re-wrapped, %d verified", rep.Version, rep.Rewrapped, rep.Verified)})
	printRotation(con, rep, "offline")
	return nil
}

func printRotation(con *Console, rep *ops.RotationReport, how string) {
	con.Printf("Profile %s rotated (%s): main key version %d, KCV %s; %d key blocks re-wrapped, %d verified; old main key retired.\n",
		rep.Profile, how, rep.Version, rep.KCV, rep.Rewrapped, rep.Verified)
}
