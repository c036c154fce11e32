package sigv4

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/paymentcryptography"
	"github.com/aws/smithy-go/encoding/httpbinding"
)

// Round trips through the real AWS SDK for Go v2 signer over requests shaped
// like payhsm's two APIs (service models in shared/aws-models):
// control plane awsJson1_0 "POST /" with X-Amz-Target, data plane
// restJson1 "POST /keys/{KeyIdentifier}/encrypt" with the label escaped by
// smithy's httpbinding encoder exactly as the generated serializers do.

const (
	sdkRegion  = "us-east-1"
	sdkService = "payment-cryptography"
	akid1      = "AKIAPAYHSMTEST000001"
	secret1    = "payhsm-test-secret-1/abcdefghijklmnopqrstuv"
	akid2      = "AKIAPAYHSMTEST000002"
	secret2    = "payhsm-test-secret-2/abcdefghijklmnopqrstuv"
	keyARN     = "arn:aws:payment-cryptography:us-east-1:111122223333:key/kwapwa6qaifllw2h"
)

var sdkNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func sdkVerifier() *Verifier {
	return &Verifier{
		Creds:   StaticCredentials{akid1: secret1, akid2: secret2},
		Region:  sdkRegion,
		Service: sdkService,
		Now:     func() time.Time { return sdkNow },
	}
}

