package etcdtest

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestClusterKillRestart: a 3-member cluster starts healthy; with one member
// SIGKILLed the other two still have a leader (/health true); the killed
// member restarts on its data and is healthy again.
func TestClusterKillRestart(t *testing.T) {
	c := Start(t, Options{})
	if n := len(c.Endpoints()); n != 3 {
		t.Fatalf("%d endpoints", n)
	}
	leader := c.Leader()
	if leader < 0 {
		t.Fatal("no leader")
	}
	c.Kill(leader)
	if healthy(c.Member(leader).ClientURL) {
		t.Fatal("a killed member answers")
	}
	for i := range 3 {
		if i != leader {
			c.WaitHealthy(i, 10*time.Second) // a new leader among the other two
		}
	}
	if l := c.Leader(); l < 0 || l == leader {
		t.Fatalf("leader after the old one was killed: %d", l)
	}
	c.Restart(leader)
	if !healthy(c.Member(leader).ClientURL) {
		t.Fatal("the restarted member is not healthy")
	}
}

func healthy(url string) bool {
	client := &http.Client{Timeout: time.Second}
	resp, err := client.Get(url + "/health")
	if err != nil {
		return false
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return strings.Contains(string(b), `"health":"true"`)
}
