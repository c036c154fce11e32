package sigv4

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sameOutcome fails unless Verify and the reference verifier agree on r:
// the same access key id and the same error text. When several X-Amz-*
// headers are unsigned, the reference names whichever its map iteration
// meets first, so only the sentinel is compared then.
func sameOutcome(t *testing.T, v *Verifier, r *http.Request, body []byte, what string) {
	t.Helper()
	id, err := v.Verify(r, body)
	rid, rerr := refVerify(v, r, body)
	if id != rid || (err == nil) != (rerr == nil) {
		t.Fatalf("%s: Verify = %q, %v; reference %q, %v", what, id, err, rid, rerr)
	}
	bothUnsigned := errors.Is(err, ErrUnsignedHeader) && errors.Is(rerr, ErrUnsignedHeader)
	if err != nil && err.Error() != rerr.Error() && !bothUnsigned {
		t.Fatalf("%s: Verify error %q, reference %q", what, err, rerr)
	}
}

// mutate changes r (a copy) in one of the ways clients, proxies and
// attackers do.
func mutate(rng *rand.Rand, r *http.Request, body []byte) (*http.Request, []byte) {
	s := r.Clone(r.Context())
	s.RequestURI = r.RequestURI
	s.URL.RawQuery = r.URL.RawQuery
	authz := s.Header.Get("Authorization")
	switch rng.IntN(26) {
	case 0:
		s.Header.Set("X-Amz-Meta-Extra", "1")
	case 1:
		s.Header.Set("X-Amz-Meta-A", "1")
		s.Header.Set("X-Amz-Meta-B", "2")
	case 2:
		s.Header.Del("Authorization")
	case 3:
		s.Header.Add("Authorization", authz)
	case 4:
		s.Header.Set("Authorization", strings.ReplaceAll(authz, ", ", ","))
	case 5:
		s.Header.Set("Authorization", strings.Replace(authz, "Credential=", "Signature=0000, Credential=", 1))
	case 6:
		s.Header.Set("Authorization", authz[:rng.IntN(len(authz)+1)])
	case 7:
		s.Header.Del("X-Amz-Date")
		s.Header.Set("Date", "Mon, 09 Sep 2011 23:36:00 GMT")
	case 8:
		s.Header.Set("X-Amz-Date", []string{"20260314T150900Z", "20260314T250900Z", "20260314T240000Z", "20260314T236000Z",
			"20260314T235960Z", "20260230T000000Z", "20240229T000000Z", "20250229T000000Z", "2026-03-14T15:09:00Z", ""}[rng.IntN(10)])
	case 9:
		s.Header["X-Amz-Date"] = append(s.Header["X-Amz-Date"], "20260314T150900Z")
	case 10:
		s.Header[[]string{"X-Amz-Date", "X-Amz-Content-Sha256", "Authorization", "X-Amz-Security-Token", "X-Amz-Target", "Content-Type"}[rng.IntN(6)]] = []string{}
	case 11:
		s.Header.Set("Content-Type", "  application/json   ;  charset=utf-8  ")
	case 12:
		s.Header.Del("Content-Length")
	case 13:
		s.Host = ""
		s.URL.Host = "h.example"
	case 14:
		q := []string{"x=1", "X-Amz-Signature=abc", "X-Amz-Security-Token=t", "a=%zz", "b=+&a=%41&&c"}[rng.IntN(5)]
		s.URL.RawQuery = q
		s.RequestURI += "?" + q
	case 15:
		s.RequestURI = []string{"/a/../b", "//x//", "/./", "/keys/arn%3Aaws/x", "/ሴ", "/%7e", "/a/.", "/a/..", "relative", ""}[rng.IntN(10)]
	case 16:
		s.Header.Set("X-Amz-Security-Token", "token")
	case 17:
		s.Header.Set("X-Amz-Content-Sha256", []string{"UNSIGNED-PAYLOAD", "STREAMING-X", "E3B0", strings.Repeat("0", 64)}[rng.IntN(4)])
	case 18:
		body = append(bytes.Clone(body), ' ')
	case 19:
		s.Header["x-amz-target"] = []string{"PaymentCryptographyControlPlane.GetKey"} // a non-canonical key, as client code can set
		s.Header.Del("X-Amz-Target")
	case 20:
		s.Method = "PUT"
	case 21:
		s.Header.Set("Authorization", strings.Replace(authz, "us-east-1", "us-west-2", 1))
	case 22:
		s.Header.Set("Authorization", strings.Replace(authz, "AWS4-HMAC-SHA256", "AWS4-HMAC-SHA256 ", 1))
	case 23:
		s.Header.Set("Authorization", strings.Replace(authz, "/20", "/19", 1))
	case 24:
		s.Header.Set("Authorization", strings.Replace(authz, "SignedHeaders=", "SignedHeaders=accept;", 1))
	case 25:
		s.Header.Set("My-Header", "  a   b\tc  ")
		s.Header.Set("Authorization", strings.Replace(authz, "host;", "host;my-header;", 1))
	}
	return s, body
}

