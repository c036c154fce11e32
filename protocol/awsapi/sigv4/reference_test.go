package sigv4

// The verifier as it was before its allocation-free rewrite, kept verbatim
// (identifiers prefixed "ref", the signing key derived per call instead of
// cached) as the reference the differential tests hold Verify to.

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

type refQueryParam struct{ key, value string } // both already SigV4-encoded

// refVerify authenticates r, whose complete body the caller has already read
// (with a size limit) into body. It returns the access key id that signed
// the request, or an error wrapping one of the package's sentinel errors.
func refVerify(v *Verifier, r *http.Request, body []byte) (accessKeyID string, err error) {
	if v.Creds == nil || v.Region == "" || v.Service == "" {
		return "", fmt.Errorf("%w: Creds, Region and Service are required", errMisconfigured)
	}

	if r == nil || r.URL == nil {
		return "", fmt.Errorf("%w: no request", ErrMalformedAuth)
	}
	headers := refLowerHeaders(r)
	authz := headers["authorization"]
	query, err := refParseQuery(r.URL.RawQuery)
	if err != nil {
		return "", err
	}
	presigned := refHasParam(query, "X-Amz-Signature") || refHasParam(query, "X-Amz-Algorithm") || refHasParam(query, "X-Amz-Credential")
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
	a, err := refParseAuthorization(authz[0])
	if err != nil {
		return "", err
	}
	if _, ok := headers["x-amz-security-token"]; ok || refHasParam(query, "X-Amz-Security-Token") {
		return "", fmt.Errorf("%w: session tokens (X-Amz-Security-Token) are not issued by this service", ErrUnsupported)
	}
	if a.Region != v.Region {
		return "", fmt.Errorf("%w: credential scope region %q, expected %q", ErrScope, a.Region, v.Region)
	}
	if a.Service != v.Service {
		return "", fmt.Errorf("%w: credential scope service %q, expected %q", ErrScope, a.Service, v.Service)
	}

	ts, fromDate, err := refRequestTime(headers)
	if err != nil {
		return "", err
	}
	amzDate := ts.Format(amzDateLayout)
	if a.Date != amzDate[:8] {
		return "", fmt.Errorf("%w: credential scope date %s differs from request date %s", ErrScope, a.Date, amzDate[:8])
	}
	if err := refCheckSkew(v, ts); err != nil {
		return "", err
	}
	if err := refCheckSignedHeaders(a.SignedHeaders, headers, fromDate); err != nil {
		return "", err
	}

	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	if err := refCheckContentSHA256(headers["x-amz-content-sha256"], payloadHash); err != nil {
		return "", err
	}

	creq, err := refCanonicalRequest(r, query, headers, a.SignedHeaders, payloadHash)
	if err != nil {
		return "", err
	}
	secret, ok := v.Creds.SecretFor(a.AccessKeyID)
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrUnknownAccessKey, a.AccessKeyID)
	}
	scope := a.Date + "/" + a.Region + "/" + a.Service + "/" + scopeTerm
	sts := refStringToSign(amzDate, scope, creq)

	key := refDeriveSigningKey(secret, a.Date, a.Region, a.Service)
	mac := hmac.New(sha256.New, key[:])
	clear(key[:])
	mac.Write([]byte(sts))
	if !hmac.Equal(mac.Sum(nil), a.Signature) {
		return "", fmt.Errorf("%w: check the secret access key and signing method for access key %q", ErrSignatureMismatch, a.AccessKeyID)
	}
	return a.AccessKeyID, nil
}

