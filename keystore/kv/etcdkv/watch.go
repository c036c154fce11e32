package etcdkv

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"payhsm/keystore/kv"
)

var (
	_ kv.Watcher = (*Engine)(nil)
	_ kv.Elector = (*Engine)(nil)
)

// rewatchPause is how long Watch waits before watching again after etcd
// ended its watch (the member it talked to lost its leader, say).
const rewatchPause = 100 * time.Millisecond

// probe is one linearizable read of the prefix: at t the cluster answered
// at revision rev.
type probe struct {
	t   time.Time
	rev int64
}

// Watch implements kv.Watcher with one etcd watch of the prefix. The
// watch requires a leader (a member cut off from the quorum ends it, and
// Watch watches again through another), and etcd's client itself resumes
// it on another member after a lost connection, from the revision it had
// reached; when Watch has to watch again it does so from the revision
// after the last change it delivered. A compacted revision is reported as
// Reset, and the watch goes on from the compaction's revision.
//
// Contact: every probe a goroutine reads one key under the prefix
// linearizably (a read etcd answers only with a quorum) and notes the time
// t it started and the revision r it answered at; once the watch has
// delivered every change up to r (a change at r or later, or a progress
// notification etcd sends on request at r or later, which says the watch
// has caught up), contact(t) is called.
func (e *Engine) Watch(ctx context.Context, every time.Duration, fn func(kv.WatchEvent), contact func(time.Time)) {
	if every <= 0 {
		every = time.Second
	}
	ctx, cancel := e.bound(ctx)
	defer cancel()
	probes := make(chan probe, 1)
	go e.probe(ctx, every, probes)

	// The revision to watch from: the next after the current one.
	var next int64
	for next == 0 {
		cctx, cancel := e.ctx()
		resp, err := e.c.Get(cctx, e.prefix+formatProbe, clientv3.WithCountOnly())
		cancel()
		if err == nil {
			next = resp.Header.Revision + 1
			break
		}
		e.log.Warn("etcd watch: cannot read the current revision; retrying", zap.Error(mapErr(err, e.timeout, false)))
		if !sleepCtx(ctx, rewatchPause) {
			return
		}
	}
	// Whatever was cached before this point may have been read before a
	// change the watch will not deliver: a reset drops it.
	fn(kv.WatchEvent{Reset: true})
	seen := next - 1
	var pending *probe
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := e.c.Watch(wctx, e.prefix, clientv3.WithPrefix(), clientv3.WithRev(next))
	stream:
		for {
			select {
			case <-ctx.Done():
				break stream
			case p := <-probes:
				if p.rev <= seen {
					contact(p.t)
					continue
				}
				pending = &p
				// Ask etcd to say how far the watch has come; the answer
				// (a progress notification) confirms the probe.
				if err := e.c.RequestProgress(wctx); err != nil && ctx.Err() == nil {
					e.log.Debug("etcd watch: progress request", zap.Error(err))
				}
			case resp, ok := <-wch:
				if !ok {
					break stream
				}
				if resp.CompactRevision != 0 {
					e.log.Warn("etcd watch: the revisions it had not seen yet were compacted; every cached record is dropped",
						zap.Int64("from", next), zap.Int64("compacted", resp.CompactRevision))
					fn(kv.WatchEvent{Reset: true})
					next = resp.CompactRevision
					seen = next - 1
					break stream
				}
				if err := resp.Err(); err != nil {
					if ctx.Err() == nil {
						e.log.Warn("etcd watch ended; watching again", zap.Int64("from", next), zap.Error(err))
					}
					break stream
				}
				if n := len(resp.Events); n > 0 {
					ev := kv.WatchEvent{Keys: make([][]byte, 0, n)}
					for _, x := range resp.Events {
						ev.Keys = append(ev.Keys, x.Kv.Key[len(e.prefix):])
					}
					fn(ev)
					last := resp.Events[n-1].Kv.ModRevision
					seen, next = max(seen, last), max(next, last+1)
				} else if resp.IsProgressNotify() {
					seen = max(seen, resp.Header.Revision)
					next = max(next, seen+1)
				}
				if pending != nil && pending.rev <= seen {
					contact(pending.t)
					pending = nil
				}
			}
		}
		cancel()
		if !sleepCtx(ctx, rewatchPause) {
			return
		}
	}
}

// probe reads the prefix linearizably every interval and sends what it
// learnt to out (the latest only, when the watch loop is behind).
func (e *Engine) probe(ctx context.Context, every time.Duration, out chan probe) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, e.timeout)
		resp, err := e.c.Get(cctx, e.prefix+formatProbe, clientv3.WithCountOnly())
		cancel()
		if err == nil {
			p := probe{t: start, rev: resp.Header.Revision}
			select { // replace an unread older probe
			case <-out:
			default:
			}
			out <- p
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// bound returns ctx ended also when the engine is closed, so that no
// watch or campaign outlives it.
func (e *Engine) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(e.c.Ctx(), cancel)
	return ctx, func() { stop(); cancel() }
}

