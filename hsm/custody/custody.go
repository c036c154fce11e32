// Package custody owns payhsm's main keys: the region main key that lives in a
// PKCS#11 token and the profile main keys it protects; and what else the
// token keeps for the appliance, beyond the reach of whoever can write the
// data directory: the key store's format marker and its journal's anchor
// (records.go, anchor.go).
//
// # Design
//
// The key hierarchy follows the AWS Payment Cryptography user guide ("Key
// hierarchy"):
//
//   - The region main key (RMK) is an AES-256 secret key generated inside the
//     PKCS#11 token (CKA_TOKEN, CKA_SENSITIVE, non-extractable) and found by its
//     label. It never leaves the token. Its key check value (AES-CMAC of a zero
//     block, computed through the token) is recorded in the keystore at first
//     start; every later start refuses to run when the token or the key is
//     missing or the check value differs (a wrong or replaced token).
//   - The RMK is the key-encryption key of a Tink envelope AEAD
//     (github.com/tink-crypto/tink-go/v2, KMS envelope with AES-256-GCM data
//     keys): each sealed secret gets a fresh data key, and only that data key
//     is encrypted by the token (CKM_AES_GCM). Everything at rest that is not
//     itself an X9.143 key block is sealed this way, with associated data that
//     binds it to its purpose.
//   - Profile main keys (PMK, the payShield LMK equivalent; a profile is a key
//     space) are AES-256 keys sealed under the RMK and stored in the keystore.
//     They are unsealed once, at start, into locked process memory: the
//     profile main key is the key block protection key (KBPK) of every customer
//     key of its profile, so TR-31 unwrapping on the hot path runs in memory and
//     never calls the PKCS#11 module per operation.
//   - Every customer key is stored only as an ANSI X9.143 key block, version D,
//     under its profile main key (see Profile.Wrap and Profile.Unwrap),
//     including asymmetric private keys (PKCS#8 DER as the key field).
//
// The process boundary is therefore the cryptographic boundary for working
// keys, as in a payShield whose LMKs sit in secure memory: clear keys exist only
// in this process's memory, are zeroed after use where the code controls them,
// and never reach disk or logs. The daemon disables core dumps.
package custody

import (
	"bytes"
	"crypto/aes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/tink"
	"go.uber.org/zap"

	"payhsm/hsm/kcv"
	"payhsm/hsm/secret"
	"payhsm/hsm/tr31"
)

// DefaultRegionKeyLabel is the PKCS#11 label of the region main key.
const DefaultRegionKeyLabel = "payhsm-region-main-key"

// MetaStore is the part of the keystore custody persists its records in.
type MetaStore interface {
	GetMeta(name string) ([]byte, error)
	PutMeta(name string, value []byte) error
	PutMetaIfAbsent(name string, value []byte) error
	MetaNames(prefix string) ([]string, error)
}

// ErrMetaNotFound must be what MetaStore.GetMeta returns (wrapped or not) for
// an absent record; the daemon passes the keystore's sentinel.
var ErrMetaNotFound = errors.New("custody: meta record not found")

// Config selects the token and the region main key.
type Config struct {
	// Module is the PKCS#11 module; nil means PKCS11Module(ModulePath).
	// Tests of the layers above pass an in-memory module (hsm/custody/memtoken).
	Module         Module
	ModulePath     string // PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so
	TokenLabel     string
	PIN            string // user PIN; comes from a file or the environment, never argv
	RegionKeyLabel string // default DefaultRegionKeyLabel
	// Initialize allows creating the region main key when the keystore has no
	// record of one (first start in --dev mode, or the ceremony's init).
	Initialize bool
	// NotFound is the keystore's not-found sentinel for MetaStore.GetMeta.
	NotFound error
	// LossGrace is how long the unsealed main keys keep serving once Probe
	// has found the token unavailable (see health.go); 0 refuses at once.
	LossGrace time.Duration
	// Now is the clock of the token's health; nil means time.Now.
	Now func() time.Time
	// Node is this appliance's name in a fleet sharing one key store
	// (fleet.node; see node.go and docs/fleet.md): custody's and the
	// ceremonies' records are kept under it. "" (one appliance) keeps the
	// record names of a single appliance.
	Node string
}

