package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// The HTTP mode drives the AWS-compatible data plane with the operations
// that match the host commands of the mix: the same codes select them.
var httpOperations = map[string]string{
	"CC": "TranslatePinData",
	"CA": "TranslatePinData",
	"CW": "GenerateCardValidationData",
	"CY": "VerifyCardValidationData",
	"M6": "GenerateMac",
	"M8": "VerifyMac",
	"CK": "CreateKey", // control plane: every request creates a new AES-128 key (a store write)
}

// HTTPTarget is where and as whom HTTP mode signs its requests.
type HTTPTarget struct {
	URL                 string // base URL of the HTTP API, http://host:port or https://host:port
	AccessKeyID, Secret string
	Region              string
}

const (
	service         = "payment-cryptography"
	dataContentType = "application/json"
	ctlContentType  = "application/x-amz-json-1.0"
	ctlTargetPrefix = "PaymentCryptographyControlPlane."
)

// httpConn is a setup connection: one signed request at a time.
type httpConn struct {
	c  net.Conn
	br *bufio.Reader
	s  *signer
	wb []byte
}

// call sends r and returns the status and body of the answer; a status
// other than 200 is an error that names the exception.
func (h *httpConn) call(r *httpRequest) ([]byte, error) {
	h.wb = h.s.appendSigned(h.wb[:0], r, time.Now())
	if _, err := h.c.Write(h.wb); err != nil {
		return nil, err
	}
	var resp httpResponse
	if err := readHTTPResponse(h.br, &resp, true); err != nil {
		return nil, err
	}
	name := r.target
	if name == "" {
		name = r.path
	}
	if resp.status != 200 {
		return nil, fmt.Errorf("%s: HTTP %d %s %s", name, resp.status, resp.errorType, truncate(resp.body, 300))
	}
	return resp.body, nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// control calls a control-plane operation and decodes its answer into out.
func (h *httpConn) control(op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	resp, err := h.call(&httpRequest{path: "/", target: ctlTargetPrefix + op, contentType: ctlContentType, body: body})
	if err != nil {
		return err
	}
	return json.Unmarshal(resp, out)
}

// data calls a data-plane operation and decodes its answer into out.
func (h *httpConn) data(path string, in, out any) error {
	r, err := dataRequest(path, in)
	if err != nil {
		return err
	}
	resp, err := h.call(r)
	if err != nil {
		return err
	}
	return json.Unmarshal(resp, out)
}

func dataRequest(path string, in any) (*httpRequest, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	return &httpRequest{path: path, contentType: dataContentType, body: body}, nil
}

type obj = map[string]any

// benchKey is the kind of a TDES key the bench creates.
type benchKey struct {
	usage string
	modes obj
}

var (
	zpkKey = benchKey{"TR31_P0_PIN_ENCRYPTION_KEY", obj{"Encrypt": true, "Decrypt": true, "Wrap": true, "Unwrap": true}}
	pvkKey = benchKey{"TR31_V2_VISA_PIN_VERIFICATION_KEY", obj{"Generate": true, "Verify": true}}
	cvkKey = benchKey{"TR31_C0_CARD_VERIFICATION_KEY", obj{"Generate": true, "Verify": true}}
	makKey = benchKey{"TR31_M3_ISO_9797_3_MAC_KEY", obj{"Generate": true, "Verify": true}}
)

// createKey creates a TDES (2-key) key of kind k and returns its ARN.
func (h *httpConn) createKey(k benchKey) (string, error) {
	var out struct{ Key struct{ KeyArn string } }
	err := h.control("CreateKey", obj{"Exportable": true, "KeyAttributes": obj{"KeyUsage": k.usage, "KeyClass": "SYMMETRIC_KEY",
		"KeyAlgorithm": "TDES_2KEY", "KeyModesOfUse": k.modes}}, &out)
	if err == nil && out.Key.KeyArn == "" {
		err = errors.New("CreateKey: no KeyArn in the answer")
	}
	return out.Key.KeyArn, err
}

// PrepareHTTP creates keys with CreateKey and returns a valid data-plane
// request for each command code of httpOperations: a PIN block from
// GeneratePinData (Visa PVV method) under one ZPK translated to another, a
// CVV from GenerateCardValidationData, a MAC (ISO 9797-1 algorithm 3 over
// 32 bytes) from GenerateMac; and CK, a control-plane CreateKey of an
// AES-128 data key (the same request each time: each creates a key).
func (h *httpConn) prepare() (map[string]*httpRequest, error) {
	var arns [5]string
	for i, k := range []benchKey{zpkKey, zpkKey, pvkKey, cvkKey, makKey} {
		var err error
		if arns[i], err = h.createKey(k); err != nil {
			return nil, err
		}
	}
	zpkA, zpkB, pvk, cvk, mak := arns[0], arns[1], arns[2], arns[3], arns[4]
	var pin struct{ EncryptedPinBlock string }
	if err := h.data("/pindata/generate", pinGenerate(pvk, zpkA), &pin); err != nil {
		return nil, err
	}
	var cvv struct{ ValidationData string }
	if err := h.data("/cardvalidationdata/generate", cvvGenerate(cvk), &cvv); err != nil {
		return nil, err
	}
	var mac struct{ Mac string }
	if err := h.data("/mac/generate", macGenerate(mak), &mac); err != nil {
		return nil, err
	}
	reqs := map[string]*httpRequest{}
	for code, r := range dataBodies(dataValues{zpkIn: zpkA, zpkOut: zpkB, cvk: cvk, mak: mak, pinBlock: pin.EncryptedPinBlock, cvv: cvv.ValidationData, mac: mac.Mac}) {
		req, err := dataRequest(r.path, r.body)
		if err != nil {
			return nil, err
		}
		reqs[code] = req
	}
	ck, err := json.Marshal(obj{"Exportable": true, "KeyAttributes": obj{"KeyUsage": "TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY",
		"KeyClass": "SYMMETRIC_KEY", "KeyAlgorithm": "AES_128", "KeyModesOfUse": obj{"Encrypt": true, "Decrypt": true, "Wrap": true, "Unwrap": true}}})
	if err != nil {
		return nil, err
	}
	reqs["CK"] = &httpRequest{path: "/", target: ctlTargetPrefix + "CreateKey", contentType: ctlContentType, body: ck}
	return reqs, nil
}

const benchPAN = "4123456789012345"

var (
	benchCVV1 = obj{"CardVerificationValue1": obj{"CardExpiryDate": "8701", "ServiceCode": "101"}}
	benchMsg  = strings.Repeat("00", 32)
)

// pinGenerate, cvvGenerate and macGenerate are the setup requests that
// make the value a data-plane request checks: a PIN block (Visa PVV
// method) under zpk, a CVV under cvk, a MAC under mak.
func pinGenerate(pvk, zpk string) obj {
	return obj{"GenerationKeyIdentifier": pvk, "EncryptionKeyIdentifier": zpk, "PrimaryAccountNumber": benchPAN,
		"PinBlockFormat": "ISO_FORMAT_0", "PinDataLength": 4, "GenerationAttributes": obj{"VisaPin": obj{"PinVerificationKeyIndex": 1}}}
}

func cvvGenerate(cvk string) obj {
	return obj{"KeyIdentifier": cvk, "PrimaryAccountNumber": benchPAN, "GenerationAttributes": benchCVV1}
}

func macGenerate(mak string) obj {
	return obj{"KeyIdentifier": mak, "MessageData": benchMsg, "GenerationAttributes": obj{"Algorithm": "ISO9797_ALGORITHM3"}}
}

// dataValues are the keys and values the data-plane requests name.
type dataValues struct{ zpkIn, zpkOut, cvk, mak, pinBlock, cvv, mac string }

type dataBody struct {
	path string
	body any
}

// dataBodies returns the data-plane request of each command code.
func dataBodies(v dataValues) map[string]dataBody {
	iso0 := obj{"IsoFormat0": obj{"PrimaryAccountNumber": benchPAN}}
	cc := obj{"IncomingKeyIdentifier": v.zpkIn, "IncomingTranslationAttributes": iso0, "OutgoingKeyIdentifier": v.zpkOut,
		"OutgoingTranslationAttributes": iso0, "EncryptedPinBlock": v.pinBlock}
	return map[string]dataBody{
		"CC": {"/pindata/translate", cc},
		"CA": {"/pindata/translate", cc},
		"CW": {"/cardvalidationdata/generate", cvvGenerate(v.cvk)},
		"CY": {"/cardvalidationdata/verify", obj{"KeyIdentifier": v.cvk, "PrimaryAccountNumber": benchPAN, "VerificationAttributes": benchCVV1, "ValidationData": v.cvv}},
		"M6": {"/mac/generate", macGenerate(v.mak)},
		"M8": {"/mac/verify", obj{"KeyIdentifier": v.mak, "MessageData": benchMsg, "Mac": v.mac, "VerificationAttributes": obj{"Algorithm": "ISO9797_ALGORITHM3"}}},
	}
}

// httpResponse is the part of a response the bench looks at.
type httpResponse struct {
	status    int
	errorType string // X-Amzn-ErrorType, kept only when the body is
	body      []byte // kept only when asked for
}

// readHTTPResponse reads one HTTP/1.1 response with a Content-Length body.
// Without keep it allocates nothing: the body is skipped.
func readHTTPResponse(br *bufio.Reader, r *httpResponse, keep bool) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("bench: receive: %w", err)
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return fmt.Errorf("bench: not an HTTP/1.1 status line: %q", truncate(line, 40))
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return fmt.Errorf("bench: status line %q", truncate(line, 40))
	}
	r.status = status
	length := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("bench: receive: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return fmt.Errorf("bench: header line %q", truncate(line, 40))
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "Content-Length"):
			n, err := strconv.Atoi(string(value))
			if err != nil || n < 0 {
				return fmt.Errorf("bench: Content-Length %q", truncate(value, 20))
			}
			length = n
		case asciiEqualFold(name, "Transfer-Encoding"):
			return errors.New("bench: chunked response (the appliance sends Content-Length)")
		case keep && asciiEqualFold(name, "X-Amzn-ErrorType"):
			r.errorType = string(value)
		}
	}
	if length < 0 {
		return errors.New("bench: response without Content-Length")
	}
	if !keep {
		_, err = br.Discard(length)
	} else {
		r.body = make([]byte, length)
		_, err = io.ReadFull(br, r.body)
	}
	if err != nil {
		return fmt.Errorf("bench: receive: %w", err)
	}
	return nil
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// httpProto is one connection's HTTP encoding: every request signed anew.
type httpProto struct {
	reqs  []*httpRequest // per command index
	keyed *keyedConn     // instead of reqs with -keys
	s     *signer
	resp  httpResponse
}

