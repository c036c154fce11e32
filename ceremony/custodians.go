package ceremony

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

// Custodians are the key custodians enrolled at init. Their record holds
// argon2id hashes of their passphrases and is sealed under the region main key,
// so it cannot be altered on disk without the HSM.
type custodianRecord struct {
	Version    int         `json:"v"`
	Custodians []custodian `json:"custodians"`
}

type custodian struct {
	Name string `json:"name"`
	Salt []byte `json:"salt"`
	Hash []byte `json:"hash"`
}

const (
	metaCustodians   = "ceremony/custodians"
	minPassphraseLen = 10
	argonTime        = 2
	argonMemory      = 64 * 1024
	argonThreads     = 2
)

var custodiansAAD = []byte("payhsm/ceremony/custodians/v1")

func passphraseHash(pass, salt []byte) []byte {
	return argon2.IDKey(pass, salt, argonTime, argonMemory, argonThreads, 32)
}

func loadCustodians(store *keystore.Store, cust *custody.Custodian) (*custodianRecord, error) {
	sealed, err := store.GetMeta(metaCustodians)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, errors.New("ceremony: no custodians are enrolled; run payhsm ceremony init first")
	}
	if err != nil {
		return nil, err
	}
	raw, err := cust.Unseal(sealed, custodiansAAD)
	if err != nil {
		return nil, fmt.Errorf("ceremony: custodian record: %w", err)
	}
	var rec custodianRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("ceremony: custodian record is corrupt: %w", err)
	}
	return &rec, nil
}

// enroll asks each named custodian for a passphrase (twice, no echo) and stores the sealed record.
func enroll(con *Console, store *keystore.Store, cust *custody.Custodian, names []string) error {
	rec := custodianRecord{Version: 1}
	for _, name := range names {
		for {
			p1, err := con.Secret(fmt.Sprintf("Custodian %s, choose a passphrase (at least %d characters): ", name, minPassphraseLen))
			if err != nil {
				return err
			}
			p2, err := con.Secret(fmt.Sprintf("Custodian %s, repeat the passphrase: ", name))
			if err != nil {
				clear(p1)
				return err
			}
			ok := len(p1) >= minPassphraseLen && subtle.ConstantTimeCompare(p1, p2) == 1
			if !ok {
				clear(p1)
				clear(p2)
				con.Printf("The passphrases differ or are too short; try again.\n")
				continue
			}
			salt := make([]byte, 16)
			if _, err := rand.Read(salt); err != nil {
				return err
			}
			rec.Custodians = append(rec.Custodians, custodian{Name: name, Salt: salt, Hash: passphraseHash(p1, salt)})
			clear(p1)
			clear(p2)
			break
		}
	}
	raw, _ := json.Marshal(rec)
	sealed, err := cust.Seal(raw, custodiansAAD)
	if err != nil {
		return err
	}
	return store.PutMetaIfAbsent(metaCustodians, sealed)
}

// authenticate asks for a custodian's name and passphrase; exclude lists
// custodians who may not act again in this step (dual control).
func authenticate(con *Console, rec *custodianRecord, role string, exclude []string) (string, error) {
	for attempt := 0; attempt < 3; attempt++ {
		name, err := con.Ask(role + ", custodian name: ")
		if err != nil {
			return "", err
		}
		pass, err := con.Secret("Passphrase: ")
		if err != nil {
			return "", err
		}
		var found *custodian
		for i := range rec.Custodians {
			if rec.Custodians[i].Name == name {
				found = &rec.Custodians[i]
			}
		}
		ok := false
		if found != nil {
			ok = subtle.ConstantTimeCompare(passphraseHash(pass, found.Salt), found.Hash) == 1
		} else {
			passphraseHash(pass, []byte("payhsm-unknown-custodian")) // same cost either way
		}
		clear(pass)
		for _, x := range exclude {
			if x == name && ok {
				con.Printf("Custodian %s has already acted in this step; dual control needs another custodian.\n", name)
				ok = false
				found = nil
			}
		}
		if ok {
			return name, nil
		}
		if found != nil || name != "" {
			con.Printf("Authentication failed.\n")
		}
	}
	return "", errors.New("ceremony: custodian authentication failed three times")
}
