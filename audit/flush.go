package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// The flusher goroutine does every write and sync after Open (and Close
// after it has stopped): it takes what was appended, writes and syncs it
// outside the lock, and releases the callers waiting for it. Callers that
// arrive during a sync wait for the next one, which then covers all of them
// (group commit).
func (t *Trail) flusher() {
	defer close(t.flushed)
	tick := time.NewTicker(t.cfg.SyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.kick:
		case <-tick.C:
		case <-t.stop:
			t.flushOnce()
			return
		}
		t.flushOnce()
	}
}

func (t *Trail) flushOnce() {
	now := t.cfg.Now()
	t.mu.Lock()
	if t.broken != nil {
		if now.Sub(t.lastTry) < retryEvery {
			t.mu.Unlock()
			return
		}
		t.prefixLocked() // a failed trail retries by itself, with its notice
	} else {
		t.noteDropsLocked()
		if t.seq > t.lastSeal && now.Sub(t.lastSealAt) >= t.cfg.SealInterval {
			if _, err := t.appendSealLocked(SealInterval); err != nil {
				t.cfg.Log.Error("audit trail: seal", zap.Error(err))
			}
		}
	}
	if len(t.buf) == 0 {
		t.mu.Unlock()
		return
	}
	if t.broken == nil && t.f != nil && t.durable > 0 && now.After(t.noRotate) && t.adopting == 0 &&
		(t.durable+int64(len(t.buf)) > t.cfg.RotateBytes || now.Sub(t.fileStart) >= t.cfg.RotateAge) {
		t.rotateLocked(now)
		t.mu.Unlock()
		return
	}
	data, b, broken := t.buf, t.cur, t.broken
	t.buf, t.cur = t.spare[:0], newBatch()
	t.mu.Unlock()

	var err error
	if broken != nil {
		err = t.recover()
	}
	if err == nil {
		err = t.writeSync(data)
	}
	t.mu.Lock()
	if err != nil {
		t.failLocked(err, b)
		t.mu.Unlock()
		return
	}
	t.commitLocked(b, len(data))
	t.spare = data
	t.mu.Unlock()
	close(b.done)
}

// failLocked handles a failed write or sync of batch b: b and every entry
// appended after it (chained onto b) fail, the chain goes back to the last
// durable entry, and the next write, at most once per retryEvery, first
// cuts the file back (recover) and records what was discarded.
func (t *Trail) failLocked(err error, b *batch) {
	lost := t.seq - t.dSeq
	if b != nil {
		t.orphans = append(t.orphans, b.staged...) // durable with their keys: written once the trail can
	}
	t.orphans = append(t.orphans, t.cur.staged...)
	werr := fmt.Errorf("audit trail: write failed, so the entry is not recorded: %w", err)
	t.failWaiters(b, werr)
	t.failWaiters(t.cur, werr)
	t.cur, t.buf = newBatch(), t.buf[:0]
	t.seq, t.hash, t.lastSeal = t.dSeq, t.dHash, t.dLastSeal
	t.discarded += lost
	t.broken, t.lastTry = err, t.cfg.Now()
	t.needNotice = true
	if t.durable == 0 {
		t.needStart = true
	}
	t.cfg.Log.Error("audit trail: write failed; control-plane calls are refused until it writes again",
		zap.Uint64("discarded", t.discarded), zap.Error(err))
}

// prefixLocked appends what must precede the next entry: the start entry of
// a file with nothing durable in it yet, the notice of a failure, and the
// staged entries a failure left out (orphans).
func (t *Trail) prefixLocked() {
	if t.needStart {
		t.needStart = false
		start := &Start{Reason: StartRecover, Writer: t.cfg.Writer, PID: os.Getpid(), File: ActiveName, PrevFile: t.prevFile, KeyID: t.keys.id}
		if _, err := t.appendLocked(&Entry{Kind: KindStart, Start: start}); err != nil {
			t.needStart = true
		}
	}
	if t.needNotice {
		t.needNotice = false
		n := &Notice{Discarded: t.discarded}
		if t.broken != nil {
			n.Error = t.broken.Error()
		}
		if _, err := t.appendLocked(&Entry{Kind: KindNotice, Notice: n}); err != nil {
			t.needNotice = true
		}
	}
	if len(t.orphans) > 0 {
		orphans := t.orphans
		t.orphans = nil
		for i, o := range orphans {
			b, err := t.appendLocked(o.entry())
			if err != nil {
				t.orphans = append(t.orphans, orphans[i:]...)
				break
			}
			b.staged = append(b.staged, o)
		}
	}
}

// recover makes the active file writable again after a failure: it cuts
// it back to its last durable byte (what a failed write or sync may have
// left after it was never acknowledged), or creates it when a rotation
// could not.
func (t *Trail) recover() error {
	if t.f == nil {
		f, err := createActive(t.cfg.Dir)
		if err != nil {
			return err
		}
		t.f = f
		return nil
	}
	if err := t.f.Truncate(t.durable); err != nil {
		return err
	}
	return t.f.Sync()
}

