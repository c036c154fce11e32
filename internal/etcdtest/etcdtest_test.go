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
	c.Kill(1)
	if healthy(c.Member(1).ClientURL) {
		t.Fatal("a killed member answers")
	}
	for _, i := range []int{0, 2} {
		c.WaitHealthy(i, 10*time.Second)
	}
	c.Restart(1)
	if !healthy(c.Member(1).ClientURL) {
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
