package sigv4

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
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
	var p parsedAuth
	if err := parseAuthorization(h, &p); err != nil {
		return Authorization{}, err
	}
	return Authorization{AccessKeyID: p.AccessKeyID, Date: p.Date, Region: p.Region, Service: p.Service,
		SignedHeaders: strings.Split(p.signed, ";"), Signature: append([]byte(nil), p.Signature[:]...)}, nil
}

// parsedAuth is an Authorization header as Verify uses it: substrings of
// the header and the signature's bytes, no allocation.
type parsedAuth struct {
	AccessKeyID, Date, Region, Service string
	signed                             string // SignedHeaders as sent: lowercase names, ascending, separated by ';'
	Signature                          [sha256.Size]byte
}

// parseAuthorization parses h into a; see ParseAuthorization.
func parseAuthorization(h string, a *parsedAuth) error {
	scheme, rest, _ := strings.Cut(h, " ")
	if scheme != Algorithm {
		if scheme == "" {
			return fmt.Errorf("%w: empty Authorization header", ErrMalformedAuth)
		}
		return fmt.Errorf("%w: authorization scheme %q, want %s", ErrUnsupported, truncate(scheme, 32), Algorithm)
	}
	var cred, signed, sig string
	for more := true; more; {
		var comp string
		comp, rest, more = strings.Cut(rest, ",")
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
			return fmt.Errorf("%w: unexpected component %q in Authorization header", ErrMalformedAuth, truncate(name, 32))
		}
		if !ok || value == "" {
			return fmt.Errorf("%w: empty %s", ErrMalformedAuth, name)
		}
		if *dst != "" {
			return fmt.Errorf("%w: repeated %s", ErrMalformedAuth, name)
		}
		*dst = value
	}
	if cred == "" || signed == "" || sig == "" {
		return fmt.Errorf("%w: Authorization header needs Credential, SignedHeaders and Signature", ErrMalformedAuth)
	}

	var parts [5]string
	n := 0
	for more := true; more; n++ {
		var part string
		part, cred, more = strings.Cut(cred, "/")
		if n < len(parts) {
			parts[n] = part
		}
	}
	if n != len(parts) {
		return fmt.Errorf("%w: Credential must be access-key-id/date/region/service/%s", ErrMalformedAuth, scopeTerm)
	}
	a.AccessKeyID, a.Date, a.Region, a.Service = parts[0], parts[1], parts[2], parts[3]
	if !isVisibleASCII(a.AccessKeyID, 128) {
		return fmt.Errorf("%w: invalid access key id in Credential", ErrMalformedAuth)
	}
	if !isDigits(a.Date, 8) || !validDate(digits(a.Date[:4]), digits(a.Date[4:6]), digits(a.Date[6:])) {
		return fmt.Errorf("%w: Credential date is not YYYYMMDD", ErrMalformedAuth)
	}
	if !isVisibleASCII(a.Region, 64) || !isVisibleASCII(a.Service, 64) {
		return fmt.Errorf("%w: invalid region or service in Credential", ErrMalformedAuth)
	}
	if parts[4] != scopeTerm {
		return fmt.Errorf("%w: Credential scope must end in %s", ErrMalformedAuth, scopeTerm)
	}

	prev := ""
	for i, rest, more := 0, signed, true; more; i++ {
		var name string
		name, rest, more = strings.Cut(rest, ";")
		if !isLowerToken(name) {
			return fmt.Errorf("%w: SignedHeaders entry %d is not a lowercase header name", ErrMalformedAuth, i)
		}
		if i > 0 && prev >= name {
			return fmt.Errorf("%w: SignedHeaders not sorted or repeated at %q", ErrMalformedAuth, name)
		}
		prev = name
	}
	a.signed = signed

	if !isLowerHex(sig, 64) {
		return fmt.Errorf("%w: Signature must be 64 lowercase hex digits", ErrMalformedAuth)
	}
	for i := range a.Signature {
		a.Signature[i] = unhex(sig[2*i])<<4 | unhex(sig[2*i+1])
	}
	return nil
}

// unhex is the value of a lowercase hex digit.
func unhex(c byte) byte {
	if c >= 'a' {
		return c - 'a' + 10
	}
	return c - '0'
}

// digits is the value of a string of decimal digits.
func digits(s string) int {
	v := 0
	for i := 0; i < len(s); i++ {
		v = v*10 + int(s[i]-'0')
	}
	return v
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