func controlPlane(target string, body []byte) *http.Request {
	r, _ := http.NewRequest(http.MethodPost, "https://controlplane.payment-cryptography.us-east-1.amazonaws.com/", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/x-amz-json-1.0")
	r.Header.Set("X-Amz-Target", "PaymentCryptographyControlPlane."+target)
	return r
}

func dataPlane(t testing.TB, pathTemplate, label, keyID string, body []byte) *http.Request {
	t.Helper()
	r, _ := http.NewRequest(http.MethodPost, "https://dataplane.payment-cryptography.us-east-1.amazonaws.com", bytes.NewReader(body))
	enc, err := httpbinding.NewEncoder(pathTemplate, "", r.Header)
	if err != nil {
		t.Fatal(err)
	}
	if label != "" {
		if err := enc.SetURI(label).String(keyID); err != nil {
			t.Fatal(err)
		}
	}
	if r, err = enc.Encode(r); err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	return r
}

type signOpts struct {
	creds         aws.Credentials
	region        string
	service       string
	at            time.Time
	payloadHash   string // "" = hex SHA-256 of the body
	contentSHAHdr bool   // also send X-Amz-Content-Sha256 (signed)
}

func sdkSign(t testing.TB, r *http.Request, body []byte, o signOpts) {
	t.Helper()
	if o.creds.AccessKeyID == "" {
		o.creds = aws.Credentials{AccessKeyID: akid1, SecretAccessKey: secret1}
	}
	if o.region == "" {
		o.region = sdkRegion
	}
	if o.service == "" {
		o.service = sdkService
	}
	if o.at.IsZero() {
		o.at = sdkNow.Add(-30 * time.Second)
	}
	if o.payloadHash == "" {
		sum := sha256.Sum256(body)
		o.payloadHash = hex.EncodeToString(sum[:])
	}
	if o.contentSHAHdr {
		r.Header.Set("X-Amz-Content-Sha256", o.payloadHash)
	}
	if err := v4.NewSigner().SignHTTP(context.Background(), o.creds, r, o.payloadHash, o.service, o.region, o.at); err != nil {
		t.Fatal(err)
	}
}

// overTheWire serialises a client request as net/http's transport does and
// parses it back as net/http's server does.
func overTheWire(t testing.TB, r *http.Request, body []byte) (*http.Request, []byte) {
	t.Helper()
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	var buf bytes.Buffer
	if err := r.Write(&buf); err != nil {
		t.Fatal(err)
	}
	s, err := http.ReadRequest(bufio.NewReader(&buf))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(s.Body)
	if err != nil {
		t.Fatal(err)
	}
	return s, got
}

func TestSDKRoundTrip(t *testing.T) {
	cpBody := []byte(`{"KeyIdentifier":"` + keyARN + `"}`)
	dpBody := []byte(`{"PlainText":"31323334353637383930313233343536","EncryptionAttributes":{"Symmetric":{"Mode":"CBC"}}}`)
	cp := func(testing.TB) (*http.Request, []byte) { return controlPlane("GetKey", cpBody), cpBody }
	encrypt := func(t testing.TB) (*http.Request, []byte) {
		return dataPlane(t, "/keys/{KeyIdentifier}/encrypt", "KeyIdentifier", keyARN, dpBody), dpBody
	}
	tests := []struct {
		name  string
		build func(testing.TB) (*http.Request, []byte)
		sign  signOpts
		// after changes the request as the server received it.
		after func(r *http.Request, body []byte) []byte
		want  error
	}{
		{name: "control plane", build: cp},
		{name: "control plane empty body", build: func(testing.TB) (*http.Request, []byte) { return controlPlane("ListKeys", nil), nil }},
		{name: "data plane key ARN", build: encrypt},
		{name: "data plane alias", build: func(t testing.TB) (*http.Request, []byte) {
			return dataPlane(t, "/keys/{KeyIdentifier}/decrypt", "KeyIdentifier", "alias/issuer-pek", dpBody), dpBody
		}},
		{name: "data plane reencrypt", build: func(t testing.TB) (*http.Request, []byte) {
			return dataPlane(t, "/keys/{IncomingKeyIdentifier}/reencrypt", "IncomingKeyIdentifier", keyARN, dpBody), dpBody
		}},
		{name: "data plane no label", build: func(t testing.TB) (*http.Request, []byte) {
			return dataPlane(t, "/mac/generate", "", "", dpBody), dpBody
		}},
		{name: "signed content sha256", build: cp, sign: signOpts{contentSHAHdr: true}},
		{name: "clock skew edge past", build: cp, sign: signOpts{at: sdkNow.Add(-DefaultMaxSkew)}},
		{name: "clock skew edge future", build: cp, sign: signOpts{at: sdkNow.Add(DefaultMaxSkew)}},
		{name: "unsigned header added by a proxy", build: cp, after: func(r *http.Request, b []byte) []byte {
			r.Header.Set("X-Forwarded-For", "192.0.2.1")
			return b
		}},

		{name: "body changed", build: cp, want: ErrSignatureMismatch, after: func(r *http.Request, b []byte) []byte {
			return bytes.Replace(b, []byte("kwapwa6q"), []byte("kwapwa6r"), 1)
		}},
		{name: "body truncated", build: encrypt, want: ErrSignatureMismatch, after: func(r *http.Request, b []byte) []byte {
			return b[:len(b)-1]
		}},
		{name: "target changed", build: cp, want: ErrSignatureMismatch, after: func(r *http.Request, b []byte) []byte {
			r.Header.Set("X-Amz-Target", "PaymentCryptographyControlPlane.DeleteKey")
			return b
		}},
		{name: "content type changed", build: cp, want: ErrSignatureMismatch, after: func(r *http.Request, b []byte) []byte {
			r.Header.Set("Content-Type", "application/json")
			return b
		}},
		{name: "method changed", build: cp, want: ErrSignatureMismatch, after: func(r *http.Request, b []byte) []byte {
			r.Method = http.MethodPut
			return b
		}},
		{name: "host changed", build: cp, want: ErrSignatureMismatch, after: func(r *http.Request, b []byte) []byte {
			r.Host = "controlplane.payment-cryptography.us-east-2.amazonaws.com"
			return b
		}},
		{name: "path changed", build: encrypt, want: ErrSignatureMismatch, after: func(r *http.Request, b []byte) []byte {
			r.RequestURI = strings.Replace(r.RequestURI, "/encrypt", "/decrypt", 1)
			return b
		}},
		{name: "path label unescaped", build: encrypt, want: ErrSignatureMismatch, after: func(r *http.Request, b []byte) []byte {
			r.RequestURI = strings.ReplaceAll(r.RequestURI, "%3A", ":")
			return b
		}},
		{name: "query added", build: cp, want: ErrSignatureMismatch, after: func(r *http.Request, b []byte) []byte {
			r.RequestURI += "?x=1"
			r.URL.RawQuery = "x=1"
			return b
		}},
		{name: "date changed by a second", build: cp, want: ErrSignatureMismatch, after: func(r *http.Request, b []byte) []byte {
			r.Header.Set("X-Amz-Date", sdkNow.Add(-29*time.Second).Format(amzDateLayout))
			return b
		}},
		{name: "date not the scope date", build: cp, sign: signOpts{at: time.Date(2026, 3, 14, 23, 59, 59, 0, time.UTC)},
			want: ErrScope, after: func(r *http.Request, b []byte) []byte {
				r.Header.Set("X-Amz-Date", "20260315T000001Z")
				return b
			}},
		{name: "unsigned x-amz header added", build: cp, want: ErrUnsignedHeader, after: func(r *http.Request, b []byte) []byte {
			r.Header.Set("X-Amz-Target", "PaymentCryptographyControlPlane.GetKey")
			r.Header.Set("X-Amz-Meta-Extra", "1")
			return b
		}},
		{name: "expired", build: cp, sign: signOpts{at: sdkNow.Add(-DefaultMaxSkew - time.Second)}, want: ErrExpired},
		{name: "future", build: cp, sign: signOpts{at: sdkNow.Add(DefaultMaxSkew + time.Second)}, want: ErrNotYetValid},
		{name: "other region", build: cp, sign: signOpts{region: "us-west-2"}, want: ErrScope},
		{name: "other service", build: cp, sign: signOpts{service: "kms"}, want: ErrScope},
		{name: "unknown access key", build: cp, sign: signOpts{creds: aws.Credentials{AccessKeyID: "AKIAUNKNOWN", SecretAccessKey: secret1}}, want: ErrUnknownAccessKey},
		{name: "wrong secret", build: cp, sign: signOpts{creds: aws.Credentials{AccessKeyID: akid1, SecretAccessKey: secret2}}, want: ErrSignatureMismatch},
		{name: "access key swapped", build: cp, want: ErrSignatureMismatch, after: func(r *http.Request, b []byte) []byte {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), akid1, akid2, 1))
			return b
		}},
		{name: "signature truncated", build: cp, want: ErrMalformedAuth, after: func(r *http.Request, b []byte) []byte {
			a := r.Header.Get("Authorization")
			r.Header.Set("Authorization", a[:len(a)-2])
			return b
		}},
		{name: "no authorization", build: cp, want: ErrMissingAuth, after: func(r *http.Request, b []byte) []byte {
			r.Header.Del("Authorization")
			return b
		}},
		{name: "two authorizations", build: cp, want: ErrMalformedAuth, after: func(r *http.Request, b []byte) []byte {
			r.Header.Add("Authorization", r.Header.Get("Authorization"))
			return b
		}},
		{name: "session token", build: cp, want: ErrUnsupported,
			sign: signOpts{creds: aws.Credentials{AccessKeyID: akid1, SecretAccessKey: secret1, SessionToken: "token"}}},
		{name: "unsigned payload", build: cp, sign: signOpts{payloadHash: "UNSIGNED-PAYLOAD", contentSHAHdr: true}, want: ErrUnsupported},
		{name: "content sha256 of another body", build: cp, sign: signOpts{contentSHAHdr: true}, want: ErrPayloadHash,
			after: func(r *http.Request, b []byte) []byte { return append(b, ' ') }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, body := tc.build(t)
			sdkSign(t, r, body, tc.sign)
			s, got := overTheWire(t, r, body)
			if tc.after != nil {
				got = tc.after(s, got)
			}
			id, err := sdkVerifier().Verify(s, got)
			if tc.want == nil {
				if err != nil || id != akid1 {
					t.Fatalf("Verify = %q, %v; want %q, nil", id, err, akid1)
				}
				return
			}
			if !errors.Is(err, tc.want) || id != "" {
				t.Fatalf("Verify = %q, %v; want error %v", id, err, tc.want)
			}
			for _, secret := range []string{secret1, secret2} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error %q contains a secret", err)
				}
			}
		})
	}
}