// RequestTimeout is how long one request may take (Config.RequestTimeout).
func (e *Engine) RequestTimeout() time.Duration { return e.timeout }

// sleepCtx sleeps for d, or less when ctx ends first; it reports whether
// ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// leaderKeys is where, under the prefix, the elections keep their
// candidates: under "sys/", which the store's records never use and its
// verification passes over.
const leaderKeys = "sys/leader/"

// Lead implements kv.Elector with an etcd election
// (go.etcd.io/etcd/client/v3/concurrency) under the prefix, held by a
// lease of ttl (rounded up to whole seconds, at least two), which the
// client keeps alive (a keep-alive every third of it, checked every half
// second). The cluster expires the lease, and elects the next candidate,
// ttl after the last keep-alive it received; the leader steps down (run's
// context ends) once it has had no keep-alive answer for two thirds of
// ttl, so that it stops before the cluster can elect another: the two
// overlap only if this process is paused for the last third of the lease
// (a stopped VM), so a job run under
// Lead must still be safe to run twice at once (the store's writes are
// transactions, so the keystore's are).
func (e *Engine) Lead(ctx context.Context, role, candidate string, ttl time.Duration, run func(context.Context)) {
	secs := max(2, int(math.Ceil(ttl.Seconds())))
	ctx, cancel := e.bound(ctx)
	defer cancel()
	for ctx.Err() == nil {
		if !e.leadOnce(ctx, role, candidate, secs, run) && !sleepCtx(ctx, time.Second) {
			return
		}
	}
}

// leadOnce campaigns once and, elected, runs run; it reports whether it
// was elected.
func (e *Engine) leadOnce(ctx context.Context, role, candidate string, secs int, run func(context.Context)) bool {
	log := e.log.With(zap.String("role", role), zap.String("candidate", candidate))
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	gctx, gcancel := context.WithTimeout(ctx, e.timeout)
	grant, err := e.c.Grant(gctx, int64(secs))
	gcancel()
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("leader election: cannot grant a lease; retrying", zap.Error(mapErr(err, e.timeout, false)))
		}
		return false
	}
	var lastAck atomic.Int64 // when the lease was last known alive on the cluster
	lastAck.Store(time.Now().UnixNano())
	acks, err := e.c.KeepAlive(lctx, grant.ID)
	if err != nil {
		log.Warn("leader election: cannot keep the lease alive; retrying", zap.Error(mapErr(err, e.timeout, false)))
		return false
	}
	sess, err := concurrency.NewSession(e.c, concurrency.WithLease(grant.ID), concurrency.WithContext(lctx))
	if err != nil {
		log.Warn("leader election: cannot open a session; retrying", zap.Error(mapErr(err, e.timeout, false)))
		return false
	}
	defer func() { _ = sess.Close() }() // revokes the lease: the next candidate need not wait for it to expire
	go func() {
		for range acks {
			lastAck.Store(time.Now().UnixNano())
		}
		cancel() // the lease is gone (expired, or lctx ended)
	}()
	ttl := time.Duration(secs) * time.Second
	go func() {
		t := time.NewTicker(ttl / 20)
		defer t.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-t.C:
			}
			if time.Since(time.Unix(0, lastAck.Load())) > 2*ttl/3 {
				cancel()
				return
			}
		}
	}()
	el := concurrency.NewElection(sess, e.prefix+leaderKeys+role)
	if err := el.Campaign(lctx, candidate); err != nil {
		if ctx.Err() == nil {
			log.Warn("leader election: campaign ended", zap.Error(mapErr(err, e.timeout, false)))
		}
		return false
	}
	log.Info("elected leader")
	run(lctx)
	if lctx.Err() != nil && ctx.Err() == nil {
		log.Warn("leadership lost: the lease was not kept alive (the cluster was unreachable)")
	} else {
		log.Info("leadership given up")
	}
	rctx, rcancel := context.WithTimeout(context.Background(), e.timeout)
	defer rcancel()
	_ = el.Resign(rctx) // best effort: Close revokes the lease anyway
	return true
}

// Leader implements kv.Elector: the candidate whose key under the role's
// election was created first (the one concurrency.Election elects).
func (e *Engine) Leader(role string) (string, bool, error) {
	ctx, cancel := e.ctx()
	defer cancel()
	resp, err := e.c.Get(ctx, e.prefix+leaderKeys+role+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", false, fmt.Errorf("etcd: read the %s leader: %w", role, mapErr(err, e.timeout, false))
	}
	if len(resp.Kvs) == 0 {
		return "", false, nil
	}
	return string(resp.Kvs[0].Value), true, nil
}