func refCheckSkew(v *Verifier, ts time.Time) error {
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

// refRequestTime returns the signing time from X-Amz-Date or, failing that,
// Date, and whether Date was the source.
func refRequestTime(h map[string][]string) (time.Time, bool, error) {
	if vs, ok := h["x-amz-date"]; ok {
		if len(vs) != 1 {
			return time.Time{}, false, fmt.Errorf("%w: %d X-Amz-Date headers", ErrMalformedAuth, len(vs))
		}
		t, err := refParseAmzDate(vs[0])
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

// refParseAmzDate accepts exactly the ISO 8601 basic form YYYYMMDD'T'HHMMSS'Z'.
func refParseAmzDate(s string) (time.Time, error) {
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

func refCheckSignedHeaders(signed []string, h map[string][]string, dateUsed bool) error {
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

func refCheckContentSHA256(vs []string, payloadHash string) error {
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
	case !refIsLowerHex(v, sha256.Size*2):
		return fmt.Errorf("%w: X-Amz-Content-Sha256 is not a lowercase hex SHA-256", ErrMalformedAuth)
	default:
		return fmt.Errorf("%w: X-Amz-Content-Sha256 does not match the body", ErrPayloadHash)
	}
}

func refIsLowerHex(s string, n int) bool {
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

func refStringToSign(amzDate, scope, refCanonicalRequest string) string {
	h := sha256.Sum256([]byte(refCanonicalRequest))
	return Algorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(h[:])
}

// refDeriveSigningKey computes
// HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request").
func refDeriveSigningKey(secret, date, region, service string) [sha256.Size]byte {
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

// refLowerHeaders returns r's header fields keyed by lowercase name, values in
// arrival order. net/http keeps Host outside r.Header, so it is added from
// r.Host (r.URL.Host for client-built requests); Content-Length is added
// from r.ContentLength when the header map lacks it, as for client-built
// requests, which is what the AWS SDK for Go signs.
func refLowerHeaders(r *http.Request) map[string][]string {
	h := make(map[string][]string, len(r.Header)+2)
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		h[lk] = append(h[lk], vs...)
	}
	if _, ok := h["host"]; !ok {
		host := r.Host
		if host == "" {
			host = r.URL.Host
		}
		if host != "" {
			h["host"] = []string{host}
		}
	}
	if _, ok := h["content-length"]; !ok && r.ContentLength > 0 {
		h["content-length"] = []string{strconv.FormatInt(r.ContentLength, 10)}
	}
	return h
}

// refCanonicalRequest builds the SigV4 canonical request: method, canonical
// URI, canonical query string, canonical headers, signed headers and the
// payload hash, separated by newlines.
func refCanonicalRequest(r *http.Request, query []refQueryParam, h map[string][]string, signed []string, payloadHash string) (string, error) {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(refCanonicalURI(refRequestPath(r)))
	b.WriteByte('\n')
	for i, p := range query {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.key)
		b.WriteByte('=')
		b.WriteString(p.value)
	}
	b.WriteByte('\n')
	for _, name := range signed {
		vs, ok := h[name]
		if !ok {
			return "", fmt.Errorf("%w: signed header %q is not in the request", ErrMalformedAuth, name)
		}
		b.WriteString(name)
		b.WriteByte(':')
		for i, v := range vs {
			if i > 0 {
				b.WriteByte(',')
			}
			refWriteHeaderValue(&b, v)
		}
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signed, ";"))
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	return b.String(), nil
}

// refWriteHeaderValue writes v trimmed of leading and trailing spaces and tabs,
// with each run of inner spaces collapsed to one space.
func refWriteHeaderValue(b *strings.Builder, v string) {
	v = strings.Trim(v, " \t")
	space := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == ' ' {
			if space {
				continue
			}
			space = true
		} else {
			space = false
		}
		b.WriteByte(c)
	}
}

// refRequestPath returns the path exactly as it was on the wire: from the
// request-target when r came from an http.Server, else the escaped URL path.
func refRequestPath(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") {
		p, _, _ := strings.Cut(r.RequestURI, "?")
		return p
	}
	return r.URL.EscapedPath()
}

// refCanonicalURI normalises the wire path as AWS does for every service but
// S3 (empty and "." segments dropped, ".." removes the previous segment; a
// trailing slash is kept) and then URI-encodes each byte but the unreserved
// ones and '/'. Because the wire path is already percent-encoded, this is
// the "double encoding" the SDKs apply: a key ARN label sent as
// arn%3Aaws%3A... is signed as arn%253Aaws%253A...
func refCanonicalURI(path string) string {
	segs := make([]string, 0, strings.Count(path, "/")+1)
	for _, s := range strings.Split(path, "/") {
		switch s {
		case "", ".":
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
		default:
			segs = append(segs, s)
		}
	}
	norm := "/" + strings.Join(segs, "/")
	if len(segs) > 0 && strings.HasSuffix(path, "/") {
		norm += "/"
	}
	return refUriEncode(norm, false)
}

// refUriEncode percent-encodes (uppercase hex) every byte of s outside the RFC
// 3986 unreserved set, keeping '/' unless encodeSlash.
func refUriEncode(s string, encodeSlash bool) string {
	const hexdig = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || (c == '/' && !encodeSlash) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexdig[c>>4])
		b.WriteByte(hexdig[c&0xF])
	}
	return b.String()
}

// refParseQuery decodes a raw query string ('+' means space, as in the AWS SDK
// for Go) and returns its parameters re-encoded per SigV4 and sorted by
// encoded name, then encoded value. A name without '=' has an empty value.
func refParseQuery(raw string) ([]refQueryParam, error) {
	var ps []refQueryParam
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		dk, err1 := url.QueryUnescape(k)
		dv, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%w: query string has an invalid percent-encoding", ErrMalformedAuth)
		}
		ps = append(ps, refQueryParam{refUriEncode(dk, true), refUriEncode(dv, true)})
	}
	slices.SortFunc(ps, func(a, b refQueryParam) int {
		return cmp.Or(strings.Compare(a.key, b.key), strings.Compare(a.value, b.value))
	})
	return ps, nil
}

