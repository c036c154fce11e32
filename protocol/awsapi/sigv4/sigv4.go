// Package sigv4 verifies AWS Signature Version 4 (AWS4-HMAC-SHA256) on the
// requests that reach payhsm's AWS-compatible HTTP API, so that unmodified AWS
// SDKs and the AWS CLI can authenticate to it.
//
// The package owns request authentication only: parsing the Authorization
// header, rebuilding the canonical request and string to sign the way AWS
// does for non-S3 services, deriving the signing key, comparing signatures in
// constant time and enforcing the clock-skew window. Authorisation (which
// principal may call which operation) and reading the body are the caller's.
//
// Deliberate restrictions, all reported as ErrUnsupported:
//   - only the Authorization header is accepted; pre-signed URLs
//     (X-Amz-Signature in the query string) are not;
//   - requests carrying X-Amz-Security-Token are refused, since payhsm does
//     not issue temporary credentials and a token it cannot validate must not
//     be silently ignored;
//   - the payload is always authenticated: X-Amz-Content-Sha256 may be sent,
//     but only as the hex SHA-256 of the body (UNSIGNED-PAYLOAD and the
//     STREAMING-* chunked modes are refused). The canonical request always
//     uses the hash of the body the caller passed in, never a client-supplied
//     value, so a signature can never cover a body other than the one served.
//
// Beyond what SigV4 itself requires, host and every X-Amz-* header present
// (notably X-Amz-Target, which selects the control-plane operation) must be
// in SignedHeaders, as must Date when it supplies the timestamp; otherwise
// the request fails with ErrUnsignedHeader.
//
// The canonical URI is built from the path exactly as it arrived
// (r.RequestURI), normalised as AWS does for non-S3 services (empty and "."
// segments dropped, ".." resolved) and then percent-encoded once more, which
// reproduces the SDKs' double encoding of label values such as key ARNs.
// Two wire paths that differ only by such segments therefore share a
// signature; the router that serves the request should reject paths with
// empty, "." or ".." segments (no SDK sends them for this API) rather than
// interpret them differently.
package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Sentinel errors. Verify wraps exactly one of them with detail; test with
// errors.Is. No error ever contains a secret, a signing key or the signature
// the verifier computed.
var (
	ErrMissingAuth       = errors.New("sigv4: missing authentication")
	ErrMalformedAuth     = errors.New("sigv4: malformed authentication")
	ErrUnsupported       = errors.New("sigv4: unsupported authentication")
	ErrUnknownAccessKey  = errors.New("sigv4: unknown access key")
	ErrScope             = errors.New("sigv4: credential scope mismatch")
	ErrExpired           = errors.New("sigv4: request time too old")
	ErrNotYetValid       = errors.New("sigv4: request time in the future")
	ErrUnsignedHeader    = errors.New("sigv4: required header not signed")
	ErrPayloadHash       = errors.New("sigv4: payload hash mismatch")
	ErrSignatureMismatch = errors.New("sigv4: signature mismatch")
	errMisconfigured     = errors.New("sigv4: verifier misconfigured")
)

const (
	// Algorithm is the only signing algorithm accepted.
	Algorithm = "AWS4-HMAC-SHA256"
	// DefaultMaxSkew is the clock-skew window AWS enforces: a request is
	// refused when its time is more than 15 minutes from the server's
	// ("Signature expired: … is now earlier than … (… - 15 min.)").
	DefaultMaxSkew = 15 * time.Minute

	amzDateLayout = "20060102T150405Z"
	scopeTerm     = "aws4_request"
)

// Credentials looks up the secret access key of an access key id.
type Credentials interface {
	SecretFor(accessKeyID string) (secret string, ok bool)
}

// StaticCredentials is a fixed access-key-id → secret map.
type StaticCredentials map[string]string

// SecretFor implements Credentials.
func (c StaticCredentials) SecretFor(id string) (string, bool) {
	s, ok := c[id]
	return s, ok
}

// Verifier checks SigV4-signed requests. Its exported fields must be set
// before first use and not changed afterwards; a Verifier is safe for
// concurrent use and must not be copied after first use.
type Verifier struct {
	Creds   Credentials
	Region  string           // must equal the region in the credential scope
	Service string           // signing name, "payment-cryptography" for payhsm
	MaxSkew time.Duration    // zero or negative means DefaultMaxSkew
	Now     func() time.Time // nil means time.Now

	cache keyCache
}

