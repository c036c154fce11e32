package fault

import (
	"errors"
	"fmt"
	"testing"
)

// TestRecordIntegrityKeepsItsMessage: a record-integrity failure is Internal,
// yet its fixed message reaches the client however many layers wrap it; any
// other Internal fault still shows nothing; an Unavailable cause stays
// Unavailable through Internalf, with its message.
func TestRecordIntegrityKeepsItsMessage(t *testing.T) {
	t.Parallel()
	sentinel := &Error{Kind: Internal, Violation: ViolationRecordIntegrity, Message: RecordIntegrityMessage}
	store := fmt.Errorf("keystore: key k1 record failed its integrity check: tag mismatch: %w", sentinel)
	down := Wrap(Unavailable, "key store unavailable: no quorum", errors.New("etcd: context deadline exceeded"))
	for _, tc := range []struct {
		name      string
		err       error
		kind      Kind
		message   string
		integrity bool
	}{
		{"constructor", RecordIntegrity(errors.New("detail")), Internal, RecordIntegrityMessage, true},
		{"Internalf over a store error", Internalf("read key", store), Internal, RecordIntegrityMessage, true},
		{"Internalf twice", Internalf("open", Internalf("read key", store)), Internal, RecordIntegrityMessage, true},
		{"wrapped by fmt", fmt.Errorf("ops: %w", Internalf("read key", store)), Internal, RecordIntegrityMessage, true},
		{"plain Internal", Internalf("read key", errors.New("disk on fire")), Internal, "An internal error occurred", false},
		{"validation", Validationf("bad input"), Validation, "bad input", false},
		{"Internalf over an unavailable store", Internalf("read key", fmt.Errorf("keystore: get: %w", down)), Unavailable, down.Message, false},
		{"Internalf twice over an unavailable store", Internalf("open", Internalf("read key", down)), Unavailable, down.Message, false},
	} {
		f := As(tc.err)
		if f.Kind != tc.kind || ClientMessage(tc.err) != tc.message || (f.Violation == ViolationRecordIntegrity) != tc.integrity {
			t.Errorf("%s: kind %s, message %q, violation %q", tc.name, f.Kind, ClientMessage(tc.err), f.Violation)
		}
	}
	// The cause (which record, why) is kept for the log.
	if got := Internalf("read key", store).Error(); got != RecordIntegrityMessage+": read key: "+store.Error() {
		t.Errorf("Error() = %q", got)
	}
}
