// Package ceremony owns payhsm's key ceremonies (`payhsm ceremony`):
// initializing the appliance's main keys, forming profile main keys from
// paper components, backing them up as components or TR-34 tokens, rotating
// and synchronizing them, and showing check values — on a terminal or over a
// serial console, with the same prompts and rules, under dual control. Every
// step is written to the audit log (package audit; who, what, KCVs, time,
// never key material) and stops if its record fails. Most ceremonies run with
// the daemon stopped (the keystore admits one process at a time); rotate runs
// through the serving daemon's admin socket when there is one, and sync
// between two daemons' sockets (package admin).
package ceremony

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"go.uber.org/zap"

	"payhsm/admin"
	"payhsm/appliance"
	"payhsm/audit"
	"payhsm/ceremony/custodian"
	"payhsm/ceremony/mainkey"
	"payhsm/hsm/custody"
	"payhsm/internal/cli"
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

var kcvRe = regexp.MustCompile(`^[0-9A-F]{6}$`)

// LoadFile reads and validates a ceremony file.
func LoadFile(path string) (*File, error) {
	b, err := os.ReadFile(path) //nolint:gosec // G304: the operator names the ceremony file (--ceremony).
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
		if err := custodian.CheckName(c); err != nil {
			bad("custodians: %v", err)
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
		if err := custody.CheckProfileName(p.Name); err != nil {
			bad("%s.name: %v", at, err)
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

// options are the flags of `payhsm ceremony`; each names the commands it serves.
type options struct {
	appliance               *appliance.Flags
	file, profile           string
	serialDev               string
	baud                    int
	certOut, nonceOut       string
	krdCert, nonce, out     string
	kdhCert, token, wantKCV string
	components              int
	fromAdmin, toAdmin      string
	overwrite               bool
	isolated                bool
	mpa                     mpaOptions
}

func newFlagSet(cmd string) (*flag.FlagSet, *options) {
	name := "payhsm ceremony"
	if cmd != "" {
		name += " " + cmd
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = cli.UsageFunc(fs, usage)
	o := &options{appliance: appliance.RegisterFlags(fs)}
	fs.StringVar(&o.file, "ceremony", "", "init, load-components: the ceremony file (JSON)")
	fs.StringVar(&o.profile, "profile", "", "load-components, rotate, export-main-key, import-main-key, backup-components, sync: the profile")
	fs.StringVar(&o.serialDev, "serial", "", "run the ceremony on this serial device instead of the terminal")
	fs.IntVar(&o.baud, "baud", 9600, "serial speed")
	fs.StringVar(&o.certOut, "cert-out", "appliance.pem", "krd-request: where to write this appliance's certificate")
	fs.StringVar(&o.nonceOut, "nonce-out", "nonce.hex", "krd-request: where to write the one-time nonce")
	fs.StringVar(&o.krdCert, "krd", "", "export-main-key: the receiving appliance's certificate (PEM)")
	fs.StringVar(&o.nonce, "nonce", "", "export-main-key: the receiving appliance's nonce (hex)")
	fs.StringVar(&o.out, "out", "", "export-main-key: where to write the TR-34 token")
	fs.StringVar(&o.kdhCert, "kdh", "", "import-main-key: the sending appliance's certificate (PEM)")
	fs.StringVar(&o.token, "token", "", "import-main-key: the TR-34 token")
	fs.StringVar(&o.wantKCV, "kcv", "", "import-main-key: the expected KCV of the transported key")
	fs.IntVar(&o.components, "components", 2, "backup-components: how many components (2 or 3)")
	fs.StringVar(&o.fromAdmin, "from-admin", "", "sync: the sending daemon's admin socket")
	fs.StringVar(&o.toAdmin, "to-admin", "", "sync: the receiving daemon's admin socket")
	fs.StringVar(&o.mpa.team, "team", "", "mpa-team-create, mpa-team-remove: the approval team's name (1 to 64 of a-z A-Z 0-9 . _ -)")
	fs.StringVar(&o.mpa.members, "members", "", "mpa-team-create: the team's custodians, comma-separated")
	fs.IntVar(&o.mpa.threshold, "threshold", 2, "mpa-team-create: approvals needed (M of the N members; at least 2)")
	fs.StringVar(&o.mpa.session, "session", "", "mpa-approve: the session's ARN or id (mpa-status lists them)")
	fs.BoolVar(&o.mpa.reject, "reject", false, "mpa-approve: reject the session instead (one member's rejection fails it)")
	fs.BoolVar(&o.mpa.all, "all", false, "mpa-status: list every session, not only the pending ones")
	fs.BoolVar(&o.isolated, "isolated", false, "rotate: in a fleet, do not carry the new version to the other nodes (they are stale until each is joined again: docs/fleet.md)")
	fs.BoolVar(&o.overwrite, "overwrite", false, "init: destroy an initialized appliance's keys and start again (dual control and a typed confirmation)")
	return fs, o
}

var commands = map[string]bool{"init": true, "load-components": true, "status": true, "rotate": true, "krd-request": true,
	"export-main-key": true, "import-main-key": true, "backup-components": true, "sync": true, "join": true,
	"mpa-team-create": true, "mpa-team-remove": true, "mpa-status": true, "mpa-approve": true}

// Main runs `payhsm ceremony <command>`.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	if len(args) == 0 {
		cli.Sayf(stderr, "%s", usage)
		return 2
	}
	cmd := args[0]
	switch {
	case cmd == "help" || cmd == "-h" || cmd == "-help" || cmd == "--help":
		fs, _ := newFlagSet("")
		if err := cli.PrintUsage(fs, stdout); err != nil {
			cli.Say(stderr, "payhsm ceremony: write usage:", err)
			return 1
		}
		return 0
	case !commands[cmd]:
		cli.Sayf(stderr, "payhsm ceremony: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	fs, o := newFlagSet(cmd)
	if code, ok := cli.Parse(fs, args[1:], stdout, stderr); !ok {
		return code
	}
	fail := func(err error) int {
		cli.Say(stderr, "payhsm ceremony:", err)
		return 1
	}
	if fs.NArg() > 0 {
		cli.Sayf(stderr, "payhsm ceremony %s: unexpected arguments %q\n", cmd, fs.Args())
		return 2
	}
	// Passphrases, components and main keys pass through this process.
	if err := appliance.HardenProcess(); err != nil {
		cli.Say(stderr, "payhsm ceremony: warning: cannot disable core dumps:", err)
	}
	var spec *File
	if cmd == "init" || cmd == "load-components" {
		if o.file == "" {
			return fail(errors.New("--ceremony FILE is required"))
		}
		var err error
		if spec, err = LoadFile(o.file); err != nil {
			return fail(err)
		}
	}
	if cmd == "sync" || cmd == "join" {
		if o.fromAdmin == "" || o.toAdmin == "" || o.profile == "" {
			return fail(errors.New("--from-admin, --to-admin and --profile are required"))
		}
		con := NewConsole(stdin, stdout)
		if cmd == "join" {
			con.Printf("Joining: the node behind %s receives profile %s's main key from the node behind %s.\n", o.toAdmin, o.profile, o.fromAdmin)
		}
		if err := errors.Join(syncOnline(con, o.fromAdmin, o.toAdmin, o.profile), con.Err()); err != nil {
			con.Printf("FAILED: %v\n", err)
			return fail(err)
		}
		return 0
	}
	cfg, err := o.appliance.Config()
	if err == nil {
		err = cfg.Preflight(o.appliance.Dev(), false) // the files and the token, before anything is created
	}
	if err != nil {
		return fail(err)
	}
	con := NewConsole(stdin, stdout)
	if o.serialDev != "" {
		c, closer, err := OpenSerial(o.serialDev, o.baud)
		if err != nil {
			return fail(err)
		}
		defer func() {
			if err := closer.Close(); err != nil {
				cli.Say(stderr, "payhsm ceremony: warning: serial console:", err)
			}
		}()
		con = c
	}
	if strings.HasPrefix(cmd, "mpa-") {
		if err := errors.Join(mpaCommand(con, cfg, o.appliance.Dev(), cmd, &o.mpa), con.Err()); err != nil {
			con.Printf("FAILED: %v\n", err)
			return fail(err)
		}
		return 0
	}
	if cmd == "rotate" {
		if err := errors.Join(rotate(con, cfg, o.appliance.Dev(), o.profile, o.isolated), con.Err()); err != nil {
			con.Printf("FAILED: %v\n", err)
			return fail(err)
		}
		return 0
	}
	app, err := appliance.Open(cfg, o.appliance.Dev(), cmd == "init", zap.NewNop())
	if err != nil {
		return fail(err)
	}
	trail, err := cfg.OpenAudit(app.Custody, "ceremony", nil)
	if err != nil {
		return fail(errors.Join(err, app.Close()))
	}
	s := &session{con: con, app: app, audit: trail, cfg: cfg, dev: o.appliance.Dev()}
	defer func() {
		if err := s.close(); err != nil {
			cli.Say(stderr, "payhsm ceremony:", err)
			code = max(code, 1)
		}
	}()
	switch cmd {
	case "init":
		err = s.init(spec, o.overwrite)
	case "load-components":
		err = s.loadComponents(spec, o.profile)
	case "status":
		err = s.status()
	case "krd-request":
		err = s.krdRequest(o.certOut, o.nonceOut)
	case "export-main-key":
		if o.krdCert == "" || o.out == "" || o.profile == "" {
			err = errors.New("--profile, --krd, --nonce and --out are required")
		} else {
			err = s.exportMainKey(o.profile, o.krdCert, o.nonce, o.out)
		}
	case "import-main-key":
		if o.kdhCert == "" || o.token == "" || o.profile == "" {
			err = errors.New("--profile, --kdh and --token are required")
		} else {
			err = s.importMainKey(o.profile, o.kdhCert, o.token, o.wantKCV)
		}
	case "backup-components":
		err = s.backupComponents(o.profile, o.components)
	}
	if err = errors.Join(err, con.Err()); err != nil {
		con.Printf("FAILED: %v\n", err)
		return fail(err)
	}
	return 0
}

const usage = `usage: payhsm ceremony <command> (--dev [--data-dir DIR] | --config FILE) [flags]
       payhsm ceremony sync --from-admin SOCKET --to-admin SOCKET --profile NAME
       payhsm ceremony join --from-admin SOCKET --to-admin SOCKET --profile NAME

With the daemon stopped (the key store admits one process at a time):
  init               enroll custodians, create the region main key and the profile main keys
                     (--ceremony FILE; --overwrite destroys an initialized appliance's keys first)
  load-components    form a profile main key from 2-3 components entered by separate custodians
                     (--ceremony FILE --profile NAME)
  status             show the main keys' check values, the custodians and unfinished rotations
  krd-request        (receiving appliance) write this appliance's certificate and a one-time nonce
  export-main-key    (sending appliance) export a profile main key as a TR-34 token for a
                     receiving appliance or backup HSM
  import-main-key    (receiving appliance) verify and import a TR-34 token as a profile main key
  backup-components  split a profile main key into 2-3 components for separate custodians
                     (restore with load-components)

Through the serving daemon's admin socket (DATA/admin.sock), or offline when no daemon runs:
  rotate             move a profile onto a new main key, re-wrapping every key block; resumable.
                     In a fleet the new version reaches every serving node first (--isolated: not)

Multi-Party Approval (through the serving daemon's admin socket, or offline):
  mpa-team-create    form an approval team of enrolled custodians, M of N
                     (--team NAME --members a,b,c --threshold M; dual control)
  mpa-team-remove    remove an approval team no operation is associated with (--team NAME; dual control)
  mpa-status         list the approval teams and the pending sessions (--all: every session)
  mpa-approve        approve (or --reject) a session: each approver authenticates in turn
                     (--session ARN|ID)

Between two serving daemons' admin sockets (forward them over SSH for remote hosts):
  sync               move a profile main key with TR-34; each side's custodians approve its step
  join               sync for a fleet (docs/fleet.md): a new node (--to-admin, waiting to join)
                     receives the fleet's profile main key from a serving node (--from-admin)

Every step that uses or changes a main key needs two enrolled custodians (dual control) and is
appended, synced, to the audit trail (DATA/audit; payhsm audit verify checks it); a step whose
record cannot be written stops.
The prompts work on a terminal or a serial console (--serial DEVICE [--baud N]).

flags:
`

type session struct {
	con   *Console
	app   *appliance.Appliance // nil once closed
	audit *audit.Trail
	cfg   *appliance.Config
	dev   bool
}

func (s *session) close() error {
	err := s.audit.Close()
	if s.app != nil {
		err = errors.Join(err, s.app.Close())
		s.app = nil
	}
	return err
}

// record writes one step to the audit log. An error means the ceremony stops.
func (s *session) record(e audit.Event) error {
	e.Protocol = "console"
	if err := s.audit.Record(audit.KindCeremony, e); err != nil {
		return fmt.Errorf("%s (%s) could not be recorded, so the ceremony stops: %w", e.Operation, e.Outcome, err)
	}
	return nil
}

// refused records a step that was not allowed and returns err (with the
// audit failure, if any).
func (s *session) refused(op, profile string, who []string, err error) error {
	return errors.Join(err, s.record(audit.Event{Operation: op, Profile: profile, Custodians: who, Outcome: audit.Refused, Detail: err.Error()}))
}

func (s *session) init(spec *File, overwrite bool) error {
	if custodian.Enrolled(s.app.Store, s.app.Custody) {
		if !overwrite {
			return errors.Join(errors.New("this appliance is already initialized; its keys are not overwritten (use --overwrite to destroy them and start again)"),
				s.record(audit.Event{Operation: "init", Outcome: audit.Refused, Detail: "already initialized"}))
		}
		if err := s.erase(); err != nil {
			return err
		}
	}
	// An appliance without custodians may already hold profile main keys:
	// one that `payhsm serve --dev` (make run) made. Those the file asks to
	// generate are kept, so that init enrols custodians on it; one the file
	// asks to form from components would be replaced, which init never
	// does. All of this is checked before anyone is prompted.
	existing := map[string]string{}  // profile -> KCV of its main key
	fleetHeld := map[string]string{} // profile -> the other nodes that hold it (a fleet node joins it instead)
	for _, p := range spec.Profiles {
		prof, err := s.app.Custody.Profile(p.Name)
		switch {
		case errors.Is(err, custody.ErrNoProfile):
			holders, err := fleetHolders(s.app.Custody, p.Name)
			if err != nil {
				return err
			}
			if holders != "" {
				fleetHeld[p.Name] = holders
			}
			continue
		case err != nil:
			return err
		case p.Components > 0:
			return fmt.Errorf("profile %q already has a main key (KCV %s), and the ceremony file forms it from components, "+
				"which would replace it; it is not overwritten: leave the profile out of the file, or use --overwrite", p.Name, prof.KCV())
		}
		existing[p.Name] = prof.KCV()
	}
	s.con.Printf("Region main key: KCV %s (in the PKCS#11 token, non-extractable)\n", s.app.Custody.RegionKeyKCV())
	if err := enroll(s.con, s.app.Store, s.app.Custody, spec.Custodians); err != nil {
		return err
	}
	if err := s.record(audit.Event{Operation: "enroll-custodians", Custodians: spec.Custodians, Outcome: audit.OK,
		KCVs: map[string]string{"region": s.app.Custody.RegionKeyKCV()}}); err != nil {
		return err
	}
	rec, err := custodian.Load(s.app.Store, s.app.Custody)
	if err != nil {
		return err
	}
	for _, p := range spec.Profiles {
		if holders, ok := fleetHeld[p.Name]; ok {
			// One fleet, one key per profile: a node never makes its own.
			if err := s.record(audit.Event{Operation: "skip-profile-key", Profile: p.Name, Outcome: audit.OK,
				Detail: "held by the fleet (node " + holders + "); this node receives it with payhsm ceremony join"}); err != nil {
				return err
			}
			s.con.Printf("Profile %s: held by the fleet (node %s); this node receives it with payhsm ceremony join\n", p.Name, holders)
			continue
		}
		if kcv, ok := existing[p.Name]; ok {
			if err := s.record(audit.Event{Operation: "keep-profile-key", Profile: p.Name, Outcome: audit.OK,
				KCVs: map[string]string{"profile": kcv}, Detail: "the profile already had a main key; kept"}); err != nil {
				return err
			}
			s.con.Printf("Profile %s: main key already present, KCV %s; kept\n", p.Name, kcv)
			continue
		}
		if p.Components > 0 {
			if err := s.formProfile(rec, p, nil); err != nil {
				return err
			}
			continue
		}
		prof, err := s.app.Custody.CreateProfile(p.Name)
		if err != nil {
			return err
		}
		if err := s.record(audit.Event{Operation: "generate-profile-key", Profile: p.Name, Outcome: audit.OK,
			KCVs: map[string]string{"profile": prof.KCV()}}); err != nil {
			return err
		}
		s.con.Printf("Profile %s: main key generated, KCV %s\n", p.Name, prof.KCV())
	}
	s.con.Printf("Initialization complete.\n")
	return nil
}

// fleetHolders names the other nodes of the fleet that hold profile's main
// key ("" when none does, or outside a fleet).
func fleetHolders(cust *custody.Custodian, profile string) (string, error) {
	if cust.Node() == "" {
		return "", nil
	}
	copies, err := cust.FleetProfile(profile)
	if err != nil {
		return "", err
	}
	var nodes []string
	for _, c := range copies {
		if c.Node != cust.Node() {
			nodes = append(nodes, c.Node)
		}
	}
	return strings.Join(nodes, ", "), nil
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
	phrase := "ERASE " + s.app.Custody.RegionKeyKCV()
	typed, err := s.con.Ask(fmt.Sprintf("This destroys every key of this appliance. Type %q to continue: ", phrase))
	if err != nil {
		return err
	}
	if typed != phrase {
		return s.refused("init-overwrite", "", who, errors.New("confirmation not given; nothing was changed"))
	}
	old := s.app.Custody.RegionKeyKCV()
	kcvs := map[string]string{"region": old}
	if err := s.record(audit.Event{Operation: "init-overwrite", Custodians: who, Outcome: audit.Started, KCVs: kcvs}); err != nil {
		return err
	}
	if err := s.app.Custody.DestroyRegionKey(); err != nil {
		return errors.Join(err, s.record(audit.Event{Operation: "init-overwrite", Custodians: who, Outcome: audit.Failed, KCVs: kcvs, Detail: err.Error()}))
	}
	if err := s.app.DropStoreAnchor(); err != nil { // the key store is removed below: its anchor goes with it
		return errors.Join(err, s.record(audit.Event{Operation: "init-overwrite", Custodians: who, Outcome: audit.Failed, KCVs: kcvs, Detail: err.Error()}))
	}
	if err := s.record(audit.Event{Operation: "init-overwrite", Custodians: who, Outcome: audit.OK, KCVs: kcvs,
		Detail: "region main key destroyed; key store removed"}); err != nil {
		return err
	}
	if s.cfg.Keystore.Engine == appliance.EngineEtcd {
		// A fleet's store is shared: only this node's records go (its
		// sealed copies, its region main key's record, its identity and
		// custodians); the fleet's keys stay, and the node, initialized
		// again, joins it like a new one.
		if err := s.eraseNodeRecords(); err != nil {
			return err
		}
	}
	err = s.app.Close()
	s.app = nil
	if err != nil {
		return err
	}
	if s.cfg.Keystore.Engine != appliance.EngineEtcd {
		if err := os.RemoveAll(s.cfg.KeystoreDir()); err != nil {
			return err
		}
	}
	if s.app, err = appliance.Open(s.cfg, s.dev, true, zap.NewNop()); err != nil {
		return err
	}
	// The trail goes on under the new region main key: sealed under the old
	// key's audit key, then a notice naming both.
	key, err := s.app.Custody.AuditKey()
	if err != nil {
		return err
	}
	defer clear(key)
	if err := s.audit.Rekey(key); err != nil {
		return fmt.Errorf("the appliance was erased, but the audit trail could not move to the new region main key: %w", err)
	}
	s.con.Printf("Appliance erased.\n")
	return nil
}

// eraseNodeRecords deletes this fleet node's records from the shared store
// (custody's and the ceremonies', under the node's name).
func (s *session) eraseNodeRecords() error {
	var names []string
	for _, base := range []string{"custody/", "ceremony/"} {
		prefix := s.app.Custody.MetaName(base)
		if prefix == base {
			return errors.New("this node has no fleet.node name: its records are not told apart from the fleet's; nothing more was removed")
		}
		n, err := s.app.Store.MetaNames(prefix)
		if err != nil {
			return err
		}
		names = append(names, n...)
	}
	if err := s.app.Store.PutMetas(nil, names); err != nil {
		return fmt.Errorf("the region main key was destroyed, but this node's records could not be removed from the fleet's store: %w", err)
	}
	s.con.Printf("This node's %d records removed from the fleet's store; the fleet's keys stay.\n", len(names))
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
	if _, err := s.app.Custody.Profile(name); err == nil {
		return fmt.Errorf("profile %q already has a main key; it is not overwritten", name)
	}
	rec, err := custodian.Load(s.app.Store, s.app.Custody)
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
	prof, err := s.app.Custody.InstallProfile(p.Name, key)
	if err != nil {
		return err
	}
	kcvs["profile"] = prof.KCV()
	if err := s.record(audit.Event{Operation: "load-components", Profile: p.Name, Custodians: append(approvers, holders...), Outcome: audit.OK, KCVs: kcvs}); err != nil {
		return err
	}
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
	if n := s.app.Custody.Node(); n != "" {
		s.con.Printf("Fleet node: %s\n", n)
	}
	s.con.Printf("Region main key KCV: %s\n", s.app.Custody.RegionKeyKCV())
	switch rec, err := custodian.Load(s.app.Store, s.app.Custody); {
	case err == nil:
		s.con.Printf("Custodians: %s\n", strings.Join(rec.Names(), ", "))
	case errors.Is(err, custodian.ErrNotEnrolled):
		s.con.Printf("Custodians: none enrolled\n")
	default:
		return err
	}
	for _, name := range s.app.Custody.ProfileNames() {
		p, err := s.app.Custody.Profile(name)
		if err != nil {
			return err
		}
		s.con.Printf("Profile %s main key KCV: %s (version %d)\n", name, p.KCV(), p.Version())
		switch v := p.Staged(); {
		case v > 0:
			s.con.Printf("Profile %s: main key version %d staged for a fleet rotation, not active yet (the rotating node activates it; docs/fleet.md)\n", name, v)
		case p.Rotating():
			s.con.Printf("Profile %s: rotation in progress; run payhsm ceremony rotate --profile %s to finish it\n", name, name)
		}
	}
	return nil
}

// rotateOnline runs the rotation through the serving daemon's admin socket.
// daemonAnswers reports whether a daemon listens on the admin socket.
func daemonAnswers(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	_ = c.Close() // a probe: nothing was sent
	return true
}

func rotateOnline(con *Console, cfg *appliance.Config, profile string, isolated bool) error {
	apps, err := approvals(con)
	if err != nil {
		return err
	}
	defer clearApprovals(apps)
	resp, err := admin.Call(cfg.AdminSocketPath(), &admin.Request{Op: admin.OpRotate, Profile: profile, Approvals: apps, Isolated: isolated})
	if errors.Is(err, admin.ErrNoDaemon) {
		return fmt.Errorf("the key store is in use, but no daemon answers on %s: is a ceremony running?", cfg.AdminSocketPath())
	}
	if err != nil {
		return err
	}
	r := resp.Rotate
	if r == nil {
		return errors.New("the daemon answered the rotation without a report")
	}
	printRotation(con, &ops.RotationReport{Profile: r.Profile, Version: r.Version, KCV: r.KCV, Rewrapped: r.Rewrapped, Verified: r.Verified}, "online")
	return nil
}

// rotate runs a profile main key rotation under dual control: through the
// serving daemon's admin socket when one runs, else offline on the data
// directory. Running it again after a crash resumes the same rotation.
func rotate(con *Console, cfg *appliance.Config, dev bool, profile string, isolated bool) (err error) {
	if err := custody.CheckProfileName(profile); err != nil {
		return fmt.Errorf("--profile: %w", err)
	}
	// Offline when no daemon holds the key store: then the custodians are
	// checked for before anyone is prompted. A serving daemon holds it, and
	// checks them itself. An etcd store is never held by one process: a
	// daemon of this node that answers on its admin socket rotates (its
	// unsealed main keys must follow).
	if cfg.Keystore.Engine == appliance.EngineEtcd && daemonAnswers(cfg.AdminSocketPath()) {
		return rotateOnline(con, cfg, profile, isolated)
	}
	app, err := appliance.Open(cfg, dev, false, zap.NewNop())
	if errors.Is(err, keystore.ErrInUse) {
		return rotateOnline(con, cfg, profile, isolated)
	}
	if err != nil {
		return err
	}
	trail, err := cfg.OpenAudit(app.Custody, "ceremony", nil)
	if err != nil {
		return errors.Join(err, app.Close())
	}
	s := &session{con: con, app: app, audit: trail, cfg: cfg, dev: dev}
	defer func() { err = errors.Join(err, s.close()) }()
	rec, err := custodian.Load(app.Store, app.Custody)
	if err != nil {
		return err
	}
	apps, err := approvals(con)
	if err != nil {
		return err
	}
	defer clearApprovals(apps)
	who, err := rec.DualControl(custodianApprovals(apps))
	if err != nil {
		return s.refused("rotate", profile, nil, err)
	}
	svc, err := ops.New(ops.Config{Region: cfg.Region, Account: cfg.Account, Profile: profile}, app.Store, app.Custody, zap.NewNop())
	if err != nil {
		return err
	}
	if err := s.record(audit.Event{Operation: "rotate", Profile: profile, Custodians: who, Outcome: audit.Started, Detail: "offline"}); err != nil {
		return err
	}
	rep, err := svc.RotateProfile(profile, nil, 0)
	if err != nil {
		return errors.Join(err, s.record(audit.Event{Operation: "rotate", Profile: profile, Custodians: who, Outcome: audit.Failed, Detail: err.Error()}))
	}
	if err := s.record(audit.Event{Operation: "rotate", Profile: profile, Custodians: who, Outcome: audit.OK, KCVs: map[string]string{"profile": rep.KCV},
		Detail: fmt.Sprintf("version %d, %d blocks re-wrapped, %d verified", rep.Version, rep.Rewrapped, rep.Verified)}); err != nil {
		return err
	}
	printRotation(con, rep, "offline")
	return nil
}

func printRotation(con *Console, rep *ops.RotationReport, how string) {
	con.Printf("Profile %s rotated (%s): main key version %d, KCV %s; %d key blocks re-wrapped, %d verified; old main key retired.\n",
		rep.Profile, how, rep.Version, rep.KCV, rep.Rewrapped, rep.Verified)
}