// Verify authenticates r, whose complete body the caller has already read
// (with a size limit) into body. It returns the access key id that signed
// the request, or an error wrapping one of the package's sentinel errors.
func (v *Verifier) Verify(r *http.Request, body []byte) (accessKeyID string, err error) {
	if v.Creds == nil || v.Region == "" || v.Service == "" {
		return "", fmt.Errorf("%w: Creds, Region and Service are required", errMisconfigured)
	}

	if r == nil || r.URL == nil {
		return "", fmt.Errorf("%w: no request", ErrMalformedAuth)
	}
	headers := lowerHeaders(r)
	authz := headers["authorization"]
	query, err := parseQuery(r.URL.RawQuery)
	if err != nil {
		return "", err
	}
	presigned := hasParam(query, "X-Amz-Signature") || hasParam(query, "X-Amz-Algorithm") || hasParam(query, "X-Amz-Credential")
	switch {
	case len(authz) == 0 && presigned:
		return "", fmt.Errorf("%w: pre-signed query-string authentication", ErrUnsupported)
	case len(authz) == 0:
		return "", fmt.Errorf("%w: no Authorization header", ErrMissingAuth)
	case len(authz) > 1:
		return "", fmt.Errorf("%w: %d Authorization headers", ErrMalformedAuth, len(authz))
	case presigned:
		return "", fmt.Errorf("%w: both Authorization header and pre-signed query parameters", ErrMalformedAuth)
	}
	a, err := ParseAuthorization(authz[0])
	if err != nil {
		return "", err
	}
	if _, ok := headers["x-amz-security-token"]; ok || hasParam(query, "X-Amz-Security-Token") {
		return "", fmt.Errorf("%w: session tokens (X-Amz-Security-Token) are not issued by this service", ErrUnsupported)
	}
	if a.Region != v.Region {
		return "", fmt.Errorf("%w: credential scope region %q, expected %q", ErrScope, a.Region, v.Region)
	}
	if a.Service != v.Service {
		return "", fmt.Errorf("%w: credential scope service %q, expected %q", ErrScope, a.Service, v.Service)
	}

	ts, fromDate, err := requestTime(headers)
	if err != nil {
		return "", err
	}
	amzDate := ts.Format(amzDateLayout)
	if a.Date != amzDate[:8] {
		return "", fmt.Errorf("%w: credential scope date %s differs from request date %s", ErrScope, a.Date, amzDate[:8])
	}
	if err := v.checkSkew(ts); err != nil {
		return "", err
	}
	if err := checkSignedHeaders(a.SignedHeaders, headers, fromDate); err != nil {
		return "", err
	}

	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	if err := checkContentSHA256(headers["x-amz-content-sha256"], payloadHash); err != nil {
		return "", err
	}

	creq, err := canonicalRequest(r, query, headers, a.SignedHeaders, payloadHash)
	if err != nil {
		return "", err
	}
	secret, ok := v.Creds.SecretFor(a.AccessKeyID)
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrUnknownAccessKey, a.AccessKeyID)
	}
	scope := a.Date + "/" + a.Region + "/" + a.Service + "/" + scopeTerm
	sts := stringToSign(amzDate, scope, creq)

	key := v.cache.signingKey(secret, a.Date, a.Region, a.Service)
	mac := hmac.New(sha256.New, key[:])
	clear(key[:])
	mac.Write([]byte(sts))
	if !hmac.Equal(mac.Sum(nil), a.Signature) {
		return "", fmt.Errorf("%w: check the secret access key and signing method for access key %q", ErrSignatureMismatch, a.AccessKeyID)
	}
	return a.AccessKeyID, nil
}

func (v *Verifier) checkSkew(ts time.Time) error {
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	skew := v.MaxSkew
	if skew <= 0 {
		skew = DefaultMaxSkew
	}
	t := now().UTC()
	switch {
	case ts.Before(t.Add(-skew)):
		return fmt.Errorf("%w: signed at %s, now %s, allowed skew %s", ErrExpired, ts.Format(amzDateLayout), t.Format(amzDateLayout), skew)
	case ts.After(t.Add(skew)):
		return fmt.Errorf("%w: signed at %s, now %s, allowed skew %s", ErrNotYetValid, ts.Format(amzDateLayout), t.Format(amzDateLayout), skew)
	}
	return nil
}