// rotateLocked closes the active file with a seal, renames it after its
// first sequence number and starts a new one. It holds the lock
// throughout: a rotation (two syncs and two directory syncs) is rare, and
// nothing may be appended between the seal and the new file's start entry.
func (t *Trail) rotateLocked(now time.Time) {
	if _, err := t.appendSealLocked(SealRotate); err != nil {
		t.cfg.Log.Error("audit trail: seal", zap.Error(err))
		return
	}
	data, b := t.buf, t.cur
	t.buf, t.cur = nil, newBatch()
	if err := t.writeSync(data); err != nil {
		t.failLocked(err, b)
		return
	}
	t.commitLocked(b, len(data))
	close(b.done)
	name := fileName(t.fileFirst)
	active := filepath.Join(t.cfg.Dir, ActiveName)
	dst := filepath.Join(t.cfg.Dir, name)
	if _, err := os.Lstat(dst); err == nil {
		err = fmt.Errorf("%s exists", dst)
		t.cfg.Log.Error("audit trail: cannot rotate; the active file keeps growing (retry in a minute)", zap.Error(err))
		t.noRotate = now.Add(time.Minute)
		return
	}
	if err := os.Rename(active, dst); err != nil {
		t.cfg.Log.Error("audit trail: cannot rotate; the active file keeps growing (retry in a minute)", zap.Error(err))
		t.noRotate = now.Add(time.Minute)
		return
	}
	if err := t.f.Close(); err != nil {
		t.cfg.Log.Warn("audit trail: close the rotated file", zap.String("file", name), zap.Error(err))
	}
	t.f, t.durable, t.prevFile = nil, 0, name
	t.fileFirst, t.fileStart = t.seq+1, now.UTC()
	f, err := createActive(t.cfg.Dir)
	if err != nil {
		t.broken, t.lastTry, t.needStart = err, t.cfg.Now(), true
		t.cfg.Log.Error("audit trail: cannot create the new file after a rotation; control-plane calls are refused until it can", zap.Error(err))
		return
	}
	t.f = f
	start := &Start{Reason: StartRotate, Writer: t.cfg.Writer, PID: os.Getpid(), File: ActiveName, PrevFile: name, KeyID: t.keys.id}
	sb, err := t.appendLocked(&Entry{Kind: KindStart, Start: start})
	if err != nil {
		t.cfg.Log.Error("audit trail: start entry", zap.Error(err))
		return
	}
	data = t.buf
	t.buf, t.cur = nil, newBatch()
	if err := t.writeSync(data); err != nil {
		t.failLocked(err, sb)
		return
	}
	t.commitLocked(sb, len(data))
	close(sb.done)
}

// createActive creates a new active file and makes its name durable.
func createActive(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, ActiveName), os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600) //nolint:gosec // G304: the trail's own file in the operator's data directory.
	if err != nil {
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir) //nolint:gosec // G304: the trail's directory, to sync it.
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// drainer moves queued data events into the trail, up to 256 per lock.
func (t *Trail) drainer() {
	defer close(t.drained)
	batch := make([]queued, 0, 256)
	for {
		stopping := false
		select {
		case q := <-t.data:
			batch = append(batch[:0], q)
		case <-t.stopData:
			stopping = true
			batch = batch[:0]
		}
	more:
		for len(batch) < cap(batch) {
			select {
			case q := <-t.data:
				batch = append(batch, q)
			default:
				break more
			}
		}
		if len(batch) > 0 {
			t.appendData(batch)
		}
		if stopping {
			if len(t.data) == 0 {
				return
			}
			// More than one batch was queued at Close: take the rest.
			for len(t.data) > 0 {
				batch = batch[:0]
				for len(batch) < cap(batch) && len(t.data) > 0 {
					batch = append(batch, <-t.data)
				}
				t.appendData(batch)
			}
			return
		}
	}
}

func (t *Trail) appendData(batch []queued) {
	t.mu.Lock()
	k := t.keys
	t.mu.Unlock()
	entries := make([]Entry, len(batch))
	for i := range batch {
		q := &batch[i]
		entries[i] = Entry{Kind: KindData, Time: q.at.UTC(), Event: &q.ev}
		entries[i].MaskedPAN, entries[i].PANHash = k.maskPAN(q.ev.PAN)
	}
	t.mu.Lock()
	if t.broken != nil {
		t.mu.Unlock()
		t.dropped.Add(uint64(len(batch)))
		t.toNote.Add(uint64(len(batch)))
		return
	}
	t.noteDropsLocked()
	for i := range entries {
		if _, err := t.appendLocked(&entries[i]); err != nil {
			t.dropped.Add(1)
			t.toNote.Add(1)
		}
	}
	big := len(t.buf) >= flushAt
	t.mu.Unlock()
	if big {
		t.wake()
	}
}

// lockName is the lock file of a trail directory: one writer at a time.
const lockName = ".lock"

// lockDir takes the directory's exclusive lock (flock), held until Close.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600) //nolint:gosec // G304: the trail's own lock file.
	if err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close() // not locked: nothing to release
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("audit trail %s is in use by another process (a daemon or ceremony, or another appliance configured with the same audit.dir)", dir)
		}
		return nil, fmt.Errorf("audit trail: lock %s: %w", dir, err)
	}
	return f, nil
}