// Custodian holds the open token, the region main key and the unsealed profile main keys.
type Custodian struct {
	cfg    Config
	module Module
	rmkKCV string
	meta   MetaStore
	log    *zap.Logger

	// tokMu guards the token session: held shared while token, rmk or
	// envelope is used, exclusively while Probe replaces them (health.go)
	// and by Close. token is nil once closed, or while the token is lost.
	tokMu    sync.RWMutex
	token    Token
	rmk      TokenKey
	envelope tink.AEAD
	closed   bool
	health   tokenHealth

	mu       sync.RWMutex // guards profiles; never held while writing to the store
	profiles map[string]*Profile
	// rotMu serializes the profile record's read-modify-write (rotation
	// steps). It is not mu: the store, holding its write lock, asks for
	// record-authentication keys (RecordKey), which take mu.
	rotMu sync.Mutex
}

type regionRecord struct {
	Version int       `json:"v"`
	Label   string    `json:"label"`
	KCV     string    `json:"kcv"`
	Created time.Time `json:"created"`
}

// profileRecord is a profile's sealed main keys. Format 2 holds versions;
// format 1 (one key in KCV/Sealed/Created) is still read.
type profileRecord struct {
	Version  int              `json:"v"`
	Name     string           `json:"name"`
	Active   int              `json:"active,omitempty"`
	Versions []profileVersion `json:"versions,omitempty"`
	KCV      string           `json:"kcv,omitempty"`
	Sealed   []byte           `json:"sealed,omitempty"`
	Created  time.Time        `json:"created,omitzero"`
}

type profileVersion struct {
	Version int       `json:"version"`
	KCV     string    `json:"kcv"`
	Sealed  []byte    `json:"sealed"`
	Created time.Time `json:"created"`
}

const (
	metaRegion        = "custody/region-main-key"
	metaProfilePrefix = "custody/profile/"
)

