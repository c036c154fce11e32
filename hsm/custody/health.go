package custody

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"payhsm/fault"
)

// Token health. Nothing on the hot path calls the token (the profile main
// keys are unsealed into memory at start), so a token that goes away — a
// USB token pulled out, a network HSM unreachable, SoftHSM2's token
// directory moved or truncated — would go unnoticed until the next start.
// The daemon therefore runs Watch, which probes the token every second or
// so with a cheap operation that exercises the whole path: the region main
// key's check value, computed through the token (two AES block encryptions)
// and compared with the one recorded at start.
//
// When a probe fails, custody drops the session and logs in again (a
// PKCS#11 module such as SoftHSM2 does not recover a session whose objects
// vanished: the module must be finalized and initialized anew, which
// crypto11 does when its last context closes), finds the region main key
// and checks its check value, so a different token under the same label is
// never taken for the right one. If that fails the token is unavailable:
//
//   - the failure is logged once at error level (and its end once, when a
//     probe succeeds again);
//   - everything that needs the token fails at once with an Unavailable
//     fault (errors.Is ErrTokenUnavailable): sealing and unsealing, and so
//     loading a profile not yet unsealed, creating one, rotating, the
//     ceremonies' online steps;
//   - the main keys already unsealed, and the working keys the operations
//     layer caches, keep serving for Config.LossGrace; after that Available
//     fails too, and with it every operation that uses a main key or a
//     working key (Profile, and through it the key store's record keys, and
//     ops.Service.Working), until the token is back;
//   - readiness (TokenStatus) is false from the first failed probe.
//
// The next successful probe (a new session, the same check value) makes it
// available again.

// ErrTokenUnavailable is wrapped by every error custody returns because the
// token is unavailable.
var ErrTokenUnavailable = errors.New("custody: the PKCS#11 token is unavailable")

// TokenUnavailableMessage is the client-safe message of the Unavailable
// fault custody returns while the token is unavailable.
const TokenUnavailableMessage = "the PKCS#11 token holding the region main key is unavailable" //nolint:gosec // G101: a message, not a credential

type tokenHealth struct {
	probeMu    sync.Mutex   // one probe at a time
	downSince  atomic.Int64 // Unix nanoseconds of the first failed probe; 0 while available
	lastErr    atomic.Pointer[error]
	refusing   atomic.Bool // the loss grace has run out (logged once)
	probes     atomic.Uint64
	failures   atomic.Uint64
	recoveries atomic.Uint64
}

// TokenStatus is the token's health as the last probe found it.
type TokenStatus struct {
	Available bool
	// Since is when the token was first found unavailable (zero while available).
	Since time.Time
	// Err is why the last probe failed (nil while available).
	Err error
	// Refusing: unavailable for longer than LossGrace, so Available fails.
	Refusing bool
	// Probes, Failures and Recoveries count probes, failed probes, and the
	// returns of a lost token.
	Probes, Failures, Recoveries uint64
}

// TokenStatus reports the token's health.
func (c *Custodian) TokenStatus() TokenStatus {
	st := TokenStatus{Available: true, Probes: c.health.probes.Load(), Failures: c.health.failures.Load(),
		Recoveries: c.health.recoveries.Load()}
	if ds := c.health.downSince.Load(); ds != 0 {
		st.Available, st.Since = false, time.Unix(0, ds)
		if p := c.health.lastErr.Load(); p != nil {
			st.Err = *p
		}
		st.Refusing = c.pastGrace(st.Since)
	}
	return st
}

// pastGrace reports whether a token unavailable since then has been so for
// longer than the loss grace: keys are then refused.
func (c *Custodian) pastGrace(since time.Time) bool {
	return !c.cfg.Now().Before(since.Add(c.cfg.LossGrace))
}

// Available is nil while the token is available, or has been unavailable
// for less than LossGrace; after that, an Unavailable fault. It costs one
// atomic load while the token is available: the operations layer calls it
// for every operation.
func (c *Custodian) Available() error {
	if ds := c.health.downSince.Load(); ds != 0 { // small enough to inline at the caller
		return c.availableSince(ds)
	}
	return nil
}

// availableSince is Available for a token unavailable since ds (Unix
// nanoseconds).
func (c *Custodian) availableSince(ds int64) error {
	since := time.Unix(0, ds)
	if !c.pastGrace(since) {
		return nil
	}
	c.graceOver(since)
	return c.unavailable(fmt.Sprintf("since %s, longer than the %s the unsealed keys may serve without it", since.UTC().Format(time.RFC3339), c.cfg.LossGrace))
}

// noSession is the error of an operation (what) that needs the token while
// there is no session with it.
func (c *Custodian) noSession(what string) error {
	if c.closed {
		return fmt.Errorf("custody: %s: closed", what)
	}
	return c.unavailable(what)
}

