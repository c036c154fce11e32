package hostcmd

import (
	"path/filepath"
	"strings"
	"testing"

	"payhsm/keyspec"
	"payhsm/protocol/hostcmd/transcript"
)

// TestTranscripts replays every testdata/*.txt transcript (format in package
// transcript) against a server on a real operations layer; test/e2e replays
// them against the real daemon.
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	ts := startServer(t, nil, Config{})
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c := ts.dial(t, nil)
			transcript.Replay(t, f, func(k transcript.Key) {
				if _, err := ts.svc.GetAlias(k.Alias); err != nil { // -count > 1 replays on the same server
					importKey(t, ts.svc, strings.TrimPrefix(k.Alias, "alias/"), k.Usage, keyspec.Algorithm(k.Algorithm), k.Mode, k.Hex)
				}
			}, c.call)
		})
	}
}
