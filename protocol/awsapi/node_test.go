package awsapi

import (
	"bufio"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"payhsm/ops/opstest"
	"payhsm/protocol/awsapi/sigv4"
)

// TestNodeHeader: with SetNode every answer (success or error, through
// net/http or the fast path) names the node; without it none does.
func TestNodeHeader(t *testing.T) {
	t.Parallel()
	verifier := &sigv4.Verifier{Creds: sigv4.StaticCredentials(map[string]string{"AKIDNODE": "node-secret"}),
		Region: "us-east-1", Service: "payment-cryptography"}
	svc := opstest.New(t)
	with, without := New(svc, verifier, zap.NewNop()), New(svc, verifier, zap.NewNop())
	with.SetNode("node-b")
	without.SetNode("")
	for _, tc := range []struct {
		srv  *Server
		want string
	}{{with, "node-b"}, {without, ""}} {
		w := httptest.NewRecorder()
		tc.srv.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8080/healthz", nil))
		if got := w.Header().Get("x-payhsm-node"); got != tc.want || w.Code != http.StatusNotFound {
			t.Errorf("net/http answer %d: x-payhsm-node %q, want %q", w.Code, got, tc.want)
		}
	}
	// The fast path writes the handler's header fields itself.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fast := NewHTTPServer(&http.Server{Handler: with, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)})
	go func() { _ = fast.Serve(ln) }()
	t.Cleanup(func() { _ = fast.Close() })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-Amz-Target: "+controlTargetPrefix+"ListKeys\r\n\r\n{}"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if got := resp.Header.Get("X-Payhsm-Node"); got != "node-b" || !strings.HasPrefix(resp.Status, "403") {
		t.Errorf("fast path answer %s: x-payhsm-node %q", resp.Status, got)
	}
}
