package daemon

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"payhsm/audit"
	"payhsm/keystore"
	"payhsm/protocol/awsapi"
)

// auditOutbox is the daemon's side of CreateKey's staged audit entries
// (awsapi.SetAuditOutbox), on a key store with one writer. A created key's
// record carries who created it; its entry is appended to the trail after
// the commit and reaches the file with the trail's next sync. What a crash
// can leave out of the files is found from a watermark kept in the store:
// every entry staged before it is in a synced file of the trail (or its key
// was never stored). At start, after a stop that did not close the trail,
// the keys created since the watermark are read and their entries adopted
// (audit.Trail.Adopt), which appends those the files lack.
type auditOutbox struct {
	store *keystore.Store
	log   *zap.Logger
	now   func() time.Time

	mu       sync.Mutex
	inflight map[string]time.Time // request id → time, staged and not yet settled or abandoned
	floor    time.Time            // while the keys of an unclean stop are adopted: the watermark's bound
	written  time.Time            // when the watermark was last written

	writeMu sync.Mutex // one watermark write at a time
}

// outboxWatermark is the meta blob of the watermark: a time (RFC 3339) and,
// after a clean stop, " clean".
const outboxWatermark = "audit-outbox-watermark"

// outboxMargin is how far before the watermark a key's creation time may
// be and its entry still be staged after it: the entry's time is taken
// microseconds after the key's, from the same clock; the margin covers a
// step of the clock between the two.
const outboxMargin = 2 * time.Second

func newAuditOutbox(store *keystore.Store, log *zap.Logger) *auditOutbox {
	return &auditOutbox{store: store, log: log, now: time.Now, inflight: map[string]time.Time{}}
}

// Staging implements awsapi.AuditOutbox. The time is taken under the lock,
// so that a watermark computed after it is no later than it.
func (o *auditOutbox) Staging(ref string) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	at := o.now()
	o.inflight[ref] = at
	return at
}

// Abandoned implements awsapi.AuditOutbox.
func (o *auditOutbox) Abandoned(ref string) {
	o.mu.Lock()
	delete(o.inflight, ref)
	o.mu.Unlock()
}

// settled is the trail's audit.Config.Settled: the entries of these
// requests are in a synced file. It writes the watermark at most once a
// second.
func (o *auditOutbox) settled(requestIDs []string) {
	o.mu.Lock()
	for _, r := range requestIDs {
		delete(o.inflight, r)
	}
	var w time.Time
	now := o.now()
	due := now.Sub(o.written) >= time.Second
	if due {
		w, o.written = o.watermarkLocked(), now
	}
	o.mu.Unlock()
	if due {
		o.write(w, false)
	}
}

// watermarkLocked is the oldest entry staged and not settled or abandoned,
// else now.
func (o *auditOutbox) watermarkLocked() time.Time {
	w := o.now()
	if !o.floor.IsZero() {
		w = o.floor
	}
	for _, at := range o.inflight {
		if at.Before(w) {
			w = at
		}
	}
	return w
}

func (o *auditOutbox) write(w time.Time, clean bool) {
	v := w.UTC().Format(time.RFC3339Nano)
	if clean {
		v += " clean"
	}
	o.writeMu.Lock()
	defer o.writeMu.Unlock()
	if err := o.store.PutMeta(outboxWatermark, []byte(v)); err != nil {
		o.log.Warn("audit outbox: the watermark could not be written; a start after a crash reads more keys", zap.Error(err))
	}
}

// close writes the watermark of a stop, after the trail has closed: clean
// when every staged entry is in the files.
func (o *auditOutbox) close() {
	o.mu.Lock()
	w, clean := o.watermarkLocked(), len(o.inflight) == 0 && o.floor.IsZero()
	o.mu.Unlock()
	o.write(w, clean)
}

// adopt starts appending to trail, in the background, the entries of the
// keys created since the watermark that its files lack, when the last stop
// did not close the trail; the watermark stays at most there until that is
// done. arn is a key id's ARN; account the entries' account. It returns a
// channel closed when the adoption is over (at once after a clean stop).
func (o *auditOutbox) adopt(trail *audit.Trail, account string, arn func(id string) string) (<-chan struct{}, error) {
	over := make(chan struct{})
	start := o.now()
	b, err := o.store.GetMeta(outboxWatermark)
	var since time.Time
	switch {
	case errors.Is(err, keystore.ErrNotFound): // nothing was ever staged
	case err != nil:
		return nil, fmt.Errorf("audit outbox: %w", err)
	default:
		v, clean := strings.CutSuffix(string(b), " clean")
		w, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, fmt.Errorf("audit outbox: watermark %q: %w", b, err)
		}
		if !clean {
			since = w.Add(-outboxMargin)
		}
	}
	if since.IsZero() {
		o.write(start, false) // nothing is staged before start: a crash from here on reads from it
		close(over)
		return over, nil
	}
	o.mu.Lock()
	o.floor = since
	o.mu.Unlock()
	o.write(since, false)
	go func() {
		defer close(over)
		if err := o.adoptSince(trail, account, arn, since); err != nil {
			o.log.Error("audit outbox: the keys created before an unclean stop could not be checked against the trail; the next start tries again",
				zap.Error(err))
			return
		}
		o.mu.Lock()
		o.floor = time.Time{}
		o.mu.Unlock()
	}()
	return over, nil
}

func (o *auditOutbox) adoptSince(trail *audit.Trail, account string, arn func(id string) string, since time.Time) error {
	began := time.Now()
	keys, err := o.store.KeysCreatedSince(since)
	if err != nil {
		return fmt.Errorf("audit outbox: %w", err)
	}
	staged := make([]*audit.Staged, 0, len(keys))
	for _, k := range keys {
		s, err := awsapi.StagedCreateKey(account, arn(k.ID), k.CreatedBy, k.Created)
		if err != nil {
			o.log.Error("audit outbox: a key's creation cannot be written to the trail", zap.String("key", k.ID), zap.Error(err))
			continue
		}
		staged = append(staged, s)
	}
	read := time.Since(began)
	n, err := trail.Adopt(staged)
	if err != nil {
		return fmt.Errorf("audit outbox: %w", err)
	}
	o.log.Info("audit outbox: the trail did not close; the keys created since its watermark checked",
		zap.Time("since", since), zap.Int("keys", len(staged)), zap.Int("appended", n), zap.Duration("readKeys", read),
		zap.Duration("took", time.Since(began)))
	return nil
}
