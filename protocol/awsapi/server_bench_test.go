package awsapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"go.uber.org/zap"

	"payhsm/keyspec"
	"payhsm/ops/opstest"
	"payhsm/protocol/awsapi/sigv4"
)

const (
	benchKeyID  = "AKIAPAYHSMBENCH00001"
	benchSecret = "bench-secret/0123456789abcdefghijklmnopqrstu"
	benchRegion = "us-east-1"
	benchHost   = "127.0.0.1:18081"
)

// hotRequests returns the hot data-plane requests, signed once with the AWS
// SDK's signer and serialised as they travel (HTTP/1.1, keep-alive); the
// verifier accepts a replay within its clock-skew window, so each may be
// sent many times.
func hotRequests(tb testing.TB) (*Server, map[string][]byte) {
	tb.Helper()
	svc := opstest.New(tb)
	v := &sigv4.Verifier{Creds: sigv4.StaticCredentials{benchKeyID: benchSecret}, Region: benchRegion, Service: "payment-cryptography"}
	s := New(svc, v, zap.NewNop())
	pin := keyspec.ModesOfUse{Encrypt: true, Decrypt: true, Wrap: true, Unwrap: true}
	gv := keyspec.ModesOfUse{Generate: true, Verify: true}
	sym := func(u keyspec.KeyUsage, m keyspec.ModesOfUse) keyspec.Attributes {
		return keyspec.Attributes{Usage: u, Class: keyspec.Symmetric, Algorithm: keyspec.TDES2Key, Modes: m}
	}
	zpkA := opstest.Import(tb, svc, sym(keyspec.P0, pin), "0123456789ABCDEFFEDCBA9876543210")
	zpkB := opstest.Import(tb, svc, sym(keyspec.P0, pin), "89ABCDEF0123456776543210FEDCBA98")
	cvk := opstest.Import(tb, svc, sym(keyspec.C0, gv), "0123456789ABCDEFFEDCBA9876543210")
	mak := opstest.Import(tb, svc, sym(keyspec.M3, gv), "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
	iso0 := map[string]any{"IsoFormat0": map[string]any{"PrimaryAccountNumber": "5555555551234567"}}
	msg := "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
	gen := signed(tb, "/mac/generate", map[string]any{"KeyIdentifier": mak, "MessageData": msg, "GenerationAttributes": map[string]any{"Algorithm": "ISO9797_ALGORITHM3"}})
	status, body := serveOnce(tb, s, gen)
	var mac struct{ Mac string }
	if err := json.Unmarshal(body, &mac); status != 200 || err != nil {
		tb.Fatalf("GenerateMac: %d %s", status, body)
	}
	reqs := map[string][]byte{
		"TranslatePinData": signed(tb, "/pindata/translate", map[string]any{"IncomingKeyIdentifier": zpkA, "IncomingTranslationAttributes": iso0,
			"OutgoingKeyIdentifier": zpkB, "OutgoingTranslationAttributes": iso0, "EncryptedPinBlock": "230B4C43B8BA2C5C"}),
		"VerifyCardValidationData": signed(tb, "/cardvalidationdata/verify", map[string]any{"KeyIdentifier": cvk, "PrimaryAccountNumber": "4123456789012345",
			"VerificationAttributes": map[string]any{"CardVerificationValue1": map[string]any{"CardExpiryDate": "8701", "ServiceCode": "101"}}, "ValidationData": "561"}),
		"VerifyMac": signed(tb, "/mac/verify", map[string]any{"KeyIdentifier": mak, "MessageData": msg, "Mac": mac.Mac,
			"VerificationAttributes": map[string]any{"Algorithm": "ISO9797_ALGORITHM3"}}),
		"GenerateMac": gen,
	}
	for name, raw := range reqs {
		if status, body := serveOnce(tb, s, raw); status != 200 {
			tb.Fatalf("%s: %d %s", name, status, body)
		}
	}
	return s, reqs
}

// signed returns a data-plane request signed now, as raw HTTP/1.1.
func signed(tb testing.TB, path string, body any) []byte {
	tb.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		tb.Fatal(err)
	}
	r, _ := http.NewRequest(http.MethodPost, "http://"+benchHost+path, bytes.NewReader(b))
	r.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(b)
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: benchKeyID, SecretAccessKey: benchSecret},
		r, hex.EncodeToString(sum[:]), "payment-cryptography", benchRegion, time.Now()); err != nil {
		tb.Fatal(err)
	}
	var out bytes.Buffer
	if err := r.Write(&out); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes()
}

// discardWriter is a minimal http.ResponseWriter.
type discardWriter struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }
func (w *discardWriter) Write(p []byte) (int, error) { return w.body.Write(p) }

func serveOnce(tb testing.TB, s *Server, raw []byte) (int, []byte) {
	tb.Helper()
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		tb.Fatal(err)
	}
	r.RemoteAddr = "127.0.0.1:1"
	w := &discardWriter{h: http.Header{}, status: 200}
	s.ServeHTTP(w, r)
	return w.status, w.body.Bytes()
}

// BenchmarkHandler measures one hot data-plane request through the handler:
// the request as net/http parses it, SigV4 verification, decoding,
// validation, the operation on cached keys, and the response.
func BenchmarkHandler(b *testing.B) {
	s, reqs := hotRequests(b)
	for _, name := range []string{"TranslatePinData", "VerifyCardValidationData", "VerifyMac", "GenerateMac"} {
		raw := reqs[name]
		b.Run(name, func(b *testing.B) { benchServe(b, s, raw) })
	}
}

