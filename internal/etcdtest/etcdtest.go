// Package etcdtest runs real etcd clusters for tests: member processes of
// the etcd binary on loopback, on free ports, with their data in the test's
// temporary directory, which a test can SIGKILL and restart one member at a
// time. Only tests import it.
//
// The binary is $PAYHSM_ETCD when set, else the one `make etcd` builds from
// the etcd Go module into .tools/etcd-VERSION/etcd at the module root, else
// etcd on the PATH. When there is none, Start skips the test with a message
// saying how to get it, except under CI (CI=true), where it fails the test:
// CI must run the etcd tests, never skip them silently.
package etcdtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvBinary names the environment variable that points at an etcd binary.
const EnvBinary = "PAYHSM_ETCD"

// Binary finds the etcd binary (see the package comment); "" when there is
// none.
func Binary() string {
	if p := os.Getenv(EnvBinary); p != "" {
		return p
	}
	if root := moduleRoot(); root != "" {
		found, _ := filepath.Glob(filepath.Join(root, ".tools", "etcd-*", "etcd"))
		slices.Sort(found) // the highest version last, for versions of equal length
		for i := len(found) - 1; i >= 0; i-- {
			if st, err := os.Stat(found[i]); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
				return found[i]
			}
		}
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	return ""
}

// moduleRoot is the nearest directory upwards holding payhsm's go.mod.
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod")) //nolint:gosec // the test's own working directory and its parents
		if err == nil && bytes.HasPrefix(b, []byte("module payhsm\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Need returns the etcd binary, or skips the test (fails it under CI) when
// there is none.
func Need(t testing.TB) string {
	t.Helper()
	bin := Binary()
	if bin != "" {
		return bin
	}
	msg := "no etcd binary: run `make etcd` (builds it into .tools/), or set " + EnvBinary + " to one"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: the etcd tests must run)")
	}
	t.Skip(msg)
	return ""
}

// Member is one etcd process.
type Member struct {
	Name      string
	ClientURL string // http://127.0.0.1:port
	PeerURL   string
	dataDir   string
	logPath   string
	cmd       *exec.Cmd
	exited    chan struct{}
}

// Cluster is a running etcd cluster.
type Cluster struct {
	t       testing.TB
	bin     string
	dir     string
	token   string
	initial string   // --initial-cluster
	args    []string // Options.Args, for restarts too
	mu      sync.Mutex
	members []*Member
}

// Options tunes Start; the zero value is a 3-member cluster.
type Options struct {
	Members int      // default 3
	Args    []string // extra flags for every member
}

// Start starts a cluster of o.Members members (default 3) and waits until
// every member reports itself healthy. The cluster is stopped when the
// test ends; its member logs are printed if the test failed.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	bin := Need(t)
	n := o.Members
	if n <= 0 {
		n = 3
	}
	c := &Cluster{t: t, bin: bin, dir: t.TempDir(), token: fmt.Sprintf("payhsm-test-%d-%d", os.Getpid(), time.Now().UnixNano())}
	ports := freePorts(t, 2*n)
	var initial []string
	for i := range n {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
		}
		m.dataDir = filepath.Join(c.dir, m.Name)
		m.logPath = filepath.Join(c.dir, m.Name+".log")
		c.members = append(c.members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	c.initial = strings.Join(initial, ",")
	c.args = o.Args
	t.Cleanup(c.stopAll)
	for _, m := range c.members {
		c.start(m, o.Args)
	}
	for i := range c.members {
		c.WaitHealthy(i, 30*time.Second)
	}
	return c
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("etcdtest: free port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// start starts m's process (a new member, or a restart on its data).
func (c *Cluster) start(m *Member, extra []string) {
	c.t.Helper()
	state := "new"
	if _, err := os.Stat(m.dataDir); err == nil {
		state = "existing"
	}
	args := []string{
		"--name", m.Name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.ClientURL,
		"--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", m.PeerURL,
		"--initial-advertise-peer-urls", m.PeerURL,
		"--initial-cluster", c.initial,
		"--initial-cluster-state", state,
		"--initial-cluster-token", c.token,
		// Loopback: a short heartbeat and election timeout make a new
		// leader take well under a second after a member is killed.
		"--heartbeat-interval", "50",
		"--election-timeout", "500",
		"--log-level", "warn",
		"--log-outputs", m.logPath,
	}
	args = append(args, extra...)
	cmd := exec.Command(c.bin, args...) //nolint:gosec // the etcd binary the test chose, with flags built here
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("etcdtest: start %s: %v", m.Name, err)
	}
	m.cmd = cmd
	m.exited = make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(m.exited)
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Member returns member i.
func (c *Cluster) Member(i int) *Member { return c.members[i] }

// Kill SIGKILLs member i and waits for it to exit.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[i]
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		c.t.Fatalf("etcdtest: %s did not exit after SIGKILL", m.Name)
	}
	m.cmd = nil
}

// Restart starts member i again on its data (after Kill), with the
// Options.Args it started with, and waits until it is healthy.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.mu.Lock()
	m := c.members[i]
	if m.cmd != nil {
		c.mu.Unlock()
		c.t.Fatalf("etcdtest: %s is running", m.Name)
	}
	c.start(m, c.args)
	c.mu.Unlock()
	c.WaitHealthy(i, 30*time.Second)
}

// WaitHealthy waits until member i answers /health with "true" (it has a
// leader and can serve a linearizable read).
func (c *Cluster) WaitHealthy(i int, timeout time.Duration) {
	c.t.Helper()
	m := c.members[i]
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-m.exited:
			c.t.Fatalf("etcdtest: %s exited while starting:\n%s", m.Name, tail(m.logPath))
		default:
		}
		resp, err := client.Get(m.ClientURL + "/health")
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(b, []byte(`"health":"true"`)) {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("etcdtest: %s not healthy after %v (last: %s):\n%s", m.Name, timeout, last, tail(m.logPath))
}

// Leader returns the index of the member that is the Raft leader now, as
// the running members see it (-1 when none answers with one).
func (c *Cluster) Leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	client := &http.Client{Timeout: 2 * time.Second}
	ids := map[string]int{}
	leader := ""
	for i, m := range c.members {
		if m.cmd == nil {
			continue
		}
		resp, err := client.Post(m.ClientURL+"/v3/maintenance/status", "application/json", strings.NewReader("{}"))
		if err != nil {
			continue
		}
		var st struct {
			Header struct {
				MemberID string `json:"member_id"`
			} `json:"header"`
			Leader string `json:"leader"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&st)
		_ = resp.Body.Close()
		if err != nil {
			continue
		}
		ids[st.Header.MemberID] = i
		if st.Leader != "" && st.Leader != "0" {
			leader = st.Leader
		}
	}
	if i, ok := ids[leader]; ok {
		return i
	}
	return -1
}

// stopAll kills every member; when the test failed it logs their logs' ends.
func (c *Cluster) stopAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		if m.cmd != nil {
			_ = m.cmd.Process.Signal(syscall.SIGKILL)
			<-m.exited
			m.cmd = nil
		}
	}
	if c.t.Failed() {
		for _, m := range c.members {
			c.t.Logf("etcdtest: log of %s:\n%s", m.Name, tail(m.logPath))
		}
	}
}

// tail is the end of a log file.
func tail(path string) string {
	b, err := os.ReadFile(path) //nolint:gosec // a log file this package created in the test's temporary directory
	if err != nil {
		return "(" + err.Error() + ")"
	}
	const max = 4 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
