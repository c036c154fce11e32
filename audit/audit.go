// Package audit owns payhsm's ceremony audit log: an append-only file of JSON
// lines, one per ceremony step (who, what, check values, outcome, time;
// never key material, PINs or passphrases), each written and synced to disk
// before the step goes on. The offline ceremonies and the daemon's admin
// socket (online ceremonies) write the same log through this one writer.
//
// A step whose record cannot be written does not go on: Record returns the
// error and the caller stops. After a failed write or sync the Log refuses
// every further record (the file's tail is then unknown: a torn line, or data
// the kernel dropped after a failed fsync), so a daemon must be restarted —
// and its operator look at the disk — before it runs another ceremony.
package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Outcome is how a step ended, or that it started.
type Outcome string

// Outcomes.
const (
	// Started is written before a long or destructive step begins, so that
	// the log shows it even if the process dies during it.
	Started Outcome = "started"
	OK      Outcome = "ok"
	// Refused: the step was not allowed (dual control, a check value that
	// differs, an appliance already initialized, …); nothing was changed.
	Refused Outcome = "refused"
	// Failed: the step was allowed but did not complete.
	Failed Outcome = "failed"
)

// Entry is one ceremony step. It never holds key material.
type Entry struct {
	Time       time.Time         `json:"time"`
	Operation  string            `json:"operation"`
	Custodians []string          `json:"custodians,omitempty"`
	Profile    string            `json:"profile,omitempty"`
	KCVs       map[string]string `json:"kcvs,omitempty"`
	Outcome    Outcome           `json:"outcome"`
	Detail     string            `json:"detail,omitempty"`
	// Online is true for steps the daemon ran for its admin socket.
	Online bool `json:"online,omitempty"`
}

// Log is an open audit log. It is safe for concurrent use.
type Log struct {
	mu   sync.Mutex
	f    *os.File
	path string
	err  error // the first failed write or sync; sticky
}

// Open opens the audit log at path for appending, creating it (mode 0600)
// when absent; a newly created file is made durable in its directory.
func Open(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600) //nolint:gosec // G304: the log is in the operator's data directory (DATA/ceremony-audit.log).
	created := err == nil
	if errors.Is(err, fs.ErrExist) {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0) //nolint:gosec // G304: the same operator-placed log, reopened to append.
	}
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	if created {
		if err := syncDir(filepath.Dir(path)); err != nil {
			return nil, errors.Join(fmt.Errorf("audit log: %w", err), f.Close())
		}
	}
	return &Log{f: f, path: path}, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir) //nolint:gosec // G304: the audit log's directory, to sync it.
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// Record appends e as one JSON line and syncs the file. It sets e.Time when
// zero. An error means the step must not go on.
func (l *Log) Record(e Entry) error {
	if e.Operation == "" || e.Outcome == "" {
		return errors.New("audit log: an entry needs an operation and an outcome")
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return fmt.Errorf("audit log %s is unusable after an earlier failure: %w", l.path, l.err)
	}
	if l.f == nil {
		return fmt.Errorf("audit log %s: closed", l.path)
	}
	if _, err := l.f.Write(append(b, '\n')); err != nil {
		l.err = err
		return fmt.Errorf("audit log %s: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		l.err = err
		return fmt.Errorf("audit log %s: %w", l.path, err)
	}
	return nil
}

// Close closes the log; later records fail.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
