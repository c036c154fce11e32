// Package ops is payhsm's one transport-neutral operations layer: the AWS
// Payment Cryptography semantics (key lifecycle, aliases, tags, import and
// export, and the cryptographic operations) and the key-separation rules live
// here, once. The HTTP API and the host-command protocol decode their wire
// formats into this package's requests and encode its answers; every error it
// returns is a *fault.Error, translated by each edge.
package ops

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"payhsm/fault"
	"payhsm/hsm/custody"
	"payhsm/keystore"
)

// Config is the service's identity and limits.
type Config struct {
	Region  string // e.g. us-east-1
	Account string // 12 digits
	// Profile is the key space the AWS API works in (the LMK equivalent).
	Profile string
	// MaxTagsPerKey bounds TagResource (default 50).
	MaxTagsPerKey int
	Now           func() time.Time
	// NewRSAKey makes the RSA keys the service generates (key pairs,
	// import-token wrapping keys, the profile CA); nil means rsa.GenerateKey
	// over crypto/rand. Tests hand it committed test-only keys so that a test
	// run does not spend most of its CPU searching for primes.
	NewRSAKey func(bits int) (*rsa.PrivateKey, error)
	// OnPurge, when set, is told of every key the service itself deletes
	// once its deletion waiting period has ended (the daemon records it in
	// the audit trail, as a control-plane event no caller made).
	OnPurge func(keyARN string)
	// Node names this node among the services on a shared store (for the
	// leader election's logs and status); default the host name.
	Node string
	// LeaderTTL is the lease of the fleet's leader (see Run); default
	// DefaultLeaderTTL.
	LeaderTTL time.Duration
	// WorkingKeys is how many keys the working-key cache holds at most
	// (default DefaultWorkingKeys); each takes up to WorkingKeyHeap bytes
	// of heap. Sized to the keys a data plane draws from, every key is
	// opened once and then served from memory.
	WorkingKeys int
}

// Service implements the operations.
type Service struct {
	cfg    Config
	prefix string // arnPrefix, built once
	store  *keystore.Store
	cust   *custody.Custodian
	log    *zap.Logger

	caMu    sync.Mutex // guards cas and CA creation
	cas     map[string]*authority
	tokenMu sync.Mutex // serializes import-token issue

	cache keyCache // working keys for the data operations

	leading atomic.Bool                                      // inside Run, elected leader of a shared store (fleet.go)
	onMeta  atomic.Pointer[func(names []string, reset bool)] // OnMetaChange (fleet.go)

	repl replication // Multi-Region key replication (replication.go)

	approvals Approvals // Multi-Party Approval (mpa.go); nil: none

	fleetRot atomic.Pointer[FleetRotation] // SetFleetRotation (rotate.go)
}

// New returns a Service over an open keystore and custodian.
func New(cfg Config, store *keystore.Store, cust *custody.Custodian, log *zap.Logger) (*Service, error) {
	if cfg.Region == "" || cfg.Account == "" {
		return nil, errors.New("ops: region and account are required")
	}
	if cfg.Profile == "" {
		cfg.Profile = "default"
	}
	if cfg.MaxTagsPerKey == 0 {
		cfg.MaxTagsPerKey = 50
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Node == "" {
		cfg.Node, _ = os.Hostname()
	}
	if cfg.LeaderTTL <= 0 {
		cfg.LeaderTTL = DefaultLeaderTTL
	}
	if cfg.NewRSAKey == nil {
		cfg.NewRSAKey = func(bits int) (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, bits) }
	}
	if _, err := cust.Profile(cfg.Profile); err != nil {
		return nil, fmt.Errorf("ops: profile %q: %w", cfg.Profile, err)
	}
	if cfg.WorkingKeys < 0 {
		return nil, fmt.Errorf("ops: working-key cache of %d keys", cfg.WorkingKeys)
	}
	s := &Service{cfg: cfg, prefix: "arn:aws:payment-cryptography:" + cfg.Region + ":" + cfg.Account + ":",
		store: store, cust: cust, log: log, cas: map[string]*authority{}}
	s.cache.capacity = cfg.WorkingKeys
	return s, nil
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }

