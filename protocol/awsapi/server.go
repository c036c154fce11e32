// Package awsapi is payhsm's AWS-compatible HTTP edge for both planes of AWS
// Payment Cryptography: it authenticates requests (SigV4), decodes them into
// the model's shapes (cpshape, dpshape), validates them against the model's
// constraints, calls the operations layer (package ops), and encodes answers
// and errors exactly as the AWS protocols do — awsJson1_0 for the control
// plane (POST / with X-Amz-Target) and restJson1 for the data plane. It holds
// no payment semantics of its own: fault kinds are translated to AWS
// exceptions here, once.
package awsapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"go.uber.org/zap"

	"payhsm/access"
	"payhsm/audit"
	"payhsm/fault"
	"payhsm/ops"
	cp "payhsm/protocol/awsapi/cpshape"
	dp "payhsm/protocol/awsapi/dpshape"
	"payhsm/protocol/awsapi/sigv4"
)

// MaxBodyBytes bounds a request body. The largest control-plane member
// (a certificate chain) is 32 KiB; the largest data-plane member is 8 KiB of hex.
const MaxBodyBytes = 256 << 10

const (
	controlTargetPrefix = "PaymentCryptographyControlPlane."
	controlNamespace    = "com.amazonaws.paymentcryptography#"
	controlContentType  = "application/x-amz-json-1.0"
)

// Server serves the HTTP API.
type Server struct {
	ops      *ops.Service
	verifier *sigv4.Verifier
	log      *zap.Logger
	control  map[string]operation
	routes   []route            // data plane
	az       *access.Authorizer // nil: no authorization (SetAuthorizer)

	audit        *audit.Trail // nil: no audit trail (see SetAudit)
	auditAccount string
	auditData    bool        // the account opted in to data-plane events
	auditOutbox  AuditOutbox // CreateKey stages its entry (SetAuditOutbox); nil: it does not
	obs          Observer    // nil: none (observe.go)
	node         []string    // x-payhsm-node's value (SetNode); nil: not sent
}

// NodeHeader names the fleet node that answered a request (docs/fleet.md),
// in the canonical form Header().Set writes.
const NodeHeader = "X-Payhsm-Node"

// SetNode makes every response carry NodeHeader: node, the fleet node's
// name ("" sends none), so that operators see how a load balancer spreads
// requests. Call it before serving.
func (s *Server) SetNode(node string) {
	if node != "" {
		s.node = []string{node}
	}
}

// operation is one decoded-and-validated call.
type operation struct {
	newInput func() validator
	call     func(ctx context.Context, in any) (any, error)
	authz    *authz // set by SetAuthorizer
}

type validator interface{ Validate(path string) error }

// plane says which protocol's conventions a response follows.
type plane int

const (
	controlPlane plane = iota
	dataPlane
)

// New returns a Server.
func New(svc *ops.Service, verifier *sigv4.Verifier, log *zap.Logger) *Server {
	s := &Server{ops: svc, verifier: verifier, log: log}
	s.control = s.controlOperations()
	s.routes = s.dataRoutes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	idField := requestIDField()
	reqID := idField[0]
	w.Header()["X-Amzn-Requestid"] = idField // canonical form of X-Amzn-RequestId, as Header().Set writes it
	if s.node != nil {
		w.Header()[NodeHeader] = s.node // never modified: shared by every response
	}
	start := time.Now()
	var rq request
	defer func() {
		// A bug must not cost the connection or leak detail: answer InternalServerException.
		if p := recover(); p != nil {
			s.log.Error("request handler panicked", zap.String("requestId", reqID), zap.String("panic", fmt.Sprint(p)))
			err := fault.Internalf("handler", fmt.Errorf("panic"))
			writeControlError(w, err)
			s.finish(r, reqID, &rq, controlPlane, "", err, start)
		}
	}()
	pl, op, err := s.serve(w, r, &rq)
	if err != nil {
		if pl == dataPlane {
			writeDataError(w, err)
		} else {
			writeControlError(w, err)
		}
	}
	s.finish(r, reqID, &rq, pl, op, err, start)
}