// Open logs in to the token, finds (or, with cfg.Initialize, creates) the
// region main key and checks it against the recorded check value.
func Open(cfg Config, meta MetaStore, log *zap.Logger) (c *Custodian, err error) {
	if cfg.RegionKeyLabel == "" {
		cfg.RegionKeyLabel = DefaultRegionKeyLabel
	}
	if cfg.NotFound == nil {
		cfg.NotFound = ErrMetaNotFound
	}
	if (cfg.Module == nil && cfg.ModulePath == "") || cfg.TokenLabel == "" {
		return nil, errors.New("custody: PKCS#11 module path and token label are required")
	}
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Node != "" {
		if err := CheckNodeName(cfg.Node); err != nil {
			return nil, fmt.Errorf("custody: %w", err)
		}
	}
	mod := cfg.Module
	if mod == nil {
		mod = PKCS11Module(cfg.ModulePath)
	}
	tok, err := mod.Login(cfg.TokenLabel, cfg.PIN)
	if err != nil {
		name := cfg.ModulePath
		if name == "" {
			name = fmt.Sprintf("%T", mod)
		}
		return nil, fmt.Errorf("custody: open PKCS#11 token %q with module %s: %w", cfg.TokenLabel, name, err)
	}
	c = &Custodian{cfg: cfg, module: mod, token: tok, meta: meta, log: log, profiles: map[string]*Profile{}}
	defer func() {
		if err != nil {
			_ = tok.Close()
		}
	}()

	var rec regionRecord
	raw, gerr := meta.GetMeta(c.MetaName(metaRegion))
	switch {
	case gerr == nil:
		if err := json.Unmarshal(raw, &rec); err != nil {
			return nil, fmt.Errorf("custody: region main key record is corrupt: %w", err)
		}
	case errors.Is(gerr, cfg.NotFound):
		if !cfg.Initialize {
			if cfg.Node != "" {
				return nil, fmt.Errorf("custody: this keystore has no region main key of node %q; initialize the node (payhsm ceremony init, or serve --dev)", cfg.Node)
			}
			return nil, errors.New("custody: this keystore has no region main key; initialize the appliance (payhsm ceremony init, or serve --dev)")
		}
	default:
		return nil, fmt.Errorf("custody: read region main key record: %w", gerr)
	}

	found, err := tok.FindKeys(cfg.RegionKeyLabel)
	if err != nil {
		return nil, fmt.Errorf("custody: find region main key %q: %w", cfg.RegionKeyLabel, err)
	}
	if len(found) > 1 {
		return nil, fmt.Errorf("custody: token %q holds %d keys labelled %q; the region main key must be unique", cfg.TokenLabel, len(found), cfg.RegionKeyLabel)
	}
	var key TokenKey
	if len(found) == 1 {
		key = found[0]
	}
	if rec.KCV != "" && key == nil {
		return nil, fmt.Errorf("custody: region main key %q (KCV %s) is not in token %q: wrong token, or the token was re-initialized",
			cfg.RegionKeyLabel, rec.KCV, cfg.TokenLabel)
	}
	if key == nil {
		id := make([]byte, 16)
		if _, err := rand.Read(id); err != nil {
			return nil, err
		}
		key, err = tok.GenerateAESKey(id, cfg.RegionKeyLabel, 256)
		if err != nil {
			return nil, fmt.Errorf("custody: generate region main key in token: %w", err)
		}
		log.Info("generated region main key in token", zap.String("label", cfg.RegionKeyLabel))
	}
	c.rmk = key
	sum, err := tokenKCV(key)
	if err != nil {
		return nil, fmt.Errorf("custody: compute region main key check value: %w", err)
	}
	c.rmkKCV = sum
	if rec.KCV == "" {
		rec = regionRecord{Version: 1, Label: cfg.RegionKeyLabel, KCV: sum, Created: time.Now().UTC()}
		b, _ := json.Marshal(rec)
		if err := meta.PutMetaIfAbsent(c.MetaName(metaRegion), b); err != nil {
			return nil, fmt.Errorf("custody: record region main key: %w", err)
		}
	} else if rec.KCV != sum {
		return nil, fmt.Errorf("custody: region main key %q in token %q has KCV %s but this keystore was sealed under KCV %s: wrong token",
			cfg.RegionKeyLabel, cfg.TokenLabel, sum, rec.KCV)
	}

	c.envelope = newEnvelope(key)
	return c, nil
}

// newEnvelope is the Tink envelope AEAD whose key-encryption key is the
// region main key in the token.
func newEnvelope(rmk TokenKey) tink.AEAD {
	return aead.NewKMSEnvelopeAEAD2(aead.AES256GCMKeyTemplate(), tokenAEAD{rmk})
}

// tokenKCV computes AES-CMAC(K, 0^16)[:3] through the token, so the key never
// leaves it.
func tokenKCV(key TokenKey) (string, error) {
	b := &tokenBlock{key: key}
	sum := kcv.CMAC(b)
	if b.err != nil {
		return "", fmt.Errorf("PKCS#11 block operation failed: %w", b.err)
	}
	return hex.EncodeToString(sum), nil
}

// tokenBlock is a token AES key as a cipher.Block for the CMAC. cipher.Block
// has no error return: the first token error is kept in err (the output is
// then zeros) and tokenKCV checks it.
type tokenBlock struct {
	key TokenKey
	err error
}

func (*tokenBlock) BlockSize() int { return aes.BlockSize }

func (b *tokenBlock) Encrypt(dst, src []byte) {
	tokenOps.Add(1)
	if b.err != nil {
		clear(dst[:aes.BlockSize])
		return
	}
	if err := b.key.EncryptBlock(dst, src); err != nil {
		b.err = err
		clear(dst[:aes.BlockSize])
	}
}

// Decrypt is not used by the CMAC; it records an error rather than decrypt.
func (b *tokenBlock) Decrypt(dst, src []byte) {
	b.err = errors.New("token block decryption is not used")
	clear(dst[:aes.BlockSize])
}

// RegionKeyKCV is the region main key's check value (hex, upper case).
func (c *Custodian) RegionKeyKCV() string { return upper(c.rmkKCV) }

