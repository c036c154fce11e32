package ceremony

import (
	"crypto/subtle"
	"errors"
	"fmt"

	"payhsm/admin"
	"payhsm/ceremony/custodian"
	"payhsm/hsm/custody"
	"payhsm/keystore"
)

// enroll asks each named custodian for a passphrase (twice, no echo) and stores the sealed record.
func enroll(con *Console, store *keystore.Store, cust *custody.Custodian, names []string) error {
	var passes [][]byte
	defer func() {
		for _, p := range passes {
			clear(p)
		}
	}()
	for _, name := range names {
		for {
			p1, err := con.Secret(fmt.Sprintf("Custodian %s, choose a passphrase (at least %d characters): ", name, custodian.MinPassphrase))
			if err != nil {
				return err
			}
			p2, err := con.Secret(fmt.Sprintf("Custodian %s, repeat the passphrase: ", name))
			if err != nil {
				clear(p1)
				return err
			}
			ok := len(p1) >= custodian.MinPassphrase && subtle.ConstantTimeCompare(p1, p2) == 1
			clear(p2)
			if ok {
				passes = append(passes, p1)
				break
			}
			clear(p1)
			con.Printf("The passphrases differ or are too short; try again.\n")
		}
	}
	return custodian.Enroll(store, cust, names, passes)
}

// authenticate asks for a custodian's name and passphrase; exclude lists
// custodians who may not act again in this step (dual control).
func authenticate(con *Console, rec *custodian.Record, role string, exclude []string) (string, error) {
	for attempt := 0; attempt < 3; attempt++ {
		name, err := con.Ask(role + ", custodian name: ")
		if err != nil {
			return "", err
		}
		pass, err := con.Secret("Passphrase: ")
		if err != nil {
			return "", err
		}
		ok := rec.Verify(name, pass)
		clear(pass)
		excluded := false
		for _, x := range exclude {
			excluded = excluded || x == name
		}
		switch {
		case ok && excluded:
			con.Printf("Custodian %s has already acted in this step; dual control needs another custodian.\n", name)
		case ok:
			return name, nil
		default:
			con.Printf("Authentication failed.\n")
		}
	}
	return "", errors.New("ceremony: custodian authentication failed three times")
}

// approvals collects two custodians' credentials for an operation, checked
// where the operation runs: here offline (custodianApprovals), or by the
// daemon online. The caller zeroes them (clearApprovals).
func approvals(con *Console) ([]admin.Approval, error) {
	var out []admin.Approval
	for i := 1; i <= 2; i++ {
		name, err := con.Ask(fmt.Sprintf("Approver %d, custodian name: ", i))
		if err != nil {
			clearApprovals(out)
			return nil, err
		}
		pass, err := con.Secret("Passphrase: ")
		if err != nil {
			clearApprovals(out)
			return nil, err
		}
		out = append(out, admin.Approval{Name: name, Passphrase: pass})
	}
	return out, nil
}

// custodianApprovals is apps for an offline dual-control check; the
// passphrases are shared, and the check zeroes them.
func custodianApprovals(apps []admin.Approval) []custodian.Approval {
	out := make([]custodian.Approval, len(apps))
	for i, a := range apps {
		out[i] = custodian.Approval{Name: a.Name, Passphrase: a.Passphrase}
	}
	return out
}

func clearApprovals(apps []admin.Approval) {
	for _, a := range apps {
		clear(a.Passphrase)
	}
}
