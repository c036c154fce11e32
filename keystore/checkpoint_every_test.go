package keystore

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestCheckpointEveryDefault: without JournalOptions.CheckpointEntries, a
// store on Pebble checkpoints every defaultCheckpointEntries entries, and
// one on an engine with transaction limits (etcd; here limitedEngine)
// every limitedCheckpointEntries, whose partial checkpoints each read every
// pending entry; an explicit CheckpointEntries wins on both.
func TestCheckpointEveryDefault(t *testing.T) {
	tests := []struct {
		name    string
		limited bool
		entries int
		want    int
	}{
		{"pebble", false, 0, defaultCheckpointEntries},
		{"limited", true, 0, limitedCheckpointEntries},
		{"pebble explicit", false, 7, 7},
		{"limited explicit", true, 7, 7},
	}
	if defaultCheckpointEntries == limitedCheckpointEntries {
		t.Fatal("the two defaults are equal: this test cannot tell them apart")
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			auth := newTestAuth()
			var s *Store
			if tc.limited {
				s, _ = openLimited(t, vfs.NewMem(), auth, 0)
			} else {
				var err error
				if s, err = Open("keystore", Options{FS: vfs.NewMem(), Authenticator: auth, Namespace: "default"}); err != nil {
					t.Fatal(err)
				}
			}
			defer closeT(t, s)
			if _, err := s.StartJournal(JournalOptions{Writer: testWriter, CheckpointEntries: tc.entries}); err != nil {
				t.Fatal(err)
			}
			s.fr.mu.Lock()
			got := s.fr.every
			s.fr.mu.Unlock()
			if got != tc.want {
				t.Errorf("checkpoint every %d entries, want %d", got, tc.want)
			}
		})
	}
}