// Close unloads the profile main keys and closes the token. Closing again
// does nothing.
func (c *Custodian) Close() error {
	c.mu.Lock()
	for _, p := range c.profiles {
		p.destroy()
	}
	c.profiles = map[string]*Profile{}
	c.mu.Unlock()
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	c.closed = true
	if c.token == nil {
		return nil
	}
	err := c.token.Close()
	c.token, c.rmk, c.envelope = nil, nil, nil
	return err
}

// Seal encrypts a non-key-block secret under the region main key (Tink
// envelope); aad binds it to its purpose and must be given again to Unseal.
// While the token is unavailable it fails at once with an Unavailable fault
// (errors.Is ErrTokenUnavailable).
func (c *Custodian) Seal(plaintext, aad []byte) ([]byte, error) {
	c.tokMu.RLock()
	defer c.tokMu.RUnlock()
	if c.envelope == nil {
		return nil, c.noSession("seal")
	}
	ct, err := c.envelope.Encrypt(plaintext, aad)
	if err != nil {
		return nil, fmt.Errorf("custody: seal: %w", err)
	}
	return ct, nil
}

// Unseal reverses Seal.
func (c *Custodian) Unseal(ciphertext, aad []byte) ([]byte, error) {
	c.tokMu.RLock()
	defer c.tokMu.RUnlock()
	if c.envelope == nil {
		return nil, c.noSession("unseal")
	}
	pt, err := c.envelope.Decrypt(ciphertext, aad)
	if err != nil {
		return nil, fmt.Errorf("custody: unseal: %w", err)
	}
	return pt, nil
}

// CreateProfile generates a new profile main key and stores it sealed. It
// fails if the profile exists.
func (c *Custodian) CreateProfile(name string) (*Profile, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	defer clear(key)
	return c.InstallProfile(name, key)
}

// InstallProfile stores key (an AES-256 profile main key formed elsewhere,
// e.g. from components in a ceremony) sealed under the region main key, as
// version 1 of the profile. It fails if the profile exists. key is copied;
// the caller zeroes its copy.
func (c *Custodian) InstallProfile(name string, key []byte) (*Profile, error) {
	if err := CheckProfileName(name); err != nil {
		return nil, fmt.Errorf("custody: %w", err)
	}
	m, err := newMainKey(name, key, c.log)
	if err != nil {
		return nil, err
	}
	ver, err := c.sealVersion(name, 1, m, key)
	if err != nil {
		m.destroy()
		return nil, err
	}
	rec := profileRecord{Version: 2, Name: name, Active: 1, Versions: []profileVersion{ver}}
	b, _ := json.Marshal(rec)
	if err := c.meta.PutMetaIfAbsent(c.MetaName(metaProfilePrefix+name), b); err != nil {
		m.destroy()
		return nil, fmt.Errorf("custody: store profile %q: %w", name, err)
	}
	p := &Profile{name: name, active: 1, keys: map[int]*mainKey{1: m}}
	c.mu.Lock()
	c.profiles[name] = p
	c.mu.Unlock()
	c.log.Info("profile main key installed", zap.String("profile", name), zap.String("kcv", p.KCV()))
	return p, nil
}

func (c *Custodian) sealVersion(name string, v int, m *mainKey, key []byte) (profileVersion, error) {
	sealed, err := c.Seal(key, profileAAD(name, m.kcv))
	if err != nil {
		return profileVersion{}, err
	}
	return profileVersion{Version: v, KCV: m.kcv, Sealed: sealed, Created: time.Now().UTC()}, nil
}

