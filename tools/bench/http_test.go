package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"go.uber.org/zap"

	"payhsm/ops/opstest"
	"payhsm/protocol/awsapi"
	"payhsm/protocol/awsapi/sigv4"
)

const (
	testKeyID  = "AKIAPAYHSMBENCH00001"
	testSecret = "bench-secret/0123456789abcdefghijklmnopqrstu"
	testRegion = "us-east-1"
)

// TestSignerMatchesSDK signs the same requests with the bench's signer and
// with the AWS SDK for Go v2's signer: the Authorization headers must be
// identical, and payhsm's verifier must accept the bench's request as read
// back by net/http.
func TestSignerMatchesSDK(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	for _, r := range []*httpRequest{
		{path: "/pindata/translate", contentType: dataContentType, body: []byte(`{"EncryptedPinBlock":"230B4C43B8BA2C5C"}`)},
		{path: "/mac/verify", contentType: dataContentType, body: []byte(`{}`)},
		{path: "/", target: ctlTargetPrefix + "CreateKey", contentType: ctlContentType, body: []byte(`{"Exportable":true}`)},
	} {
		s := newSigner(testKeyID, testSecret, testRegion, service, "127.0.0.1:18081")
		raw := s.appendSigned(nil, r, now)
		// A second request in the same second reuses the cached date and key.
		raw2 := s.appendSigned(nil, r, now.Add(300*time.Millisecond))
		if !bytes.Equal(raw, raw2) {
			t.Errorf("%s: two signatures in the same second differ", r.path)
		}
		got, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			t.Fatalf("%s: %v\n%s", r.path, err, raw)
		}

		want, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:18081"+r.path, bytes.NewReader(r.body))
		want.Header.Set("Content-Type", r.contentType)
		if r.target != "" {
			want.Header.Set("X-Amz-Target", r.target)
		}
		sum := sha256.Sum256(r.body)
		if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret},
			want, hex.EncodeToString(sum[:]), service, testRegion, now); err != nil {
			t.Fatal(err)
		}
		if g, w := got.Header.Get("Authorization"), want.Header.Get("Authorization"); g != w {
			t.Errorf("%s:\n got %s\nwant %s", r.path, g, w)
		}

		body := make([]byte, got.ContentLength)
		if _, err := got.Body.Read(body); err != nil && got.ContentLength > 0 && !bytes.Equal(body, r.body) {
			t.Fatal(err)
		}
		got.RequestURI = r.path
		v := &sigv4.Verifier{Creds: sigv4.StaticCredentials{testKeyID: testSecret}, Region: testRegion, Service: service,
			Now: func() time.Time { return now }}
		if _, err := v.Verify(got, r.body); err != nil {
			t.Errorf("%s: verifier: %v", r.path, err)
		}
		if _, err := v.Verify(got, append([]byte(" "), r.body...)); err == nil {
			t.Errorf("%s: verifier accepts another body", r.path)
		}
	}
}

// TestSignerDayChange: the signing key follows the UTC day of the request.
func TestSignerDayChange(t *testing.T) {
	t.Parallel()
	r := &httpRequest{path: "/mac/verify", contentType: dataContentType, body: []byte(`{}`)}
	s := newSigner(testKeyID, testSecret, testRegion, service, "h")
	day1 := time.Date(2026, 3, 14, 23, 59, 59, 0, time.UTC)
	s.appendSigned(nil, r, day1)
	k1 := s.day
	got := s.appendSigned(nil, r, day1.Add(time.Second))
	if s.day == k1 || !bytes.Contains(got, []byte("/20260315/us-east-1/")) {
		t.Errorf("day after midnight: %s\n%s", s.day, got)
	}
	if fresh := newSigner(testKeyID, testSecret, testRegion, service, "h").appendSigned(nil, r, day1.Add(time.Second)); !bytes.Equal(fresh, got) {
		t.Errorf("a signer that crossed midnight signs differently from a fresh one")
	}
}

func TestSignerAllocations(t *testing.T) {
	s := newSigner(testKeyID, testSecret, testRegion, service, "127.0.0.1:18081")
	r := &httpRequest{path: "/pindata/translate", contentType: dataContentType, body: bytes.Repeat([]byte("x"), 400)}
	now := time.Now()
	buf := s.appendSigned(nil, r, now)
	if n := testing.AllocsPerRun(100, func() { buf = s.appendSigned(buf[:0], r, now) }); n != 0 {
		t.Errorf("appendSigned allocates %.1f times per request", n)
	}
}

