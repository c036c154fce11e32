package ceremony

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// Audit is the append-only ceremony log: one JSON line per step (who, what,
// check values, outcome, time), synced to disk before the step is reported
// done. It never holds key material.
type Audit struct {
	f *os.File
}

// AuditEntry is one ceremony step.
type AuditEntry struct {
	Time       time.Time         `json:"time"`
	Operation  string            `json:"operation"`
	Custodians []string          `json:"custodians,omitempty"`
	Profile    string            `json:"profile,omitempty"`
	KCVs       map[string]string `json:"kcvs,omitempty"`
	Outcome    string            `json:"outcome"`
	Detail     string            `json:"detail,omitempty"`
}

// OpenAudit opens (creating, mode 0600) the audit log at path for appending.
func OpenAudit(path string) (*Audit, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return &Audit{f: f}, nil
}

// Record appends e and syncs it.
func (a *Audit) Record(e AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := a.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return a.f.Sync()
}

// Close closes the log.
func (a *Audit) Close() error { return a.f.Close() }