// requestTime returns the signing time from X-Amz-Date or, failing that,
// Date, and whether Date was the source.
func requestTime(h map[string][]string) (time.Time, bool, error) {
	if vs, ok := h["x-amz-date"]; ok {
		if len(vs) != 1 {
			return time.Time{}, false, fmt.Errorf("%w: %d X-Amz-Date headers", ErrMalformedAuth, len(vs))
		}
		t, err := parseAmzDate(vs[0])
		return t, false, err
	}
	vs, ok := h["date"]
	if !ok {
		return time.Time{}, false, fmt.Errorf("%w: neither X-Amz-Date nor Date header", ErrMalformedAuth)
	}
	if len(vs) != 1 {
		return time.Time{}, true, fmt.Errorf("%w: %d Date headers", ErrMalformedAuth, len(vs))
	}
	t, err := http.ParseTime(vs[0])
	if err != nil {
		return time.Time{}, true, fmt.Errorf("%w: Date header is not an HTTP date", ErrMalformedAuth)
	}
	return t.UTC(), true, nil
}

// parseAmzDate accepts exactly the ISO 8601 basic form YYYYMMDD'T'HHMMSS'Z'.
func parseAmzDate(s string) (time.Time, error) {
	ok := len(s) == len(amzDateLayout) && s[8] == 'T' && s[15] == 'Z'
	for i := 0; ok && i < 15; i++ {
		ok = i == 8 || (s[i] >= '0' && s[i] <= '9')
	}
	if !ok {
		return time.Time{}, fmt.Errorf("%w: X-Amz-Date is not of the form YYYYMMDDTHHMMSSZ", ErrMalformedAuth)
	}
	t, err := time.Parse(amzDateLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: X-Amz-Date is not a valid time", ErrMalformedAuth)
	}
	return t, nil
}

func checkSignedHeaders(signed []string, h map[string][]string, dateUsed bool) error {
	isSigned := func(name string) bool {
		for _, s := range signed {
			if s == name {
				return true
			}
		}
		return false
	}
	if !isSigned("host") {
		return fmt.Errorf("%w: host", ErrUnsignedHeader)
	}
	if dateUsed && !isSigned("date") {
		return fmt.Errorf("%w: date", ErrUnsignedHeader)
	}
	for name := range h {
		if strings.HasPrefix(name, "x-amz-") && !isSigned(name) {
			return fmt.Errorf("%w: %s", ErrUnsignedHeader, name)
		}
	}
	return nil
}

func checkContentSHA256(vs []string, payloadHash string) error {
	if vs == nil {
		return nil
	}
	if len(vs) != 1 {
		return fmt.Errorf("%w: %d X-Amz-Content-Sha256 headers", ErrMalformedAuth, len(vs))
	}
	switch v := vs[0]; {
	case v == payloadHash:
		return nil
	case v == "UNSIGNED-PAYLOAD" || strings.HasPrefix(v, "STREAMING-"):
		return fmt.Errorf("%w: X-Amz-Content-Sha256 %q; the payload must be signed", ErrUnsupported, v)
	case !isLowerHex(v, sha256.Size*2):
		return fmt.Errorf("%w: X-Amz-Content-Sha256 is not a lowercase hex SHA-256", ErrMalformedAuth)
	default:
		return fmt.Errorf("%w: X-Amz-Content-Sha256 does not match the body", ErrPayloadHash)
	}
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func stringToSign(amzDate, scope, canonicalRequest string) string {
	h := sha256.Sum256([]byte(canonicalRequest))
	return Algorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(h[:])
}

// keyCache memoises signing keys per (secret, date, region, service). The
// secret enters the map key only as its SHA-256, so a rotated secret gets a
// fresh entry and the map holds no secret in the clear.
type keyCache struct {
	mu sync.Mutex
	m  map[keyCacheID][sha256.Size]byte
}

type keyCacheID struct {
	secret                [sha256.Size]byte
	date, region, service string
}

const keyCacheMax = 1024

// signingKey returns a copy of the signing key; the caller clears it.
func (c *keyCache) signingKey(secret, date, region, service string) [sha256.Size]byte {
	id := keyCacheID{sha256.Sum256([]byte(secret)), date, region, service}
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.m[id]; ok {
		return k
	}
	if c.m == nil || len(c.m) >= keyCacheMax {
		for id := range c.m {
			c.m[id] = [sha256.Size]byte{} // wipe before dropping
		}
		c.m = make(map[keyCacheID][sha256.Size]byte)
	}
	k := deriveSigningKey(secret, date, region, service)
	c.m[id] = k
	return k
}

// deriveSigningKey computes
// HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request").
func deriveSigningKey(secret, date, region, service string) [sha256.Size]byte {
	k := append([]byte("AWS4"), secret...)
	for _, part := range []string{date, region, service, scopeTerm} {
		mac := hmac.New(sha256.New, k)
		mac.Write([]byte(part))
		clear(k)
		k = mac.Sum(k[:0])
	}
	var out [sha256.Size]byte
	copy(out[:], k)
	clear(k)
	return out
}