func TestReadHTTPResponse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, errPart string
		status      int
		body        string
		errType     string
	}{
		{in: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}", status: 200, body: "{}"},
		{in: "HTTP/1.1 400 Bad Request\r\nX-Amzn-Errortype: ValidationException\r\ncontent-length:5\r\n\r\nhello", status: 400, body: "hello", errType: "ValidationException"},
		{in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", errPart: "chunked"},
		{in: "HTTP/1.1 200 OK\r\n\r\n", errPart: "without Content-Length"},
		{in: "HTTP/1.0 200 OK\r\n\r\n", errPart: "not an HTTP/1.1"},
		{in: "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}", errPart: "EOF"},
		{in: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", errPart: "Content-Length"},
	} {
		for _, keep := range []bool{true, false} {
			var r httpResponse
			err := readHTTPResponse(bufio.NewReader(strings.NewReader(tc.in)), &r, keep)
			if tc.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errPart) {
					t.Errorf("%q: error %v, want %q", tc.in, err, tc.errPart)
				}
				continue
			}
			if err != nil || r.status != tc.status {
				t.Errorf("%q: %v %d", tc.in, err, r.status)
			}
			if keep && (string(r.body) != tc.body || r.errorType != tc.errType) {
				t.Errorf("%q: body %q type %q", tc.in, r.body, r.errorType)
			}
		}
	}
}

// TestHTTPComplete: a response is complete once its header and its
// Content-Length bytes of body are buffered, and not one byte before; a
// header without a valid length is complete once readResponse can reject
// it.
func TestHTTPComplete(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ first, next string }{
		{"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"Mac\":\"0A1B2C\"}", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"},
		{"HTTP/1.1 400 Bad Request\r\ncontent-length:0\r\nX-Amzn-ErrorType: ValidationException\r\n\r\n", "HTTP/1.1 200 OK\r\n"},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "2\r\n{}\r\n0\r\n\r\n"},
		{"HTTP/1.1 200 OK\r\nContent-Length: x\r\n", "\r\n{}"}, // rejected at this line
	} {
		stream := tc.first + tc.next
		for n := 0; n <= len(stream); n++ {
			br := bufio.NewReaderSize(strings.NewReader(stream[:n]), 4096)
			if n > 0 {
				_, _ = br.Peek(n) // buffer the prefix
			}
			if got, want := (&httpProto{}).complete(br), n >= len(tc.first); got != want {
				t.Errorf("%q, %d bytes buffered: complete %v, want %v", tc.first, n, got, want)
			}
		}
	}
}

// FuzzHTTPComplete checks complete against readHTTPResponse, the parser
// that follows it: what complete calls whole, the parser reads without
// running out of bytes; and a response the parser reads whole from a
// stream is complete at its last byte and not one byte before.
func FuzzHTTPComplete(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1"))
	f.Add([]byte("HTTP/1.1 400 Bad\r\nX-Amzn-ErrorType: V\r\ncontent-length:0\n\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 3\r\n\r\nabc"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4000 {
			return
		}
		read := func(b []byte) (int, error) {
			br := bufio.NewReaderSize(bytes.NewReader(b), 4096)
			var r httpResponse
			if err := readHTTPResponse(br, &r, false); err != nil {
				return 0, err
			}
			return len(b) - br.Buffered(), nil
		}
		buffered := func(b []byte) *bufio.Reader {
			br := bufio.NewReaderSize(bytes.NewReader(b), 4096)
			if len(b) > 0 {
				_, _ = br.Peek(len(b))
			}
			return br
		}
		p := &httpProto{}
		n, err := read(b)
		if p.complete(buffered(b)) && err != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
			t.Fatalf("%q complete, but the parser ran out: %v", b, err)
		}
		if err == nil && (!p.complete(buffered(b[:n])) || p.complete(buffered(b[:n-1]))) {
			t.Fatalf("%q: a response of %d bytes, complete not at its last byte", b, n)
		}
	})
}

func TestLoadCredentials(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(path, []byte("[other]\naws_access_key_id = X\naws_secret_access_key = Y\n\n[default]\naws_access_key_id = AKPH1\naws_secret_access_key = c2VjcmV0+/=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if id, sec, err := LoadCredentials(path, "default"); err != nil || id != "AKPH1" || sec != "c2VjcmV0+/=" {
		t.Errorf("default: %q %q %v", id, sec, err)
	}
	if id, _, err := LoadCredentials(path, "other"); err != nil || id != "X" {
		t.Errorf("other: %q %v", id, err)
	}
	if _, _, err := LoadCredentials(path, "missing"); err == nil {
		t.Error("missing profile accepted")
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "E")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "S")
	if id, sec, err := LoadCredentials("", ""); err != nil || id != "E" || sec != "S" {
		t.Errorf("environment: %q %q %v", id, sec, err)
	}
}

func TestParseHTTPURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, addr, host string
		tls, ok        bool
	}{
		{"http://127.0.0.1:18081", "127.0.0.1:18081", "127.0.0.1:18081", false, true},
		{"https://hsm.example:8443/", "hsm.example:8443", "hsm.example:8443", true, true},
		{"http://localhost", "localhost:80", "localhost", false, true},
		{"127.0.0.1:18081", "", "", false, false},
		{"http://h:1/api", "", "", false, false},
		{"ftp://h:1", "", "", false, false},
	} {
		addr, host, useTLS, err := parseHTTPURL(tc.in)
		if (err == nil) != tc.ok || addr != tc.addr || host != tc.host || useTLS != tc.tls {
			t.Errorf("%q: %q %q %v %v", tc.in, addr, host, useTLS, err)
		}
	}
}

// TestRunHTTP drives the real HTTP API (awsapi's server over opstest's
// service, the same SigV4 verifier as the daemon) with and without pipelining: a run
// without errors means every signed request was answered 200, in order.
func TestRunHTTP(t *testing.T) {
	t.Parallel()
	svc := opstest.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	v := &sigv4.Verifier{Creds: sigv4.StaticCredentials{testKeyID: testSecret}, Region: testRegion, Service: service}
	srv := awsapi.NewHTTPServer(&http.Server{Handler: awsapi.New(svc, v, zap.NewNop()), ReadHeaderTimeout: 10 * time.Second})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	base := Options{Conns: 3, Duration: 400 * time.Millisecond, Warmup: 50 * time.Millisecond,
		HTTP: HTTPTarget{URL: "http://" + ln.Addr().String(), AccessKeyID: testKeyID, Secret: testSecret, Region: testRegion}}
	ringErr := ringAvailable()
	for _, tc := range []struct {
		driver   string
		pipeline int
		rate     float64
		mix      map[string]int
	}{
		{DriverGoroutine, 1, 0, map[string]int{"CC": 2, "CY": 1, "M8": 1}},
		{DriverGoroutine, 4, 0, map[string]int{"CA": 1, "CW": 1, "M6": 1}},
		{DriverGoroutine, 2, 1000, map[string]int{"CC": 1}},
		{DriverIOUring, 1, 0, map[string]int{"CC": 2, "CY": 1, "M8": 1}},
		{DriverIOUring, 4, 0, map[string]int{"CA": 1, "CW": 1, "M6": 1}},
		{DriverEpoll, 1, 0, map[string]int{"CC": 2, "CY": 1, "M8": 1}},
		{DriverEpoll, 4, 0, map[string]int{"CA": 1, "CW": 1, "M6": 1}},
		{"", 2, 0, map[string]int{"CY": 1, "CK": 1}},
		{"", 2, 1000, map[string]int{"CC": 1}},
	} {
		if tc.driver == DriverIOUring && ringErr != nil {
			t.Logf("driver io_uring skipped: %v", ringErr)
			continue
		}
		o := base
		o.Driver, o.Pipeline, o.Rate, o.Mix = tc.driver, tc.pipeline, tc.rate, tc.mix
		r, err := Run(o)
		if err != nil {
			t.Fatalf("driver %q pipeline %d: %v", tc.driver, tc.pipeline, err)
		}
		if r.Total.Count == 0 || r.Total.Errors != 0 || len(r.PerCommand) != len(tc.mix) || r.Throughput <= 0 {
			t.Fatalf("driver %q pipeline %d: %+v", tc.driver, tc.pipeline, r)
		}
		if want := wantDriver(tc.driver, tc.rate, ringErr); r.Driver != want {
			t.Errorf("driver %q rate %.0f: ran %q, want %q", tc.driver, tc.rate, r.Driver, want)
		}
		var out bytes.Buffer
		if err := Print(&out, o, r); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "HTTP API http://") || (tc.mix["CC"] > 0 && !strings.Contains(out.String(), "TranslatePinData")) {
			t.Errorf("output:\n%s", out.String())
		}
	}

	// Wrong credentials: setup fails with the appliance's exception.
	o := base
	o.HTTP.Secret = "wrong"
	o.Mix = map[string]int{"CC": 1}
	if _, err := Run(o); err == nil || !strings.Contains(err.Error(), "InvalidSignatureException") {
		t.Errorf("wrong secret: %v", err)
	}
	// A host-only command has no HTTP operation.
	o = base
	o.Mix = map[string]int{"NC": 1}
	if _, err := Run(o); err == nil || !strings.Contains(err.Error(), "not in the benchmark set") {
		t.Errorf("NC over HTTP: %v", err)
	}
}

func TestStatCPU(t *testing.T) {
	t.Parallel()
	// proc(5): pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime ...
	line := []byte("4242 (pay hsm) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1234 567 0 0 20 0 9 0 100 0 0\n")
	if d, err := statCPU(line); err != nil || d != (1234+567)*clockTick {
		t.Errorf("statCPU = %v, %v", d, err)
	}
	if _, err := statCPU([]byte("4242 (x) S 1")); err == nil {
		t.Error("short line accepted")
	}
	if s, err := cpuTimes(os.Getpid()); err != nil || s.self <= 0 {
		t.Errorf("cpuTimes(self) = %+v, %v", s, err)
	}
}
