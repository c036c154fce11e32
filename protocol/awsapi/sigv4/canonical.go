package sigv4

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// lowerHeaders returns r's header fields keyed by lowercase name, values in
// arrival order. net/http keeps Host outside r.Header, so it is added from
// r.Host (r.URL.Host for client-built requests); Content-Length is added
// from r.ContentLength when the header map lacks it, as for client-built
// requests, which is what the AWS SDK for Go signs.
func lowerHeaders(r *http.Request) map[string][]string {
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

// canonicalRequest builds the SigV4 canonical request: method, canonical
// URI, canonical query string, canonical headers, signed headers and the
// payload hash, separated by newlines.
func canonicalRequest(r *http.Request, query []queryParam, h map[string][]string, signed []string, payloadHash string) (string, error) {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(canonicalURI(requestPath(r)))
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
			writeHeaderValue(&b, v)
		}
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signed, ";"))
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	return b.String(), nil
}

// writeHeaderValue writes v trimmed of leading and trailing spaces and tabs,
// with each run of inner spaces collapsed to one space.
func writeHeaderValue(b *strings.Builder, v string) {
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

// requestPath returns the path exactly as it was on the wire: from the
// request-target when r came from an http.Server, else the escaped URL path.
func requestPath(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") {
		p, _, _ := strings.Cut(r.RequestURI, "?")
		return p
	}
	return r.URL.EscapedPath()
}

// canonicalURI normalises the wire path as AWS does for every service but
// S3 (empty and "." segments dropped, ".." removes the previous segment; a
// trailing slash is kept) and then URI-encodes each byte but the unreserved
// ones and '/'. Because the wire path is already percent-encoded, this is
// the "double encoding" the SDKs apply: a key ARN label sent as
// arn%3Aaws%3A... is signed as arn%253Aaws%253A...
func canonicalURI(path string) string {
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
	return uriEncode(norm, false)
}

// uriEncode percent-encodes (uppercase hex) every byte of s outside the RFC
// 3986 unreserved set, keeping '/' unless encodeSlash.
func uriEncode(s string, encodeSlash bool) string {
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

type queryParam struct{ key, value string } // both already SigV4-encoded

// parseQuery decodes a raw query string ('+' means space, as in the AWS SDK
// for Go) and returns its parameters re-encoded per SigV4 and sorted by
// encoded name, then encoded value. A name without '=' has an empty value.
func parseQuery(raw string) ([]queryParam, error) {
	var ps []queryParam
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
		ps = append(ps, queryParam{uriEncode(dk, true), uriEncode(dv, true)})
	}
	slices.SortFunc(ps, func(a, b queryParam) int {
		return cmp.Or(strings.Compare(a.key, b.key), strings.Compare(a.value, b.value))
	})
	return ps, nil
}

func hasParam(ps []queryParam, key string) bool {
	for _, p := range ps {
		if p.key == key {
			return true
		}
	}
	return false
}
