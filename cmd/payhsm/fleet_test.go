package main

import (
	"strings"
	"testing"
	"time"

	"payhsm/daemon"
)

// TestFormatFleet: a node with a heartbeat shows its state, age, addresses
// and the versions it holds; one with records but no heartbeat is down.
func TestFormatFleet(t *testing.T) {
	out := formatFleet([]daemon.NodeStatus{
		{Node: "hsm-1", Age: 1500 * time.Millisecond, Profiles: []string{"default"}, Heartbeat: &daemon.Heartbeat{Node: "hsm-1", State: "serving",
			HTTP: "http://10.0.0.1:8080", Host: "10.0.0.1:1500", Version: "1.4.0",
			Profiles: map[string][]int{"default": {1, 2}, "lmk01": {1}}, KCVs: map[string]string{"default": "0A1B2C", "lmk01": "3D4E5F"}}},
		{Node: "hsm-2", Profiles: []string{"default"}},
	})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	for _, want := range []string{"hsm-1", "serving", "1.5s ago", "http://10.0.0.1:8080", "10.0.0.1:1500", "1.4.0", "default v1,v2 KCV 0A1B2C; lmk01 v1 KCV 3D4E5F"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("node line lacks %q: %s", want, lines[1])
		}
	}
	if f := strings.Fields(lines[2]); len(f) < 3 || f[0] != "hsm-2" || f[1] != "down" || f[2] != "none" || !strings.Contains(lines[2], "default (stored)") {
		t.Errorf("down node: %s", lines[2])
	}
}
