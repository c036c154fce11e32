package etcdkv

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// PutLeased writes key = value (under the prefix, outside any store
// transaction) attached to an etcd lease, so that the key disappears when
// its writer stops renewing it: a fleet node's heartbeat. lease is the
// lease of the previous call (0 the first time): it is renewed, or, when
// it has expired, replaced by a new lease of ttl (at least a second). The
// lease in use is returned for the next call.
func (e *Engine) PutLeased(key, value []byte, lease int64, ttl time.Duration) (int64, error) {
	ctx, cancel := e.ctx()
	defer cancel()
	if lease != 0 {
		if _, err := e.c.KeepAliveOnce(ctx, clientv3.LeaseID(lease)); errors.Is(err, rpctypes.ErrLeaseNotFound) {
			lease = 0
		} else if err != nil {
			return lease, fmt.Errorf("etcd lease keep-alive: %w", mapErr(err, e.timeout, false))
		}
	}
	if lease == 0 {
		g, err := e.c.Grant(ctx, max(int64(ttl/time.Second), 1))
		if err != nil {
			return 0, fmt.Errorf("etcd lease grant: %w", mapErr(err, e.timeout, false))
		}
		lease = int64(g.ID)
	}
	if _, err := e.c.Put(ctx, e.prefix+string(key), string(value), clientv3.WithLease(clientv3.LeaseID(lease))); err != nil {
		return lease, fmt.Errorf("etcd put: %w", mapErr(err, e.timeout, true))
	}
	return lease, nil
}

// Revoke ends lease: the keys attached to it are deleted at once (a
// node's clean stop).
func (e *Engine) Revoke(lease int64) error {
	if lease == 0 {
		return nil
	}
	ctx, cancel := e.ctx()
	defer cancel()
	if _, err := e.c.Revoke(ctx, clientv3.LeaseID(lease)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("etcd lease revoke: %w", mapErr(err, e.timeout, false))
	}
	return nil
}

// Delete removes key (under the prefix, outside any store transaction): a
// fleet node takes the offer addressed to it. An absent key is no error.
func (e *Engine) Delete(key []byte) error {
	ctx, cancel := e.ctx()
	defer cancel()
	if _, err := e.c.Delete(ctx, e.prefix+string(key)); err != nil {
		return fmt.Errorf("etcd delete: %w", mapErr(err, e.timeout, true))
	}
	return nil
}

// Notify calls fn whenever a key under one of prefixes (under the
// engine's prefix) changes, until ctx ends or the engine closes. It is a
// hint to look again, best effort: a broken watch is set up again after a
// pause, and changes meanwhile are not reported, so callers also look on
// a timer.
func (e *Engine) Notify(ctx context.Context, fn func(), prefixes ...[]byte) {
	ctx, cancel := e.bound(ctx)
	defer cancel()
	for ctx.Err() == nil {
		wctx, wcancel := context.WithCancel(ctx)
		merged := make(chan struct{}, 1)
		for _, p := range prefixes {
			wch := e.c.Watch(wctx, e.prefix+string(p), clientv3.WithPrefix())
			go func() {
				for resp := range wch {
					if resp.Err() != nil {
						break
					}
					select {
					case merged <- struct{}{}:
					default:
					}
				}
				wcancel() // one watch ended: set them all up again
			}()
		}
		for done := false; !done; {
			select {
			case <-wctx.Done():
				done = true
			case <-merged:
				fn()
			}
		}
		wcancel()
		if !sleepCtx(ctx, rewatchPause) {
			return
		}
	}
}