func (p *httpProto) appendRequest(b []byte, k int, _ uint64, now time.Time) []byte {
	if p.keyed != nil {
		return p.keyed.appendRequest(b, p.s, k, now)
	}
	return p.s.appendSigned(b, p.reqs[k], now)
}

// complete reports whether a whole response is buffered: its header and
// the Content-Length bytes of body that follow. A header that names no
// length (or an invalid one) counts as complete, for readResponse to
// reject without reading further.
func (p *httpProto) complete(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered()) // what is buffered: no read
	n, ok := responseLen(b)
	return ok && len(b) >= n
}

// responseLen returns the length, header and body, of the response that
// begins b once its header is in b (ok), reading the header lines as
// readHTTPResponse does; n is 0 when the header gives no valid
// Content-Length or has a line readHTTPResponse rejects (it then fails on
// it).
func responseLen(b []byte) (n int, ok bool) {
	length, off := -1, 0
	for first := true; ; first = false {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			return 0, false
		}
		line := bytes.TrimRight(b[off:off+i+1], "\r\n")
		off += i + 1
		if first {
			continue // the status line
		}
		if len(line) == 0 {
			if length < 0 {
				return 0, true
			}
			return off + length, true
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found {
			return 0, true
		}
		if asciiEqualFold(name, "Content-Length") {
			n, err := strconv.Atoi(string(bytes.TrimSpace(value)))
			if err != nil || n < 0 {
				return 0, true
			}
			length = min(n, 1<<40) // no overflow in off + length
		}
	}
}

