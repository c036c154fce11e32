package awsapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"payhsm/ops/opstest"
	"payhsm/protocol/awsapi/sigv4"
)

type observedRequest struct{ op, kind, code string }

type requestRecorder struct {
	mu  sync.Mutex
	got []observedRequest
}

func (r *requestRecorder) ObserveRequest(op, kind, code string, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if took <= 0 {
		kind = "non-positive duration"
	}
	r.got = append(r.got, observedRequest{op, kind, code})
}

const (
	obsAccessKey = "AKIDOBSERVETEST"
	obsSecret    = "observe-test-secret"
)

// TestObserveAndLog: every request is told to the observer once and logged
// once, with the host port's fields; an unknown path (a load balancer's
// probe sent to the wrong port) keeps its AWS-shaped 404 and is logged as
// NotFound at info level, not as an internal error.
func TestObserveAndLog(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	verifier := &sigv4.Verifier{Creds: sigv4.StaticCredentials(map[string]string{obsAccessKey: obsSecret}),
		Region: "us-east-1", Service: "payment-cryptography"}
	srv := New(opstest.New(t), verifier, zap.New(core))
	rec := &requestRecorder{}
	srv.SetObserver(rec)

	signed := func(target, body string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8080/", strings.NewReader(body))
		r.Header.Set("Content-Type", controlContentType)
		r.Header.Set("X-Amz-Target", controlTargetPrefix+target)
		sum := sha256.Sum256([]byte(body))
		if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: obsAccessKey, SecretAccessKey: obsSecret},
			r, hex.EncodeToString(sum[:]), "payment-cryptography", "us-east-1", time.Now()); err != nil {
			t.Fatal(err)
		}
		return r
	}
	unsigned := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8080/", strings.NewReader("{}"))
	unsigned.Header.Set("X-Amz-Target", controlTargetPrefix+"ListKeys")
	tests := []struct {
		name   string
		req    *http.Request
		status int
		want   observedRequest
		level  zapcore.Level
		client string
	}{
		{"unknown path", httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8080/healthz", nil), http.StatusNotFound,
			observedRequest{"", "NotFound", "UnknownOperationException"}, zapcore.InfoLevel, ""},
		{"success", signed("ListAliases", "{}"), http.StatusOK, observedRequest{"ListAliases", "", ""}, zapcore.DebugLevel, obsAccessKey},
		{"not found", signed("GetKey", `{"KeyIdentifier":"alias/nothing-here"}`), http.StatusNotFound,
			observedRequest{"GetKey", "NotFound", "ResourceNotFoundException"}, zapcore.InfoLevel, obsAccessKey},
		{"unsigned", unsigned, http.StatusForbidden, observedRequest{"", "AccessDenied", "MissingAuthenticationTokenException"}, zapcore.InfoLevel, ""},
	}
	for _, tc := range tests {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, tc.req)
		if w.Code != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.name, w.Code, tc.status, w.Body)
		}
		if tc.want.code != "" && w.Header().Get("X-Amzn-ErrorType") != tc.want.code {
			t.Errorf("%s: X-Amzn-ErrorType %q, want %q", tc.name, w.Header().Get("X-Amzn-ErrorType"), tc.want.code)
		}
	}
	if len(rec.got) != len(tests) {
		t.Fatalf("observed %v", rec.got)
	}
	entries := logs.All()
	if len(entries) != len(tests) {
		t.Fatalf("%d log lines, want one per request: %v", len(entries), entries)
	}
	for i, tc := range tests {
		if rec.got[i] != tc.want {
			t.Errorf("%s: observed %+v, want %+v", tc.name, rec.got[i], tc.want)
		}
		e, f := entries[i], entries[i].ContextMap()
		if e.Level != tc.level {
			t.Errorf("%s: logged at %s, want %s", tc.name, e.Level, tc.level)
		}
		if id, _ := f["requestId"].(string); len(id) != 36 || f["status"] != int64(tc.status) || f["remote"] == nil {
			t.Errorf("%s: fields %v", tc.name, f)
		}
		if tc.client != "" && f["client"] != tc.client {
			t.Errorf("%s: client %v, want %s", tc.name, f["client"], tc.client)
		}
		if tc.want.code != "" && (f["code"] != tc.want.code || f["kind"] != tc.want.kind || f["reason"] == nil) {
			t.Errorf("%s: fields %v", tc.name, f)
		}
	}
	if ops := srv.Operations(); !slices.Contains(ops, "CreateKey") || !slices.Contains(ops, "EncryptData") || !slices.IsSorted(ops) {
		t.Errorf("Operations() = %v", ops)
	}
}