func (c *Custodian) unavailable(detail string) error {
	cause := fmt.Errorf("%w (%s)", ErrTokenUnavailable, detail)
	if p := c.health.lastErr.Load(); p != nil {
		cause = fmt.Errorf("%w: %w", cause, *p)
	}
	return fault.Wrap(fault.Unavailable, TokenUnavailableMessage, cause)
}

// Watch probes the token every interval until ctx ends.
func (c *Custodian) Watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_ = c.Probe() // Probe records and logs the outcome
	}
}

// Probe checks the token: the region main key's check value, computed
// through it, must be the one found at start. When that fails it logs in
// again (see the comment above). It records the outcome (TokenStatus,
// Available), logs the changes, and returns the failure.
func (c *Custodian) Probe() error {
	c.health.probeMu.Lock()
	defer c.health.probeMu.Unlock()
	c.health.probes.Add(1)
	err := c.check()
	if err != nil && !errors.Is(err, errClosed) {
		if rerr := c.reconnect(); rerr != nil {
			err = fmt.Errorf("%w; logging in again: %w", err, rerr)
		} else {
			err = nil
		}
	}
	c.recordProbe(err)
	return err
}

var errClosed = errors.New("custody: closed")

// check computes the region main key's check value through the current session.
func (c *Custodian) check() error {
	c.tokMu.RLock()
	defer c.tokMu.RUnlock()
	switch {
	case c.closed:
		return errClosed
	case c.rmk == nil:
		return errors.New("no session with the token")
	}
	return c.checkKey(c.rmk)
}

func (c *Custodian) checkKey(k TokenKey) error {
	sum, err := tokenKCV(k)
	if err != nil {
		return err
	}
	if sum != c.rmkKCV {
		return fmt.Errorf("the region main key %q answers with check value %s, not %s: a different token", c.cfg.RegionKeyLabel, upper(sum), upper(c.rmkKCV))
	}
	return nil
}

// reconnect drops the session and opens a new one, checking the region main key.
func (c *Custodian) reconnect() error {
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	if c.closed {
		return errClosed
	}
	if c.token != nil {
		_ = c.token.Close() // a session on a lost token: closing is all that can be done with it
		c.token, c.rmk, c.envelope = nil, nil, nil
	}
	tok, err := c.module.Login(c.cfg.TokenLabel, c.cfg.PIN)
	if err != nil {
		return fmt.Errorf("open PKCS#11 token %q: %w", c.cfg.TokenLabel, err)
	}
	found, err := tok.FindKeys(c.cfg.RegionKeyLabel)
	if err == nil && len(found) != 1 {
		err = fmt.Errorf("the token holds %d keys labelled %q, not the one region main key", len(found), c.cfg.RegionKeyLabel)
	}
	if err == nil {
		err = c.checkKey(found[0])
	}
	if err != nil {
		_ = tok.Close() // not the token custody had: nothing to keep
		return err
	}
	c.token, c.rmk, c.envelope = tok, found[0], newEnvelope(found[0])
	return nil
}

// recordProbe records a probe's outcome and logs the changes of state.
func (c *Custodian) recordProbe(err error) {
	h := &c.health
	if err == nil {
		h.lastErr.Store(nil)
		if ds := h.downSince.Swap(0); ds != 0 {
			h.recoveries.Add(1)
			h.refusing.Store(false)
			c.log.Warn("PKCS#11 token available again", zap.String("token", c.cfg.TokenLabel),
				zap.Duration("unavailableFor", c.cfg.Now().Sub(time.Unix(0, ds))))
		}
		return
	}
	if errors.Is(err, errClosed) {
		return
	}
	h.failures.Add(1)
	h.lastErr.Store(&err)
	now := c.cfg.Now()
	if h.downSince.CompareAndSwap(0, now.UnixNano()) {
		c.log.Error("PKCS#11 token unavailable: operations that need it fail; the unsealed main keys and cached working keys keep serving for the loss grace, then every operation that uses them is refused until the token returns",
			zap.String("token", c.cfg.TokenLabel), zap.Duration("lossGrace", c.cfg.LossGrace), zap.Error(err))
		return
	}
	if since := time.Unix(0, h.downSince.Load()); !now.Before(since.Add(c.cfg.LossGrace)) {
		c.graceOver(since)
	}
}

// graceOver logs, once per loss, that the loss grace has run out: by the
// first probe or the first refused operation after it, whichever comes first.
func (c *Custodian) graceOver(since time.Time) {
	if c.health.refusing.CompareAndSwap(false, true) {
		c.log.Error("PKCS#11 token unavailable for longer than the loss grace: refusing every operation that uses a main key or a working key until it returns",
			zap.String("token", c.cfg.TokenLabel), zap.Duration("lossGrace", c.cfg.LossGrace), zap.Time("since", since))
	}
}