// Run runs the fleet's background jobs until ctx ends: every interval, it
// purges the keys whose deletion waiting period has ended. On a shared
// store they run once per fleet: only while this node is the elected
// leader (keystore.Store.Lead; Config.LeaderTTL is the lease), and a node
// that loses leadership stops them. On a store with one process they run
// at once.
func (s *Service) Run(ctx context.Context, every time.Duration) {
	s.store.Lead(ctx, leaderRole, s.cfg.Node, s.cfg.LeaderTTL, func(ctx context.Context) {
		s.leading.Store(true)
		defer s.leading.Store(false)
		s.purgeLoop(ctx, every)
	})
}

// purgeLoop purges keys due every interval until ctx ends.
func (s *Service) purgeLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.PurgeDue()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// PurgeDue deletes every key whose deletion waiting period has ended, with its aliases and tags.
func (s *Service) PurgeDue() {
	ids, err := s.store.DueForPurge(s.now())
	if err != nil {
		s.log.Error("list keys due for deletion", zap.Error(err))
		return
	}
	for _, id := range ids {
		s.cache.dropKey(id)
		if err := s.store.PurgeKey(id); err != nil && !errors.Is(err, keystore.ErrNotFound) {
			s.log.Error("delete key", zap.String("key", s.keyARN(id)), zap.Error(err))
			continue
		}
		s.log.Info("key deleted after its waiting period", zap.String("key", s.keyARN(id)))
		s.purged(id)
	}
}

// purged tells Config.OnPurge of a key deleted after its waiting period.
func (s *Service) purged(id string) {
	if s.cfg.OnPurge != nil {
		s.cfg.OnPurge(s.keyARN(id))
	}
}

// --- identifiers ---

func (s *Service) arnPrefix() string {
	if s.prefix != "" {
		return s.prefix
	}
	return "arn:aws:payment-cryptography:" + s.cfg.Region + ":" + s.cfg.Account + ":"
}

func (s *Service) keyARN(id string) string { return s.arnPrefix() + "key/" + id }

// cutARNPrefix is strings.CutPrefix(arn, s.arnPrefix()) without building the
// prefix (authorization looks at every request's identifiers).
func (s *Service) cutARNPrefix(arn string) (string, bool) {
	rest, ok := strings.CutPrefix(arn, "arn:aws:payment-cryptography:")
	if !ok {
		return "", false
	}
	region, rest, ok := strings.Cut(rest, ":")
	if !ok || region != s.cfg.Region {
		return "", false
	}
	account, rest, ok := strings.Cut(rest, ":")
	if !ok || account != s.cfg.Account {
		return "", false
	}
	return rest, true
}

const idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

func newKeyID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)] // 256 % 36 bias is irrelevant for an identifier
	}
	return string(b), nil
}

// parseKeyARN returns the key id of a key ARN of this region and account.
func (s *Service) parseKeyARN(arn string) (string, bool) {
	rest, ok := strings.CutPrefix(arn, s.arnPrefix()+"key/")
	if !ok || len(rest) < 16 || len(rest) > 64 {
		return "", false
	}
	for _, c := range rest {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return "", false
		}
	}
	return rest, true
}

// aliasName turns an alias name or alias ARN into an alias name.
func (s *Service) aliasName(ident string) (string, bool) {
	if strings.HasPrefix(ident, "alias/") {
		return ident, true
	}
	if rest, ok := s.cutARNPrefix(ident); ok && strings.HasPrefix(rest, "alias/") {
		return rest, true
	}
	return "", false
}

// resolve finds the key a KeyIdentifier (key ARN, alias name or alias ARN) names.
func (s *Service) resolve(ident string) (*keystore.Key, error) {
	var id string
	if name, ok := s.aliasName(ident); ok {
		a, err := s.store.GetAlias(name)
		if errors.Is(err, keystore.ErrNotFound) || (err == nil && a.KeyID == "") {
			return nil, fault.NotFoundf(ident, "alias %s does not exist or is not associated with a key", name)
		}
		if err != nil {
			return nil, readErr("read alias", err)
		}
		id = a.KeyID
	} else if kid, ok := s.parseKeyARN(ident); ok {
		id = kid
	} else {
		return nil, fault.NotFoundf(ident, "key %s not found", ident)
	}
	k, err := s.store.GetKey(id)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, fault.NotFoundf(ident, "key %s not found", ident)
	}
	if err != nil {
		return nil, readErr("read key", err)
	}
	if k.State == StateDeletePending && !k.DeletePending.IsZero() && !s.now().Before(k.DeletePending) {
		s.cache.dropKey(id)
		if err := s.store.PurgeKey(id); err != nil && !errors.Is(err, keystore.ErrNotFound) {
			return nil, fault.Internalf("delete key", err)
		}
		s.purged(id)
		return nil, fault.NotFoundf(ident, "key %s not found", ident)
	}
	return k, nil
}

