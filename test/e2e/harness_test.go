// Package e2e drives the real payhsm binary: a real SoftHSM2 token through
// PKCS#11, a real Pebble store on disk, real TCP and HTTP, and the real AWS
// SDK for Go v2 as the client.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	pc "github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
)

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "payhsm-e2e-bin")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "payhsm")
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	cmd := exec.Command("go", "build", "-o", binPath, "./cmd/payhsm")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build payhsm:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintln(os.Stderr, "remove the test binary:", err)
	}
	os.Exit(code)
}

// logBuffer collects the daemon's log output safely.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// daemon is a running payhsm serve --dev.
type daemon struct {
	t        *testing.T
	dir      string
	cmd      *exec.Cmd
	logs     *logBuffer
	httpURL  string
	hostAddr string
	opsURL   string // the ops listener (/healthz, /readyz, /metrics, /version)
	keyID    string
	secret   string
	exited   chan error
}

// startDaemon starts payhsm serve --dev on dir (every listener on a port of
// its own) and waits for "payhsm ready"; extra are further flags.
func startDaemon(t *testing.T, dir string, extra ...string) *daemon {
	t.Helper()
	d := startDaemonArgs(t, append([]string{"serve", "--dev", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--host-addr", "127.0.0.1:0",
		"--ops-addr", "127.0.0.1:0"}, extra...)...)
	d.dir = dir
	d.keyID, d.secret = readCreds(t, filepath.Join(dir, "credentials"))
	return d
}

// startDaemonArgs starts payhsm with args and waits for "payhsm ready".
func startDaemonArgs(t *testing.T, args ...string) *daemon {
	t.Helper()
	return startDaemonCmd(t, exec.Command(binPath, args...))
}

// startDaemonCmd starts cmd (payhsm serve, possibly through a shell) and
// waits for "payhsm ready".
func startDaemonCmd(t *testing.T, cmd *exec.Cmd) *daemon {
	t.Helper()
	return startDaemonHook(t, cmd, nil)
}

// startDaemonHook is startDaemonCmd calling hook (when not nil) with each
// JSON log line of the daemon, from the goroutine that reads them, until
// the daemon exits.
func startDaemonHook(t *testing.T, cmd *exec.Cmd, hook func(map[string]any)) *daemon {
	t.Helper()
	logs := &logBuffer{}
	pr, pw := io.Pipe()
	cmd.Stdout = logs
	cmd.Stderr = io.MultiWriter(logs, pw)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start payhsm: %v", err)
	}
	d := &daemon{t: t, cmd: cmd, logs: logs, exited: make(chan error, 1)}
	go func() {
		err := cmd.Wait()
		_ = pw.Close() // an io.PipeWriter's Close always returns nil
		d.exited <- err
	}()
	ready := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			if hook != nil {
				hook(m)
			}
			if m["msg"] == "payhsm ready" {
				ready <- m
			}
		}
		// Drain the rest of the log; the pipe ends (nil error) when the
		// daemon exits.
		_, _ = io.Copy(io.Discard, pr)
	}()
	select {
	case m := <-ready:
		d.httpURL = m["http"].(string)
		d.hostAddr = m["host"].(string)
		d.opsURL, _ = m["ops"].(string) // absent when the default ops address was taken
	case err := <-d.exited:
		t.Fatalf("payhsm exited before ready: %v\n%s", err, logs)
	case <-time.After(60 * time.Second):
		if err := cmd.Process.Kill(); err != nil {
			t.Errorf("kill payhsm: %v", err)
		}
		t.Fatalf("payhsm not ready within 60s\n%s", logs)
	}
	t.Cleanup(func() { d.stop() })
	return d
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop() {
	if d.cmd.ProcessState != nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		if err != nil {
			d.t.Errorf("payhsm exited with %v on SIGTERM\n%s", err, d.logs)
		}
	case <-time.After(30 * time.Second):
		if err := d.cmd.Process.Kill(); err != nil {
			d.t.Errorf("kill payhsm: %v", err)
		}
		d.t.Errorf("payhsm did not stop within 30s of SIGTERM")
	}
}

func readCreds(t *testing.T, path string) (string, string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("credentials: %v", err)
	}
	var id, secret string
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			id = strings.TrimSpace(v)
		case "aws_secret_access_key":
			secret = strings.TrimSpace(v)
		}
	}
	if id == "" || secret == "" {
		t.Fatalf("credentials file %s is incomplete", path)
	}
	return id, secret
}

// client is an AWS SDK control-plane client pointed at the daemon.
func (d *daemon) client() *pc.Client {
	return pc.New(pc.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(d.httpURL),
		Credentials:  credentials.NewStaticCredentialsProvider(d.keyID, d.secret, ""),
		Retryer:      clientRaceRetryer(),
	})
}

// clientRaceRetryer makes one attempt per call, and a second only when the
// first failed with the Go SDK's own connection race: smithy-go closes a
// request's body as soon as the response headers arrive
// (transport/http/client.go), while net/http's write loop may still be
// reading that body (its check for bytes beyond Content-Length), fails,
// and closes the connection under the response body being read ("failed
// to decode response body, read tcp ...: use of closed network
// connection", StatusCode 200). A server that answers on loopback within
// microseconds makes it show; the SDK's default retryer retries exactly
// this error (aws/retry RetryableConnectionError, aws-sdk-go-v2 #2737), so
// production clients see no failure. Every other error is the test's.
func clientRaceRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 2
		o.RateLimiter = ratelimit.None
		o.Retryables = []retry.IsErrorRetryable{retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
			if strings.Contains(err.Error(), "use of closed network connection") {
				return aws.TrueTernary
			}
			return aws.FalseTernary
		})}
	})
}

// rawCall sends a SigV4-signed control-plane request with an arbitrary body.
func (d *daemon) rawCall(t testing.TB, target string, body []byte, mutate func(*http.Request)) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, d.httpURL+"/", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	if target != "" {
		req.Header.Set("X-Amz-Target", target)
	}
	sum := sha256Hex(body)
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: d.keyID, SecretAccessKey: d.secret},
		req, sum, "payment-cryptography", "us-east-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	rb, err := io.ReadAll(resp.Body)
	check(t, err)
	check(t, resp.Body.Close())
	var m map[string]any
	_ = json.Unmarshal(rb, &m)
	return resp.StatusCode, m, resp.Header
}

// dataCall sends a SigV4-signed data-plane (restJson1) request: POST path
// with body marshalled as JSON. Labels in path must already be escaped (use
// url.PathEscape for a key ARN or alias). It returns the status, the decoded
// body and the X-Amzn-ErrorType header.
func (d *daemon) dataCall(t testing.TB, path string, body any) (int, map[string]any, string) {
	t.Helper()
	status, m, typ, err := d.dataDo(path, body)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return status, m, typ
}

// dataDo is dataCall returning transport errors instead of failing the test
// (for load goroutines that may see the daemon die).
func (d *daemon) dataDo(path string, body any) (int, map[string]any, string, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, nil, "", err
	}
	req, _ := http.NewRequest(http.MethodPost, d.httpURL+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	err = v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: d.keyID, SecretAccessKey: d.secret},
		req, sha256Hex(b), "payment-cryptography", "us-east-1", time.Now())
	if err != nil {
		return 0, nil, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	rb, err := io.ReadAll(resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, nil, "", err
	}
	var m map[string]any
	_ = json.Unmarshal(rb, &m)
	return resp.StatusCode, m, resp.Header.Get("X-Amzn-ErrorType"), nil
}
