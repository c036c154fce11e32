package sigv4

import (
	"cmp"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// header is one header field of a request, by lowercase name.
type header struct {
	name string
	vals []string
}

// headerList holds a request's header fields keyed by lowercase name, as
// scratch.collect builds it.
type headerList []header

// get returns the values of the field with lowercase name, and whether the
// request has that field (possibly with no value).
func (h headerList) get(name string) ([]string, bool) {
	for i := range h {
		if h[i].name == name {
			return h[i].vals, true
		}
	}
	return nil, false
}

// scratch is the per-call state of Verify, pooled.
type scratch struct {
	hdrs   headerList
	host   [1]string
	length [1]string
	creq   []byte // canonical request
	sts    []byte // string to sign
	sum    []byte // computed signature
	secret []byte // the secret, while it is hashed
}

var scratchPool = sync.Pool{New: func() any {
	return &scratch{hdrs: make(headerList, 0, 16), creq: make([]byte, 0, 1024),
		sts: make([]byte, 0, 256), sum: make([]byte, 0, sha256.Size)}
}}

func (sc *scratch) release() {
	clear(sc.hdrs) // drop references to the request
	sc.hdrs = sc.hdrs[:0]
	sc.host[0], sc.length[0] = "", ""
	scratchPool.Put(sc)
}

// collect returns r's header fields keyed by lowercase name, values in
// arrival order. net/http keeps Host outside r.Header, so it is added from
// r.Host (r.URL.Host for client-built requests); Content-Length is added
// from r.ContentLength when the header map lacks it, as for client-built
// requests, which is what the AWS SDK for Go signs.
func (sc *scratch) collect(r *http.Request) headerList {
	h := sc.hdrs[:0]
	for k, vs := range r.Header {
		lk := lowerName(k)
		if i := h.index(lk); i >= 0 {
			h[i].vals = append(slices.Clip(h[i].vals), vs...)
			continue
		}
		h = append(h, header{lk, vs})
	}
	if _, ok := h.get("host"); !ok {
		host := r.Host
		if host == "" {
			host = r.URL.Host
		}
		if host != "" {
			sc.host[0] = host
			h = append(h, header{"host", sc.host[:]})
		}
	}
	if _, ok := h.get("content-length"); !ok && r.ContentLength > 0 {
		sc.length[0] = strconv.FormatInt(r.ContentLength, 10)
		h = append(h, header{"content-length", sc.length[:]})
	}
	sc.hdrs = h
	return h
}

func (h headerList) index(name string) int {
	for i := range h {
		if h[i].name == name {
			return i
		}
	}
	return -1
}

// lowerName is strings.ToLower(k), without an allocation for the header
// names SDK requests carry in net/http's canonical form.
func lowerName(k string) string {
	switch k {
	case "Authorization":
		return "authorization"
	case "Content-Type":
		return "content-type"
	case "Content-Length":
		return "content-length"
	case "X-Amz-Date":
		return "x-amz-date"
	case "X-Amz-Target":
		return "x-amz-target"
	case "X-Amz-Content-Sha256":
		return "x-amz-content-sha256"
	case "X-Amz-Security-Token":
		return "x-amz-security-token"
	case "X-Amz-User-Agent":
		return "x-amz-user-agent"
	case "User-Agent":
		return "user-agent"
	case "Accept":
		return "accept"
	case "Accept-Encoding":
		return "accept-encoding"
	case "Amz-Sdk-Invocation-Id":
		return "amz-sdk-invocation-id"
	case "Amz-Sdk-Request":
		return "amz-sdk-request"
	case "Connection":
		return "connection"
	case "Date":
		return "date"
	case "Expect":
		return "expect"
	}
	return strings.ToLower(k)
}

// appendCanonicalRequest appends the SigV4 canonical request: method,
// canonical URI, canonical query string, canonical headers, signed headers
// and the payload hash, separated by newlines. signed is the SignedHeaders
// list as sent.
func appendCanonicalRequest(b []byte, r *http.Request, query []queryParam, h headerList, signed string, payloadHash []byte) ([]byte, error) {
	b = append(b, r.Method...)
	b = append(b, '\n')
	b = appendCanonicalURI(b, requestPath(r))
	b = append(b, '\n')
	for i, p := range query {
		if i > 0 {
			b = append(b, '&')
		}
		b = append(b, p.key...)
		b = append(b, '=')
		b = append(b, p.value...)
	}
	b = append(b, '\n')
	for rest, more := signed, true; more; {
		var name string
		name, rest, more = strings.Cut(rest, ";")
		vs, ok := h.get(name)
		if !ok {
			return b, fmt.Errorf("%w: signed header %q is not in the request", ErrMalformedAuth, name)
		}
		b = append(b, name...)
		b = append(b, ':')
		for i, v := range vs {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendHeaderValue(b, v)
		}
		b = append(b, '\n')
	}
	b = append(b, '\n')
	b = append(b, signed...)
	b = append(b, '\n')
	return append(b, payloadHash...), nil
}

// appendHeaderValue appends v trimmed of leading and trailing spaces and
// tabs, with each run of inner spaces collapsed to one space.
func appendHeaderValue(b []byte, v string) []byte {
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
		b = append(b, c)
	}
	return b
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

// appendCanonicalURI appends canonicalURI(path); a path that normalisation
// leaves unchanged (no empty, "." or ".." segment) is encoded without
// building the normalised copy.
func appendCanonicalURI(b []byte, path string) []byte {
	if !isNormal(path) {
		return append(b, canonicalURI(path)...)
	}
	return appendURIEncoded(b, path, false)
}

// isNormal reports whether path starts with '/' and has no empty, "." or
// ".." segment (but an empty last one, after a trailing slash).
func isNormal(path string) bool {
	if path == "" || path[0] != '/' {
		return false
	}
	if path == "/" {
		return true
	}
	rest := path[1:]
	for {
		seg, tail, more := strings.Cut(rest, "/")
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		if !more {
			return true
		}
		if tail == "" {
			return true // trailing slash
		}
		rest = tail
	}
}

// uriEncode percent-encodes (uppercase hex) every byte of s outside the RFC
// 3986 unreserved set, keeping '/' unless encodeSlash.
func uriEncode(s string, encodeSlash bool) string {
	return string(appendURIEncoded(make([]byte, 0, len(s)), s, encodeSlash))
}

func appendURIEncoded(b []byte, s string, encodeSlash bool) []byte {
	const hexdig = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || (c == '/' && !encodeSlash) {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hexdig[c>>4], hexdig[c&0xF])
	}
	return b
}

type queryParam struct{ key, value string } // both already SigV4-encoded

// parseQuery decodes a raw query string ('+' means space, as in the AWS SDK
// for Go) and returns its parameters re-encoded per SigV4 and sorted by
// encoded name, then encoded value. A name without '=' has an empty value.
func parseQuery(raw string) ([]queryParam, error) {
	if raw == "" {
		return nil, nil
	}
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
