// Package custodian owns the key custodians' credentials: argon2id hashes of
// their passphrases in one record sealed under the region main key (so it
// cannot be altered on disk without the HSM), and the dual-control check that
// two distinct custodians approved an operation. Both the offline ceremony
// tool and the daemon's admin socket use it.
package custodian

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/crypto/argon2"

	"payhsm/hsm/custody"
	"payhsm/keystore"
)

// MinPassphrase is the shortest passphrase accepted at enrolment.
const MinPassphrase = 10

const (
	meta         = "ceremony/custodians"
	argonTime    = 2
	argonMemory  = 64 * 1024
	argonThreads = 2
)

var aad = []byte("payhsm/ceremony/custodians/v1")

// Record is the enrolled custodians.
type Record struct {
	Version    int     `json:"v"`
	Custodians []entry `json:"custodians"`
}

type entry struct {
	Name string `json:"name"`
	Salt []byte `json:"salt"`
	Hash []byte `json:"hash"`
}

// CheckName enforces the rule for custodian names: 1 to 32 of a-z 0-9 _ -,
// starting with a letter.
func CheckName(name string) error {
	ok := len(name) >= 1 && len(name) <= 32 && name[0] >= 'a' && name[0] <= 'z'
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
	}
	if !ok {
		return fmt.Errorf("custodian name %q: 1 to 32 of a-z 0-9 _ -, starting with a letter", name)
	}
	return nil
}

// ErrNotEnrolled reports an appliance with no custodians.
var ErrNotEnrolled = errors.New("no custodians are enrolled; run payhsm ceremony init first")

// Enrolled reports whether custodians exist.
func Enrolled(store *keystore.Store, cust *custody.Custodian) bool {
	_, err := store.GetMeta(cust.MetaName(meta))
	return err == nil
}

func hash(pass, salt []byte) []byte {
	return argon2.IDKey(pass, salt, argonTime, argonMemory, argonThreads, 32)
}

// Enroll stores the custodians (name → passphrase) sealed; it refuses to replace an existing record.
func Enroll(store *keystore.Store, cust *custody.Custodian, names []string, passphrases [][]byte) error {
	if len(names) != len(passphrases) {
		return errors.New("custodians: one passphrase per name")
	}
	rec := Record{Version: 1}
	for i, name := range names {
		if err := CheckName(name); err != nil {
			return err
		}
		if len(passphrases[i]) < MinPassphrase {
			return fmt.Errorf("custodian %s: passphrase shorter than %d characters", name, MinPassphrase)
		}
		salt := make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			return err
		}
		rec.Custodians = append(rec.Custodians, entry{Name: name, Salt: salt, Hash: hash(passphrases[i], salt)})
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	sealed, err := cust.Seal(raw, aad)
	if err != nil {
		return err
	}
	return store.PutMetaIfAbsent(cust.MetaName(meta), sealed)
}

// Load reads and unseals the record.
func Load(store *keystore.Store, cust *custody.Custodian) (*Record, error) {
	sealed, err := store.GetMeta(cust.MetaName(meta))
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, ErrNotEnrolled
	}
	if err != nil {
		return nil, err
	}
	raw, err := cust.Unseal(sealed, aad)
	if err != nil {
		return nil, fmt.Errorf("custodian record: %w", err)
	}
	var rec Record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("custodian record is corrupt: %w", err)
	}
	return &rec, nil
}

// Names lists the enrolled custodians.
func (r *Record) Names() []string {
	out := make([]string, len(r.Custodians))
	for i, c := range r.Custodians {
		out[i] = c.Name
	}
	return out
}

// Verify checks a custodian's passphrase in constant time (an unknown name costs the same).
func (r *Record) Verify(name string, pass []byte) bool {
	for _, c := range r.Custodians {
		if c.Name == name {
			return subtle.ConstantTimeCompare(hash(pass, c.Salt), c.Hash) == 1
		}
	}
	hash(pass, []byte("payhsm-unknown-custodian"))
	return false
}

// Approval is one custodian's credentials for an operation.
type Approval struct {
	Name       string `json:"name"`
	Passphrase []byte `json:"passphrase"`
}

// DualControl checks that approvals come from two distinct enrolled custodians
// with valid passphrases, and returns their names. It zeroes the passphrases.
func (r *Record) DualControl(approvals []Approval) ([]string, error) {
	defer func() {
		for _, a := range approvals {
			clear(a.Passphrase)
		}
	}()
	if len(approvals) != 2 || approvals[0].Name == approvals[1].Name {
		return nil, errors.New("dual control needs two different custodians")
	}
	for _, a := range approvals {
		if !r.Verify(a.Name, a.Passphrase) {
			return nil, fmt.Errorf("custodian %q failed authentication", a.Name)
		}
	}
	return []string{approvals[0].Name, approvals[1].Name}, nil
}
