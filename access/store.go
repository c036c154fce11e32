package access

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"payhsm/fault"
	"payhsm/keystore"
)

// Principals are stored one per key-store meta record, "access/principal/<name>"
// (authenticated by the store like every service record), as JSON whose
// SigV4 secret is sealed under the region main key (one appliance) or, in a
// fleet, for every node (BlockSealer), with associated data naming the
// principal and its access key id, so a record cannot lend its secret to
// another. keystore has no meta deletion: a removed principal
// leaves a tombstone record.
const metaPrefix = "access/principal/"

// MetaStore is the part of the key store principals are kept in.
type MetaStore interface {
	GetMeta(name string) ([]byte, error)
	PutMeta(name string, value []byte) error
	MetaNames(prefix string) ([]string, error)
}

// Sealer seals secrets under the region main key (custody.Custodian).
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Unseal(ciphertext, aad []byte) ([]byte, error)
}

// BlockSealer is a Sealer that can also seal for every node of a fleet
// (custody.FleetSealer): under a data key carried as a key block under the
// namespace profile's main key, kept in the record's "keyBlock" member (a
// main key rotation re-wraps it). A Manager given one seals new secrets so;
// records sealed with Seal (before the appliance joined a fleet) are still
// read with Unseal.
type BlockSealer interface {
	Sealer
	SealBlock(plaintext, aad []byte) (keyBlock string, sealed []byte, err error)
	UnsealBlock(keyBlock string, sealed, aad []byte) ([]byte, error)
}

// record is a stored principal.
type record struct {
	Name         string `json:"name"`
	Account      string `json:"account"`
	Kind         Kind   `json:"kind"`
	AccessKeyID  string `json:"accessKeyId,omitempty"`
	SealedSecret []byte `json:"sealedSecret,omitempty"`
	// KeyBlock is the data key SealedSecret is sealed under, wrapped under
	// the namespace profile main key (BlockSealer); "" when it is sealed
	// under the region main key.
	KeyBlock    string         `json:"keyBlock,omitempty"`
	HostClients []string       `json:"hostClients,omitempty"`
	Disabled    bool           `json:"disabled,omitempty"`
	Removed     bool           `json:"removed,omitempty"`
	Policies    []policyRecord `json:"policies,omitempty"`
	Updated     time.Time      `json:"updated"`
}

type policyRecord struct {
	Name     string `json:"name"`
	Document string `json:"document"`
}

func secretAAD(name, akid string) []byte {
	return []byte("payhsm access principal secret\x00" + name + "\x00" + akid)
}

// Info describes a principal for listing: never its secret.
type Info struct {
	Name        string   `json:"Name"`
	ARN         string   `json:"Arn"`
	AccessKeyID string   `json:"AccessKeyId,omitempty"`
	HostClients []string `json:"HostClients,omitempty"`
	Disabled    bool     `json:"Disabled,omitempty"`
	Policies    []string `json:"Policies,omitempty"`
	BuiltIn     bool     `json:"BuiltIn,omitempty"`
}

// Manager keeps the stored principals and the built-in ones (the
// credentials file's, or --dev's default), and installs every change in its
// Authorizer at once. Its methods serialize.
type Manager struct {
	mu      sync.Mutex
	store   MetaStore
	sealer  Sealer
	account string
	builtIn []*Principal
	az      *Authorizer
}

// NewManager loads the stored principals, adds builtIn (which may not share
// a name with a stored one) and returns the Manager with its Authorizer.
func NewManager(store MetaStore, sealer Sealer, account string, builtIn []*Principal) (*Manager, error) {
	m := &Manager{store: store, sealer: sealer, account: account, builtIn: builtIn}
	d, err := m.load()
	if err != nil {
		return nil, err
	}
	m.az = NewAuthorizer(d)
	m.az.SetAccount(account)
	return m, nil
}

// Authorizer is the Manager's authorizer.
func (m *Manager) Authorizer() *Authorizer { return m.az }