// BenchmarkLoopback drives net/http's server and the package's own
// HTTPServer (with its event loops, and with a goroutine per connection)
// on loopback with 8 keep-alive connections, one request in flight each;
// ns/op is wall time per request with the load generator on the same
// cores, cpu-ns/op the CPU of both.
func BenchmarkLoopback(b *testing.B) {
	s, reqs := hotRequests(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	lnFast, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	base := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = base.Serve(ln) }()
	b.Cleanup(func() { _ = base.Close() })
	fast := NewHTTPServer(&http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second})
	go func() { _ = fast.Serve(lnFast) }()
	b.Cleanup(func() { _ = fast.Close() })
	lnGo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	perConn := NewHTTPServer(&http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second})
	perConn.SetEventLoops(-1)
	go func() { _ = perConn.Serve(lnGo) }()
	b.Cleanup(func() { _ = perConn.Close() })
	for _, tc := range []struct {
		server, name string
		addr         net.Addr
	}{
		{"net-http", "TranslatePinData", ln.Addr()}, {"fast-goroutines", "TranslatePinData", lnGo.Addr()}, {"fast", "TranslatePinData", lnFast.Addr()},
		{"fast", "VerifyCardValidationData", lnFast.Addr()}, {"fast", "VerifyMac", lnFast.Addr()},
	} {
		raw, addr := reqs[tc.name], tc.addr
		b.Run(tc.server+"/"+tc.name, func(b *testing.B) {
			const conns = 8
			var wg sync.WaitGroup
			errs := make(chan error, conns)
			b.ResetTimer()
			cpu := processCPU()
			for c := range conns {
				n := b.N / conns
				if c < b.N%conns {
					n++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- drive(addr.String(), raw, n)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
		})
	}
}

func drive(addr string, raw []byte, n int) error {
	if n == 0 {
		return nil
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	br := bufio.NewReader(c)
	for range n {
		if _, err := c.Write(raw); err != nil {
			return err
		}
		length := -1
		status := ""
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return err
			}
			if status == "" {
				status = string(line[9:12])
				continue
			}
			if len(line) <= 2 {
				break
			}
			if bytes.HasPrefix(line, []byte("Content-Length: ")) {
				length, _ = strconv.Atoi(string(bytes.TrimSpace(line[16:])))
			}
		}
		if status != "200" || length < 0 {
			return io.ErrUnexpectedEOF
		}
		if _, err := br.Discard(length); err != nil {
			return err
		}
	}
	return nil
}

// processCPU is the CPU time (user + system, every thread) of this process:
// on a shared machine, CPU per operation varies less than wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, since time.Duration) {
	b.ReportMetric(float64((processCPU()-since).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkFastPath measures one hot request the way HTTPServer serves it,
// without the network: the head parsed into the request, the handler, the
// response written.
func BenchmarkFastPath(b *testing.B) {
	s, reqs := hotRequests(b)
	for _, name := range []string{"TranslatePinData", "VerifyCardValidationData", "VerifyMac"} {
		raw := reqs[name]
		b.Run(name, func(b *testing.B) {
			rd := bytes.NewReader(raw)
			hs := NewHTTPServer(&http.Server{Handler: s, ReadHeaderTimeout: time.Second})
			c := &fastConn{s: hs, br: bufio.NewReaderSize(rd, 4<<10), bw: bufio.NewWriterSize(io.Discard, 4<<10), remoteAddr: "127.0.0.1:1",
				hdr: http.Header{}, rwc: nopConn{}}
			c.w.header = http.Header{}
			b.ReportAllocs()
			cpu := processCPU()
			for b.Loop() {
				rd.Reset(raw)
				c.br.Reset(rd)
				if _, err := c.br.Peek(1); err != nil {
					b.Fatal(err)
				}
				r, n, ok := c.readHead()
				if !ok {
					b.Fatal("not on the fast path")
				}
				_, _ = c.br.Discard(n)
				c.serveRequest(r)
				if c.w.status != 200 {
					b.Fatalf("status %d: %s", c.w.status, c.w.body)
				}
			}
			reportCPU(b, cpu)
		})
	}
}

// nopConn stands in for the connection where deadlines are set.
type nopConn struct{ net.Conn }

func (nopConn) SetReadDeadline(time.Time) error  { return nil }
func (nopConn) SetWriteDeadline(time.Time) error { return nil }

// BenchmarkHandlerCreateKey measures a control-plane CreateKey (an AES-128
// key generated, wrapped and stored) through the handler, as
// BenchmarkHandler does the data plane; the store is in memory, so what it
// shows is the CPU around the durable write, not the write's fsync.
func BenchmarkHandlerCreateKey(b *testing.B) {
	s, _ := hotRequests(b)
	body, err := json.Marshal(map[string]any{"Exportable": true, "KeyAttributes": map[string]any{"KeyUsage": "TR31_M7_HMAC_KEY",
		"KeyClass": "SYMMETRIC_KEY", "KeyAlgorithm": "HMAC_SHA256", "KeyModesOfUse": map[string]any{"Generate": true, "Verify": true}}})
	if err != nil {
		b.Fatal(err)
	}
	r, _ := http.NewRequest(http.MethodPost, "http://"+benchHost+"/", bytes.NewReader(body))
	r.Header.Set("X-Amz-Target", controlTargetPrefix+"CreateKey")
	r.Header.Set("Content-Type", controlContentType)
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: benchKeyID, SecretAccessKey: benchSecret},
		r, hex.EncodeToString(sum[:]), "payment-cryptography", benchRegion, time.Now()); err != nil {
		b.Fatal(err)
	}
	var out bytes.Buffer
	if err := r.Write(&out); err != nil {
		b.Fatal(err)
	}
	benchServe(b, s, out.Bytes())
}
