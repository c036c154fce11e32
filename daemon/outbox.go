package daemon

import (
	"fmt"

	"go.uber.org/zap"

	"payhsm/audit"
	"payhsm/keystore"
	"payhsm/protocol/awsapi"
)

// The audit outbox (awsapi.SetAuditOutbox): CreateKey's entry is a meta
// blob written with the key; the trail appends it after the commit and,
// once a sync holds it, settleStaged deletes the blob. At start,
// settleChunk is the most staged entries one transaction deletes.
const settleChunk = 64

// adoptStaged appends what a crash left in the store and the files lack.

// settleStaged deletes the blobs of staged entries the trail holds. A
// failure leaves them for the next start, which finds them in the trail.
func settleStaged(store *keystore.Store, refs []string, log *zap.Logger) {
	for len(refs) > 0 { // in small transactions: each holds the store's writers back while it runs
		n := min(len(refs), settleChunk)
		if err := store.PutMetas(nil, refs[:n]); err != nil {
			log.Warn("audit outbox: entries in the trail not deleted from the key store; the next start finds them there",
				zap.Int("entries", len(refs)), zap.Error(err))
			return
		}
		refs = refs[n:]
	}
}

// adoptStaged appends to trail the staged entries the key store holds and
// the trail's files do not, then deletes them from the store.
func adoptStaged(store *keystore.Store, trail *audit.Trail, log *zap.Logger) error {
	names, err := store.MetaNames(awsapi.AuditOutboxPrefix)
	if err != nil {
		return fmt.Errorf("audit outbox: %w", err)
	}
	if len(names) == 0 {
		return nil
	}
	staged := make(map[string][]byte, len(names))
	for _, n := range names {
		b, err := store.GetMeta(n)
		if err != nil {
			return fmt.Errorf("audit outbox: %w", err)
		}
		staged[n] = b
	}
	done, err := trail.Adopt(staged)
	if err != nil {
		return err
	}
	settleStaged(store, done, log)
	return nil
}
