package etcdkv

import (
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