func (p *httpProto) readResponse(br *bufio.Reader, _ int, _ uint64) (bool, error) {
	if err := readHTTPResponse(br, &p.resp, false); err != nil {
		return false, err
	}
	return p.resp.status == 200, nil
}

// parseHTTPURL returns the host:port to dial, the Host header and whether to use TLS.
func parseHTTPURL(raw string) (hostport, host string, useTLS bool, err error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", "", false, fmt.Errorf("bench: -http %q: want http://host:port or https://host:port", raw)
	}
	hostport = u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		hostport = net.JoinHostPort(u.Hostname(), port)
	}
	return hostport, u.Host, u.Scheme == "https", nil
}

// LoadCredentials returns the access key of profile from an AWS shared
// credentials file (payhsm serve --dev writes DATA-DIR/credentials), or
// from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY when path is empty.
func LoadCredentials(path, profile string) (id, secret string, err error) {
	if path == "" {
		id, secret = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
		if id == "" || secret == "" {
			return "", "", errors.New("bench: HTTP mode needs -credentials FILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
		}
		return id, secret, nil
	}
	b, err := os.ReadFile(path) //nolint:gosec // G304: the user names the credentials file.
	if err != nil {
		return "", "", fmt.Errorf("bench: credentials: %w", err)
	}
	section := ""
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.TrimSpace(line[1 : len(line)-1])
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section != profile {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			id = strings.TrimSpace(v)
		case "aws_secret_access_key":
			secret = strings.TrimSpace(v)
		}
	}
	if id == "" || secret == "" {
		return "", "", fmt.Errorf("bench: credentials: no aws_access_key_id and aws_secret_access_key in [%s] of %s", profile, path)
	}
	return id, secret, nil
}
