package appliance

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"payhsm/hsm/custody"
	"payhsm/keystore"
)

// The key store's journal and its anchor in the token. The key store keeps
// a journal of its writes, so that a record put back to an older copy while
// the appliance was stopped is found at the next start (keystore:
// "Rollback"). A whole store restored from an old backup carries an older
// journal that is consistent with itself; the token tells: custody keeps in
// it the journal's writer id and the last sequence number the appliance
// recorded (custody.StoreAnchor), and a store whose journal ends before that
// is refused, until an operator who really restored a backup accepts it
// (payhsm keystore accept-restore, AcceptRestore).
//
// The anchor moves off the hot path: every AnchorInterval when the journal
// moved, and when the appliance closes, never per operation. It never
// passes the journal: it records a sequence number only once the store has
// made it durable. So what a restore can go back to undetected is the time
// since the last anchor: nothing after a clean stop, at most AnchorInterval
// of writes after a crash.

// AnchorInterval is how often the anchor follows the journal.
const AnchorInterval = time.Minute

type journalMode int

const (
	journalServe   journalMode = iota // open to serve or run a ceremony
	journalInspect                    // payhsm keystore verify: read only
	journalAccept                     // payhsm keystore accept-restore
)

// anchorState is the appliance's side of the anchor.
type anchorState struct {
	mu       sync.Mutex
	writer   string
	anchored uint64 // the sequence number the token holds
	on       bool   // the journal is started and the anchor follows it
	stop     chan struct{}
	done     chan struct{}
}

// RestoreReport is what OpenAcceptingRestore did.
type RestoreReport struct {
	Writer string // the journal's writer id
	Anchor uint64 // the sequence number the token held before
	Seq    uint64 // the journal's new sequence number, now anchored
}

// StartJournal starts the key store's journal if it is not started yet:
// Open does when the namespace profile has a main key (the journal is
// authenticated under it); the daemon calls it again after creating the
// profile of a new --dev appliance. It does nothing while the profile has
// no main key: until then the store holds no record the journal protects,
// and the first start with the profile writes the journal's first
// checkpoint.
func (a *Appliance) StartJournal() error {
	_, err := a.startJournal(journalServe)
	return err
}

func (a *Appliance) startJournal(mode journalMode) (*RestoreReport, error) {
	a.anchor.mu.Lock()
	defer a.anchor.mu.Unlock()
	if a.anchor.writer != "" {
		return nil, nil
	}
	if _, err := a.Custody.Profile(a.namespace); errors.Is(err, custody.ErrNoProfile) {
		if mode == journalAccept {
			return nil, fmt.Errorf("keystore: profile %s has no main key yet: there is no journal to accept", a.namespace)
		}
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	anc, found, err := a.Custody.StoreAnchor()
	if err != nil {
		return nil, err
	}
	if !found {
		if mode == journalInspect {
			return nil, nil // Verify still compares the records with whatever journal the store holds
		}
		// A new appliance, or one upgraded from a build without the
		// journal: the anchor first (a crash before the first checkpoint
		// then finds anchor 0 and writes it), then the first checkpoint.
		id := make([]byte, 8)
		if _, err := rand.Read(id); err != nil {
			return nil, err
		}
		anc = custody.StoreAnchor{Writer: "appliance-" + hex.EncodeToString(id)}
		if err := a.Custody.SetStoreAnchor(anc); err != nil {
			return nil, err
		}
	}
	kmode := map[journalMode]keystore.JournalMode{journalServe: keystore.JournalServe, journalInspect: keystore.JournalInspect,
		journalAccept: keystore.JournalRebaseline}[mode]
	seq, err := a.Store.StartJournal(keystore.JournalOptions{Writer: anc.Writer, Anchor: anc.Seq, Mode: kmode})
	if err != nil {
		return nil, journalRefusal(err, a.flagsHint)
	}
	a.anchor.writer, a.anchor.anchored = anc.Writer, anc.Seq
	if mode == journalInspect {
		return nil, nil
	}
	a.anchor.on = true
	if seq > anc.Seq { // catch up after a crash, or anchor a rebaseline at once
		if err := a.Custody.SetStoreAnchor(custody.StoreAnchor{Writer: anc.Writer, Seq: seq}); err != nil {
			return nil, err
		}
		a.anchor.anchored = seq
	}
	a.anchor.stop, a.anchor.done = make(chan struct{}), make(chan struct{})
	go a.anchorLoop(a.anchor.stop, a.anchor.done)
	return &RestoreReport{Writer: anc.Writer, Anchor: anc.Seq, Seq: seq}, nil
}

// refusal is an error with the operator's message that still matches the
// key store's sentinel.
type refusal struct {
	err error
	msg string
}

func (r *refusal) Error() string { return r.msg }
func (r *refusal) Unwrap() error { return r.err }

// journalRefusal turns the key store's refusal into the operator's message.
func journalRefusal(err error, flags string) error {
	var re *keystore.RollbackError
	switch {
	case errors.As(err, &re):
		at := fmt.Sprintf("its journal ends at sequence %d, the token recorded %d", re.Head, re.Anchor)
		if re.NoJournal {
			at = fmt.Sprintf("it has no journal, the token recorded sequence %d", re.Anchor)
		}
		return &refusal{err: err, msg: fmt.Sprintf("keystore: the key store is older than this appliance's token (restored from a backup?): %s; "+
			"refusing to start, as records changed since may have gone back (a stopped key usable again, a deleted key back). "+
			"If you restored it on purpose, accept it with: payhsm keystore accept-restore %s", at, flags)}
	case errors.Is(err, keystore.ErrJournalDamaged):
		return fmt.Errorf("%w; refusing to start, as records may have been rolled back. "+
			"payhsm keystore verify %s lists what failed; to accept the store as it is: payhsm keystore accept-restore %s", err, flags, flags)
	}
	return err
}

func (a *Appliance) anchorLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(AnchorInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			a.anchorNow()
		}
	}
}

// anchorNow records the journal's durable sequence number in the token if
// it moved.
func (a *Appliance) anchorNow() {
	a.anchor.mu.Lock()
	defer a.anchor.mu.Unlock()
	if !a.anchor.on {
		return
	}
	seq := a.Store.JournalSeq()
	if seq <= a.anchor.anchored {
		return
	}
	if err := a.Custody.SetStoreAnchor(custody.StoreAnchor{Writer: a.anchor.writer, Seq: seq}); err != nil {
		a.log.Warn("could not record the key store's journal in the token; will try again", zap.Error(err))
		return
	}
	a.anchor.anchored = seq
}

// stopAnchoring stops the anchor loop.
func (a *Appliance) stopAnchoring() {
	a.anchor.mu.Lock()
	stop, done := a.anchor.stop, a.anchor.done
	a.anchor.stop = nil
	a.anchor.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// CommandFlags names this appliance on a payhsm command line, for messages
// ("--dev --data-dir DIR", or "--config FILE (the daemon's)").
func (a *Appliance) CommandFlags() string { return a.flagsHint }

// DropStoreAnchor removes the anchor from the token and stops anchoring:
// only the ceremony that erases the appliance (its key store is removed)
// calls it, after destroying the region main key.
func (a *Appliance) DropStoreAnchor() error {
	a.stopAnchoring()
	a.anchor.mu.Lock()
	a.anchor.on = false
	a.anchor.mu.Unlock()
	return a.Custody.DeleteStoreAnchor()
}
