package bench

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strconv"
	"time"
)

// signer signs HTTP/1.1 requests with AWS Signature Version 4 the lean way:
// the derived signing key is computed once per UTC day, the date header once
// per second, and each request costs a SHA-256 of its body, one of the
// canonical request and an HMAC of the string to sign, written into reused
// buffers (no allocation per request). It signs the headers it sends:
// content-length, content-type, host, x-amz-date and, on the control plane,
// x-amz-target. A signer is not safe for concurrent use; each connection
// has its own.
type signer struct {
	accessKeyID, secret, region, service, host string

	day     string // the UTC day of key, YYYYMMDD
	mac     hash.Hash
	sec     int64    // the Unix second of amzDate
	amzDate [16]byte // YYYYMMDDTHHMMSSZ
	creq    []byte   // scratch: the canonical request
	sts     []byte   // scratch: the string to sign
	sum     []byte   // scratch: the signature
}

// httpRequest is one prepared request: everything but the signature.
type httpRequest struct {
	path        string // as sent; only unreserved characters and '/' (it is also the canonical URI)
	target      string // X-Amz-Target, "" on the data plane
	contentType string
	body        []byte
}

const signedDataHeaders = "content-length;content-type;host;x-amz-date"

func newSigner(accessKeyID, secret, region, service, host string) *signer {
	return &signer{accessKeyID: accessKeyID, secret: secret, region: region, service: service, host: host, sec: -1,
		creq: make([]byte, 0, 512), sts: make([]byte, 0, 256), sum: make([]byte, 0, sha256.Size)}
}

// setTime makes now (UTC, to the second) the signing time.
func (s *signer) setTime(now time.Time) {
	sec := now.Unix()
	if sec == s.sec {
		return
	}
	s.sec = sec
	now.UTC().AppendFormat(s.amzDate[:0], "20060102T150405Z")
	if day := string(s.amzDate[:8]); day != s.day {
		s.day = day
		key := deriveKey(s.secret, day, s.region, s.service)
		s.mac = hmac.New(sha256.New, key[:])
	}
}

// deriveKey is SigV4's kSigning = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, day), region), service), "aws4_request").
func deriveKey(secret, day, region, service string) [sha256.Size]byte {
	k := []byte("AWS4" + secret)
	for _, part := range []string{day, region, service, "aws4_request"} {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(part))
		k = m.Sum(nil)
	}
	var out [sha256.Size]byte
	copy(out[:], k)
	return out
}

// appendSigned appends r, signed at now, to b as an HTTP/1.1 request.
func (s *signer) appendSigned(b []byte, r *httpRequest, now time.Time) []byte {
	s.setTime(now)
	var hexSum [2 * sha256.Size]byte
	payload := sha256.Sum256(r.body)
	hex.Encode(hexSum[:], payload[:])

	c := s.creq[:0]
	c = append(c, "POST\n"...)
	c = append(c, r.path...)
	c = append(c, "\n\ncontent-length:"...)
	c = strconv.AppendInt(c, int64(len(r.body)), 10)
	c = append(c, "\ncontent-type:"...)
	c = append(c, r.contentType...)
	c = append(c, "\nhost:"...)
	c = append(c, s.host...)
	c = append(c, "\nx-amz-date:"...)
	c = append(c, s.amzDate[:]...)
	if r.target != "" {
		c = append(c, "\nx-amz-target:"...)
		c = append(c, r.target...)
		c = append(c, "\n\n"+signedDataHeaders+";x-amz-target\n"...)
	} else {
		c = append(c, "\n\n"+signedDataHeaders+"\n"...)
	}
	c = append(c, hexSum[:]...)
	s.creq = c
	creqSum := sha256.Sum256(c)

	t := s.sts[:0]
	t = append(t, "AWS4-HMAC-SHA256\n"...)
	t = append(t, s.amzDate[:]...)
	t = append(t, '\n')
	t = s.appendScope(t)
	t = append(t, '\n')
	hex.Encode(hexSum[:], creqSum[:])
	t = append(t, hexSum[:]...)
	s.sts = t
	s.mac.Reset()
	s.mac.Write(t)
	s.sum = s.mac.Sum(s.sum[:0])
	hex.Encode(hexSum[:], s.sum)

	b = append(b, "POST "...)
	b = append(b, r.path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, s.host...)
	b = append(b, "\r\nContent-Type: "...)
	b = append(b, r.contentType...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(r.body)), 10)
	b = append(b, "\r\nX-Amz-Date: "...)
	b = append(b, s.amzDate[:]...)
	if r.target != "" {
		b = append(b, "\r\nX-Amz-Target: "...)
		b = append(b, r.target...)
	}
	b = append(b, "\r\nAuthorization: AWS4-HMAC-SHA256 Credential="...)
	b = append(b, s.accessKeyID...)
	b = append(b, '/')
	b = s.appendScope(b)
	b = append(b, ", SignedHeaders="+signedDataHeaders...)
	if r.target != "" {
		b = append(b, ";x-amz-target"...)
	}
	b = append(b, ", Signature="...)
	b = append(b, hexSum[:]...)
	b = append(b, "\r\n\r\n"...)
	return append(b, r.body...)
}

func (s *signer) appendScope(b []byte) []byte {
	b = append(b, s.amzDate[:8]...)
	b = append(b, '/')
	b = append(b, s.region...)
	b = append(b, '/')
	b = append(b, s.service...)
	return append(b, "/aws4_request"...)
}
