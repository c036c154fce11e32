//go:build payhsm_e2e_capture

package daemon

import (
	"encoding/json"
	"os"
	"sync"

	"go.uber.org/zap"
)

// captureEnv names the file the test build appends received replication
// snapshots to (one JSON object a line: {"peer": region, "body": snapshot}).
const captureEnv = "PAYHSM_E2E_REPLICATION_CAPTURE"

// replicationCapture, in a binary built with the payhsm_e2e_capture tag
// (test/e2e builds one for TestReplicationWire), records every replication
// snapshot this site receives, as its endpoint decoded it, to the file
// $PAYHSM_E2E_REPLICATION_CAPTURE. Release binaries are built without the
// tag and have no such hook.
func replicationCapture(log *zap.Logger) func(peer string, body []byte) {
	path := os.Getenv(captureEnv)
	if path == "" {
		return nil
	}
	log.Warn("TEST BUILD: received replication snapshots are recorded", zap.String("file", path))
	var mu sync.Mutex
	return func(peer string, body []byte) {
		line, err := json.Marshal(struct {
			Peer string          `json:"peer"`
			Body json.RawMessage `json:"body"`
		}{peer, body})
		if err != nil {
			log.Error("capture a replication snapshot", zap.Error(err))
			return
		}
		mu.Lock()
		defer mu.Unlock()
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600) //nolint:gosec // G304: the test names the file; test builds only

		if err != nil {
			log.Error("capture a replication snapshot", zap.Error(err))
			return
		}
		_, werr := f.Write(append(line, '\n'))
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			log.Error("capture a replication snapshot", zap.Error(werr))
		}
	}
}