// The data-plane label travels percent-encoded and is signed double-encoded.
func TestSDKDataPlanePathShape(t *testing.T) {
	body := []byte(`{}`)
	r := dataPlane(t, "/keys/{KeyIdentifier}/encrypt", "KeyIdentifier", keyARN, body)
	sdkSign(t, r, body, signOpts{})
	s, _ := overTheWire(t, r, body)
	const wire = "/keys/arn%3Aaws%3Apayment-cryptography%3Aus-east-1%3A111122223333%3Akey%2Fkwapwa6qaifllw2h/encrypt"
	if s.RequestURI != wire {
		t.Fatalf("RequestURI = %q, want %q", s.RequestURI, wire)
	}
	if got, want := canonicalURI(wire), strings.ReplaceAll(wire, "%", "%25"); got != want {
		t.Fatalf("canonicalURI = %q, want %q", got, want)
	}
}

func TestSDKPresignedRejected(t *testing.T) {
	r := controlPlane("ListKeys", nil)
	url, hdr, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: akid1, SecretAccessKey: secret1},
		r, hex.EncodeToString(sha256.New().Sum(nil)), sdkService, sdkRegion, sdkNow)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewRequest(http.MethodPost, url, nil)
	for k, vs := range hdr {
		s.Header[k] = vs
	}
	if _, err := sdkVerifier().Verify(s, nil); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Verify = %v, want ErrUnsupported", err)
	}
	// Presigned query plus an Authorization header is ambiguous.
	sdkSign(t, s, nil, signOpts{at: sdkNow})
	if _, err := sdkVerifier().Verify(s, nil); !errors.Is(err, ErrMalformedAuth) {
		t.Fatalf("Verify = %v, want ErrMalformedAuth", err)
	}
}