// protocolError is a protocol-level error with no fault kind (unknown
// operation, undecodable body): it is answered as AWS's front ends answer it.
type protocolError struct {
	name    string
	status  int
	message string
}

func (e *protocolError) Error() string { return e.name + ": " + e.message }

func unknownOperation(status int, msg string) error {
	return &protocolError{"UnknownOperationException", status, msg}
}

// serve authenticates the request, then dispatches it to the control plane
// (POST / with X-Amz-Target) or a data-plane route.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, rq *request) (pl plane, name string, err error) {
	pl = controlPlane
	if r.Header.Get("X-Amz-Target") == "" {
		pl = dataPlane
	}
	if r.Method != http.MethodPost {
		return pl, "", unknownOperation(http.StatusNotFound, "unsupported method "+r.Method)
	}
	if esc, bad := badTarget(r); bad {
		return pl, "", &protocolError{"ValidationException", http.StatusBadRequest, fmt.Sprintf("invalid percent-escape %q in the request path", esc)}
	}
	if r.ContentLength > MaxBodyBytes {
		return pl, "", fault.Validationf("request body exceeds %d bytes", MaxBodyBytes)
	}
	body, err := readBody(r)
	if err != nil {
		return pl, "", fault.Validationf("cannot read request body")
	}
	if len(body) > MaxBodyBytes {
		return pl, "", fault.Validationf("request body exceeds %d bytes", MaxBodyBytes)
	}
	principal, err := s.verifier.Verify(r, body)
	if err != nil {
		s.deny(w, r, pl, principal, err)
		return pl, "", authError(err)
	}
	rq.accessKey = principal
	var op operation
	var in validator
	var out any
	// Every call of an authenticated principal is recorded (audit.go); a
	// control-plane call is refused while the trail cannot write.
	rec := s.startAudit(pl, w, r, principal) // nil: not recorded (data events off)
	if rec != nil {
		defer func() {
			if p := recover(); p != nil { // recorded as failed; ServeHTTP answers it
				_ = rec.done(name, in, nil, fault.Internalf("handler", errors.New("panic")))
				panic(p)
			}
			_ = rec.done(name, in, out, err)
		}()
	}
	if err := rec.ready(); err != nil {
		return pl, "", err
	}
	if pl == controlPlane {
		target := r.Header.Get("X-Amz-Target")
		var ok, known bool
		name, ok = strings.CutPrefix(target, controlTargetPrefix)
		op, known = s.control[name]
		if r.URL.Path != "/" || !ok || !known {
			return pl, name, unknownOperation(http.StatusBadRequest, "unknown operation "+target)
		}
		in = op.newInput()
	} else {
		rt, labels, ok := s.match(r.URL.EscapedPath())
		if !ok {
			return pl, "", unknownOperation(http.StatusNotFound, "no operation at "+r.URL.EscapedPath())
		}
		name, op = rt.name, rt.op
		in = op.newInput()
		if err := decode(body, in); err != nil {
			return pl, name, err
		}
		setter, _ := in.(dp.URILabelSetter)
		for label, value := range labels {
			if setter == nil || !setter.SetURILabel(label, value) {
				return pl, name, fault.Internalf("route", fmt.Errorf("%s has no label %s", name, label))
			}
		}
	}
	if pl == controlPlane {
		if err := decode(body, in); err != nil {
			return pl, name, err
		}
	}
	if err := in.Validate(""); err != nil {
		f := fault.Wrap(fault.Validation, err.Error(), nil)
		if ve, ok := err.(*cp.ValidationError); ok {
			return pl, name, &atMember{path: ve.Field, f: f}
		} else if ve, ok := err.(*dp.ValidationError); ok {
			return pl, name, &atMember{path: ve.Field, f: f}
		}
		return pl, name, f
	}
	var pinned pins
	if s.az != nil {
		if err := s.authorize(r, principal, &op, in, &pinned); err != nil {
			return pl, name, err
		}
		if hook := afterAuthorize.Load(); hook != nil {
			(*hook)()
		}
	}
	ctx := r.Context()
	if pl == controlPlane { // the data plane's operations write no entries of their own: no per-request context there
		ctx = ops.WithCaller(ctx, s.caller(r, w, principal))
		if rec != nil && s.auditOutbox != nil {
			ctx = context.WithValue(ctx, auditCallKey{}, rec)
		}
	}
	out, err = op.call(ctx, in)
	if pinned.n > 0 {
		pinned.restore()
	}
	if err != nil {
		if pl == dataPlane {
			// A fault about an input the handler did not place is named by
			// its member's usual name.
			err = locate(err, nil)
		}
		return pl, name, err
	}
	buf := responseBuffers.Get().(*[]byte)
	defer responseBuffers.Put(buf)
	b, err := encode((*buf)[:0], out)
	*buf = b[:0]
	if err != nil {
		return pl, name, fault.Internalf("encode response", err)
	}
	if err := rec.done(name, in, out, nil); err != nil {
		return pl, name, err
	}
	h := w.Header()
	if pl == controlPlane {
		h["Content-Type"] = controlContentTypeHeader
	} else {
		h["Content-Type"] = jsonContentTypeHeader
	}
	h["Content-Length"] = contentLengthHeader(len(b))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return pl, name, nil
}