// TestVerifyMatchesReference: on requests signed by the AWS SDK, as they
// arrive through net/http, and on thousands of mutations of them, Verify
// gives exactly what the verifier it replaced gives.
func TestVerifyMatchesReference(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(20, 4))
	cpBody := []byte(`{"KeyIdentifier":"` + keyARN + `"}`)
	dpBody := []byte(`{"PlainText":"31323334353637383930313233343536"}`)
	var bases []struct {
		r    *http.Request
		body []byte
	}
	for _, o := range []signOpts{{}, {contentSHAHdr: true}, {at: sdkNow.Add(-DefaultMaxSkew - time.Second)}} {
		for _, build := range []func() (*http.Request, []byte){
			func() (*http.Request, []byte) { return controlPlane("GetKey", cpBody), cpBody },
			func() (*http.Request, []byte) { return controlPlane("ListKeys", nil), nil },
			func() (*http.Request, []byte) {
				return dataPlane(t, "/keys/{KeyIdentifier}/encrypt", "KeyIdentifier", keyARN, dpBody), dpBody
			},
			func() (*http.Request, []byte) { return dataPlane(t, "/pindata/translate", "", "", dpBody), dpBody },
		} {
			r, body := build()
			sdkSign(t, r, body, o)
			s, got := overTheWire(t, r, body)
			bases = append(bases, struct {
				r    *http.Request
				body []byte
			}{s, got})
		}
	}
	v := sdkVerifier()
	for i, b := range bases {
		sameOutcome(t, v, b.r, b.body, "base")
		for range 400 {
			r, body := b.r, b.body
			for range 1 + rng.IntN(3) {
				r, body = mutate(rng, r, body)
			}
			sameOutcome(t, v, r, body, "mutation of base "+string(rune('a'+i)))
		}
	}
}

// FuzzVerifyMatchesReference: raw requests through net/http's parser,
// Verify against the reference.
func FuzzVerifyMatchesReference(f *testing.F) {
	f.Add([]byte("GET /?Param2=value2&Param1=value1 HTTP/1.1\nHost:example.amazonaws.com\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500\nX-Amz-Date:20150830T123600Z\n\n"))
	f.Add([]byte("POST / HTTP/1.1\nContent-Type:application/x-www-form-urlencoded\nHost:example.amazonaws.com\nContent-Length:13\nx-amz-content-sha256:9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, Signature=d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b\nX-Amz-Date:20150830T123600Z\n\nParam1=value1"))
	f.Add([]byte("GET /example1/example2/../.. HTTP/1.1\nHost:example.amazonaws.com\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31\nX-Amz-Date:20150830T123600Z\n\n"))
	f.Add([]byte("GET / HTTP/1.1\nHost:host.foo.com\nDate:Mon, 09 Sep 2011 23:36:00 GMT\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20110909/us-east-1/host/aws4_request, SignedHeaders=date;host, Signature=b27ccfbfa7df52a200ff74193ca6e32d4b48b8856fab7ebf1c595d0670a7e470\n\n"))
	v := suiteVerifier()
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		if err != nil {
			return
		}
		sameOutcome(t, v, r, body, "fuzz")
	})
}

// TestValidDate: the calendar check agrees with time.Parse on every day of
// four centuries and on months and days just out of range.
func TestValidDate(t *testing.T) {
	t.Parallel()
	for y := 1600; y < 2401; y++ {
		for m := 0; m <= 13; m++ {
			for d := 0; d <= 32; d++ {
				s := strconv.Itoa(y) + twoDigits(m) + twoDigits(d)
				_, err := time.Parse("20060102", s)
				if got := validDate(y, m, d); got != (err == nil) {
					t.Fatalf("validDate(%d, %d, %d) = %v, time.Parse: %v", y, m, d, got, err)
				}
			}
		}
	}
}

func twoDigits(n int) string { return string([]byte{byte('0' + n/10), byte('0' + n%10)}) }