// BuiltIn makes the all-powerful principals of SigV4 credentials that are
// configured rather than stored (--dev's, or credentialsFile's): the first
// access key id in order is DefaultPrincipal, the others default-2, default-3….
func BuiltIn(account string, creds map[string]string) ([]*Principal, error) {
	allow, err := ParsePolicy("AllowAll", []byte(AllowAllPolicy))
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(creds))
	for id := range creds {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []*Principal
	for i, id := range ids {
		name := DefaultPrincipal
		if i > 0 {
			name = fmt.Sprintf("%s-%d", DefaultPrincipal, i+1)
		}
		p, err := NewPrincipal(Principal{Name: name, Account: account, AccessKeyID: id, Secret: creds[id]}, allow)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func (m *Manager) load() (*Directory, error) {
	names, err := m.store.MetaNames(metaPrefix)
	if err != nil {
		return nil, fmt.Errorf("access: list principals: %w", err)
	}
	ps := append([]*Principal(nil), m.builtIn...)
	for _, n := range names {
		r, err := m.get(strings.TrimPrefix(n, metaPrefix))
		if err != nil {
			return nil, err
		}
		if r.Removed {
			continue
		}
		p, err := m.principal(r)
		if err != nil {
			return nil, fmt.Errorf("access: principal %s: %w", r.Name, err)
		}
		ps = append(ps, p)
	}
	return NewDirectory(ps)
}

func (m *Manager) get(name string) (*record, error) {
	b, err := m.store.GetMeta(metaPrefix + name)
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil || r.Name != name {
		return nil, fmt.Errorf("access: principal record %s is malformed", name)
	}
	return &r, nil
}

func (m *Manager) principal(r *record) (*Principal, error) {
	p := Principal{Name: r.Name, Account: r.Account, Kind: r.Kind, AccessKeyID: r.AccessKeyID,
		HostClients: r.HostClients, Disabled: r.Disabled}
	if r.AccessKeyID != "" {
		var s []byte
		var err error
		if bs, ok := m.sealer.(BlockSealer); ok && r.KeyBlock != "" {
			s, err = bs.UnsealBlock(r.KeyBlock, r.SealedSecret, secretAAD(r.Name, r.AccessKeyID))
		} else if r.KeyBlock != "" {
			err = errors.New("the secret is sealed for a fleet, and this appliance has no fleet sealer")
		} else {
			s, err = m.sealer.Unseal(r.SealedSecret, secretAAD(r.Name, r.AccessKeyID))
		}
		if err != nil {
			return nil, fmt.Errorf("unseal secret: %w", err)
		}
		p.Secret = string(s)
		clear(s)
	}
	pols := make([]*Policy, 0, len(r.Policies))
	for _, pr := range r.Policies {
		pol, err := ParsePolicy(pr.Name, []byte(pr.Document))
		if err != nil {
			return nil, err
		}
		pols = append(pols, pol)
	}
	return NewPrincipal(p, pols...)
}

// put stores r and reloads the directory; on a failed reload the change is
// still stored, and the error says so.
func (m *Manager) put(r *record) error {
	r.Updated = time.Now().UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return fault.Internalf("encode principal", err)
	}
	if err := m.store.PutMeta(metaPrefix+r.Name, b); err != nil {
		return fault.Internalf("store principal", err)
	}
	d, err := m.load()
	if err != nil {
		return fault.Internalf("reload principals", err)
	}
	m.az.Swap(d)
	return nil
}

// Reload reads the stored principals again: another node of a fleet
// changed them (its writes reach this one through the store's watch).
func (m *Manager) Reload() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, err := m.load()
	if err != nil {
		return fmt.Errorf("access: reload principals: %w", err)
	}
	m.az.Swap(d)
	return nil
}

// PrincipalRecord reports whether the metadata record name is a stored
// principal's.
func PrincipalRecord(name string) bool { return strings.HasPrefix(name, metaPrefix) }

// AddInput is a new principal.
type AddInput struct {
	Name string
	// Account is the principal's account (default: the appliance's). A
	// principal of another account uses the appliance's keys only as
	// their resource-based policies grant it.
	Account string
	Kind    Kind
	// AccessKey asks for a SigV4 access key (shown once, in Add's result).
	AccessKey   bool
	HostClients []string
	// Policies maps policy name → IAM JSON document.
	Policies map[string]string
}

// Credentials is a new or rotated SigV4 key pair, shown once.
type Credentials struct {
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
}

func (m *Manager) builtInNamed(name string) bool {
	for _, p := range m.builtIn {
		if p.Name == name {
			return true
		}
	}
	return false
}

// Add creates a principal; its secret, if any, is returned only here.
func (m *Manager) Add(in AddInput) (*Info, *Credentials, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.builtInNamed(in.Name) {
		return nil, nil, fault.Conflictf("principal %s is built in (configured credentials)", in.Name)
	}
	if old, err := m.get(in.Name); err == nil && !old.Removed {
		return nil, nil, fault.Conflictf("principal %s exists", in.Name)
	} else if err != nil && !errors.Is(err, keystore.ErrNotFound) {
		return nil, nil, fault.Internalf("read principal", err)
	}
	r := &record{Name: in.Name, Account: m.account, Kind: in.Kind, HostClients: in.HostClients}
	if in.Account != "" {
		r.Account = in.Account
	}
	if r.Kind == "" {
		r.Kind = User
	}
	names := make([]string, 0, len(in.Policies))
	for n := range in.Policies {
		names = append(names, n)
	}
	slices.Sort(names)
	var pols []*Policy
	for _, n := range names {
		pol, err := ParsePolicy(n, []byte(in.Policies[n]))
		if err != nil {
			return nil, nil, err
		}
		pols = append(pols, pol)
		r.Policies = append(r.Policies, policyRecord{Name: n, Document: in.Policies[n]})
	}
	var creds *Credentials
	p := Principal{Name: r.Name, Account: r.Account, Kind: r.Kind, HostClients: r.HostClients}
	if in.AccessKey {
		var err error
		if creds, err = m.newCredentials(r); err != nil {
			return nil, nil, err
		}
		p.AccessKeyID, p.Secret = creds.AccessKeyID, creds.SecretAccessKey
	}
	np, err := NewPrincipal(p, pols...)
	if err != nil {
		return nil, nil, err
	}
	if err := m.checkUnique(np); err != nil {
		return nil, nil, err
	}
	if err := m.put(r); err != nil {
		return nil, nil, err
	}
	return info(np, false), creds, nil
}