// Profile returns the named profile, unsealing its main keys on first use.
// Once the token has been unavailable for longer than LossGrace it refuses
// (see Available).
func (c *Custodian) Profile(name string) (*Profile, error) {
	if err := c.Available(); err != nil {
		return nil, err
	}
	c.mu.RLock()
	p := c.profiles[name]
	c.mu.RUnlock()
	if p != nil {
		return p, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.profiles[name]; p != nil {
		return p, nil
	}
	rec, err := c.readProfile(name)
	if err != nil {
		return nil, err
	}
	p = &Profile{name: name, active: rec.Active, keys: map[int]*mainKey{}}
	for _, v := range rec.Versions {
		key, err := c.Unseal(v.Sealed, profileAAD(name, v.KCV))
		if err != nil {
			p.destroy()
			return nil, fmt.Errorf("custody: unseal profile %q version %d: %w", name, v.Version, err)
		}
		m, err := newMainKey(name, key, c.log)
		clear(key)
		if err != nil {
			p.destroy()
			return nil, err
		}
		if m.kcv != v.KCV {
			m.destroy()
			p.destroy()
			return nil, fmt.Errorf("custody: profile %q main key version %d has KCV %s, record says %s", name, v.Version, m.kcv, v.KCV)
		}
		p.keys[v.Version] = m
	}
	if p.keys[p.active] == nil {
		p.destroy()
		return nil, fmt.Errorf("custody: profile %q record has no active version %d", name, rec.Active)
	}
	c.profiles[name] = p
	return p, nil
}

func (c *Custodian) readProfile(name string) (*profileRecord, error) {
	return c.readProfileAt(c.MetaName(metaProfilePrefix+name), name)
}

// readProfileAt reads the profile record at meta name (this node's, or
// another node's for FleetProfile).
func (c *Custodian) readProfileAt(meta, name string) (*profileRecord, error) {
	raw, err := c.meta.GetMeta(meta)
	if errors.Is(err, c.cfg.NotFound) {
		return nil, fmt.Errorf("custody: profile %q: %w", name, ErrNoProfile)
	}
	if err != nil {
		return nil, fmt.Errorf("custody: read profile %q: %w", name, err)
	}
	var rec profileRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("custody: profile %q record is corrupt: %w", name, err)
	}
	if rec.Version == 1 { // single-key record of the first format
		rec.Active = 1
		rec.Versions = []profileVersion{{Version: 1, KCV: rec.KCV, Sealed: rec.Sealed, Created: rec.Created}}
	}
	return &rec, nil
}

func (c *Custodian) writeProfile(rec *profileRecord) error {
	rec.Version, rec.KCV, rec.Sealed = 2, "", nil
	b, _ := json.Marshal(rec)
	if err := c.meta.PutMeta(c.MetaName(metaProfilePrefix+rec.Name), b); err != nil {
		return fmt.Errorf("custody: store profile %q: %w", rec.Name, err)
	}
	return nil
}

// BeginRotation introduces a new main key version for profile and makes it
// the one new key blocks are wrapped under; the old versions stay available
// for unwrapping until RetireOldVersions. newKey (AES-256, copied) comes from
// a ceremony's components, or nil for a key generated here. If a rotation is
// already under way (more than one version), it is resumed: the active
// version is returned and newKey is ignored. A version staged for a fleet
// (StageRotation) becomes the active one.
func (c *Custodian) BeginRotation(profile string, newKey []byte) (int, error) {
	p, err := c.Profile(profile)
	if err != nil {
		return 0, err
	}
	c.rotMu.Lock()
	defer c.rotMu.Unlock()
	rec, err := c.readProfile(profile)
	if err != nil {
		return 0, err
	}
	if v := stagedVersion(rec); v > 0 { // staged for a fleet (fleetrotate.go): activated now
		rec.Active = v
		if err := c.writeProfile(rec); err != nil {
			return 0, err
		}
		p.mu.Lock()
		p.active = v
		p.mu.Unlock()
		c.log.Info("profile main key rotation begun: staged version activated", zap.String("profile", profile), zap.Int("version", v))
		return v, nil
	}
	if len(rec.Versions) > 1 {
		return rec.Active, nil
	}
	key := make([]byte, 32)
	defer clear(key)
	if newKey != nil {
		copy(key, newKey)
	} else if _, err := rand.Read(key); err != nil {
		return 0, err
	}
	v, err := c.nextVersion(profile, rec)
	if err != nil {
		return 0, err
	}
	m, err := newMainKey(profile, key, c.log)
	if err != nil {
		return 0, err
	}
	ver, err := c.sealVersion(profile, v, m, key)
	if err != nil {
		m.destroy()
		return 0, err
	}
	rec.Versions = append(rec.Versions, ver)
	rec.Active = v
	if err := c.writeProfile(rec); err != nil {
		m.destroy()
		return 0, err
	}
	p.mu.Lock()
	p.keys[v] = m
	p.active = v
	p.mu.Unlock()
	c.log.Info("profile main key rotation begun", zap.String("profile", profile), zap.Int("version", v), zap.String("kcv", upper(m.kcv)))
	return v, nil
}

