//go:build !payhsm_e2e_capture

package daemon

import "go.uber.org/zap"

// replicationCapture is the hook that records every replication snapshot
// this site receives, for the wire test (test/e2e, TestReplicationWire).
// A binary built without the payhsm_e2e_capture tag — every release — has
// none.
func replicationCapture(*zap.Logger) func(peer string, body []byte) { return nil }
