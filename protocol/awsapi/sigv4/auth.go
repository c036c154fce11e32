package sigv4

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Authorization is a parsed AWS4-HMAC-SHA256 Authorization header.
type Authorization struct {
	AccessKeyID   string
	Date          string   // credential scope date, YYYYMMDD
	Region        string   // credential scope region
	Service       string   // credential scope service (signing name)
	SignedHeaders []string // lowercase, strictly ascending
	Signature     []byte   // 32 bytes
}

// String renders a in the form the AWS SDKs send.
func (a Authorization) String() string {
	return Algorithm + " Credential=" + a.AccessKeyID + "/" + a.Date + "/" + a.Region + "/" + a.Service + "/" + scopeTerm +
		", SignedHeaders=" + strings.Join(a.SignedHeaders, ";") + ", Signature=" + hex.EncodeToString(a.Signature)
}

// ParseAuthorization parses an Authorization header value of the form
//
//	AWS4-HMAC-SHA256 Credential=AKID/YYYYMMDD/region/service/aws4_request, SignedHeaders=h1;h2, Signature=<64 hex>
//
// The three components may come in any order, each exactly once, separated
// by commas with optional spaces. Another scheme yields ErrUnsupported, any
// other defect ErrMalformedAuth.
func ParseAuthorization(h string) (Authorization, error) {
	var a Authorization
	scheme, rest, _ := strings.Cut(h, " ")
	if scheme != Algorithm {
		if scheme == "" {
			return a, fmt.Errorf("%w: empty Authorization header", ErrMalformedAuth)
		}
		return a, fmt.Errorf("%w: authorization scheme %q, want %s", ErrUnsupported, truncate(scheme, 32), Algorithm)
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
			return a, fmt.Errorf("%w: unexpected component %q in Authorization header", ErrMalformedAuth, truncate(name, 32))
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
	if !isVisibleASCII(a.AccessKeyID, 128) {
		return Authorization{}, fmt.Errorf("%w: invalid access key id in Credential", ErrMalformedAuth)
	}
	if _, err := time.Parse("20060102", a.Date); err != nil || !isDigits(a.Date, 8) {
		return Authorization{}, fmt.Errorf("%w: Credential date is not YYYYMMDD", ErrMalformedAuth)
	}
	if !isVisibleASCII(a.Region, 64) || !isVisibleASCII(a.Service, 64) {
		return Authorization{}, fmt.Errorf("%w: invalid region or service in Credential", ErrMalformedAuth)
	}
	if parts[4] != scopeTerm {
		return Authorization{}, fmt.Errorf("%w: Credential scope must end in %s", ErrMalformedAuth, scopeTerm)
	}

	a.SignedHeaders = strings.Split(signed, ";")
	for i, name := range a.SignedHeaders {
		if !isLowerToken(name) {
			return Authorization{}, fmt.Errorf("%w: SignedHeaders entry %d is not a lowercase header name", ErrMalformedAuth, i)
		}
		if i > 0 && a.SignedHeaders[i-1] >= name {
			return Authorization{}, fmt.Errorf("%w: SignedHeaders not sorted or repeated at %q", ErrMalformedAuth, name)
		}
	}

	if !isLowerHex(sig, 64) {
		return Authorization{}, fmt.Errorf("%w: Signature must be 64 lowercase hex digits", ErrMalformedAuth)
	}
	a.Signature, _ = hex.DecodeString(sig)
	return a, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func isDigits(s string, n int) bool {
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

// isVisibleASCII reports whether s is 1..max bytes of printable,
// non-space ASCII, so that it is safe to echo in logs.
func isVisibleASCII(s string, max int) bool {
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

// isLowerToken reports whether s is a non-empty RFC 9110 token without
// uppercase letters.
func isLowerToken(s string) bool {
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