// End to end: the generated Payment Cryptography client, unmodified, talking
// to an HTTP server that verifies its requests.
func TestSDKClientEndToEnd(t *testing.T) {
	v := &Verifier{Creds: StaticCredentials{akid1: secret1}, Region: sdkRegion, Service: sdkService}
	var mu sync.Mutex
	var results []error
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err == nil {
			_, err = v.Verify(r, body)
		}
		mu.Lock()
		results = append(results, err)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		if err != nil {
			w.WriteHeader(http.StatusForbidden)
			if _, err := io.WriteString(w, `{"__type":"AccessDeniedException","message":"denied"}`); err != nil {
				t.Errorf("write response: %v", err)
			}
			return
		}
		if _, err := io.WriteString(w, `{"Keys":[]}`); err != nil {
			t.Errorf("write response: %v", err)
		}
	}))
	defer srv.Close()

	call := func(secret string) error {
		c := paymentcryptography.New(paymentcryptography.Options{
			Region:           sdkRegion,
			BaseEndpoint:     aws.String(srv.URL),
			Credentials:      credentials.NewStaticCredentialsProvider(akid1, secret, ""),
			HTTPClient:       srv.Client(),
			RetryMaxAttempts: 1,
		})
		_, err := c.ListKeys(context.Background(), &paymentcryptography.ListKeysInput{MaxResults: aws.Int32(10)})
		return err
	}
	if err := call(secret1); err != nil {
		t.Fatalf("ListKeys with the right secret: %v", err)
	}
	if err := call(secret2); err == nil {
		t.Fatal("ListKeys with a wrong secret succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(results) != 2 || results[0] != nil || !errors.Is(results[1], ErrSignatureMismatch) {
		t.Fatalf("server saw %v, want [nil, ErrSignatureMismatch]", results)
	}
}

func TestVerifyConcurrent(t *testing.T) {
	v := sdkVerifier()
	body := []byte(`{"KeyIdentifier":"alias/k"}`)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			creds := aws.Credentials{AccessKeyID: akid1, SecretAccessKey: secret1}
			if i%2 == 1 {
				creds = aws.Credentials{AccessKeyID: akid2, SecretAccessKey: secret2}
			}
			for range 50 {
				r := controlPlane("GetKey", body)
				sdkSign(t, r, body, signOpts{creds: creds})
				s, b := overTheWire(t, r, body)
				if id, err := v.Verify(s, b); err != nil || id != creds.AccessKeyID {
					t.Errorf("Verify = %q, %v", id, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestVerifierMisconfigured(t *testing.T) {
	r := controlPlane("ListKeys", nil)
	sdkSign(t, r, nil, signOpts{})
	for _, v := range []*Verifier{
		{Region: sdkRegion, Service: sdkService},
		{Creds: StaticCredentials{}, Service: sdkService},
		{Creds: StaticCredentials{}, Region: sdkRegion},
	} {
		if _, err := v.Verify(r, nil); err == nil || !strings.Contains(err.Error(), "misconfigured") {
			t.Errorf("Verify with %+v: err = %v", v, err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 200)
	r := controlPlane("GetKey", body)
	sdkSign(b, r, body, signOpts{})
	s, got := overTheWire(b, r, body)
	v := sdkVerifier()
	b.ReportAllocs()
	b.SetBytes(int64(len(got)))
	for b.Loop() {
		if _, err := v.Verify(s, got); err != nil {
			b.Fatal(err)
		}
	}
}