// RetireOldVersions destroys every main key version of profile but the active
// one. The caller must first have re-wrapped and verified every key block.
func (c *Custodian) RetireOldVersions(profile string) error {
	p, err := c.Profile(profile)
	if err != nil {
		return err
	}
	c.rotMu.Lock()
	defer c.rotMu.Unlock()
	rec, err := c.readProfile(profile)
	if err != nil {
		return err
	}
	var keep []profileVersion
	for _, v := range rec.Versions {
		if v.Version == rec.Active {
			keep = append(keep, v)
		}
	}
	rec.Versions = keep
	if err := c.writeProfile(rec); err != nil {
		return err
	}
	p.mu.Lock()
	for v, m := range p.keys {
		if v != p.active {
			m.destroy()
			delete(p.keys, v)
		}
	}
	p.mu.Unlock()
	c.log.Info("old profile main key versions retired", zap.String("profile", profile), zap.Int("active", rec.Active))
	return nil
}

// DestroyRegionKey deletes the region main key from the token: every secret
// sealed under it becomes unrecoverable. Only the ceremony's confirmed
// re-initialization calls it.
func (c *Custodian) DestroyRegionKey() error {
	c.tokMu.RLock()
	defer c.tokMu.RUnlock()
	if c.rmk == nil {
		return c.noSession("destroy region main key")
	}
	if err := c.rmk.Delete(); err != nil {
		return fmt.Errorf("custody: destroy region main key: %w", err)
	}
	c.log.Warn("region main key destroyed", zap.String("kcv", c.RegionKeyKCV()))
	return nil
}

// ExportProfileKey returns a copy of profile's active main key, for the
// ceremony tool to transport it (TR-34 to another appliance or a backup HSM,
// or split into components). The caller zeroes it. Nothing else calls this.
func (c *Custodian) ExportProfileKey(profile string) ([]byte, error) {
	p, err := c.Profile(profile)
	if err != nil {
		return nil, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if len(p.keys) > 1 {
		return nil, fmt.Errorf("custody: profile %s is being rotated; finish the rotation first", profile)
	}
	out := make([]byte, 32)
	copy(out, p.keys[p.active].key)
	c.log.Warn("profile main key exported for a ceremony", zap.String("profile", profile), zap.String("kcv", upper(p.keys[p.active].kcv)))
	return out, nil
}

// ProfileNames lists the profiles that have a main key.
func (c *Custodian) ProfileNames() []string {
	prefix := c.MetaName(metaProfilePrefix)
	names, err := c.meta.MetaNames(prefix)
	if err != nil {
		c.log.Error("list profiles", zap.Error(err))
		return nil
	}
	for i, n := range names {
		names[i] = strings.TrimPrefix(n, prefix)
	}
	return names
}

// ErrNoProfile reports a profile that has no main key.
var ErrNoProfile = errors.New("no such profile")

func profileAAD(name, kcv string) []byte {
	return []byte("payhsm/custody/profile-main-key/v1/" + name + "/" + kcv)
}

// CheckProfileName enforces the one rule for profile names, wherever a name
// enters (configuration, ceremony files, the admin socket, key import): 1 to
// 32 of a-z 0-9 _ -, starting with a letter. The name is part of each profile
// main key's sealing context and of its metadata key.
func CheckProfileName(name string) error {
	ok := len(name) >= 1 && len(name) <= 32 && name[0] >= 'a' && name[0] <= 'z'
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
	}
	if !ok {
		return fmt.Errorf("profile name %q: 1 to 32 of a-z 0-9 _ -, starting with a letter", name)
	}
	return nil
}

