package awsapi

import (
	"bufio"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestFastPathHeads: the heads SDKs send take the fast path; the others
// (see httpserver_test.go for their answers) are handed to net/http.
func TestFastPathHeads(t *testing.T) {
	t.Parallel()
	const auth = "Authorization: AWS4-HMAC-SHA256 Credential=AK/20260314/us-east-1/payment-cryptography/aws4_request, SignedHeaders=host, Signature=00\r\n"
	for _, tc := range []struct {
		head string
		fast bool
	}{
		{"POST /pindata/translate HTTP/1.1\r\nHost: 127.0.0.1:18081\r\nContent-Length: 2\r\n" + auth + "X-Amz-Date: 20260314T150926Z\r\n\r\n", true},
		{"POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 002\r\nx-amz-target: PaymentCryptographyControlPlane.ListKeys\r\nX-A:\r\nX-A:  b \r\n\r\n", true},
		{"POST /keys/arn%3Aaws%3Ax/encrypt?x=1 HTTP/1.1\r\nHost: [::1]:8080\r\nContent-Length: 0\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", false},
		{"POST / HTTP/1.0\r\nHost: h\r\nContent-Length: 0\r\n\r\n", false},
		{"POST / HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 262145\r\n\r\n", false},
		{"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n", false},
		{"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nX-A: \x7f\r\n\r\n", false},
		{"POST /a b HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n", false},
		{"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 90)+"\r\n", 50) + "\r\n", false},
	} {
		client, server := net.Pipe()
		go func() {
			_, _ = client.Write([]byte(tc.head))
		}()
		c := &fastConn{s: &HTTPServer{srv: &http.Server{MaxHeaderBytes: 64 << 10, ReadHeaderTimeout: time.Second}}, rwc: server, br: bufio.NewReaderSize(server, 4<<10),
			bw: bufio.NewWriter(server), remoteAddr: "pipe", hdr: http.Header{}}
		if _, err := c.br.Peek(1); err != nil {
			t.Fatal(err)
		}
		r, n, ok := c.readHead()
		if ok != tc.fast {
			t.Errorf("%q: fast path %v, want %v", tc.head, ok, tc.fast)
		}
		if ok && (n != len(tc.head) || r.Header.Get("Host") != "" || r.Host == "") {
			t.Errorf("%q: head of %d bytes, request %+v", tc.head, n, r)
		}
		_ = client.Close()
		_ = server.Close()
	}
}

// BenchmarkReadHead: the fast path's parse of an SDK request head into
// the *http.Request net/http would build.
func BenchmarkReadHead(b *testing.B) {
	head := "POST /pindata/translate HTTP/1.1\r\nHost: 127.0.0.1:18081\r\nUser-Agent: aws-sdk-go-v2/1.41.1 ua/2.1 os/linux lang/go#1.26.8 md/GOOS#linux md/GOARCH#amd64 api/paymentcryptographydata#1.27.2\r\nContent-Length: 317\r\nAccept-Encoding: identity\r\nAmz-Sdk-Invocation-Id: 8f7a3f3e-5b8d-4a8e-9c1c-2f8e6b5a1d3c\r\nAmz-Sdk-Request: attempt=1; max=3\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKPHABCDEFGHIJKLMNOP/20260314/us-east-1/payment-cryptography/aws4_request, SignedHeaders=accept-encoding;amz-sdk-invocation-id;amz-sdk-request;content-length;content-type;host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31\r\nContent-Type: application/json\r\nX-Amz-Date: 20260314T150926Z\r\n\r\n"
	rd := strings.NewReader(head)
	c := &fastConn{s: &HTTPServer{srv: &http.Server{MaxHeaderBytes: 64 << 10, ReadHeaderTimeout: time.Second}}, br: bufio.NewReaderSize(rd, 4<<10), remoteAddr: "127.0.0.1:1", hdr: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(head)
		c.br.Reset(rd)
		if _, err := c.br.Peek(1); err != nil {
			b.Fatal(err)
		}
		if _, _, ok := c.readHead(); !ok {
			b.Fatal("not on the fast path")
		}
	}
}

// FuzzParseHead: a head the fast path takes is one net/http's
// http.ReadRequest takes too, read as the same request (method, URL,
// header, host, length, request URI).
func FuzzParseHead(f *testing.F) {
	for _, h := range []string{
		"POST /pindata/translate HTTP/1.1\r\nHost: 127.0.0.1:18081\r\nContent-Length: 2\r\nX-Amz-Date: 20260314T150926Z\r\n\r\n",
		"POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 002\r\nx-amz-target: PaymentCryptographyControlPlane.ListKeys\r\nX-A:\r\nX-A:  b \r\n\r\n",
		"POST /keys/arn%3Aaws%3Ax/encrypt?x=1 HTTP/1.1\r\nHost: [::1]:8080\r\nContent-Length: 0\r\n\r\n",
		"POST /a/./b/../c//d~e_f-g.h HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
		"POST /a%zz HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
		"POST //h/x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add(h)
	}
	c := &fastConn{s: &HTTPServer{srv: &http.Server{MaxHeaderBytes: 64 << 10, ReadHeaderTimeout: time.Second}}, remoteAddr: "127.0.0.1:1", hdr: http.Header{}}
	f.Fuzz(func(t *testing.T, head string) {
		i := strings.Index(head, "\r\n\r\n")
		if i < 0 || bareLF([]byte(head), i) {
			return // not a whole head: readHead does not parse it
		}
		head = head[:i+4]
		r, ok := c.parseHead([]byte(head))
		if !ok {
			return
		}
		want, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
		if err != nil {
			if _, bad := badTarget(r); bad {
				return // an invalid percent-escape: the handler refuses it
			}
			t.Fatalf("%q: fast path took what net/http refuses: %v", head, err)
		}
		if r.Method != want.Method || *r.URL != *want.URL || r.Host != want.Host || r.ContentLength != want.ContentLength ||
			r.RequestURI != want.RequestURI || r.Proto != want.Proto || !reflect.DeepEqual(r.Header, want.Header) {
			t.Fatalf("%q:\nfast path %+v %+v\nnet/http  %+v %+v", head, r, r.URL, want, want.URL)
		}
	})
}