// readErr classifies a failed read of the store: Unavailable when the store
// cannot be reached now (a shared store without quorum: the client should
// retry, on another node), Internal otherwise.
func readErr(what string, err error) error {
	if fault.KindOf(err) == fault.Unavailable {
		return fault.Wrap(fault.Unavailable, "the key store cannot be reached now; retry (on another node)", err)
	}
	return fault.Internalf(what, err)
}

// resolveARN is resolve for members that must be a key ARN (ResourceArn, KeyArn).
func (s *Service) resolveARN(arn string) (*keystore.Key, error) {
	if _, ok := s.parseKeyARN(arn); !ok {
		return nil, fault.NotFoundf(arn, "key %s not found", arn)
	}
	return s.resolve(arn)
}

// usable reports why k cannot be used for cryptography now, if it cannot.
func (s *Service) usable(k *keystore.Key, ident string) error {
	now := s.now()
	var why string
	switch {
	case k.State == StateDeletePending:
		why = "is pending deletion and cannot be used"
	case k.State != StateCreateComplete:
		why = "is in state " + k.State + " and cannot be used"
	case !k.Enabled:
		why = "is disabled"
	case !k.UsageStart.IsZero() && now.Before(k.UsageStart):
		why = "is not yet in its usage period"
	case !k.UsageStop.IsZero() && !now.Before(k.UsageStop):
		why = "is past its usage period"
	default:
		return nil
	}
	return fault.KeyRule(fault.ViolationState, "key %s %s", ident, why)
}

func (s *Service) describe(k *keystore.Key) *Key {
	return &Key{
		ARN: s.keyARN(k.ID), Attributes: k.Attributes, DeriveKeyUsage: k.DeriveKeyUsage,
		KCV: k.KCV, KCVAlgorithm: k.KCVAlgorithm, Enabled: k.Enabled, Exportable: k.Exportable,
		State: k.State, Origin: k.Origin, Created: k.Created, UsageStart: k.UsageStart,
		UsageStop: k.UsageStop, DeletePending: k.DeletePending, Deleted: k.Deleted,
		Replication: s.replicationOf(k.ID),
	}
}

// storeErr classifies a keystore error.
func storeErr(what string, err error, resource string) error {
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		return fault.NotFoundf(resource, "%s not found", resource)
	case errors.Is(err, keystore.ErrExists):
		return fault.Conflictf("%s already exists", resource)
	case errors.Is(err, keystore.ErrBadToken):
		return fault.About(fault.SubjectPageToken, "the pagination token is invalid or expired")
	case errors.Is(err, keystore.ErrTooManyTags):
		return fault.QuotaExceededf("a key can have at most the configured number of tags")
	case errors.Is(err, keystore.ErrIntegrity):
		return fault.Internalf(what, err) // a fault of its own, not the store's shared sentinel
	}
	var f *fault.Error
	if errors.As(err, &f) {
		return f
	}
	return fault.Internalf(what, err)
}

// DefaultProfile is the profile the AWS API works in.
func (s *Service) DefaultProfile() string { return s.cfg.Profile }

// ProfileKCV returns a profile main key's check value (hex, 6 digits).
func (s *Service) ProfileKCV(profile string) (string, error) {
	p, err := s.cust.Profile(profile)
	if errors.Is(err, custody.ErrNoProfile) {
		return "", fault.NotFoundf(profile, "profile %s has no main key", profile)
	}
	if err != nil {
		return "", fault.Internalf("profile main key", err)
	}
	return p.KCV(), nil
}