// Profile is one key space: its main key wraps every customer key block of
// the profile. During a rotation it holds more than one version: new blocks
// are wrapped under the active one, and each block names its version in the
// proprietary optional block "11" (absent = version 1).
type Profile struct {
	name   string
	mu     sync.RWMutex
	active int
	keys   map[int]*mainKey
}

// mainKey is one version of a profile main key.
type mainKey struct {
	kcv    string
	key    []byte // AES-256: mk's material, on pages of its own, mlocked where the system allows
	record []byte // its record-authentication key (see RecordKey): rk's material, likewise
	// blocks are the TR-31 version D block keys derived from key (KBEK then
	// KBAK), derived once rather than on every Wrap and Unwrap: bk's
	// material, likewise.
	blocks     tr31.BlockKeys
	mk, rk, bk secret.Key // own key, record and block keys; Destroy zeroes and munlocks them
}

// versionBlock is the proprietary X9.143 optional block that names the
// profile main key version a stored block is wrapped under.
const versionBlock = "11"

// lockWarned makes the first failed mlock of a main key a warning, once.
var lockWarned sync.Once

// newMainKey holds a copy of key and its derived record-authentication key
// as secret.Keys, each mlocked on pages of its own (best effort: a refused
// lock, e.g. under LimitMEMLOCK, is logged once; the daemon also disables
// core dumps).
func newMainKey(profile string, key []byte, log *zap.Logger) (*mainKey, error) {
	if len(key) != 32 {
		return nil, errors.New("custody: a profile main key is AES-256 (32 bytes)")
	}
	mk := secret.NewKey(bytes.Clone(key))
	blk, err := aes.NewCipher(mk.Bytes())
	if err != nil {
		_ = mk.Destroy() // not locked yet: nothing to unlock
		return nil, fmt.Errorf("custody: profile main key: %w", err)
	}
	rec, err := hkdf.Key(sha256.New, mk.Bytes(), nil, recordKeyInfo+profile, 32)
	if err != nil {
		_ = mk.Destroy() // not locked yet: nothing to unlock
		return nil, fmt.Errorf("custody: derive record-authentication key: %w", err)
	}
	rk := secret.NewKey(rec)
	derived, err := tr31.DeriveBlockKeys('D', mk.Bytes())
	if err != nil {
		_ = mk.Destroy() // not locked yet: nothing to unlock
		_ = rk.Destroy()
		return nil, fmt.Errorf("custody: derive key block keys: %w", err)
	}
	bk := secret.NewKey(append(bytes.Clone(derived.KBEK), derived.KBAK...))
	clear(derived.KBEK)
	clear(derived.KBAK)
	if err := errors.Join(mk.Lock(), rk.Lock(), bk.Lock()); err != nil {
		lockWarned.Do(func() {
			log.Warn("profile main keys are not mlocked (they may be swapped out)", zap.Error(err))
		})
	}
	b, n := bk.Bytes(), len(mk.Bytes())
	return &mainKey{
		kcv: hex.EncodeToString(kcv.CMAC(blk)), key: mk.Bytes(), record: rk.Bytes(),
		blocks: tr31.BlockKeys{Version: 'D', KBEK: b[:n:n], KBAK: b[n:]},
		mk:     mk, rk: rk, bk: bk,
	}, nil
}

func (m *mainKey) destroy() {
	// Zeroing cannot fail; an munlock error leaves only a locked page behind.
	_ = m.mk.Destroy()
	_ = m.rk.Destroy()
	_ = m.bk.Destroy()
	m.key, m.record, m.blocks = nil, nil, tr31.BlockKeys{}
}

func (p *Profile) destroy() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.keys {
		m.destroy()
	}
	p.keys = nil
}

// Name is the profile's name.
func (p *Profile) Name() string { return p.name }

// KCV is the active main key's check value (AES-CMAC method, hex upper case).
func (p *Profile) KCV() string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return upper(p.keys[p.active].kcv)
}

// Version is the active main key version.
func (p *Profile) Version() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.active
}

