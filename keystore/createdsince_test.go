package keystore

import (
	"bytes"
	"slices"
	"testing"
	"time"
)

// TestKeysCreatedSince: the keys created at or after a time whose records
// name their creator are found, others are not; a record altered to state
// another creation time is left out, as is one whose check fails.
func TestKeysCreatedSince(t *testing.T) {
	t.Parallel()
	s := openTest(t, nil, t.TempDir())
	t0 := time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC)
	mk := func(n int, created time.Duration, by string) {
		k := testKey(testID(n))
		k.Created, k.CreatedBy = t0.Add(created), by
		if err := s.CreateKey(k, nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	mk(1, -time.Second, "P S r-1")  // before
	mk(2, 0, "P S r-2")             // at
	mk(3, time.Second, "P S r-3")   // after
	mk(4, time.Second, "")          // after, no creator
	mk(5, 2*time.Second, "P S r-5") // after, altered below
	mk(6, 3*time.Second, "P S r-6") // after, altered below
	ids := func() []string {
		keys, err := s.KeysCreatedSince(t0)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, k := range keys {
			out = append(out, k.ID)
		}
		return out
	}
	if got, want := ids(), []string{testID(2), testID(3), testID(5), testID(6)}; !slices.Equal(got, want) {
		t.Fatalf("created since: %v, want %v", got, want)
	}
	// Key 5's bytes now say it was made before t0: left out before its check
	// (which would fail); key 6's creator is altered: its check fails.
	k5 := keyKey(testID(5))
	rawSet(t, s, k5, bytes.Replace(rawGet(t, s, k5), []byte(fmtTime(t0.Add(2*time.Second))), []byte(fmtTime(t0.Add(-time.Hour))), 1))
	k6 := keyKey(testID(6))
	rawSet(t, s, k6, bytes.Replace(rawGet(t, s, k6), []byte("r-6"), []byte("r-7"), 1))
	if got, want := ids(), []string{testID(2), testID(3)}; !slices.Equal(got, want) {
		t.Fatalf("after tampering: %v, want %v", got, want)
	}
	if got, ok := rawCreated([]byte(`{"created":"2026-12-06T02:00:00Z"}`)); !ok || !got.Equal(t0) {
		t.Errorf("rawCreated %v %v", got, ok)
	}
	for _, v := range []string{`{}`, `{"created":"x"}`, `{"created":"2026`} {
		if _, ok := rawCreated([]byte(v)); ok {
			t.Errorf("rawCreated(%s) ok", v)
		}
	}
}