// Header values shared by every response; net/http only reads them.
var (
	controlContentTypeHeader = []string{controlContentType}
	jsonContentTypeHeader    = []string{"application/json"}
)

// contentLengthHeader is the Content-Length field value of a body of n
// bytes: shared, made once, for the lengths of the usual answers.
func contentLengthHeader(n int) []string {
	if n < len(contentLengths) {
		return contentLengths[n]
	}
	return []string{strconv.Itoa(n)}
}

var contentLengths = func() (t [1024][]string) {
	for n := range t {
		t[n] = []string{strconv.Itoa(n)}
	}
	return t
}()

// responseBuffers hold encoded responses until they are written.
var responseBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// encode appends the JSON of out: the generated encoder when out is a
// model shape, json.Marshal otherwise (both write the same bytes).
func encode(b []byte, out any) ([]byte, error) {
	if a, ok := out.(interface{ AppendJSON([]byte) ([]byte, error) }); ok {
		return a.AppendJSON(b)
	}
	j, err := json.Marshal(out)
	return append(b, j...), err
}

// readBody reads the whole request body: in one allocation of its
// announced length when it has one, else up to one byte past MaxBodyBytes.
func readBody(r *http.Request) ([]byte, error) {
	if n := r.ContentLength; n >= 0 && n <= MaxBodyBytes {
		body := make([]byte, n, n+1)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, err
		}
		// net/http ends a server request's body at its length; read on as
		// io.ReadAll would for a request whose body runs longer.
		k, err := r.Body.Read(body[n : n+1])
		switch {
		case k > 0:
			rest, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes-n))
			return append(body[:n+1], rest...), err
		case err != nil && err != io.EOF:
			return nil, err
		}
		return body, nil
	}
	return io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
}

// decode decodes one JSON object into v with the generated decoders (members
// matched exactly, wrong types and duplicates refused, unknown members
// ignored as AWS does). An empty body is an empty object.
func decode(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	var err error
	if d, ok := v.(interface{ DecodeJSON([]byte) error }); ok {
		err = d.DecodeJSON(body) // json.Unmarshal's result, without reflection on the usual path
	} else {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		var de *cp.DecodeError
		if errors.As(err, &de) {
			return &protocolError{"SerializationException", http.StatusBadRequest, de.Error()}
		}
		return &protocolError{"SerializationException", http.StatusBadRequest, "malformed JSON request body"}
	}
	return nil
}

