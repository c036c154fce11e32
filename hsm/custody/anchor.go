package custody

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"go.uber.org/zap"
)

// The key store's anchor. The key store keeps a journal of its writes whose
// head carries a sequence number that only grows (keystore: "Rollback"). A
// copy of the whole data directory restored from an old backup carries an
// older, but self-consistent, journal: nothing in the storage can tell. The
// token can: it is the one place a writer of the data directory cannot roll
// back. So custody keeps in the token the key store's journal identity (its
// writer id) and the last sequence number the appliance recorded there, and
// the appliance refuses a store whose journal ends before it.
//
// The anchor is a token object labelled StoreAnchorLabel: an AES key, never
// used, whose CKA_ID holds the value (anchorMagic, the sequence number
// big-endian, the writer id). A PKCS#11 data object (CKO_DATA) would be the
// textbook container, but crypto11, through which custody reaches the token,
// creates, finds and deletes keys only, and a second raw PKCS#11 handle on
// the same module would share crypto11's C_Initialize, C_Finalize and login
// state. A key object is made and found with the calls custody already uses
// (the store-format marker is one too). CKA_ID is not modified in place
// (crypto11 has no C_SetAttributeValue either): SetStoreAnchor creates an
// object with the new value and then deletes the older ones, so a crash in
// between leaves two objects, and the highest sequence number wins.
//
// The anchor is updated off the hot path (the appliance does it periodically
// when the journal moved, and at close), never per operation.

// StoreAnchorLabel labels the token objects that anchor the key store.
const StoreAnchorLabel = "payhsm-keystore-anchor"

// anchorMagic starts an anchor's CKA_ID (format version 1).
const anchorMagic = "PHA1"

// maxWriterLen bounds a writer id (the key store's limit).
const maxWriterLen = 64

// StoreAnchor is the key store's anchor: the writer id of this appliance's
// journal and the last journal sequence number the appliance recorded.
type StoreAnchor struct {
	Writer string
	Seq    uint64
}

func encodeAnchor(a StoreAnchor) []byte {
	b := append([]byte(anchorMagic), make([]byte, 8)...)
	binary.BigEndian.PutUint64(b[len(anchorMagic):], a.Seq)
	return append(b, a.Writer...)
}

func decodeAnchor(b []byte) (StoreAnchor, error) {
	n := len(anchorMagic) + 8
	if len(b) <= n || len(b) > n+maxWriterLen || !bytes.HasPrefix(b, []byte(anchorMagic)) {
		return StoreAnchor{}, errors.New("custody: a token object labelled " + StoreAnchorLabel + " does not hold a key store anchor")
	}
	return StoreAnchor{Writer: string(b[n:]), Seq: binary.BigEndian.Uint64(b[len(anchorMagic):n])}, nil
}

// anchorMu serializes SetStoreAnchor and DeleteStoreAnchor within the process.
var anchorMu sync.Mutex

type anchorObject struct {
	key TokenKey
	a   StoreAnchor
}

// anchors returns the anchor objects in the token, and the one with the
// highest sequence number.
func (c *Custodian) anchors() ([]anchorObject, StoreAnchor, bool, error) {
	if c.token == nil {
		return nil, StoreAnchor{}, false, errors.New("custody: closed")
	}
	found, err := c.token.FindKeys(StoreAnchorLabel)
	if err != nil {
		return nil, StoreAnchor{}, false, fmt.Errorf("custody: find the key store anchor: %w", err)
	}
	var (
		objs []anchorObject
		best StoreAnchor
	)
	for _, k := range found {
		id, err := k.ID()
		if err != nil {
			return nil, StoreAnchor{}, false, fmt.Errorf("custody: read the key store anchor: %w", err)
		}
		a, err := decodeAnchor(id)
		if err != nil {
			return nil, StoreAnchor{}, false, err
		}
		if len(objs) > 0 && a.Writer != best.Writer {
			return nil, StoreAnchor{}, false, fmt.Errorf("custody: the token anchors two key store journals (%q and %q); remove the stray %s objects", best.Writer, a.Writer, StoreAnchorLabel)
		}
		if len(objs) == 0 || a.Seq > best.Seq {
			best = a
		}
		objs = append(objs, anchorObject{k, a})
	}
	return objs, best, len(objs) > 0, nil
}

// StoreAnchor returns the key store's anchor; found is false when the token
// has none (a new appliance, or one whose store has not been upgraded yet).
func (c *Custodian) StoreAnchor() (a StoreAnchor, found bool, err error) {
	_, a, found, err = c.anchors()
	return a, found, err
}

// SetStoreAnchor records a in the token. The anchor only moves forward: a
// sequence number below the recorded one, or another writer id, is refused.
func (c *Custodian) SetStoreAnchor(a StoreAnchor) error {
	if a.Writer == "" || len(a.Writer) > maxWriterLen {
		return fmt.Errorf("custody: key store anchor: a writer id of 1 to %d bytes is required", maxWriterLen)
	}
	anchorMu.Lock()
	defer anchorMu.Unlock()
	objs, cur, found, err := c.anchors()
	if err != nil {
		return err
	}
	if found && cur.Writer != a.Writer {
		return fmt.Errorf("custody: the token anchors key store journal %q, not %q", cur.Writer, a.Writer)
	}
	if found && a.Seq < cur.Seq {
		return fmt.Errorf("custody: the key store anchor cannot move back from %d to %d", cur.Seq, a.Seq)
	}
	if !found || a.Seq > cur.Seq {
		if _, err := c.token.GenerateAESKey(encodeAnchor(a), StoreAnchorLabel, 128); err != nil {
			return fmt.Errorf("custody: record the key store anchor in the token: %w", err)
		}
	}
	kept := false
	for _, o := range objs {
		if o.a.Seq == a.Seq && !kept && found && a.Seq == cur.Seq {
			kept = true // the object that already holds a
			continue
		}
		if err := o.key.Delete(); err != nil {
			// The new value is in the token; an older object left over only
			// costs a slot (the highest sequence number wins).
			c.log.Warn("could not delete an old key store anchor from the token", zap.Error(err))
		}
	}
	c.log.Debug("key store anchor recorded in the token", zap.String("writer", a.Writer), zap.Uint64("seq", a.Seq))
	return nil
}

// DeleteStoreAnchor removes the anchor from the token: only the ceremony
// that erases the appliance (its key store is removed) calls it.
func (c *Custodian) DeleteStoreAnchor() error {
	anchorMu.Lock()
	defer anchorMu.Unlock()
	if c.token == nil {
		return errors.New("custody: closed")
	}
	found, err := c.token.FindKeys(StoreAnchorLabel)
	if err != nil {
		return fmt.Errorf("custody: find the key store anchor: %w", err)
	}
	for _, k := range found {
		if err := k.Delete(); err != nil {
			return fmt.Errorf("custody: delete the key store anchor: %w", err)
		}
	}
	return nil
}
