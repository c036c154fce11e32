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
	"hash"
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
//
// A successful verification allocates nothing beyond what the signing key
// cache needs once per key and day: the canonical request and the string to
// sign are built in pooled buffers.
func (v *Verifier) Verify(r *http.Request, body []byte) (accessKeyID string, err error) {
	if v.Creds == nil || v.Region == "" || v.Service == "" {
		return "", fmt.Errorf("%w: Creds, Region and Service are required", errMisconfigured)
	}

	if r == nil || r.URL == nil {
		return "", fmt.Errorf("%w: no request", ErrMalformedAuth)
	}
	sc := scratchPool.Get().(*scratch)
	defer sc.release()
	headers := sc.collect(r)
	authz, _ := headers.get("authorization")
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
	var a parsedAuth
	if err := parseAuthorization(authz[0], &a); err != nil {
		return "", err
	}
	if _, ok := headers.get("x-amz-security-token"); ok || hasParam(query, "X-Amz-Security-Token") {
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
	var amzDate [len(amzDateLayout)]byte
	if fromDate {
		ts.AppendFormat(amzDate[:0], amzDateLayout)
	} else {
		vs, _ := headers.get("x-amz-date")
		copy(amzDate[:], vs[0]) // parseAmzDate took exactly this layout: formatting ts gives it back
	}
	if a.Date != string(amzDate[:8]) {
		return "", fmt.Errorf("%w: credential scope date %s differs from request date %s", ErrScope, a.Date, string(amzDate[:8]))
	}
	if err := v.checkSkew(ts); err != nil {
		return "", err
	}
	if err := checkSignedHeaders(a.signed, headers, fromDate); err != nil {
		return "", err
	}

	sum := sha256.Sum256(body)
	var payloadHash [2 * sha256.Size]byte
	hex.Encode(payloadHash[:], sum[:])
	if vs, _ := headers.get("x-amz-content-sha256"); len(vs) > 0 { // absent or without a value: nothing to check
		if err := checkContentSHA256(vs, payloadHash[:]); err != nil {
			return "", err
		}
	}

	sc.creq, err = appendCanonicalRequest(sc.creq[:0], r, query, headers, a.signed, payloadHash[:])
	if err != nil {
		return "", err
	}
	secret, ok := v.Creds.SecretFor(a.AccessKeyID)
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrUnknownAccessKey, a.AccessKeyID)
	}
	sc.sts = appendStringToSign(sc.sts[:0], amzDate[:], a.Date, a.Region, a.Service, sc.creq)

	sc.secret = append(sc.secret[:0], secret...)
	secretHash := sha256.Sum256(sc.secret)
	clear(sc.secret)
	key := v.cache.signer(secretHash, secret, a.Date, a.Region, a.Service)
	mac := key.get()
	mac.Write(sc.sts)
	sc.sum = mac.Sum(sc.sum[:0])
	key.put(mac)
	if !hmac.Equal(sc.sum, a.Signature[:]) {
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
func requestTime(h headerList) (time.Time, bool, error) {
	if vs, ok := h.get("x-amz-date"); ok {
		if len(vs) != 1 {
			return time.Time{}, false, fmt.Errorf("%w: %d X-Amz-Date headers", ErrMalformedAuth, len(vs))
		}
		t, err := parseAmzDate(vs[0])
		return t, false, err
	}
	vs, ok := h.get("date")
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
	// What time.Parse(amzDateLayout, s) accepts, without its cost.
	num := func(i, n int) int {
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day := num(0, 4), num(4, 2), num(6, 2)
	hour, minute, sec := num(9, 2), num(11, 2), num(13, 2)
	if !validDate(year, month, day) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, fmt.Errorf("%w: X-Amz-Date is not a valid time", ErrMalformedAuth)
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC), nil
}

// validDate reports whether year-month-day is a day of the proleptic
// Gregorian calendar, as time.Parse checks it.
func validDate(year, month, day int) bool {
	if month < 1 || month > 12 || day < 1 {
		return false
	}
	days := [12]int{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[month-1]
	if month == 2 && year%4 == 0 && (year%100 != 0 || year%400 == 0) {
		days = 29
	}
	return day <= days
}

// checkSignedHeaders: signed is the SignedHeaders list as it was sent
// (names separated by ';').
func checkSignedHeaders(signed string, h headerList, dateUsed bool) error {
	if !isSigned(signed, "host") {
		return fmt.Errorf("%w: host", ErrUnsignedHeader)
	}
	if dateUsed && !isSigned(signed, "date") {
		return fmt.Errorf("%w: date", ErrUnsignedHeader)
	}
	for _, e := range h {
		if name := e.name; strings.HasPrefix(name, "x-amz-") && !isSigned(signed, name) {
			return fmt.Errorf("%w: %s", ErrUnsignedHeader, name)
		}
	}
	return nil
}

func isSigned(signed, name string) bool {
	for {
		s, rest, more := strings.Cut(signed, ";")
		if s == name {
			return true
		}
		if !more {
			return false
		}
		signed = rest
	}
}

func checkContentSHA256(vs []string, payloadHash []byte) error {
	if len(vs) != 1 {
		return fmt.Errorf("%w: %d X-Amz-Content-Sha256 headers", ErrMalformedAuth, len(vs))
	}
	switch v := vs[0]; {
	case v == string(payloadHash):
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

// appendStringToSign appends the string to sign: the algorithm, the
// request time, the credential scope and the hash of the canonical request.
func appendStringToSign(b, amzDate []byte, date, region, service string, canonicalRequest []byte) []byte {
	h := sha256.Sum256(canonicalRequest)
	b = append(b, Algorithm+"\n"...)
	b = append(b, amzDate...)
	b = append(b, '\n')
	b = append(b, date...)
	b = append(b, '/')
	b = append(b, region...)
	b = append(b, '/')
	b = append(b, service...)
	b = append(b, "/"+scopeTerm+"\n"...)
	return hex.AppendEncode(b, h[:])
}

// keyCache memoises signing keys per (secret, date, region, service). The
// secret enters the map key only as its SHA-256, so a rotated secret gets a
// fresh entry and the map holds no secret in the clear. Each entry keeps the
// HMAC states keyed with its signing key for reuse, so verifying allocates
// none.
type keyCache struct {
	mu sync.Mutex
	m  map[keyCacheID]*signingKey
}

type keyCacheID struct {
	secret                [sha256.Size]byte
	date, region, service string
}

const keyCacheMax = 1024

// signingKey hands out HMAC-SHA256 states keyed with one signing key.
type signingKey struct {
	key  [sha256.Size]byte
	macs sync.Pool
}

func (k *signingKey) get() hash.Hash {
	if m, ok := k.macs.Get().(hash.Hash); ok {
		m.Reset()
		return m
	}
	return hmac.New(sha256.New, k.key[:])
}

func (k *signingKey) put(m hash.Hash) { k.macs.Put(m) }

// signer returns the cached signing key of (secret, date, region,
// service); secretHash is the secret's SHA-256.
func (c *keyCache) signer(secretHash [sha256.Size]byte, secret, date, region, service string) *signingKey {
	id := keyCacheID{secretHash, date, region, service}
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.m[id]; ok {
		return k
	}
	if c.m == nil || len(c.m) >= keyCacheMax {
		for _, k := range c.m {
			clear(k.key[:]) // wipe before dropping; HMAC states still pooled hold it until collected
		}
		c.m = make(map[keyCacheID]*signingKey)
	}
	k := &signingKey{key: deriveSigningKey(secret, date, region, service)}
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