// checkUnique refuses a principal whose access key or host clients another
// principal holds.
func (m *Manager) checkUnique(np *Principal) error {
	var ps []*Principal
	for _, p := range m.az.Directory().Principals() {
		if p.Name != np.Name {
			ps = append(ps, p)
		}
	}
	_, err := NewDirectory(append(ps, np))
	return err
}

func (m *Manager) newCredentials(r *record) (*Credentials, error) {
	id, err := randomString("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
	if err != nil {
		return nil, fault.Internalf("access key id", err)
	}
	sb := make([]byte, 30)
	if _, err := rand.Read(sb); err != nil {
		return nil, fault.Internalf("secret", err)
	}
	c := &Credentials{AccessKeyID: "PHIA" + id, SecretAccessKey: base64.StdEncoding.EncodeToString(sb)}
	clear(sb)
	var (
		sealed []byte
		block  string
	)
	if bs, ok := m.sealer.(BlockSealer); ok {
		block, sealed, err = bs.SealBlock([]byte(c.SecretAccessKey), secretAAD(r.Name, c.AccessKeyID))
	} else {
		sealed, err = m.sealer.Seal([]byte(c.SecretAccessKey), secretAAD(r.Name, c.AccessKeyID))
	}
	if err != nil {
		return nil, fault.Internalf("seal secret", err)
	}
	r.AccessKeyID, r.SealedSecret, r.KeyBlock = c.AccessKeyID, sealed, block
	return c, nil
}

func randomString(alphabet string, n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b), nil
}

// update changes a stored principal (not a built-in one).
func (m *Manager) update(name string, f func(r *record) error) error {
	if m.builtInNamed(name) {
		return fault.Conflictf("principal %s is built in (configured credentials): change the configuration instead", name)
	}
	r, err := m.get(name)
	if errors.Is(err, keystore.ErrNotFound) || (err == nil && r.Removed) {
		return fault.NotFoundf(name, "principal %s not found", name)
	}
	if err != nil {
		return fault.Internalf("read principal", err)
	}
	if err := f(r); err != nil {
		return err
	}
	return m.put(r)
}

// RotateSecret gives a principal a new SigV4 key pair, shown once; the old
// one stops working at once.
func (m *Manager) RotateSecret(name string) (*Credentials, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var creds *Credentials
	err := m.update(name, func(r *record) error {
		var err error
		creds, err = m.newCredentials(r)
		return err
	})
	return creds, err
}

// SetDisabled disables (or enables) a principal: a disabled one is refused everything.
func (m *Manager) SetDisabled(name string, disabled bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.update(name, func(r *record) error { r.Disabled = disabled; return nil })
}

// PutPolicy attaches (or replaces) a named identity policy.
func (m *Manager) PutPolicy(name, policy, doc string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := ParsePolicy(policy, []byte(doc)); err != nil {
		return err
	}
	return m.update(name, func(r *record) error {
		r.Policies = slices.DeleteFunc(r.Policies, func(p policyRecord) bool { return p.Name == policy })
		r.Policies = append(r.Policies, policyRecord{Name: policy, Document: doc})
		return nil
	})
}

// Remove deletes a principal (its record becomes a tombstone).
func (m *Manager) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.update(name, func(r *record) error {
		*r = record{Name: r.Name, Account: r.Account, Kind: r.Kind, Removed: true}
		return nil
	})
}

// List describes every principal, by name.
func (m *Manager) List() []Info {
	var out []Info
	for _, p := range m.az.Directory().Principals() {
		out = append(out, *info(p, m.builtInNamed(p.Name)))
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func info(p *Principal, builtIn bool) *Info {
	i := &Info{Name: p.Name, ARN: p.ARN(), AccessKeyID: p.AccessKeyID, HostClients: p.HostClients, Disabled: p.Disabled, BuiltIn: builtIn}
	for _, pol := range p.policies {
		i.Policies = append(i.Policies, pol.name)
	}
	return i
}