// Rotating reports whether older main key versions are still loaded.
func (p *Profile) Rotating() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.keys) > 1
}

// Staged is the newest main key version held above the active one, staged
// for a fleet rotation and not active yet (fleetrotate.go); 0 when none.
func (p *Profile) Staged() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	v := 0
	for n := range p.keys {
		if n > p.active && n > v {
			v = n
		}
	}
	return v
}

// BlockVersion is the main key version a stored block names (1 when it names none).
func BlockVersion(block string) (int, error) {
	h, err := tr31.ParseHeader(block)
	if err != nil {
		return 0, err
	}
	return headerVersion(h)
}

// headerVersion is the main key version a block's header names (1 when it names none).
func headerVersion(h tr31.Header) (int, error) {
	for _, b := range h.Blocks {
		if b.ID == versionBlock {
			v, err := strconv.Atoi(b.Data)
			if err != nil || v < 1 {
				return 0, fmt.Errorf("custody: bad main key version %q in key block", b.Data)
			}
			return v, nil
		}
	}
	return 1, nil
}

// Wrap returns key as an X9.143 version D key block under the active main key.
func (p *Profile) Wrap(h tr31.Header, key []byte) (string, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	h.Version = 'D'
	blocks := make([]tr31.OptionalBlock, 0, len(h.Blocks)+1)
	for _, b := range h.Blocks {
		if b.ID != versionBlock {
			blocks = append(blocks, b)
		}
	}
	if p.active > 1 {
		blocks = append(blocks, tr31.OptionalBlock{ID: versionBlock, Data: strconv.Itoa(p.active)})
	}
	h.Blocks = blocks
	return tr31.WrapWith(p.keys[p.active].blocks, h, key)
}

// Unwrap opens a key block made by Wrap under any loaded main key version.
// The caller zeroes the returned key.
func (p *Profile) Unwrap(block string) (tr31.Header, []byte, error) {
	if len(block) == 0 || block[0] != 'D' {
		return tr31.Header{}, nil, errors.New("custody: stored key blocks are version D")
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	// One parse: the header names the main key version, whose block keys open it.
	return tr31.UnwrapSelect(block, func(h tr31.Header) (tr31.BlockKeys, error) {
		v, err := headerVersion(h)
		if err != nil {
			return tr31.BlockKeys{}, err
		}
		m := p.keys[v]
		if m == nil {
			return tr31.BlockKeys{}, fmt.Errorf("custody: profile %s has no main key version %d (retired or never loaded)", p.name, v)
		}
		return m.blocks, nil
	})
}

// tokenOps counts calls into the PKCS#11 module after start-up (sealing,
// unsealing, check values), so tests can show the hot path makes none.
var tokenOps atomic.Uint64

// TokenOperations is the number of cryptographic calls made into the PKCS#11
// module by this process so far.
func TokenOperations() uint64 { return tokenOps.Load() }

// tokenAEAD adapts the token's AES-GCM to Tink's AEAD: the output is
// nonce || ciphertext || tag.
type tokenAEAD struct{ key TokenKey }

func (t tokenAEAD) Encrypt(plaintext, aad []byte) ([]byte, error) {
	tokenOps.Add(1)
	nonce := make([]byte, GCMNonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	ct, err := t.key.SealGCM(nonce, plaintext, aad)
	if err != nil {
		return nil, fmt.Errorf("token AES-GCM encrypt failed: %w", err)
	}
	return append(nonce, ct...), nil
}

func (t tokenAEAD) Decrypt(ciphertext, aad []byte) ([]byte, error) {
	tokenOps.Add(1)
	if len(ciphertext) < GCMNonceSize+GCMTagSize {
		return nil, errors.New("token AES-GCM: ciphertext too short")
	}
	pt, err := t.key.OpenGCM(ciphertext[:GCMNonceSize], ciphertext[GCMNonceSize:], aad)
	if err != nil { // a wrong key, aad or ciphertext, or a token failure
		return nil, fmt.Errorf("token AES-GCM decrypt failed: %w", err)
	}
	return pt, nil
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'f' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
