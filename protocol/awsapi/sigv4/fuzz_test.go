package sigv4

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestParseAuthorization(t *testing.T) {
	const good = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
	a, err := ParseAuthorization(good)
	if err != nil {
		t.Fatal(err)
	}
	want := Authorization{
		AccessKeyID: "AKIDEXAMPLE", Date: "20150830", Region: "us-east-1", Service: "service",
		SignedHeaders: []string{"host", "x-amz-date"},
		Signature: []byte{0x5f, 0xa0, 0x0f, 0xa3, 0x15, 0x53, 0xb7, 0x3e, 0xbf, 0x19, 0x42, 0x67, 0x6e, 0x86, 0x29, 0x1e,
			0x83, 0x72, 0xff, 0x2a, 0x22, 0x60, 0x95, 0x6d, 0x9b, 0x8a, 0xae, 0x1d, 0x76, 0x3f, 0xbf, 0x31},
	}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("got %+v\nwant %+v", a, want)
	}
	if a.String() != good {
		t.Fatalf("String() = %q", a.String())
	}

	const sig = "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
	const cred = "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"
	tests := []struct {
		name, h string
		want    error
	}{
		{"reordered, no spaces", "AWS4-HMAC-SHA256 " + sig + ",SignedHeaders=host," + cred, nil},
		{"empty", "", ErrMalformedAuth},
		{"other scheme", "Bearer abc", ErrUnsupported},
		{"sigv4a", "AWS4-ECDSA-P256-SHA256 " + cred + ", SignedHeaders=host, " + sig, ErrUnsupported},
		{"scheme case", "aws4-hmac-sha256 " + cred + ", SignedHeaders=host, " + sig, ErrUnsupported},
		{"scheme only", "AWS4-HMAC-SHA256", ErrMalformedAuth},
		{"missing signature", "AWS4-HMAC-SHA256 " + cred + ", SignedHeaders=host", ErrMalformedAuth},
		{"repeated component", "AWS4-HMAC-SHA256 " + cred + ", " + cred + ", SignedHeaders=host, " + sig, ErrMalformedAuth},
		{"unknown component", "AWS4-HMAC-SHA256 " + cred + ", SignedHeaders=host, " + sig + ", Foo=bar", ErrMalformedAuth},
		{"empty value", "AWS4-HMAC-SHA256 Credential=, SignedHeaders=host, " + sig, ErrMalformedAuth},
		{"short scope", "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/aws4_request, SignedHeaders=host, " + sig, ErrMalformedAuth},
		{"bad terminator", "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_reques, SignedHeaders=host, " + sig, ErrMalformedAuth},
		{"bad date", "AWS4-HMAC-SHA256 Credential=AKID/20151330/us-east-1/service/aws4_request, SignedHeaders=host, " + sig, ErrMalformedAuth},
		{"control char in key id", "AWS4-HMAC-SHA256 Credential=AK\x01ID/20150830/us-east-1/service/aws4_request, SignedHeaders=host, " + sig, ErrMalformedAuth},
		{"uppercase signed header", "AWS4-HMAC-SHA256 " + cred + ", SignedHeaders=Host, " + sig, ErrMalformedAuth},
		{"unsorted signed headers", "AWS4-HMAC-SHA256 " + cred + ", SignedHeaders=x-amz-date;host, " + sig, ErrMalformedAuth},
		{"repeated signed header", "AWS4-HMAC-SHA256 " + cred + ", SignedHeaders=host;host, " + sig, ErrMalformedAuth},
		{"empty signed header", "AWS4-HMAC-SHA256 " + cred + ", SignedHeaders=host;, " + sig, ErrMalformedAuth},
		{"short signature", "AWS4-HMAC-SHA256 " + cred + ", SignedHeaders=host, " + sig[:len(sig)-1], ErrMalformedAuth},
		{"uppercase signature", "AWS4-HMAC-SHA256 " + cred + ", SignedHeaders=host, " + strings.ToUpper(sig[:12]) + sig[12:], ErrMalformedAuth},
	}
	for _, tc := range tests {
		_, err := ParseAuthorization(tc.h)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{
		"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
		"AWS4-HMAC-SHA256 Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31,SignedHeaders=a,Credential=A/20000101/r/s/aws4_request",
		"AWS4-HMAC-SHA256 Credential=//////, SignedHeaders=;;, Signature=",
		"AWS4-HMAC-SHA256 ,,,==,",
		"Bearer x",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		a, err := ParseAuthorization(h)
		if err != nil {
			if !errors.Is(err, ErrMalformedAuth) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if len(a.Signature) != 32 || a.AccessKeyID == "" || len(a.Date) != 8 || a.Region == "" || a.Service == "" || len(a.SignedHeaders) == 0 {
			t.Fatalf("accepted incomplete %+v", a)
		}
		for i := 1; i < len(a.SignedHeaders); i++ {
			if a.SignedHeaders[i-1] >= a.SignedHeaders[i] {
				t.Fatalf("accepted unsorted SignedHeaders %q", a.SignedHeaders)
			}
		}
		b, err := ParseAuthorization(a.String())
		if err != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("re-parse of %q: %+v, %v", a.String(), b, err)
		}
	})
}

// FuzzVerify feeds raw HTTP requests through net/http's parser and Verify,
// which must never panic and must only ever return the package's errors.
// The query-string and path canonicalisation are parsers too and are
// exercised through the request target.
func FuzzVerify(f *testing.F) {
	f.Add([]byte("GET /?Param2=value2&Param1=value1 HTTP/1.1\nHost:example.amazonaws.com\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500\nX-Amz-Date:20150830T123600Z\n\n"))
	f.Add([]byte("POST / HTTP/1.1\nContent-Type:application/x-www-form-urlencoded\nHost:example.amazonaws.com\nContent-Length:13\nx-amz-content-sha256:9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, Signature=d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b\nX-Amz-Date:20150830T123600Z\n\nParam1=value1"))
	f.Add([]byte("GET /a/../%zz/./b//?x=%41&y=+&&z HTTP/1.1\nHost:h\nDate:Mon, 09 Sep 2011 23:36:00 GMT\nAuthorization:AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=date;host;zz, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500\n\n"))
	v := suiteVerifier()
	sentinels := []error{ErrMissingAuth, ErrMalformedAuth, ErrUnsupported, ErrUnknownAccessKey, ErrScope,
		ErrExpired, ErrNotYetValid, ErrUnsignedHeader, ErrPayloadHash, ErrSignatureMismatch}
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		if err != nil {
			return
		}
		id, err := v.Verify(r, body)
		if err == nil {
			if id != suiteAccessKey {
				t.Fatalf("accepted with id %q", id)
			}
			return
		}
		for _, s := range sentinels {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("error outside the sentinels: %v", err)
	})
}