// authError is AWS's answer to a request that fails SigV4: the exception
// names AWS services answer (MissingAuthenticationTokenException,
// UnrecognizedClientException, InvalidSignatureException,
// IncompleteSignatureException), on both planes.
func authError(err error) *protocolError {
	switch {
	case errors.Is(err, sigv4.ErrMissingAuth):
		return &protocolError{"MissingAuthenticationTokenException", http.StatusForbidden, "Missing Authentication Token"}
	case errors.Is(err, sigv4.ErrUnknownAccessKey):
		return &protocolError{"UnrecognizedClientException", http.StatusForbidden, "The security token included in the request is invalid."}
	case errors.Is(err, sigv4.ErrExpired), errors.Is(err, sigv4.ErrNotYetValid):
		return &protocolError{"InvalidSignatureException", http.StatusForbidden,
			fmt.Sprintf("Signature expired: the request time is more than %d minutes from the server's time.", int(sigv4.DefaultMaxSkew.Minutes()))}
	case errors.Is(err, sigv4.ErrSignatureMismatch), errors.Is(err, sigv4.ErrPayloadHash):
		return &protocolError{"InvalidSignatureException", http.StatusForbidden,
			"The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."}
	case errors.Is(err, sigv4.ErrScope):
		return &protocolError{"InvalidSignatureException", http.StatusForbidden, "Credential should be scoped to a valid region and service: " + strings.TrimPrefix(err.Error(), "sigv4: ")}
	case errors.Is(err, sigv4.ErrUnsignedHeader):
		return &protocolError{"InvalidSignatureException", http.StatusForbidden, strings.TrimPrefix(err.Error(), "sigv4: ")}
	case errors.Is(err, sigv4.ErrMalformedAuth), errors.Is(err, sigv4.ErrUnsupported):
		return &protocolError{"IncompleteSignatureException", http.StatusBadRequest, strings.TrimPrefix(err.Error(), "sigv4: ")}
	default:
		return &protocolError{"AccessDeniedException", http.StatusForbidden, "Authentication failed: " + strings.TrimPrefix(err.Error(), "sigv4: ")}
	}
}

// controlException is the AWS exception name and status of a fault kind on the control plane.
func controlException(k fault.Kind) (string, int) {
	switch k {
	case fault.Validation:
		return "ValidationException", http.StatusBadRequest
	case fault.NotFound:
		return "ResourceNotFoundException", http.StatusNotFound
	case fault.Conflict:
		return "ConflictException", http.StatusConflict
	case fault.AccessDenied:
		return "AccessDeniedException", http.StatusForbidden
	case fault.Throttling:
		return "ThrottlingException", http.StatusTooManyRequests
	case fault.QuotaExceeded:
		return "ServiceQuotaExceededException", http.StatusPaymentRequired
	case fault.Unavailable:
		return "ServiceUnavailableException", http.StatusServiceUnavailable
	case fault.PublicPolicy:
		return "PublicPolicyException", http.StatusBadRequest
	case fault.VerificationFailed: // not a control-plane error; never produced there
		return "ValidationException", http.StatusBadRequest
	default:
		return "InternalServerException", http.StatusInternalServerError
	}
}

func writeControlError(w http.ResponseWriter, err error) {
	var pe *protocolError
	body := map[string]any{}
	var name string
	var status int
	if errors.As(err, &pe) {
		name, status = pe.name, pe.status
		body["__type"] = "com.amazon.coral.service#" + name
		body["message"] = pe.message
	} else {
		f := fault.As(err)
		name, status = controlException(f.Kind)
		body["__type"] = controlNamespace + name
		if f.Kind == fault.NotFound {
			body["ResourceId"] = f.Resource
			body["Message"] = fault.ClientMessage(f)
		} else {
			body["Message"] = fault.ClientMessage(f)
		}
	}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", controlContentType)
	w.Header().Set("X-Amzn-ErrorType", name)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// requestIDField returns a random identifier in the form of a UUID, as
// AWS's x-amzn-RequestId, as a header field's value: the id and its slice
// in one allocation. It identifies a request in logs and carries no
// security property, so the runtime's fast generator serves.
func requestIDField() []string {
	const hexDigits = "0123456789abcdef"
	x := new(struct {
		v [1]string
		b [36]byte
	})
	b := &x.b
	hi, lo := rand.Uint64(), rand.Uint64() //nolint:gosec // G404: an identifier for logs, not a secret.
	j := 0
	for i := range 32 {
		if i == 8 || i == 12 || i == 16 || i == 20 {
			b[j] = '-'
			j++
		}
		v := &hi
		if i >= 16 {
			v = &lo
		}
		b[j] = hexDigits[*v>>60]
		*v <<= 4
		j++
	}
	// b is never written again: the string may share it.
	x.v[0] = unsafe.String(&b[0], len(b)) //nolint:gosec // G103: b is complete and immutable from here.
	return x.v[:]
}