func refHasParam(ps []refQueryParam, key string) bool {
	for _, p := range ps {
		if p.key == key {
			return true
		}
	}
	return false
}

// refParseAuthorization parses an Authorization header value of the form
//
//	AWS4-HMAC-SHA256 Credential=AKID/YYYYMMDD/region/service/aws4_request, SignedHeaders=h1;h2, Signature=<64 hex>
//
// The three components may come in any order, each exactly once, separated
// by commas with optional spaces. Another scheme yields ErrUnsupported, any
// other defect ErrMalformedAuth.
func refParseAuthorization(h string) (Authorization, error) {
	var a Authorization
	scheme, rest, _ := strings.Cut(h, " ")
	if scheme != Algorithm {
		if scheme == "" {
			return a, fmt.Errorf("%w: empty Authorization header", ErrMalformedAuth)
		}
		return a, fmt.Errorf("%w: authorization scheme %q, want %s", ErrUnsupported, refTruncate(scheme, 32), Algorithm)
	}
	var cred, signed, sig string
	for comp := range strings.SplitSeq(rest, ",") {
		name, value, ok := strings.Cut(strings.Trim(comp, " \t"), "=")
		var dst *string
		switch name {
		case "Credential":
			dst = &cred
		case "SignedHeaders":
			dst = &signed
		case "Signature":
			dst = &sig
		default:
			return a, fmt.Errorf("%w: unexpected component %q in Authorization header", ErrMalformedAuth, refTruncate(name, 32))
		}
		if !ok || value == "" {
			return a, fmt.Errorf("%w: empty %s", ErrMalformedAuth, name)
		}
		if *dst != "" {
			return a, fmt.Errorf("%w: repeated %s", ErrMalformedAuth, name)
		}
		*dst = value
	}
	if cred == "" || signed == "" || sig == "" {
		return a, fmt.Errorf("%w: Authorization header needs Credential, SignedHeaders and Signature", ErrMalformedAuth)
	}

	parts := strings.Split(cred, "/")
	if len(parts) != 5 {
		return a, fmt.Errorf("%w: Credential must be access-key-id/date/region/service/%s", ErrMalformedAuth, scopeTerm)
	}
	a.AccessKeyID, a.Date, a.Region, a.Service = parts[0], parts[1], parts[2], parts[3]
	if !refIsVisibleASCII(a.AccessKeyID, 128) {
		return Authorization{}, fmt.Errorf("%w: invalid access key id in Credential", ErrMalformedAuth)
	}
	if _, err := time.Parse("20060102", a.Date); err != nil || !refIsDigits(a.Date, 8) {
		return Authorization{}, fmt.Errorf("%w: Credential date is not YYYYMMDD", ErrMalformedAuth)
	}
	if !refIsVisibleASCII(a.Region, 64) || !refIsVisibleASCII(a.Service, 64) {
		return Authorization{}, fmt.Errorf("%w: invalid region or service in Credential", ErrMalformedAuth)
	}
	if parts[4] != scopeTerm {
		return Authorization{}, fmt.Errorf("%w: Credential scope must end in %s", ErrMalformedAuth, scopeTerm)
	}

	a.SignedHeaders = strings.Split(signed, ";")
	for i, name := range a.SignedHeaders {
		if !refIsLowerToken(name) {
			return Authorization{}, fmt.Errorf("%w: SignedHeaders entry %d is not a lowercase header name", ErrMalformedAuth, i)
		}
		if i > 0 && a.SignedHeaders[i-1] >= name {
			return Authorization{}, fmt.Errorf("%w: SignedHeaders not sorted or repeated at %q", ErrMalformedAuth, name)
		}
	}

	if !refIsLowerHex(sig, 64) {
		return Authorization{}, fmt.Errorf("%w: Signature must be 64 lowercase hex digits", ErrMalformedAuth)
	}
	a.Signature, _ = hex.DecodeString(sig)
	return a, nil
}

func refTruncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func refIsDigits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// refIsVisibleASCII reports whether s is 1..max bytes of printable,
// non-space ASCII, so that it is safe to echo in logs.
func refIsVisibleASCII(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' || s[i] == ',' {
			return false
		}
	}
	return true
}

// refIsLowerToken reports whether s is a non-empty RFC 9110 token without
// uppercase letters.
func refIsLowerToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && strings.IndexByte("!#$%&'*+-.^_`|~", c) < 0 {
			return false
		}
	}
	return true
}
